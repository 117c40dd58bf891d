//! kvkeep: a backup-and-restore daemon for Azure Key Vault keys, secrets and certificates.
//!
//! The library holds everything; the `kvkeep` binary only parses arguments and maps outcomes to
//! exit codes (see `../shared/DESIGN.md` §3 for the module map this crate grows into).

pub mod azure;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod doctor;
pub mod fsutil;
pub mod index;
pub mod model;
pub mod notify;
pub mod report;
pub mod restore;
pub mod retention;
pub mod scheduler;
pub mod source;
pub mod store;
