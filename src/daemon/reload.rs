//! SIGHUP: re-read the configuration, refuse it with every problem logged, or put it in force
//! for every run started from then on.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{jobs_of, notify, DaemonOptions, Job, State};
use crate::backup::Runner;
use crate::config::Config;
use crate::scheduler::Jobs;
use crate::source::{RateLimitOptions, RateLimiter};

/// Re-reads the configuration at `options.config_path`. On success the new runner serves
/// every run started from now on and `updates` gets the new jobs; on failure every problem is
/// logged and the old configuration stays.
pub(super) async fn reload(
    state: &State,
    options: &DaemonOptions,
    updates: &mpsc::UnboundedSender<Jobs<Job>>,
    cancel: &CancellationToken,
) {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    tracing::info!(file = %options.config_path.display(), "SIGHUP: reloading the configuration");
    let refused = |problem: String| {
        let status = format!("reload refused: {problem}; running the previous configuration");
        tracing::error!("{status}");
        state.set_problem(Some(status.clone()));
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    };
    let path = options.config_path.clone();
    let loaded = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
        Ok(loaded) => loaded,
        Err(e) => return refused(format!("cannot read the configuration: {e}")),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors.errors {
                tracing::error!(file = %errors.file, problem = %e, "configuration problem");
            }
            let n = errors.errors.len();
            return refused(format!(
                "{n} problem{} in {}",
                if n == 1 { "" } else { "s" },
                errors.file
            ));
        }
    };
    let old = state.runner();
    // `instance` is not among them: the new runner holds leases under the new name from the
    // next run on (a run in flight keeps its lease under the old one until it ends).
    let at_start =
        |d: &crate::config::DaemonConfig| (d.max_parallel_vaults, d.shutdown_timeout, d.listen);
    if at_start(&config.daemon) != at_start(&old.config().daemon) {
        tracing::warn!(
            "[daemon] changes (max_parallel_vaults, shutdown_timeout, listen) take effect at the next restart"
        );
    }
    // Budgets already spent stay spent: a reload must not double the request rate.
    let limiter = if config.limits == old.config().limits {
        old.limiter().clone()
    } else {
        RateLimiter::with_cancel(
            RateLimitOptions::from_limits(&config.limits),
            cancel.clone(),
        )
    };
    let runner = match Runner::open_with_limiter(
        &config,
        false,
        options.run_clock.clone(),
        cancel.clone(),
        limiter,
    )
    .await
    {
        Ok(runner) => Arc::new(runner),
        Err(e) => return refused(e.to_string()),
    };
    let jobs = {
        let (config, index) = (config.clone(), runner.index().clone());
        match tokio::task::spawn_blocking(move || jobs_of(&config, &index)).await {
            Ok(jobs) => jobs,
            Err(e) => return refused(format!("cannot plan the schedules: {e}")),
        }
    };
    for gone in old
        .config()
        .vaults
        .iter()
        .filter(|v| config.vault(&v.name).is_none())
    {
        state.metrics.forget_vault(&gone.name);
    }
    state.replace(runner);
    state.set_problem(None);
    let count = jobs.len();
    // The loop may have ended (a stop began): then there is nothing left to schedule.
    let _ = updates.send(jobs);
    tracing::info!(
        vaults = config.vaults.len(),
        jobs = count,
        "configuration reloaded"
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("configuration reloaded"),
    ]);
}
