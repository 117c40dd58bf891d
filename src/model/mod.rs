//! Pure domain types shared by every module: typed ids and object kinds. No I/O.

mod ids;

pub use ids::{IdError, ObjectKind, ObjectName, VaultName};
