//! `[report] html_path`: the HTML report the daemon keeps up to date. It is rewritten once at
//! start and after every run (backup with its prune, quick verify); `/report` serves the file.
//!
//! Runs only ask for a rewrite ([`ReportWriter::wanted`]); one task does the writing, so a burst
//! of runs ending together costs one or two rewrites, not one each, and two rewrites never race
//! for the file. The page is built from the index alone, off the async threads, and replaces the
//! file whole (a reader never sees half of it). A report that cannot be built or written is
//! logged and counted (`kvkeep_report_failures_total`), never a run's failure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::State;
use crate::scheduler::WallClock;

/// The request for a rewrite that runs leave and the writer task takes.
#[derive(Debug, Default)]
pub(super) struct ReportWriter {
    /// One stored permit at most: requests made while a rewrite is under way coalesce into
    /// one more rewrite after it.
    wanted: Notify,
}

impl ReportWriter {
    /// Asks for a rewrite after a run; returns at once.
    pub(super) fn wanted(&self) {
        self.wanted.notify_one();
    }
}

/// Rewrites the report whenever asked, until `cancel` fires. The first rewrite happens at once,
/// so `/report` has a page before the first run ends.
pub(super) async fn keep_written(state: Arc<State>, clock: WallClock, cancel: CancellationToken) {
    state.report.wanted();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = state.report.wanted.notified() => {}
        }
        write_now(&state, clock()).await;
    }
}

/// Builds the report of the current configuration's vaults at `now` and writes it to
/// `[report] html_path`; nothing when no path is configured. Returns whether a report was
/// written.
pub(super) async fn write_now(state: &State, now: DateTime<Utc>) -> bool {
    let runner = state.runner();
    let Some(path) = runner.config().report.html_path.clone() else {
        return false;
    };
    let index = runner.index().clone();
    let vaults = runner.config().vaults.clone();
    let shown = path.display().to_string();
    let written = tokio::task::spawn_blocking(move || {
        let html = crate::report::html::build_html(&index, &vaults, now)
            .map_err(|e| format!("cannot build the report: {e}"))?;
        crate::fsutil::replace_private_file(&path, html.as_bytes())
            .map_err(|e| format!("cannot write the report: {e}"))?;
        Ok::<usize, String>(html.len())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the report task failed: {e}")));
    match written {
        Ok(bytes) => {
            tracing::debug!(path = %shown, bytes, "HTML report written");
            state.metrics.report_finished(Some(now));
            true
        }
        Err(reason) => {
            tracing::warn!(path = %shown, reason = %reason,
                "HTML report not written; the backups go on, the next run tries again");
            state.metrics.report_finished(None);
            false
        }
    }
}
