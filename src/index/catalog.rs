//! The catalog questions retention asks (issue #9): which restore points a vault has, what each
//! holds, which blobs would be left without a holder if some points were forgotten, which
//! deleted objects which points still hold, and per-vault totals for reports.
//!
//! A *restore point* is a committed run: its manifest is in the store. What it holds is stored
//! per run (`run_members`, schema version 4), so a point stays complete when the run that wrote
//! one of its blobs is forgotten. Prune is built on these: it plans with
//! [`Index::restore_points`], [`Index::deleted_objects_with_holders`] and
//! [`Index::space_held_only_by`], then carries the plan out in a crash-safe order with
//! [`Writer::mark_forgotten`](super::Writer::mark_forgotten),
//! [`Index::forgotten_manifests`], [`Writer::manifest_deleted`](super::Writer::manifest_deleted),
//! [`Index::unheld_blobs`] and [`Writer::delete_capture`](super::Writer::delete_capture).

use rusqlite::{params, OptionalExtension, Row};

use super::error::IndexError;
use super::read::{capture_from_row, parsed, CAPTURE_COLUMNS};
use super::types::{CaptureRecord, RunStatus};
use super::Index;
use crate::model::{BlobKey, ObjectKind, ObjectName, RunId, VaultName};

/// One restore point of a vault: a committed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePointRecord {
    /// The run.
    pub run: RunId,
    /// When it started (Unix seconds): the time a restore "as of" selects it by.
    pub started_at: i64,
    /// When it finished.
    pub finished_at: i64,
    /// Its final status; `partially_failed` and `interrupted` runs with a manifest are points too.
    pub status: RunStatus,
    /// Its manifest's key.
    pub manifest: BlobKey,
}

/// An object the vault's newest restore point does not hold because a committed run saw it
/// deleted, with the restore points that still hold a copy: the input of
/// `crate::retention::Deletion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedObjectRecord {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// When a committed run first saw it gone after the newest point holding it (Unix seconds).
    pub seen_at: i64,
    /// The restore points holding it, oldest first; empty once every one has been forgotten.
    pub holders: Vec<RunId>,
}

/// A forgotten restore point whose manifest prune has still to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenManifest {
    /// The run.
    pub run: RunId,
    /// When it started (its manifest parts are named by it).
    pub started_at: i64,
    /// Its manifest's (head's) key.
    pub manifest: BlobKey,
}

/// Per-vault totals for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCatalogSummary {
    /// The vault.
    pub vault: VaultName,
    /// Its restore points.
    pub restore_points: u64,
    /// Start of the oldest and of the newest restore point, if it has any.
    pub oldest_started_at: Option<i64>,
    /// See `oldest_started_at`.
    pub newest_started_at: Option<i64>,
    /// Distinct blobs some restore point holds.
    pub held_blobs: u64,
    /// Their total size as stored.
    pub held_stored_bytes: u64,
    /// Blobs no run holds any more: their restore points were forgotten, the blobs can go.
    pub unheld_blobs: u64,
}

/// A number of blobs and their total stored size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldSpace {
    /// The blobs.
    pub blobs: u64,
    /// Their total size as stored.
    pub stored_bytes: u64,
}

/// The start of the queries over "the captures only these runs hold", with the vault as ?1 and
/// the runs as a JSON array of run ids in ?2 (a statement with a variable number of parameters
/// could not be cached). It defines `freed`: the captures some of those runs hold and no other
/// run of the vault does.
///
/// Two things keep it linear in the runs and captures involved (issue #9's benchmark: 100,000
/// restore points, 1,000,000 held captures):
/// - the array is walked and each run found by its unique id (`CROSS JOIN` fixes that order;
///   the other way round SQLite scanned the whole array once per run of the vault, which took
///   18 s for 10,000 runs); the runs are then taken in row order (`ORDER BY r.id`), so their
///   `run_members` are read front to back whatever order the caller listed them in (the
///   decision lists them newest first, which made the same query 60 % slower);
/// - the other runs' captures are collected once (`others`: few, since prune forgets most
///   points and keeps a few hundred), instead of asking, for each candidate capture, whether
///   each of its holders is in the list.
///
/// Only the vault's own runs are looked at: a run holds captures of its own vault's objects
/// only (`Writer::record_capture` and `record_unchanged` look captures up by the vault's
/// object).
const HELD_ONLY_BY: &str = "WITH forgotten AS MATERIALIZED (
        SELECT r.id FROM json_each(?2) AS j CROSS JOIN runs AS r ON r.run_id = j.value
        WHERE r.vault = ?1
        ORDER BY r.id
     ),
     others AS MATERIALIZED (
        SELECT m.capture FROM runs AS r JOIN run_members AS m ON m.run = r.id
        WHERE r.vault = ?1 AND r.id NOT IN (SELECT id FROM forgotten)
     ),
     freed AS (
        SELECT m.capture FROM forgotten JOIN run_members AS m ON m.run = forgotten.id
        WHERE m.capture NOT IN (SELECT capture FROM others)
     )";

