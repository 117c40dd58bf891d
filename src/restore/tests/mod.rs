//! Restore tests on the fakes: the plan's decisions as tables with pinned times, and the
//! executor end to end (backup with the real pipeline → restore into fake vaults) under each
//! conflict policy and with damaged blobs, a wrong identity and a blob swapped under another
//! name. Also rebuild: the point-in-time sets of a rebuilt index equal the original's; and the
//! restore drill's tag check.

mod cancel;
mod damage;
mod drill;
mod plan;
mod rebuild;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    plan_restore, ConflictPolicy, ObjectRef, Outcome, RestoreOptions, RestorePlan, RestoreReport,
    RestoreRequest, Restorer, VaultLocation,
};
use crate::backup::{Clock, NoProgress, VaultBackup};
use crate::config::{PayloadMode, VaultConfig};
use crate::crypto::{Identities, Identity, Sealer};
use crate::index::Index;
use crate::model::{BlobKey, ObjectKind, ObjectName, VaultName};
use crate::source::{InMemoryVaultSource, SeedObject, VaultSource};
use crate::store::{BlobStore, InMemoryStore};

/// 2027-01-15T08:00:00Z: backups at T1, T1 + 1h, T1 + 2h.
pub(super) const T1: i64 = 1_800_000_000;
pub(super) const HOUR: i64 = 3_600;
/// The manifest part size of the bed's backups: about one object entry per part.
pub(super) const PART_BYTES: usize = 600;

pub(super) fn n(s: &str) -> ObjectName {
    s.parse().expect("name")
}

pub(super) fn v(s: &str) -> VaultName {
    s.parse().expect("vault")
}

pub(super) fn location(name: &str, geography: Option<&str>) -> VaultLocation {
    VaultLocation {
        name: v(name),
        url: format!("https://{name}.vault.azure.net"),
        subscription: Some("sub-1".into()),
        geography: geography.map(str::to_string),
    }
}

fn vault_config(name: &str) -> VaultConfig {
    VaultConfig {
        name: v(name),
        url: format!("https://{name}.vault.azure.net"),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: ObjectKind::ALL.into_iter().collect(),
        include: Vec::new(),
        exclude: Vec::new(),
        skip_tags: BTreeMap::new(),
        payload: PayloadMode::Native,
        deep_scan_every: Duration::from_secs(7 * 86_400),
        jitter: std::time::Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: Default::default(),
        rpo: None,
    }
}

/// A fake vault `kv1` with two secrets, a key and a certificate, backed up once at [`T1`].
pub(super) struct Bed {
    pub source: Arc<InMemoryVaultSource>,
    pub store: Arc<InMemoryStore>,
    pub index: Arc<Index>,
    pub identities: Arc<Identities>,
    pub sealer: Arc<Sealer>,
    pub now: Arc<AtomicI64>,
}

impl Bed {
    pub async fn new() -> Self {
        let source = Arc::new(InMemoryVaultSource::new(v("kv1"), T1 - 10_000));
        source.put(
            ObjectKind::Secrets,
            &n("db-password"),
            SeedObject::value("one"),
        );
        source.put(
            ObjectKind::Secrets,
            &n("db-password"),
            SeedObject::value("two"),
        );
        source.put(
            ObjectKind::Secrets,
            &n("api-token"),
            SeedObject::value("tok"),
        );
        source.put(ObjectKind::Keys, &n("signing"), SeedObject::value("k"));
        source.put_certificate(&n("tls"), SeedObject::value("pfx"));
        let identity = Identity::generate();
        let bed = Bed {
            source,
            store: Arc::new(InMemoryStore::new()),
            index: Arc::new(Index::open_in_memory().expect("index")),
            sealer: Arc::new(Sealer::new(&[identity.recipient()], 3).expect("sealer")),
            identities: Arc::new(identity.into()),
            now: Arc::new(AtomicI64::new(T1)),
        };
        bed.backup_at(T1).await;
        bed
    }

    /// One backup run whose clock reads `at` throughout.
    pub async fn backup_at(&self, at: i64) {
        self.now.store(at, Ordering::SeqCst);
        let now = self.now.clone();
        let clock: Clock = Arc::new(move || now.load(Ordering::SeqCst));
        let report = VaultBackup {
            vault: vault_config("kv1"),
            source: self.source.clone() as Arc<dyn VaultSource>,
            store: self.store.clone() as Arc<dyn BlobStore>,
            index: self.index.clone(),
            sealer: self.sealer.clone(),
            concurrency: 2,
            clock,
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            // Small parts: every manifest of these tests spans several, so restore, verify and
            // rebuild are all exercised on multi-part manifests.
            manifest_part_bytes: Some(PART_BYTES),
            lease: None,
        }
        .run()
        .await;
        assert!(report.manifest.is_some(), "backup committed: {report:?}");
    }

