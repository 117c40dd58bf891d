//! `kvkeep daemon`: the scheduled backups of every configured vault, in one long-running
//! process (DESIGN §8). This first part wires the scheduler's loop ([`crate::scheduler`]) to the
//! backup [`Runner`] that `kvkeep backup` uses, so a scheduled run is exactly a manual one:
//! same locks, same rate limits, same manifest. SIGTERM or Ctrl-C stops starting runs, lets the
//! objects in flight finish and commits them (`interrupted`).
//!
//! Under systemd (`Type=notify`) it sends READY=1 once the index, store and recipients are open,
//! a STATUS= line and WATCHDOG=1 at every wake-up of the scheduler loop, and STOPPING=1 when a
//! stop begins.
//!
//! Not yet here (issue #8): SIGHUP reload, the health and metrics endpoint, notifications and
//! the quick-verify schedule.

pub mod http;
pub mod metrics;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::backup::{NoProgress, Runner, PARALLEL_VAULTS};
use crate::config::Config;
use crate::index::Index;
use crate::model::VaultName;
use crate::scheduler::{run_loop, Agenda, LoopOptions, StartRun, Timetable, WallClock};

/// Sends `states` to systemd when it supervises the process (`NOTIFY_SOCKET` set); a failure is
/// logged, never fatal: the backups matter more than the status line.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The one-line status systemd shows (`systemctl status kvkeep`).
fn status_line(agenda: &Agenda, running: usize, now: DateTime<Utc>) -> String {
    match agenda.next_due_overall() {
        Some((vault, at)) => format!(
            "{} vault(s) scheduled, {running} running; next: {vault} in {}s",
            agenda.len(),
            (at - now).num_seconds().max(0)
        ),
        None => format!("{} vault(s) scheduled, {running} running", agenda.len()),
    }
}

/// When each scheduled vault last committed a run (its start), from the index.
fn newest_committed(index: &Index, vault: &VaultName) -> Option<DateTime<Utc>> {
    let runs = index
        .list_runs(Some(vault))
        .map_err(|e| tracing::warn!(vault = %vault, error = %e, "cannot read the vault's runs; treating it as never backed up"))
        .ok()?;
    runs.into_iter()
        .find(|r| r.is_committed())
        .and_then(|r| DateTime::from_timestamp(r.started_at, 0))
}

/// The agenda of `config` at `now`: every vault with a schedule that is not paused.
pub fn agenda(config: &Config, index: &Index, now: DateTime<Utc>) -> Agenda {
    let vaults = config.vaults.iter().filter_map(|vault| {
        if vault.paused {
            tracing::info!(vault = %vault.name, "paused: not scheduled");
            return None;
        }
        let timetable = Timetable::for_vault(vault)?;
        Some((
            vault.name.clone(),
            timetable,
            newest_committed(index, &vault.name),
        ))
    });
    Agenda::new(vaults, now)
}

/// Runs the schedules of `config` until `cancel` fires; returns once the runs in flight have
/// wound down. `clock` is the wall clock (production: [`crate::clock::now`]).
pub async fn run(
    runner: Arc<Runner>,
    config: &Config,
    clock: WallClock,
    cancel: CancellationToken,
) {
    let agenda = agenda(config, runner.index(), clock());
    let vaults = Arc::new(config.vaults.clone());
    let start: StartRun = {
        let cancel = cancel.clone();
        Arc::new(move |name: VaultName| {
            let (runner, vaults, cancel) = (runner.clone(), vaults.clone(), cancel.clone());
            async move {
                let Some(vault) = vaults.iter().find(|v| v.name == name) else {
                    return;
                };
                let r = runner.backup_one(vault, cancel, Arc::new(NoProgress)).await;
                tracing::info!(vault = %r.vault, run = %r.run, status = %r.status,
                    captured = r.stats.captured_objects, failed = r.stats.failed_objects,
                    "scheduled backup finished");
            }
            .boxed()
        })
    };
    let mut options = LoopOptions::new(PARALLEL_VAULTS);
    // systemd's watchdog (WatchdogSec=): the loop pings it at every wake-up, and wakes at least
    // twice per interval.
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(interval) = watchdog {
        options.max_sleep = interval / 2;
    }
    let wake_clock = clock.clone();
    options.on_wake = Some(Arc::new(move |agenda: &Agenda, running: usize| {
        let status = status_line(agenda, running, wake_clock());
        let mut states = vec![sd_notify::NotifyState::Status(&status)];
        if watchdog.is_some() {
            states.push(sd_notify::NotifyState::Watchdog);
        }
        notify(&states);
    }));
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
    tracing::info!(vaults = config.vaults.len(), "daemon started");
    notify(&[sd_notify::NotifyState::Ready]);
    run_loop(agenda, clock, start, options, cancel).await;
    tracing::info!("daemon stopped");
}
