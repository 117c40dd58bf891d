//! The executor on the in-memory vault, store and index: what a run captures, what a repeat run
//! does not (zero backup calls, from the fake's counters), how object failures, store failures,
//! a failed manifest write and cancellation end a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backup::manifest::{read_manifest, EntryState, Manifest};
use crate::backup::plan::BackupPlan;
use crate::backup::{BackupReport, Clock, NoProgress, Progress, VaultBackup};
use crate::config::{PayloadMode, VaultConfig};
use crate::crypto::{
    open, open_expecting, BlobType, CryptoError, Expected, Identities, Identity, KeyRole, Sealer,
};
use crate::index::{Index, RunStatus};
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::source::{
    FailureRule, InMemoryVaultSource, SeedObject, SourceErrorKind, SourceOp, VaultSource,
};
use crate::store::{BlobStore, FaultyStore, InMemoryStore, StoreErrorKind, StoreOp};

const START: i64 = 1_800_000_000;
const CANARY: &[u8] = b"canary-value-7f3a9c";

fn n(s: &str) -> ObjectName {
    s.parse().expect("name")
}

fn vault_name() -> VaultName {
    "kv1".parse().expect("vault")
}

fn vault_config() -> VaultConfig {
    VaultConfig {
        name: vault_name(),
        url: "https://kv1.vault.azure.net".into(),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: ObjectKind::ALL.into_iter().collect(),
        include: Vec::new(),
        exclude: Vec::new(),
        skip_tags: BTreeMap::from([("kvkeep".to_string(), "skip".to_string())]),
        payload: PayloadMode::Native,
        deep_scan_every: Duration::from_secs(7 * 86_400),
        jitter: std::time::Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: Default::default(),
        rpo: None,
    }
}

/// The test bed: a seeded fake vault, a store that can misbehave, an in-memory index and a
/// clock the test moves.
struct Bed {
    source: Arc<InMemoryVaultSource>,
    faulty: Arc<FaultyStore>,
    store: Arc<InMemoryStore>,
    index: Arc<Index>,
    identity: Arc<Identities>,
    sealer: Arc<Sealer>,
    now: Arc<AtomicI64>,
    concurrency: usize,
}

impl Bed {
    /// Three secrets (two with two versions), two keys, one certificate (with its managed key
    /// and secret) and one skip-tagged secret.
    fn new() -> Self {
        let source = Arc::new(InMemoryVaultSource::new(vault_name(), START - 1000));
        for name in ["db-password", "api-token"] {
            source.put(ObjectKind::Secrets, &n(name), SeedObject::value("old"));
            source.put(ObjectKind::Secrets, &n(name), SeedObject::value(CANARY));
        }
        source.put(ObjectKind::Secrets, &n("single"), SeedObject::value("v"));
        let mut skip = SeedObject::value("skipped");
        skip.tags.insert("kvkeep".into(), "skip".into());
        source.put(ObjectKind::Secrets, &n("ignored"), skip);
        for name in ["signing", "wrapping"] {
            source.put(ObjectKind::Keys, &n(name), SeedObject::value("key"));
        }
        source.put_certificate(&n("tls"), SeedObject::value("pfx"));
        let store = Arc::new(InMemoryStore::new());
        let faulty = Arc::new(FaultyStore::new(store.clone()));
        let identity = Identity::generate();
        let sealer = Arc::new(Sealer::new(&[identity.recipient()], 3).expect("sealer"));
        Bed {
            source,
            faulty,
            store,
            index: Arc::new(Index::open_in_memory().expect("index")),
            identity: Arc::new(identity.into()),
            sealer,
            now: Arc::new(AtomicI64::new(START)),
            concurrency: 4,
        }
    }

    fn backup(&self, progress: Arc<dyn Progress>, cancel: CancellationToken) -> VaultBackup {
        let now = self.now.clone();
        // Each reading moves the clock a second, so every run starts at a new time.
        let clock: Clock = Arc::new(move || now.fetch_add(1, Ordering::SeqCst));
        VaultBackup {
            vault: vault_config(),
            source: self.source.clone() as Arc<dyn VaultSource>,
            store: self.faulty.clone() as Arc<dyn BlobStore>,
            index: self.index.clone(),
            sealer: self.sealer.clone(),
            concurrency: self.concurrency,
            clock,
            cancel,
            progress,
            manifest_part_bytes: None,
            lease: None,
        }
    }

