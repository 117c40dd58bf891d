//! The prune plan of a vault: its restore points from the index, the policy's verdict on each
//! with its reasons, and what forgetting the others would free (their manifests, and the blobs
//! no kept point holds). Computing it changes nothing: `kvkeep prune --dry-run` prints it, and
//! the prune that carries it out starts from it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{decide, Deletion, RestorePoint, RetentionDecision};
use crate::config::VaultConfig;
use crate::index::{Index, IndexError};
use crate::model::{BlobKey, RunId, VaultName};

/// What pruning one vault would do.
#[derive(Debug, Clone)]
pub struct PrunePlan {
    /// The vault.
    pub vault: VaultName,
    /// Whether the vault has no `keep_*` rule (then everything is kept).
    pub policy_empty: bool,
    /// The verdict on each restore point, newest first.
    pub decision: RetentionDecision,
    /// The manifests of the points to forget.
    pub forget_manifests: Vec<BlobKey>,
    /// The object blobs only the forgotten points hold.
    pub freed_blobs: Vec<BlobKey>,
    /// Their stored (ciphertext) size.
    pub freed_bytes: u64,
}

/// The time zone the vault's calendar periods are counted in: its schedule's (UTC without one).
fn time_zone(vault: &VaultConfig) -> Tz {
    vault.schedule.as_ref().map_or(Tz::UTC, |s| s.tz())
}

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

/// The plan for `vault` at `now`, read from `index`.
pub fn plan_prune(
    index: &Index,
    vault: &VaultConfig,
    now: DateTime<Utc>,
) -> Result<PrunePlan, IndexError> {
    let records = index.restore_points(&vault.name)?;
    let points: Vec<RestorePoint> = records
        .iter()
        .map(|r| RestorePoint {
            run: r.run.clone(),
            started_at: at(r.started_at),
            status: r.status,
        })
        .collect();
    let deletions: Vec<Deletion> = index
        .deleted_objects_with_holders(&vault.name)?
        .into_iter()
        .map(|d| Deletion {
            kind: d.kind,
            name: d.name,
            seen_at: at(d.seen_at),
            holders: d.holders,
        })
        .collect();
    let decision = decide(&points, &deletions, &vault.retention, time_zone(vault), now);
    let forgotten: Vec<RunId> = decision.forgotten().map(|p| p.run.clone()).collect();
    let forget_manifests = records
        .iter()
        .filter(|r| forgotten.contains(&r.run))
        .map(|r| r.manifest.clone())
        .collect();
    let freed_blobs = if forgotten.is_empty() {
        Vec::new()
    } else {
        index.blobs_held_only_by(&vault.name, &forgotten)?
    };
    // Sizes come from the captures the forgotten points hold; each freed blob counted once.
    let freed: BTreeSet<&BlobKey> = freed_blobs.iter().collect();
    let mut counted = BTreeSet::new();
    let mut freed_bytes = 0;
    for run in &forgotten {
        for capture in index.restore_point_contents(run)? {
            if freed.contains(&capture.blob) && counted.insert(capture.blob.clone()) {
                freed_bytes += capture.stored_bytes;
            }
        }
    }
    Ok(PrunePlan {
        vault: vault.name.clone(),
        policy_empty: vault.retention.is_empty(),
        decision,
        forget_manifests,
        freed_blobs,
        freed_bytes,
    })
}
