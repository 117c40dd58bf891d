//! Properties of the retention decision over generated histories: the guarantees an operator
//! relies on must hold for every policy, not only for the pinned examples.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;
use crate::index::RunStatus;
use crate::model::{ObjectKind, RunId};

/// Zones whose offsets are whole hours, so a UTC hour is always inside one local hour (the
/// stability property adds points "in the same hour").
const ZONES: [Tz; 3] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
];

fn now() -> DateTime<Utc> {
    "2026-11-03T12:00:00Z".parse().expect("a pinned time")
}

fn run(n: usize) -> RunId {
    format!("{n:016x}").parse().expect("16 hex digits")
}

fn status() -> impl Strategy<Value = RunStatus> {
    prop_oneof![
        6 => Just(RunStatus::Completed),
        2 => Just(RunStatus::PartiallyFailed),
        1 => Just(RunStatus::Failed),
        1 => Just(RunStatus::Interrupted),
    ]
}

/// Up to 60 points spread over the three years before now (and a few minutes after it, as a
/// clock a little ahead would make them).
fn history() -> impl Strategy<Value = Vec<RestorePoint>> {
    prop::collection::vec((-10i64..3 * 365 * 24 * 60, status()), 0..60).prop_map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(i, (minutes_ago, status))| RestorePoint {
                run: run(i + 1),
                started_at: now() - TimeDelta::minutes(minutes_ago),
                status,
            })
            .collect()
    })
}

fn count() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![2 => Just(None), 1 => (1u32..12).prop_map(Some)]
}

fn days(max: u64) -> impl Strategy<Value = Duration> {
    (0..max * 24).prop_map(|h| Duration::from_secs(h * 3_600))
}

fn policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        [count(), count(), count(), count(), count(), count()],
        prop::option::of(days(60)),
        days(30),
        days(200),
    )
        .prop_map(
            |(c, keep_within, min_retention, keep_deleted_for)| RetentionPolicy {
                keep_last: c[0],
                keep_hourly: c[1],
                keep_daily: c[2],
                keep_weekly: c[3],
                keep_monthly: c[4],
                keep_yearly: c[5],
                keep_within,
                min_retention,
                keep_deleted_for,
                ..RetentionPolicy::default()
            },
        )
}

/// Deletions held by some of the points (run ids 1..=60; absent ones are ignored).
fn deletions() -> impl Strategy<Value = Vec<Deletion>> {
    prop::collection::vec(
        (0i64..400 * 24, prop::collection::vec(1usize..=60, 0..5)),
        0..4,
    )
    .prop_map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(i, (hours_ago, holders))| Deletion {
                kind: ObjectKind::Secrets,
                name: format!("secret-{i}").parse().expect("name"),
                seen_at: now() - TimeDelta::hours(hours_ago),
                holders: holders.into_iter().map(run).collect(),
            })
            .collect()
    })
}

fn counted(p: &RestorePoint) -> bool {
    matches!(p.status, RunStatus::Completed | RunStatus::PartiallyFailed)
}

proptest! {
    #[test]
    fn never_forgets_a_point_younger_than_min_retention(
        points in history(), dels in deletions(), policy in policy(), tz in 0usize..3,
    ) {
        let d = decide(&points, &dels, &policy, ZONES[tz], now());
        let min = TimeDelta::from_std(policy.min_retention).expect("small");
        for p in d.forgotten() {
            prop_assert!(now() - p.started_at >= min, "{} forgotten at age {}", p.run, now() - p.started_at);
        }
        prop_assert_eq!(d.points.len(), points.len());
    }

    #[test]
    fn never_forgets_the_newest_good_point(
        points in history(), dels in deletions(), policy in policy(), tz in 0usize..3,
    ) {
        let d = decide(&points, &dels, &policy, ZONES[tz], now());
        let newest = points
            .iter()
            .filter(|p| counted(p))
            .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.run.cmp(&b.run)));
        if let Some(newest) = newest {
            let verdict = d.points.iter().find(|p| p.run == newest.run).expect("decided");
            prop_assert!(verdict.keep);
        }
    }

    #[test]
    fn an_empty_policy_keeps_everything(
        points in history(), dels in deletions(), policy in policy(), tz in 0usize..3,
    ) {
        let empty = RetentionPolicy {
            min_retention: policy.min_retention,
            keep_deleted_for: policy.keep_deleted_for,
            ..RetentionPolicy::default()
        };
        let d = decide(&points, &dels, &empty, ZONES[tz], now());
        prop_assert_eq!(d.forgotten().count(), 0);
        prop_assert!(d.points.iter().all(|p| p.reasons.contains(&Reason::NoPolicy)));
    }

    /// Deciding again over what was kept keeps all of it, for the same reasons: prune run twice
    /// deletes nothing the second time.
    #[test]
    fn is_idempotent(
        points in history(), dels in deletions(), policy in policy(), tz in 0usize..3,
    ) {
        let first = decide(&points, &dels, &policy, ZONES[tz], now());
        let kept: Vec<RestorePoint> = first
            .kept()
            .map(|p| RestorePoint { run: p.run.clone(), started_at: p.started_at, status: p.status })
            .collect();
        let second = decide(&kept, &dels, &policy, ZONES[tz], now());
        let first_kept: Vec<PointDecision> = first.kept().cloned().collect();
        prop_assert_eq!(second.points, first_kept);
    }

    /// More backups inside periods that already have one (a second run in the same hour) never
    /// cost an older period its kept point: every period kept before is still kept, and a
    /// period's winner stays kept unless a newer point of that period arrived to replace it.
    #[test]
    fn adding_points_never_unkeeps_an_older_period_winner(
        points in history(),
        extra in prop::collection::vec((any::<prop::sample::Index>(), 0u32..3_600), 1..8),
        policy in policy(),
        tz in 0usize..3,
    ) {
        let policy = RetentionPolicy { keep_last: None, ..policy };
        let tz = ZONES[tz];
        let good: Vec<&RestorePoint> = points.iter().filter(|p| counted(p)).collect();
        prop_assume!(!good.is_empty());
        let added: Vec<RestorePoint> = extra
            .iter()
            .enumerate()
            .map(|(i, (which, second))| {
                let host = which.get(&good);
                let hour = host.started_at.with_minute(0).and_then(|t| t.with_second(0)).expect("an hour start");
                RestorePoint {
                    run: run(1_000 + i),
                    started_at: hour + TimeDelta::seconds(i64::from(*second)),
                    status: RunStatus::Completed,
                }
            })
            .collect();
        let before = decide(&points, &[], &policy, tz, now());
        let mut more = points.clone();
        more.extend(added.iter().cloned());
        let after = decide(&more, &[], &policy, tz, now());

        let periods = |d: &RetentionDecision| -> Vec<Period> {
            let mut v: Vec<Period> = d.kept().flat_map(|p| p.reasons.iter()).filter_map(|r| match r {
                Reason::Period(p) => Some(*p),
                _ => None,
            }).collect();
            v.sort();
            v
        };
        prop_assert_eq!(periods(&before), periods(&after));

        for p in before.kept() {
            for r in &p.reasons {
                let Reason::Period(period) = r else { continue };
                let replaced = added.iter().any(|a| {
                    period_of(period.rule(), a.started_at, tz) == *period
                        && (a.started_at, &a.run) > (p.started_at, &p.run)
                });
                if !replaced {
                    let now_verdict = after.points.iter().find(|q| q.run == p.run).expect("still there");
                    prop_assert!(now_verdict.keep && now_verdict.reasons.contains(r), "{} lost {}", p.run, r);
                }
            }
        }
    }
}
