//! The daemon's Prometheus metrics (DESIGN §8): what an operator alerts on — when each vault
//! last backed up, how its runs end, how hard Key Vault pushes back — served as OpenMetrics
//! text on `/metrics` (see [`super::http`]).
//!
//! Every family but `kvkeep_build_info` and the two of the HTML report
//! (`kvkeep_report_written_timestamp_seconds`, `kvkeep_report_failures_total`, one report for all
//! vaults) carries a `vault` label, so one dashboard and one set
//! of alert rules serve any number of vaults; [`DaemonMetrics::forget_vault`] drops a vault's
//! series once it leaves the configuration, or its last values would alert forever.
//!
//! A run counts as a *success* for `kvkeep_last_success_timestamp_seconds` only when it ends
//! `completed`. A `partially_failed` run backed up most objects but not all of them, and the
//! ones it missed have no fresh backup, so it does not move the timestamp: a vault that keeps
//! failing on the same object shows up as an RPO breach, which it is for that object.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::backup::{BackupPlan, BackupReport, Progress};
use crate::index::RunStatus;
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::source::RequestCounters;

/// Upper bounds of the run-duration buckets, in seconds: a quiet vault finishes in about a
/// second, a first backup of a large throttled vault can take hours.
const RUN_DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// Every status a run can be reported with; `running` is never a final one, but listing it
/// lets [`DaemonMetrics::forget_vault`] remove whatever a report carried.
const STATUSES: [RunStatus; 5] = [
    RunStatus::Completed,
    RunStatus::PartiallyFailed,
    RunStatus::Failed,
    RunStatus::Interrupted,
    RunStatus::Running,
];

