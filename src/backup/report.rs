//! What a backup run reports: per vault the status, counts with their units, and every failed
//! object with its reason; and the [`Progress`] hook the CLI draws its progress bar from.

use serde::Serialize;

use super::plan::BackupPlan;
use crate::index::{RunStats, RunStatus};
use crate::model::{BlobKey, ObjectKind, ObjectName, RunId, VaultName};
use crate::store::HolderInfo;

/// Counts of one run. Every field carries its unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackupStats {
    /// Objects backed up (a blob written and recorded).
    pub captured_objects: u64,
    /// Objects unchanged since their last committed capture.
    pub unchanged_objects: u64,
    /// Objects seen gone from the vault.
    pub deleted_objects: u64,
    /// Listed objects left out (managed, filtered, skip-tagged).
    pub skipped_objects: u64,
    /// Objects that could not be captured.
    pub failed_objects: u64,
    /// Ciphertext bytes written to the store (object blobs and the manifest).
    pub uploaded_bytes: u64,
    /// `backup` calls made to the vault.
    pub backup_calls: u64,
}

impl From<&BackupStats> for RunStats {
    fn from(s: &BackupStats) -> Self {
        RunStats {
            captured_objects: s.captured_objects,
            unchanged_objects: s.unchanged_objects,
            deleted_objects: s.deleted_objects,
            failed_objects: s.failed_objects,
            uploaded_bytes: s.uploaded_bytes,
        }
    }
}

/// One object that could not be captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectFailure {
    /// Kind.
    pub kind: ObjectKind,
    /// Name.
    pub name: ObjectName,
    /// A short stable word for the class of error (`forbidden`, `throttled`, `store`, ...).
    pub error_kind: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// The outcome of backing up one vault.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The vault.
    pub vault: VaultName,
    /// The run.
    pub run: RunId,
    /// How it ended.
    #[serde(serialize_with = "status_ser")]
    pub status: RunStatus,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it ended (Unix seconds).
    pub finished_at: i64,
    /// The manifest, when the run wrote one (committed).
    pub manifest: Option<BlobKey>,
    /// Counts.
    pub stats: BackupStats,
    /// Objects that failed, with their reasons.
    pub failures: Vec<ObjectFailure>,
    /// Why the run as a whole failed, when it did.
    pub error: Option<String>,
    /// Set when the run was not started because another kvkeep instance holds the vault's
    /// lease: not a failure of the vault, and no run is recorded (`status` is `failed`, so a
    /// command still exits 1, but the daemon logs it as skipped and notifies nobody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_elsewhere: Option<HeldElsewhere>,
}

/// Who held a vault that a run could not start on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldElsewhere {
    /// The holder, as its lock blob records it (`None` when it recorded nothing yet).
    pub by: Option<HolderInfo>,
}

fn status_ser<S: serde::Serializer>(s: &RunStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// Hooks for showing progress; every method has a no-op default. Called from the executor's
/// task: implementations must be quick and must not block.
pub trait Progress: Send + Sync {
    /// The plan of a vault is ready; `plan.changed.len()` objects are about to be captured.
    fn planned(&self, _plan: &BackupPlan) {}
    /// One object is done (captured or failed).
    fn object_done(&self, _vault: &VaultName, _kind: ObjectKind, _name: &ObjectName, _ok: bool) {}
    /// A vault's run has ended.
    fn finished(&self, _report: &BackupReport) {}
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
