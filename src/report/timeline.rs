//! What the HTML report draws beyond the [`Report`](super::Report) model: every restore point
//! of each vault with its status and retention's verdict on it (the reasons that keep it, or
//! the one that forgets it), and per object the restore points that hold it.
//!
//! Kept apart from the JSON model on purpose: the JSON form stays a summary of bounded size,
//! while this lists every point. Tools that want every point ask `kvkeep prune --dry-run
//! --output json`, which prints the same verdicts.

use chrono::{DateTime, Utc};

use crate::config::VaultConfig;
use crate::index::{Index, IndexError, ObjectPointsRecord, RunStatus};
use crate::model::{RunId, VaultName};
use crate::retention::{plan_prune, PrunePlan, Reason};

/// How many rows the HTML report's long tables (objects, points to forget, failing objects)
/// hold in all, shared between the vaults: a report over a thousand vaults stays a few
/// megabytes. Each vault gets at least [`MIN_ROWS_PER_VAULT`] and at most [`MAX_ROWS_PER_VAULT`].
pub const ROW_BUDGET: usize = 10_000;
/// The fewest rows per long table of one vault, however many vaults the report holds.
pub const MIN_ROWS_PER_VAULT: usize = 10;
/// The most rows per long table of one vault: beyond that a table is no longer read, and the
/// CLI listings (`kvkeep list objects`, `kvkeep prune --dry-run`) give everything.
pub const MAX_ROWS_PER_VAULT: usize = 500;
/// How many capture times the object table shows per object, newest first.
pub const CAPTURES_PER_OBJECT: usize = 3;

/// The row limit of each long table of one vault in a report over `vaults` vaults.
pub fn rows_per_vault(vaults: usize) -> usize {
    (ROW_BUDGET / vaults.max(1)).clamp(MIN_ROWS_PER_VAULT, MAX_ROWS_PER_VAULT)
}

/// Every vault's restore points and objects, for the timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The "now" it was built for (the report's).
    pub generated_at: i64,
    /// One entry per vault, in the order asked for.
    pub vaults: Vec<VaultTimeline>,
}

/// One vault's restore points and the objects they hold.
#[derive(Debug, Clone)]
pub struct VaultTimeline {
    /// The vault.
    pub vault: VaultName,
    /// Every restore point, oldest first.
    pub points: Vec<TimelinePoint>,
    /// The first objects (keys, secrets, certificates, each by name), at most
    /// [`rows_per_vault`] of them; none on a summary page (see `html::detail_for`).
    pub objects: Vec<ObjectPointsRecord>,
    /// How many objects the vault has in all.
    pub total_objects: u64,
}

/// One restore point and retention's verdict on it at report time.
#[derive(Debug, Clone)]
pub struct TimelinePoint {
    /// Its run.
    pub run: RunId,
    /// Its start (Unix seconds): the time `restore --at` selects it by.
    pub started_at: i64,
    /// How its run ended.
    pub status: RunStatus,
    /// Whether a prune now would keep it.
    pub keep: bool,
    /// Every reason that keeps it, or the one reason it would be forgotten.
    pub reasons: Vec<Reason>,
}

/// Builds the timeline of `vaults` from `index` at `now`: the same verdicts as `build_report`'s
/// expirations and `kvkeep prune --dry-run`, since all three come from the prune plan.
pub fn build_timeline(
    index: &Index,
    vaults: &[VaultConfig],
    now: DateTime<Utc>,
) -> Result<Timeline, IndexError> {
    let vaults = vaults
        .iter()
        .map(|vault| {
            let plan = plan_prune(index, vault, now)?;
            vault_timeline(index, vault, &plan, vaults.len())
        })
        .collect::<Result<_, IndexError>>()?;
    Ok(Timeline {
        generated_at: now.timestamp(),
        vaults,
    })
}

/// The timeline of one vault of a page of `page_vaults` vaults, from its prune `plan`.
pub(crate) fn vault_timeline(
    index: &Index,
    vault: &VaultConfig,
    plan: &PrunePlan,
    page_vaults: usize,
) -> Result<VaultTimeline, IndexError> {
    // The plan lists points newest first; a timeline reads left to right, oldest first.
    let points = plan
        .decision
        .points
        .iter()
        .rev()
        .map(|p| TimelinePoint {
            run: p.run.clone(),
            started_at: p.started_at.timestamp(),
            status: p.status,
            keep: p.keep,
            reasons: p.reasons.clone(),
        })
        .collect();
    // A summary page has no objects table: the query would be wasted.
    let (objects, total_objects) =
        if super::html::detail_for(page_vaults) == super::html::Detail::Summary {
            (Vec::new(), 0)
        } else {
            let rows = rows_per_vault(page_vaults);
            let page = index.object_points(&vault.name, rows, CAPTURES_PER_OBJECT)?;
            (page.objects, page.total_objects)
        };
    Ok(VaultTimeline {
        vault: vault.name.clone(),
        points,
        objects,
        total_objects,
    })
}
