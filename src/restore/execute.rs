//! Carrying out a [`RestorePlan`]: survey the target before planning, then per object fetch the
//! blob, check it against the index, open it with the identities (off the runtime), check the
//! envelope's binding to vault, kind, name, run, current version and capture time, and restore
//! it through the [`VaultSource`] seam, applying the conflict policy.
//!
//! Per-object failures never stop the others; every object ends restored, recovered, skipped,
//! failed or interrupted with a reason a person can act on.
//!
//! Restore, purge and recover are not idempotent, so the layers below never repeat them after
//! an unknown outcome (a lost answer, a 5xx). This layer knows what success looks like and
//! checks before sending again: after a restore, whether the target holds the backup's version
//! ids (a `409` to a repeated restore is then kvkeep's own success, not a name taken); after a
//! purge, whether the deleted object is gone; after a recover, whether the object is active.
//!
//! Cancellation (Ctrl-C, SIGTERM): no object starts once the token fired (those are reported
//! interrupted), and every wait here — between re-sends, in the 409 window after a purge — ends
//! at once; a call already sent finishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::{rfc3339, singular, Action, PlannedObject, RestorePlan, TargetState};
use crate::crypto::{open_expecting, sha256_hex, CryptoError, Expected, Identities, PayloadMode};
use crate::index::CaptureRecord;
use crate::model::{ObjectKind, ObjectName, ObjectVersion, VaultName};
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
    /// How often a restore, purge or recover whose outcome was unknown is sent again (after
    /// checking it did not take effect).
    pub resend_attempts: u32,
    /// Pause before the first such re-send; doubled for each next one.
    pub resend_delay: Duration,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            concurrency: 4,
            purge_wait: Duration::from_secs(60),
            purge_retry_interval: Duration::from_secs(2),
            resend_attempts: 3,
            resend_delay: Duration::from_secs(1),
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
    /// Not (completely) carried out because kvkeep was asked to stop.
    Interrupted {
        /// What was and was not done, and what to do.
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
            Outcome::Interrupted { .. } => "interrupted",
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
    /// Objects not started or not finished because the restore was interrupted.
    pub interrupted_objects: usize,
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
    /// Stopped by Ctrl-C or SIGTERM before every object was handled (exit code 1).
    Interrupted,
}

