//! The index: a SQLite catalog of runs, objects, captures (one per backup blob) and the versions
//! each blob holds, so operators can restore a vault as it was at any point in time, list restore
//! points and report retention and RPO without reading the store (DESIGN.md §3–§7).
//!
//! The index is a *cache*. The store's manifests are the truth; `kvkeep index rebuild` recreates
//! the index from them, which is why a damaged file is reported with that remedy rather than
//! repaired, and why the file is opened with `synchronous = NORMAL` (a power cut may lose the
//! last transactions, never consistency).
//!
//! Commit rule: a run counts only once its manifest is written ([`RunRecord::is_committed`]).
//! Until then its captures are invisible to restore ([`Index::captures_as_of`]), retention and
//! change detection ([`Index::committed_objects`]); `partially_failed`, `failed` and `interrupted`
//! runs that wrote a manifest do count. A committed run is a *restore point* and holds one
//! capture per object (schema version 4), whichever run wrote it: a capture counts while a
//! restore point holds it, not only while the run that wrote it is committed (`catalog.rs`).
//!
//! Concurrency: [`Index`] owns one connection behind a `std::sync::Mutex`. Every method is
//! blocking and short; async callers run them in `tokio::task::spawn_blocking` (or call them
//! between awaits) and never hold the index across an `.await`. A std mutex, not a tokio one,
//! because the critical section never awaits (see mini-redis `db.rs`). The `busy_timeout` covers
//! the other case: another process (say `kvkeep report` next to the daemon) holding the file.

mod catalog;
mod error;
pub(crate) mod file;
pub mod lock;
mod migrate;
mod read;
mod report;
mod sync;
mod timeline;
mod types;
mod write;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

pub use catalog::{
    DeletedObjectRecord, ForgottenManifest, HeldSpace, RestorePointRecord, VaultCatalogSummary,
};
pub use error::IndexError;
pub use lock::{lock_index, lock_vault, IndexLock, LockError};
pub use migrate::supported_version;
pub use report::{
    ExpiringObjectRecord, ExpiryRecords, FailureStreak, KindStorageRecord, UncoveredObjectRecord,
    VersionCountRecord,
};
pub use sync::{KnownRun, KnownRunState};
pub use timeline::{ObjectPointsPage, ObjectPointsRecord};
pub use types::{
    CaptureRecord, CaptureTags, CapturedVersion, CommittedObject, LastCapture, NewCapture,
    ObjectErrorRecord, ObjectRecord, ObjectState, RunRecord, RunStats, RunStatus, SkippedCounts,
    VerificationDepth, VerificationRecord, VersionRecord,
};
pub use write::Writer;

use error::classify;

/// How long a statement waits for another process's lock before failing with
/// [`IndexError::Busy`]. Long enough for a report to finish reading, short enough that a stuck
/// process is noticed.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the index file SQLite may map into memory for reads (see `prepare`): 1 GiB, the
/// whole file in most deployments (a thousand vaults with a million captures take about
/// 460 MiB); beyond it, the rest is read as before.
const MMAP_SIZE: i64 = 1 << 30;

/// The open index.
#[derive(Debug)]
pub struct Index {
    conn: Mutex<Connection>,
    path: String,
}

impl Index {
    /// Opens the index at `path`, creating it (mode 0600) if missing and upgrading its schema if
    /// older.
    ///
    /// Refuses, without changing it, a file that is not a kvkeep index (another program's
    /// database, an empty file, anything else); refuses a damaged file or one written by a newer
    /// kvkeep.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IndexError> {
        Self::open_at_version(path.as_ref(), migrate::MIGRATIONS.len())
    }

    /// A fresh index in memory: for tests and dry runs. Nothing survives the value.
    pub fn open_in_memory() -> Result<Self, IndexError> {
        let path = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|source| IndexError::Open {
            path: path.clone(),
            source,
        })?;
        Self::prepare(conn, path, migrate::MIGRATIONS.len())
    }

    /// Opens `path` and applies only the first `target` migrations: tests use it to build a file
    /// as an older kvkeep left it.
    ///
    /// What is at `path` is checked read-only before anything is written (see `file.rs`): a
    /// file that is not a kvkeep index is refused exactly as it was found. A missing file is
    /// created with mode 0600.
    pub(crate) fn open_at_version(path: &Path, target: usize) -> Result<Self, IndexError> {
        let display = path.display().to_string();
        if !file::check_existing(path, &display)? {
            file::create(path, &display, target)?;
        }
        // No CREATE flag: the file exists now, and if it vanished meanwhile SQLite must not
        // quietly make a new one with its default mode.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| IndexError::Open {
            path: display.clone(),
            source,
        })?;
        if let Some(mode) = crate::fsutil::loose_mode(path) {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:04o}"),
                "the index can be read by group or others; it lists every vault, object and version: restrict it with chmod 600"
            );
        }
        Self::prepare(conn, display, target)
    }

    /// Configures a connection to a file known to be a kvkeep index (or new), then migrates it.
    fn prepare(mut conn: Connection, path: String, target: usize) -> Result<Self, IndexError> {
        let setup = |e| classify(&path, "configuring the connection", e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(setup)?;
        // WAL lets readers (reports, the CLI) run while the daemon writes. Only ever set on a
        // file already recognised as an index: the switch rewrites the file header.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(setup)?;
        if mode != "wal" && mode != "memory" {
            return Err(IndexError::InvalidInput(format!(
                "index {path} cannot use write-ahead logging (journal mode stays {mode:?}); put the index on a local file system"
            )));
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(setup)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(setup)?;
        // Reports and retention plans read much of the file; through a memory map they read
        // the OS's page cache directly instead of copying each page into SQLite's own small
        // cache (2 MiB by default), several times faster on a large index. File-backed pages
        // cost no private memory: the OS drops them under pressure. The answer is the size
        // granted (0 where SQLite cannot map; none for an in-memory index), which changes
        // nothing but speed.
        let _: Option<i64> = conn
            .pragma_update_and_check(None, "mmap_size", MMAP_SIZE, |r| r.get(0))
            .optional()
            .map_err(setup)?;
        migrate::migrate(&mut conn, &path, target)?;
        Ok(Index {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The connection, for closing it explicitly.
    fn into_connection(self) -> Connection {
        self.conn
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The file this index lives in (`:memory:` for an in-memory index), for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, IndexError> {
        self.read("reading the schema version", |conn| {
            conn.pragma_query_value(None, "user_version", |r| r.get(0))
        })
    }

    /// Runs `f` in one write transaction: everything it records commits together, or nothing
    /// does if it returns an error. Use it to batch many records (a rebuild, a bulk import); the
    /// single-record methods on [`Index`] each run their own transaction.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock up front: a deferred transaction that later upgrades
        // from read to write can fail with SQLITE_BUSY without waiting for the busy timeout.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify(&self.path, "starting a write", e))?;
        let mut writer = Writer::new(tx, &self.path);
        let out = f(&mut writer)?;
        writer.commit()?;
        Ok(out)
    }

    /// Runs a read-only closure on the connection, translating its errors.
    fn read<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, IndexError> {
        let conn = self.lock();
        f(&conn).map_err(|e| classify(&self.path, context, e))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the database half-written: the open
        // transaction is rolled back when it is dropped. So a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
