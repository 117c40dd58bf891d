//! A vault with many restore points for prune tests: an in-memory Key Vault backed up hourly by
//! the real pipeline into a local store and a file index, with objects that change every run,
//! now and then, never, and one deleted along the way. Also the checks every prune test makes
//! of the result: what is left restores, and nothing else is left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kvkeep::backup::{Clock, NoProgress, VaultBackup};
use kvkeep::config::{PayloadMode, VaultConfig};
use kvkeep::crypto::{Identities, Identity, Sealer};
use kvkeep::index::Index;
use kvkeep::model::{BlobKey, ObjectKind, ObjectName, VaultName};
use kvkeep::retention::RetentionPolicy;
use kvkeep::source::{InMemoryVaultSource, SeedObject, VaultSource};
use kvkeep::store::{BlobStore, LocalStore};
use tokio_util::sync::CancellationToken;

/// The first backup: 2027-01-15T08:00:00Z.
pub const T0: i64 = 1_800_000_000;
pub const HOUR: i64 = 3_600;
pub const VAULT: &str = "kv-prune";
/// The run (0-based) before which `secrets/temp` is deleted from the vault.
pub const TEMP_DELETED_BEFORE: i64 = 150;

pub fn name(s: &str) -> ObjectName {
    s.parse().expect("name")
}

pub fn vault() -> VaultName {
    VAULT.parse().expect("vault")
}

/// 24 hourly and 3 daily points, nothing younger kept regardless, and the last copy of a
/// deleted object for 120 days.
pub fn policy() -> RetentionPolicy {
    RetentionPolicy {
        keep_hourly: Some(24),
        keep_daily: Some(3),
        min_retention: Duration::ZERO,
        ..RetentionPolicy::default()
    }
}

pub fn vault_config(policy: RetentionPolicy) -> VaultConfig {
    VaultConfig {
        name: vault(),
        url: format!("https://{VAULT}.vault.azure.net"),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: ObjectKind::ALL.into_iter().collect(),
        include: Vec::new(),
        exclude: Vec::new(),
        skip_tags: BTreeMap::new(),
        payload: PayloadMode::Native,
        deep_scan_every: Duration::from_secs(7 * 86_400),
        jitter: Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: policy,
        rpo: None,
    }
}

/// A directory holding `store/` and `index.sqlite`, and the identity the blobs are sealed to.
pub struct PruneBed {
    pub dir: PathBuf,
    pub identity: Arc<Identities>,
}

impl PruneBed {
    /// `runs` hourly backups from [`T0`] into `dir`. Each run captures `secrets/db-password`
    /// (rotated every run), `secrets/api-token` every seventh run, `keys/signing` and
    /// `certificates/tls` once, and `secrets/temp` until it is deleted before run
    /// [`TEMP_DELETED_BEFORE`].
    pub async fn build(dir: &Path, runs: i64) -> PruneBed {
        std::fs::create_dir_all(dir.join("store")).expect("store dir");
        let source = Arc::new(InMemoryVaultSource::new(vault(), T0 - 10_000));
        source.put(ObjectKind::Keys, &name("signing"), SeedObject::value("k"));
        source.put_certificate(&name("tls"), SeedObject::value("pfx"));
        source.put(ObjectKind::Secrets, &name("temp"), SeedObject::value("t"));
        let identity = Identity::generate();
        let sealer = Arc::new(Sealer::new(&[identity.recipient()], 3).expect("sealer"));
        let index = Arc::new(Index::open(dir.join("index.sqlite")).expect("index"));
        let store: Arc<dyn BlobStore> =
            Arc::new(LocalStore::open(&dir.join("store"), "").expect("store"));
        let now = Arc::new(AtomicI64::new(T0));
        for run in 0..runs {
            source.put(
                ObjectKind::Secrets,
                &name("db-password"),
                SeedObject::value(format!("pw-{run}")),
            );
            if run % 7 == 0 {
                source.put(
                    ObjectKind::Secrets,
                    &name("api-token"),
                    SeedObject::value(format!("tok-{run}")),
                );
            }
            if run == TEMP_DELETED_BEFORE {
                source
                    .delete(ObjectKind::Secrets, &name("temp"))
                    .await
                    .expect("delete temp");
            }
            now.store(T0 + run * HOUR, Ordering::SeqCst);
            let clock_now = now.clone();
            let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
            let report = VaultBackup {
                vault: vault_config(policy()),
                source: source.clone() as Arc<dyn VaultSource>,
                store: store.clone(),
                index: index.clone(),
                sealer: sealer.clone(),
                concurrency: 2,
                clock,
                cancel: CancellationToken::new(),
                progress: Arc::new(NoProgress),
                manifest_part_bytes: None,
                lease: None,
            }
            .run()
            .await;
            assert!(report.manifest.is_some(), "run {run} committed: {report:?}");
        }
        PruneBed {
            dir: dir.to_path_buf(),
            identity: Arc::new(identity.into()),
        }
    }

