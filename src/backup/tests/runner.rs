//! The runner's vault leases over an in-memory store shared by two instances (each with its own
//! index, as on two hosts): a vault held by one is not started by the other, and the refusal
//! names the holder; the same instance takes its lease back at once; a lease lost mid-run stops
//! the backup before its manifest, so it is no restore point; a released lease lets the other
//! instance in.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backup::{NoProgress, Runner};
use crate::config::{Config, VaultConfig};
use crate::index::{Index, RunStatus};
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::source::{
    BackupBlob, DeletedInfo, InMemoryVaultSource, ObjectProperties, ObjectSummary, RestoredObject,
    SeedObject, SourceError, VaultSource, VersionInfo,
};
use crate::store::{
    BlobStore, InMemoryStore, LeaseDuration, LeaseHolder, LeaseTiming, LOCKS_PREFIX,
};

const START: i64 = 1_800_000_000;
const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn vault_name() -> VaultName {
    "kv1".parse().expect("vault")
}

/// One kvkeep instance: its configuration (named `instance`, its own index directory) and its
/// runner over the shared store and vault.
struct Instance {
    runner: Runner,
    vault: VaultConfig,
    _dir: tempfile::TempDir,
}

fn instance(
    name: &str,
    store: &Arc<InMemoryStore>,
    source: Arc<dyn VaultSource>,
    now: &Arc<AtomicI64>,
) -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let index_path = dir.path().join("index.sqlite");
    let text = format!(
        r#"
[store]
type = "local"
path = "/unused"

[index]
path = "{}"

[encryption]
recipients = ["{RECIPIENT}"]

[daemon]
instance = "{name}"

[[vault]]
name = "kv1"
kinds = ["secrets"]
"#,
        index_path.display()
    );
    let config = Config::parse(&text, "kvkeep.toml", dir.path(), &|_| {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    })
    .expect("valid configuration");
    let index = Arc::new(Index::open(&index_path).expect("index"));
    let clock_now = now.clone();
    let runner = Runner::from_parts(
        &config,
        store.clone() as Arc<dyn BlobStore>,
        index,
        Arc::new(move || clock_now.fetch_add(1, Ordering::SeqCst)),
    )
    .expect("runner")
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

/// The shared store (its lease clock pinned: leases end only when released or broken) and a
/// vault with two secrets.
fn bed() -> (Arc<InMemoryStore>, Arc<InMemoryVaultSource>, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(START));
    let store = Arc::new(InMemoryStore::new().with_clock(Arc::new(|| START)));
    let source = Arc::new(InMemoryVaultSource::new(vault_name(), START - 1_000));
    for name in ["db-password", "api-token"] {
        let name: ObjectName = name.parse().expect("name");
        source.put(ObjectKind::Secrets, &name, SeedObject::value("v"));
    }
    (store, source, now)
}

async fn manifests(store: &InMemoryStore) -> usize {
    store.list("manifests/").await.expect("list").len()
}

