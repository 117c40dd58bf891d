//! Carrying a prune out: forgetting the restore points the policy does not keep, and deleting
//! what nothing kept refers to any more, in an order no crash can turn into data loss.
//!
//! The steps, each idempotent and each starting from what the index says is left to do, so a
//! prune stopped anywhere (SIGKILL, power loss, a failed request) is completed by the next one:
//!
//! 1. **mark**: the points to forget stop being restore points in the index, in one
//!    transaction; each keeps what it holds, so none of its blobs can be deleted yet;
//! 2. **manifests**: each forgotten point's manifest head is deleted, then its parts; only then
//!    does the point let go of what it holds. `index rebuild` reads heads, so once a head is
//!    gone no rebuild can bring the point back with blobs missing. Points are independent, so
//!    [`MANIFEST_CONCURRENCY`] of them are worked on at once, each in that order;
//! 3. **sweep**: runs that ended without a manifest and are older than the grace period give up
//!    their blobs (a younger one may still be written by a run going elsewhere);
//! 4. **blobs**: every blob no run holds any more is deleted from the store, then its rows.
//!
//! A blob the store refuses to delete because of an immutability policy or legal hold is
//! postponed with the reason; other failures are reported; neither stops the rest of the prune.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{plan_prune, PrunePlan};
use crate::backup::manifest::{manifest_blob_key, timestamp};
use crate::config::VaultConfig;
use crate::index::{ForgottenManifest, Index, IndexError};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::{BlobStore, StoreError, StoreErrorKind};

/// Deletes in flight at once: enough to keep a remote store busy, few enough to stay far below
/// its request limits.
pub const DELETE_CONCURRENCY: usize = 16;

/// Forgotten points whose manifests are deleted at once: each is a head delete, a listing and
/// a delete per part, one after the other, so several points side by side keep the step from
/// being bound by one request's latency at a time.
pub const MANIFEST_CONCURRENCY: usize = 8;

/// Rows of deleted blobs dropped per index transaction.
const ROWS_PER_TRANSACTION: usize = 1_000;

/// A step that changes something, as announced to an observer just before it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneStep {
    /// Marking this many restore points forgotten in the index.
    MarkForgotten(usize),
    /// Deleting a forgotten point's manifest head.
    DeleteManifest(BlobKey),
    /// Deleting one part of a manifest.
    DeleteManifestPart(BlobKey),
    /// Recording that a forgotten point's manifest is gone (it lets go of its blobs).
    ManifestDeleted(RunId),
    /// Giving up the blobs of a run that never committed.
    Sweep(RunId),
    /// Deleting a blob no run holds.
    DeleteBlob(BlobKey),
    /// Dropping the rows of this many deleted blobs.
    DropRows(usize),
}

/// Told of every step before it is taken: progress for people, a place to stop for tests.
pub type PruneObserver = Arc<dyn Fn(&PruneStep) + Send + Sync>;

/// A blob prune could not delete this time, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deferred {
    /// The blob.
    pub blob: String,
    /// Why, and what to do.
    pub reason: String,
}

/// What a prune of one vault did.
#[derive(Debug, Clone)]
pub struct PruneOutcome {
    /// The plan it carried out: every restore point with its verdict and reasons.
    pub plan: PrunePlan,
    /// Restore points forgotten by this prune.
    pub forgotten_points: usize,
    /// Manifests deleted (of this prune's points and of any an earlier prune left).
    pub deleted_manifests: usize,
    /// Runs that never committed whose blobs were given up.
    pub swept_runs: usize,
    /// Object blobs deleted.
    pub deleted_blobs: usize,
    /// Their stored size.
    pub freed_bytes: u64,
    /// Deletes the store refused for an immutability policy or legal hold: retried by the next
    /// prune.
    pub postponed: Vec<Deferred>,
    /// Deletes that failed otherwise: retried by the next prune.
    pub failed: Vec<Deferred>,
    /// Whether the prune was stopped (shutdown) before it was done; the next one completes it.
    pub interrupted: bool,
}

