//! The executor when answers are lost and when kvkeep is told to stop: a restore, purge or
//! recover that took effect but whose answer never came back is recognised by looking at the
//! vault (never reported as a conflict, never blindly repeated); a cancelled restore starts no
//! object, and its waits end at once (tokio's paused clock: a wait of an hour would show).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{empty_vault, outcome_of, Bed, T1};
use crate::model::{ObjectKind, ObjectName, VaultName};
use crate::restore::{ConflictPolicy, Outcome, Overall};
use crate::source::{
    BackupBlob, DeletedInfo, FailureRule, InMemoryVaultSource, ObjectProperties, ObjectSummary,
    RestoredObject, SourceError, SourceErrorKind, SourceOp, VaultSource, VersionInfo,
};

/// Carries out the first `lose` restores, purges, recovers and deletes but answers them with a
/// lost connection, as a reset after the service acted would.
struct LosesAnswers {
    inner: Arc<InMemoryVaultSource>,
    lose: AtomicU32,
}

impl LosesAnswers {
    fn new(inner: Arc<InMemoryVaultSource>, lose: u32) -> Arc<Self> {
        Arc::new(LosesAnswers {
            inner,
            lose: AtomicU32::new(lose),
        })
    }

    fn lost<T>(
        &self,
        done: Result<T, SourceError>,
        op: SourceOp,
        kind: ObjectKind,
    ) -> Result<T, SourceError> {
        let value = done?;
        if self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SourceError::new(
                SourceErrorKind::Transient,
                op,
                self.inner.vault(),
                kind,
                None,
                "the answer was lost",
            ));
        }
        Ok(value)
    }
}

#[async_trait]
impl VaultSource for LosesAnswers {
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
        self.inner.backup(kind, name).await
    }
    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError> {
        let done = self.inner.restore(kind, blob).await;
        self.lost(done, SourceOp::Restore, kind)
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
        let done = self.inner.recover(kind, name).await;
        self.lost(done, SourceOp::Recover, kind)
    }
    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        let done = self.inner.purge(kind, name).await;
        self.lost(done, SourceOp::Purge, kind)
    }
    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        let done = self.inner.delete(kind, name).await;
        self.lost(done, SourceOp::Delete, kind)
    }
    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError> {
        self.inner.get_properties(kind, name).await
    }
}

#[tokio::test]
async fn a_restore_whose_answer_was_lost_is_reported_restored() {
    let bed = Bed::new().await;
    let inner = empty_vault("kv-dr");
    let target = LosesAnswers::new(inner.clone(), 1);
    let plan = bed
        .plan(
            target.as_ref(),
            T1,
            vec!["secrets/db-password".parse().expect("ref")],
            ConflictPolicy::Skip,
        )
        .await;
    let report = bed.restorer(target, bed.store.clone()).execute(&plan).await;
    assert!(
        matches!(
            outcome_of(&report, ObjectKind::Secrets, "db-password"),
            Outcome::Restored { .. }
        ),
        "{report:?}"
    );
    assert_eq!(report.overall(), Overall::Ok);
    // Recognised by looking, not by sending the restore again.
    assert_eq!(inner.calls(SourceOp::Restore, ObjectKind::Secrets), 1);
    let name: ObjectName = "db-password".parse().expect("name");
    assert_eq!(
        inner
            .list_versions(ObjectKind::Secrets, &name)
            .await
            .expect("versions"),
        bed.source
            .list_versions(ObjectKind::Secrets, &name)
            .await
            .expect("versions"),
    );
}

#[tokio::test]
async fn a_resent_restore_answered_409_is_checked_against_the_backups_versions() {
    let bed = Bed::new().await;
    let inner = empty_vault("kv-dr");
    let plan = bed
        .plan(
            inner.as_ref(),
            T1,
            vec!["secrets/db-password".parse().expect("ref")],
            ConflictPolicy::Skip,
        )
        .await;
    // Another object of that name appears after the first attempt failed: not ours, reported
    // as the name taken, never as restored.
    inner.fail(FailureRule {
        op: Some(SourceOp::Restore),
        kind: Some(ObjectKind::Secrets),
        name: None,
        error: SourceErrorKind::Transient,
        retry_after: None,
        times: Some(1),
    });
    inner.put(
        ObjectKind::Secrets,
        &"db-password".parse().expect("name"),
        crate::source::SeedObject::value("someone else's"),
    );
    let report = bed
        .restorer(inner.clone(), bed.store.clone())
        .execute(&plan)
        .await;
    let Outcome::Failed { reason } = outcome_of(&report, ObjectKind::Secrets, "db-password") else {
        panic!("{report:?}")
    };
    assert!(reason.contains("is taken"), "{reason}");
}

