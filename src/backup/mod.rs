//! The backup pipeline of one vault: plan (pure) → execute → manifest last (DESIGN §3–§5).
//!
//! ```text
//! list every kind ─▶ index: last committed capture per object ─▶ deep scans due? list versions
//!        │
//!        ▼
//! plan::plan ─▶ BackupPlan { changed (why), unchanged, gone, skipped (why) }
//!        │
//!        ▼  for each changed object, at most `limits.concurrency` at a time:
//! list versions (unless this run's deep scan did) ─▶ backup ─▶ seal (spawn_blocking) ─▶ put_new ─▶ index
//!        │
//!        ▼  after every object:
//! index: unchanged + deleted ─▶ manifest sealed ─▶ put_new (LAST) ─▶ index: finish run
//! ```
//!
//! Rules the executor keeps:
//!
//! - **Per-object errors never abort the vault.** Each is recorded in the index with its
//!   reason; the run ends `completed`, `partially_failed` or `failed` (listing failed, the
//!   manifest could not be written, or every object failed and none was unchanged).
//! - **The manifest is the commit marker.** It is written after every object blob; until it
//!   is, the run's captures count for nothing (the index ignores them for change detection, so
//!   the next run captures those objects again).
//! - **Cancellation only between objects.** A started backup → seal → put → record finishes;
//!   objects not started are recorded as `interrupted` and the run as interrupted, with a
//!   manifest for what was completed.
//! - **One clock.** Times come from the [`Clock`] passed in (tests pin it).
//!
//! Why `list_versions` before `backup`, and no read of the object: Key Vault lists carry no
//! version ids, and reading a secret returns its value, so the current version is derived from
//! the version list (newest `created`; a tie within one second is settled by the attributes and
//! tags the object listing reported). Versions are only ever added, so listing them before the
//! backup guarantees that the recorded current version is among the recorded versions and that
//! the blob holds at least every recorded version. A capture therefore costs two requests (one
//! when the run's deep scan already listed the versions), and the identity needs only list and
//! backup permissions.

mod execute;
pub mod manifest;
pub mod plan;
mod report;
mod runner;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use execute::{Clock, VaultBackup};
pub use manifest::Manifest;
pub use plan::{BackupPlan, ChangeReason, SkipReason};
pub use report::{BackupReport, BackupStats, HeldElsewhere, NoProgress, ObjectFailure, Progress};
pub use runner::{azure_source, Runner, SetupError, VaultClaim, PARALLEL_VAULTS};

/// The wall clock, Unix seconds (UTC): the one place the backup pipeline reads the time.
pub fn system_clock() -> Clock {
    Arc::new(crate::clock::now_unix)
}