    async fn run(&self) -> BackupReport {
        self.backup(Arc::new(NoProgress), CancellationToken::new())
            .run()
            .await
    }

    async fn manifest(&self, report: &BackupReport) -> Manifest {
        let key = report.manifest.as_ref().expect("the run wrote a manifest");
        read_manifest(
            self.store.as_ref(),
            &self.identity,
            &vault_name(),
            &report.run,
            key,
        )
        .await
        .expect("the manifest and its parts open and are the run's")
    }
}

fn names(manifest: &Manifest, state: EntryState) -> Vec<String> {
    manifest
        .objects
        .iter()
        .filter(|o| o.state == state)
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect()
}

#[tokio::test]
async fn first_run_captures_every_object_and_a_repeat_run_makes_no_backup_calls() {
    let bed = Bed::new();
    let first = bed.run().await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    assert_eq!(first.stats.captured_objects, 6, "{first:?}");
    // Managed key and secret of the certificate, and the skip-tagged secret.
    assert_eq!(first.stats.skipped_objects, 3);
    assert_eq!(first.stats.backup_calls, 6);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 6);
    assert!(first.stats.uploaded_bytes > 0);

    let manifest = bed.manifest(&first).await;
    assert_eq!(
        names(&manifest, EntryState::Captured),
        vec![
            "keys/signing",
            "keys/wrapping",
            "secrets/api-token",
            "secrets/db-password",
            "secrets/single",
            "certificates/tls"
        ]
    );
    let db = manifest
        .objects
        .iter()
        .find(|o| o.name.as_str() == "db-password")
        .expect("db-password in the manifest");
    assert_eq!(db.versions.len(), 2, "every version is recorded");
    // Every object blob opens as exactly the object the manifest says, sha256 included.
    for o in &manifest.objects {
        let bytes = bed.store.get(&o.blob).await.expect("object blob");
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, o.sha256);
        assert_eq!(bytes.len() as u64, o.stored_bytes);
        let opened = open_expecting(
            &bytes,
            &bed.identity,
            &Expected::object(vault_name(), o.kind, o.name.clone())
                .with_current_version(o.current_version.clone()),
        )
        .expect("object blob opens");
        assert_eq!(opened.header.versions.len(), o.versions.len());
        // Every blob of a run shares the manifest's `{timestamp}-{run}.age`.
        let manifest_file = first
            .manifest
            .as_ref()
            .and_then(|m| m.as_str().rsplit('/').next().map(str::to_string))
            .unwrap_or_default();
        assert!(
            o.blob.as_str().ends_with(&format!("/{manifest_file}")),
            "{}",
            o.blob
        );
        assert!(o.blob.as_str().starts_with(&format!(
            "objects/kv1/{}/{}/",
            o.kind,
            o.name.canonical()
        )));
    }

    bed.source.clear_calls();
    let second = bed.run().await;
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    assert_eq!(
        bed.source.calls_of(SourceOp::Backup),
        0,
        "a repeat run makes no backup calls"
    );
    assert_eq!(second.stats.backup_calls, 0);
    assert_eq!(second.stats.captured_objects, 0);
    assert_eq!(second.stats.unchanged_objects, 6);
    let manifest2 = bed.manifest(&second).await;
    assert!(names(&manifest2, EntryState::Captured).is_empty());
    // Unchanged entries point at the first run's blobs, with everything needed to restore.
    for o in &manifest2.objects {
        assert_eq!(o.run, first.run);
        let earlier = manifest
            .objects
            .iter()
            .find(|e| e.name == o.name && e.kind == o.kind)
            .expect("captured before");
        assert_eq!(
            (&o.blob, &o.sha256, &o.versions),
            (&earlier.blob, &earlier.sha256, &earlier.versions)
        );
    }
    // The index agrees: two committed runs.
    let runs = bed.index.list_runs(Some(&vault_name())).expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r.is_committed() && r.status == RunStatus::Completed));
}

