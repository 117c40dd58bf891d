//! Prune on a local store with 200 hourly restore points made by the real backup pipeline:
//! what it keeps restores and is all that is left; an immutability policy postpones instead of
//! failing; blobs of runs that never committed wait out the grace period; and a prune killed
//! with SIGKILL at 20 random steps always leaves a verifiable store that the next prune
//! completes.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use kvkeep::backup::manifest::{manifest_blob_key, object_blob_key};
use kvkeep::index::{RunStats, RunStatus};
use kvkeep::model::{ObjectKind, RunId};
use kvkeep::restore::{
    plan_restore, ConflictPolicy, NoRestoreProgress, RestoreOptions, RestoreRequest, Restorer,
    VaultLocation,
};
use kvkeep::retention::{prune_vault, PruneObserver, PruneOutcome, PruneStep};
use kvkeep::source::{InMemoryVaultSource, VaultSource};
use kvkeep::store::{BlobStore, FaultyStore, LeaseDuration, LeaseHolder};
use support::prune_bed::{
    assert_pruned_state, listed, name, policy, vault, vault_config, PruneBed, HOUR, T0,
    TEMP_DELETED_BEFORE,
};
use tokio_util::sync::CancellationToken;

const RUNS: i64 = 200;
/// Prune an hour after the last backup.
const NOW: i64 = T0 + RUNS * HOUR;

async fn prune(bed: &PruneBed, store: Arc<dyn BlobStore>, at: i64) -> PruneOutcome {
    prune_observed(bed, store, at, None).await
}

async fn prune_observed(
    bed: &PruneBed,
    store: Arc<dyn BlobStore>,
    at: i64,
    observer: Option<PruneObserver>,
) -> PruneOutcome {
    prune_vault(
        &bed.index(),
        &store,
        &vault_config(policy()),
        DateTime::from_timestamp(at, 0).expect("time"),
        observer,
        &CancellationToken::new(),
    )
    .await
    .expect("prune")
}

fn location(name: &str) -> VaultLocation {
    VaultLocation {
        name: name.parse().expect("vault"),
        url: format!("https://{name}.vault.azure.net"),
        subscription: None,
        geography: None,
    }
}

/// Restores the point `at` into an empty in-memory vault; returns how many objects came back.
async fn restore_point(bed: &PruneBed, at: i64) -> usize {
    let target = Arc::new(InMemoryVaultSource::new(
        "kv-dr".parse().expect("vault"),
        NOW,
    ));
    let plan = plan_restore(
        bed.index(),
        target.as_ref(),
        RestoreRequest {
            source: location(support::prune_bed::VAULT),
            target: location("kv-dr"),
            at,
            only: Vec::new(),
            policy: ConflictPolicy::Skip,
            assume_compatible: false,
        },
    )
    .await
    .expect("plan");
    let report = Restorer {
        store: bed.store(),
        target: target.clone() as Arc<dyn VaultSource>,
        identities: bed.identity.clone(),
        options: RestoreOptions {
            concurrency: 2,
            purge_wait: Duration::from_millis(100),
            purge_retry_interval: Duration::from_millis(10),
            resend_attempts: 1,
            resend_delay: Duration::from_millis(10),
        },
        progress: Arc::new(NoRestoreProgress),
        cancel: CancellationToken::new(),
    }
    .execute(&plan)
    .await;
    assert_eq!(
        report.stats.failed_objects, 0,
        "restore of {at}: {report:?}"
    );
    report.stats.restored_objects
}

