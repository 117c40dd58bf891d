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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use tokio_util::sync::CancellationToken;

use super::{BackupPlan, BackupReport, Clock, HeldElsewhere, Progress, VaultBackup};
use crate::config::{Config, VaultConfig};
use crate::crypto::{load_catalog_identity, CryptoError, Identities, Sealer};
use crate::index::{lock_vault, Index, IndexError, IndexLock, RunStatus};
use crate::model::{RunId, VaultName};
use crate::restore::sync::SyncReport;
use crate::source::{
    AzureSourceOptions, AzureVaultSource, RateLimitOptions, RateLimiter, VaultSource,
};
use crate::store::{
    open_store_cancellable, BlobStore, HeldLease, HolderInfo, LeaseError, LeaseHolder, LeaseTiming,
    LeaseWork, StoreError,
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

/// A vault claimed for one run: this host's lock beside the index and, with a store, the
/// vault's lease. End it with [`VaultClaim::release`] (awaited: the lease is released on the
/// store); dropped instead, the lease stops being renewed and expires within its duration.
pub struct VaultClaim {
    _lock: IndexLock,
    lease: Option<HeldLease>,
    /// The run's token: a child of the caller's, also cancelled when the lease is lost.
    cancel: CancellationToken,
    /// The backup run the claim is for (recorded on the lock blob); `None` for a prune.
    run: Option<RunId>,
    /// The previous holder of the vault's lease, when it never released it and left work
    /// unfinished: this claim took the vault over from it.
    took_over: Option<HolderInfo>,
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
enum ClaimError {
    /// Another kvkeep instance holds its lease.
    Held(String, Option<crate::store::HolderInfo>),
    /// Anything else: the local lock, the index, the store.
    Other(String),
}

impl ClaimError {
    fn message(self) -> String {
        match self {
            ClaimError::Held(m, _) | ClaimError::Other(m) => m,
        }
    }
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

    /// Under a fresh claim, after its sync: what the vault's previous lease holder left
    /// unfinished when it never released the lease. Its backup run is recorded `interrupted`
    /// (unless the sync found its manifest: then it committed and only the release was lost);
    /// a prune is left to the next prune, since every prune step leaves the store consistent.
    /// Either way the run claimed now goes on, and the claim notes whom it took over from.
    async fn settle_abandoned(&self, vault: &VaultName, claim: &mut VaultClaim) {
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
                .await;
                match recorded {
                    Ok(Ok(true)) => {
                        tracing::warn!(vault = %vault, previous_holder = %left,
                            "took the vault over from a kvkeep instance that never finished its backup run (it stopped, hung or lost the store): that run is recorded interrupted and made no restore point; this run backs up what it left out");
                        claim.took_over = Some(left);
                    }
                    // Committed (the sync found its manifest), or ended in this index already.
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(vault = %vault, previous_holder = %left, error = %e,
                        "cannot record the backup run another kvkeep instance left unfinished; this run goes on")
                    }
                    Err(e) => tracing::warn!(vault = %vault, error = %e,
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

    /// Marks `vault`'s runs left `running` by a crashed or killed process as `interrupted`,
    /// under the vault's lock (the daemon does this for every vault at start, so a vault whose
    /// next run is far away does not show a run as running for days). A vault locked by another
    /// kvkeep process is left alone: that process is alive, and its runs may be too.
    pub fn recover_interrupted(&self, vault: &VaultConfig) -> Result<(), String> {
        self.claim(vault, "backup").map(drop)
    }

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

    /// [`Runner::claim`], then the vault's lease on the store (when one is open), renewed
    /// until the claim is released; losing it cancels the claim's token, a child of `cancel`.
    async fn claim_with_lease(
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
    fn claim(&self, vault: &VaultConfig, what: &str) -> Result<IndexLock, String> {
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