#[tokio::test]
async fn only_changed_objects_are_captured_and_deleted_ones_recorded() {
    let bed = Bed::new();
    assert_eq!(bed.run().await.status, RunStatus::Completed);
    bed.source.put(
        ObjectKind::Secrets,
        &n("db-password"),
        SeedObject::value("new"),
    );
    bed.source.update(
        ObjectKind::Keys,
        &n("signing"),
        true,
        BTreeMap::from([("owner".to_string(), "team-a".to_string())]),
    );
    bed.source
        .delete(ObjectKind::Secrets, &n("single"))
        .await
        .expect("delete");
    bed.source.clear_calls();

    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    assert_eq!(report.stats.captured_objects, 2);
    assert_eq!(report.stats.deleted_objects, 1);
    assert_eq!(report.stats.unchanged_objects, 3);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 2);
    let manifest = bed.manifest(&report).await;
    assert_eq!(
        names(&manifest, EntryState::Captured),
        vec!["keys/signing", "secrets/db-password"]
    );
    assert_eq!(manifest.deleted.len(), 1);
    assert_eq!(manifest.deleted[0].name.as_str(), "single");
    let objects = bed
        .index
        .list_objects(Some(&vault_name()))
        .expect("objects");
    let single = objects
        .iter()
        .find(|o| o.name.as_str() == "single")
        .expect("single known");
    assert!(single.deleted_at.is_some());
    let db_versions = bed
        .index
        .list_versions(&vault_name(), ObjectKind::Secrets, &n("db-password"))
        .expect("versions");
    assert_eq!(db_versions.len(), 3);

    // Seen gone once is enough: the next run records nothing new.
    let again = bed.run().await;
    assert_eq!(again.stats.deleted_objects, 0);
    assert_eq!(again.stats.captured_objects, 0);
}

#[tokio::test]
async fn a_permanently_failing_object_fails_alone_with_its_reason() {
    let bed = Bed::new();
    bed.source.fail(FailureRule::new(
        SourceOp::Backup,
        ObjectKind::Secrets,
        "api-token",
        SourceErrorKind::Forbidden,
    ));
    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::PartiallyFailed, "{report:?}");
    assert_eq!(report.stats.captured_objects, 5);
    assert_eq!(report.stats.failed_objects, 1);
    assert_eq!(report.failures[0].name.as_str(), "api-token");
    assert_eq!(report.failures[0].error_kind, "forbidden");
    let errors = bed.index.object_errors(&report.run).expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].name.as_str(), "api-token");
    assert_eq!(errors[0].error_kind, "forbidden");
    // The run is committed for what it captured.
    let manifest = bed.manifest(&report).await;
    assert_eq!(manifest.status, "partially_failed");
    assert_eq!(manifest.failed.len(), 1);
    assert_eq!(names(&manifest, EntryState::Captured).len(), 5);

    // Once the cause is gone, the next run captures exactly the failed object.
    bed.source.clear_failures();
    bed.source.clear_calls();
    let next = bed.run().await;
    assert_eq!(next.status, RunStatus::Completed);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 1);
}

#[tokio::test]
async fn every_object_failing_fails_the_run() {
    let bed = Bed::new();
    bed.source.fail(FailureRule {
        op: Some(SourceOp::Backup),
        kind: None,
        name: None,
        error: SourceErrorKind::Permanent,
        retry_after: None,
        times: None,
    });
    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(report.stats.failed_objects, 6);
}

#[tokio::test]
async fn a_store_failure_fails_one_object() {
    let mut bed = Bed::new();
    // One at a time, so the failing write is the first object's (keys/signing, the first
    // planned) and not a random one.
    bed.concurrency = 1;
    bed.faulty
        .fail_next(StoreOp::Put, 1, StoreErrorKind::Permanent);
    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::PartiallyFailed, "{report:?}");
    assert_eq!(report.stats.captured_objects, 5);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].error_kind, "store");
    assert_eq!(report.failures[0].name.as_str(), "signing");
}

