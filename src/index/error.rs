//! `IndexError`: everything that can go wrong with the index, in words an operator can act on.
//!
//! Rules for this file:
//! - Every variant names the index file or the run/object concerned and says what to do.
//! - SQLite's own errors are translated here, in one place ([`classify`]): a damaged file becomes
//!   [`IndexError::Corrupt`] whichever statement stumbled on it, so callers never match on
//!   rusqlite codes.
//! - Because the index is a cache of the store (DESIGN.md §4), the remedy for damage is always
//!   `kvkeep index rebuild`, never hand repair.

use rusqlite::ErrorCode;

use crate::model::{ObjectKind, ObjectName, RunId, VaultName};

/// An index operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file could not be opened or created at all (missing directory, permissions).
    #[error("cannot open index {path}: {source}; check that the directory exists and is writable by kvkeep, or change [index].path")]
    Open {
        /// The index file.
        path: String,
        /// SQLite's reason.
        source: rusqlite::Error,
    },

    /// The index file could not be created, or its path not examined.
    #[error("cannot create index {path}: {source}; check that the directory exists and is writable by kvkeep, or change [index].path")]
    Create {
        /// The index file.
        path: String,
        /// The file system's reason.
        source: std::io::Error,
    },

    /// A 0-byte file at the index path: kvkeep does not adopt a file it did not create.
    #[error("index {path} is an empty file, not a kvkeep index; kvkeep left it as it is: remove it and kvkeep creates the index itself (mode 0600), or change [index].path")]
    EmptyFile {
        /// The file.
        path: String,
    },

    /// The file is not a SQLite database, or SQLite found it damaged.
    #[error("index {path} is damaged or is not a SQLite database ({source}); move it aside and run `kvkeep index rebuild` to recreate it from the store")]
    Corrupt {
        /// The index file.
        path: String,
        /// SQLite's reason.
        source: rusqlite::Error,
    },

    /// A valid SQLite database that some other program owns.
    #[error("{path} is a SQLite database but not a kvkeep index (application id {found:#010x}); kvkeep left it unchanged: point [index].path at a kvkeep index or at a path where no file exists yet")]
    NotAnIndex {
        /// The file.
        path: String,
        /// Its `PRAGMA application_id`.
        found: i32,
    },

    /// The schema is newer than this build understands: opening it could lose data.
    #[error("index {path} has schema version {found}, written by a newer kvkeep; this kvkeep understands versions up to {supported}: upgrade kvkeep, or point [index].path at a new file and run `kvkeep index rebuild`")]
    TooNew {
        /// The index file.
        path: String,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// A migration failed; its transaction was rolled back, so the file is as it was.
    #[error("upgrading index {path} to schema version {version} ({name}) failed: {source}; the index is unchanged at version {from}: free disk space or fix permissions and retry, or run `kvkeep index rebuild` into a new file")]
    Migration {
        /// The index file.
        path: String,
        /// The version the file was at before the attempt.
        from: i64,
        /// The migration that failed.
        version: i64,
        /// Its file name.
        name: &'static str,
        /// SQLite's reason.
        source: rusqlite::Error,
    },

    /// Another process holds the index longer than the busy timeout.
    #[error("index {path} is locked by another process (while {context}); make sure only one kvkeep daemon uses this index file")]
    Busy {
        /// The index file.
        path: String,
        /// What kvkeep was doing.
        context: &'static str,
    },

    /// A run id that `begin_run` never recorded.
    #[error("run {run} is not in the index; begin the run before recording into it")]
    UnknownRun {
        /// The run.
        run: RunId,
    },

    /// A run that already has its final status: its manifest (if any) lists exactly what it
    /// recorded, so nothing may be added afterwards.
    #[error("run {run} of vault {vault} has already finished; record into a new run")]
    RunFinished {
        /// The run.
        run: RunId,
        /// Its vault.
        vault: VaultName,
    },

    /// A run id recorded twice.
    #[error("run {run} is already in the index; run ids must be unique, generate a new one")]
    DuplicateRun {
        /// The run.
        run: RunId,
    },

    /// An object the index has never seen (for example a deletion of an unknown object).
    #[error("{kind}/{name} of vault {vault} is not in the index; it must be captured or seen before it can be recorded as deleted")]
    UnknownObject {
        /// Its vault.
        vault: VaultName,
        /// Its kind.
        kind: ObjectKind,
        /// Its name.
        name: ObjectName,
    },

    /// A caller passed a value the index cannot store (a programming error upstream).
    #[error("invalid value for the index: {0}")]
    InvalidInput(String),

    /// A stored value does not parse: the file was edited or damaged.
    #[error("index {path} holds an invalid value ({detail}); the file was modified outside kvkeep or is damaged: run `kvkeep index rebuild`")]
    BadValue {
        /// The index file.
        path: String,
        /// Which value and why.
        detail: String,
    },

    /// Any other SQLite failure (disk full, I/O error, constraint violation).
    #[error("index {path}: {context} failed: {source}")]
    Sqlite {
        /// The index file.
        path: String,
        /// What kvkeep was doing.
        context: &'static str,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
}

/// Translates a rusqlite error met while doing `context` on the index at `path`.
pub(crate) fn classify(path: &str, context: &'static str, source: rusqlite::Error) -> IndexError {
    let path = path.to_string();
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            return IndexError::Corrupt { path, source }
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            return IndexError::Busy { path, context }
        }
        _ => {}
    }
    match source {
        rusqlite::Error::FromSqlConversionFailure(column, _, reason) => IndexError::BadValue {
            path,
            detail: format!("column {column} while {context}: {reason}"),
        },
        rusqlite::Error::InvalidColumnType(column, name, ty) => IndexError::BadValue {
            path,
            detail: format!("column {column} ({name}) has type {ty} while {context}"),
        },
        rusqlite::Error::IntegralValueOutOfRange(column, value) => IndexError::BadValue {
            path,
            detail: format!("column {column} holds out-of-range {value} while {context}"),
        },
        source => IndexError::Sqlite {
            path,
            context,
            source,
        },
    }
}
