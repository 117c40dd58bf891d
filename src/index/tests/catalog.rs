//! What each run holds (schema version 4): restore points stay complete when the run that wrote
//! a blob is forgotten, and the queries prune and reports plan with.

use super::super::{DeletedObjectRecord, HeldSpace, Index, IndexError, VaultCatalogSummary};
use super::{blob, run, vault, RunScript};
use crate::model::ObjectKind::{Keys, Secrets};

/// Run 1 (100) captures signing and db; run 2 (200) sees signing unchanged and captures db
/// again; run 3 (300) sees signing unchanged, captures db a third time and sees api deleted,
/// which only run 1 had captured.
fn scenario() -> Index {
    let index = Index::open_in_memory().expect("index");
    RunScript::committed(1, "kv-app", 100)
        .capture(Keys, "signing", &["k1"])
        .capture(Secrets, "db", &["d1"])
        .capture(Secrets, "api", &["a1"])
        .play(&index);
    RunScript::committed(2, "kv-app", 200)
        .unchanged(Keys, "signing", 100)
        .unchanged(Secrets, "api", 100)
        .capture(Secrets, "db", &["d1", "d2"])
        .play(&index);
    RunScript::committed(3, "kv-app", 300)
        .unchanged(Keys, "signing", 100)
        .capture(Secrets, "db", &["d1", "d2", "d3"])
        .delete(Secrets, "api")
        .play(&index);
    index
}

/// The restore set at `at` as `kind/name@captured_at`.
fn restore_set(index: &Index, at: i64) -> Vec<String> {
    index
        .captures_as_of(&vault("kv-app"), at)
        .expect("point-in-time query")
        .into_iter()
        .map(|c| format!("{}/{}@{}", c.kind, c.name, c.captured_at))
        .collect()
}

#[test]
fn a_restore_point_keeps_objects_whose_writing_run_was_forgotten() {
    let index = scenario();
    assert_eq!(
        restore_set(&index, 250),
        ["keys/signing@100", "secrets/api@100", "secrets/db@200"]
    );

    // Prune forgets run 1: its manifest is gone, so it is no restore point any more.
    index.forget_run(&run(1), 1_000).expect("forget");
    assert!(!index
        .run(&run(1))
        .expect("run")
        .expect("listed")
        .is_committed());
    assert!(restore_set(&index, 150).is_empty(), "no point before 200");
    assert_eq!(
        restore_set(&index, 250),
        ["keys/signing@100", "secrets/api@100", "secrets/db@200"],
        "run 2 still holds what run 1 wrote"
    );
    assert_eq!(
        restore_set(&index, 300),
        ["keys/signing@100", "secrets/db@300"]
    );
    // The blob run 1 wrote still counts, for restore and for change detection.
    let signing = blob("objects/kv-app/keys/signing/100.age");
    assert!(
        index
            .capture(&signing)
            .expect("query")
            .expect("kept")
            .committed
    );
    let last = index
        .committed_objects(&vault("kv-app"))
        .expect("query")
        .into_iter()
        .find(|o| o.name.as_str() == "signing")
        .and_then(|o| o.last)
        .expect("signing still has a usable capture");
    assert_eq!(last.blob, signing);
    assert_eq!(
        index
            .list_versions(&vault("kv-app"), Keys, &super::name("signing"))
            .expect("versions")
            .len(),
        1
    );
}

