//! The daemon's periodic index sync (`[daemon] sync_interval`): every vault's runs that other
//! instances committed to the shared store are brought into this index, so the HTML report,
//! `kvkeep report` and `kvkeep list runs` on every instance show every run. A backup or a
//! prune syncs its own vault first anyway (under the lease, [`crate::backup::Runner`]); this
//! timer is for the vaults this instance does not happen to run.
//!
//! It takes no lease and no lock: sync only adds runs the index does not know and forgets
//! restore points whose manifest is gone, and never touches a run in flight here, so it may
//! run beside this instance's own backups.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::State;
use crate::backup::Runner;

/// Syncs every vault at once, then every `sync_interval` of the configuration of the moment,
/// until `cancel` fires; asks for a report rewrite when a sync changed the index.
pub(super) async fn keep_synced(state: Arc<State>, cancel: CancellationToken) {
    loop {
        let runner = state.runner();
        if sync_all(&runner, &cancel).await {
            state.report.wanted();
        }
        let interval = runner.config().daemon.sync_interval;
        drop(runner);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Syncs each configured vault in turn; returns whether any sync changed the index. Without a
/// catalog identity, the runner says once that sync is off.
async fn sync_all(runner: &Runner, cancel: &CancellationToken) -> bool {
    let mut changed = false;
    for vault in &runner.config().vaults {
        if cancel.is_cancelled() {
            break;
        }
        match runner.sync_vault(&vault.name, cancel).await {
            Ok(Some(report)) => changed |= report.changed(),
            // Sync is off (no catalog identity): said once by the runner.
            Ok(None) => break,
            // A stop ends the sync under way; nothing to report.
            Err(_) if cancel.is_cancelled() => break,
            Err(e) => tracing::warn!(vault = %vault.name, error = %e,
                "index sync failed; the next one tries again"),
        }
    }
    changed
}
