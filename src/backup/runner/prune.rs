//! The runner's prune of one vault: under the vault's lock and lease, after a sync, with the
//! daemon's variant that leaves a vault another instance holds alone.

use tokio_util::sync::CancellationToken;

use super::claim::ClaimError;
use super::Runner;
use crate::config::VaultConfig;
use crate::store::LeaseWork;

impl Runner {
    /// Prunes `vault` by its retention policy under the vault's lock (refused, naming the
    /// holder, while another kvkeep process on this host backs it up or prunes it) and lease
    /// (refused while another instance holds the vault). `observer` hears of every step before
    /// it is taken; `cancel` stops the prune between steps.
    pub async fn prune(
        &self,
        vault: &VaultConfig,
        observer: Option<crate::retention::PruneObserver>,
        cancel: &CancellationToken,
    ) -> Result<crate::retention::PruneOutcome, String> {
        self.prune_inner(vault, observer, cancel)
            .await
            .map_err(ClaimError::message)
    }

    /// [`Runner::prune`], with `Ok(None)` when another kvkeep instance holds the vault's lease:
    /// the daemon's prune after a backup then leaves the vault to that instance (whose own
    /// prune, or this one's next, does the work) rather than count a failure.
    pub async fn prune_unless_held(
        &self,
        vault: &VaultConfig,
        cancel: &CancellationToken,
    ) -> Result<Option<crate::retention::PruneOutcome>, String> {
        match self.prune_inner(vault, None, cancel).await {
            Ok(outcome) => Ok(Some(outcome)),
            Err(ClaimError::Held(..)) => Ok(None),
            Err(ClaimError::Other(message)) => Err(message),
        }
    }

    async fn prune_inner(
        &self,
        vault: &VaultConfig,
        observer: Option<crate::retention::PruneObserver>,
        cancel: &CancellationToken,
    ) -> Result<crate::retention::PruneOutcome, ClaimError> {
        let store = self.store.as_ref().ok_or_else(|| {
            ClaimError::Other(format!(
                "prune of vault {} not started: no store is open",
                vault.name
            ))
        })?;
        let mut claim = self
            .claim_with_lease(vault, LeaseWork::Prune, cancel)
            .await?;
        // A prune over an index that misses another instance's newer restore points could
        // delete blobs those points still refer to: without a sync it does not start.
        if let Err(e) = self.sync_vault(&vault.name, &claim.cancel).await {
            claim.release().await;
            return Err(ClaimError::Other(format!(
                "prune of vault {} not started: the index could not be synced from the store first: {e}",
                vault.name
            )));
        }
        self.settle_abandoned(&vault.name, &mut claim).await;
        let now = chrono::DateTime::from_timestamp((self.clock)(), 0).unwrap_or_default();
        let outcome =
            crate::retention::prune_vault(&self.index, store, vault, now, observer, &claim.cancel)
                .await;
        // A prune that lost its lease stopped between steps; what it deleted stays deleted
        // (every step leaves the store consistent), the rest is for the next prune.
        if let Some(lost) = claim.release().await {
            return Err(ClaimError::Other(format!(
                "prune of vault {} stopped: {lost}; run it again to complete it",
                vault.name
            )));
        }
        outcome.map_err(|e| {
            ClaimError::Other(format!(
                "prune of vault {} stopped: {e}; run it again to complete it",
                vault.name
            ))
        })
    }
}