    pub fn restorer(&self, target: Arc<dyn VaultSource>, store: Arc<dyn BlobStore>) -> Restorer {
        Restorer {
            store,
            target,
            identities: self.identities.clone(),
            options: RestoreOptions {
                concurrency: 2,
                purge_wait: Duration::from_millis(200),
                purge_retry_interval: Duration::from_millis(10),
                resend_attempts: 3,
                resend_delay: Duration::from_millis(10),
            },
            progress: Arc::new(super::NoRestoreProgress),
            cancel: CancellationToken::new(),
        }
    }

    pub async fn plan(
        &self,
        target: &dyn VaultSource,
        at: i64,
        only: Vec<ObjectRef>,
        policy: ConflictPolicy,
    ) -> RestorePlan {
        plan_restore(
            self.index.clone(),
            target,
            RestoreRequest {
                source: location("kv1", Some("europe")),
                target: location(target.vault().as_str(), Some("europe")),
                at,
                only,
                policy,
                assume_compatible: false,
            },
        )
        .await
        .expect("plan")
    }

    /// Plans and executes a restore of the point `at` into `target`.
    pub async fn restore_into(
        &self,
        target: Arc<InMemoryVaultSource>,
        at: i64,
        policy: ConflictPolicy,
    ) -> RestoreReport {
        let plan = self.plan(target.as_ref(), at, Vec::new(), policy).await;
        self.restorer(target, self.store.clone())
            .execute(&plan)
            .await
    }
}

pub(super) fn outcome_of<'a>(
    report: &'a RestoreReport,
    kind: ObjectKind,
    name: &str,
) -> &'a Outcome {
    &report
        .objects
        .iter()
        .find(|o| o.kind == kind && o.name.canonical() == name)
        .unwrap_or_else(|| panic!("{kind}/{name} in the report: {report:?}"))
        .outcome
}

pub(super) fn empty_vault(name: &str) -> Arc<InMemoryVaultSource> {
    Arc::new(InMemoryVaultSource::new(v(name), T1 + 50_000))
}

#[tokio::test]
async fn restores_every_object_into_an_empty_vault_with_its_versions() {
    let bed = Bed::new().await;
    let target = empty_vault("kv-dr");
    let report = bed
        .restore_into(target.clone(), T1, ConflictPolicy::Skip)
        .await;
    assert_eq!(report.stats.restored_objects, 4, "{report:?}");
    assert_eq!(report.overall(), super::Overall::Ok);
    for kind in ObjectKind::ALL {
        let want = bed.source.list(kind).await.expect("list");
        let got = target.list(kind).await.expect("list");
        assert_eq!(
            want.iter().map(|o| &o.name).collect::<Vec<_>>(),
            got.iter().map(|o| &o.name).collect::<Vec<_>>()
        );
        for o in &want {
            assert_eq!(
                bed.source
                    .list_versions(kind, &o.name)
                    .await
                    .expect("versions"),
                target.list_versions(kind, &o.name).await.expect("versions"),
                "{kind}/{}",
                o.name
            );
        }
    }
}

#[tokio::test]
async fn conflict_policies_on_active_soft_deleted_and_purge_protected_targets() {
    let bed = Bed::new().await;
    // An active db-password and a soft-deleted api-token in the target.
    let prepare = |protected: bool| {
        let target = empty_vault("kv-dr");
        target.put(
            ObjectKind::Secrets,
            &n("db-password"),
            SeedObject::value("live"),
        );
        target.put(
            ObjectKind::Secrets,
            &n("api-token"),
            SeedObject::value("old"),
        );
        target.set_purge_protection(protected);
        target
    };
    for (policy, protected, want_active, want_deleted) in [
        (ConflictPolicy::Skip, false, "skipped", "skipped"),
        (ConflictPolicy::Fail, false, "failed", "failed"),
        (
            ConflictPolicy::RecoverThenSkip,
            false,
            "skipped",
            "recovered",
        ),
        (
            ConflictPolicy::PurgeThenRestore,
            false,
            "skipped",
            "restored",
        ),
        (ConflictPolicy::PurgeThenRestore, true, "skipped", "failed"),
    ] {
        let target = prepare(protected);
        target
            .delete(ObjectKind::Secrets, &n("api-token"))
            .await
            .expect("delete");
        let report = bed.restore_into(target.clone(), T1, policy).await;
        let active = outcome_of(&report, ObjectKind::Secrets, "db-password");
        let deleted = outcome_of(&report, ObjectKind::Secrets, "api-token");
        assert_eq!(active.word(), want_active, "{policy} active: {active:?}");
        assert_eq!(
            deleted.word(),
            want_deleted,
            "{policy} deleted: {deleted:?}"
        );
        // The free names restore whatever the policy.
        assert_eq!(
            outcome_of(&report, ObjectKind::Keys, "signing").word(),
            "restored"
        );
        // The live object is never touched.
        let live = target
            .get_properties(ObjectKind::Secrets, &n("db-password"))
            .await
            .expect("still there");
        assert_ne!(
            live.version,
            bed.source
                .get_properties(ObjectKind::Secrets, &n("db-password"))
                .await
                .expect("source")
                .version
        );
        if protected {
            let Outcome::Failed { reason } = deleted else {
                unreachable!()
            };
            assert!(reason.contains("purge protection"), "{reason}");
            assert!(reason.contains("recover-then-skip"), "{reason}");
            assert!(
                target
                    .get_deleted(ObjectKind::Secrets, &n("api-token"))
                    .await
                    .expect("get deleted")
                    .is_some(),
                "the soft-deleted copy is kept"
            );
        }
        if policy == ConflictPolicy::Skip {
            let Outcome::Skipped { reason } = deleted else {
                unreachable!()
            };
            assert!(reason.contains("--on-conflict"), "{reason}");
        }
        assert_eq!(
            report.overall(),
            if want_active == "failed" || want_deleted == "failed" {
                super::Overall::Partial
            } else {
                super::Overall::Ok
            }
        );
    }
}

