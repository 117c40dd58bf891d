//! The read queries behind `kvkeep report` (issue #10) that the catalog does not already answer:
//! storage per kind with its recent growth, objects whose latest attempts failed or that no
//! restore point holds, objects whose newest capture holds many versions, and objects whose
//! Key Vault `exp` is near.
//!
//! Restore points and verifications come from [`Index::restore_points`] and
//! [`Index::last_verification`]; these queries only add what a report needs on top. Like every
//! reader they never write, so a report can run next to the daemon (WAL mode).

use rusqlite::{params, OptionalExtension};

use super::error::IndexError;
use super::read::{parsed, HELD_C2};
use super::types::SkippedCounts;
use super::Index;
use crate::model::{ObjectKind, ObjectName, Validity, VaultName};

/// The blobs of one vault and kind that the index records, and those captured in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindStorageRecord {
    /// The kind.
    pub kind: ObjectKind,
    /// Object blobs in the store (every capture the index records, held by a restore point or
    /// not yet deleted by prune).
    pub blobs: u64,
    /// Their size as stored (compressed and encrypted).
    pub stored_bytes: u64,
    /// Their payload size before compression and encryption.
    pub plain_bytes: u64,
    /// Captures taken inside the window asked for.
    pub window_captures: u64,
    /// Their stored size.
    pub window_stored_bytes: u64,
    /// Their payload size.
    pub window_plain_bytes: u64,
}

/// An object of a vault the newest restore point could not capture, or that no restore point
/// holds at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncoveredObjectRecord {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// Its newest capture that a restore point holds; `None` when no restore point holds one.
    pub last_captured_at: Option<i64>,
    /// Why the newest restore point's run failed to capture it; `None` when it did not fail
    /// there (it was captured by a run that never committed, for instance).
    pub failure: Option<FailureStreak>,
}

/// The failures of one object since it was last seen in a listing that captured it or found it
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureStreak {
    /// The newest error's class (`forbidden`, `throttled`, ...).
    pub error_kind: String,
    /// The newest error, for a person.
    pub message: String,
    /// When the first failure of the streak happened.
    pub since: i64,
    /// How many runs failed on it in the streak.
    pub failed_runs: u64,
}

/// An object whose newest held capture holds many versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCountRecord {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// Versions in that capture's blob.
    pub versions: u64,
    /// When it was captured.
    pub captured_at: i64,
}

/// An object still in its vault whose newest held capture recorded an `exp` inside the window
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringObjectRecord {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// `exp` and `nbf` of its current version as recorded with that capture.
    pub validity: Validity,
    /// `exp`, the sort key (always set for a listed object).
    pub expires_at: i64,
}

/// What the index knows of the expiry of a vault's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryRecords {
    /// Objects whose `exp` is at or before the time asked for, soonest first.
    pub expiring: Vec<ExpiringObjectRecord>,
    /// Objects still in the vault whose newest held capture was recorded before kvkeep read
    /// `nbf`/`exp`, so nothing is known of their expiry.
    pub unknown: u64,
}

