//! Migrations apply in order from every earlier version, and the connection is set up as the
//! module promises (WAL, foreign keys); newer or foreign files are refused.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::super::migrate::{supported_version, APPLICATION_ID, MIGRATIONS};
use super::super::{Index, IndexError, NewCapture};
use super::{blob, capture, run, vault};
use crate::model::ObjectKind;

/// The schema as SQLite stores it, comparable between two files.
fn schema_of(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .expect("schema query");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("schema rows");
    rows.collect::<Result<_, _>>().expect("schema rows")
}

fn pragma_i64(conn: &Connection, name: &str) -> i64 {
    conn.pragma_query_value(None, name, |r| r.get(0))
        .expect("pragma")
}

#[test]
fn migrations_are_numbered_consecutively_from_one() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as i64 + 1, "{} out of order", m.name);
        assert!(
            m.name.starts_with(&format!("{:04}_", m.version)) && m.name.ends_with(".sql"),
            "{} must be named NNNN_description.sql after its version",
            m.name
        );
        assert!(!m.sql.trim().is_empty(), "{} is empty", m.name);
    }
    assert_eq!(supported_version(), MIGRATIONS.len() as i64);
}

#[test]
fn each_prefix_of_the_migrations_applies_to_an_empty_database() {
    for target in 0..=MIGRATIONS.len() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index.sqlite");
        let index = Index::open_at_version(&path, target).expect("migrations apply");
        assert_eq!(index.schema_version().expect("version"), target as i64);
    }
}

#[test]
fn a_database_at_every_earlier_version_upgrades_to_the_current_schema_keeping_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh_path = dir.path().join("fresh.sqlite");
    drop(Index::open(&fresh_path).expect("fresh index"));
    let fresh = schema_of(&Connection::open(&fresh_path).expect("reopen"));

    for from in 0..MIGRATIONS.len() {
        let path = dir.path().join(format!("at-{from}.sqlite"));
        let old = Index::open_at_version(&path, from).expect("old version");
        if from >= 1 {
            // Version 1 already has runs: data written by an older kvkeep must survive.
            old.begin_run(&run(1), &vault("kv-old"), 100)
                .expect("old run");
        }
        drop(old);

        let index = Index::open(&path).expect("upgrade");
        assert_eq!(
            index.schema_version().expect("version"),
            supported_version()
        );
        if from >= 1 {
            let runs = index.list_runs(None).expect("runs");
            assert_eq!(runs.len(), 1, "run recorded at version {from} was lost");
        }
        drop(index);
        let upgraded = schema_of(&Connection::open(&path).expect("reopen"));
        assert_eq!(
            upgraded, fresh,
            "upgrading from version {from} gives a different schema"
        );
    }
}

