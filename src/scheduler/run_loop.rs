//! The thin loop around [`Agenda`]: read the clock, start what is due (at most
//! `max_parallel` vaults in flight), sleep until the next fire time or [`MAX_SLEEP`], and stop
//! starting work when the token fires. What a run *is* comes from the caller, so the daemon and
//! the tests share this loop.

use std::fmt::Display;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::agenda::{Agenda, AgendaEntry, MAX_SLEEP};
use crate::model::VaultName;

/// The wall clock the loop reads (production: [`crate::clock::now`]).
pub type WallClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Starts one job's run (by default a vault's backup); the future resolves when the run is over.
pub type StartRun<K = VaultName> = Arc<dyn Fn(K) -> BoxFuture<'static, ()> + Send + Sync>;

/// Called each time the loop wakes, with the agenda and how many runs are in flight: the
/// daemon pings systemd's watchdog and updates its status line from here, so a loop that stops
/// waking is what the watchdog catches.
pub type OnWake<K = VaultName> = Arc<dyn Fn(&Agenda<K>, usize) + Send + Sync>;

/// Called when a job starts, with how late it is against its fire time (waiting for a
/// `max_parallel` permit included): what tick-lateness metrics and benchmarks read.
pub type OnStart<K = VaultName> = Arc<dyn Fn(&K, std::time::Duration) + Send + Sync>;

/// A new set of jobs for the loop (a reloaded configuration); see [`Agenda::reconfigure`].
pub type Jobs<K = VaultName> = Vec<AgendaEntry<K>>;

/// How the loop runs.
pub struct LoopOptions<K = VaultName> {
    /// Jobs in flight at once (`max_parallel_vaults`).
    pub max_parallel: usize,
    /// The longest sleep between wake-ups; [`MAX_SLEEP`] at most (a watchdog may want less).
    pub max_sleep: std::time::Duration,
    /// Called at every wake-up.
    pub on_wake: Option<OnWake<K>>,
    /// Called as each job starts.
    pub on_start: Option<OnStart<K>>,
    /// New job lists, applied as they arrive (SIGHUP).
    pub updates: Option<mpsc::UnboundedReceiver<Jobs<K>>>,
}

impl<K> LoopOptions<K> {
    /// `max_parallel` jobs at once, waking at least every [`MAX_SLEEP`], no hook, no updates.
    pub fn new(max_parallel: usize) -> Self {
        LoopOptions {
            max_parallel,
            max_sleep: MAX_SLEEP,
            on_wake: None,
            on_start: None,
            updates: None,
        }
    }
}

/// Runs `agenda` until `cancel` fires, then waits for the runs in flight (which take the same
/// token and wind down) and returns the agenda. A due vault waits for one of `max_parallel`
/// permits (`options.max_parallel`); while it waits or runs, its next ticks are skipped,
/// never queued twice.
pub async fn run_loop<K>(
    mut agenda: Agenda<K>,
    clock: WallClock,
    start: StartRun<K>,
    mut options: LoopOptions<K>,
    cancel: CancellationToken,
) -> Agenda<K>
where
    K: Ord + Clone + Display + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(options.max_parallel.max(1)));
    let mut runs: JoinSet<K> = JoinSet::new();
    let mut updates = options.updates.take();
    loop {
        let now = clock();
        for (job, due) in agenda.take_due_with_times(now) {
            let (permits, start) = (permits.clone(), start.clone());
            let (cancel, clock, on_start) =
                (cancel.clone(), clock.clone(), options.on_start.clone());
            runs.spawn(async move {
                // A job queued behind the bound is not started once the loop stops.
                let permit = tokio::select! {
                    permit = permits.acquire_owned() => permit.ok(),
                    () = cancel.cancelled() => None,
                };
                if permit.is_some() {
                    let late = (clock() - due).to_std().unwrap_or_default();
                    tracing::debug!(job = %job, due = %due.to_rfc3339(),
                        late_ms = late.as_millis() as u64, "job started");
                    if let Some(on_start) = &on_start {
                        on_start(&job, late);
                    }
                    start(job.clone()).await;
                }
                job
            });
        }
        if let Some(on_wake) = &options.on_wake {
            on_wake(&agenda, runs.len());
        }
        // Never sleep longer than MAX_SLEEP without reading the clock again.
        let sleep = agenda
            .sleep_for(clock())
            .min(options.max_sleep.min(MAX_SLEEP));
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(sleep) => {}
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Ok(vault) = done {
                    agenda.finished(&vault);
                }
            }
            update = next_update(&mut updates) => match update {
                Some(jobs) => agenda.reconfigure(jobs, clock()),
                // The sender is gone: no more reloads, keep running what we have.
                None => updates = None,
            },
        }
    }
    while let Some(done) = runs.join_next().await {
        if let Ok(vault) = done {
            agenda.finished(&vault);
        }
    }
    agenda
}

/// The next job list, or never when there is no channel (so `select!` ignores the branch).
async fn next_update<K>(updates: &mut Option<mpsc::UnboundedReceiver<Jobs<K>>>) -> Option<Jobs<K>> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