#[tokio::test]
async fn a_listing_failure_fails_the_run_without_a_manifest() {
    let bed = Bed::new();
    bed.source.fail(FailureRule {
        op: Some(SourceOp::List),
        kind: Some(ObjectKind::Certificates),
        name: None,
        error: SourceErrorKind::Forbidden,
        retry_after: None,
        times: None,
    });
    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.manifest.is_none());
    assert!(
        report.error.as_deref().unwrap_or("").contains("kv1"),
        "{report:?}"
    );
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 0);
    assert!(bed.store.list("").await.expect("list").is_empty());
    let run = bed
        .index
        .run(&report.run)
        .expect("read")
        .expect("run recorded");
    assert_eq!(run.status, RunStatus::Failed);
}

/// Arms a failure of the next store write once every planned object is done: that write is
/// the manifest.
struct FailManifestWrite {
    store: Arc<FaultyStore>,
    planned: AtomicUsize,
    done: AtomicUsize,
}

impl Progress for FailManifestWrite {
    fn planned(&self, plan: &BackupPlan) {
        self.planned.store(plan.changed.len(), Ordering::SeqCst);
    }
    fn object_done(&self, _: &VaultName, _: ObjectKind, _: &ObjectName, _: bool) {
        if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.planned.load(Ordering::SeqCst) {
            self.store
                .fail_next(StoreOp::Put, 1, StoreErrorKind::Transient);
        }
    }
}

#[tokio::test]
async fn without_its_manifest_a_run_is_not_committed_and_the_next_run_captures_again() {
    let bed = Bed::new();
    let progress = Arc::new(FailManifestWrite {
        store: bed.faulty.clone(),
        planned: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    });
    let report = bed.backup(progress, CancellationToken::new()).run().await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(report.manifest.is_none());
    assert!(report.error.as_deref().unwrap_or("").contains("manifest"));
    let run = bed.index.run(&report.run).expect("read").expect("run");
    assert!(!run.is_committed());
    assert_ne!(run.status, RunStatus::Completed);
    // The object blobs are in the store, but no manifest is.
    assert!(bed.store.list("manifests/").await.expect("list").is_empty());
    assert_eq!(bed.store.list("objects/").await.expect("list").len(), 6);

    bed.source.clear_calls();
    let next = bed.run().await;
    assert_eq!(next.status, RunStatus::Completed);
    assert_eq!(
        next.stats.captured_objects, 6,
        "uncommitted captures do not count"
    );
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 6);
}

/// Cancels the run as soon as the first object is done.
struct CancelAfterFirst(CancellationToken, Mutex<Vec<String>>);

impl Progress for CancelAfterFirst {
    fn object_done(&self, _: &VaultName, _: ObjectKind, name: &ObjectName, _: bool) {
        self.1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_string());
        self.0.cancel();
    }
}

#[tokio::test]
async fn cancellation_stops_between_objects_and_commits_what_is_done() {
    let mut bed = Bed::new();
    bed.concurrency = 1;
    let cancel = CancellationToken::new();
    let progress = Arc::new(CancelAfterFirst(cancel.clone(), Mutex::new(Vec::new())));
    let report = bed.backup(progress.clone(), cancel).run().await;
    assert_eq!(report.status, RunStatus::Interrupted, "{report:?}");
    assert_eq!(report.stats.captured_objects, 1);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 1);
    assert!(report
        .failures
        .iter()
        .all(|f| f.error_kind == "interrupted"));
    assert_eq!(report.failures.len(), 5);
    // What was done is committed: the next run captures only the other five.
    let manifest = bed.manifest(&report).await;
    assert_eq!(names(&manifest, EntryState::Captured).len(), 1);
    let next = bed.run().await;
    assert_eq!(next.stats.captured_objects, 5);
}

#[tokio::test]
async fn a_due_deep_scan_lists_versions_but_backs_up_nothing_unchanged() {
    let bed = Bed::new();
    bed.run().await;
    bed.source.clear_calls();
    // Within the period: no version listings at all.
    bed.run().await;
    assert_eq!(bed.source.calls_of(SourceOp::ListVersions), 0);
    bed.now.fetch_add(8 * 86_400, Ordering::SeqCst);
    let report = bed.run().await;
    assert_eq!(bed.source.calls_of(SourceOp::ListVersions), 6);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 0);
    assert_eq!(report.stats.unchanged_objects, 6);
    // The scan is recorded: the next run does not repeat it.
    bed.source.clear_calls();
    bed.run().await;
    assert_eq!(bed.source.calls_of(SourceOp::ListVersions), 0);
}

