//! `kvkeep daemon`: the scheduled backups and quick verifications of every configured vault, in
//! one long-running process (DESIGN §8). The scheduler's loop ([`crate::scheduler`]) starts
//! each job through the backup [`Runner`] that `kvkeep backup` uses, so a scheduled run is
//! exactly a manual one: same locks, same rate limits, same manifest.
//!
//! - SIGTERM or Ctrl-C stops starting runs, lets the objects in flight finish and commits them
//!   (`interrupted`), within `[daemon] shutdown_timeout`.
//! - SIGHUP re-reads the configuration. A file with problems is logged problem by problem and
//!   the previous configuration stays in force; a good one replaces the runner for every run
//!   started from then on (runs in flight keep theirs) and the schedules are re-planned:
//!   removed vaults stop being scheduled, added ones are scheduled. The rate limiter survives,
//!   so throttle budgets already spent are not handed out twice.
//! - After each scheduled backup, the `[[notify]]` entries hear its outcome ([`Notifier`]); a
//!   notification that fails is logged and never fails the run.
//! - Every `[daemon] sync_interval` (and at start) each vault's runs other instances committed
//!   to the shared store are synced into the index (`daemon/sync.rs`).
//! - With `[report] html_path`, the HTML report is rewritten at start and after each run, and
//!   served at `/report` (`daemon/report.rs`).
//! - Under systemd (`Type=notify`) it sends READY=1 once the index, store and recipients are
//!   open, a STATUS= line and WATCHDOG=1 at every wake-up of the scheduler loop,
//!   RELOADING=1 with MONOTONIC_USEC while reloading, and STOPPING=1 when a stop begins.

pub mod http;
mod jobs;
pub mod metrics;
mod observe;
mod reload;
mod report;
mod run;
mod sync;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use jobs::{jobs_of, Job, Task};

use crate::backup::{Clock, Runner};
use crate::notify::Notifier;
use crate::scheduler::{run_loop, Agenda, LoopOptions, StartRun, WallClock};
use http::{Heartbeat, HttpState};
use metrics::DaemonMetrics;

/// Sends `states` to systemd when it supervises the process (`NOTIFY_SOCKET` set); a failure is
/// logged, never fatal: the backups matter more than the status line.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The one-line status systemd shows (`systemctl status kvkeep`).
fn status_line(
    agenda: &Agenda<Job>,
    running: usize,
    now: DateTime<Utc>,
    problem: Option<&str>,
) -> String {
    // Vaults, not jobs: a vault's backup and its quick verify are one vault to an operator.
    let vaults = agenda
        .jobs()
        .map(|job| &job.vault)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut line = match agenda.next_due_overall() {
        Some((job, at)) => format!(
            "{vaults} vault(s) scheduled, {running} running; next: {job} in {}s",
            (at - now).num_seconds().max(0)
        ),
        None => format!("{vaults} vault(s) scheduled, {running} running"),
    };
    if let Some(problem) = problem {
        line.push_str("; ");
        line.push_str(problem);
    }
    line
}

/// How the daemon was started.
pub struct DaemonOptions {
    /// The configuration file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// The wall clock the scheduler reads (production: [`crate::clock::now`]).
    pub clock: WallClock,
    /// The clock runs stamp their records with (production: [`crate::backup::system_clock`]).
    pub run_clock: Clock,
    /// The health and metrics endpoint's socket (`[daemon] listen`, bound by the caller so
    /// that a taken port stops the start with a clear error); `None` when turned off.
    pub listener: Option<tokio::net::TcpListener>,
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every run in flight wound down and was committed.
    Cleanly,
    /// `shutdown_timeout` passed with runs still going; they are left `running` in the index
    /// and marked interrupted when the daemon starts again.
    TimedOut,
}

/// One configuration's working parts: a successful reload replaces them together.
struct Generation {
    runner: Arc<Runner>,
    notifier: Notifier,
}

/// What the daemon runs with now.
struct State {
    current: RwLock<Arc<Generation>>,
    /// Why the last reload was refused, shown in STATUS= until a reload succeeds.
    reload_problem: Mutex<Option<String>>,
    /// The HTTP client of the notifications, kept across reloads.
    http: reqwest::Client,
    /// What `/metrics` shows; kept across reloads.
    metrics: Arc<DaemonMetrics>,
    /// Where runs ask for the HTML report to be rewritten.
    report: report::ReportWriter,
}

impl State {
    fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn runner(&self) -> Arc<Runner> {
        self.current().runner.clone()
    }

