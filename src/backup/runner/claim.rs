//! Claiming a vault for one run: this host's lock beside the index, then the vault's lease on
//! the store ([`VaultClaim`]), and what a previous holder that never released the lease left
//! unfinished (a takeover, issue 11).

use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::config::VaultConfig;
use crate::index::{lock_vault, IndexLock};
use crate::model::{RunId, VaultName};
use crate::store::{HeldLease, HolderInfo, LeaseError, LeaseWork};

/// A vault claimed for one run: this host's lock beside the index and, with a store, the
/// vault's lease. End it with [`VaultClaim::release`] (awaited: the lease is released on the
/// store); dropped instead, the lease stops being renewed and expires within its duration.
pub struct VaultClaim {
    pub(super) _lock: IndexLock,
    pub(super) lease: Option<HeldLease>,
    /// The run's token: a child of the caller's, also cancelled when the lease is lost.
    pub(super) cancel: CancellationToken,
    /// The backup run the claim is for (recorded on the lock blob); `None` for a prune.
    pub(super) run: Option<RunId>,
    /// The previous holder of the vault's lease, when it never released it and left work
    /// unfinished: this claim took the vault over from it.
    pub(super) took_over: Option<HolderInfo>,
}

impl VaultClaim {
    /// The run's token: cancelled when the caller's is, or when the lease is lost.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The backup run the claim is for; `None` for a prune.
    pub fn run(&self) -> Option<&RunId> {
        self.run.as_ref()
    }

    /// The instance this claim took the vault over from: the previous holder of the vault's
    /// lease never released it (it died, hung or lost the store) and left a backup run or a
    /// prune unfinished.
    pub fn took_over(&self) -> Option<&HolderInfo> {
        self.took_over.as_ref()
    }

    /// Releases the lease (then the lock); returns why the lease was lost, if it was.
    pub async fn release(self) -> Option<String> {
        match self.lease {
            Some(lease) => lease.release().await,
            None => None,
        }
    }
}

/// Why a vault could not be claimed.
pub(super) enum ClaimError {
    /// Another kvkeep instance holds its lease.
    Held(String, Option<crate::store::HolderInfo>),
    /// Anything else: the local lock, the index, the store.
    Other(String),
}

impl ClaimError {
    pub(super) fn message(self) -> String {
        match self {
            ClaimError::Held(m, _) | ClaimError::Other(m) => m,
        }
    }
}

