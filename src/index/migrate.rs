//! Schema migrations: the SQL files in `migrations/`, embedded in the binary and applied in order
//! when the index is opened.
//!
//! The schema version is SQLite's `PRAGMA user_version` (0 for a new file, N after migration N),
//! so it lives in the file header and changes atomically with the migration's transaction: all
//! pending migrations run in one `BEGIN IMMEDIATE` transaction, and a failure leaves the file
//! exactly as it was. Migrations are append-only: a released file is never edited, a change is a
//! new file. A file whose version is newer than the migrations this build carries was written by
//! a newer kvkeep and is refused rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

use super::error::{classify, IndexError};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The schema version the file produces (1-based, consecutive).
    pub version: i64,
    /// The file name in `migrations/`, for messages.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial.sql",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_verifications.sql",
        sql: include_str!("../../migrations/0002_verifications.sql"),
    },
    Migration {
        version: 3,
        name: "0003_capture_tags.sql",
        sql: include_str!("../../migrations/0003_capture_tags.sql"),
    },
    Migration {
        version: 4,
        name: "0004_run_members.sql",
        sql: include_str!("../../migrations/0004_run_members.sql"),
    },
    Migration {
        version: 5,
        name: "0005_prune.sql",
        sql: include_str!("../../migrations/0005_prune.sql"),
    },
    Migration {
        version: 6,
        name: "0006_capture_expiry.sql",
        sql: include_str!("../../migrations/0006_capture_expiry.sql"),
    },
    Migration {
        version: 7,
        name: "0007_run_skipped.sql",
        sql: include_str!("../../migrations/0007_run_skipped.sql"),
    },
    Migration {
        version: 8,
        name: "0008_capture_sizes_index.sql",
        sql: include_str!("../../migrations/0008_capture_sizes_index.sql"),
    },
    Migration {
        version: 9,
        name: "0009_run_abandoned_by.sql",
        sql: include_str!("../../migrations/0009_run_abandoned_by.sql"),
    },
];

/// `PRAGMA application_id` of a kvkeep index: ASCII "kvkp". It lets kvkeep refuse to adopt some
/// other program's SQLite database that happens to sit at the configured path.
pub(crate) const APPLICATION_ID: i32 = 0x6b76_6b70;

/// The schema version this build writes and understands.
pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What a SQLite database is, as far as kvkeep is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing in it: no schema, no version, no application id. Safe to make an index of.
    Empty,
    /// Marked with kvkeep's application id.
    Index,
    /// A kvkeep index whose application id is missing (written by a process that died before
    /// marking it, or cleared by a tool): recognised by its schema version and tables.
    Unmarked,
    /// Some other program's database.
    Foreign {
        /// Its `PRAGMA application_id`.
        application_id: i32,
    },
}

/// The tables every kvkeep schema version has had since version 1.
const CORE_TABLES: [&str; 4] = ["runs", "objects", "captures", "capture_versions"];

/// Reads what `conn`'s database is, without writing anything (it works on a read-only
/// connection).
pub(crate) fn identify(conn: &Connection, path: &str) -> Result<Kind, IndexError> {
    let context = "checking what the file is";
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| classify(path, context, e))?;
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| classify(path, context, e))?;
    if application_id == APPLICATION_ID {
        return Ok(Kind::Index);
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| classify(path, context, e))?;
    let schema_objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| classify(path, context, e))?;
    Ok(if application_id != 0 {
        Kind::Foreign { application_id }
    } else if version == 0 && schema_objects == 0 {
        Kind::Empty
    } else if (1..=supported_version()).contains(&version)
        && CORE_TABLES.iter().all(|t| tables.iter().any(|n| n == t))
    {
        Kind::Unmarked
    } else {
        Kind::Foreign { application_id }
    })
}

/// Checks that `conn` is a kvkeep index (or a new, empty database) no newer than this build,
/// then applies the first `target` migrations that it lacks. An index missing its application
/// id gets it in the same transaction.
pub(crate) fn migrate(conn: &mut Connection, path: &str, target: usize) -> Result<(), IndexError> {
    let context = "checking the schema version";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| classify(path, context, e))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| classify(path, context, e))?;
    let kind = identify(&tx, path)?;
    if let Kind::Foreign { application_id } = kind {
        return Err(IndexError::NotAnIndex {
            path: path.to_string(),
            found: application_id,
        });
    }
    if found > supported_version() {
        return Err(IndexError::TooNew {
            path: path.to_string(),
            found,
            supported: supported_version(),
        });
    }

    let pending = MIGRATIONS.iter().take(target).filter(|m| m.version > found);
    for migration in pending {
        let failed = |source| IndexError::Migration {
            path: path.to_string(),
            from: found,
            version: migration.version,
            name: migration.name,
            source,
        };
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
    }
    let mark = match kind {
        Kind::Empty => target > 0,
        Kind::Unmarked => true,
        Kind::Index | Kind::Foreign { .. } => false,
    };
    if mark {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| classify(path, "marking the index", e))?;
    }
    tx.commit()
        .map_err(|e| classify(path, "committing the schema upgrade", e))
}