#[test]
fn captures_recorded_before_version_3_upgrade_with_tags_unknown_and_new_ones_keep_theirs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let old = Index::open_at_version(&path, 2).expect("version 2");
    old.begin_run(&run(1), &vault("kv1"), 100).expect("run");
    // What kvkeep at schema version 2 wrote for a capture: no tags column yet.
    old.lock()
        .execute_batch(&format!(
            "INSERT INTO objects (vault, kind, name, display_name, first_seen, last_seen,
                 current_version, updated)
             VALUES ('kv1', 'secrets', 'old', 'old', 100, 100, 'v1', 99);
             INSERT INTO captures (run, object, blob_key, display_name, captured_at,
                 current_version, updated, plain_bytes, stored_bytes, sha256, payload_mode)
             VALUES (1, 1, 'objects/kv1/secrets/old/100.age', 'old', 100, 'v1', 99, 1, 1,
                 '{}', 'native');",
            "ab".repeat(32)
        ))
        .expect("old capture");
    drop(old);

    let index = Index::open(&path).expect("upgrade");
    assert_eq!(
        index
            .capture_tags(&blob("objects/kv1/secrets/old/100.age"))
            .expect("tags"),
        None,
        "a capture from before version 3 has unknown tags"
    );
    let tagged = NewCapture {
        tags: Some(BTreeMap::from([("env".to_string(), "prod".to_string())])),
        ..capture("kv1", ObjectKind::Secrets, "tagged", &["v1"], 101)
    };
    let untagged = NewCapture {
        tags: Some(BTreeMap::new()),
        ..capture("kv1", ObjectKind::Secrets, "untagged", &["v1"], 102)
    };
    for c in [&tagged, &untagged] {
        index.record_capture(&run(1), c).expect("capture");
        assert_eq!(index.capture_tags(&c.blob).expect("tags"), c.tags);
    }
    // The column only ever holds JSON: anything else is refused by the schema.
    let err = index
        .lock()
        .execute("UPDATE captures SET tags = 'env=prod'", [])
        .expect_err("not JSON");
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[test]
fn runs_recorded_before_version_7_upgrade_with_their_skipped_counts_unknown() {
    use crate::index::SkippedCounts;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let old = Index::open_at_version(&path, 6).expect("version 6");
    old.lock()
        .execute_batch(
            "INSERT INTO runs (id, run_id, vault, started_at, finished_at, status, manifest_key)
             VALUES (1, '0000000000000001', 'kv1', 100, 110, 'completed',
                 'manifests/kv1/100-0000000000000001.age');",
        )
        .expect("old run");
    drop(old);

    let index = Index::open(&path).expect("upgrade");
    assert_eq!(
        index.schema_version().expect("version"),
        supported_version()
    );
    assert_eq!(index.newest_skipped(&vault("kv1")).expect("read"), None);

    // A new run records its counts; the newest run that has them is the one reported, and a
    // later run that ended before planning (nothing recorded) does not hide them.
    index.begin_run(&run(2), &vault("kv1"), 200).expect("run");
    let counts = SkippedCounts {
        managed: 4,
        filtered: 2,
        tagged: 1,
    };
    index
        .write(|w| w.record_skipped(&run(2), &counts))
        .expect("record");
    index.begin_run(&run(3), &vault("kv1"), 300).expect("run");
    assert_eq!(
        index.newest_skipped(&vault("kv1")).expect("read"),
        Some((200, counts))
    );
    assert_eq!(index.newest_skipped(&vault("kv2")).expect("read"), None);
    // Negative counts cannot be stored, and an unknown run is an error.
    assert!(index
        .lock()
        .execute("UPDATE runs SET skipped_tagged = -1 WHERE id = 2", [])
        .is_err());
    assert!(index.write(|w| w.record_skipped(&run(9), &counts)).is_err());
}

#[test]
fn captures_recorded_before_version_6_upgrade_with_their_expiry_unknown() {
    use crate::index::{RunStats, RunStatus};
    use crate::model::Validity;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let old = Index::open_at_version(&path, 5).expect("version 5");
    assert_eq!(old.schema_version().expect("version"), 5);
    // What kvkeep at schema version 5 wrote for a committed capture: no period columns yet.
    old.lock()
        .execute_batch(&format!(
            "INSERT INTO runs (id, run_id, vault, started_at, finished_at, status, manifest_key)
             VALUES (1, '0000000000000001', 'kv1', 100, 110, 'completed',
                 'manifests/kv1/100-0000000000000001.age');
             INSERT INTO objects (vault, kind, name, display_name, first_seen, last_seen,
                 current_version, updated)
             VALUES ('kv1', 'secrets', 'old', 'old', 100, 100, 'v1', 99);
             INSERT INTO captures (run, object, blob_key, display_name, captured_at,
                 current_version, updated, plain_bytes, stored_bytes, sha256, payload_mode, tags)
             VALUES (1, 1, 'objects/kv1/secrets/old/100.age', 'old', 100, 'v1', 99, 1, 1,
                 '{}', 'native', '{{}}');
             INSERT INTO run_members (run, object, capture) VALUES (1, 1, 1);",
            "ab".repeat(32)
        ))
        .expect("old capture");
    drop(old);

    let index = Index::open(&path).expect("upgrade");
    assert_eq!(
        index.schema_version().expect("version"),
        supported_version()
    );
    let old_blob = blob("objects/kv1/secrets/old/100.age");
    assert_eq!(
        index.capture_validity(&old_blob).expect("validity"),
        None,
        "a capture from before version 6 has an unknown period, not \"none set\""
    );
    let records = index
        .expiring_objects(&vault("kv1"), i64::MAX)
        .expect("query");
    assert_eq!((records.expiring.len(), records.unknown), (0, 1));

    // The upgraded index records the period of new captures.
    index.begin_run(&run(2), &vault("kv1"), 200).expect("run");
    let validity = Validity {
        not_before: Some(150),
        expires: Some(5_000),
    };
    let new = NewCapture {
        validity: Some(validity),
        ..capture("kv1", ObjectKind::Keys, "new", &["k1"], 201)
    };
    index.record_capture(&run(2), &new).expect("capture");
    index
        .finish_run(
            &run(2),
            RunStatus::Completed,
            &RunStats::default(),
            210,
            Some(&blob("manifests/kv1/200-0000000000000002.age")),
        )
        .expect("finish");
    assert_eq!(
        index.capture_validity(&new.blob).expect("validity"),
        Some(validity)
    );
    let records = index.expiring_objects(&vault("kv1"), 5_000).expect("query");
    assert_eq!(records.expiring.len(), 1);
    assert_eq!(records.expiring[0].name.as_str(), "new");
    assert_eq!(records.unknown, 1, "the old capture is still unknown");
}