#[tokio::test]
async fn a_name_blocked_after_purge_is_retried_then_reported() {
    use crate::source::{FailureRule, SourceErrorKind, SourceOp};
    // A secret: a key would not be purged without --assume-compatible (the target's pricing
    // tier is unknown), see the plan tests.
    let bed = Bed::new().await;
    for (blocked_calls, want) in [(2u32, "restored"), (u32::MAX, "failed")] {
        let target = empty_vault("kv-dr");
        target.put(
            ObjectKind::Secrets,
            &n("api-token"),
            SeedObject::value("old"),
        );
        target
            .delete(ObjectKind::Secrets, &n("api-token"))
            .await
            .expect("delete");
        target.fail(FailureRule {
            op: Some(SourceOp::Restore),
            kind: Some(ObjectKind::Secrets),
            name: None,
            error: SourceErrorKind::Conflict,
            retry_after: None,
            times: (blocked_calls != u32::MAX).then_some(blocked_calls),
        });
        let plan = bed
            .plan(
                target.as_ref(),
                T1,
                vec!["secrets/api-token".parse().expect("ref")],
                ConflictPolicy::PurgeThenRestore,
            )
            .await;
        let report = bed
            .restorer(target.clone(), bed.store.clone())
            .execute(&plan)
            .await;
        let outcome = outcome_of(&report, ObjectKind::Secrets, "api-token");
        assert_eq!(outcome.word(), want, "{outcome:?}");
        if let Outcome::Failed { reason } = outcome {
            assert!(reason.contains("stayed blocked"), "{reason}");
        }
    }
}

#[tokio::test]
async fn rebuilt_index_gives_the_same_point_in_time_sets() {
    let bed = Bed::new().await;
    bed.source.put(
        ObjectKind::Secrets,
        &n("db-password"),
        SeedObject::value("three"),
    );
    bed.source
        .delete(ObjectKind::Keys, &n("signing"))
        .await
        .expect("delete");
    bed.source
        .put(ObjectKind::Secrets, &n("new-one"), SeedObject::value("n"));
    bed.backup_at(T1 + HOUR).await;
    bed.backup_at(T1 + 2 * HOUR).await;
    let rebuilt = Index::open_in_memory().expect("index");
    let listed = bed.store.list("manifests/").await.expect("list");
    let mut manifests = Vec::new();
    for meta in listed {
        let manifest = read_listed_manifest(&bed, &meta.key).await;
        manifests.push((meta.key, manifest));
    }
    manifests.sort_by_key(|(_, m)| m.started_at);
    let mut report = super::rebuild::RebuildReport::default();
    super::rebuild::replay(&rebuilt, &manifests, &mut report).expect("replay");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.runs, 3);
    for at in [
        T1 - 1,
        T1,
        T1 + HOUR - 1,
        T1 + HOUR,
        T1 + 2 * HOUR,
        T1 + 9 * HOUR,
    ] {
        assert_eq!(
            bed.index.captures_as_of(&v("kv1"), at).expect("original"),
            rebuilt.captures_as_of(&v("kv1"), at).expect("rebuilt"),
            "at {at}"
        );
    }
    // The point-in-time sets differ across the runs, so the comparison above means something.
    let names = |at| {
        rebuilt
            .captures_as_of(&v("kv1"), at)
            .expect("set")
            .into_iter()
            .map(|c| format!("{}/{}", c.kind, c.name))
            .collect::<Vec<_>>()
    };
    assert!(names(T1).contains(&"keys/signing".to_string()));
    assert!(!names(T1 + HOUR).contains(&"keys/signing".to_string()));
    assert!(names(T1 + HOUR).contains(&"secrets/new-one".to_string()));
}

/// The manifest stored at `key` (a run's manifest key), every part read.
pub async fn read_listed_manifest(bed: &Bed, key: &BlobKey) -> crate::backup::Manifest {
    let name = key.as_str().rsplit('/').next().expect("file");
    let run: crate::model::RunId = name
        .trim_end_matches(".age")
        .rsplit('-')
        .next()
        .expect("run")
        .parse()
        .expect("run id");
    let vault: VaultName = key
        .as_str()
        .split('/')
        .nth(1)
        .expect("vault")
        .parse()
        .expect("vault");
    crate::backup::manifest::read_manifest(bed.store.as_ref(), &bed.identities, &vault, &run, key)
        .await
        .expect("manifest")
}