#[tokio::test]
async fn a_capture_costs_a_version_listing_and_a_backup_and_reads_no_object() {
    let bed = Bed::new();
    let report = bed.run().await;
    assert_eq!(report.stats.captured_objects, 6, "{report:?}");
    assert_eq!(
        bed.source.calls_of(SourceOp::GetProperties),
        0,
        "reading a secret returns its value: a backup never reads an object"
    );
    assert_eq!(bed.source.calls_of(SourceOp::ListVersions), 6);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 6);
    // The recorded current version is the newest one, for every object.
    let manifest = bed.manifest(&report).await;
    for o in &manifest.objects {
        let newest = bed
            .source
            .list_versions(o.kind, &o.name)
            .await
            .expect("versions")
            .into_iter()
            .max_by_key(|v| v.created)
            .expect("a version");
        assert_eq!(o.current_version, newest.version, "{}/{}", o.kind, o.name);
    }
}

#[tokio::test]
async fn a_change_found_by_a_deep_scan_is_captured_without_listing_the_versions_again() {
    let bed = Bed::new();
    bed.run().await;
    let oldest = bed
        .source
        .list_versions(ObjectKind::Secrets, &n("db-password"))
        .await
        .expect("versions")
        .into_iter()
        .min_by_key(|v| v.created)
        .expect("a version")
        .version;
    bed.source
        .set_version_enabled(ObjectKind::Secrets, &n("db-password"), &oldest, false);
    bed.now.fetch_add(8 * 86_400, Ordering::SeqCst);
    bed.source.clear_calls();

    let report = bed.run().await;
    assert_eq!(report.stats.captured_objects, 1, "{report:?}");
    assert_eq!(
        bed.source.calls_of(SourceOp::ListVersions),
        6,
        "one listing per object, the scan's: the capture reuses it"
    );
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 1);
    let manifest = bed.manifest(&report).await;
    let db = manifest
        .objects
        .iter()
        .find(|o| o.name.as_str() == "db-password")
        .expect("db-password");
    assert_eq!(db.state, EntryState::Captured);
    let recorded = db
        .versions
        .iter()
        .find(|v| v.version == oldest)
        .expect("the oldest version is recorded");
    assert!(!recorded.enabled, "the capture records what the scan saw");
}

#[tokio::test]
async fn dry_run_survey_writes_nothing() {
    let bed = Bed::new();
    let plan = bed
        .backup(Arc::new(NoProgress), CancellationToken::new())
        .survey()
        .await
        .expect("plan");
    assert_eq!(plan.changed.len(), 6);
    assert_eq!(plan.skipped.len(), 3);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 0);
    assert!(bed.store.list("").await.expect("list").is_empty());
    assert!(bed.index.list_runs(None).expect("runs").is_empty());
}

#[tokio::test]
async fn the_canary_value_is_never_stored_in_clear() {
    let bed = Bed::new();
    bed.run().await;
    for meta in bed.store.list("").await.expect("list") {
        let bytes = bed.store.get(&meta.key).await.expect("get");
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY),
            "{} holds the canary in clear",
            meta.key
        );
    }
}

#[tokio::test]
async fn a_secret_whose_current_version_is_disabled_is_still_captured() {
    let bed = Bed::new();
    let mut disabled = SeedObject::value(CANARY);
    disabled.enabled = false;
    bed.source
        .put(ObjectKind::Secrets, &n("retired"), SeedObject::value("v1"));
    bed.source.put(ObjectKind::Secrets, &n("retired"), disabled);
    // The fake answers like the service: the disabled current version cannot be read.
    let refused = bed
        .source
        .get_properties(ObjectKind::Secrets, &n("retired"))
        .await
        .expect_err("reading a disabled secret is refused");
    assert_eq!(refused.inner_code(), Some("SecretDisabled"));

    let report = bed.run().await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    let manifest = bed.manifest(&report).await;
    let retired = manifest
        .objects
        .iter()
        .find(|o| o.name.as_str() == "retired")
        .expect("the disabled secret is captured");
    assert_eq!(retired.versions.len(), 2);
    let newest = bed
        .source
        .list_versions(ObjectKind::Secrets, &n("retired"))
        .await
        .expect("versions")
        .into_iter()
        .max_by_key(|v| v.created)
        .expect("a version");
    assert_eq!(retired.current_version, newest.version);
}

