//! Pure domain types shared by every module: typed ids and object kinds. No I/O.

mod ids;
mod keys;

pub use ids::{IdError, ObjectKind, ObjectName, VaultName};
pub use keys::{BlobKey, ObjectVersion, RunId};