impl PruneOutcome {
    /// Whether everything the plan asked for was done.
    pub fn complete(&self) -> bool {
        self.postponed.is_empty() && self.failed.is_empty() && !self.interrupted
    }
}

/// Runs `f` on the index off the async threads: index calls are blocking SQLite work.
async fn on_index<T: Send + 'static>(
    index: &Arc<Index>,
    f: impl FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    let index = index.clone();
    tokio::task::spawn_blocking(move || f(&index))
        .await
        .unwrap_or_else(|e| Err(IndexError::InvalidInput(format!("index task failed: {e}"))))
}

/// The outcome of one delete: done (or already done by an earlier prune), or deferred.
enum Deleted {
    Now,
    Already,
    Postponed(Deferred),
    Failed(Deferred),
}

async fn delete(store: &dyn BlobStore, key: &BlobKey) -> Deleted {
    match store.delete(key).await {
        Ok(()) => Deleted::Now,
        Err(e) if e.kind() == StoreErrorKind::NotFound => Deleted::Already,
        Err(e) => deferred(key.as_str(), &e),
    }
}

fn deferred(blob: &str, e: &StoreError) -> Deleted {
    let d = Deferred {
        blob: blob.to_string(),
        reason: e.to_string(),
    };
    if e.kind() == StoreErrorKind::Immutable {
        Deleted::Postponed(d)
    } else {
        Deleted::Failed(d)
    }
}

/// Where the parts of the manifest of `run`, started at `started_at`, are.
fn parts_prefix(vault: &VaultName, started_at: i64, run: &RunId) -> String {
    format!("manifest-parts/{vault}/{}-{run}/", timestamp(started_at))
}