#[tokio::test]
async fn prune_keeps_what_the_policy_says_and_deletes_everything_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bed = PruneBed::build(dir.path(), RUNS).await;
    let index = bed.index();
    let store = bed.store();
    let before_blobs = listed(store.as_ref(), "objects/").await.len();
    // Pruned under the vault's lease, as the daemon and `kvkeep prune` will: the lock blob
    // lives in the store beside the backups and is none of them.
    let holder = LeaseHolder::new("web-1").expect("holder");
    let lease = store
        .acquire_lease(&vault(), &holder, LeaseDuration::DEFAULT)
        .await
        .expect("lease");

    let outcome = prune(&bed, store.clone(), NOW).await;
    assert!(outcome.complete(), "{outcome:?}");
    assert_eq!(
        listed(store.as_ref(), "locks/").await,
        BTreeSet::from(["locks/kv-prune".to_string()]),
        "prune leaves the lock blob alone"
    );
    store.renew_lease(&lease).await.expect("still held");
    store.release_lease(lease).await.expect("release");
    let kept: BTreeSet<String> = outcome
        .plan
        .decision
        .kept()
        .map(|p| p.run.to_string())
        .collect();
    // 24 hourly points, 3 daily (the newest day's winner is an hourly one too), the oldest
    // point for the daily rule's leftover count, and the last holder of the deleted secret.
    assert!((26..=30).contains(&kept.len()), "{kept:?}");
    assert_eq!(outcome.forgotten_points, RUNS as usize - kept.len());
    assert_eq!(outcome.deleted_manifests, outcome.forgotten_points);
    assert_eq!(outcome.deleted_blobs as u64, outcome.plan.freed_blobs);
    assert_eq!(outcome.freed_bytes, outcome.plan.freed_bytes);
    assert!(outcome.deleted_blobs > 150, "{}", outcome.deleted_blobs);
    assert_pruned_state(&bed, &kept).await;
    assert!(listed(store.as_ref(), "objects/").await.len() < before_blobs - 150);

    // The deleted secret's last copy is kept, with its reason, and restores.
    let temp_holder = outcome
        .plan
        .decision
        .kept()
        .find(|p| {
            p.reasons
                .iter()
                .any(|r| r.to_string().contains("secrets/temp"))
        })
        .expect("a point kept for the deleted secret");
    assert_eq!(
        temp_holder.started_at.timestamp(),
        T0 + (TEMP_DELETED_BEFORE - 1) * HOUR,
        "the newest point holding it"
    );
    let held = index
        .restore_point_contents(&temp_holder.run)
        .expect("contents");
    assert!(held
        .iter()
        .any(|c| c.kind == ObjectKind::Secrets && c.name == name("temp")));

    // Every kept point restores in full: 5 objects before the deletion, 4 after.
    for point in outcome.plan.decision.kept() {
        let at = point.started_at.timestamp();
        let expected = if at < T0 + TEMP_DELETED_BEFORE * HOUR {
            5
        } else {
            4
        };
        assert_eq!(restore_point(&bed, at).await, expected, "point at {at}");
    }

    // A rebuild from the store finds the same restore points, and a second prune has nothing
    // to do.
    drop(index);
    let rebuilt_path = dir.path().join("rebuilt.sqlite");
    kvkeep::restore::rebuild::rebuild(
        store.clone(),
        bed.identity.clone(),
        &rebuilt_path,
        2,
        CancellationToken::new(),
        NOW,
    )
    .await
    .expect("rebuild");
    let rebuilt = kvkeep::index::Index::open(&rebuilt_path).expect("rebuilt index");
    let rebuilt_points: BTreeSet<String> = rebuilt
        .restore_points(&vault())
        .expect("points")
        .into_iter()
        .map(|p| p.run.to_string())
        .collect();
    assert_eq!(rebuilt_points, kept);
    let again = prune(&bed, store.clone(), NOW).await;
    assert!(again.complete(), "{again:?}");
    assert_eq!(
        (
            again.forgotten_points,
            again.deleted_manifests,
            again.deleted_blobs
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn an_immutable_manifest_or_blob_is_postponed_and_deleted_by_a_later_prune() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bed = PruneBed::build(dir.path(), 40).await;
    let now = T0 + 40 * HOUR;
    let faulty = Arc::new(FaultyStore::new(bed.store()));
    let store: Arc<dyn BlobStore> = faulty.clone();
    let plan = kvkeep::retention::plan_prune(
        &bed.index(),
        &vault_config(policy()),
        DateTime::from_timestamp(now, 0).expect("time"),
    )
    .expect("plan");
    // The oldest forgotten point's manifest, and a blob only another forgotten point holds.
    let manifest = plan.forget_manifests[0].clone();
    let protected_run = plan
        .decision
        .forgotten()
        .last()
        .expect("forgotten")
        .run
        .clone();
    let its_blobs: BTreeSet<String> = bed
        .index()
        .restore_point_contents(&protected_run)
        .expect("contents")
        .into_iter()
        .map(|c| c.blob.to_string())
        .collect();
    // The plan counts what it frees; the index lists it.
    let forgotten: Vec<RunId> = plan.decision.forgotten().map(|p| p.run.clone()).collect();
    let freed = bed
        .index()
        .blobs_held_only_by(&vault(), &forgotten)
        .expect("freed blobs");
    assert_eq!(freed.len() as u64, plan.freed_blobs);
    let blob = freed
        .iter()
        .find(|b| !its_blobs.contains(b.as_str()))
        .expect("a freed blob of another point")
        .clone();
    faulty.make_immutable(&manifest);
    faulty.make_immutable(&blob);

    let first = prune(&bed, store.clone(), now).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let postponed: BTreeSet<&str> = first.postponed.iter().map(|d| d.blob.as_str()).collect();
    assert_eq!(
        postponed,
        BTreeSet::from([manifest.as_str(), blob.as_str()])
    );
    assert!(first.postponed[0].reason.contains("immutability policy"));
    assert!(!first.complete());
    // The immutable manifest still names its blobs: none of them was deleted.
    let left = listed(store.as_ref(), "objects/").await;
    assert!(
        its_blobs.iter().all(|b| left.contains(b)),
        "blobs of a manifest that stays"
    );
    assert!(left.contains(blob.as_str()));
    assert_eq!(
        listed(store.as_ref(), "manifests/").await.len(),
        plan.decision.kept().count() + 1
    );

    // The policy ends: the next prune deletes what was postponed, and nothing else is left.
    faulty.clear_faults();
    let second = prune(&bed, store.clone(), now).await;
    assert!(second.complete(), "{second:?}");
    assert_eq!(second.forgotten_points, 0, "already forgotten");
    assert_eq!(second.deleted_manifests, 1);
    let kept: BTreeSet<String> = plan.decision.kept().map(|p| p.run.to_string()).collect();
    assert_pruned_state(&bed, &kept).await;
}

#[tokio::test]
async fn blobs_of_runs_that_never_committed_wait_for_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bed = PruneBed::build(dir.path(), 3).await;
    let index = bed.index();
    let store = bed.store();
    // A run that stopped after uploading a blob, before the index heard of it, and one whose
    // manifest reached the store while the index never learned it committed.
    let stopped = RunId::random();
    let committed_elsewhere = RunId::random();
    let started = T0 + 5 * HOUR;
    let mut orphans = Vec::new();
    for run in [&stopped, &committed_elsewhere] {
        index.begin_run(run, &vault(), started).expect("begin");
        index
            .finish_run(
                run,
                RunStatus::Interrupted,
                &RunStats::default(),
                started + 60,
                None,
            )
            .expect("finish");
        let key = object_blob_key(
            &vault(),
            ObjectKind::Secrets,
            &name("db-password"),
            started,
            run,
        )
        .expect("key");
        store
            .put_new(&key, bytes::Bytes::from_static(b"sealed"))
            .await
            .expect("put");
        orphans.push(key);
    }
    let manifest = manifest_blob_key(&vault(), started, &committed_elsewhere).expect("key");
    store
        .put_new(&manifest, bytes::Bytes::from_static(b"head"))
        .await
        .expect("put");

    // Within the grace period (24 h): nothing of theirs is touched.
    let early = prune(&bed, store.clone(), started + 23 * HOUR).await;
    assert_eq!(early.swept_runs, 0);
    assert!(early.complete(), "{early:?}");
    let left = listed(store.as_ref(), "objects/").await;
    assert!(orphans.iter().all(|k| left.contains(k.as_str())));

    // After it: the stopped run's blob goes; the other is kept and the operator told why.
    let late = prune(&bed, store.clone(), started + 25 * HOUR).await;
    assert_eq!(late.swept_runs, 1);
    let left = listed(store.as_ref(), "objects/").await;
    assert!(
        !left.contains(orphans[0].as_str()),
        "stopped run's blob deleted"
    );
    assert!(
        left.contains(orphans[1].as_str()),
        "committed run's blob kept"
    );
    assert_eq!(late.failed.len(), 1, "{late:?}");
    assert!(late.failed[0].reason.contains("index rebuild"), "{late:?}");
    assert!(!late.complete());
}