#[test]
fn prune_learns_which_blobs_go_with_the_points_it_forgets() {
    let index = scenario();
    let kv = vault("kv-app");
    let points: Vec<_> = index
        .restore_points(&kv)
        .expect("points")
        .into_iter()
        .map(|p| (p.run, p.started_at))
        .collect();
    assert_eq!(points, [(run(1), 100), (run(2), 200), (run(3), 300)]);

    // Forgetting run 1 frees only the blob no later point refers to.
    let db1 = blob("objects/kv-app/secrets/db/100.age");
    assert_eq!(
        index.blobs_held_only_by(&kv, &[run(1)]).expect("q"),
        std::slice::from_ref(&db1)
    );
    let api = blob("objects/kv-app/secrets/api/100.age");
    assert!(index
        .is_blob_held_by_other_than(&api, &[run(1)])
        .expect("q"));
    assert!(!index
        .is_blob_held_by_other_than(&api, &[run(1), run(2)])
        .expect("q"));
    let mut both = index.blobs_held_only_by(&kv, &[run(1), run(2)]).expect("q");
    both.sort();
    assert_eq!(
        both,
        [
            api.clone(),
            db1.clone(),
            blob("objects/kv-app/secrets/db/200.age")
        ]
    );
    // Counted without listing, for the dry run: the same blobs, and their stored size.
    let stored: u64 = both
        .iter()
        .map(|b| index.capture(b).expect("q").expect("captured").stored_bytes)
        .sum();
    assert!(stored > 0);
    assert_eq!(
        index.space_held_only_by(&kv, &[run(1), run(2)]).expect("q"),
        HeldSpace {
            blobs: 3,
            stored_bytes: stored
        }
    );
    assert_eq!(
        index.space_held_only_by(&kv, &[]).expect("q"),
        HeldSpace::default()
    );

    // The deleted object, and the points that still hold it.
    assert_eq!(
        index.deleted_objects_with_holders(&kv).expect("q"),
        [DeletedObjectRecord {
            kind: Secrets,
            name: super::name("api"),
            seen_at: 300,
            holders: vec![run(1), run(2)],
        }]
    );

    // Carry the plan out: forget, then delete what no run holds.
    index.forget_run(&run(1), 1_000).expect("forget");
    assert_eq!(
        index
            .unheld_blobs(&kv)
            .expect("q")
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>(),
        std::slice::from_ref(&db1)
    );
    let refused = index
        .delete_capture(&blob("objects/kv-app/keys/signing/100.age"))
        .expect_err("held by run 2");
    assert!(
        matches!(&refused, IndexError::InvalidInput(m) if m.contains(run(2).as_str())),
        "{refused}"
    );
    let summary = index.catalog_summary(Some(&kv)).expect("summary");
    assert_eq!(
        summary,
        [VaultCatalogSummary {
            vault: kv.clone(),
            restore_points: 2,
            oldest_started_at: Some(200),
            newest_started_at: Some(300),
            // signing@100, api@100, db@200, db@300; 600 bytes each as stored.
            held_blobs: 4,
            held_stored_bytes: 2400,
            unheld_blobs: 1,
        }]
    );
    assert!(index.delete_capture(&db1).expect("delete"));
    assert!(index.unheld_blobs(&kv).expect("q").is_empty());
    assert_eq!(
        index.deleted_objects_with_holders(&kv).expect("q")[0].holders,
        [run(2)]
    );
    assert!(index
        .catalog_summary(Some(&vault("kv-none")))
        .expect("q")
        .is_empty());
}

#[test]
fn a_run_carries_over_what_it_did_not_mention_from_the_previous_point() {
    // Run 2 failed on signing (no record of it) and saw api deleted: a restore as of run 2
    // gives signing's earlier capture, as restore did before runs recorded what they hold.
    let index = Index::open_in_memory().expect("index");
    RunScript::committed(1, "kv-app", 100)
        .capture(Keys, "signing", &["k1"])
        .capture(Secrets, "api", &["a1"])
        .play(&index);
    RunScript::committed(2, "kv-app", 200)
        .capture(Secrets, "db", &["d1"])
        .delete(Secrets, "api")
        .play(&index);
    assert_eq!(
        restore_set(&index, 200),
        ["keys/signing@100", "secrets/db@200"]
    );
    let held: Vec<String> = index
        .restore_point_contents(&run(2))
        .expect("contents")
        .into_iter()
        .map(|c| format!("{}/{}", c.kind, c.name))
        .collect();
    assert_eq!(held, ["keys/signing", "secrets/db"]);
}
