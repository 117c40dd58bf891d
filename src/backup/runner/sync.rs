//! The runner's index sync: before a backup or prune under the vault's lease, from `kvkeep index
//! sync`, and the daemon's check that a fire time is already served by another instance.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::config::VaultConfig;
use crate::crypto::Identities;
use crate::model::VaultName;
use crate::restore::sync::SyncReport;
use crate::store::BlobStore;

impl Runner {
    /// The vault's newest restore point if it started at or after `since` (Unix seconds),
    /// read from the index synced under the claim: the daemon serving fire time `since` skips
    /// the backup when another instance already made that restore point (its schedule fired
    /// the same instant, took the lease first and released it before this instance asked).
    pub async fn restore_point_since(
        &self,
        vault: &VaultConfig,
        since: i64,
    ) -> Option<crate::index::RestorePointRecord> {
        let index = self.index.clone();
        let name = vault.name.clone();
        let points = tokio::task::spawn_blocking(move || index.restore_points(&name))
            .await
            .ok()?
            .ok()?;
        points.into_iter().last().filter(|p| p.started_at >= since)
    }

    /// Syncs `vault` in this runner's index from the manifests other instances wrote
    /// ([`crate::restore::sync`]), opened with the catalog identity. `Ok(None)` when there is
    /// nothing to sync with: no store (dry run) or no catalog identity configured (logged once
    /// per runner). Problems with single manifests are logged once each and do not fail it.
    pub async fn sync_vault(
        &self,
        vault: &VaultName,
        cancel: &CancellationToken,
    ) -> Result<Option<SyncReport>, String> {
        let Some(store) = self.store.as_ref() else {
            return Ok(None);
        };
        let Some(identities) = self.catalog_identity.as_ref() else {
            if !self.sync_off_told.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "index sync is off: no [encryption] catalog_identity_file, so runs other kvkeep instances commit to this store stay out of this index (several instances on one store need the catalog key)"
                );
            }
            return Ok(None);
        };
        self.sync_with(vault, store, identities, cancel)
            .await
            .map(Some)
    }

    /// [`Runner::sync_with`] for `kvkeep index sync`, which has no run of its own in flight:
    /// runs a killed kvkeep process on this host left `running` are ended first (unless a
    /// process here holds the vault: then they may be in flight), so that a manifest one of
    /// them wrote just before the kill is replayed rather than left out.
    pub async fn sync_offline(
        &self,
        vault: &VaultName,
        store: &Arc<dyn BlobStore>,
        identities: &Arc<Identities>,
        cancel: &CancellationToken,
    ) -> Result<SyncReport, String> {
        if let Some(configured) = self.config.vault(vault) {
            if let Err(e) = self.recover_interrupted(configured) {
                tracing::info!(vault = %vault, reason = %e,
                    "runs left running here not checked: a kvkeep process on this host holds the vault");
            }
        }
        self.sync_with(vault, store, identities, cancel).await
    }

    /// [`Runner::sync_vault`] with the given identities (a recovery identity will do).
    pub async fn sync_with(
        &self,
        vault: &VaultName,
        store: &Arc<dyn BlobStore>,
        identities: &Arc<Identities>,
        cancel: &CancellationToken,
    ) -> Result<SyncReport, String> {
        let report = crate::restore::sync::sync_vault(
            &self.index,
            store,
            identities,
            vault,
            self.config.limits.concurrency,
            cancel,
            (self.clock)(),
        )
        .await
        .map_err(|e| format!("index sync of vault {vault} failed: {e}"))?;
        if report.changed() {
            tracing::info!(vault = %vault, replayed = report.replayed_runs,
                captures = report.captures, forgotten = report.forgotten_points,
                "index synced with runs other kvkeep instances committed");
        }
        let mut told = self
            .sync_problems_told
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for problem in &report.problems {
            if told.insert(problem.clone()) {
                tracing::warn!(vault = %vault, problem = %problem,
                    "index sync left a manifest out");
            }
        }
        Ok(report)
    }
}
