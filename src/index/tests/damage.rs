//! Damaged and unusable index files: each must end in a clear `IndexError` naming the file and
//! the remedy, never in a panic.

use std::fs;
use std::path::Path;

use rusqlite::Connection;

use super::super::{Index, IndexError};
use super::{vault, RunScript};
use crate::model::ObjectKind::Secrets;

/// Opens `path` and reads everything; returns the first error.
fn open_and_read(path: &Path) -> Result<(), IndexError> {
    let index = Index::open(path)?;
    index.list_runs(None)?;
    index.list_objects(None)?;
    index.captures_as_of(&vault("kv-prod"), i64::MAX)?;
    Ok(())
}

fn assert_corrupt(err: IndexError, path: &Path) {
    assert!(matches!(err, IndexError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("kvkeep index rebuild"), "{message}");
}

#[test]
fn a_file_of_garbage_bytes_is_reported_as_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "random.sqlite",
            (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("text.sqlite", b"this is not a database\n".repeat(40)),
        ("short.sqlite", b"SQLite format 3\0garbage".to_vec()),
    ];
    for (file, bytes) in cases {
        let path = dir.path().join(file);
        fs::write(&path, &bytes).expect("write garbage");
        let err = open_and_read(&path).expect_err("garbage must not open");
        assert_corrupt(err, &path);
        assert_eq!(
            fs::read(&path).expect("read back"),
            bytes,
            "{file} modified"
        );
    }
}

#[test]
fn an_index_with_overwritten_pages_is_reported_as_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    {
        let index = Index::open(&path).expect("create");
        for n in 0..20 {
            RunScript::committed(n + 1, "kv-prod", 100 * n as i64)
                .capture(Secrets, &format!("secret-{n}"), &["v1", "v2"])
                .play(&index);
        }
    }
    // Closing the last connection checkpoints the WAL into the main file; keep its header page
    // and overwrite the rest.
    let mut bytes = fs::read(&path).expect("read index");
    assert!(bytes.len() > 8192, "index too small to damage");
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i % 253) as u8;
    }
    fs::write(&path, &bytes).expect("damage");
    let err = open_and_read(&path).expect_err("damage must be noticed");
    assert_corrupt(err, &path);
}

#[test]
fn a_tampered_value_is_reported_with_the_rebuild_remedy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    drop(Index::open(&path).map(|index| RunScript::committed(1, "kv-prod", 100).play(&index)));
    Connection::open(&path)
        .and_then(|c| c.execute("UPDATE runs SET vault = 'not a vault!'", []))
        .expect("tamper");
    let err = Index::open(&path)
        .and_then(|index| index.list_runs(None))
        .expect_err("tampered value");
    assert!(matches!(err, IndexError::BadValue { .. }), "{err:?}");
    assert!(err.to_string().contains("not a vault!"), "{err}");
    assert!(err.to_string().contains("kvkeep index rebuild"), "{err}");
}

#[test]
fn a_missing_directory_is_reported_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("index.sqlite");
    let err = Index::open(&path).expect_err("cannot create");
    assert!(
        matches!(err, IndexError::Open { .. } | IndexError::Create { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}