#[test]
fn opening_an_up_to_date_index_again_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    drop(Index::open(&path).expect("create"));
    let before = schema_of(&Connection::open(&path).expect("raw"));
    let index = Index::open(&path).expect("reopen");
    assert_eq!(
        index.schema_version().expect("version"),
        supported_version()
    );
    drop(index);
    assert_eq!(schema_of(&Connection::open(&path).expect("raw")), before);
}

#[test]
fn an_index_from_a_newer_kvkeep_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    drop(Index::open(&path).expect("create"));
    let newer = supported_version() + 1;
    Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", newer))
        .expect("bump version");

    let err = Index::open(&path).expect_err("newer schema must be refused");
    assert!(
        matches!(err, IndexError::TooNew { found, supported, .. } if found == newer && supported == supported_version()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("newer kvkeep"), "{message}");
    assert!(message.contains("upgrade kvkeep"), "{message}");
    let raw = Connection::open(&path).expect("raw");
    assert_eq!(pragma_i64(&raw, "user_version"), newer);
}

#[test]
fn another_programs_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.sqlite");
    Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE notes (body TEXT);"))
        .expect("foreign database");

    let err = Index::open(&path).expect_err("must refuse");
    assert!(matches!(err, IndexError::NotAnIndex { .. }), "{err:?}");
    assert!(err.to_string().contains("not a kvkeep index"), "{err}");
}

#[test]
fn a_new_index_is_marked_wal_with_foreign_keys_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let index = Index::open(&path).expect("create");
    {
        let conn = index.lock();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
        assert_eq!(pragma_i64(&conn, "foreign_keys"), 1);
    }
    drop(index);
    let raw = Connection::open(&path).expect("raw");
    assert_eq!(
        pragma_i64(&raw, "application_id"),
        i64::from(APPLICATION_ID)
    );
}

#[test]
fn foreign_keys_are_enforced() {
    let index = Index::open_in_memory().expect("index");
    let conn = index.lock();
    let err = conn
        .execute(
            "INSERT INTO captures (run, object, blob_key, display_name, captured_at,
                 current_version, updated, plain_bytes, stored_bytes, sha256, payload_mode)
             VALUES (42, 43, 'objects/x', 'x', 1, 'v1', 1, 1, 1, ?1, 'native')",
            ["0".repeat(64)],
        )
        .expect_err("a capture of an unknown run must be refused");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

/// The point-in-time query as schema version 3 answered it: per object, the newest capture of a
/// committed run at or before `?2`, unless a committed run saw the object deleted since. Kept
/// here as the reference an upgraded index must agree with.
const SCHEMA_3_CAPTURES_AS_OF: &str = "WITH newest AS (
        SELECT o.id AS object,
            (SELECT c2.id FROM captures AS c2 JOIN runs AS r2 ON r2.id = c2.run
             WHERE c2.object = o.id AND c2.captured_at <= ?2 AND r2.manifest_key IS NOT NULL
             ORDER BY c2.captured_at DESC, c2.id DESC LIMIT 1) AS capture
        FROM objects AS o WHERE o.vault = ?1
    )
    SELECT r.run_id, r.manifest_key IS NOT NULL, o.vault, o.kind, c.display_name, c.blob_key,
        c.captured_at, c.current_version, c.updated, c.plain_bytes, c.stored_bytes, c.sha256,
        c.payload_mode
    FROM newest
    JOIN captures AS c ON c.id = newest.capture
    JOIN objects AS o ON o.id = newest.object
    JOIN runs AS r ON r.id = c.run
    WHERE NOT EXISTS (
        SELECT 1 FROM deletions AS d JOIN runs AS dr ON dr.id = d.run
        WHERE d.object = newest.object AND d.seen_at > c.captured_at AND d.seen_at <= ?2
          AND dr.manifest_key IS NOT NULL)
    ORDER BY o.kind, o.name";

