//! From a validated [`Config`] to backup runs: the production wiring of source (the Azure SDK
//! adapter behind the rate limiter), store, index and sealer, shared by `kvkeep backup`,
//! `kvkeep prune`, the demo and the daemon, so every entry point takes the same code path.
//!
//! Before a backup or a prune works on a vault it claims the vault twice, in this order: the
//! per-vault lock beside the index (this host: the daemon and a `kvkeep backup` share a lease
//! id when they share an instance name, so only this lock keeps them apart), then the vault's
//! lease on the store (every instance sharing the store). A vault held by another instance is
//! not started, and the report says by whom ([`BackupReport::held_elsewhere`]). The lease is
//! renewed while the run works; when it is lost the run is cancelled and writes no manifest.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use tokio_util::sync::CancellationToken;

mod claim;
mod prune;
mod sync;

use claim::ClaimError;
pub use claim::VaultClaim;

use super::{BackupPlan, BackupReport, Clock, HeldElsewhere, Progress, VaultBackup};
use crate::config::{Config, VaultConfig};
use crate::crypto::{load_catalog_identity, CryptoError, Identities, Sealer};
use crate::index::{Index, IndexError, RunStatus};
use crate::model::{RunId, VaultName};
use crate::source::{
    AzureSourceOptions, AzureVaultSource, RateLimitOptions, RateLimiter, VaultSource,
};
use crate::store::{
    open_store_cancellable, BlobStore, HeldLease, LeaseHolder, LeaseTiming, LeaseWork, StoreError,
};

/// Vaults backed up at once. Each vault already runs `limits.concurrency` objects in parallel
/// and every request of a subscription shares its budget; a few vaults side by side keep a slow
/// or throttled vault from holding up the rest without opening hundreds of connections.
pub const PARALLEL_VAULTS: usize = 4;

/// The production source of `vault`: the Azure SDK adapter behind `limiter`, which holds the
/// per-vault and per-subscription budgets. `kvkeep restore` and `verify --drill` build their
/// targets with it too.
pub fn azure_source(
    config: &Config,
    limiter: &Arc<RateLimiter>,
    vault: &VaultConfig,
    cancel: &CancellationToken,
) -> Result<Arc<dyn VaultSource>, String> {
    let options = AzureSourceOptions {
        cancel: cancel.clone(),
        ..AzureSourceOptions::default()
    };
    let source = AzureVaultSource::from_config(vault, &config.azure, options)
        .map_err(|e| format!("cannot reach vault {}: {e}", vault.name))?;
    Ok(Arc::new(
        limiter.wrap(source, vault.subscription.as_deref()),
    ))
}

/// What stops a backup before any vault is touched.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The index cannot be opened.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The recipients, the zstd level or the catalog identity file are unusable.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The shared parts of a backup: built once per invocation, used for every vault.
pub struct Runner {
    config: Config,
    store: Option<Arc<dyn BlobStore>>,
    index: Arc<Index>,
    sealer: Arc<Sealer>,
    /// The catalog identity (`[encryption] catalog_identity_file`): opens the manifests other
    /// instances wrote, never an object blob.
    catalog_identity: Option<Arc<Identities>>,
    limiter: Arc<RateLimiter>,
    clock: Clock,
    /// Ends the waits of the rate limiter, the store's retries and the SDK.
    cancel: CancellationToken,
    /// Each vault's source, built at its first run and reused by the next ones: the daemon
    /// backs a vault up again and again, and its SDK clients keep their connections and tokens.
    sources: Mutex<HashMap<VaultName, Arc<dyn VaultSource>>>,
    /// Who this process holds vault leases as (`[daemon] instance`, else the host name).
    holder: LeaseHolder,
    /// How those leases are kept (60 s, renewed every 20 s; tests shorten it).
    lease_timing: LeaseTiming,
    /// Whether "index sync is off" was logged: once per runner, not once per run.
    sync_off_told: AtomicBool,
    /// Sync problems already logged: a manifest that cannot be opened stays so, and is
    /// logged once per runner (every sync reports it).
    sync_problems_told: Mutex<HashSet<String>>,
}

impl Runner {
    /// Opens the index, the store and the sealer of `config`. With `dry_run` nothing is
    /// created: the store is not opened and a missing index is replaced by an empty one in
    /// memory (every object is then planned as new).
    pub async fn open(config: &Config, dry_run: bool, clock: Clock) -> Result<Self, SetupError> {
        Self::open_cancellable(config, dry_run, clock, CancellationToken::new()).await
    }

    /// [`Runner::open`] whose waits (rate limiter, store retries, the SDK's backoff) end as soon
    /// as `cancel` fires; pass the token given to [`Runner::backup`].
    pub async fn open_cancellable(
        config: &Config,
        dry_run: bool,
        clock: Clock,
        cancel: CancellationToken,
    ) -> Result<Self, SetupError> {
        let limiter = RateLimiter::with_cancel(
            RateLimitOptions::from_limits(&config.limits),
            cancel.clone(),
        );
        Self::open_with_limiter(config, dry_run, clock, cancel, limiter).await
    }

