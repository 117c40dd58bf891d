//! The run summary every webhook and command receives: a versioned JSON document built from a
//! [`BackupReport`]. It names vaults, objects and counts — never a secret value, which a report
//! does not hold — and its shape is documented in the README ("Notifications"); a change that
//! renames or removes a field bumps [`SUMMARY_FORMAT`].

use serde::Serialize;

use crate::backup::BackupReport;
use crate::config::NotifyOutcome;
use crate::index::RunStatus;
use crate::restore::plan::rfc3339;

/// Version of the summary's shape. Fields may be added within a version; none are renamed or
/// removed.
pub const SUMMARY_FORMAT: u32 = 1;
/// Failures listed at most: a run where thousands of objects failed for the same reason (a
/// missing permission) should not post megabytes; the count is in `counts.failed_objects`.
pub const MAX_LISTED_FAILURES: usize = 20;
/// Longest message kept per failure, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// The outcome a run's status maps to: `partial` when some objects failed, `failure` when the run
/// as a whole failed or was interrupted.
pub fn outcome_of(status: RunStatus) -> NotifyOutcome {
    match status {
        RunStatus::Completed => NotifyOutcome::Success,
        RunStatus::PartiallyFailed => NotifyOutcome::Partial,
        // A report still "running" never finished properly: whoever listens should look.
        RunStatus::Failed | RunStatus::Interrupted | RunStatus::Running => NotifyOutcome::Failure,
    }
}

/// The summary of one run (format [`SUMMARY_FORMAT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Always [`SUMMARY_FORMAT`].
    pub summary_format: u32,
    /// The vault.
    pub vault: String,
    /// The run id (as in `kvkeep list runs`).
    pub run_id: String,
    /// The run's status: `completed`, `partially_failed`, `failed`, `interrupted`.
    pub status: &'static str,
    /// `success`, `partial` or `failure` (the words of `on`).
    pub outcome: &'static str,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    /// Counts, each with its unit.
    pub counts: Counts,
    /// Up to [`MAX_LISTED_FAILURES`] failed objects.
    pub failures: Vec<Failure>,
    /// Failed objects not listed in `failures`.
    pub failures_omitted: usize,
    /// Why the run as a whole failed, when it did.
    pub error: Option<String>,
    /// The host kvkeep runs on.
    pub host: String,
    /// kvkeep's version.
    pub kvkeep_version: &'static str,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Objects backed up.
    pub captured_objects: u64,
    /// Objects unchanged since their last capture.
    pub unchanged_objects: u64,
    /// Objects seen gone from the vault.
    pub deleted_objects: u64,
    /// Objects left out (managed, filtered, skip-tagged).
    pub skipped_objects: u64,
    /// Objects that could not be captured.
    pub failed_objects: u64,
    /// Bytes written to the store.
    pub uploaded_bytes: u64,
}

/// One failed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `keys`, `secrets` or `certificates` (the words of `kinds`).
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// A short stable word for the class of error (`forbidden`, `throttled`, ...).
    pub error_kind: String,
    /// What went wrong (kvkeep's messages name objects, never their values).
    pub message: String,
}

impl Summary {
    /// The summary of `report`, sent from `host`.
    pub fn of(report: &BackupReport, host: &str) -> Summary {
        let s = &report.stats;
        Summary {
            summary_format: SUMMARY_FORMAT,
            vault: report.vault.to_string(),
            run_id: report.run.to_string(),
            status: report.status.as_str(),
            outcome: outcome_of(report.status).as_str(),
            started_at: rfc3339(report.started_at),
            finished_at: rfc3339(report.finished_at),
            counts: Counts {
                captured_objects: s.captured_objects,
                unchanged_objects: s.unchanged_objects,
                deleted_objects: s.deleted_objects,
                skipped_objects: s.skipped_objects,
                failed_objects: s.failed_objects,
                uploaded_bytes: s.uploaded_bytes,
            },
            failures: report
                .failures
                .iter()
                .take(MAX_LISTED_FAILURES)
                .map(|f| Failure {
                    kind: f.kind.as_str(),
                    name: f.name.to_string(),
                    error_kind: f.error_kind.clone(),
                    message: truncate(&f.message, MAX_MESSAGE_CHARS),
                })
                .collect(),
            failures_omitted: report.failures.len().saturating_sub(MAX_LISTED_FAILURES),
            error: report.error.clone(),
            host: host.to_string(),
            kvkeep_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail; an empty object is still valid JSON.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// `s` cut to at most `max` characters, with `…` when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The name of this host, for the summary: the kernel's, else `/etc/hostname`, else `unknown`.
pub(super) fn host_name() -> String {
    crate::config::host_name().unwrap_or_else(|| "unknown".to_string())
}