#[test]
fn a_schema_3_index_upgrades_to_restore_points_that_restore_the_same_sets() {
    use super::RunScript;
    use crate::index::RunStatus;
    use crate::model::ObjectKind::{Certificates, Keys, Secrets};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let index = Index::open(&path).expect("index");
    // Captures, unchanged sightings, deletions, a failure (run 3 does not mention api), a run
    // that never committed, a re-created object and a neighbour vault.
    let runs = [
        RunScript::committed(1, "kv-app", 100)
            .capture(Keys, "signing", &["k1"])
            .capture(Secrets, "api", &["a1"])
            .capture(Secrets, "gone", &["g1"])
            .capture(Secrets, "Phoenix", &["p1"]),
        RunScript::committed(2, "kv-app", 200)
            .unchanged(Keys, "signing", 100)
            .unchanged(Secrets, "api", 100)
            .capture(Certificates, "tls", &["t1"])
            .delete(Secrets, "gone")
            .delete(Secrets, "phoenix"),
        RunScript {
            manifest: false,
            status: RunStatus::Interrupted,
            ..RunScript::committed(3, "kv-app", 300)
                .capture(Keys, "signing", &["k1", "k2"])
                .delete(Certificates, "tls")
        },
        RunScript {
            status: RunStatus::PartiallyFailed,
            ..RunScript::committed(4, "kv-app", 400)
                .unchanged(Keys, "signing", 100)
                .unchanged(Certificates, "tls", 200)
                .capture(Secrets, "phoenix", &["p9"])
        },
        RunScript::committed(5, "kv-other", 150).capture(Keys, "signing", &["x1"]),
    ];
    for script in runs {
        script.play(&index);
    }
    drop(index);
    // Schema version 3 stored everything above except what each run holds, what prune
    // forgot, the captures' validity periods, what each run left out, the sizes in the
    // per-object capture index and the runs other instances left unfinished.
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(
        "CREATE INDEX captures_by_object_time ON captures (object, captured_at);
         DROP INDEX captures_by_object_time_sizes;
         ALTER TABLE runs DROP COLUMN skipped_managed;
         ALTER TABLE runs DROP COLUMN skipped_filtered;
         ALTER TABLE runs DROP COLUMN skipped_tagged;
         ALTER TABLE captures DROP COLUMN validity_known;
         ALTER TABLE captures DROP COLUMN not_before;
         ALTER TABLE captures DROP COLUMN expires_at;
         DROP INDEX runs_forgotten_manifests;
         ALTER TABLE runs DROP COLUMN forgotten_at;
         ALTER TABLE runs DROP COLUMN forgotten_manifest_key;
         ALTER TABLE runs DROP COLUMN swept_at;
         ALTER TABLE runs DROP COLUMN abandoned_by;
         DROP TABLE run_members; PRAGMA user_version = 3;",
    )
    .expect("back to version 3");
    let times = [99, 100, 102, 150, 200, 250, 300, 350, 400, 404, 405, 1000];
    let before: Vec<_> = times
        .iter()
        .map(|at| {
            let mut stmt = conn.prepare(SCHEMA_3_CAPTURES_AS_OF).expect("old query");
            let rows = stmt
                .query_map(
                    rusqlite::params!["kv-app", at],
                    super::super::read::capture_from_row,
                )
                .expect("old query runs");
            rows.collect::<Result<Vec<_>, _>>().expect("old rows")
        })
        .collect();
    drop(conn);

    let index = Index::open(&path).expect("upgrade");
    assert_eq!(
        index.schema_version().expect("version"),
        supported_version()
    );
    for (at, old) in times.iter().zip(&before) {
        assert_eq!(
            &index
                .captures_as_of(&vault("kv-app"), *at)
                .expect("new query"),
            old,
            "restore set at {at}"
        );
    }
    // Spot check what the backfill derived: run 4 holds api, which it never mentioned.
    let held: Vec<String> = index
        .restore_point_contents(&run(4))
        .expect("contents")
        .into_iter()
        .map(|c| format!("{}/{}@{}", c.kind, c.name, c.captured_at))
        .collect();
    assert_eq!(
        held,
        [
            "certificates/tls@200",
            "keys/signing@100",
            "secrets/api@100",
            "secrets/phoenix@400"
        ]
    );
    // And new runs record what they hold on top of the backfill.
    RunScript::committed(6, "kv-app", 500)
        .capture(Secrets, "api", &["a1", "a2"])
        .play(&index);
    assert_eq!(
        index
            .restore_point_contents(&run(6))
            .expect("contents")
            .len(),
        4
    );
}