    fn replace(&self, runner: Arc<Runner>) {
        let notifier = Notifier::new(&runner.config().notify, self.http.clone());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Generation { runner, notifier });
    }

    fn problem(&self) -> Option<String> {
        self.reload_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self
            .reload_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// Runs the schedules of `runner`'s configuration until `cancel` fires, reloading the
/// configuration each time `hangups` yields (SIGHUP); returns once the runs in flight have
/// wound down, or when `[daemon] shutdown_timeout` has passed since the stop began.
pub async fn run(
    runner: Arc<Runner>,
    mut options: DaemonOptions,
    mut hangups: mpsc::UnboundedReceiver<()>,
    cancel: CancellationToken,
) -> Stopped {
    let config = runner.config().clone();
    let clock = options.clock.clone();
    let metrics = Arc::new(DaemonMetrics::new());
    let jobs = {
        let (index, config, metrics) = (runner.index().clone(), config.clone(), metrics.clone());
        let recovering = runner.clone();
        tokio::task::spawn_blocking(move || {
            for vault in &config.vaults {
                if let Err(e) = recovering.recover_interrupted(vault) {
                    tracing::info!(vault = %vault.name, reason = %e,
                        "runs left running not checked now; the vault's next run checks them");
                }
            }
            // A restart must not hide an RPO breach: the last success comes from the index.
            for vault in &config.vaults {
                if let Some(at) = jobs::newest_completed(&index, &vault.name) {
                    metrics.seed_last_success(&vault.name, at);
                }
            }
            jobs_of(&config, &index)
        })
        .await
        .unwrap_or_default()
    };
    let agenda = Agenda::new(jobs, clock());
    let http = match Notifier::http_client() {
        Ok(client) => client,
        Err(e) => {
            // Without TLS roots no webhook can be reached; the backups matter more.
            tracing::error!(error = %e, "notifications are off: cannot build their HTTP client");
            reqwest::Client::new()
        }
    };
    let state = Arc::new(State {
        current: RwLock::new(Arc::new(Generation {
            notifier: Notifier::new(&config.notify, http.clone()),
            runner,
        })),
        reload_problem: Mutex::new(None),
        http,
        metrics: metrics.clone(),
        report: report::ReportWriter::default(),
    });
    let start: StartRun<Job> = {
        let (state, cancel, clock) = (state.clone(), cancel.clone(), clock.clone());
        Arc::new(move |job: Job| {
            // The runner of the moment: a reload never changes a run that has started.
            run::run_job(state.clone(), job, clock.clone(), cancel.clone()).boxed()
        })
    };
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let mut loop_options = LoopOptions::new(config.daemon.max_parallel_vaults);
    loop_options.updates = Some(updates_rx);
    // systemd's watchdog (WatchdogSec=): the loop pings it at every wake-up, and wakes at least
    // twice per interval.
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(interval) = watchdog {
        loop_options.max_sleep = interval / 2;
    }
    {
        let metrics = metrics.clone();
        loop_options.on_start = Some(Arc::new(move |job: &Job, late| {
            if job.task == Task::Backup {
                metrics.backup_started(&job.vault, late);
            }
        }));
    }
    // The loop is alive while it wakes; it wakes at least every max_sleep.
    let heartbeat = Arc::new(Heartbeat::new(loop_options.max_sleep * 3));
    {
        let (state, clock, heartbeat) = (state.clone(), clock.clone(), heartbeat.clone());
        loop_options.on_wake = Some(Arc::new(move |agenda: &Agenda<Job>, running: usize| {
            heartbeat.beat();
            observe::observe(&state, agenda);
            let problem = state.problem();
            let status = status_line(agenda, running, clock(), problem.as_deref());
            let mut states = vec![sd_notify::NotifyState::Status(&status)];
            if watchdog.is_some() {
                states.push(sd_notify::NotifyState::Watchdog);
            }
            notify(&states);
        }));
    }
    if let Some(listener) = options.listener.take() {
        let http_state = HttpState {
            health: heartbeat.clone(),
            readiness: observe::readiness_check(state.clone(), cancel.clone()),
            metrics: metrics.clone(),
            report_path: {
                let state = state.clone();
                Arc::new(move || state.runner().config().report.html_path.clone())
            },
        };
        match listener.local_addr() {
            Ok(addr) => tracing::info!(%addr, "health and metrics endpoint listening"),
            Err(e) => tracing::warn!(error = %e, "health and metrics endpoint: address unknown"),
        }
        tokio::spawn(http::serve(listener, http_state, cancel.clone()));
    }
    {
        // Tell systemd at once that the stop has begun: the runs in flight may take a while.
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            notify(&[
                sd_notify::NotifyState::Stopping,
                sd_notify::NotifyState::Status("stopping: finishing the objects in flight"),
            ]);
        });
    }
    let reloads = {
        let (state, cancel) = (state.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    hup = hangups.recv() => match hup {
                        Some(()) => reload::reload(&state, &options, &updates_tx, &cancel).await,
                        None => break,
                    },
                }
            }
        })
    };
    let reports = tokio::spawn(report::keep_written(
        state.clone(),
        clock.clone(),
        cancel.clone(),
    ));
    let syncs = tokio::spawn(sync::keep_synced(state.clone(), cancel.clone()));
    tracing::info!(vaults = config.vaults.len(), "daemon started");
    notify(&[sd_notify::NotifyState::Ready]);
    let scheduler = run_loop(agenda, clock.clone(), start, loop_options, cancel.clone());
    tokio::pin!(scheduler);
    let stopped = tokio::select! {
        _ = &mut scheduler => Stopped::Cleanly,
        () = stop_deadline(&cancel, config.daemon.shutdown_timeout) => Stopped::TimedOut,
    };
    reloads.abort();
    syncs.abort();
    if stopped == Stopped::Cleanly {
        // The writer ends once a rewrite under way is done (the stop has fired), so this last
        // one, which shows the runs the stop interrupted, is not overwritten by an older page.
        let _ = reports.await;
        report::write_now(&state, clock()).await;
    } else {
        reports.abort();
    }
    match stopped {
        Stopped::Cleanly => tracing::info!("daemon stopped"),
        Stopped::TimedOut => tracing::error!(
            timeout = %humantime::format_duration(config.daemon.shutdown_timeout),
            "shutdown_timeout passed with runs still going: exiting; the next start marks them interrupted"
        ),
    }
    stopped
}

/// Resolves `timeout` after `cancel` fires.
async fn stop_deadline(cancel: &CancellationToken, timeout: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(timeout).await;
}
