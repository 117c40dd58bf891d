//! Carrying out a [`RestorePlan`]: survey the target before planning, then per object fetch the
//! blob, check it against the index, open it with the identities (off the runtime), check the
//! envelope's binding to vault, kind, name, run, current version and capture time, and restore
//! it through the [`VaultSource`] seam, applying the conflict policy.
//!
//! Per-object failures never stop the others; every object ends restored, recovered, skipped or
//! failed with a reason a person can act on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tracing::{debug, info, warn};

use super::plan::{rfc3339, singular, Action, PlannedObject, RestorePlan, TargetState};
use crate::crypto::{open_expecting, sha256_hex, CryptoError, Expected, Identities, PayloadMode};
use crate::index::CaptureRecord;
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::source::{SourceError, SourceErrorKind, VaultSource};
use crate::store::{BlobStore, StoreErrorKind};

/// How the executor behaves.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Objects in flight at once.
    pub concurrency: usize,
    /// After a purge, how long a `409 Conflict` on restore is retried: the service keeps a
    /// purged name blocked for a while.
    pub purge_wait: Duration,
    /// Pause between those retries.
    pub purge_retry_interval: Duration,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            concurrency: 4,
            purge_wait: Duration::from_secs(60),
            purge_retry_interval: Duration::from_secs(2),
        }
    }
}

/// How one object ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Restored from the backup.
    Restored {
        /// The current version the vault reports (the original id is kept).
        version: String,
    },
    /// A soft-deleted object was recovered instead (recover-then-skip).
    Recovered,
    /// Left alone.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not restored.
    Failed {
        /// Why, and what to do.
        reason: String,
    },
}

impl Outcome {
    /// A short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Restored { .. } => "restored",
            Outcome::Recovered => "recovered",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One object's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectOutcome {
    /// Kind.
    pub kind: ObjectKind,
    /// Name.
    pub name: ObjectName,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Counts of a restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RestoreStats {
    /// Objects restored from backups.
    pub restored_objects: usize,
    /// Objects recovered from soft-delete.
    pub recovered_objects: usize,
    /// Objects left alone.
    pub skipped_objects: usize,
    /// Objects that failed.
    pub failed_objects: usize,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Source vault.
    pub vault: VaultName,
    /// Target vault.
    pub target: VaultName,
    /// The point in time restored, RFC 3339.
    pub at: String,
    /// Counts.
    pub stats: RestoreStats,
    /// Per object, in plan order.
    pub objects: Vec<ObjectOutcome>,
}

/// How a restore, verification or rebuild ended as a whole (maps to exit codes 0 / 3 / 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Nothing failed.
    Ok,
    /// Some things failed, others succeeded.
    Partial,
    /// Everything failed.
    Failed,
}

impl RestoreReport {
    /// Nothing failed → ok; some failed → partial; nothing but failures → failed.
    pub fn overall(&self) -> Overall {
        let s = &self.stats;
        if s.failed_objects == 0 {
            Overall::Ok
        } else if s.restored_objects + s.recovered_objects + s.skipped_objects > 0 {
            Overall::Partial
        } else {
            Overall::Failed
        }
    }
}

/// Progress hooks (a terminal progress bar in the CLI).
pub trait RestoreProgress: Send + Sync {
    /// The number of objects about to be handled.
    fn start(&self, total: usize);
    /// One object done.
    fn done(&self, outcome: &ObjectOutcome);
}

/// No progress output.
pub struct NoRestoreProgress;

impl RestoreProgress for NoRestoreProgress {
    fn start(&self, _total: usize) {}
    fn done(&self, _outcome: &ObjectOutcome) {}
}

/// The target's state for every selected name: per kind, one listing of the live objects and,
/// when some selected name is not live, one listing of the soft-deleted ones — a few paged calls
/// whatever the number of objects, so the survey does not spend a request per object of the
/// vault's throttle budget before the first restore.
pub async fn survey_target(
    target: &dyn VaultSource,
    selected: &[CaptureRecord],
) -> Result<BTreeMap<(ObjectKind, String), TargetState>, SourceError> {
    let mut states = BTreeMap::new();
    let mut kinds: Vec<ObjectKind> = selected.iter().map(|c| c.kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let active: std::collections::BTreeSet<String> = target
            .list(kind)
            .await?
            .into_iter()
            .map(|o| o.name.canonical())
            .collect();
        let mut absent_from_live = false;
        for c in selected.iter().filter(|c| c.kind == kind) {
            let key = c.name.canonical();
            if active.contains(&key) {
                states.insert((kind, key), TargetState::Active);
            } else {
                absent_from_live = true;
            }
        }
        if !absent_from_live {
            continue;
        }
        // One paged listing of the soft-deleted objects answers for every name at once: a
        // lookup per name would cost the throttle budget a request per object restored.
        let deleted: BTreeMap<String, Option<i64>> = target
            .list_deleted(kind)
            .await?
            .into_iter()
            .map(|d| (d.name.canonical(), d.scheduled_purge))
            .collect();
        for c in selected.iter().filter(|c| c.kind == kind) {
            let key = c.name.canonical();
            if states.contains_key(&(kind, key.clone())) {
                continue;
            }
            let state = match deleted.get(&key) {
                Some(scheduled_purge) => TargetState::SoftDeleted {
                    scheduled_purge: *scheduled_purge,
                },
                None => TargetState::Absent,
            };
            states.insert((kind, key), state);
        }
    }
    Ok(states)
}

