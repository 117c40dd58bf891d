//! Index sync: brings this instance's index up to date with what other kvkeep instances sharing
//! the store committed (DESIGN §8), so change detection never captures again what another
//! instance captured, retention plans over every restore point, and reports show every run.
//!
//! For one vault: read the runs the index knows, *then* list `manifests/{vault}/` (in that
//! order: a manifest is in the store before its run is recorded as committed, so a restore
//! point read first whose manifest is missing from the later listing really was deleted), and
//!
//! - replay, oldest first, the manifests of runs the index does not know, or knows only
//!   without a manifest (this host died between writing one and recording it), with the very
//!   replay `index rebuild` uses (one run per transaction, one part at a time);
//! - forget the restore points whose manifest is no longer listed: another instance's prune
//!   deleted it. They are forgotten as this instance's prune forgets (the point stops being
//!   one and lets go of what it holds); the capture rows left without a holder are dropped by
//!   this instance's next prune, whose delete of a blob already gone counts as done.
//!
//! Runs the index holds as `running` are never touched: they are this host's runs in flight.
//!
//! Why the whole prefix is listed rather than only the keys past the newest one known (keys
//! sort by start time, so that would find new runs): a prune deletes old manifests, which only
//! a full listing shows gone, and the store seam has no "list from" anyway. One listing page
//! holds 5,000 keys on Azure, and retention keeps a vault's manifests to a few hundred, so
//! the full listing costs one request per vault and sync (see the README's sync benchmark).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::rebuild::{open_manifests, replay_all, vault_and_run, RebuildReport, Replay};
use super::RestoreError;
use crate::crypto::Identities;
use crate::index::{Index, IndexError, KnownRunState};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::BlobStore;

/// What one sync of one vault did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SyncReport {
    /// The vault.
    pub vault: String,
    /// Manifests listed for it in the store.
    pub manifests: usize,
    /// Runs replayed from manifests this index did not have.
    pub replayed_runs: usize,
    /// Captures those runs recorded.
    pub captures: usize,
    /// Restore points forgotten because their manifest is gone (another instance pruned them).
    pub forgotten_points: usize,
    /// Manifests that could not be used, with why (their runs are left out until they can).
    pub problems: Vec<String>,
    /// Things worth knowing (entries referring to blobs of runs whose manifests are gone).
    pub notes: Vec<String>,
}

impl SyncReport {
    /// Whether the sync changed the index.
    pub fn changed(&self) -> bool {
        self.replayed_runs > 0 || self.forgotten_points > 0
    }
}

/// Runs `f` on the index off the async threads.
async fn on_index<T: Send + 'static>(
    index: &Arc<Index>,
    f: impl FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
) -> Result<T, RestoreError> {
    let index = index.clone();
    tokio::task::spawn_blocking(move || f(&index))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))?
        .map_err(RestoreError::from)
}

/// Syncs `vault` in `index` from the manifests in `store`, opened with `identities` (the catalog
/// identity, or a recovery one). `now` stamps the restore points it forgets. Store and index
/// errors end it (what was replayed stays); unreadable manifests are problems in the report.
pub async fn sync_vault(
    index: &Arc<Index>,
    store: &Arc<dyn BlobStore>,
    identities: &Arc<Identities>,
    vault: &VaultName,
    concurrency: usize,
    cancel: &CancellationToken,
    now: i64,
) -> Result<SyncReport, RestoreError> {
    // The index first, then the store: see the module's comment.
    let known: HashMap<RunId, KnownRunState> = {
        let vault = vault.clone();
        on_index(index, move |i| i.known_runs(&vault)).await?
    }
    .into_iter()
    .map(|k| (k.run, k.state))
    .collect();
    let listed = store
        .list(&format!("manifests/{vault}/"))
        .await
        .map_err(|e| {
            RestoreError::Task(format!(
                "cannot list the manifests of vault {vault} in the store: {e}"
            ))
        })?;
    let mut report = SyncReport {
        vault: vault.to_string(),
        manifests: listed.len(),
        ..SyncReport::default()
    };
    let in_store: BTreeSet<&BlobKey> = listed.iter().map(|m| &m.key).collect();
    let gone: Vec<RunId> = known
        .iter()
        .filter_map(|(run, state)| match state {
            KnownRunState::Committed(key) if !in_store.contains(key) => Some(run.clone()),
            _ => None,
        })
        .collect();
    let new: Vec<_> = listed
        .iter()
        .filter(|meta| {
            let run = vault_and_run(meta.key.as_str()).and_then(|(_, run)| run.parse().ok());
            match run.and_then(|run: RunId| known.get(&run)) {
                None | Some(KnownRunState::Uncommitted) => true,
                Some(_) => false,
            }
        })
        .cloned()
        .collect();

    // Forgotten first: the runs replayed next were written after that prune, and each
    // completes what it holds from the newest restore point before it, which a prune keeps.
    if !gone.is_empty() {
        report.forgotten_points = gone.len();
        on_index(index, move |i| {
            i.write(|w| {
                for run in &gone {
                    w.forget_run(run, now)?;
                }
                Ok(())
            })
        })
        .await?;
    }
    if new.is_empty() {
        return Ok(report);
    }
    let (manifests, problems) = open_manifests(
        store.as_ref(),
        new,
        identities,
        concurrency,
        cancel,
        Replay::Sync,
    )
    .await?;
    let replayed = replay_all(
        index,
        store,
        identities,
        manifests,
        cancel,
        RebuildReport {
            problems,
            ..RebuildReport::default()
        },
        Replay::Sync,
    )
    .await?;
    report.replayed_runs = replayed.runs;
    report.captures = replayed.captures;
    report.problems = replayed.problems;
    report.notes = replayed.notes;
    Ok(report)
}