// ---- SIGKILL at random steps -------------------------------------------------------------

const CHILD_DIR: &str = "KVKEEP_PRUNE_KILL_DIR";
const CHILD_STEP: &str = "KVKEEP_PRUNE_KILL_STEP";
const PAUSED: &str = "PRUNE-PAUSED-AT-STEP";

/// Not a test of its own: the child process of the SIGKILL test. Without its environment it
/// returns at once. With it, it prunes the bed in the given directory and, just before step
/// n, says so and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_kill_child() {
    let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) else {
        return;
    };
    let step: usize = step.parse().expect("step");
    let bed = PruneBed {
        dir: dir.into(),
        identity: Arc::new(kvkeep::crypto::Identity::generate().into()),
    };
    let seen = AtomicUsize::new(0);
    let observer: PruneObserver = Arc::new(move |s: &PruneStep| {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 == step {
            println!("{PAUSED} {step} {s:?}");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    });
    prune_observed(&bed, bed.store(), NOW, Some(observer)).await;
}

/// A random number per call, without a dependency: std's hasher keys are random per process.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

#[tokio::test]
async fn a_prune_killed_at_any_step_leaves_a_verifiable_store_and_the_next_prune_completes() {
    let root = tempfile::tempdir().expect("tempdir");
    let bed = PruneBed::build(&root.path().join("bed"), RUNS).await;

    // A whole prune on a copy: how many steps there are, and the state every prune must end in.
    let counted = bed.copy_to(&root.path().join("counted"));
    let steps = Arc::new(AtomicUsize::new(0));
    let counter = steps.clone();
    let observer: PruneObserver = Arc::new(move |_: &PruneStep| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let whole = prune_observed(&counted, counted.store(), NOW, Some(observer)).await;
    assert!(whole.complete());
    let total = steps.load(Ordering::SeqCst);
    assert!(total > 300, "{total} steps");
    let kept: BTreeSet<String> = whole
        .plan
        .decision
        .kept()
        .map(|p| p.run.to_string())
        .collect();
    assert_pruned_state(&counted, &kept).await;

    // 20 steps at random (KVKEEP_PRUNE_KILL_STEPS="3,17,..." repeats a run), always including
    // the very first (before the mark) and the last.
    let chosen: Vec<usize> = match std::env::var("KVKEEP_PRUNE_KILL_STEPS") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("step"))
            .collect(),
        Err(_) => {
            let mut chosen: BTreeSet<usize> = BTreeSet::from([1, total]);
            while chosen.len() < 20 {
                chosen.insert(1 + (random() % total as u64) as usize);
            }
            chosen.into_iter().collect()
        }
    };
    eprintln!("killing the prune before steps {chosen:?} of {total}");
    let exe = std::env::current_exe().expect("test binary");
    for step in chosen {
        let copy = bed.copy_to(&root.path().join(format!("kill-{step}")));
        let mut child = Command::new(&exe)
            .args([
                "prune_kill_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &copy.dir)
            .env(CHILD_STEP, step.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let stdout = child.stdout.take().expect("stdout");
        let paused = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains(PAUSED));
        assert!(paused.is_some(), "the child reached step {step}");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");

        // Right after the kill: what the index still calls restore points is whole, and every
        // point the policy keeps is among them.
        let index = copy.index();
        let report = kvkeep::restore::verify::verify_blobs(
            index.clone(),
            copy.store(),
            &vault(),
            Some(copy.identity.clone()),
            4,
            NOW,
            &CancellationToken::new(),
        )
        .await
        .expect("verify");
        assert!(
            report.ok(),
            "killed before step {step}: {:?}",
            report.problems
        );
        let points: BTreeSet<String> = index
            .restore_points(&vault())
            .expect("points")
            .into_iter()
            .map(|p| p.run.to_string())
            .collect();
        assert!(points.is_superset(&kept), "killed before step {step}");
        drop(index);

        // The next prune completes, to the same end state as an uninterrupted one.
        let next = prune(&copy, copy.store(), NOW).await;
        assert!(next.complete(), "after a kill before step {step}: {next:?}");
        assert_pruned_state(&copy, &kept).await;
        std::fs::remove_dir_all(&copy.dir).ok();
    }
}

/// A store that runs a whole prune of the bed the first time anything asks it for a blob: a
/// quick verification that listed its blobs before the prune checks them after it.
#[derive(Debug)]
struct PruneOnFirstRead {
    inner: Arc<dyn BlobStore>,
    bed_dir: std::path::PathBuf,
    fired: std::sync::atomic::AtomicBool,
}

impl PruneOnFirstRead {
    async fn maybe_prune(&self) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            let bed = PruneBed {
                dir: self.bed_dir.clone(),
                identity: Arc::new(kvkeep::crypto::Identity::generate().into()),
            };
            assert!(prune(&bed, self.inner.clone(), NOW).await.complete());
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for PruneOnFirstRead {
    async fn put_new(
        &self,
        key: &kvkeep::model::BlobKey,
        bytes: bytes::Bytes,
    ) -> Result<(), kvkeep::store::StoreError> {
        self.inner.put_new(key, bytes).await
    }
    async fn get(
        &self,
        key: &kvkeep::model::BlobKey,
    ) -> Result<bytes::Bytes, kvkeep::store::StoreError> {
        self.maybe_prune().await;
        self.inner.get(key).await
    }
    async fn head(
        &self,
        key: &kvkeep::model::BlobKey,
    ) -> Result<kvkeep::store::BlobMeta, kvkeep::store::StoreError> {
        self.maybe_prune().await;
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<kvkeep::store::BlobMeta>, kvkeep::store::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &kvkeep::model::BlobKey) -> Result<(), kvkeep::store::StoreError> {
        self.inner.delete(key).await
    }
    async fn acquire_lease(
        &self,
        vault: &kvkeep::model::VaultName,
        holder: &kvkeep::store::LeaseHolder,
        duration: kvkeep::store::LeaseDuration,
    ) -> Result<kvkeep::store::Lease, kvkeep::store::LeaseError> {
        self.inner.acquire_lease(vault, holder, duration).await
    }
    async fn renew_lease(
        &self,
        lease: &kvkeep::store::Lease,
    ) -> Result<(), kvkeep::store::LeaseError> {
        self.inner.renew_lease(lease).await
    }
    async fn release_lease(
        &self,
        lease: kvkeep::store::Lease,
    ) -> Result<(), kvkeep::store::LeaseError> {
        self.inner.release_lease(lease).await
    }
    async fn break_lease(
        &self,
        vault: &kvkeep::model::VaultName,
    ) -> Result<(), kvkeep::store::LeaseError> {
        self.inner.break_lease(vault).await
    }
}

#[tokio::test]
async fn a_quick_verify_that_a_prune_overtakes_reports_no_blob_the_prune_deleted() {
    let root = tempfile::tempdir().expect("tempdir");
    let bed = PruneBed::build(&root.path().join("bed"), 60).await;
    let before = listed(bed.store().as_ref(), "").await.len();
    let store: Arc<dyn BlobStore> = Arc::new(PruneOnFirstRead {
        inner: bed.store(),
        bed_dir: bed.dir.clone(),
        fired: Default::default(),
    });
    let report = kvkeep::restore::verify::verify_blobs(
        bed.index(),
        store,
        &vault(),
        None,
        1,
        NOW,
        &CancellationToken::new(),
    )
    .await
    .expect("verify");
    // The prune did delete blobs the verification had listed...
    assert!(listed(bed.store().as_ref(), "").await.len() < before);
    // ...and none of them is reported: they are no restore point's any more.
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.checked_blobs > 0);
}
