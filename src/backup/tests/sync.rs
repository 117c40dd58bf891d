//! Index sync between two instances (each with its own index, as on two hosts) over one
//! in-memory store, with the catalog key: a backup after the other instance's finds its
//! captures unchanged, a prune by one is forgotten by the other, runs in one second replay in
//! the order they ran, a run recorded here without the manifest that is in the store is
//! replaced by it, a run in flight here is never touched, and a fire time another instance
//! served is seen as served under the lease.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::two_instances::{secret, vault_name, Bed, Instance, RECIPIENT, START};
use crate::backup::{NoProgress, Runner};
use crate::config::Config;
use crate::index::{Index, RunStats, RunStatus};
use crate::model::ObjectKind;
use crate::source::SeedObject;
use crate::store::BlobStore;

impl Instance {
    async fn backup(&self) -> crate::backup::BackupReport {
        let report = self
            .runner
            .backup_one(&self.vault, CancellationToken::new(), Arc::new(NoProgress))
            .await;
        assert_eq!(report.status, RunStatus::Completed, "{report:?}");
        report
    }

    async fn sync(&self) -> crate::restore::sync::SyncReport {
        self.runner
            .sync_vault(&vault_name(), &CancellationToken::new())
            .await
            .expect("sync")
            .expect("the catalog identity is configured")
    }

    fn points(&self) -> Vec<String> {
        self.runner
            .index()
            .restore_points(&vault_name())
            .expect("points")
            .into_iter()
            .map(|p| p.run.to_string())
            .collect()
    }

    /// What each restore point holds: (run, [blob]) oldest first.
    fn contents(&self) -> Vec<(String, Vec<String>)> {
        let index = self.runner.index();
        index
            .restore_points(&vault_name())
            .expect("points")
            .into_iter()
            .map(|p| {
                let blobs = index
                    .restore_point_contents(&p.run)
                    .expect("contents")
                    .into_iter()
                    .map(|c| c.blob.to_string())
                    .collect();
                (p.run.to_string(), blobs)
            })
            .collect()
    }
}

#[tokio::test]
async fn a_backup_after_another_instances_finds_its_captures_unchanged() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    let first = a.backup().await;
    assert_eq!(first.stats.captured_objects, 2);

    // web-2 syncs under the lease before planning: nothing changed, nothing is captured.
    let second = b.backup().await;
    assert_eq!(second.stats.captured_objects, 0, "{second:?}");
    assert_eq!(second.stats.unchanged_objects, 2, "{second:?}");
    assert_eq!(second.stats.backup_calls, 0, "{second:?}");

    // A changed secret is captured once, by whichever instance runs next; the other then
    // finds it unchanged too.
    bed.source.put(
        ObjectKind::Secrets,
        &secret("db-password"),
        SeedObject::value("w"),
    );
    assert_eq!(a.backup().await.stats.captured_objects, 1);
    let fourth = b.backup().await;
    assert_eq!(fourth.stats.captured_objects, 0, "{fourth:?}");

    // Each index lists every run, and both agree on what each restore point holds.
    // web-1 learnt of run 2 before its run 3; run 4 is new to it.
    let report = a.sync().await;
    assert_eq!(
        (report.manifests, report.replayed_runs),
        (4, 1),
        "{report:?}"
    );
    assert_eq!(a.points().len(), 4);
    assert_eq!(a.contents(), b.contents());
    assert_eq!(
        a.runner.index().list_runs(None).expect("runs").len(),
        b.runner.index().list_runs(None).expect("runs").len()
    );

    // Nothing new: a sync changes nothing.
    let again = b.sync().await;
    assert!(!again.changed(), "{again:?}");
    assert!(again.problems.is_empty(), "{again:?}");
}

#[tokio::test]
async fn restore_points_another_instance_pruned_are_forgotten() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    for value in ["1", "2", "3"] {
        bed.source.put(
            ObjectKind::Secrets,
            &secret("db-password"),
            SeedObject::value(value),
        );
        a.backup().await;
    }
    let report = b.sync().await;
    assert_eq!(report.replayed_runs, 3, "{report:?}");
    assert_eq!(b.points().len(), 3);

    // web-1 keeps the newest point (keep_last = 1) and deletes the other two manifests.
    let pruned = a
        .runner
        .prune(&a.vault, None, &CancellationToken::new())
        .await
        .expect("prune");
    assert_eq!(pruned.forgotten_points, 2);
    assert_eq!(pruned.deleted_manifests, 2);

    let report = b.sync().await;
    assert_eq!(report.forgotten_points, 2, "{report:?}");
    assert_eq!(report.replayed_runs, 0, "{report:?}");
    assert_eq!(b.points(), a.points());
    assert_eq!(b.contents(), a.contents());
    let forgotten = b
        .runner
        .index()
        .list_runs(Some(&vault_name()))
        .expect("runs")
        .into_iter()
        .filter(|r| r.forgotten_at.is_some())
        .count();
    assert_eq!(
        forgotten, 2,
        "forgotten runs stay listed, as after a prune here"
    );

    // web-2's own prune then has nothing left to forget, and what web-1 deleted counts as
    // deleted (no failure for blobs already gone).
    let pruned = b
        .runner
        .prune(&b.vault, None, &CancellationToken::new())
        .await
        .expect("prune");
    assert_eq!(pruned.forgotten_points, 0);
    assert!(pruned.complete(), "{:?}", pruned.failed);
}

