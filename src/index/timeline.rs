//! The per-object question behind the HTML report's object table (issue #10): which restore
//! points of a vault hold each object, and which distinct captures (the states one can restore
//! it to) they hold. The timeline's restore points themselves come from
//! [`Index::restore_points`] and retention's verdict on them.
//!
//! Bounded on purpose: a vault may hold tens of thousands of objects, and a report over a
//! thousand vaults must stay a file a browser opens, so the caller says how many objects it
//! wants (in the order every listing uses) and how many capture times per object; the total
//! number of objects comes back beside them so the report can say how many it left out.

use std::collections::HashMap;

use rusqlite::params;

use super::error::IndexError;
use super::read::parsed;
use super::Index;
use crate::model::{ObjectKind, ObjectName, VaultName};

/// The restore points that hold one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPointsRecord {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// Whether the newest listing that saw the vault found it gone.
    pub deleted: bool,
    /// How many restore points hold it (a point holds each object once, captured by it or
    /// carried over unchanged from an earlier capture).
    pub points: u64,
    /// How many distinct captures those points hold: the states it can be restored to.
    pub captures: u64,
    /// Start of the oldest restore point holding it.
    pub first_point: Option<i64>,
    /// Start of the newest restore point holding it.
    pub last_point: Option<i64>,
    /// When the newest of those captures were taken, newest first, at most as many as asked.
    pub newest_captures: Vec<i64>,
}

/// Some objects of a vault and how many it has in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPointsPage {
    /// The first objects in kind (keys, secrets, certificates) then name order.
    pub objects: Vec<ObjectPointsRecord>,
    /// Every object of the vault the index knows, listed or not.
    pub total_objects: u64,
}

impl Index {
    /// The first `limit` objects of `vault` (keys, secrets, certificates, each by name) with the
    /// restore points that hold them and the times of their `captures_per_object` newest held
    /// captures. Objects no restore point holds are listed too, with zero points.
    pub fn object_points(
        &self,
        vault: &VaultName,
        limit: usize,
        captures_per_object: usize,
    ) -> Result<ObjectPointsPage, IndexError> {
        // The CASE puts kinds in kvkeep's order, which the LIMIT has to respect; the name is
        // stored lower-case, so ordering by it is the case-insensitive order listings use.
        let objects_sql = "WITH held AS (
                SELECT m.object, m.capture, r.started_at
                FROM run_members AS m JOIN runs AS r ON r.id = m.run
                WHERE r.vault = ?1 AND r.manifest_key IS NOT NULL
             )
             SELECT o.id, o.kind, o.display_name, o.deleted_at IS NOT NULL,
                 count(held.started_at), count(DISTINCT held.capture),
                 min(held.started_at), max(held.started_at)
             FROM objects AS o LEFT JOIN held ON held.object = o.id
             WHERE o.vault = ?1
             GROUP BY o.id
             ORDER BY CASE o.kind WHEN 'keys' THEN 0 WHEN 'secrets' THEN 1 ELSE 2 END, o.name
             LIMIT ?2";
        let captures_sql = "WITH held AS (
                SELECT DISTINCT m.object, m.capture
                FROM run_members AS m JOIN runs AS r ON r.id = m.run
                WHERE r.vault = ?1 AND r.manifest_key IS NOT NULL
             ),
             ranked AS (
                SELECT held.object, c.captured_at, row_number() OVER (
                    PARTITION BY held.object ORDER BY c.captured_at DESC, c.id DESC) AS rn
                FROM held JOIN captures AS c ON c.id = held.capture
             )
             SELECT object, captured_at FROM ranked WHERE rn <= ?2 ORDER BY object, rn";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let per_object = i64::try_from(captures_per_object).unwrap_or(i64::MAX);
        self.read("listing the restore points of each object", |conn| {
            let rows: Vec<(i64, ObjectPointsRecord)> = conn
                .prepare_cached(objects_sql)?
                .query_map(params![vault.as_str(), limit], |r| {
                    Ok((
                        r.get(0)?,
                        ObjectPointsRecord {
                            kind: parsed(r, 1)?,
                            name: parsed(r, 2)?,
                            deleted: r.get(3)?,
                            points: r.get(4)?,
                            captures: r.get(5)?,
                            first_point: r.get(6)?,
                            last_point: r.get(7)?,
                            newest_captures: Vec::new(),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut times: HashMap<i64, Vec<i64>> = HashMap::new();
            if per_object > 0 && !rows.is_empty() {
                let mut stmt = conn.prepare_cached(captures_sql)?;
                let found = stmt.query_map(params![vault.as_str(), per_object], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in found {
                    let (object, at) = row?;
                    times.entry(object).or_default().push(at);
                }
            }
            let total_objects: u64 = conn
                .prepare_cached("SELECT count(*) FROM objects WHERE vault = ?1")?
                .query_row([vault.as_str()], |r| r.get(0))?;
            let objects = rows
                .into_iter()
                .map(|(id, mut record)| {
                    record.newest_captures = times.remove(&id).unwrap_or_default();
                    record
                })
                .collect();
            Ok(ObjectPointsPage {
                objects,
                total_objects,
            })
        })
    }
}