    /// [`Runner::open_cancellable`] drawing on an existing rate limiter: the daemon keeps one
    /// across reloads, so the throttle budgets already spent are not handed out again.
    pub async fn open_with_limiter(
        config: &Config,
        dry_run: bool,
        clock: Clock,
        cancel: CancellationToken,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, SetupError> {
        let sealer = Arc::new(Sealer::from_config(&config.encryption)?);
        // Read at every open (a reload builds a new runner), so a rotated credential file is
        // picked up, and a wrong or loose one stops the daemon at start rather than at the
        // first manifest it cannot open.
        let catalog_identity = load_catalog_identity(&config.encryption)?.map(Arc::new);
        let index = if dry_run && !Path::new(&config.index_path).exists() {
            Index::open_in_memory()?
        } else {
            Index::open(&config.index_path)?
        };
        let store = if dry_run {
            None
        } else {
            Some(open_store_cancellable(&config.store, &config.azure, cancel.clone()).await?)
        };
        Ok(Runner {
            config: config.clone(),
            store,
            index: Arc::new(index),
            sealer,
            catalog_identity,
            limiter,
            clock,
            cancel,
            sources: Mutex::new(HashMap::new()),
            holder: config.daemon.lease_holder(),
            lease_timing: LeaseTiming::default(),
            sync_off_told: AtomicBool::new(false),
            sync_problems_told: Mutex::new(HashSet::new()),
        })
    }

    /// A runner over parts built elsewhere: tests give it an in-memory store and sources
    /// ([`Runner::use_source`]).
    #[cfg(test)]
    pub(crate) fn from_parts(
        config: &Config,
        store: Arc<dyn BlobStore>,
        index: Arc<Index>,
        clock: Clock,
    ) -> Result<Self, SetupError> {
        Ok(Runner {
            config: config.clone(),
            store: Some(store),
            index,
            sealer: Arc::new(Sealer::from_config(&config.encryption)?),
            catalog_identity: load_catalog_identity(&config.encryption)?.map(Arc::new),
            limiter: RateLimiter::with_cancel(
                RateLimitOptions::from_limits(&config.limits),
                CancellationToken::new(),
            ),
            clock,
            cancel: CancellationToken::new(),
            sources: Mutex::new(HashMap::new()),
            holder: config.daemon.lease_holder(),
            lease_timing: LeaseTiming::default(),
            sync_off_told: AtomicBool::new(false),
            sync_problems_told: Mutex::new(HashSet::new()),
        })
    }

    /// Backs `vault` up from `source` instead of the Azure adapter (tests).
    #[cfg(test)]
    pub(crate) fn use_source(&self, vault: &VaultName, source: Arc<dyn VaultSource>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.insert(vault.clone(), source);
    }

    /// Keeps vault leases with `timing` instead of 60 s renewed every 20 s (tests).
    pub fn with_lease_timing(mut self, timing: LeaseTiming) -> Self {
        self.lease_timing = timing;
        self
    }

    /// Who this runner holds vault leases as.
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// The index in use.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The store in use (`None` for a dry run).
    pub fn store(&self) -> Option<&Arc<dyn BlobStore>> {
        self.store.as_ref()
    }

    /// The catalog identity, when `[encryption] catalog_identity_file` is set: opens manifests
    /// (`crate::backup::manifest::open_manifest`) written by any instance sealing to the
    /// catalog recipient, and no object blob.
    pub fn catalog_identity(&self) -> Option<&Arc<Identities>> {
        self.catalog_identity.as_ref()
    }

    /// The rate limiter every source of this runner draws on.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `vault`'s source, built once per runner (a reload builds a new runner, so a changed
    /// vault section gets a new source).
    fn source(&self, vault: &VaultConfig) -> Result<Arc<dyn VaultSource>, String> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(source) = sources.get(&vault.name) {
            return Ok(source.clone());
        }
        let source = azure_source(&self.config, &self.limiter, vault, &self.cancel)?;
        sources.insert(vault.name.clone(), source.clone());
        Ok(source)
    }

    fn vault_backup(
        &self,
        vault: &VaultConfig,
        store: Arc<dyn BlobStore>,
        cancel: CancellationToken,
        progress: Arc<dyn Progress>,
        lease: Option<crate::store::LeaseWatch>,
    ) -> Result<VaultBackup, String> {
        Ok(VaultBackup {
            vault: vault.clone(),
            source: self.source(vault)?,
            store,
            index: self.index.clone(),
            sealer: self.sealer.clone(),
            concurrency: self.config.limits.concurrency,
            clock: self.clock.clone(),
            cancel,
            progress,
            manifest_part_bytes: None,
            lease,
        })
    }

    /// Backs up `vaults`, up to [`PARALLEL_VAULTS`] at a time (each at its own bounded
    /// concurrency and under its own rate limit), and returns one report per vault, in the order
    /// given.
    pub async fn backup(
        &self,
        vaults: &[VaultConfig],
        cancel: CancellationToken,
        progress: Arc<dyn Progress>,
    ) -> Vec<BackupReport> {
        let runs = vaults
            .iter()
            .map(|vault| self.backup_one(vault, cancel.clone(), progress.clone()));
        futures::stream::iter(runs)
            .buffered(PARALLEL_VAULTS)
            .collect()
            .await
    }