#[tokio::test]
async fn runs_of_one_second_replay_in_the_order_they_ran() {
    let bed = Bed::new();
    let a = bed.instance("web-1", false);
    // Each run changes one secret, so each later run refers to blobs of the earlier ones.
    for value in ["1", "2", "3", "4", "5", "6"] {
        let name = if value.parse::<u8>().unwrap_or(0) % 2 == 0 {
            "db-password"
        } else {
            "api-token"
        };
        bed.source
            .put(ObjectKind::Secrets, &secret(name), SeedObject::value(value));
        a.backup().await;
    }
    let b = bed.instance("web-2", true);
    let report = b.sync().await;
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.replayed_runs, 6, "{report:?}");
    assert_eq!(b.contents(), a.contents());
}

#[tokio::test]
async fn a_run_recorded_without_the_manifest_in_the_store_is_replaced_by_it() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    let run = a.backup().await;

    // In web-2's index the run is one that ended without a manifest (as if web-2 had died
    // between writing the manifest and recording it).
    let index = b.runner.index();
    index
        .begin_run(&run.run, &vault_name(), run.started_at)
        .expect("begin");
    index
        .finish_run(
            &run.run,
            RunStatus::Interrupted,
            &RunStats::default(),
            run.finished_at,
            None,
        )
        .expect("finish");
    let report = b.sync().await;
    assert_eq!(report.replayed_runs, 1, "{report:?}");
    assert_eq!(b.contents(), a.contents());
    let record = index.run(&run.run).expect("run").expect("known");
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.manifest, run.manifest);
}

#[tokio::test]
async fn a_run_in_flight_here_is_never_touched_and_one_a_killed_process_left_is_replayed() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    let run = a.backup().await;
    b.runner
        .index()
        .begin_run(&run.run, &vault_name(), run.started_at)
        .expect("begin");
    let report = b.sync().await;
    assert!(!report.changed(), "{report:?}");
    let record = b.runner.index().run(&run.run).expect("run").expect("known");
    assert_eq!(record.status, RunStatus::Running);

    // `kvkeep index sync`, with no process of this host holding the vault: the run was left
    // by a killed process (which wrote its manifest just before the kill), so it is ended and
    // its manifest replayed.
    let store = bed.store.clone() as Arc<dyn BlobStore>;
    let catalog = b.runner.catalog_identity().cloned().expect("catalog");
    let report = b
        .runner
        .sync_offline(&vault_name(), &store, &catalog, &CancellationToken::new())
        .await
        .expect("sync");
    assert_eq!(report.replayed_runs, 1, "{report:?}");
    let record = b.runner.index().run(&run.run).expect("run").expect("known");
    assert_eq!(record.status, RunStatus::Completed);
    assert!(record.is_committed());
}

#[tokio::test]
async fn without_a_catalog_identity_there_is_no_sync() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    a.backup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[store]\ntype = \"local\"\npath = \"/unused\"\n[index]\npath = \"{}\"\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n[[vault]]\nname = \"kv1\"\n",
        dir.path().join("index.sqlite").display()
    );
    let config = Config::parse(&text, "kvkeep.toml", dir.path(), &|_| {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    })
    .expect("valid configuration");
    let runner = Runner::from_parts(
        &config,
        bed.store.clone() as Arc<dyn BlobStore>,
        Arc::new(Index::open_in_memory().expect("index")),
        Arc::new(|| START),
    )
    .expect("runner");
    let synced = runner
        .sync_vault(&vault_name(), &CancellationToken::new())
        .await
        .expect("no error");
    assert!(synced.is_none());
}

#[tokio::test]
async fn a_fire_time_already_served_by_another_instance_is_seen_under_the_lease() {
    let bed = Bed::new();
    let a = bed.instance("web-1", true);
    let b = bed.instance("web-2", true);
    let made = a.backup().await;

    let claim = b
        .runner
        .claim_backup(&b.vault, &CancellationToken::new())
        .await
        .expect("web-1 released the vault");
    // The fire time web-1's run served: web-2 finds its restore point after syncing.
    let served = b
        .runner
        .restore_point_since(&b.vault, made.started_at)
        .await
        .expect("served");
    assert_eq!(served.run, made.run);
    // The next fire time is not served yet: the backup goes ahead, without syncing again.
    assert!(b
        .runner
        .restore_point_since(&b.vault, made.started_at + 1)
        .await
        .is_none());
    let report = b
        .runner
        .backup_claimed(&b.vault, claim, Arc::new(NoProgress))
        .await;
    assert_eq!(report.stats.captured_objects, 0, "{report:?}");
}