/// Issue 7.1: a deletion seen by a run that never commits must not be forgotten. The next
/// committed run reports it again, its manifest lists it, and a restore as of now leaves it out.
#[tokio::test]
async fn a_deletion_seen_by_an_uncommitted_run_is_recorded_by_the_next_committed_run() {
    let bed = Bed::new();
    assert_eq!(bed.run().await.status, RunStatus::Completed);
    bed.source
        .delete(ObjectKind::Secrets, &n("single"))
        .await
        .expect("delete");
    // Nothing changed but the deletion, so the manifest is the run's only write.
    bed.faulty
        .fail_next(StoreOp::Put, 1, StoreErrorKind::Forbidden);
    let lost = bed.run().await;
    assert_eq!(lost.status, RunStatus::Failed, "{lost:?}");
    assert!(lost.manifest.is_none());

    let next = bed.run().await;
    assert_eq!(next.status, RunStatus::Completed, "{next:?}");
    assert_eq!(
        next.stats.deleted_objects, 1,
        "the deletion is reported again"
    );
    let manifest = bed.manifest(&next).await;
    assert_eq!(manifest.deleted.len(), 1);
    assert_eq!(manifest.deleted[0].name.as_str(), "single");
    let now = bed.now.load(Ordering::SeqCst);
    let restore_set = bed
        .index
        .captures_as_of(&vault_name(), now)
        .expect("restore set");
    assert!(
        restore_set.iter().all(|c| c.name.as_str() != "single"),
        "a restore as of now must not bring the deleted secret back"
    );
}

/// A deleted object that comes back (recovered from soft delete, same versions) is captured
/// again, so the restore set and change detection see it present after its deletion.
#[tokio::test]
async fn an_object_back_after_its_deletion_is_captured_again_and_restorable() {
    let bed = Bed::new();
    assert_eq!(bed.run().await.status, RunStatus::Completed);
    bed.source
        .delete(ObjectKind::Secrets, &n("single"))
        .await
        .expect("delete");
    assert_eq!(bed.run().await.stats.deleted_objects, 1);
    bed.source
        .recover(ObjectKind::Secrets, &n("single"))
        .await
        .expect("recover");
    let back = bed.run().await;
    assert_eq!(back.stats.captured_objects, 1, "{back:?}");
    let now = bed.now.load(Ordering::SeqCst);
    let restore_set = bed
        .index
        .captures_as_of(&vault_name(), now)
        .expect("restore set");
    assert!(restore_set.iter().any(|c| c.name.as_str() == "single"));
    // Deleted again: seen gone again.
    bed.source
        .delete(ObjectKind::Secrets, &n("single"))
        .await
        .expect("delete");
    assert_eq!(bed.run().await.stats.deleted_objects, 1);
}

/// Issue 7.6: a run whose token fired before it began lists nothing, scans nothing, captures
/// nothing and commits nothing.
#[tokio::test]
async fn a_run_stopped_before_it_starts_lists_nothing_and_commits_nothing() {
    let bed = Bed::new();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let report = bed.backup(Arc::new(NoProgress), cancel).run().await;
    assert_eq!(report.status, RunStatus::Interrupted, "{report:?}");
    assert!(report.manifest.is_none());
    assert_eq!(bed.source.calls_of(SourceOp::List), 0);
    assert_eq!(bed.source.calls_of(SourceOp::Backup), 0);
    assert!(bed.store.list("").await.expect("list").is_empty());
}

