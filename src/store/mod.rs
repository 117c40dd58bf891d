//! The blob-store seam: where sealed backups and manifests are written, once, and read back.
//!
//! [`BlobStore`] is the contract every backend meets (checked by the shared contract suite in
//! `tests/store_contract.rs`, run against each of them):
//!
//! - **write once**: [`BlobStore::put_new`] creates a blob or fails with
//!   [`StoreErrorKind::AlreadyExists`]; it never replaces content, even when two writers race;
//! - a blob is visible to `get`/`list` only complete (no partial writes are ever observable);
//! - `list` returns every key under a prefix (all pages), sorted, relative to the store prefix;
//! - keys are [`BlobKey`]s, valid both as Azure blob names and relative file paths;
//! - one lease per vault on its lock blob `locks/{vault}` keeps instances that share the store
//!   from working on the same vault at once (see [`lease`] for the semantics).
//!
//! Backends: [`InMemoryStore`] (the fake), [`LocalStore`] (a directory), [`AzureBlobStore`]
//! (a container). Behaviour that applies to any backend wraps it: [`RetryStore`] (bounded
//! backoff of throttled and transient failures) and [`FaultyStore`] (fault injection for
//! damage tests). [`open_store`] assembles the production stack from the configuration.

mod azure;
mod azure_lease;
mod error;
mod faulty;
mod held_lease;
pub mod lease;
mod local;
mod local_lease;
mod memory;
mod retry;
mod split_locks;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use azure::{AzureAuth, AzureBlobStore};
pub use error::{StoreError, StoreErrorKind, StoreOp};
pub use faulty::{Corruption, FaultyStore};
pub use held_lease::{HeldLease, LeaseTiming, LeaseWatch};
pub use lease::{
    lock_key, HolderInfo, Lease, LeaseDuration, LeaseError, LeaseHolder, LeaseWork, LOCKS_PREFIX,
};
pub use local::LocalStore;
pub use memory::InMemoryStore;
pub use retry::{RetryOptions, RetryStore};
pub use split_locks::LocksElsewhere;

use crate::config::{AzureConfig, StoreAuth, StoreConfig};
use crate::model::{BlobKey, VaultName};

/// A blob as listed: its key (relative to the store prefix) and size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobMeta {
    /// The key.
    pub key: BlobKey,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// A place to keep blobs, written once and never modified. Implementations are cheap to share
/// (`Arc<dyn BlobStore>`) and safe to call concurrently.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Writes a new blob. Fails with [`StoreErrorKind::AlreadyExists`] if `key` exists — also
    /// when another writer created it a moment earlier; exactly one of concurrent writers of a
    /// key wins. The blob becomes visible only once complete.
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError>;

    /// Reads a whole blob; [`StoreErrorKind::NotFound`] if it does not exist.
    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError>;

    /// The size of a blob; [`StoreErrorKind::NotFound`] if it does not exist.
    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError>;

    /// Every blob whose key starts with `prefix` (a plain string prefix, not a path: `"a/b"`
    /// matches `a/b/c` and `a/bc`), sorted by key. `""` lists the whole store.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError>;

    /// Deletes a blob; [`StoreErrorKind::NotFound`] if it does not exist. Only retention's prune
    /// deletes.
    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError>;

    /// Acquires `vault`'s lease for `holder` (creating its lock blob `locks/{vault}` the first
    /// time) and records the holder on the lock blob. Succeeds at once when `holder`'s lease id
    /// already holds it (a restarted instance); [`LeaseError::Held`], naming the holder, when
    /// another does. Safe to retry: the lease id is the holder's own.
    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError>;

    /// Extends `lease` by its duration; [`LeaseError::Lost`] when it was broken, released or
    /// taken by another holder (the run it protects must stop).
    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError>;

    /// Ends `lease`. A lease that is no longer ours (broken, expired, taken) needs no release:
    /// that succeeds too.
    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError>;

    /// Ends whoever's lease on `vault` at once (break period 0), so that the next acquire
    /// succeeds: for operators and tests. A vault without a lease is left as it is.
    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError>;
}

/// Opens the store configured in `[store]`, wrapped in a [`RetryStore`] with default options.
///
/// For Azure, the SDK's own retry policy is switched off: [`RetryStore`] is the one retry layer,
/// because only it can tell a write-once conflict caused by its own earlier, lost-response
/// attempt from a genuine one (see [`RetryStore`]).
pub async fn open_store(
    store: &StoreConfig,
    azure: &AzureConfig,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    open_store_cancellable(store, azure, tokio_util::sync::CancellationToken::new()).await
}

/// [`open_store`] whose retry waits end as soon as `cancel` fires.
pub async fn open_store_cancellable(
    store: &StoreConfig,
    azure: &AzureConfig,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    open_store_with(store, azure, RetryOptions::default(), cancel).await
}

/// [`open_store_cancellable`] with its own retry patience: `kvkeep doctor` reports an
/// unreachable store after a retry or two instead of the backup path's quarter of a minute.
pub async fn open_store_with(
    store: &StoreConfig,
    azure: &AzureConfig,
    retry: RetryOptions,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    let inner: Arc<dyn BlobStore> = match store {
        StoreConfig::Local { path, prefix } => Arc::new(LocalStore::open(path, prefix)?),
        StoreConfig::Azure {
            container_url,
            auth,
            prefix,
            access_tier,
            locks,
        } => {
            let data = azure_store(azure, container_url, auth, prefix, *access_tier)?;
            match locks {
                None => data,
                // Same prefix, so one lock container can serve several stores' prefixes.
                Some(l) => Arc::new(LocksElsewhere::new(
                    data,
                    azure_store(azure, &l.container_url, &l.auth, prefix, None)?,
                )),
            }
        }
    };
    Ok(Arc::new(RetryStore::new(inner, retry).with_cancel(cancel)))
}

/// One Azure container as a store, authenticated as `[store]` (or its lock container) says.
fn azure_store(
    azure: &AzureConfig,
    container_url: &str,
    auth: &StoreAuth,
    prefix: &str,
    access_tier: Option<crate::config::AccessTier>,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    let where_ = format!("azure container {container_url}");
    let open_err = |detail: String| {
        StoreError::new(
            StoreErrorKind::Permanent,
            StoreOp::Open,
            "",
            where_.clone(),
            detail,
        )
    };
    let mut options = crate::azure::client_options(azure).map_err(|e| open_err(e.to_string()))?;
    options.retry = azure_core::http::RetryOptions::none();
    let auth = match auth {
        StoreAuth::Credential => AzureAuth::Credential(
            crate::azure::identity_client_options(azure)
                .and_then(|identity| crate::azure::credential(&azure.credential, &identity))
                .map_err(|e| open_err(e.to_string()))?,
        ),
        StoreAuth::Sas { url_file } => {
            AzureAuth::sas_from_file(url_file).map_err(|e| open_err(e.to_string()))?
        }
    };
    Ok(Arc::new(AzureBlobStore::new(
        container_url,
        auth,
        options,
        prefix,
        access_tier,
    )?))
}

/// Joins the configured store prefix and a key or list prefix. The configuration already ends
/// non-empty prefixes with `/`; stores built directly get the same normalisation here.
pub(crate) fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}
