//! What index sync needs to know of a vault's runs: which the index already holds, and in what
//! state, so that sync replays only the manifests of runs it does not know and forgets only
//! restore points whose manifest another instance's prune deleted.

use super::error::IndexError;
use super::read::parsed;
use super::types::RunStatus;
use super::Index;
use crate::model::{BlobKey, RunId, VaultName};

/// Where a run the index knows stands, as index sync sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownRunState {
    /// A restore point: its manifest is in the store (or was, until another instance pruned it).
    Committed(BlobKey),
    /// Still running here (or left running by a crash not yet noticed): never touched by sync.
    Running,
    /// Forgotten by a prune, swept, or recorded by a rebuild as the writer of orphaned blobs:
    /// settled, a manifest still listed for it is on its way out.
    Settled,
    /// Ended without a manifest in the index. If its manifest is in the store all the same (the
    /// process died between writing it and recording it), sync replays it in its place.
    Uncommitted,
}

/// A run of a vault the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRun {
    /// The run.
    pub run: RunId,
    /// Its state.
    pub state: KnownRunState,
}

impl Index {
    /// Every run of `vault` the index knows, with its state for index sync.
    pub fn known_runs(&self, vault: &VaultName) -> Result<Vec<KnownRun>, IndexError> {
        self.read("listing the runs index sync knows", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT run_id, manifest_key, status,
                     forgotten_at IS NOT NULL OR swept_at IS NOT NULL
                 FROM runs WHERE vault = ?1",
            )?;
            let rows = stmt.query_map([vault.as_str()], |r| {
                let manifest: Option<String> = r.get(1)?;
                let status: RunStatus = parsed(r, 2)?;
                let settled: bool = r.get(3)?;
                let state = match manifest {
                    Some(_) => KnownRunState::Committed(parsed(r, 1)?),
                    None if status == RunStatus::Running => KnownRunState::Running,
                    None if settled => KnownRunState::Settled,
                    None => KnownRunState::Uncommitted,
                };
                Ok(KnownRun {
                    run: parsed(r, 0)?,
                    state,
                })
            })?;
            rows.collect()
        })
    }
}
