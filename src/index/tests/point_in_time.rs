//! The point-in-time query restore is built on: one scenario, asked at many times.

use super::super::{Index, RunStatus};
use super::{blob, RunScript};
use crate::model::ObjectKind::{Certificates, Keys, Secrets};

/// Committed runs at 100, 200 and 300; a run at 400 that never wrote its manifest; a
/// partially failed but committed run at 500; and a neighbour vault with the same names.
///
/// | object         | story                                                              |
/// |----------------|--------------------------------------------------------------------|
/// | keys/rotating  | captured at 100 (v1), 200 (v1,v2), 300 (v1,v2,v3)                  |
/// | secrets/gone   | captured at 100, seen deleted at 200                               |
/// | secrets/late   | created later: first captured at 300                               |
/// | secrets/stale  | captured at 100; the uncommitted run at 400 captured a new version |
/// | certificates/p | first captured by the partially failed run at 500                  |
/// | secrets/phoenix| captured at 100, deleted at 200, re-created and captured at 300    |
/// | keys/survivor  | captured at 100; only the uncommitted run at 400 saw it deleted    |
fn scenario() -> Index {
    let index = Index::open_in_memory().expect("index");
    let runs = [
        RunScript::committed(1, "kv-app", 100)
            .capture(Keys, "rotating", &["v1"])
            .capture(Secrets, "gone", &["g1"])
            .capture(Secrets, "stale", &["s1"])
            .capture(Secrets, "Phoenix", &["p1"])
            .capture(Keys, "survivor", &["k1"]),
        RunScript::committed(2, "kv-app", 200)
            .capture(Keys, "rotating", &["v1", "v2"])
            .delete(Secrets, "gone")
            .delete(Secrets, "phoenix"),
        RunScript::committed(3, "kv-app", 300)
            .capture(Keys, "rotating", &["v1", "v2", "v3"])
            .capture(Secrets, "late", &["l1"])
            .capture(Secrets, "phoenix", &["p9"]),
        RunScript {
            manifest: false,
            status: RunStatus::Interrupted,
            ..RunScript::committed(4, "kv-app", 400)
                .capture(Secrets, "stale", &["s1", "s2"])
                .delete(Keys, "survivor")
        },
        RunScript {
            status: RunStatus::PartiallyFailed,
            ..RunScript::committed(5, "kv-app", 500).capture(Certificates, "p", &["c1"])
        },
        RunScript::committed(6, "kv-other", 150)
            .capture(Keys, "rotating", &["x1"])
            .capture(Secrets, "late", &["x2"]),
    ];
    for script in runs {
        script.play(&index);
    }
    index
}

/// The restore set at `at`, as `kind/name@captured_at` sorted as the query sorts.
fn restore_set(index: &Index, at: i64) -> Vec<String> {
    index
        .captures_as_of(&super::vault("kv-app"), at)
        .expect("point-in-time query")
        .into_iter()
        .map(|c| format!("{}/{}@{}", c.kind, c.name, c.captured_at))
        .collect()
}

#[test]
fn the_restore_set_at_each_point_in_time() {
    let index = scenario();
    let cases: &[(i64, &[&str])] = &[
        (99, &[]),
        (
            100,
            &[
                "keys/rotating@100",
                "keys/survivor@100",
                "secrets/gone@100",
                "secrets/Phoenix@100",
                "secrets/stale@100",
            ],
        ),
        (
            199,
            &[
                "keys/rotating@100",
                "keys/survivor@100",
                "secrets/gone@100",
                "secrets/Phoenix@100",
                "secrets/stale@100",
            ],
        ),
        // Deleted at 200: gone and phoenix disappear; rotating moves to its second capture.
        (
            200,
            &[
                "keys/rotating@200",
                "keys/survivor@100",
                "secrets/stale@100",
            ],
        ),
        (
            299,
            &[
                "keys/rotating@200",
                "keys/survivor@100",
                "secrets/stale@100",
            ],
        ),
        // Created later (late) and re-created (phoenix, displayed as last seen).
        (
            300,
            &[
                "keys/rotating@300",
                "keys/survivor@100",
                "secrets/late@300",
                "secrets/phoenix@300",
                "secrets/stale@100",
            ],
        ),
        // The run at 400 has no manifest: its capture of stale and its deletion of survivor
        // do not count.
        (
            450,
            &[
                "keys/rotating@300",
                "keys/survivor@100",
                "secrets/late@300",
                "secrets/phoenix@300",
                "secrets/stale@100",
            ],
        ),
        // A partially failed run with a manifest counts for what it captured.
        (
            500,
            &[
                "certificates/p@500",
                "keys/rotating@300",
                "keys/survivor@100",
                "secrets/late@300",
                "secrets/phoenix@300",
                "secrets/stale@100",
            ],
        ),
    ];
    for (at, expected) in cases {
        assert_eq!(&restore_set(&index, *at), expected, "restore set at {at}");
    }
}

#[test]
fn the_restore_set_names_the_blob_and_versions_of_each_capture() {
    let index = scenario();
    let set = index
        .captures_as_of(&super::vault("kv-app"), 250)
        .expect("query");
    let rotating = set
        .iter()
        .find(|c| c.kind == Keys && c.name.as_str() == "rotating")
        .expect("rotating present");
    assert_eq!(rotating.blob, blob("objects/kv-app/keys/rotating/200.age"));
    assert_eq!(rotating.current_version.as_str(), "v2");
    assert!(rotating.committed);
    let versions = index.capture_versions(&rotating.blob).expect("versions");
    let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(ids, ["v1", "v2"]);
}

#[test]
fn another_vaults_objects_never_leak_into_the_restore_set() {
    let index = scenario();
    let other = index
        .captures_as_of(&super::vault("kv-other"), 1000)
        .expect("query");
    let names: Vec<String> = other
        .iter()
        .map(|c| format!("{}/{}", c.vault, c.name))
        .collect();
    assert_eq!(names, ["kv-other/rotating", "kv-other/late"]);
}

#[test]
fn the_query_plan_seeks_indexes_instead_of_scanning_captures() {
    // A full scan of captures or run_members would make restore planning linear in the
    // history (the bench measures a million captures); this pins the plan instead of a timing:
    // one seek for the restore point, then a range of its members.
    let index = scenario();
    let sql = super::super::read::captures_as_of_sql();
    let conn = index.lock();
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params!["kv-app", 300], |r| r.get::<_, String>(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    let plan = plan.join("\n");
    assert!(plan.contains("runs_by_vault_started"), "{plan}");
    assert!(
        plan.contains("SEARCH m USING PRIMARY KEY (run=?)"),
        "{plan}"
    );
    for line in plan.lines() {
        assert!(
            !(line.contains("SCAN") && line != "SCAN point"),
            "full scan in plan:\n{plan}"
        );
    }
}