/// A capture records its current version's `nbf`/`exp` from the listing, in the index and the
/// manifest; a capture recorded before kvkeep read them (as an upgraded index holds them) learns
/// them from the next run that finds the object unchanged, without a backup call; and an update
/// of `exp` moves `updated`, so the object is captured again with its new period.
#[tokio::test]
async fn the_validity_period_is_recorded_and_learned_for_objects_found_unchanged() {
    use crate::model::Validity;

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index.sqlite");
    let bed = Bed {
        index: Arc::new(Index::open(&path).expect("index")),
        ..Bed::new()
    };
    let day = 86_400;
    let period = Validity {
        not_before: Some(START - 500),
        expires: Some(START + 10 * day),
    };
    bed.source
        .set_validity(ObjectKind::Secrets, &n("single"), period);
    let entry = |m: &Manifest, name: &str| {
        m.objects
            .iter()
            .find(|o| o.name.as_str() == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in the manifest"))
    };

    let first = bed.run().await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    let m1 = bed.manifest(&first).await;
    let single = entry(&m1, "single");
    assert_eq!(single.validity, Some(period));
    assert_eq!(
        entry(&m1, "signing").validity,
        Some(Validity::default()),
        "no exp is recorded as known, not left unknown"
    );
    assert_eq!(
        bed.index.capture_validity(&single.blob).expect("read"),
        Some(period)
    );

    // What an index upgraded from schema 5 holds: captures with nothing known.
    rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.execute(
                "UPDATE captures SET expires_at = NULL, not_before = NULL, validity_known = 0",
                [],
            )
        })
        .expect("forget the periods");
    let soon = START + 30 * day;
    let before = bed.index.expiring_objects(&vault_name(), soon).expect("q");
    assert_eq!((before.expiring.len(), before.unknown), (0, 6));

    let second = bed.run().await;
    assert_eq!(second.stats.captured_objects, 0, "{second:?}");
    assert_eq!(second.stats.backup_calls, 0);
    let m2 = bed.manifest(&second).await;
    let unchanged = entry(&m2, "single");
    assert_eq!(unchanged.state, EntryState::Unchanged);
    assert_eq!(unchanged.blob, single.blob);
    assert_eq!(unchanged.validity, Some(period));
    let after = bed.index.expiring_objects(&vault_name(), soon).expect("q");
    assert_eq!(after.unknown, 0);
    assert_eq!(after.expiring.len(), 1);
    assert_eq!(after.expiring[0].name.as_str(), "single");
    assert_eq!(after.expiring[0].validity, period);

    let renewed = Validity {
        expires: Some(START + 400 * day),
        ..period
    };
    bed.source
        .set_validity(ObjectKind::Secrets, &n("single"), renewed);
    let third = bed.run().await;
    assert_eq!(third.stats.captured_objects, 1, "{third:?}");
    let recaptured = entry(&bed.manifest(&third).await, "single");
    assert_eq!(recaptured.state, EntryState::Captured);
    assert_eq!(recaptured.validity, Some(renewed));
    assert!(bed
        .index
        .expiring_objects(&vault_name(), soon)
        .expect("q")
        .expiring
        .is_empty());
}