#[tokio::test]
async fn a_purge_or_recover_whose_answer_was_lost_is_settled_by_looking() {
    let bed = Bed::new().await;
    for policy in [
        ConflictPolicy::PurgeThenRestore,
        ConflictPolicy::RecoverThenSkip,
    ] {
        let inner = empty_vault("kv-dr");
        let name: ObjectName = "db-password".parse().expect("name");
        inner.put(
            ObjectKind::Secrets,
            &name,
            crate::source::SeedObject::value("old"),
        );
        inner
            .delete(ObjectKind::Secrets, &name)
            .await
            .expect("delete");
        let target = LosesAnswers::new(inner.clone(), 1);
        let plan = bed
            .plan(
                target.as_ref(),
                T1,
                vec!["secrets/db-password".parse().expect("ref")],
                policy,
            )
            .await;
        let report = bed.restorer(target, bed.store.clone()).execute(&plan).await;
        let outcome = outcome_of(&report, ObjectKind::Secrets, "db-password");
        match policy {
            ConflictPolicy::PurgeThenRestore => {
                assert!(matches!(outcome, Outcome::Restored { .. }), "{report:?}");
                assert_eq!(
                    inner.calls(SourceOp::Purge, ObjectKind::Secrets),
                    1,
                    "not sent again"
                );
            }
            _ => {
                assert_eq!(outcome, &Outcome::Recovered, "{report:?}");
                assert_eq!(
                    inner.calls(SourceOp::Recover, ObjectKind::Secrets),
                    1,
                    "not sent again"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_cancelled_restore_starts_no_object_and_exits_interrupted() {
    let bed = Bed::new().await;
    let target = empty_vault("kv-dr");
    let plan = bed
        .plan(target.as_ref(), T1, Vec::new(), ConflictPolicy::Skip)
        .await;
    let restorer = bed.restorer(target.clone(), bed.store.clone());
    restorer.cancel.cancel();
    let report = restorer.execute(&plan).await;
    assert_eq!(report.stats.interrupted_objects, plan.objects.len());
    assert_eq!(report.overall(), Overall::Interrupted);
    assert_eq!(crate::cli::restore::exit_code(report.overall()), 1);
    for o in &report.objects {
        let Outcome::Interrupted { reason } = &o.outcome else {
            panic!("{o:?}")
        };
        assert!(
            reason.contains("not started") && reason.contains("rerun"),
            "{reason}"
        );
    }
    assert_eq!(target.calls_of(SourceOp::Restore), 0);
}

#[tokio::test]
async fn cancellation_ends_the_409_window_at_once() {
    let bed = Bed::new().await;
    let target = empty_vault("kv-dr");
    let plan = bed
        .plan(
            target.as_ref(),
            T1,
            vec!["secrets/db-password".parse().expect("ref")],
            ConflictPolicy::Skip,
        )
        .await;
    // The name stays blocked: without cancellation the executor would retry for an hour.
    target.fail(FailureRule {
        op: Some(SourceOp::Restore),
        kind: Some(ObjectKind::Secrets),
        name: None,
        error: SourceErrorKind::Conflict,
        retry_after: None,
        times: None,
    });
    let mut restorer = bed.restorer(target.clone(), bed.store.clone());
    restorer.options.purge_wait = Duration::from_secs(3600);
    restorer.options.purge_retry_interval = Duration::from_secs(600);
    let cancel = restorer.cancel.clone();
    tokio::time::pause();
    let run = async {
        let report = restorer.execute(&plan).await;
        (report, tokio::time::Instant::now())
    };
    let stop = async {
        while target.calls_of(SourceOp::Restore) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cancel.cancel();
        tokio::time::Instant::now()
    };
    let ((report, ended_at), cancelled_at) = tokio::join!(run, stop);
    assert_eq!(
        ended_at, cancelled_at,
        "the wait ended when the token fired"
    );
    assert_eq!(report.overall(), Overall::Interrupted);
    let Outcome::Interrupted { reason } = outcome_of(&report, ObjectKind::Secrets, "db-password")
    else {
        panic!("{report:?}")
    };
    assert!(reason.contains("rerun"), "{reason}");
}

#[tokio::test]
async fn a_drill_whose_every_answer_is_lost_still_restores_compares_and_cleans_up() {
    let bed = Bed::new().await;
    let inner = empty_vault("kv-scratch");
    let target = LosesAnswers::new(inner.clone(), u32::MAX);
    let report = crate::restore::verify::drill(
        bed.index.clone(),
        &bed.restorer(target, bed.store.clone()),
        super::location("kv1", Some("europe")),
        super::location("kv-scratch", Some("europe")),
        T1,
    )
    .await
    .expect("drill");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.drilled_objects, 4);
    for kind in ObjectKind::ALL {
        assert!(
            inner.list(kind).await.expect("list").is_empty(),
            "{kind} deleted"
        );
        assert!(
            inner.list_deleted(kind).await.expect("list").is_empty(),
            "{kind} purged"
        );
        assert_eq!(
            inner.calls(SourceOp::Purge, kind),
            inner.calls(SourceOp::Delete, kind),
            "no purge sent twice"
        );
    }
}
