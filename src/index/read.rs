//! Queries: what change detection compares against, the point-in-time set restore needs, and the
//! listings behind `kvkeep runs/objects/versions` and the retention reports.
//!
//! Every query that feeds restore, retention or change detection filters on committed runs
//! (`manifest_key IS NOT NULL`): a run without a manifest may have written blobs, but nothing
//! vouches for them (DESIGN.md §4).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::{params, OptionalExtension, Row};

use super::error::IndexError;
use super::types::{
    CaptureRecord, CaptureTags, CapturedVersion, CommittedObject, LastCapture, ObjectErrorRecord,
    ObjectRecord, RunRecord, RunStats, VerificationDepth, VerificationRecord, VersionRecord,
};
use super::Index;
use crate::model::{BlobKey, ObjectKind, ObjectName, RunId, Validity, VaultName};

/// The columns [`capture_from_row`] reads, in its order; `c`, `o` and `r` are captures, objects
/// and runs (`r` the run that wrote the capture). A capture counts ("committed") when its
/// writer is committed or when a committed run holds it: the second keeps a blob usable once
/// the run that wrote it has been forgotten.
pub(super) const CAPTURE_COLUMNS: &str = "r.run_id,
    (r.manifest_key IS NOT NULL OR EXISTS (
        SELECT 1 FROM run_members AS hm JOIN runs AS hr ON hr.id = hm.run
        WHERE hm.capture = c.id AND hr.manifest_key IS NOT NULL)),
    o.vault, o.kind, c.display_name, c.blob_key, c.captured_at, c.current_version, c.updated,
    c.plain_bytes, c.stored_bytes, c.sha256, c.payload_mode";

/// "Capture `c2` is held by a committed run": how change detection and version listings tell
/// usable captures, whether or not the run that wrote one is still committed.
pub(super) const HELD_C2: &str =
    "EXISTS (SELECT 1 FROM run_members AS m2 JOIN runs AS r2 ON r2.id = m2.run
    WHERE m2.capture = c2.id AND r2.manifest_key IS NOT NULL)";

/// The point-in-time query: the restore point for time `?2` is the newest committed run of
/// vault `?1` that started at or before it (one seek on `runs_by_vault_started`), and the
/// restore set is what that run holds (a range of the `run_members` key), whichever runs wrote
/// the blobs. Sorted by kind and name, the order restore plans are printed in.
pub(super) fn captures_as_of_sql() -> String {
    format!(
        "WITH point AS (
            SELECT id FROM runs
            WHERE vault = ?1 AND started_at <= ?2 AND manifest_key IS NOT NULL
            ORDER BY started_at DESC, id DESC LIMIT 1
        )
        SELECT {CAPTURE_COLUMNS}
        FROM point
        JOIN run_members AS m ON m.run = point.id
        JOIN captures AS c ON c.id = m.capture
        JOIN objects AS o ON o.id = m.object
        JOIN runs AS r ON r.id = c.run
        ORDER BY o.kind, o.name"
    )
}