/// Everything the executor needs besides the plan.
#[derive(Clone)]
pub struct Restorer {
    /// Where the blobs are.
    pub store: Arc<dyn BlobStore>,
    /// The vault written to.
    pub target: Arc<dyn VaultSource>,
    /// Opens the blobs. Never logged (its `Debug` is redacted anyway).
    pub identities: Arc<Identities>,
    /// Behaviour.
    pub options: RestoreOptions,
    /// Progress hooks.
    pub progress: Arc<dyn RestoreProgress>,
}

impl Restorer {
    /// Carries out `plan`. Never panics on external input; every object gets an outcome.
    pub async fn execute(&self, plan: &RestorePlan) -> RestoreReport {
        self.progress.start(plan.objects.len());
        let concurrency = self.options.concurrency.max(1);
        let mut outcomes: Vec<(usize, ObjectOutcome)> =
            futures::stream::iter(plan.objects.iter().enumerate())
                .map(|(i, object)| async move {
                    let outcome = self.one(plan, object).await;
                    let o = ObjectOutcome {
                        kind: object.kind,
                        name: object.name.clone(),
                        outcome,
                    };
                    match &o.outcome {
                        Outcome::Failed { reason } => {
                            warn!(target_vault = %plan.target.name, kind = %o.kind, name = %o.name, reason = %reason, "restore failed")
                        }
                        other => {
                            debug!(target_vault = %plan.target.name, kind = %o.kind, name = %o.name, outcome = other.word(), "restore step done")
                        }
                    }
                    self.progress.done(&o);
                    (i, o)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        outcomes.sort_by_key(|(i, _)| *i);
        let objects: Vec<ObjectOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
        let mut stats = RestoreStats::default();
        for o in &objects {
            match o.outcome {
                Outcome::Restored { .. } => stats.restored_objects += 1,
                Outcome::Recovered => stats.recovered_objects += 1,
                Outcome::Skipped { .. } => stats.skipped_objects += 1,
                Outcome::Failed { .. } => stats.failed_objects += 1,
            }
        }
        info!(vault = %plan.source.name, target_vault = %plan.target.name, at = %rfc3339(plan.at),
            restored = stats.restored_objects, recovered = stats.recovered_objects,
            skipped = stats.skipped_objects, failed = stats.failed_objects, "restore finished");
        RestoreReport {
            vault: plan.source.name.clone(),
            target: plan.target.name.clone(),
            at: rfc3339(plan.at),
            stats,
            objects,
        }
    }

    async fn one(&self, plan: &RestorePlan, object: &PlannedObject) -> Outcome {
        let what = format!("{} {}", singular(object.kind), object.name);
        let target = &plan.target.name;
        match &object.action {
            Action::Skip { reason } => Outcome::Skipped {
                reason: reason.clone(),
            },
            Action::Fail { reason } => Outcome::Failed {
                reason: reason.clone(),
            },
            Action::Recover => match self.target.recover(object.kind, &object.name).await {
                Ok(()) => Outcome::Recovered,
                Err(e) => Outcome::Failed {
                    reason: format!("recovering {what} in {target} failed: {e}"),
                },
            },
            Action::Restore => match self.open(plan, object).await {
                Err(reason) => Outcome::Failed { reason },
                Ok(payload) => self.restore(plan, object, &payload, false).await,
            },
            Action::PurgeThenRestore => {
                // Open first: a damaged blob must not cost the operator the soft-deleted copy.
                let payload = match self.open(plan, object).await {
                    Ok(p) => p,
                    Err(reason) => return Outcome::Failed { reason },
                };
                match self.target.purge(object.kind, &object.name).await {
                    Ok(()) => {}
                    // Purged meanwhile (or by the service): the name is free or about to be.
                    Err(e) if e.kind() == SourceErrorKind::NotFound => {}
                    Err(e) if e.kind() == SourceErrorKind::Forbidden => {
                        return Outcome::Failed {
                            reason: format!(
                                "purging soft-deleted {what} in {target} was refused (purge protection is on, or kvkeep lacks the purge permission): {e}; rerun with --on-conflict recover-then-skip, or restore into another vault with --to-vault"
                            ),
                        }
                    }
                    Err(e) => {
                        return Outcome::Failed {
                            reason: format!("purging soft-deleted {what} in {target} failed: {e}"),
                        }
                    }
                }
                self.restore(plan, object, &payload, true).await
            }
        }
    }

    /// Fetches, checks and opens the blob; returns the native backup bytes.
    async fn open(&self, plan: &RestorePlan, object: &PlannedObject) -> Result<Vec<u8>, String> {
        let what = format!("{} {}", singular(object.kind), object.name);
        let blob = &object.blob;
        let bytes = self.store.get(blob).await.map_err(|e| {
            if e.kind() == StoreErrorKind::NotFound {
                format!(
                    "the backup of {what} (blob {blob}) is missing from the store; restore it from another point in time with --at, and run `kvkeep verify` to find other gaps"
                )
            } else {
                format!("reading the backup of {what} (blob {blob}) failed: {e}")
            }
        })?;
        if bytes.len() as u64 != object.stored_bytes || sha256_hex(&bytes) != object.sha256 {
            return Err(format!(
                "the backup of {what} (blob {blob}) is damaged: {} bytes whose SHA-256 differs from the manifest's record ({} bytes); restore it from another point in time with --at",
                bytes.len(),
                object.stored_bytes
            ));
        }
        let expected = Expected::object(plan.source.name.clone(), object.kind, object.name.clone())
            .with_run(object.run.clone())
            .with_current_version(object.current_version.clone())
            .with_captured_at(object.captured_at);
        let identities = self.identities.clone();
        // age and zstd over up to 64 MiB: off the runtime threads.
        let opened =
            tokio::task::spawn_blocking(move || open_expecting(&bytes, &identities, &expected))
                .await
                .map_err(|e| format!("opening the backup of {what} stopped: {e}"))?;
        let opened = opened.map_err(|e| match e {
            CryptoError::Mismatch { differences } => format!(
                "the blob stored as the backup of {what} ({blob}) belongs to another object or run ({}): refused; it was swapped or copied in the store",
                differences.join("; ")
            ),
            CryptoError::NoMatchingIdentity { .. } => format!(
                "the backup of {what} cannot be opened with the given identity file: it was sealed to other recipients; use the identity matching the recipients configured when it was written"
            ),
            other => format!("the backup of {what} (blob {blob}) cannot be opened: {other}"),
        })?;
        if opened.header.mode != PayloadMode::Native {
            return Err(format!(
                "the backup of {what} is a portable capture, which this kvkeep cannot restore yet"
            ));
        }
        Ok(opened.payload)
    }

    async fn restore(
        &self,
        plan: &RestorePlan,
        object: &PlannedObject,
        payload: &[u8],
        after_purge: bool,
    ) -> Outcome {
        let what = format!("{} {}", singular(object.kind), object.name);
        let target = &plan.target.name;
        let deadline = tokio::time::Instant::now() + self.options.purge_wait;
        // The plan found the name free (or purged it): a 409 now is almost always a name the
        // service still blocks after a recent purge (DESIGN §2), so it is retried for a bounded
        // window rather than reported at once.
        let blocked_is_transient = after_purge || object.target_state == TargetState::Absent;
        loop {
            match self.target.restore(object.kind, payload).await {
                Ok(restored) => {
                    if restored.name.canonical() != object.name.canonical() {
                        return Outcome::Failed {
                            reason: format!(
                                "restoring {what} into {target} created {} instead: the blob's content does not match its envelope; check the store for tampering",
                                restored.name
                            ),
                        };
                    }
                    return Outcome::Restored {
                        version: restored.version.to_string(),
                    };
                }
                Err(e)
                    if blocked_is_transient
                        && matches!(
                            e.kind(),
                            SourceErrorKind::Conflict | SourceErrorKind::AlreadyExists
                        )
                        && tokio::time::Instant::now() < deadline =>
                {
                    debug!(kind = %object.kind, name = %object.name, "name blocked; retrying");
                    tokio::time::sleep(self.options.purge_retry_interval).await;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        SourceErrorKind::Conflict | SourceErrorKind::AlreadyExists
                    ) =>
                {
                    let reason = if after_purge {
                        format!(
                            "{what} was purged in {target} but the name stayed blocked for {}s; rerun the restore with --only {}/{} in a minute",
                            self.options.purge_wait.as_secs(),
                            object.kind,
                            object.name
                        )
                    } else {
                        format!(
                            "the name of {what} is taken in {target} although it was free when planned (created meanwhile, or purged moments ago and still blocked after {}s); rerun the restore to re-plan",
                            self.options.purge_wait.as_secs()
                        )
                    };
                    return Outcome::Failed { reason };
                }
                Err(e) => {
                    return Outcome::Failed {
                        reason: format!("restoring {what} into {target} failed: {e}"),
                    }
                }
            }
        }
    }
}