#[tokio::test]
async fn a_vault_held_by_another_instance_is_not_started_and_the_refusal_names_the_holder() {
    let (store, source, now) = bed();
    let a = instance("web-1", &store, source.clone(), &now);
    let b = instance("web-2", &store, source.clone(), &now);

    let claim = a
        .runner
        .claim_backup(&a.vault, &CancellationToken::new())
        .await
        .expect("web-1 claims the vault");
    let refused = b
        .runner
        .backup_one(&a.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert_eq!(refused.status, RunStatus::Failed);
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("backup of vault kv1 not started: vault kv1 is locked in in-memory store by kvkeep instance web-1 (pid "),
        "{error}"
    );
    assert!(error.contains("try again when its run ends"), "{error}");
    let held = refused.held_elsewhere.as_ref().expect("held elsewhere");
    assert_eq!(held.by.as_ref().map(|h| h.instance.as_str()), Some("web-1"));
    assert!(
        b.runner.index().run(&refused.run).expect("index").is_none(),
        "a run that was not started is not recorded"
    );
    // As JSON (`kvkeep backup --output json`), the holder is there for scripts.
    let json = serde_json::to_value(&refused).expect("json");
    assert_eq!(json["held_elsewhere"]["by"]["instance"], "web-1");

    // Released at the end of web-1's run: web-2 takes the vault at once.
    let report = a
        .runner
        .backup_claimed(&a.vault, claim, Arc::new(NoProgress))
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    let report = b
        .runner
        .backup_one(&b.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    assert!(report.held_elsewhere.is_none());
    assert_eq!(manifests(&store).await, 2);
    assert_eq!(
        store.list(LOCKS_PREFIX).await.expect("list").len(),
        1,
        "one lock blob per vault"
    );
}

#[tokio::test]
async fn a_restarted_instance_takes_its_own_lease_back_at_once() {
    let (store, source, now) = bed();
    // A process of instance web-1 died holding the lease (the store's clock is pinned, so it
    // would never expire).
    store
        .acquire_lease(
            &vault_name(),
            &LeaseHolder::new("web-1").expect("holder"),
            LeaseDuration::DEFAULT,
        )
        .await
        .expect("held by the old process");
    let other = instance("web-2", &store, source.clone(), &now);
    let refused = other
        .runner
        .backup_one(&other.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert!(refused.held_elsewhere.is_some(), "{refused:?}");

    let restarted = instance("web-1", &store, source, &now);
    let report = restarted
        .runner
        .backup_one(
            &restarted.vault,
            CancellationToken::new(),
            Arc::new(NoProgress),
        )
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    // And it released the lease at the end.
    let report = other
        .runner
        .backup_one(&other.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
}

#[tokio::test]
async fn a_lease_lost_mid_run_stops_the_backup_before_its_manifest() {
    let (store, source, now) = bed();
    let gated = Arc::new(Gated::new(source.clone()));
    let a = instance("web-1", &store, gated.clone(), &now);
    let b = instance("web-2", &store, source.clone(), &now);

    let claim = a
        .runner
        .claim_backup(&a.vault, &CancellationToken::new())
        .await
        .expect("claimed");
    let run_token = claim.cancel().clone();
    let breaker = async {
        // Objects are being captured: an operator breaks the lease (or it expired and another
        // instance took it). The renew task notices and stops the run; the objects in flight
        // finish afterwards.
        gated.entered.notified().await;
        store.break_lease(&vault_name()).await.expect("broken");
        tokio::time::timeout(Duration::from_secs(10), run_token.cancelled())
            .await
            .expect("the lost lease cancels the run");
        gated.open.cancel();
    };
    let (report, ()) = tokio::join!(
        a.runner
            .backup_claimed(&a.vault, claim, Arc::new(NoProgress)),
        breaker
    );
    assert_eq!(report.status, RunStatus::Interrupted, "{report:?}");
    assert_eq!(report.manifest, None);
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("the lease on vault kv1 in in-memory store was lost")
            && error.contains("manifest was not written"),
        "{error}"
    );
    assert_eq!(manifests(&store).await, 0, "nothing committed");
    let record = a
        .runner
        .index()
        .run(&report.run)
        .expect("index")
        .expect("the run is recorded");
    assert_eq!(record.status, RunStatus::Interrupted);
    assert!(!record.is_committed(), "not a restore point");
    assert!(a
        .runner
        .index()
        .restore_points(&vault_name())
        .expect("index")
        .is_empty());

    // The vault is free for the other instance, which makes the restore point.
    let report = b
        .runner
        .backup_one(&b.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    assert_eq!(manifests(&store).await, 1);
}

#[tokio::test]
async fn prune_takes_the_lease_too() {
    let (store, source, now) = bed();
    let a = instance("web-1", &store, source.clone(), &now);
    let b = instance("web-2", &store, source, &now);
    let claim = a
        .runner
        .claim_backup(&a.vault, &CancellationToken::new())
        .await
        .expect("claimed");
    let refused = b
        .runner
        .prune(&b.vault, None, &CancellationToken::new())
        .await
        .expect_err("held by web-1");
    assert!(
        refused.starts_with("prune of vault kv1 not started: vault kv1 is locked")
            && refused.contains("kvkeep instance web-1"),
        "{refused}"
    );
    assert_eq!(claim.release().await, None);
    b.runner
        .prune(&b.vault, None, &CancellationToken::new())
        .await
        .expect("released: web-2 prunes");
}

/// A vault whose backups wait until the test opens the gate, telling it when the first one
/// is waiting.
struct Gated {
    inner: Arc<InMemoryVaultSource>,
    entered: Notify,
    open: CancellationToken,
}

impl Gated {
    fn new(inner: Arc<InMemoryVaultSource>) -> Self {
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