    /// Backs up one vault: the unit [`Runner::backup`] runs several of, and the daemon one at a
    /// time. An `async fn` rather than a closure so its future is `Send` for `tokio::spawn`.
    pub async fn backup_one(
        &self,
        vault: &VaultConfig,
        cancel: CancellationToken,
        progress: Arc<dyn Progress>,
    ) -> BackupReport {
        match self.claim_backup(vault, &cancel).await {
            Ok(claim) => self.backup_claimed(vault, claim, progress).await,
            Err(report) => report,
        }
    }

    /// Claims `vault` for a backup: this host's lock, then the vault's lease. The report of the
    /// run that was not started when it cannot be claimed (with
    /// [`BackupReport::held_elsewhere`] set when another instance holds the vault). The daemon
    /// claims first so that it tells nobody about a run it does not start.
    pub async fn claim_backup(
        &self,
        vault: &VaultConfig,
        cancel: &CancellationToken,
    ) -> Result<VaultClaim, BackupReport> {
        // A vault still queued when the backup is stopped is not started at all.
        if cancel.is_cancelled() {
            let mut report = self.failed_report(
                vault,
                "not started: the backup was stopped before this vault's turn".into(),
            );
            report.status = RunStatus::Interrupted;
            return Err(report);
        }
        if self.store.is_none() {
            return Err(self.failed_report(vault, "the store is not open (dry run)".into()));
        }
        let work = LeaseWork::Backup {
            run: RunId::random(),
        };
        match self.claim_with_lease(vault, work, cancel).await {
            Ok(mut claim) => {
                // With the lease held, the sync sees everything the previous holder committed,
                // so the plan finds unchanged what another instance captured. A failed sync
                // costs captures made again, never a wrong restore point: the backup goes on.
                if let Err(e) = self.sync_vault(&vault.name, &claim.cancel).await {
                    tracing::warn!(vault = %vault.name, error = %e,
                        "index sync before the backup failed; objects other instances captured may be captured again");
                }
                self.settle_abandoned(&vault.name, &mut claim).await;
                Ok(claim)
            }
            Err(ClaimError::Held(message, by)) => {
                // Several daemons on one store meet here on every shared schedule: the other
                // instance is doing this vault's work, so it is no error here.
                tracing::info!(vault = %vault.name, error = %message,
                    "backup not started: another kvkeep instance holds the vault");
                let mut report = self.report_not_started(vault, message);
                report.held_elsewhere = Some(HeldElsewhere { by });
                Err(report)
            }
            Err(ClaimError::Other(message)) => Err(self.failed_report(vault, message)),
        }
    }

    /// Backs up a vault claimed with [`Runner::claim_backup`], then releases the claim.
    pub async fn backup_claimed(
        &self,
        vault: &VaultConfig,
        claim: VaultClaim,
        progress: Arc<dyn Progress>,
    ) -> BackupReport {
        let Some(store) = self.store.clone() else {
            claim.release().await;
            return self.failed_report(vault, "the store is not open (dry run)".into());
        };
        let watch = claim.lease.as_ref().map(HeldLease::watch);
        let run = claim.run.clone().unwrap_or_else(RunId::random);
        let report = match self.vault_backup(vault, store, claim.cancel.clone(), progress, watch) {
            Ok(backup) => backup.run_as(run).await,
            Err(e) => self.failed_report(vault, e),
        };
        claim.release().await;
        report
    }

    /// Plans `vaults` without writing anything (`--dry-run`): one plan or error per vault.
    pub async fn plan(&self, vaults: &[VaultConfig]) -> Vec<Result<BackupPlan, String>> {
        let plans = vaults.iter().map(|vault| async move {
            // The survey never touches the store; an in-memory one stands in for it.
            let store: Arc<dyn BlobStore> = Arc::new(crate::store::InMemoryStore::new());
            let backup = self.vault_backup(
                vault,
                store,
                CancellationToken::new(),
                Arc::new(super::NoProgress),
                None,
            )?;
            backup.survey().await
        });
        futures::stream::iter(plans)
            .buffered(PARALLEL_VAULTS)
            .collect()
            .await
    }

    /// The report of a vault that could not be started (its source could not be built).
    fn failed_report(&self, vault: &VaultConfig, error: String) -> BackupReport {
        tracing::error!(vault = %vault.name, error = %error, "backup did not start");
        self.report_not_started(vault, error)
    }

    /// The report of a run that was not started, without logging it.
    fn report_not_started(&self, vault: &VaultConfig, error: String) -> BackupReport {
        let now = (self.clock)();
        BackupReport {
            vault: vault.name.clone(),
            run: RunId::random(),
            status: RunStatus::Failed,
            started_at: now,
            finished_at: now,
            manifest: None,
            stats: Default::default(),
            failures: Vec::new(),
            error: Some(error),
            held_elsewhere: None,
        }
    }
}