impl Runner {
    /// Under a fresh claim, after its sync: what the vault's previous lease holder left
    /// unfinished when it never released the lease. Its backup run is recorded `interrupted`
    /// (unless the sync found its manifest: then it committed and only the release was lost);
    /// a prune is left to the next prune, since every prune step leaves the store consistent.
    /// Either way the run claimed now goes on, and the claim notes whom it took over from.
    pub(super) async fn settle_abandoned(&self, vault: &VaultName, claim: &mut VaultClaim) {
        let Some(left) = claim
            .lease
            .as_ref()
            .and_then(|l| l.lease().abandoned())
            .cloned()
        else {
            return;
        };
        match &left.work {
            // The lease taken for this very run, acquired twice by a retry: nothing was left.
            Some(LeaseWork::Backup { run }) if claim.run.as_ref() == Some(run) => {}
            Some(LeaseWork::Backup { run }) => {
                let now = (self.clock)();
                let (index, run, name, by) = (
                    self.index.clone(),
                    run.clone(),
                    vault.clone(),
                    left.instance.clone(),
                );
                let started_at = left.acquired_at.unwrap_or(now);
                let recorded = tokio::task::spawn_blocking(move || {
                    index.record_abandoned_run(&run, &name, started_at, now, &by)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                match recorded {
                    Ok(true) => {
                        tracing::warn!(vault = %vault, previous_holder = %left,
                            "took the vault over from a kvkeep instance that never finished its backup run (it stopped, hung or lost the store): that run is recorded interrupted and made no restore point; this run backs up what it left out");
                        claim.took_over = Some(left);
                    }
                    // Committed (the sync found its manifest), or ended in this index already.
                    Ok(false) => {}
                    Err(e) => tracing::warn!(vault = %vault, previous_holder = %left, error = %e,
                        "cannot record the backup run another kvkeep instance left unfinished; this run goes on"),
                }
            }
            Some(LeaseWork::Prune) => {
                tracing::warn!(vault = %vault, previous_holder = %left,
                    "took the vault over from a kvkeep instance that never finished its prune (it stopped, hung or lost the store): the next prune deletes what it left");
                claim.took_over = Some(left);
            }
            // A holder that recorded no work: nothing is known to be unfinished.
            None => {}
        }
    }

    /// Marks `vault`'s runs left `running` by a crashed or killed process as `interrupted`,
    /// under the vault's lock (the daemon does this for every vault at start, so a vault whose
    /// next run is far away does not show a run as running for days). A vault locked by another
    /// kvkeep process is left alone: that process is alive, and its runs may be too.
    pub fn recover_interrupted(&self, vault: &VaultConfig) -> Result<(), String> {
        self.claim(vault, "backup").map(drop)
    }

    /// [`Runner::claim`], then the vault's lease on the store (when one is open), renewed
    /// until the claim is released; losing it cancels the claim's token, a child of `cancel`.
    pub(super) async fn claim_with_lease(
        &self,
        vault: &VaultConfig,
        work: LeaseWork,
        cancel: &CancellationToken,
    ) -> Result<VaultClaim, ClaimError> {
        let (what, run) = match &work {
            LeaseWork::Backup { run } => ("backup", Some(run.clone())),
            LeaseWork::Prune => ("prune", None),
        };
        let lock = self.claim(vault, what).map_err(ClaimError::Other)?;
        let run_cancel = cancel.child_token();
        let Some(store) = self.store.clone() else {
            return Ok(VaultClaim {
                _lock: lock,
                lease: None,
                cancel: run_cancel,
                run,
                took_over: None,
            });
        };
        match HeldLease::acquire(
            store,
            &vault.name,
            &self.holder.for_work(work),
            self.lease_timing,
            run_cancel.clone(),
        )
        .await
        {
            Ok(lease) => Ok(VaultClaim {
                _lock: lock,
                lease: Some(lease),
                cancel: run_cancel,
                run,
                took_over: None,
            }),
            Err(e @ LeaseError::Held { .. }) => {
                let by = match &e {
                    LeaseError::Held { by, .. } => by.clone(),
                    _ => None,
                };
                Err(ClaimError::Held(
                    format!("{what} of vault {} not started: {e}", vault.name),
                    by,
                ))
            }
            Err(e) => Err(ClaimError::Other(format!(
                "{what} of vault {} not started: cannot take the vault's lease: {e}",
                vault.name
            ))),
        }
    }

    /// Takes the vault's lock beside the index for the whole run (refused, naming the holder,
    /// while another kvkeep process on this host works on the vault), then marks the vault's
    /// runs still `running` as `interrupted`: with the lock held nothing can still be running
    /// them, so they are what a crash or a kill left behind.
    pub(super) fn claim(&self, vault: &VaultConfig, what: &str) -> Result<IndexLock, String> {
        let now = (self.clock)();
        let lock = lock_vault(
            &self.config.index_path,
            &vault.name,
            &format!("kvkeep {what}"),
            now,
        )
        .map_err(|e| format!("{what} of vault {} not started: {e}", vault.name))?;
        match self.index.interrupt_unfinished_runs(Some(&vault.name), now) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(vault = %vault.name, runs = n,
                "runs left running by a stopped kvkeep process marked interrupted"),
            Err(e) => {
                return Err(format!(
                "{what} of vault {} not started: cannot mark its unfinished runs interrupted: {e}",
                vault.name
            ))
            }
        }
        Ok(lock)
    }
}
