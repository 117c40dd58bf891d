//! One scheduled job, run: a vault's backup with its notifications, metrics and (with
//! `prune = true`) the prune after it, or its quick verification.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::metrics::{DaemonMetrics, MetricsProgress};
use super::{Job, State, Task};
use crate::backup::Runner;
use crate::config::VaultConfig;
use crate::restore::verify::verify_blobs;
use crate::scheduler::WallClock;

/// Runs `job` with the parts of the configuration in force: the vault's backup, with its
/// notifications and metrics, or its quick verification.
pub(super) async fn run_job(
    state: Arc<State>,
    job: Job,
    clock: WallClock,
    cancel: CancellationToken,
) {
    let generation = state.current();
    let runner = &generation.runner;
    let metrics = &state.metrics;
    // A vault removed by a reload after its tick was taken is not started.
    let Some(vault) = runner.config().vault(&job.vault).cloned() else {
        return;
    };
    match job.task {
        Task::Backup => {
            let notifier = &generation.notifier;
            let progress = Arc::new(MetricsProgress::new(metrics.clone()));
            // Claimed first (this host's lock, then the vault's lease), so that a vault another
            // instance is backing up is skipped quietly: no start ping, no run in the metrics,
            // no notification — that instance's run is the one that counts.
            let (started, r) = match runner.claim_backup(&vault, &cancel).await {
                Ok(claim) => {
                    if claim.took_over().is_some() {
                        metrics.vault_taken_over(&vault.name);
                    }
                    // Every instance's schedule fires at the same instants; one that took the
                    // lease after the winner released it finds the fire time served (its sync
                    // under the lease shows the winner's restore point) and leaves it at that.
                    let fire = vault
                        .schedule
                        .as_ref()
                        .and_then(|s| s.previous_at_or_before(clock()))
                        .map(|t| t.timestamp());
                    if let Some(fire) = fire {
                        if let Some(point) = runner.restore_point_since(&vault, fire).await {
                            claim.release().await;
                            tracing::info!(vault = %vault.name, run = %point.run,
                                "scheduled backup skipped: the restore point of this fire time is already made (by another kvkeep instance)");
                            metrics.backup_skipped(&vault.name);
                            state.report.wanted();
                            return;
                        }
                    }
                    // The start ping goes out beside the run, never in front of it.
                    futures::join!(
                        notifier.run_started(&vault.name),
                        runner.backup_claimed(&vault, claim, progress)
                    )
                }
                Err(r) if r.held_elsewhere.is_some() => {
                    let by = r.held_elsewhere.as_ref().and_then(|h| h.by.as_ref());
                    tracing::info!(vault = %r.vault,
                        held_by = by.map_or("an unnamed instance", |h| h.instance.as_str()),
                        "scheduled backup skipped: another kvkeep instance holds the vault's lease and is backing it up");
                    metrics.backup_skipped(&vault.name);
                    state.report.wanted();
                    return;
                }
                // Not started for another reason (this host's lock, the store): told as a
                // failed run, as it always was.
                Err(r) => (notifier.run_started(&vault.name).await, r),
            };
            tracing::info!(vault = %r.vault, run = %r.run, status = %r.status,
                captured = r.stats.captured_objects, failed = r.stats.failed_objects,
                "scheduled backup finished");
            // Awaited, so that a stop still reports the interrupted run (each receiver is
            // bounded by its own timeout, and the stop by shutdown_timeout).
            let finished = notifier.run_finished(&r).await;
            for failure in started.iter().chain(&finished) {
                metrics.notification_failed(&vault.name, &failure.notifier);
            }
            if vault.retention.prune && r.status.counts_for_retention() && !cancel.is_cancelled() {
                prune(runner, &vault, metrics, &cancel).await;
            }
        }
        Task::Verify => {
            if let Some(ok) = quick_verify(runner, &vault, clock.clone(), &cancel).await {
                metrics.verify_finished(&vault.name, clock(), ok);
            }
        }
    }
    state.report.wanted();
}

/// The prune after a backup that made a restore point, for a vault with `prune = true`: the
/// same prune as `kvkeep prune`, under the vault's lock; a stop leaves the rest for the next.
async fn prune(
    runner: &Runner,
    vault: &VaultConfig,
    metrics: &DaemonMetrics,
    cancel: &CancellationToken,
) {
    let outcome = match runner.prune_unless_held(vault, cancel).await {
        Ok(Some(outcome)) => Ok(outcome),
        // Another instance took the vault between this backup and its prune (its schedule
        // fired meanwhile): its work, not a failure; the next prune here catches up anyway.
        Ok(None) => {
            tracing::info!(vault = %vault.name,
                "prune skipped: another kvkeep instance holds the vault's lease");
            return;
        }
        Err(e) => Err(e),
    };
    match &outcome {
        Ok(o) => {
            let complete = o.complete();
            for d in o.postponed.iter().chain(&o.failed).take(20) {
                tracing::warn!(vault = %vault.name, blob = %d.blob, reason = %d.reason,
                    "prune left a delete for the next prune");
            }
            if complete {
                tracing::info!(vault = %vault.name, forgotten = o.forgotten_points,
                    kept = o.plan.decision.kept().count(), blobs = o.deleted_blobs,
                    bytes = o.freed_bytes, "prune finished");
            } else {
                tracing::warn!(vault = %vault.name, forgotten = o.forgotten_points,
                    blobs = o.deleted_blobs, postponed = o.postponed.len(),
                    failed = o.failed.len(), stopped = o.interrupted,
                    "prune finished with deletes left for the next prune");
            }
        }
        Err(e) => tracing::error!(vault = %vault.name, error = %e, "prune failed"),
    }
    metrics.prune_finished(&vault.name, &outcome);
}

/// The scheduled quick verification of `vault`: every blob its committed runs reference is in
/// the store with its recorded size. The result is recorded in the index like `kvkeep verify`'s;
/// returned is whether all was well, or `None` when it was cut short (a stop) or could not run.
async fn quick_verify(
    runner: &Runner,
    vault: &VaultConfig,
    clock: WallClock,
    cancel: &CancellationToken,
) -> Option<bool> {
    let store = runner.store().cloned()?;
    let result = verify_blobs(
        runner.index().clone(),
        store,
        &vault.name,
        None,
        runner.config().limits.concurrency,
        clock().timestamp(),
        cancel,
    )
    .await;
    match result {
        Ok(report) if report.interrupted() => {
            tracing::info!(vault = %vault.name, "scheduled quick verify stopped before the end");
            None
        }
        Ok(report) if report.ok() => {
            tracing::info!(vault = %vault.name, blobs = report.checked_blobs,
                manifests = report.checked_manifests, "scheduled quick verify: all blobs present");
            Some(true)
        }
        Ok(report) => {
            for p in report.problems.iter().take(20) {
                tracing::error!(vault = %vault.name, object = %p.object, blob = %p.blob,
                    reason = %p.reason, "scheduled quick verify: problem");
            }
            tracing::error!(vault = %vault.name, problems = report.problems.len(),
                blobs = report.checked_blobs,
                "scheduled quick verify found problems; run `kvkeep verify --vault` for the full list");
            Some(false)
        }
        Err(e) => {
            tracing::error!(vault = %vault.name, error = %e, "scheduled quick verify failed");
            Some(false)
        }
    }
}