/// `runs` as the JSON array [`HELD_ONLY_BY`] and [`Index::is_blob_held_by_other_than`] take.
fn run_list(runs: &[RunId]) -> String {
    serde_json::Value::from(runs.iter().map(RunId::as_str).collect::<Vec<_>>()).to_string()
}

fn restore_point_from_row(r: &Row<'_>) -> rusqlite::Result<RestorePointRecord> {
    Ok(RestorePointRecord {
        run: parsed(r, 0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        status: parsed(r, 3)?,
        manifest: parsed(r, 4)?,
    })
}

impl Index {
    /// The run of `vault`'s newest restore point, if it has one.
    pub fn newest_restore_point(&self, vault: &VaultName) -> Result<Option<RunId>, IndexError> {
        self.read("finding the newest restore point", |conn| {
            conn.prepare_cached(
                "SELECT run_id FROM runs WHERE vault = ?1 AND manifest_key IS NOT NULL
                 ORDER BY started_at DESC, id DESC LIMIT 1",
            )?
            .query_row([vault.as_str()], |r| parsed(r, 0))
            .optional()
        })
    }

    /// The restore points of `vault`, oldest first.
    pub fn restore_points(&self, vault: &VaultName) -> Result<Vec<RestorePointRecord>, IndexError> {
        self.read("listing restore points", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT run_id, started_at, finished_at, status, manifest_key FROM runs
                 WHERE vault = ?1 AND manifest_key IS NOT NULL
                 ORDER BY started_at, id",
            )?;
            let rows = stmt.query_map([vault.as_str()], restore_point_from_row)?;
            rows.collect()
        })
    }

    /// What run `run` holds: one capture per object, whichever run wrote it, sorted by kind and
    /// name. Empty for an unknown or forgotten run.
    pub fn restore_point_contents(&self, run: &RunId) -> Result<Vec<CaptureRecord>, IndexError> {
        let sql = format!(
            "SELECT {CAPTURE_COLUMNS}
             FROM runs AS point
             JOIN run_members AS m ON m.run = point.id
             JOIN captures AS c ON c.id = m.capture
             JOIN objects AS o ON o.id = m.object
             JOIN runs AS r ON r.id = c.run
             WHERE point.run_id = ?1
             ORDER BY o.kind, o.name"
        );
        self.read("listing what a restore point holds", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([run.as_str()], capture_from_row)?;
            rows.collect()
        })
    }

    /// The blobs of `vault` that some run in `runs` holds and no other run does: what prune may
    /// delete once it has forgotten `runs`. Runs still running count as holders, so a backup in
    /// progress never loses a blob it refers to. Sorted by key.
    pub fn blobs_held_only_by(
        &self,
        vault: &VaultName,
        runs: &[RunId],
    ) -> Result<Vec<BlobKey>, IndexError> {
        let sql = format!(
            "{HELD_ONLY_BY}
             SELECT c.blob_key FROM captures AS c WHERE c.id IN (SELECT capture FROM freed)
             ORDER BY c.blob_key"
        );
        self.read("listing the blobs only some runs hold", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![vault.as_str(), run_list(runs)], |r| parsed(r, 0))?;
            rows.collect()
        })
    }

    /// How many blobs [`Index::blobs_held_only_by`] would list, and their stored size, without
    /// listing them: what `kvkeep prune --dry-run` shows. A vault with 100,000 restore points
    /// can free a million blobs at once; counting them is a fraction of listing them.
    pub fn space_held_only_by(
        &self,
        vault: &VaultName,
        runs: &[RunId],
    ) -> Result<HeldSpace, IndexError> {
        let sql = format!(
            "{HELD_ONLY_BY}
             SELECT count(*), coalesce(sum(c.stored_bytes), 0)
             FROM (SELECT DISTINCT capture FROM freed) AS f
             CROSS JOIN captures AS c ON c.id = f.capture"
        );
        self.read("measuring the blobs only some runs hold", |conn| {
            conn.prepare_cached(&sql)?
                .query_row(params![vault.as_str(), run_list(runs)], |r| {
                    Ok(HeldSpace {
                        blobs: r.get(0)?,
                        stored_bytes: r.get(1)?,
                    })
                })
        })
    }

    /// Whether a run other than those in `runs` holds the capture at `blob`.
    pub fn is_blob_held_by_other_than(
        &self,
        blob: &BlobKey,
        runs: &[RunId],
    ) -> Result<bool, IndexError> {
        let list = run_list(runs);
        self.read("checking which runs hold a blob", |conn| {
            conn.prepare_cached(
                "SELECT 1 FROM captures AS c
                 JOIN run_members AS m ON m.capture = c.id
                 JOIN runs AS r ON r.id = m.run
                 WHERE c.blob_key = ?1
                   AND r.run_id NOT IN (SELECT value FROM json_each(?2))",
            )?
            .exists(params![blob.as_str(), list])
        })
    }

    /// The blobs of `vault` that no run holds, with their stored size: left by forgotten or
    /// swept runs (or a prune that stopped between forgetting and deleting). Sorted by key.
    pub fn unheld_blobs(&self, vault: &VaultName) -> Result<Vec<(BlobKey, u64)>, IndexError> {
        self.read("listing blobs no run holds", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.blob_key, c.stored_bytes FROM objects AS o
                 JOIN captures AS c ON c.object = o.id
                 WHERE o.vault = ?1
                   AND NOT EXISTS (SELECT 1 FROM run_members AS m WHERE m.capture = c.id)
                 ORDER BY c.blob_key",
            )?;
            let rows = stmt.query_map([vault.as_str()], |r| Ok((parsed(r, 0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The forgotten restore points of `vault` whose manifest is still to be deleted from the
    /// store, oldest first.
    pub fn forgotten_manifests(
        &self,
        vault: &VaultName,
    ) -> Result<Vec<ForgottenManifest>, IndexError> {
        self.read("listing manifests still to delete", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT run_id, started_at, forgotten_manifest_key FROM runs
                 WHERE vault = ?1 AND forgotten_manifest_key IS NOT NULL
                 ORDER BY started_at, id",
            )?;
            let rows = stmt.query_map([vault.as_str()], |r| {
                Ok(ForgottenManifest {
                    run: parsed(r, 0)?,
                    started_at: r.get(1)?,
                    manifest: parsed(r, 2)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The runs of `vault` that ended without a manifest, started before `before` and not yet
    /// swept: the blobs they wrote are prune's to delete once the grace period is over (their
    /// run may have been going elsewhere until then). Oldest first, with their start.
    pub fn uncommitted_runs_before(
        &self,
        vault: &VaultName,
        before: i64,
    ) -> Result<Vec<(RunId, i64)>, IndexError> {
        self.read("listing runs that never committed", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT run_id, started_at FROM runs
                 WHERE vault = ?1 AND started_at < ?2 AND status <> 'running'
                   AND manifest_key IS NULL AND forgotten_at IS NULL AND swept_at IS NULL
                 ORDER BY started_at, id",
            )?;
            let rows = stmt.query_map(params![vault.as_str(), before], |r| {
                Ok((parsed(r, 0)?, r.get(1)?))
            })?;
            rows.collect()
        })
    }

    /// The objects of `vault` seen deleted by a committed run and not held by its newest
    /// restore point, each with the restore points that still hold it, by kind and name.
    /// Retention keeps the newest holder of each for its `keep_deleted_for`.
    ///
    /// The deletion counts when the run that saw it was committed, also once prune has forgotten
    /// that run. When no such record is left (a rebuild after the run's manifest was pruned
    /// knows nothing of what it saw), the start of the first restore point after the newest
    /// holder stands in: that point saw the object gone, and it is no earlier than the true
    /// time, so the last copy is kept at least as long as the policy says.
    pub fn deleted_objects_with_holders(
        &self,
        vault: &VaultName,
    ) -> Result<Vec<DeletedObjectRecord>, IndexError> {
        self.read("listing deleted objects and their holders", |conn| {
            // The holders of an object are found through its captures
            // (captures_by_object_time_sizes, then run_members_by_capture), not by scanning
            // run_members, whose key starts with the run.
            let mut objects = conn.prepare_cached(
                "WITH newest AS (
                    SELECT id FROM runs WHERE vault = ?1 AND manifest_key IS NOT NULL
                    ORDER BY started_at DESC, id DESC LIMIT 1
                 ),
                 candidates AS (
                    SELECT o.id, o.kind, o.name, o.display_name,
                        (SELECT max(hr.started_at) FROM captures AS hc
                         JOIN run_members AS hm ON hm.capture = hc.id
                         JOIN runs AS hr ON hr.id = hm.run
                         WHERE hc.object = o.id AND hr.manifest_key IS NOT NULL) AS last_held
                    FROM objects AS o
                    WHERE o.vault = ?1
                      AND NOT EXISTS (SELECT 1 FROM run_members AS nm JOIN newest
                                      ON nm.run = newest.id WHERE nm.object = o.id)
                 )
                 SELECT id, kind, display_name,
                     coalesce(
                         (SELECT min(d.seen_at) FROM deletions AS d JOIN runs AS dr ON dr.id = d.run
                          WHERE d.object = candidates.id
                            AND (dr.manifest_key IS NOT NULL OR dr.forgotten_at IS NOT NULL)
                            AND (last_held IS NULL OR dr.started_at > last_held)),
                         (SELECT min(r.started_at) FROM runs AS r
                          WHERE r.vault = ?1 AND r.manifest_key IS NOT NULL
                            AND r.started_at > last_held)) AS seen_at
                 FROM candidates
                 WHERE seen_at IS NOT NULL
                 ORDER BY kind, name",
            )?;
            let found: Vec<(i64, ObjectKind, ObjectName, i64)> = objects
                .query_map([vault.as_str()], |r| {
                    Ok((r.get(0)?, parsed(r, 1)?, parsed(r, 2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut holders = conn.prepare_cached(
                "SELECT DISTINCT r.run_id, r.started_at, r.id FROM captures AS c
                 JOIN run_members AS m ON m.capture = c.id
                 JOIN runs AS r ON r.id = m.run
                 WHERE c.object = ?1 AND r.manifest_key IS NOT NULL
                 ORDER BY r.started_at, r.id",
            )?;
            found
                .into_iter()
                .map(|(id, kind, name, seen_at)| {
                    let holders = holders
                        .query_map([id], |r| parsed(r, 0))?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(DeletedObjectRecord {
                        kind,
                        name,
                        seen_at,
                        holders,
                    })
                })
                .collect()
        })
    }

    /// Restore-point and storage totals of `vault`, or of every vault the index knows (by
    /// name), for reports.
    pub fn catalog_summary(
        &self,
        vault: Option<&VaultName>,
    ) -> Result<Vec<VaultCatalogSummary>, IndexError> {
        self.read("summarising the catalog", |conn| {
            let mut stmt = conn.prepare_cached(
                "WITH vaults AS (
                    SELECT DISTINCT vault FROM runs WHERE ?1 IS NULL OR vault = ?1
                 ),
                 held AS (
                    SELECT DISTINCT o.vault, c.id, c.stored_bytes
                    FROM run_members AS m
                    JOIN runs AS r ON r.id = m.run
                    JOIN captures AS c ON c.id = m.capture
                    JOIN objects AS o ON o.id = c.object
                    WHERE r.manifest_key IS NOT NULL AND (?1 IS NULL OR r.vault = ?1)
                 )
                 SELECT v.vault,
                     (SELECT count(*) FROM runs AS r
                      WHERE r.vault = v.vault AND r.manifest_key IS NOT NULL),
                     (SELECT min(started_at) FROM runs AS r
                      WHERE r.vault = v.vault AND r.manifest_key IS NOT NULL),
                     (SELECT max(started_at) FROM runs AS r
                      WHERE r.vault = v.vault AND r.manifest_key IS NOT NULL),
                     (SELECT count(*) FROM held WHERE held.vault = v.vault),
                     (SELECT coalesce(sum(stored_bytes), 0) FROM held WHERE held.vault = v.vault),
                     (SELECT count(*) FROM objects AS o JOIN captures AS c ON c.object = o.id
                      WHERE o.vault = v.vault
                        AND NOT EXISTS (SELECT 1 FROM run_members AS m WHERE m.capture = c.id))
                 FROM vaults AS v
                 ORDER BY v.vault",
            )?;
            let rows = stmt.query_map([vault.map(VaultName::as_str)], |r| {
                Ok(VaultCatalogSummary {
                    vault: parsed(r, 0)?,
                    restore_points: r.get(1)?,
                    oldest_started_at: r.get(2)?,
                    newest_started_at: r.get(3)?,
                    held_blobs: r.get(4)?,
                    held_stored_bytes: r.get(5)?,
                    unheld_blobs: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}