impl Index {
    /// Per kind of `vault` (kinds without blobs left out): every object blob the index records,
    /// and those captured in `(window_start, window_end]`, the bytes a vault added lately.
    pub fn storage_by_kind(
        &self,
        vault: &VaultName,
        window_start: i64,
        window_end: i64,
    ) -> Result<Vec<KindStorageRecord>, IndexError> {
        self.read("summarising storage per kind", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT o.kind, count(*),
                     coalesce(sum(c.stored_bytes), 0),
                     coalesce(sum(c.plain_bytes), 0),
                     coalesce(sum(c.captured_at > ?2 AND c.captured_at <= ?3), 0),
                     coalesce(sum(CASE WHEN c.captured_at > ?2 AND c.captured_at <= ?3
                                  THEN c.stored_bytes ELSE 0 END), 0),
                     coalesce(sum(CASE WHEN c.captured_at > ?2 AND c.captured_at <= ?3
                                  THEN c.plain_bytes ELSE 0 END), 0)
                 FROM captures AS c JOIN objects AS o ON o.id = c.object
                 WHERE o.vault = ?1
                 GROUP BY o.kind
                 ORDER BY o.kind",
            )?;
            let rows = stmt.query_map(params![vault.as_str(), window_start, window_end], |r| {
                Ok(KindStorageRecord {
                    kind: parsed(r, 0)?,
                    blobs: r.get(1)?,
                    stored_bytes: r.get(2)?,
                    plain_bytes: r.get(3)?,
                    window_captures: r.get(4)?,
                    window_stored_bytes: r.get(5)?,
                    window_plain_bytes: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The coverage gaps of `vault`, by kind and name: the objects the newest restore point's
    /// run failed on, with their failure streak, and the objects still in the vault (as last
    /// seen) that no restore point holds.
    ///
    /// "Failing" is judged by the newest restore point only: an object that failed once and was
    /// captured or found unchanged since has recovered, and one that failed and then left the
    /// vault (or the filter) is no longer anyone's concern. A streak starts after the object's
    /// last sighting in a listing (`objects.last_seen`), which only captures and unchanged
    /// sightings move.
    pub fn uncovered_objects(
        &self,
        vault: &VaultName,
    ) -> Result<Vec<UncoveredObjectRecord>, IndexError> {
        let held_time = format!(
            "(SELECT max(c2.captured_at) FROM captures AS c2 WHERE c2.object = o.id AND {HELD_C2})"
        );
        // object_errors keeps the displayed name; objects keeps the canonical (lower-case)
        // one next to it. Key Vault names are ASCII, so SQLite's ASCII lower() is enough.
        let failing = format!(
            "WITH newest AS (
                SELECT id FROM runs WHERE vault = ?1 AND manifest_key IS NOT NULL
                ORDER BY started_at DESC, id DESC LIMIT 1
             ),
             errs AS (
                SELECT e.id, e.run, e.kind, lower(e.name) AS name, e.name AS display,
                    e.error_kind, e.message, e.at
                FROM object_errors AS e JOIN runs AS r ON r.id = e.run
                WHERE r.vault = ?1
             ),
             latest AS (
                SELECT errs.*, row_number() OVER (
                    PARTITION BY errs.kind, errs.name ORDER BY errs.at DESC, errs.id DESC) AS rn
                FROM errs JOIN newest ON errs.run = newest.id
             )
             SELECT l.kind, coalesce(o.display_name, l.display), {held_time},
                 l.error_kind, l.message,
                 -- A run that never committed may have seen the object after the failure:
                 -- then the streak is the newest failure alone.
                 coalesce((SELECT min(s.at) FROM errs AS s
                           WHERE s.kind = l.kind AND s.name = l.name
                             AND (o.last_seen IS NULL OR s.at > o.last_seen)), l.at),
                 max(1, (SELECT count(DISTINCT s.run) FROM errs AS s
                         WHERE s.kind = l.kind AND s.name = l.name
                           AND (o.last_seen IS NULL OR s.at > o.last_seen)))
             FROM latest AS l
             LEFT JOIN objects AS o ON o.vault = ?1 AND o.kind = l.kind AND o.name = l.name
             WHERE l.rn = 1
             ORDER BY l.kind, l.name"
        );
        let unheld = format!(
            "SELECT o.kind, o.display_name FROM objects AS o
             WHERE o.vault = ?1 AND o.deleted_at IS NULL AND {held_time} IS NULL
             ORDER BY o.kind, o.name"
        );
        self.read("listing objects without a fresh backup", |conn| {
            let mut out: Vec<UncoveredObjectRecord> = conn
                .prepare_cached(&failing)?
                .query_map([vault.as_str()], |r| {
                    Ok(UncoveredObjectRecord {
                        kind: parsed(r, 0)?,
                        name: parsed(r, 1)?,
                        last_captured_at: r.get(2)?,
                        failure: Some(FailureStreak {
                            error_kind: r.get(3)?,
                            message: r.get(4)?,
                            since: r.get(5)?,
                            failed_runs: r.get(6)?,
                        }),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let unheld: Vec<(ObjectKind, ObjectName)> = conn
                .prepare_cached(&unheld)?
                .query_map([vault.as_str()], |r| Ok((parsed(r, 0)?, parsed(r, 1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (kind, name) in unheld {
                let known = out
                    .iter()
                    .any(|o| o.kind == kind && o.name.canonical() == name.canonical());
                if !known {
                    out.push(UncoveredObjectRecord {
                        kind,
                        name,
                        last_captured_at: None,
                        failure: None,
                    });
                }
            }
            out.sort_by_key(|a| (a.kind, a.name.canonical()));
            Ok(out)
        })
    }

    /// What the newest run of `vault` that recorded them left out, by reason, and when it
    /// started; `None` when no run has (none yet, or all before schema 7 or rebuilt).
    pub fn newest_skipped(
        &self,
        vault: &VaultName,
    ) -> Result<Option<(i64, SkippedCounts)>, IndexError> {
        self.read("reading what the newest run left out", |conn| {
            conn.prepare_cached(
                "SELECT started_at, skipped_managed, skipped_filtered, skipped_tagged FROM runs
                 WHERE vault = ?1 AND skipped_managed IS NOT NULL
                 ORDER BY started_at DESC, id DESC LIMIT 1",
            )?
            .query_row([vault.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    SkippedCounts {
                        managed: r.get(1)?,
                        filtered: r.get(2)?,
                        tagged: r.get(3)?,
                    },
                ))
            })
            .optional()
        })
    }

    /// The objects of `vault` still in it (as last seen) whose newest held capture holds at
    /// least `at_least` versions, most versions first. Key Vault refuses to back up an object
    /// with more than 500 versions, so these are the ones to clean up before backups fail.
    pub fn objects_with_many_versions(
        &self,
        vault: &VaultName,
        at_least: u64,
    ) -> Result<Vec<VersionCountRecord>, IndexError> {
        let sql = format!(
            "WITH newest AS (
                SELECT o.kind, o.name, o.display_name,
                    (SELECT c2.id FROM captures AS c2 WHERE c2.object = o.id AND {HELD_C2}
                     ORDER BY c2.captured_at DESC, c2.id DESC LIMIT 1) AS capture
                FROM objects AS o WHERE o.vault = ?1 AND o.deleted_at IS NULL
             ),
             counted AS (
                SELECT n.kind, n.name, n.display_name, c.captured_at,
                    (SELECT count(*) FROM capture_versions AS v WHERE v.capture = c.id)
                        AS versions
                FROM newest AS n JOIN captures AS c ON c.id = n.capture
             )
             SELECT kind, display_name, versions, captured_at FROM counted
             WHERE versions >= ?2
             ORDER BY versions DESC, kind, name"
        );
        self.read("counting the versions of captured objects", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![vault.as_str(), at_least], |r| {
                Ok(VersionCountRecord {
                    kind: parsed(r, 0)?,
                    name: parsed(r, 1)?,
                    versions: r.get(2)?,
                    captured_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The objects of `vault` still in it (as last seen) whose newest held capture recorded an
    /// `exp` at or before `until` (already expired ones included), soonest first; and how many
    /// such objects have a newest held capture whose period is unknown.
    ///
    /// "Newest held capture", as for the version counts: the object as the newest restore point
    /// that holds it has it. A run that finds an object unchanged fills in an unknown period of
    /// that capture from its listing, so after one run on schema 6 only objects no run has
    /// listed since stay unknown.
    pub fn expiring_objects(
        &self,
        vault: &VaultName,
        until: i64,
    ) -> Result<ExpiryRecords, IndexError> {
        // One pass: unknown rows are only counted, never parsed.
        let sql = format!(
            "WITH newest AS (
                SELECT o.kind, o.name, o.display_name,
                    (SELECT c2.id FROM captures AS c2 WHERE c2.object = o.id AND {HELD_C2}
                     ORDER BY c2.captured_at DESC, c2.id DESC LIMIT 1) AS capture
                FROM objects AS o WHERE o.vault = ?1 AND o.deleted_at IS NULL
             )
             SELECT c.validity_known, n.kind, n.display_name, c.expires_at, c.not_before
             FROM newest AS n JOIN captures AS c ON c.id = n.capture
             WHERE c.validity_known = 0 OR c.expires_at <= ?2
             ORDER BY c.expires_at, n.kind, n.name"
        );
        self.read("listing objects that expire soon", |conn| {
            let mut out = ExpiryRecords::default();
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![vault.as_str(), until])?;
            while let Some(r) = rows.next()? {
                let known: bool = r.get(0)?;
                let expires: Option<i64> = r.get(3)?;
                match (known, expires) {
                    (true, Some(expires_at)) => out.expiring.push(ExpiringObjectRecord {
                        kind: parsed(r, 1)?,
                        name: parsed(r, 2)?,
                        validity: Validity {
                            not_before: r.get(4)?,
                            expires: Some(expires_at),
                        },
                        expires_at,
                    }),
                    // Known without `exp` cannot match `expires_at <= ?2`; unknown is counted.
                    (true, None) => {}
                    (false, _) => out.unknown += 1,
                }
            }
            Ok(out)
        })
    }
}
