//! The values that go into and come out of the index: run statuses and stats, what a capture
//! recorded, and the records the queries return. Times are Unix seconds (UTC) throughout, as
//! Key Vault reports them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::config::PayloadMode;
use crate::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, Validity, VaultName};

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Still going (or its daemon died; see [`super::Index::interrupt_unfinished_runs`]).
    Running,
    /// Every object was captured or found unchanged.
    Completed,
    /// Some objects failed; the rest were captured.
    PartiallyFailed,
    /// The run failed as a whole (nothing or almost nothing captured).
    Failed,
    /// Stopped by shutdown or a crash before it could finish.
    Interrupted,
}

impl RunStatus {
    /// The word stored in the index and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::PartiallyFailed => "partially_failed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Whether a run that ended so counts for retention's keep rules (and, in the daemon,
    /// triggers the prune after it): `completed` or `partially_failed`. A failed or interrupted
    /// run must never take the place of a good one in "the last 7 days".
    pub fn counts_for_retention(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::PartiallyFailed)
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "partially_failed" => RunStatus::PartiallyFailed,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run did, as counted by the backup executor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Objects backed up (a blob written).
    pub captured_objects: u64,
    /// Objects found unchanged since their last capture.
    pub unchanged_objects: u64,
    /// Objects seen gone from the vault.
    pub deleted_objects: u64,
    /// Objects that could not be captured.
    pub failed_objects: u64,
    /// Ciphertext bytes written to the store.
    pub uploaded_bytes: u64,
}

/// How many listed objects a run left out, by reason (from its plan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkippedCounts {
    /// A certificate's key or secret: the certificate's backup covers it.
    pub managed: u64,
    /// Left out by `include` or `exclude`.
    pub filtered: u64,
    /// Carrying a skip tag.
    pub tagged: u64,
}

/// One run as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The run.
    pub run: RunId,
    /// Its vault.
    pub vault: VaultName,
    /// When it started.
    pub started_at: i64,
    /// When it finished, if it has.
    pub finished_at: Option<i64>,
    /// Its status.
    pub status: RunStatus,
    /// Its counts.
    pub stats: RunStats,
    /// Its manifest in the store; `None` while running, when it ended before writing one, or
    /// once prune forgot it.
    pub manifest: Option<BlobKey>,
    /// When prune forgot this restore point (its manifest is then deleted or being deleted).
    pub forgotten_at: Option<i64>,
    /// For a run another kvkeep instance left unfinished (it never released the vault's lease),
    /// recorded `interrupted` by the instance that took the vault over: that other instance.
    pub abandoned_by: Option<String>,
}

impl RunRecord {
    /// Whether the run's manifest is written: only then do its captures count for restore,
    /// retention and change detection (DESIGN.md §4).
    pub fn is_committed(&self) -> bool {
        self.manifest.is_some()
    }
}

/// An object's current state as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as the vault displays it.
    pub name: ObjectName,
    /// The id of its current version.
    pub current_version: ObjectVersion,
    /// The current version's `updated` attribute.
    pub updated: i64,
}

/// One version inside a backup blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedVersion {
    /// The version id (restore keeps it).
    pub version: ObjectVersion,
    /// Its `created` attribute, when the service reported one.
    pub created: Option<i64>,
    /// Its `updated` attribute, when the service reported one.
    pub updated: Option<i64>,
    /// Whether the version is enabled.
    pub enabled: bool,
}

/// A blob just written for one object, to be recorded in its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCapture {
    /// The object and its current version at capture time.
    pub object: ObjectState,
    /// Where the blob is in the store.
    pub blob: BlobKey,
    /// When it was captured. Capturing lists the object's versions, so it also counts as a
    /// deep scan.
    pub captured_at: i64,
    /// Size of the payload before compression and encryption.
    pub plain_bytes: u64,
    /// Size of the blob as stored.
    pub stored_bytes: u64,
    /// SHA-256 of the stored blob, 64 hex characters.
    pub sha256: String,
    /// What the blob holds.
    pub payload: PayloadMode,
    /// The versions inside the blob.
    pub versions: Vec<CapturedVersion>,
    /// The current version's tags as the listing reported them, for the restore drill to
    /// compare with; `None` when unknown (rebuilt from a manifest written before tags were
    /// recorded), which is not the same as no tags.
    pub tags: Option<CaptureTags>,
    /// The current version's `nbf` and `exp` as the listing reported them, for the expiry
    /// report; `None` when unknown (rebuilt from a manifest written before kvkeep recorded
    /// them), which is not the same as a version that has neither.
    pub validity: Option<Validity>,
}

