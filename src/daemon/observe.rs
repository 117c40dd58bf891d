//! What the daemon shows outside: the metrics fed from the agenda and the rate limiter at each
//! wake-up, and the `/readyz` check.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{http, Job, State, Task};
use crate::scheduler::Agenda;

/// Moves what the agenda and the rate limiter know into the metrics: each vault's next backup,
/// its skipped ticks, and its throttled and retried requests.
pub(super) fn observe(state: &State, agenda: &Agenda<Job>) {
    let runner = state.runner();
    for job in agenda.jobs() {
        if job.task != Task::Backup {
            continue;
        }
        state.metrics.set_next_run(&job.vault, agenda.next_of(job));
        state
            .metrics
            .observe_skipped_ticks(&job.vault, agenda.skipped(job));
        state
            .metrics
            .observe_requests(&job.vault, runner.limiter().counters(&job.vault));
    }
}

/// How long a readiness answer is reused: each check writes a probe blob to the store, and a
/// load balancer may ask every few seconds.
const READINESS_TTL: Duration = Duration::from_secs(30);

/// A readiness answer and when it was found.
type CachedReadiness = (std::time::Instant, Result<(), String>);

/// `/readyz`: the index takes a write, the store takes a probe, and the configuration file as
/// last read is valid (after a refused reload the daemon runs, but would not start again).
pub(super) fn readiness_check(
    state: Arc<State>,
    cancel: CancellationToken,
) -> http::ReadinessCheck {
    let cache: Arc<tokio::sync::Mutex<Option<CachedReadiness>>> = Arc::default();
    Arc::new(move || {
        let (state, cancel, cache) = (state.clone(), cancel.clone(), cache.clone());
        async move {
            if let Some(problem) = state.problem() {
                return Err(problem);
            }
            // One check at a time; the others wait for its answer.
            let mut cached = cache.lock().await;
            if let Some((at, answer)) = cached.as_ref() {
                if at.elapsed() < READINESS_TTL {
                    return answer.clone();
                }
            }
            let runner = state.runner();
            let checks = crate::doctor::readiness(runner.config(), &cancel).await;
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| c.status == crate::doctor::CheckStatus::Fail)
                .map(|c| format!("{}: {}", c.check, c.detail))
                .collect();
            let answer = if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            };
            *cached = Some((std::time::Instant::now(), answer.clone()));
            answer
        }
        .boxed()
    })
}
