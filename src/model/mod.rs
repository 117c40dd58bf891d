//! Pure domain types shared by every module: typed ids, object kinds and an object's validity
//! period. No I/O.

mod ids;
mod keys;
mod validity;

pub use ids::{IdError, ObjectKind, ObjectName, VaultName};
pub use keys::{BlobKey, ObjectVersion, RunId};
pub use validity::Validity;
