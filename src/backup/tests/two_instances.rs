//! The bed of the runner's lease, sync and takeover tests: two or more kvkeep instances over one
//! in-memory store and one vault, each with its own configuration and index (as on separate
//! hosts), sharing the catalog key.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, VaultConfig};
use crate::crypto::{write_identity_file, Identity, KeyRole};
use crate::index::Index;
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::source::{
    BackupBlob, DeletedInfo, InMemoryVaultSource, ObjectProperties, ObjectSummary, RestoredObject,
    SeedObject, SourceError, VaultSource, VersionInfo,
};
use crate::store::{BlobStore, InMemoryStore, LeaseDuration, LeaseTiming};

pub(super) const START: i64 = 1_800_000_000;
pub(super) const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

pub(super) fn vault_name() -> VaultName {
    "kv1".parse().expect("vault")
}

pub(super) fn secret(name: &str) -> ObjectName {
    name.parse().expect("name")
}

/// One instance: its own index and configuration, the shared store, vault and catalog key.
pub(super) struct Instance {
    pub(super) runner: crate::backup::Runner,
    pub(super) vault: VaultConfig,
    _dir: tempfile::TempDir,
}

/// The shared parts: the store (its lease clock pinned, so a lease ends only when released or
/// broken), the vault (two secrets), the catalog key and the instances' clock.
pub(super) struct Bed {
    pub(super) store: Arc<InMemoryStore>,
    pub(super) source: Arc<InMemoryVaultSource>,
    catalog: Identity,
    pub(super) now: Arc<AtomicI64>,
}

impl Bed {
    pub(super) fn new() -> Self {
        let source = Arc::new(InMemoryVaultSource::new(vault_name(), START - 1_000));
        for name in ["db-password", "api-token"] {
            source.put(ObjectKind::Secrets, &secret(name), SeedObject::value("v"));
        }
        Bed {
            store: Arc::new(InMemoryStore::new().with_clock(Arc::new(|| START))),
            source,
            catalog: Identity::generate_with_role(KeyRole::Catalog),
            now: Arc::new(AtomicI64::new(START)),
        }
    }

    /// An instance named `name` backing up the bed's vault, whose clock moves a second per
    /// reading, or stands still (`ticking` false: every run in one second).
    pub(super) fn instance(&self, name: &str, ticking: bool) -> Instance {
        self.instance_with(name, ticking, self.source.clone())
    }

    /// [`Bed::instance`] reading the vault through `source` (a wrapper of the bed's).
    pub(super) fn instance_with(
        &self,
        name: &str,
        ticking: bool,
        source: Arc<dyn VaultSource>,
    ) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let index_path = dir.path().join("index.sqlite");
        let catalog_path = dir.path().join("catalog.txt");
        write_identity_file(&catalog_path, &self.catalog, "2026-12-01T00:00:00Z", false)
            .expect("catalog identity");
        let text = format!(
            r#"
[store]
type = "local"
path = "/unused"

[index]
path = "{}"

[encryption]
recipients = ["{RECIPIENT}"]
catalog_recipient = "{}"
catalog_identity_file = "{}"

[daemon]
instance = "{name}"

[defaults.retention]
keep_last = 1
min_retention = "0s"

[[vault]]
name = "kv1"
kinds = ["secrets"]
"#,
            index_path.display(),
            self.catalog.recipient(),
            catalog_path.display(),
        );
        let config = Config::parse(&text, "kvkeep.toml", dir.path(), &|_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .expect("valid configuration");
        let now = self.now.clone();
        let clock: crate::backup::Clock = if ticking {
            Arc::new(move || now.fetch_add(1, Ordering::SeqCst))
        } else {
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let runner = crate::backup::Runner::from_parts(
            &config,
            self.store.clone() as Arc<dyn BlobStore>,
            Arc::new(Index::open(&index_path).expect("index")),
            clock,
        )
        .expect("runner")
        // Renewed often, so a lost lease is noticed within the test's patience.
        .with_lease_timing(LeaseTiming {
            duration: LeaseDuration::DEFAULT,
            renew_every: Duration::from_millis(10),
            give_up_after: Duration::from_secs(5),
        });
        runner.use_source(&vault_name(), source);
        Instance {
            vault: config.vaults[0].clone(),
            runner,
            _dir: dir,
        }
    }

    /// How many manifests the store holds.
    pub(super) async fn manifests(&self) -> usize {
        self.store.list("manifests/").await.expect("list").len()
    }
}

/// A vault whose backups wait until the test opens the gate, telling it when the first one
/// is waiting.
pub(super) struct Gated {
    inner: Arc<InMemoryVaultSource>,
    pub(super) entered: Notify,
    pub(super) open: CancellationToken,
}

impl Gated {
    pub(super) fn new(inner: Arc<InMemoryVaultSource>) -> Self {
        Gated {
            inner,
            entered: Notify::new(),
            open: CancellationToken::new(),
        }
    }
}

#[async_trait]
impl VaultSource for Gated {
    fn vault(&self) -> &VaultName {
        self.inner.vault()
    }
    async fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectSummary>, SourceError> {
        self.inner.list(kind).await
    }
    async fn list_versions(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionInfo>, SourceError> {
        self.inner.list_versions(kind, name).await
    }
    async fn backup(&self, kind: ObjectKind, name: &ObjectName) -> Result<BackupBlob, SourceError> {
        // `notify_one` keeps a permit: the test hears of it even if it starts waiting later.
        self.entered.notify_one();
        self.open.cancelled().await;
        self.inner.backup(kind, name).await
    }
    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError> {
        self.inner.restore(kind, blob).await
    }
    async fn list_deleted(&self, kind: ObjectKind) -> Result<Vec<DeletedInfo>, SourceError> {
        self.inner.list_deleted(kind).await
    }
    async fn get_deleted(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<DeletedInfo>, SourceError> {
        self.inner.get_deleted(kind, name).await
    }
    async fn recover(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.inner.recover(kind, name).await
    }
    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.inner.purge(kind, name).await
    }
    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.inner.delete(kind, name).await
    }
    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError> {
        self.inner.get_properties(kind, name).await
    }
}
