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