/// The tags of a capture's current version (Key Vault allows at most 15).
pub type CaptureTags = BTreeMap<String, String>;

/// A recorded capture: one restorable blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    /// The run that wrote it.
    pub run: RunId,
    /// Whether the capture counts: the run that wrote it is committed (manifest written), or a
    /// committed run holds it (schema version 4), which keeps it usable once the run that wrote
    /// it has been forgotten.
    pub committed: bool,
    /// Its vault.
    pub vault: VaultName,
    /// The object's kind.
    pub kind: ObjectKind,
    /// The object's name as the vault displayed it when captured.
    pub name: ObjectName,
    /// Where the blob is.
    pub blob: BlobKey,
    /// When it was captured.
    pub captured_at: i64,
    /// The object's current version at capture time.
    pub current_version: ObjectVersion,
    /// That version's `updated` attribute.
    pub updated: i64,
    /// Payload size before compression and encryption.
    pub plain_bytes: u64,
    /// Blob size.
    pub stored_bytes: u64,
    /// SHA-256 of the blob, hex.
    pub sha256: String,
    /// What the blob holds.
    pub payload: PayloadMode,
}

/// What change detection compares a listing against: the newest committed capture of an object
/// and when its versions were last compared in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCapture {
    /// The current version when it was captured.
    pub current_version: ObjectVersion,
    /// That version's `updated` attribute.
    pub updated: i64,
    /// When it was captured.
    pub captured_at: i64,
    /// The blob.
    pub blob: BlobKey,
    /// When the object's version list was last compared in full (a capture or a deep scan).
    pub last_deep_scan: Option<i64>,
}

/// What committed runs say of one object: the input of change detection. Runs without a
/// manifest count for nothing here, neither their captures nor the deletions they saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedObject {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// Its newest committed capture, if any.
    pub last: Option<LastCapture>,
    /// Whether a committed run saw it gone after that capture (or, never captured, at all).
    pub deleted: bool,
}

/// An object the index has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Its vault.
    pub vault: VaultName,
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// First seen by any run.
    pub first_seen: i64,
    /// Last seen in a listing.
    pub last_seen: i64,
    /// When a run saw it gone, if it has not been seen since.
    pub deleted_at: Option<i64>,
    /// Its current version as last seen.
    pub current_version: ObjectVersion,
    /// That version's `updated` attribute as last seen.
    pub updated: i64,
    /// When its versions were last compared in full.
    pub last_deep_scan: Option<i64>,
}

/// One version of an object across all its committed captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The version id.
    pub version: ObjectVersion,
    /// Its `created` attribute as of the newest capture holding it.
    pub created: Option<i64>,
    /// Its `updated` attribute as of the newest capture holding it.
    pub updated: Option<i64>,
    /// Whether it was enabled as of the newest capture holding it.
    pub enabled: bool,
    /// The oldest capture that holds it.
    pub first_captured_at: i64,
    /// The newest capture that holds it.
    pub last_captured_at: i64,
    /// The blob of the newest capture that holds it: what to restore to get this version back.
    pub newest_blob: BlobKey,
}

/// One object that failed in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectErrorRecord {
    /// The run.
    pub run: RunId,
    /// The object's kind.
    pub kind: ObjectKind,
    /// The object's name.
    pub name: ObjectName,
    /// A short, stable word for the class of error (`forbidden`, `throttled`, ...).
    pub error_kind: String,
    /// What went wrong, for a person.
    pub message: String,
    /// When.
    pub at: i64,
}

/// How thoroughly a verification checked a vault's backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationDepth {
    /// The blobs exist with the recorded sizes.
    Quick,
    /// The blobs decrypt and their envelopes match the index.
    Deep,
    /// A restore into a scratch vault succeeded.
    Drill,
}

impl VerificationDepth {
    /// The word stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationDepth::Quick => "quick",
            VerificationDepth::Deep => "deep",
            VerificationDepth::Drill => "drill",
        }
    }
}

impl FromStr for VerificationDepth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "quick" => VerificationDepth::Quick,
            "deep" => VerificationDepth::Deep,
            "drill" => VerificationDepth::Drill,
            other => return Err(format!("unknown verification depth {other:?}")),
        })
    }
}

/// One verification of a vault's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    /// The vault.
    pub vault: VaultName,
    /// When.
    pub at: i64,
    /// How thoroughly.
    pub depth: VerificationDepth,
    /// Whether everything checked out.
    pub ok: bool,
    /// What was found, for a person.
    pub detail: String,
}
