//! Files at the index path that are not a kvkeep index — another program's SQLite database, an
//! empty file, a text file — are refused with a clear error and left exactly as they were: not
//! converted to WAL, no `-wal`, `-shm` or `-journal` file beside them. A kvkeep index that
//! lacks the application id still opens, recognised by its tables.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::super::migrate::APPLICATION_ID;
use super::super::{Index, IndexError};
use super::{run, vault};

/// `path` with `suffix` appended (`index.sqlite-wal`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Refuses `path`, then checks that it is byte-for-byte what it was and that SQLite left no
/// file next to it. Returns the error.
fn refused_untouched(path: &Path) -> IndexError {
    let before = fs::read(path).expect("read before");
    let err = Index::open(path).expect_err("must be refused");
    // Not assert_eq: a page-sized diff of bytes helps nobody.
    assert!(
        fs::read(path).expect("read after") == before,
        "{} was modified by the refused open ({err})",
        path.display()
    );
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(
            !beside(path, suffix).exists(),
            "{suffix} file left beside {} ({err})",
            path.display()
        );
    }
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "the error names the file: {message}"
    );
    err
}

#[test]
fn another_programs_database_is_refused_and_left_byte_for_byte_unchanged() {
    for user_version in [0, 5] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.sqlite");
        {
            let conn = Connection::open(&path).expect("foreign database");
            conn.execute_batch(
                "PRAGMA journal_mode = DELETE;
                 CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
                 INSERT INTO notes (body) VALUES ('keep me');",
            )
            .expect("foreign schema");
            conn.pragma_update(None, "user_version", user_version)
                .expect("user_version");
        }
        let err = refused_untouched(&path);
        assert!(matches!(err, IndexError::NotAnIndex { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("not a kvkeep index"),
            "user_version {user_version}: {message}"
        );
        let conn = Connection::open(&path).expect("still a database");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal mode");
        assert_eq!(
            mode, "delete",
            "user_version {user_version}: converted to {mode}"
        );
    }
}

#[test]
fn an_empty_file_is_refused_and_left_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    fs::write(&path, b"").expect("touch");
    let err = refused_untouched(&path);
    assert!(matches!(err, IndexError::EmptyFile { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("empty"), "{message}");
    assert!(
        message.contains("remove it"),
        "the error says what to do: {message}"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    fs::write(&path, b"# my notes, not a database\n".repeat(200)).expect("write");
    let err = refused_untouched(&path);
    assert!(matches!(err, IndexError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
}

#[test]
fn a_kvkeep_index_without_its_application_id_still_opens_and_gets_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let index = Index::open(&path).expect("create");
    index
        .begin_run(&run(1), &vault("kv-old"), 100)
        .expect("run");
    drop(index);
    // As a file whose application id was never written (or was lost) would look.
    Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "application_id", 0))
        .expect("clear the application id");

    let index = Index::open(&path).expect("recognised by its tables");
    assert_eq!(index.list_runs(None).expect("runs").len(), 1);
    drop(index);
    let app_id: i32 = Connection::open(&path)
        .and_then(|c| c.pragma_query_value(None, "application_id", |r| r.get(0)))
        .expect("application id");
    assert_eq!(app_id, APPLICATION_ID);
}