    /// A copy of the bed in `to` (the index is closed between runs, so its file is whole).
    pub fn copy_to(&self, to: &Path) -> PruneBed {
        copy_dir(&self.dir, to);
        PruneBed {
            dir: to.to_path_buf(),
            identity: self.identity.clone(),
        }
    }

    pub fn index(&self) -> Arc<Index> {
        Arc::new(Index::open(self.dir.join("index.sqlite")).expect("index"))
    }

    pub fn store(&self) -> Arc<dyn BlobStore> {
        Arc::new(LocalStore::open(&self.dir.join("store"), "").expect("store"))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every blob in the store under `prefix`.
pub async fn listed(store: &dyn BlobStore, prefix: &str) -> BTreeSet<String> {
    store
        .list(prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.key.to_string())
        .collect()
}

/// The state a finished prune must leave, read back from index and store:
/// - the restore points are `expected_points` (run ids);
/// - `manifests/` holds exactly their heads, `manifest-parts/` only their parts;
/// - `objects/` holds exactly the blobs they hold, and no run-less capture is left;
/// - a deep verification is clean (every blob opens with the identity and matches the index).
pub async fn assert_pruned_state(bed: &PruneBed, expected_points: &BTreeSet<String>) {
    let index = bed.index();
    let store = bed.store();
    let points = index.restore_points(&vault()).expect("points");
    let runs: BTreeSet<String> = points.iter().map(|p| p.run.to_string()).collect();
    assert_eq!(&runs, expected_points, "restore points after the prune");
    let heads: BTreeSet<String> = points.iter().map(|p| p.manifest.to_string()).collect();
    assert_eq!(
        listed(store.as_ref(), "manifests/").await,
        heads,
        "manifests left"
    );
    for part in listed(store.as_ref(), "manifest-parts/").await {
        assert!(
            runs.iter().any(|r| part.contains(r.as_str())),
            "part {part} of a forgotten run is left"
        );
    }
    let mut held = BTreeSet::new();
    for p in &points {
        for c in index.restore_point_contents(&p.run).expect("contents") {
            held.insert(c.blob.to_string());
        }
    }
    assert_eq!(
        listed(store.as_ref(), "objects/").await,
        held,
        "object blobs left"
    );
    assert!(index.unheld_blobs(&vault()).expect("unheld").is_empty());
    let report = kvkeep::restore::verify::verify_blobs(
        index.clone(),
        store.clone(),
        &vault(),
        Some(bed.identity.clone()),
        4,
        T0,
        &CancellationToken::new(),
    )
    .await
    .expect("verify");
    assert!(report.ok(), "verify after prune: {:?}", report.problems);
}

/// Blob keys as a set of strings.
pub fn keys<'a>(keys: impl IntoIterator<Item = &'a BlobKey>) -> BTreeSet<String> {
    keys.into_iter().map(ToString::to_string).collect()
}