/// The current version from the version list alone: newest `created`, and within one second
/// the version whose attributes and tags the object listing reported.
#[test]
fn the_current_version_comes_from_the_version_list() {
    use crate::backup::execute::{current_version, Current};
    use crate::backup::plan::ListedObject;
    use crate::source::VersionInfo;

    let version = |id: &str, created: i64, updated: i64, enabled: bool, tag: &str| VersionInfo {
        version: id.parse().expect("version"),
        created: Some(created),
        updated: Some(updated),
        enabled,
        tags: BTreeMap::from([("gen".to_string(), tag.to_string())]),
        content_type: None,
    };
    let listed = |updated: i64, enabled: bool, tag: &str| ListedObject {
        kind: ObjectKind::Secrets,
        name: n("s"),
        version: None,
        updated: Some(updated),
        enabled,
        tags: BTreeMap::from([("gen".to_string(), tag.to_string())]),
        content_type: None,
        validity: Default::default(),
    };
    let known = |id: &str| Current::Known(id.parse().expect("version"));
    let cases: Vec<(&str, ListedObject, Vec<VersionInfo>, Current)> = vec![
        (
            "newest created wins, whatever the order",
            listed(20, true, "a"),
            vec![
                version("bb", 20, 20, true, "a"),
                version("aa", 10, 10, true, "a"),
            ],
            known("bb"),
        ),
        (
            "a disabled current version is still the newest",
            listed(20, false, "a"),
            vec![
                version("aa", 10, 10, true, "a"),
                version("bb", 20, 20, false, "a"),
            ],
            known("bb"),
        ),
        (
            "same second: the tags the listing reported decide",
            listed(20, true, "one"),
            vec![
                version("aa", 20, 20, true, "one"),
                version("bb", 20, 20, true, "two"),
            ],
            known("aa"),
        ),
        (
            "same second: enabled decides",
            listed(20, false, "a"),
            vec![
                version("aa", 20, 20, false, "a"),
                version("bb", 20, 20, true, "a"),
            ],
            known("aa"),
        ),
        (
            "same second: updated decides",
            listed(25, true, "a"),
            vec![
                version("aa", 20, 25, true, "a"),
                version("bb", 20, 20, true, "a"),
            ],
            known("aa"),
        ),
        (
            "indistinguishable: the highest id, reported as ambiguous",
            listed(20, true, "a"),
            vec![
                version("aa", 20, 20, true, "a"),
                version("bb", 20, 20, true, "a"),
            ],
            Current::Ambiguous {
                chosen: "bb".parse().expect("version"),
                candidates: 2,
            },
        ),
        (
            "no versions",
            listed(20, true, "a"),
            Vec::new(),
            Current::None,
        ),
    ];
    for (what, object, versions, want) in cases {
        assert_eq!(current_version(&object, &versions), want, "{what}");
    }
}

#[tokio::test]
async fn with_a_catalog_key_every_manifest_part_opens_with_it_and_no_backup_does() {
    let mut bed = Bed::new();
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    bed.sealer = Arc::new(
        Sealer::new(&bed.sealer.recipients(), 3)
            .expect("sealer")
            .with_catalog(&catalog.recipient())
            .expect("catalog"),
    );
    let catalog: Arc<Identities> = Arc::new(catalog.into());
    let mut backup = bed.backup(Arc::new(NoProgress), CancellationToken::new());
    // Small parts, so the head and several parts are all checked.
    backup.manifest_part_bytes = Some(300);
    let report = backup.run().await;
    assert_eq!(report.status, RunStatus::Completed);

    // The catalog identity reads the whole manifest: what a daemon needs to sync its index.
    let key = report.manifest.as_ref().expect("manifest");
    let manifest = read_manifest(
        bed.store.as_ref(),
        &catalog,
        &vault_name(),
        &report.run,
        key,
    )
    .await
    .expect("the catalog identity opens the head and every part");
    assert_eq!(names(&manifest, EntryState::Captured).len(), 6);

    let (mut manifests, mut objects, mut canaries) = (0, 0, 0);
    for meta in bed.store.list("").await.expect("list") {
        let bytes = bed.store.get(&meta.key).await.expect("get");
        let with_recovery = open(&bytes, &bed.identity).expect("recovery opens every blob");
        // The fake vault's backup blob is JSON, where the value is an array of byte values.
        let as_json = serde_json::to_vec(CANARY).expect("json");
        let holds_canary = |p: &[u8]| {
            [CANARY, as_json.as_slice()]
                .iter()
                .any(|needle| p.windows(needle.len()).any(|w| w == *needle))
        };
        match open(&bytes, &catalog) {
            Ok(opened) => {
                assert_eq!(opened.header.blob, BlobType::Manifest, "{}", meta.key);
                assert!(!holds_canary(&opened.payload), "{}", meta.key);
                manifests += 1;
            }
            Err(CryptoError::NoMatchingIdentity { .. }) => {
                assert_eq!(with_recovery.header.blob, BlobType::Object, "{}", meta.key);
                canaries += usize::from(holds_canary(&with_recovery.payload));
                objects += 1;
            }
            Err(e) => panic!("{}: {e}", meta.key),
        }
    }
    assert!(manifests > 2, "a head and several parts: {manifests}");
    assert_eq!(objects, 6);
    // The canary is in the backups, so the catalog key was really kept from something.
    assert_eq!(canaries, 2);
}