/// Prunes `vault` at `now`: plans with its retention policy and carries the plan out (and any
/// prune an earlier crash left unfinished). The caller holds the vault's lock. Index errors
/// end the prune (what is done stays done, the rest is left for the next one); store errors
/// are reported per blob in the outcome.
pub async fn prune_vault(
    index: &Arc<Index>,
    store: &Arc<dyn BlobStore>,
    vault: &VaultConfig,
    now: DateTime<Utc>,
    observer: Option<PruneObserver>,
    cancel: &CancellationToken,
) -> Result<PruneOutcome, IndexError> {
    let observe = |step: PruneStep| {
        if let Some(o) = &observer {
            o(&step);
        }
    };
    let at = now.timestamp();
    let name = vault.name.clone();
    let plan = {
        let vault = vault.clone();
        on_index(index, move |i| plan_prune(i, &vault, now)).await?
    };
    let mut outcome = PruneOutcome {
        forgotten_points: 0,
        deleted_manifests: 0,
        swept_runs: 0,
        deleted_blobs: 0,
        freed_bytes: 0,
        postponed: Vec::new(),
        failed: Vec::new(),
        interrupted: false,
        plan,
    };

    // 1. Mark.
    let forget: Vec<RunId> = outcome
        .plan
        .decision
        .forgotten()
        .map(|p| p.run.clone())
        .collect();
    if !forget.is_empty() {
        observe(PruneStep::MarkForgotten(forget.len()));
        outcome.forgotten_points = forget.len();
        on_index(index, move |i| i.mark_forgotten(&forget, at)).await?;
    }

    // 2. Manifests: the head first, so that no rebuild sees the point once any part is gone.
    let pending = {
        let name = name.clone();
        on_index(index, move |i| i.forgotten_manifests(&name)).await?
    };
    // Points are independent, so several are deleted at once; within one point the order
    // (head, then its parts, then its row) is kept.
    let results: Vec<Option<PointDeleted>> = futures::stream::iter(pending)
        .map(|m| {
            let store = store.clone();
            let (name, observe) = (&name, &observe);
            async move {
                // No point is started once the token fired; those in flight finish.
                if cancel.is_cancelled() {
                    return None;
                }
                Some(delete_point(store.as_ref(), name, m, observe).await)
            }
        })
        .buffer_unordered(MANIFEST_CONCURRENCY)
        .collect()
        .await;
    let mut done = Vec::new();
    for result in results {
        let Some(point) = result else {
            outcome.interrupted = true;
            continue;
        };
        outcome.deleted_manifests += usize::from(point.head_deleted);
        outcome.postponed.extend(point.postponed);
        outcome.failed.extend(point.failed);
        done.extend(point.done);
    }
    for run in done {
        observe(PruneStep::ManifestDeleted(run.clone()));
        on_index(index, move |i| i.manifest_deleted(&run)).await?;
    }
    if outcome.interrupted {
        return Ok(outcome);
    }

    // 3. Sweep the runs that never committed, once past the grace period.
    let grace = i64::try_from(vault.retention.grace_period.as_secs()).unwrap_or(i64::MAX);
    let stale = {
        let name = name.clone();
        on_index(index, move |i| {
            i.uncommitted_runs_before(&name, at.saturating_sub(grace))
        })
        .await?
    };
    let mut store_only: Vec<(BlobKey, u64)> = Vec::new();
    if !stale.is_empty() {
        // Blobs such a run wrote may be in the store without a row (it stopped between the
        // upload and the index write): they are found by the run id in their names.
        match store.list(&format!("objects/{name}/")).await {
            Err(e) => outcome.failed.push(Deferred {
                blob: format!("objects/{name}/"),
                reason: format!(
                    "{e}; the blobs of runs that never finished are left for the next prune"
                ),
            }),
            Ok(listed) => {
                for (run, started_at) in stale {
                    if cancel.is_cancelled() {
                        outcome.interrupted = true;
                        return Ok(outcome);
                    }
                    if !sweepable(store.as_ref(), &name, &run, started_at, &mut outcome).await {
                        continue;
                    }
                    let prefix = parts_prefix(&name, started_at, &run);
                    if !delete_listed(
                        store.as_ref(),
                        &prefix,
                        &observe,
                        &mut outcome.postponed,
                        &mut outcome.failed,
                    )
                    .await
                    {
                        continue;
                    }
                    observe(PruneStep::Sweep(run.clone()));
                    let suffix = format!("-{run}.age");
                    store_only.extend(
                        listed
                            .iter()
                            .filter(|b| b.key.as_str().ends_with(&suffix))
                            .map(|b| (b.key.clone(), b.size_bytes)),
                    );
                    on_index(index, move |i| i.sweep_uncommitted(&run, at)).await?;
                    outcome.swept_runs += 1;
                }
            }
        }
    }

    // 4. Blobs no run holds, then their rows.
    let targets = {
        let name = name.clone();
        on_index(index, move |i| {
            let mut targets: BTreeMap<BlobKey, u64> = i.unheld_blobs(&name)?.into_iter().collect();
            for (key, size) in store_only {
                if !i.is_blob_held_by_other_than(&key, &[])? {
                    targets.entry(key).or_insert(size);
                }
            }
            Ok(targets)
        })
        .await?
    };
    let results: Vec<(BlobKey, u64, Option<Deleted>)> = futures::stream::iter(targets)
        .map(|(key, size)| {
            let store = store.clone();
            let observe = &observe;
            async move {
                // No delete is started once the token fired; those in flight finish.
                if cancel.is_cancelled() {
                    return (key, size, None);
                }
                observe(PruneStep::DeleteBlob(key.clone()));
                let done = delete(store.as_ref(), &key).await;
                (key, size, Some(done))
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let mut gone = Vec::new();
    for (key, size, done) in results {
        match done {
            None => outcome.interrupted = true,
            Some(Deleted::Now) => {
                outcome.deleted_blobs += 1;
                outcome.freed_bytes += size;
                gone.push(key);
            }
            Some(Deleted::Already) => gone.push(key),
            Some(Deleted::Postponed(d)) => outcome.postponed.push(d),
            Some(Deleted::Failed(d)) => outcome.failed.push(d),
        }
    }
    gone.sort();
    for batch in gone.chunks(ROWS_PER_TRANSACTION) {
        observe(PruneStep::DropRows(batch.len()));
        let batch = batch.to_vec();
        on_index(index, move |i| i.delete_captures(&batch)).await?;
    }
    outcome.postponed.sort_by(|a, b| a.blob.cmp(&b.blob));
    outcome.failed.sort_by(|a, b| a.blob.cmp(&b.blob));
    Ok(outcome)
}

/// Whether run `run` (no manifest in the index) really has none in the store either. A run
/// whose manifest was written just before a crash, before the index heard of it, is committed:
/// its blobs are kept and the operator told to rebuild the index.
async fn sweepable(
    store: &dyn BlobStore,
    vault: &VaultName,
    run: &RunId,
    started_at: i64,
    outcome: &mut PruneOutcome,
) -> bool {
    let Ok(head) = manifest_blob_key(vault, started_at, run) else {
        return false;
    };
    match store.head(&head).await {
        Err(e) if e.kind() == StoreErrorKind::NotFound => true,
        Ok(_) => {
            outcome.failed.push(Deferred {
                blob: head.to_string(),
                reason: format!("run {run} is recorded without a manifest, but its manifest is in the store; its blobs are kept: run `kvkeep index rebuild` to bring the index up to date"),
            });
            false
        }
        Err(e) => {
            outcome.failed.push(Deferred {
                blob: head.to_string(),
                reason: format!("{e}; the blobs of run {run} are kept until it can be checked"),
            });
            false
        }
    }
}

/// Deletes every blob under `prefix`; whether none is left.
async fn delete_listed(
    store: &dyn BlobStore,
    prefix: &str,
    observe: &(impl Fn(PruneStep) + Sync),
    postponed: &mut Vec<Deferred>,
    failed: &mut Vec<Deferred>,
) -> bool {
    let listed = match store.list(prefix).await {
        Ok(listed) => listed,
        Err(e) => {
            failed.push(Deferred {
                blob: prefix.to_string(),
                reason: e.to_string(),
            });
            return false;
        }
    };
    let mut all_gone = true;
    for part in listed {
        observe(PruneStep::DeleteManifestPart(part.key.clone()));
        match delete(store, &part.key).await {
            Deleted::Now | Deleted::Already => {}
            Deleted::Postponed(d) => {
                postponed.push(d);
                all_gone = false;
            }
            Deleted::Failed(d) => {
                failed.push(d);
                all_gone = false;
            }
        }
    }
    all_gone
}

/// What deleting one forgotten point's manifest did.
#[derive(Default)]
struct PointDeleted {
    /// Its head was deleted now (not by an earlier prune).
    head_deleted: bool,
    /// Its run, when head and parts are all gone: the index may drop the manifest's key.
    done: Option<RunId>,
    postponed: Vec<Deferred>,
    failed: Vec<Deferred>,
}

/// Deletes the manifest of forgotten point `m`: the head first, so that no rebuild sees the
/// point once any part is gone, then its parts. A head that stays keeps its parts too: a
/// rebuild may bring the point back, and it must then be whole.
async fn delete_point(
    store: &dyn BlobStore,
    vault: &VaultName,
    m: ForgottenManifest,
    observe: &(impl Fn(PruneStep) + Sync),
) -> PointDeleted {
    let mut point = PointDeleted::default();
    observe(PruneStep::DeleteManifest(m.manifest.clone()));
    match delete(store, &m.manifest).await {
        Deleted::Now => point.head_deleted = true,
        Deleted::Already => {}
        Deleted::Postponed(d) => {
            point.postponed.push(d);
            return point;
        }
        Deleted::Failed(d) => {
            point.failed.push(d);
            return point;
        }
    }
    let prefix = parts_prefix(vault, m.started_at, &m.run);
    if delete_listed(
        store,
        &prefix,
        observe,
        &mut point.postponed,
        &mut point.failed,
    )
    .await
    {
        point.done = Some(m.run);
    }
    point
}
