//! The runner's vault leases over an in-memory store shared by two instances (each with its own
//! index, as on two hosts): a vault held by one is not started by the other, and the refusal
//! names the holder; the same instance takes its lease back at once; a lease lost mid-run stops
//! the backup before its manifest, so it is no restore point; a released lease lets the other
//! instance in.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::two_instances::{vault_name, Bed, Gated};
use crate::backup::NoProgress;
use crate::index::RunStatus;
use crate::store::{BlobStore, LeaseDuration, LeaseHolder, LOCKS_PREFIX};

#[tokio::test]
async fn a_vault_held_by_another_instance_is_not_started_and_the_refusal_names_the_holder() {
    let bed = Bed::new();
    let store = &bed.store;
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);

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
    assert_eq!(bed.manifests().await, 2);
    assert_eq!(
        store.list(LOCKS_PREFIX).await.expect("list").len(),
        1,
        "one lock blob per vault"
    );
}

#[tokio::test]
async fn a_restarted_instance_takes_its_own_lease_back_at_once() {
    let bed = Bed::new();
    let store = &bed.store;
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
    let other = bed.instance("web-2", true);
    let refused = other
        .runner
        .backup_one(&other.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert!(refused.held_elsewhere.is_some(), "{refused:?}");

    let restarted = bed.instance("web-1", true);
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
    let bed = Bed::new();
    let store = &bed.store;
    let gated = Arc::new(Gated::new(bed.source.clone()));
    let a = bed.instance_with("web-1", true, gated.clone());
    let b = bed.instance("web-2", true);

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
    assert_eq!(bed.manifests().await, 0, "nothing committed");
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
    assert_eq!(bed.manifests().await, 1);
}

#[tokio::test]
async fn prune_takes_the_lease_too() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
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
    // The daemon's prune after a backup tells that apart from a failure.
    let skipped = b
        .runner
        .prune_unless_held(&b.vault, &CancellationToken::new())
        .await
        .expect("held elsewhere is no error");
    assert!(skipped.is_none(), "{skipped:?}");
    assert_eq!(claim.release().await, None);
    b.runner
        .prune(&b.vault, None, &CancellationToken::new())
        .await
        .expect("released: web-2 prunes");
    let pruned = b
        .runner
        .prune_unless_held(&b.vault, &CancellationToken::new())
        .await
        .expect("free");
    assert!(pruned.is_some(), "a free vault is pruned");
}
