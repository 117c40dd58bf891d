//! The index file before SQLite writes to it: recognising what is at `[index].path` without
//! changing it, and creating a new index privately and atomically.
//!
//! Order matters. Opening a connection read-write and setting `journal_mode = wal` rewrites
//! the file header and creates `-wal`/`-shm` files; doing that to another program's database
//! converts it. So an existing file is first looked at through a *read-only* connection
//! (`application_id`, `user_version`, the table names), and only a file recognised as a kvkeep
//! index, or a SQLite database with nothing in it, is opened for writing. A 0-byte file is
//! refused: SQLite would treat it as a new database and kvkeep would adopt a file whose origin
//! (and mode) it does not know.
//!
//! A new index is built under a temporary name beside the target — created 0600 before SQLite
//! opens it, because SQLite gives its `-wal` and `-shm` files the mode of the database file —
//! then closed (which checkpoints the WAL) and hard-linked to the target name, which fails if
//! another process created the index meanwhile. A crash leaves at most a temporary file, never
//! a half-initialised index at the configured path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::error::{classify, IndexError};
use super::migrate::{self, Kind};
use super::BUSY_TIMEOUT;
use crate::fsutil;

/// Checks what is at `path` without modifying it. `Ok(false)`: nothing is there yet;
/// `Ok(true)`: a kvkeep index (or an empty SQLite database) that may be opened for writing.
pub(super) fn check_existing(path: &Path, display: &str) -> Result<bool, IndexError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(IndexError::Create {
                path: display.to_string(),
                source,
            })
        }
    };
    if meta.is_dir() {
        return Err(IndexError::InvalidInput(format!(
            "index path {display} is a directory: point [index].path at a file (kvkeep creates it)"
        )));
    }
    if meta.len() == 0 {
        return Err(IndexError::EmptyFile {
            path: display.to_string(),
        });
    }
    // Read-only: a foreign database is looked at, never converted. No URI parsing, so an odd
    // file name cannot smuggle in options.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| IndexError::Open {
        path: display.to_string(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(display, "checking the index file", e))?;
    match migrate::identify(&conn, display)? {
        Kind::Foreign { application_id } => Err(IndexError::NotAnIndex {
            path: display.to_string(),
            found: application_id,
        }),
        Kind::Empty | Kind::Index | Kind::Unmarked => Ok(true),
    }
}

/// Creates a new index at `path` with the first `target` migrations applied, unless another
/// process created one first (then it is left to the caller to open).
pub(super) fn create(path: &Path, display: &str, target: usize) -> Result<(), IndexError> {
    let tmp = temp_beside(path);
    let result = build(&tmp, display, target).and_then(|()| {
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            // Another kvkeep process created the index meanwhile: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // File systems without hard links: a rename, after checking nothing appeared.
            Err(_) if !path.exists() => {
                fs::rename(&tmp, path).map_err(|source| IndexError::Create {
                    path: display.to_string(),
                    source,
                })?
            }
            Err(source) => {
                return Err(IndexError::Create {
                    path: display.to_string(),
                    source,
                })
            }
        }
        fsutil::sync_dir(fsutil::parent_or_dot(path)).map_err(|source| IndexError::Create {
            path: display.to_string(),
            source,
        })
    });
    remove_db_files(&tmp);
    result
}

/// Builds a complete, closed index at the new file `tmp`.
fn build(tmp: &Path, display: &str, target: usize) -> Result<(), IndexError> {
    let created = |source| IndexError::Create {
        path: display.to_string(),
        source,
    };
    drop(fsutil::create_private_file(tmp).map_err(created)?);
    let conn = Connection::open_with_flags(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| IndexError::Open {
        path: display.to_string(),
        source,
    })?;
    let conn = super::Index::prepare(conn, display.to_string(), target)?.into_connection();
    // Closing checkpoints the WAL into the file, so the hard link carries everything.
    conn.close()
        .map_err(|(_, e)| classify(display, "closing the new index", e))
}

/// `index.sqlite` → `index.sqlite.new-{random}`.
fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".new-{:016x}", rand::random::<u64>()));
    PathBuf::from(name)
}

/// The files SQLite keeps beside a database: its write-ahead log, shared memory and rollback
/// journal (`index.sqlite-wal`, ...).
pub fn side_files(path: &Path) -> [PathBuf; 3] {
    ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Removes a database and any side files SQLite left beside it.
pub fn remove_db_files(path: &Path) {
    // Absent is the normal case for the side files.
    let _ = fs::remove_file(path);
    for side in side_files(path) {
        let _ = fs::remove_file(side);
    }
}