/// What became of an object in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Captured,
    Unchanged,
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Captured, Outcome::Unchanged, Outcome::Failed];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Captured => "captured",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VaultLabels {
    vault: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    vault: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ObjectLabels {
    vault: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NotifierLabels {
    vault: String,
    notifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn vault_labels(vault: &VaultName) -> VaultLabels {
    VaultLabels {
        vault: vault.to_string(),
    }
}

fn status_labels(vault: &VaultName, status: RunStatus) -> StatusLabels {
    StatusLabels {
        vault: vault.to_string(),
        status: status.as_str(),
    }
}

fn object_labels(vault: &VaultName, kind: ObjectKind, outcome: Outcome) -> ObjectLabels {
    ObjectLabels {
        vault: vault.to_string(),
        kind: kind.as_str(),
        outcome: outcome.as_str(),
    }
}

fn run_duration_histogram() -> Histogram {
    Histogram::new(RUN_DURATION_BUCKETS)
}

/// From on time to far behind: 10 ms up to 10 min (a vault waiting for a parallel slot).
const START_DELAY_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 600.0];

fn start_delay_histogram() -> Histogram {
    Histogram::new(START_DELAY_BUCKETS)
}

/// Running totals read from elsewhere (the rate limiter, the scheduler's agenda) and the part
/// of them already added to their counters.
#[derive(Debug, Default)]
struct Seen {
    throttled: HashMap<VaultName, u64>,
    retries: HashMap<VaultName, u64>,
    skipped_ticks: HashMap<VaultName, u64>,
    /// Notifier names that failed per vault: a family cannot list its label sets, and
    /// [`DaemonMetrics::forget_vault`] must name every one it removes.
    notifiers: HashMap<VaultName, BTreeSet<String>>,
}

/// Adds to `counter` what `total` grew by since `last`. A total below `last` means its source
/// started again from zero (a new rate limiter or agenda after a reload): all of it is new.
/// A reset that grew past `last` between two reads goes unnoticed and undercounts; a counter
/// that undercounts a little is better than one that jumps.
fn advance(counter: &Counter, last: &mut u64, total: u64) {
    let delta = if total >= *last { total - *last } else { total };
    counter.inc_by(delta);
    *last = total;
}

/// The daemon's metrics: one registry, shared (behind an `Arc`) by the scheduler loop, the
/// runs' [`MetricsProgress`] and the HTTP endpoint. Every method takes `&self` and is quick.
#[derive(Debug)]
pub struct DaemonMetrics {
    registry: Registry,
    last_success: Family<VaultLabels, Gauge>,
    last_run_status: Family<StatusLabels, Gauge>,
    runs: Family<StatusLabels, Counter>,
    objects: Family<ObjectLabels, Counter>,
    throttled: Family<VaultLabels, Counter>,
    retries: Family<VaultLabels, Counter>,
    run_duration: Family<VaultLabels, Histogram, fn() -> Histogram>,
    start_delay: Family<VaultLabels, Histogram, fn() -> Histogram>,
    uploaded: Family<VaultLabels, Counter>,
    next_run: Family<VaultLabels, Gauge>,
    last_verify: Family<VaultLabels, Gauge>,
    last_verify_success: Family<VaultLabels, Gauge>,
    skipped_ticks: Family<VaultLabels, Counter>,
    notifications_failed: Family<NotifierLabels, Counter>,
    pruned_points: Family<VaultLabels, Counter>,
    pruned_blobs: Family<VaultLabels, Counter>,
    pruned_bytes: Family<VaultLabels, Counter>,
    prune_deferred: Family<VaultLabels, Counter>,
    prune_failures: Family<VaultLabels, Counter>,
    held_elsewhere: Family<VaultLabels, Counter>,
    takeovers: Family<VaultLabels, Counter>,
    report_written: Gauge,
    report_failures: Counter,
    /// Never held across an `.await` (nothing here awaits), so a std mutex suffices.
    seen: Mutex<Seen>,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonMetrics {
    /// Every family registered, with no series yet but `kvkeep_build_info`.
    pub fn new() -> Self {
        let mut metrics = DaemonMetrics {
            registry: Registry::with_prefix("kvkeep"),
            last_success: Family::default(),
            last_run_status: Family::default(),
            runs: Family::default(),
            objects: Family::default(),
            throttled: Family::default(),
            retries: Family::default(),
            run_duration: Family::new_with_constructor(run_duration_histogram),
            start_delay: Family::new_with_constructor(start_delay_histogram),
            uploaded: Family::default(),
            next_run: Family::default(),
            last_verify: Family::default(),
            last_verify_success: Family::default(),
            skipped_ticks: Family::default(),
            notifications_failed: Family::default(),
            pruned_points: Family::default(),
            pruned_blobs: Family::default(),
            pruned_bytes: Family::default(),
            prune_deferred: Family::default(),
            prune_failures: Family::default(),
            held_elsewhere: Family::default(),
            takeovers: Family::default(),
            report_written: Gauge::default(),
            report_failures: Counter::default(),
            seen: Mutex::new(Seen::default()),
        };
        let registry = &mut metrics.registry;
        // The client appends the unit and, for counters, `_total` to these names.
        registry.register_with_unit(
            "last_success_timestamp",
            "When the vault's last completed run ended (Unix time)",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register(
            "last_run_status",
            "1 for the status the vault's last run ended with, 0 for the others",
            metrics.last_run_status.clone(),
        );
        registry.register("runs", "Runs ended, by status", metrics.runs.clone());
        registry.register(
            "objects",
            "Objects handled by runs, by kind and outcome (captured, unchanged, failed)",
            metrics.objects.clone(),
        );
        registry.register(
            "throttled_requests",
            "Requests Key Vault answered with 429 (throttled)",
            metrics.throttled.clone(),
        );
        registry.register(
            "request_retries",
            "Requests to Key Vault repeated after a throttled or transient failure",
            metrics.retries.clone(),
        );
        registry.register_with_unit(
            "run_duration",
            "How long the vault's runs took",
            Unit::Seconds,
            metrics.run_duration.clone(),
        );
        registry.register_with_unit(
            "start_delay",
            "How late scheduled backups started against their fire time",
            Unit::Seconds,
            metrics.start_delay.clone(),
        );
        registry.register_with_unit(
            "uploaded",
            "Ciphertext written to the store by runs (object blobs and manifests)",
            Unit::Bytes,
            metrics.uploaded.clone(),
        );
        registry.register_with_unit(
            "next_run_timestamp",
            "When the vault's next scheduled run is due (Unix time)",
            Unit::Seconds,
            metrics.next_run.clone(),
        );
        registry.register_with_unit(
            "last_verify_timestamp",
            "When the vault's last verification ended (Unix time)",
            Unit::Seconds,
            metrics.last_verify.clone(),
        );
        registry.register(
            "last_verify_success",
            "1 when the vault's last verification found no problem, 0 when it found some",
            metrics.last_verify_success.clone(),
        );
        registry.register(
            "skipped_ticks",
            "Scheduled runs skipped because the vault's previous run was still going",
            metrics.skipped_ticks.clone(),
        );
        registry.register(
            "notifications_failed",
            "Notifications that could not be delivered, by notifier",
            metrics.notifications_failed.clone(),
        );
        registry.register(
            "pruned_points",
            "Restore points forgotten by the daemon's prunes",
            metrics.pruned_points.clone(),
        );
        registry.register(
            "pruned_blobs",
            "Object blobs the daemon's prunes deleted from the store",
            metrics.pruned_blobs.clone(),
        );
        registry.register_with_unit(
            "pruned",
            "Stored bytes the daemon's prunes freed",
            Unit::Bytes,
            metrics.pruned_bytes.clone(),
        );
        registry.register(
            "prune_deferred_deletes",
            "Deletes a prune left for the next one: refused by an immutability policy or failed",
            metrics.prune_deferred.clone(),
        );
        registry.register(
            "prune_failures",
            "Prunes that could not run or stopped before the end",
            metrics.prune_failures.clone(),
        );
        registry.register(
            "backups_held_elsewhere",
            "Scheduled backups not started because another kvkeep instance held the vault's lease",
            metrics.held_elsewhere.clone(),
        );
        registry.register(
            "vault_takeovers",
            "Vault leases taken over from a kvkeep instance that never released them and left a backup run or a prune unfinished (it died, hung or lost the store)",
            metrics.takeovers.clone(),
        );
        registry.register_with_unit(
            "report_written_timestamp",
            "When the daemon last wrote the HTML report of [report] html_path (Unix time)",
            Unit::Seconds,
            metrics.report_written.clone(),
        );
        registry.register(
            "report_failures",
            "Times the HTML report of [report] html_path could not be built or written",
            metrics.report_failures.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label says which kvkeep is running",
            build_info,
        );
        metrics
    }

    /// A run of `report.vault` ended: counts it by status, marks that status as the last one,
    /// records its duration and uploaded bytes, and, when it completed, its end as the last
    /// success.
    pub fn run_finished(&self, report: &BackupReport) {
        let vault = &report.vault;
        self.runs
            .get_or_create(&status_labels(vault, report.status))
            .inc();
        for status in STATUSES {
            let labels = status_labels(vault, status);
            if status == report.status {
                self.last_run_status.get_or_create(&labels).set(1);
            } else if status != RunStatus::Running {
                self.last_run_status.get_or_create(&labels).set(0);
            }
        }
        let seconds = report.finished_at.saturating_sub(report.started_at).max(0);
        self.run_duration
            .get_or_create(&vault_labels(vault))
            .observe(seconds as f64);
        self.uploaded
            .get_or_create(&vault_labels(vault))
            .inc_by(report.stats.uploaded_bytes);
        if report.status == RunStatus::Completed {
            self.last_success
                .get_or_create(&vault_labels(vault))
                .set(report.finished_at);
        }
    }

    /// Sets the last success of `vault` from history, at start: the newest `completed` run in
    /// the index, ended at `at`. Without it a restart would drop the series until the next
    /// completed run, and an RPO alert on it could not fire for a vault that keeps failing.
    /// Never moves the value back.
    pub fn seed_last_success(&self, vault: &VaultName, at: DateTime<Utc>) {
        let gauge = self.last_success.get_or_create(&vault_labels(vault));
        if gauge.get() < at.timestamp() {
            gauge.set(at.timestamp());
        }
    }

    /// An object of a run is done: captured when `ok`, failed otherwise.
    pub fn object_done(&self, vault: &VaultName, kind: ObjectKind, ok: bool) {
        let outcome = if ok {
            Outcome::Captured
        } else {
            Outcome::Failed
        };
        self.objects
            .get_or_create(&object_labels(vault, kind, outcome))
            .inc();
    }

    /// A run's plan is ready: its unchanged objects are done already, so they are counted here.
    pub fn plan_ready(&self, plan: &BackupPlan) {
        for kind in ObjectKind::ALL {
            let unchanged = plan
                .unchanged
                .iter()
                .filter(|u| u.object.kind == kind)
                .count() as u64;
            if unchanged > 0 {
                self.objects
                    .get_or_create(&object_labels(&plan.vault, kind, Outcome::Unchanged))
                    .inc_by(unchanged);
            }
        }
    }

    /// When the next run of `vault` is due; `None` (paused, or no schedule) removes the series
    /// rather than zeroing it, so that `time() - kvkeep_next_run_timestamp_seconds` never
    /// reads as a run 56 years late.
    pub fn set_next_run(&self, vault: &VaultName, at: Option<DateTime<Utc>>) {
        match at {
            Some(at) => {
                self.next_run
                    .get_or_create(&vault_labels(vault))
                    .set(at.timestamp());
            }
            None => {
                self.next_run.remove(&vault_labels(vault));
            }
        }
    }

    /// A verification of `vault` ended at `at`; `ok` when it found no problem.
    pub fn verify_finished(&self, vault: &VaultName, at: DateTime<Utc>, ok: bool) {
        let labels = vault_labels(vault);
        self.last_verify.get_or_create(&labels).set(at.timestamp());
        self.last_verify_success
            .get_or_create(&labels)
            .set(i64::from(ok));
    }

    /// The scheduler has skipped `total` ticks of `vault` so far ([`crate::scheduler::Agenda::skipped`]);
    /// the counter grows by what is new since the last call.
    pub fn observe_skipped_ticks(&self, vault: &VaultName, total: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.skipped_ticks.entry(vault.clone()).or_default();
        advance(
            &self.skipped_ticks.get_or_create(&vault_labels(vault)),
            last,
            total,
        );
    }

    /// The rate limiter's totals for `vault` ([`crate::source::RateLimiter::counters`]); the
    /// counters grow by what is new since the last call.
    pub fn observe_requests(&self, vault: &VaultName, counters: RequestCounters) {
        let labels = vault_labels(vault);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.throttled.entry(vault.clone()).or_default();
        advance(
            &self.throttled.get_or_create(&labels),
            last,
            counters.throttled,
        );
        let last = seen.retries.entry(vault.clone()).or_default();
        advance(&self.retries.get_or_create(&labels), last, counters.retries);
    }

    /// A scheduled backup of `vault` started `late` after its fire time.
    pub fn backup_started(&self, vault: &VaultName, late: std::time::Duration) {
        self.start_delay
            .get_or_create(&vault_labels(vault))
            .observe(late.as_secs_f64());
    }

    /// A scheduled backup of `vault` was not started: another kvkeep instance holds the vault's
    /// lease (and is backing it up). Not a run: `kvkeep_runs_total` does not count it.
    pub fn backup_skipped(&self, vault: &VaultName) {
        self.held_elsewhere
            .get_or_create(&vault_labels(vault))
            .inc();
    }

    /// This instance took `vault` over from one that left work unfinished (see
    /// [`crate::backup::VaultClaim::took_over`]).
    pub fn vault_taken_over(&self, vault: &VaultName) {
        self.takeovers.get_or_create(&vault_labels(vault)).inc();
    }

    /// A notification about `vault` through the notifier named `notifier` could not be
    /// delivered.
    pub fn notification_failed(&self, vault: &VaultName, notifier: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .notifiers
            .entry(vault.clone())
            .or_default()
            .insert(notifier.to_string());
        self.notifications_failed
            .get_or_create(&NotifierLabels {
                vault: vault.to_string(),
                notifier: notifier.to_string(),
            })
            .inc();
    }

    /// A prune of `vault` ended: what it forgot and freed, what it left for the next prune,
    /// and whether it failed or stopped.
    pub fn prune_finished(
        &self,
        vault: &VaultName,
        outcome: &Result<crate::retention::PruneOutcome, String>,
    ) {
        let labels = vault_labels(vault);
        match outcome {
            Ok(o) => {
                self.pruned_points
                    .get_or_create(&labels)
                    .inc_by(o.forgotten_points as u64);
                self.pruned_blobs
                    .get_or_create(&labels)
                    .inc_by(o.deleted_blobs as u64);
                self.pruned_bytes
                    .get_or_create(&labels)
                    .inc_by(o.freed_bytes);
                self.prune_deferred
                    .get_or_create(&labels)
                    .inc_by((o.postponed.len() + o.failed.len()) as u64);
                if o.interrupted {
                    self.prune_failures.get_or_create(&labels).inc();
                }
            }
            Err(_) => {
                self.prune_failures.get_or_create(&labels).inc();
            }
        }
    }

    /// Drops every series of `vault`, for a vault removed from the configuration: its last
    /// values would otherwise stay exposed, and alert, for the life of the process.
    pub fn forget_vault(&self, vault: &VaultName) {
        let labels = vault_labels(vault);
        for family in [
            &self.last_success,
            &self.next_run,
            &self.last_verify,
            &self.last_verify_success,
        ] {
            family.remove(&labels);
        }
        for family in [
            &self.throttled,
            &self.retries,
            &self.uploaded,
            &self.skipped_ticks,
            &self.pruned_points,
            &self.pruned_blobs,
            &self.pruned_bytes,
            &self.prune_deferred,
            &self.prune_failures,
            &self.held_elsewhere,
            &self.takeovers,
        ] {
            family.remove(&labels);
        }
        self.run_duration.remove(&labels);
        self.start_delay.remove(&labels);
        for status in STATUSES {
            let labels = status_labels(vault, status);
            self.runs.remove(&labels);
            self.last_run_status.remove(&labels);
        }
        for kind in ObjectKind::ALL {
            for outcome in Outcome::ALL {
                self.objects.remove(&object_labels(vault, kind, outcome));
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.throttled.remove(vault);
        seen.retries.remove(vault);
        seen.skipped_ticks.remove(vault);
        for notifier in seen.notifiers.remove(vault).unwrap_or_default() {
            self.notifications_failed.remove(&NotifierLabels {
                vault: vault.to_string(),
                notifier,
            });
        }
    }

    /// The HTML report was written (`Some(when)`) or could not be (`None`).
    pub fn report_finished(&self, written_at: Option<DateTime<Utc>>) {
        match written_at {
            Some(at) => {
                self.report_written.set(at.timestamp());
            }
            None => {
                self.report_failures.inc();
            }
        }
    }

    /// The OpenMetrics text exposition of every metric, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and every label value is a plain string the
        // encoder escapes; an error here would be a bug in the client library.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

/// Feeds a run's progress into [`DaemonMetrics`]: the daemon hands one to every run it starts.
#[derive(Debug, Clone)]
pub struct MetricsProgress {
    metrics: std::sync::Arc<DaemonMetrics>,
}

impl MetricsProgress {
    /// Progress that records into `metrics`.
    pub fn new(metrics: std::sync::Arc<DaemonMetrics>) -> Self {
        MetricsProgress { metrics }
    }
}

impl Progress for MetricsProgress {
    fn planned(&self, plan: &BackupPlan) {
        self.metrics.plan_ready(plan);
    }

    fn object_done(&self, vault: &VaultName, kind: ObjectKind, _name: &ObjectName, ok: bool) {
        self.metrics.object_done(vault, kind, ok);
    }

    fn finished(&self, report: &BackupReport) {
        self.metrics.run_finished(report);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