impl RestoreReport {
    /// Nothing failed → ok; some failed → partial; nothing but failures → failed.
    pub fn overall(&self) -> Overall {
        let s = &self.stats;
        if s.interrupted_objects > 0 {
            Overall::Interrupted
        } else if s.failed_objects == 0 {
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
    /// Fired by Ctrl-C / SIGTERM: no further object starts, and waits end at once.
    pub cancel: CancellationToken,
}

impl Restorer {
    /// Carries out `plan`. Never panics on external input; every object gets an outcome.
    pub async fn execute(&self, plan: &RestorePlan) -> RestoreReport {
        self.progress.start(plan.objects.len());
        let concurrency = self.options.concurrency.max(1);
        let mut outcomes: Vec<(usize, ObjectOutcome)> =
            futures::stream::iter(plan.objects.iter().enumerate())
                .map(|(i, object)| async move {
                    let outcome = if self.cancel.is_cancelled() {
                        Outcome::Interrupted {
                            reason: "not started: the restore was interrupted; rerun it to restore the rest (what was restored is then skipped)".into(),
                        }
                    } else {
                        self.one(plan, object).await
                    };
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
                Outcome::Interrupted { .. } => stats.interrupted_objects += 1,
            }
        }
        info!(vault = %plan.source.name, target_vault = %plan.target.name, at = %rfc3339(plan.at),
            restored = stats.restored_objects, recovered = stats.recovered_objects,
            skipped = stats.skipped_objects, failed = stats.failed_objects,
            interrupted = stats.interrupted_objects, "restore finished");
        RestoreReport {
            vault: plan.source.name.clone(),
            target: plan.target.name.clone(),
            at: rfc3339(plan.at),
            stats,
            objects,
        }
    }

    async fn one(&self, plan: &RestorePlan, object: &PlannedObject) -> Outcome {
        match &object.action {
            Action::Skip { reason } => Outcome::Skipped {
                reason: reason.clone(),
            },
            Action::Fail { reason } => Outcome::Failed {
                reason: reason.clone(),
            },
            Action::Recover => self.recover(plan, object).await,
            Action::Restore => match self.open(plan, object).await {
                Err(reason) => self.failed_or_interrupted(reason),
                Ok(opened) => self.restore(plan, object, &opened, false).await,
            },
            Action::PurgeThenRestore => {
                // Open first: a damaged blob must not cost the operator the soft-deleted copy.
                let opened = match self.open(plan, object).await {
                    Ok(p) => p,
                    Err(reason) => return self.failed_or_interrupted(reason),
                };
                if let Err(outcome) = self.purge(plan, object).await {
                    return outcome;
                }
                self.restore(plan, object, &opened, true).await
            }
        }
    }

    /// A failure before anything was written is an interruption when the token fired meanwhile
    /// (a store wait cut short reports its last error).
    fn failed_or_interrupted(&self, reason: String) -> Outcome {
        if self.cancel.is_cancelled() {
            Outcome::Interrupted {
                reason: format!(
                    "interrupted before anything was written ({reason}); rerun the restore"
                ),
            }
        } else {
            Outcome::Failed { reason }
        }
    }

    /// Sleeps `delay` unless the token fires first (then `false`).
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// The delay before re-send number `n` (1-based).
    fn resend_delay(&self, n: u32) -> Duration {
        self.options
            .resend_delay
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
    }

    /// Recovers the soft-deleted object. An unknown outcome is settled by looking: active →
    /// recovered; still deleted → sent again; neither (the service is still recovering it) →
    /// looked at again.
    async fn recover(&self, plan: &RestorePlan, object: &PlannedObject) -> Outcome {
        let what = format!("{} {}", singular(object.kind), object.name);
        let target = &plan.target.name;
        let interrupted = || Outcome::Interrupted {
            reason: format!("interrupted while recovering {what} in {target}; rerun the restore"),
        };
        let mut send = true;
        let mut last: Option<SourceError> = None;
        for n in 0..=self.options.resend_attempts {
            if n > 0 && !self.pause(self.resend_delay(n)).await {
                return interrupted();
            }
            if send {
                match self.target.recover(object.kind, &object.name).await {
                    Ok(()) => return Outcome::Recovered,
                    Err(e) if e.is_interrupted() => return interrupted(),
                    Err(e) if e.kind() == SourceErrorKind::Transient => last = Some(e),
                    Err(e) => {
                        return Outcome::Failed {
                            reason: format!("recovering {what} in {target} failed: {e}"),
                        }
                    }
                }
            }
            // The outcome is unknown: look instead of sending again blindly.
            match self.target.get_properties(object.kind, &object.name).await {
                Ok(_) => return Outcome::Recovered,
                Err(e) if e.is_interrupted() => return interrupted(),
                Err(_) => {}
            }
            match self.target.get_deleted(object.kind, &object.name).await {
                Ok(deleted) => send = deleted.is_some(),
                Err(e) if e.is_interrupted() => return interrupted(),
                Err(_) => send = false,
            }
        }
        Outcome::Failed {
            reason: format!(
                "recovering {what} in {target} failed ({}) and the object is not active; check it in the vault and rerun with --only {}/{}",
                last.map_or_else(|| "no answer".to_string(), |e| e.to_string()),
                object.kind,
                object.name
            ),
        }
    }

    /// Purges the soft-deleted object to free its name. An unknown outcome is settled by
    /// looking: the deleted object gone → purged; still there → sent again.
    async fn purge(&self, plan: &RestorePlan, object: &PlannedObject) -> Result<(), Outcome> {
        let what = format!("{} {}", singular(object.kind), object.name);
        let target = &plan.target.name;
        let interrupted = || {
            Outcome::Interrupted {
            reason: format!(
                "interrupted before the purge of soft-deleted {what} in {target} was confirmed; rerun the restore"
            ),
        }
        };
        let mut n = 0;
        loop {
            let e = match self.target.purge(object.kind, &object.name).await {
                Ok(()) => return Ok(()),
                // Purged meanwhile (or by the service): the name is free or about to be.
                Err(e) if e.kind() == SourceErrorKind::NotFound => return Ok(()),
                Err(e) if e.is_interrupted() => return Err(interrupted()),
                Err(e) if e.kind() == SourceErrorKind::Forbidden => {
                    return Err(Outcome::Failed {
                        reason: format!(
                            "purging soft-deleted {what} in {target} was refused (purge protection is on, or kvkeep lacks the purge permission): {e}; rerun with --on-conflict recover-then-skip, or restore into another vault with --to-vault"
                        ),
                    })
                }
                Err(e) if e.kind() == SourceErrorKind::Transient => e,
                Err(e) => {
                    return Err(Outcome::Failed {
                        reason: format!("purging soft-deleted {what} in {target} failed: {e}"),
                    })
                }
            };
            // The answer was lost or the service failed: did the purge happen?
            match self.target.get_deleted(object.kind, &object.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if n < self.options.resend_attempts => {}
                Ok(Some(_)) => {
                    return Err(Outcome::Failed {
                        reason: format!(
                            "purging soft-deleted {what} in {target} failed: {e}; the soft-deleted copy is still there, nothing was restored"
                        ),
                    })
                }
                Err(check) if check.is_interrupted() => return Err(interrupted()),
                Err(check) => {
                    return Err(Outcome::Failed {
                        reason: format!(
                            "purging soft-deleted {what} in {target} failed ({e}) and whether it happened could not be checked ({check}); see `kvkeep restore --dry-run` for the name's state, then rerun"
                        ),
                    })
                }
            }
            n += 1;
            if !self.pause(self.resend_delay(n)).await {
                return Err(interrupted());
            }
        }
    }

    /// Whether the target holds `object` with exactly the version ids of the backup: then a
    /// restore whose answer was lost did take effect.
    async fn holds_backup(
        &self,
        object: &PlannedObject,
        opened: &Opened,
    ) -> Result<bool, SourceError> {
        let listed = self.target.list_versions(object.kind, &object.name).await?;
        let held: std::collections::BTreeSet<String> = listed
            .iter()
            .map(|v| v.version.as_str().to_ascii_lowercase())
            .collect();
        Ok(if opened.versions.is_empty() {
            // A blob that does not list its versions: its current version must be there.
            held.contains(&object.current_version.as_str().to_ascii_lowercase())
        } else {
            let expected: std::collections::BTreeSet<String> = opened
                .versions
                .iter()
                .map(|v| v.as_str().to_ascii_lowercase())
                .collect();
            held == expected
        })
    }

    /// Fetches, checks and opens the blob; returns the native backup bytes.
    async fn open(&self, plan: &RestorePlan, object: &PlannedObject) -> Result<Opened, String> {
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
        Ok(Opened {
            versions: opened.header.versions,
            payload: opened.payload,
        })
    }

    async fn restore(
        &self,
        plan: &RestorePlan,
        object: &PlannedObject,
        opened: &Opened,
        after_purge: bool,
    ) -> Outcome {
        let what = format!("{} {}", singular(object.kind), object.name);
        let target = &plan.target.name;
        let deadline = tokio::time::Instant::now() + self.options.purge_wait;
        // The plan found the name free (or purged it): a 409 now is almost always a name the
        // service still blocks after a recent purge (DESIGN §2), so it is retried for a bounded
        // window rather than reported at once.
        let blocked_is_transient = after_purge || object.target_state == TargetState::Absent;
        let interrupted = || Outcome::Interrupted {
            reason: if after_purge {
                format!(
                    "{what} was purged in {target} but the restore was interrupted before it was written; rerun the restore with --only {}/{} now",
                    object.kind, object.name
                )
            } else {
                format!("interrupted before {what} was written to {target}; rerun the restore")
            },
        };
        let restored = || Outcome::Restored {
            version: object.current_version.to_string(),
        };
        // Whether an earlier attempt may have taken effect (its answer was lost).
        let mut maybe_landed = false;
        let mut resends = 0;
        loop {
            match self.target.restore(object.kind, &opened.payload).await {
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
                Err(e) if e.is_interrupted() => return interrupted(),
                Err(e) if e.kind() == SourceErrorKind::Transient => {
                    // Lost answer or server failure: look before sending it again.
                    match self.holds_backup(object, opened).await {
                        Ok(true) => return restored(),
                        Ok(false) => {}
                        Err(check) if check.is_interrupted() => return interrupted(),
                        Err(_) => {}
                    }
                    if resends >= self.options.resend_attempts {
                        return Outcome::Failed {
                            reason: format!("restoring {what} into {target} failed: {e}"),
                        };
                    }
                    resends += 1;
                    maybe_landed = true;
                    if !self.pause(self.resend_delay(resends)).await {
                        return interrupted();
                    }
                }
                Err(e)
                    if maybe_landed
                        && matches!(
                            e.kind(),
                            SourceErrorKind::Conflict | SourceErrorKind::AlreadyExists
                        )
                        && matches!(self.holds_backup(object, opened).await, Ok(true)) =>
                {
                    // The earlier attempt took effect; only its answer was lost.
                    debug!(kind = %object.kind, name = %object.name, "restore had landed before its answer was lost");
                    return restored();
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
                    if !self.pause(self.options.purge_retry_interval).await {
                        return interrupted();
                    }
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

/// An opened backup: the bytes for the service and the version ids the envelope says it holds.
struct Opened {
    payload: Vec<u8>,
    versions: Vec<ObjectVersion>,
}