impl Index {
    /// The restore set of `vault` at time `at`: what the restore point for `at` holds, the
    /// newest committed run that started at or before `at` (a time inside a run gives that
    /// run's whole restore point). Each object it captured, saw unchanged or carried over from
    /// the previous point, with the capture that holds it; objects it saw deleted, or that
    /// were first captured later, are not in it. Empty before the first restore point. Sorted
    /// by kind, then name.
    pub fn captures_as_of(
        &self,
        vault: &VaultName,
        at: i64,
    ) -> Result<Vec<CaptureRecord>, IndexError> {
        let sql = captures_as_of_sql();
        self.read("computing a point-in-time restore set", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![vault.as_str(), at], capture_from_row)?;
            rows.collect()
        })
    }

    /// What change detection knows of every object of `vault`, in one query (planning reads the
    /// index once per vault, not once per listed object): the newest committed capture of each
    /// and whether a committed run saw it gone since. Deletions seen by runs that never wrote a
    /// manifest do not count: the next committed run must see them again and record them, or a
    /// restore as of now and a rebuild would bring the object back.
    pub fn committed_objects(&self, vault: &VaultName) -> Result<Vec<CommittedObject>, IndexError> {
        let sql = format!(
            "WITH newest AS (
                    SELECT o.id AS object,
                        (SELECT c2.id FROM captures AS c2
                         WHERE c2.object = o.id AND {HELD_C2}
                         ORDER BY c2.captured_at DESC, c2.id DESC LIMIT 1) AS capture
                    FROM objects AS o WHERE o.vault = ?1
                 )
                 SELECT o.kind, o.display_name, o.last_deep_scan, c.current_version, c.updated,
                     c.captured_at, c.blob_key,
                     EXISTS (SELECT 1 FROM deletions AS d JOIN runs AS dr ON dr.id = d.run
                         WHERE d.object = o.id
                           AND (dr.manifest_key IS NOT NULL OR dr.forgotten_at IS NOT NULL)
                           AND (c.id IS NULL OR d.seen_at > c.captured_at))
                 FROM newest
                 JOIN objects AS o ON o.id = newest.object
                 LEFT JOIN captures AS c ON c.id = newest.capture
                 ORDER BY o.kind, o.name"
        );
        self.read("reading the committed state of a vault's objects", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([vault.as_str()], |r| {
                let blob: Option<String> = r.get(6)?;
                let last = match blob {
                    None => None,
                    Some(blob) => Some(LastCapture {
                        current_version: parsed(r, 3)?,
                        updated: r.get(4)?,
                        captured_at: r.get(5)?,
                        blob: parse_text(6, &blob)?,
                        last_deep_scan: r.get(2)?,
                    }),
                };
                Ok(CommittedObject {
                    kind: parsed(r, 0)?,
                    name: parsed(r, 1)?,
                    last,
                    deleted: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Every capture of one object, newest first, committed or not (see
    /// [`CaptureRecord::committed`]).
    pub fn list_captures(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<CaptureRecord>, IndexError> {
        let sql = format!(
            "SELECT {CAPTURE_COLUMNS}
             FROM objects AS o
             JOIN captures AS c ON c.object = o.id
             JOIN runs AS r ON r.id = c.run
             WHERE o.vault = ?1 AND o.kind = ?2 AND o.name = ?3
             ORDER BY c.captured_at DESC, c.id DESC"
        );
        self.read("listing the captures of an object", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![vault.as_str(), kind.as_str(), name.canonical()],
                capture_from_row,
            )?;
            rows.collect()
        })
    }

    /// The capture stored in blob `blob`, committed or not (see [`CaptureRecord::committed`]).
    /// Blob keys are unique, so this is one index seek however long the object's history is.
    pub fn capture(&self, blob: &BlobKey) -> Result<Option<CaptureRecord>, IndexError> {
        let sql = format!(
            "SELECT {CAPTURE_COLUMNS}
             FROM captures AS c
             JOIN objects AS o ON o.id = c.object
             JOIN runs AS r ON r.id = c.run
             WHERE c.blob_key = ?1"
        );
        self.read("looking up a capture by its blob", |conn| {
            conn.prepare_cached(&sql)?
                .query_row([blob.as_str()], capture_from_row)
                .optional()
        })
    }

    /// The versions held by the backup blob `blob`, oldest created first.
    pub fn capture_versions(&self, blob: &BlobKey) -> Result<Vec<CapturedVersion>, IndexError> {
        self.read("listing the versions of a capture", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT v.version, v.created, v.updated, v.enabled
                 FROM captures AS c JOIN capture_versions AS v ON v.capture = c.id
                 WHERE c.blob_key = ?1
                 ORDER BY v.created, v.version",
            )?;
            let rows = stmt.query_map([blob.as_str()], |r| {
                Ok(CapturedVersion {
                    version: parsed(r, 0)?,
                    created: r.get(1)?,
                    updated: r.get(2)?,
                    enabled: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The tags recorded with the capture in blob `blob`: `None` when the capture predates
    /// recorded tags (or no capture has that blob), so callers can tell "unknown" from "none".
    pub fn capture_tags(&self, blob: &BlobKey) -> Result<Option<CaptureTags>, IndexError> {
        self.read("reading the tags of a capture", |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT tags FROM captures WHERE blob_key = ?1")?
                .query_row([blob.as_str()], |r| r.get(0))
                .optional()?
                .flatten();
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| conversion(0, format!("tags {t:?}: {e}")))
            })
            .transpose()
        })
    }

    /// The `nbf` and `exp` recorded with the capture in blob `blob`: `None` when the capture
    /// predates recorded periods (or no capture has that blob), so callers can tell "unknown"
    /// from "neither set".
    pub fn capture_validity(&self, blob: &BlobKey) -> Result<Option<Validity>, IndexError> {
        self.read("reading the validity period of a capture", |conn| {
            let row: Option<(Option<i64>, Option<i64>, bool)> = conn
                .prepare_cached(
                    "SELECT expires_at, not_before, validity_known FROM captures
                     WHERE blob_key = ?1",
                )?
                .query_row([blob.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            Ok(row.and_then(|(expires, not_before, known)| {
                known.then_some(Validity {
                    not_before,
                    expires,
                })
            }))
        })
    }

    /// Every version of one object found in its committed captures, with the newest blob that
    /// holds each: the object's restorable history. Sorted by creation time, then id.
    pub fn list_versions(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionRecord>, IndexError> {
        let sql = format!(
            "SELECT v.version, v.created, v.updated, v.enabled, c2.captured_at, c2.blob_key
             FROM objects AS o
             JOIN captures AS c2 ON c2.object = o.id
             JOIN capture_versions AS v ON v.capture = c2.id
             WHERE o.vault = ?1 AND o.kind = ?2 AND o.name = ?3 AND {HELD_C2}
             ORDER BY c2.captured_at, c2.id"
        );
        let rows: Vec<(VersionRecord, i64)> =
            self.read("listing the versions of an object", |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![vault.as_str(), kind.as_str(), name.canonical()],
                    |r| {
                        let captured_at: i64 = r.get(4)?;
                        let record = VersionRecord {
                            version: parsed(r, 0)?,
                            created: r.get(1)?,
                            updated: r.get(2)?,
                            enabled: r.get(3)?,
                            first_captured_at: captured_at,
                            last_captured_at: captured_at,
                            newest_blob: parsed(r, 5)?,
                        };
                        Ok((record, captured_at))
                    },
                )?;
                rows.collect()
            })?;
        // Rows come oldest capture first: the first row of a version fixes first_captured_at,
        // every later one refreshes the attributes and the blob.
        let mut by_version: HashMap<String, VersionRecord> = HashMap::new();
        for (row, captured_at) in rows {
            by_version
                .entry(row.version.as_str().to_string())
                .and_modify(|known| {
                    known.created = row.created;
                    known.updated = row.updated;
                    known.enabled = row.enabled;
                    known.last_captured_at = captured_at;
                    known.newest_blob = row.newest_blob.clone();
                })
                .or_insert(row);
        }
        let mut versions: Vec<VersionRecord> = by_version.into_values().collect();
        versions.sort_by(|a, b| (a.created, &a.version).cmp(&(b.created, &b.version)));
        Ok(versions)
    }

    /// One run, if the index knows it.
    pub fn run(&self, run: &RunId) -> Result<Option<RunRecord>, IndexError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1");
        self.read("looking up a run", |conn| {
            conn.prepare_cached(&sql)?
                .query_row([run.as_str()], run_from_row)
                .optional()
        })
    }

    /// Runs of one vault, or of all vaults, newest first.
    pub fn list_runs(&self, vault: Option<&VaultName>) -> Result<Vec<RunRecord>, IndexError> {
        // Two statements rather than `?1 IS NULL OR vault = ?1`, which would keep SQLite from
        // using runs_by_vault_started for the per-vault listing.
        let filter = if vault.is_some() {
            "WHERE vault = ?1"
        } else {
            ""
        };
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs {filter} ORDER BY started_at DESC, id DESC");
        self.read("listing runs", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = match vault {
                Some(v) => stmt.query_map([v.as_str()], run_from_row)?.collect(),
                None => stmt.query_map([], run_from_row)?.collect(),
            };
            rows
        })
    }

    /// Objects of one vault, or of all vaults, by vault, kind and name; deleted ones included
    /// (see [`ObjectRecord::deleted_at`]).
    pub fn list_objects(&self, vault: Option<&VaultName>) -> Result<Vec<ObjectRecord>, IndexError> {
        let filter = if vault.is_some() {
            "WHERE vault = ?1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT vault, kind, display_name, first_seen, last_seen, deleted_at,
                 current_version, updated, last_deep_scan
             FROM objects {filter}
             ORDER BY vault, kind, name"
        );
        self.read("listing objects", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let object_from_row = |r: &Row<'_>| {
                Ok(ObjectRecord {
                    vault: parsed(r, 0)?,
                    kind: parsed(r, 1)?,
                    name: parsed(r, 2)?,
                    first_seen: r.get(3)?,
                    last_seen: r.get(4)?,
                    deleted_at: r.get(5)?,
                    current_version: parsed(r, 6)?,
                    updated: r.get(7)?,
                    last_deep_scan: r.get(8)?,
                })
            };
            let rows = match vault {
                Some(v) => stmt.query_map([v.as_str()], object_from_row)?.collect(),
                None => stmt.query_map([], object_from_row)?.collect(),
            };
            rows
        })
    }

    /// The objects that failed in `run`, in the order they were recorded.
    pub fn object_errors(&self, run: &RunId) -> Result<Vec<ObjectErrorRecord>, IndexError> {
        self.read("listing the errors of a run", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.run_id, e.kind, e.name, e.error_kind, e.message, e.at
                 FROM runs AS r JOIN object_errors AS e ON e.run = r.id
                 WHERE r.run_id = ?1
                 ORDER BY e.id",
            )?;
            let rows = stmt.query_map([run.as_str()], |r| {
                Ok(ObjectErrorRecord {
                    run: parsed(r, 0)?,
                    kind: parsed(r, 1)?,
                    name: parsed(r, 2)?,
                    error_kind: r.get(3)?,
                    message: r.get(4)?,
                    at: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The latest verification of `vault`, at `depth` or at any depth.
    pub fn last_verification(
        &self,
        vault: &VaultName,
        depth: Option<VerificationDepth>,
    ) -> Result<Option<VerificationRecord>, IndexError> {
        self.read("looking up the last verification", |conn| {
            conn.prepare_cached(
                "SELECT vault, at, depth, ok, detail FROM verifications
                 WHERE vault = ?1 AND (?2 IS NULL OR depth = ?2)
                 ORDER BY at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![vault.as_str(), depth.map(|d| d.as_str())], |r| {
                Ok(VerificationRecord {
                    vault: parsed(r, 0)?,
                    at: r.get(1)?,
                    depth: parsed(r, 2)?,
                    ok: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .optional()
        })
    }
}

/// The columns [`run_from_row`] reads, in its order.
pub(super) const RUN_COLUMNS: &str =
    "run_id, vault, started_at, finished_at, status, captured_objects,
    unchanged_objects, deleted_objects, failed_objects, uploaded_bytes, manifest_key,
    forgotten_at, abandoned_by";

pub(super) fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let manifest: Option<String> = r.get(10)?;
    Ok(RunRecord {
        run: parsed(r, 0)?,
        vault: parsed(r, 1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        status: parsed(r, 4)?,
        stats: RunStats {
            captured_objects: r.get(5)?,
            unchanged_objects: r.get(6)?,
            deleted_objects: r.get(7)?,
            failed_objects: r.get(8)?,
            uploaded_bytes: r.get(9)?,
        },
        manifest: manifest.map(|m| parse_text(10, &m)).transpose()?,
        forgotten_at: r.get(11)?,
        abandoned_by: r.get(12)?,
    })
}

pub(super) fn capture_from_row(r: &Row<'_>) -> rusqlite::Result<CaptureRecord> {
    let payload: String = r.get(12)?;
    Ok(CaptureRecord {
        run: parsed(r, 0)?,
        committed: r.get(1)?,
        vault: parsed(r, 2)?,
        kind: parsed(r, 3)?,
        name: parsed(r, 4)?,
        blob: parsed(r, 5)?,
        captured_at: r.get(6)?,
        current_version: parsed(r, 7)?,
        updated: r.get(8)?,
        plain_bytes: r.get(9)?,
        stored_bytes: r.get(10)?,
        sha256: r.get(11)?,
        payload: payload.parse().map_err(|e| conversion(12, e))?,
    })
}

/// Reads a text column into a typed value; a value that does not parse means the file was
/// changed outside kvkeep, reported as [`IndexError::BadValue`] by `classify`.
pub(super) fn parsed<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = r.get(idx)?;
    parse_text(idx, &text)
}

fn parse_text<T>(idx: usize, text: &str) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|e: T::Err| conversion(idx, format!("{text:?}: {e}")))
}

fn conversion(idx: usize, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, reason.into())
}
