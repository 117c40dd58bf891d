//! Takeover between instances over one in-memory store: a backup run whose instance died
//! holding the vault's lease is recorded `interrupted` by the next holder (naming the dead
//! instance), which backs up what that run left out; a run that committed before its holder
//! died, or a lease released cleanly, is no takeover; a prune left unfinished is told too.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::two_instances::{vault_name, Bed, Gated, START};
use crate::backup::NoProgress;
use crate::index::RunStatus;
use crate::model::RunId;
use crate::store::{BlobStore, LeaseDuration, LeaseHolder, LeaseWork};

#[tokio::test]
async fn a_run_left_by_a_dead_holder_is_marked_interrupted_by_the_next_and_nothing_is_lost() {
    let bed = Bed::new();
    let gated = Arc::new(Gated::new(bed.source.clone()));
    let a = bed.instance_with("web-1", true, gated.clone());
    let b = bed.instance("web-2", true);

    // web-1 starts a backup and is killed while it captures: its future is dropped on the
    // spot, so the lease is never released and the run never ends in web-1's index.
    let claim = a
        .runner
        .claim_backup(&a.vault, &CancellationToken::new())
        .await
        .expect("claimed");
    assert!(
        claim.took_over().is_none(),
        "a fresh vault: {:?}",
        claim.took_over()
    );
    let dead_run: RunId = claim.run().cloned().expect("a backup claim names its run");
    tokio::select! {
        report = a.runner.backup_claimed(&a.vault, claim, Arc::new(NoProgress)) => {
            panic!("the gated backup cannot finish: {report:?}")
        }
        () = gated.entered.notified() => {}
    }
    let left = a
        .runner
        .index()
        .run(&dead_run)
        .expect("index")
        .expect("begun");
    assert_eq!(left.status, RunStatus::Running, "web-1 died mid-run");
    // Its lease runs out within its duration; a test breaks it rather than wait.
    bed.store.break_lease(&vault_name()).await.expect("break");

    // web-2 takes the vault over: it is told whom from, records the dead run as interrupted,
    // and captures everything (web-1 committed nothing).
    let claim = b
        .runner
        .claim_backup(&b.vault, &CancellationToken::new())
        .await
        .expect("the lease is free");
    let from = claim.took_over().expect("took over from web-1").clone();
    assert_eq!(from.instance, "web-1");
    assert_eq!(
        from.work,
        Some(LeaseWork::Backup {
            run: dead_run.clone()
        })
    );
    let report = b
        .runner
        .backup_claimed(&b.vault, claim, Arc::new(NoProgress))
        .await;
    assert_eq!(report.status, RunStatus::Completed, "{report:?}");
    assert_eq!(report.stats.captured_objects, 2, "{report:?}");
    let recorded = b
        .runner
        .index()
        .run(&dead_run)
        .expect("index")
        .expect("recorded");
    assert_eq!(recorded.status, RunStatus::Interrupted);
    assert_eq!(recorded.abandoned_by.as_deref(), Some("web-1"));
    assert_eq!(recorded.started_at, START, "when web-1 took the lease");
    assert!(!recorded.is_committed(), "no restore point");
    let runs: Vec<(RunId, RunStatus)> = b
        .runner
        .index()
        .list_runs(Some(&vault_name()))
        .expect("runs")
        .into_iter()
        .map(|r| (r.run, r.status))
        .collect();
    assert!(
        runs.contains(&(dead_run.clone(), RunStatus::Interrupted)),
        "{runs:?}"
    );
    assert!(
        runs.contains(&(report.run.clone(), RunStatus::Completed)),
        "{runs:?}"
    );
    assert_eq!(bed.manifests().await, 1);

    // web-1 comes back: its own run is marked interrupted by its own index, web-2 released the
    // vault cleanly (no takeover), and web-2's restore point is synced, so nothing is captured
    // again.
    let claim = a
        .runner
        .claim_backup(&a.vault, &CancellationToken::new())
        .await
        .expect("released by web-2");
    assert!(claim.took_over().is_none(), "{:?}", claim.took_over());
    claim.release().await;
    let own = a
        .runner
        .index()
        .run(&dead_run)
        .expect("index")
        .expect("own run");
    assert_eq!(own.status, RunStatus::Interrupted);
    assert_eq!(own.abandoned_by, None, "web-1's own run");
    assert_eq!(
        a.runner
            .index()
            .restore_points(&vault_name())
            .expect("points")
            .len(),
        1,
        "web-2's restore point, synced"
    );
}

/// Takes `vault`'s lease as instance `who` working on `work`, then breaks it: an instance that
/// died after `work` and before its release.
async fn died_holding(bed: &Bed, who: &str, work: LeaseWork) {
    let holder = LeaseHolder::new(who).expect("holder").for_work(work);
    bed.store
        .acquire_lease(&vault_name(), &holder, LeaseDuration::DEFAULT)
        .await
        .expect("acquire");
    bed.store.break_lease(&vault_name()).await.expect("break");
}

#[tokio::test]
async fn a_run_that_committed_before_its_holder_died_is_no_takeover() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    let made = a
        .runner
        .backup_one(&a.vault, CancellationToken::new(), Arc::new(NoProgress))
        .await;
    assert_eq!(made.status, RunStatus::Completed, "{made:?}");
    // web-1 wrote the manifest, then died before releasing.
    died_holding(
        &bed,
        "web-1",
        LeaseWork::Backup {
            run: made.run.clone(),
        },
    )
    .await;

    let claim = b
        .runner
        .claim_backup(&b.vault, &CancellationToken::new())
        .await
        .expect("free");
    assert!(claim.took_over().is_none(), "{:?}", claim.took_over());
    claim.release().await;
    let synced = b
        .runner
        .index()
        .run(&made.run)
        .expect("index")
        .expect("synced");
    assert_eq!(synced.status, RunStatus::Completed);
    assert!(synced.is_committed());
    assert_eq!(synced.abandoned_by, None);
}

#[tokio::test]
async fn a_prune_left_unfinished_is_told_and_the_next_prune_runs() {
    let bed = Bed::new();
    let b = bed.instance("web-2", true);
    died_holding(&bed, "web-1", LeaseWork::Prune).await;
    let claim = b
        .runner
        .claim_backup(&b.vault, &CancellationToken::new())
        .await
        .expect("free");
    let from = claim.took_over().expect("took over").clone();
    assert_eq!(
        (from.instance.as_str(), from.work),
        ("web-1", Some(LeaseWork::Prune))
    );
    claim.release().await;
    b.runner
        .prune(&b.vault, None, &CancellationToken::new())
        .await
        .expect("the prune runs");
}
