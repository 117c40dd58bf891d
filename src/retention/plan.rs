//! The prune plan of a vault: its restore points from the index, the policy's verdict on each
//! with its reasons, and what forgetting the others would free (their manifests, and the blobs
//! no kept point holds). Computing it changes nothing: `kvkeep prune --dry-run` prints it, and
//! the prune that carries it out starts from it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{decide, Deletion, RestorePoint, RetentionDecision};
use crate::config::VaultConfig;
use crate::index::{HeldSpace, Index, IndexError};
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
    /// How many object blobs only the forgotten points hold (counted, not listed: a first
    /// prune of a long history frees a million; the prune itself asks the index which blobs
    /// no run holds once it has forgotten the points).
    pub freed_blobs: u64,
    /// Their stored (ciphertext) size.
    pub freed_bytes: u64,
}

/// The time zone the vault's calendar periods are counted in: its `timezone`, which both of its
/// schedules carry (UTC when it has neither, and then `timezone` is not used anywhere else).
fn time_zone(vault: &VaultConfig) -> Tz {
    vault
        .schedule
        .as_ref()
        .or(vault.verify_schedule.as_ref())
        .map_or(Tz::UTC, |s| s.tz())
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
    let forgotten_set: HashSet<&RunId> = forgotten.iter().collect();
    let forget_manifests = records
        .iter()
        .filter(|r| forgotten_set.contains(&r.run))
        .map(|r| r.manifest.clone())
        .collect();
    let freed = if forgotten.is_empty() {
        HeldSpace::default()
    } else {
        index.space_held_only_by(&vault.name, &forgotten)?
    };
    Ok(PrunePlan {
        vault: vault.name.clone(),
        policy_empty: vault.retention.is_empty(),
        decision,
        forget_manifests,
        freed_blobs: freed.blobs,
        freed_bytes: freed.stored_bytes,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::config::Config;
    use crate::index::{RunStats, RunStatus};

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, d, h, m, 0)
            .single()
            .expect("time")
    }

    /// A vault with no backup schedule still counts its days in its `timezone`: 23:30 UTC on
    /// 31 October is 1 November in Berlin, so the two evening points are two Berlin days.
    #[test]
    fn days_are_counted_in_the_vaults_time_zone_even_without_a_backup_schedule() {
        let text = r#"
[store]
type = "local"
path = "/tmp/store"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[defaults]
timezone = "Europe/Berlin"

[[vault]]
name = "kv-berlin"

[vault.retention]
keep_daily = 2
min_retention = "0s"
"#;
        let config = Config::parse(text, "t.toml", Path::new("/tmp"), &|_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .expect("config");
        let vault = &config.vaults[0];
        assert!(vault.schedule.is_none());
        let index = Index::open_in_memory().expect("index");
        let mut runs = Vec::new();
        for started in [utc(30, 10, 0), utc(31, 22, 30), utc(31, 23, 30)] {
            let run = RunId::random();
            let manifest: BlobKey =
                format!("manifests/kv-berlin/{}-{run}.age", started.timestamp())
                    .parse()
                    .expect("key");
            index
                .begin_run(&run, &vault.name, started.timestamp())
                .expect("begin");
            index
                .finish_run(
                    &run,
                    RunStatus::Completed,
                    &RunStats::default(),
                    started.timestamp() + 60,
                    Some(&manifest),
                )
                .expect("finish");
            runs.push(run);
        }
        let plan =
            plan_prune(&index, vault, utc(31, 23, 59) + chrono::TimeDelta::days(30)).expect("plan");
        let kept: Vec<&RunId> = plan.decision.kept().map(|p| &p.run).collect();
        // Berlin: 1 Nov (23:30Z) and 31 Oct (22:30Z). In UTC it would have been 31 Oct (23:30Z)
        // and 30 Oct (10:00Z).
        assert_eq!(kept, vec![&runs[2], &runs[1]]);
        assert_eq!(plan.forget_manifests.len(), 1);
    }
}
