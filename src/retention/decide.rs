//! The keep/forget decision: restore points + policy + now → a verdict and its reasons per point.
//!
//! Pure and deterministic, so prune can print it as a plan (`--dry-run`) before anything is
//! deleted, and tests can pin every rule. The walk follows restic's `forget`: points newest
//! first, each calendar rule keeps a point whose period differs from the period of the last
//! point it kept, until its count is used up; a count left over keeps the oldest point too.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use super::{CalendarRule, Period, Reason, RetentionPolicy};
use crate::index::RunStatus;
use crate::model::{ObjectKind, ObjectName, RunId};

/// One restore point as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    /// The run that made it.
    pub run: RunId,
    /// When the run started: the time periods and ages are taken from.
    pub started_at: DateTime<Utc>,
    /// How the run ended. Only `completed` and `partially_failed` count for the rules.
    pub status: RunStatus,
}

/// An object seen deleted from the vault, and the restore points that still hold a copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: ObjectName,
    /// When a run first saw it gone.
    pub seen_at: DateTime<Utc>,
    /// The restore points holding it, in any order; the newest of them is the one kept. Runs
    /// not among the decided points are ignored.
    pub holders: Vec<RunId>,
}

/// The verdict on one restore point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointDecision {
    /// The run.
    pub run: RunId,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How it ended.
    pub status: RunStatus,
    /// Keep it (true) or forget it.
    pub keep: bool,
    /// Every reason it is kept, in rule order; or the one reason it is forgotten.
    pub reasons: Vec<Reason>,
}

/// The verdict on every restore point of a vault, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDecision {
    /// One entry per input point, newest first (ties by run id, highest first).
    pub points: Vec<PointDecision>,
}

impl RetentionDecision {
    /// The points kept, newest first.
    pub fn kept(&self) -> impl Iterator<Item = &PointDecision> {
        self.points.iter().filter(|p| p.keep)
    }

    /// The points to forget, newest first.
    pub fn forgotten(&self) -> impl Iterator<Item = &PointDecision> {
        self.points.iter().filter(|p| !p.keep)
    }
}

/// Whether a run's status lets it count for the rules.
fn counts(status: RunStatus) -> bool {
    status.counts_for_retention()
}

/// The period of `rule` that `at` falls in, on the wall clock of `tz`.
pub fn period_of(rule: CalendarRule, at: DateTime<Utc>, tz: Tz) -> Period {
    let local = at.with_timezone(&tz);
    match rule {
        CalendarRule::Hourly => Period::Hour(local.date_naive(), local.hour()),
        CalendarRule::Daily => Period::Day(local.date_naive()),
        CalendarRule::Weekly => {
            let week = local.iso_week();
            Period::Week(week.year(), week.week())
        }
        CalendarRule::Monthly => Period::Month(local.year(), local.month()),
        CalendarRule::Yearly => Period::Year(local.year()),
    }
}

/// `now - d`, or `None` when that lies before any representable time (then everything is
/// younger than `d`).
fn cutoff(now: DateTime<Utc>, d: std::time::Duration) -> Option<DateTime<Utc>> {
    let d = TimeDelta::from_std(d).ok()?;
    now.checked_sub_signed(d)
}

/// Decides, for every restore point of one vault, whether to keep or forget it and why.
///
/// `tz` is the vault's time zone (calendar periods are its local hours, days, ISO weeks, months
/// and years); `now` is the time the decision is made at. Besides the policy's rules:
/// - an empty policy keeps everything ([`Reason::NoPolicy`]);
/// - the newest point that counts (completed or partially failed) is always kept;
/// - `failed` and `interrupted` points never count for the rules and are forgotten unless
///   younger than `min_retention` or the last holder of a deleted object;
/// - nothing younger than `min_retention` is forgotten;
/// - the newest holder of each object in `deletions` is kept until `keep_deleted_for` after its
///   deletion was seen.
pub fn decide(
    points: &[RestorePoint],
    deletions: &[Deletion],
    policy: &RetentionPolicy,
    tz: Tz,
    now: DateTime<Utc>,
) -> RetentionDecision {
    // Newest first; equal start times are ordered by run id so the outcome never depends on
    // the order the caller listed the points in.
    let mut order: Vec<&RestorePoint> = points.iter().collect();
    order.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.run.cmp(&a.run)));
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); order.len()];

    if policy.is_empty() {
        for r in &mut reasons {
            r.push(Reason::NoPolicy);
        }
    } else {
        select(&order, policy, tz, now, &mut reasons);
    }

    let by_run: HashMap<&RunId, usize> =
        order.iter().enumerate().map(|(i, p)| (&p.run, i)).collect();
    for d in deletions {
        if let Some(i) = last_holder(&order, &by_run, d, policy, now) {
            reasons[i].push(Reason::LastCopyOfDeleted {
                kind: d.kind,
                name: d.name.clone(),
                seen: d.seen_at.with_timezone(&tz).date_naive(),
            });
        }
    }

    let young_after = cutoff(now, policy.min_retention);
    for (i, p) in order.iter().enumerate() {
        if young_after.is_none_or(|c| p.started_at > c) {
            reasons[i].push(Reason::MinRetention);
        }
    }

    let points = order
        .into_iter()
        .zip(reasons)
        .map(|(p, mut reasons)| {
            let keep = !reasons.is_empty();
            if !keep {
                reasons.push(if counts(p.status) {
                    Reason::NotSelected
                } else {
                    Reason::NotCounted(p.status)
                });
            }
            PointDecision {
                run: p.run.clone(),
                started_at: p.started_at,
                status: p.status,
                keep,
                reasons,
            }
        })
        .collect();
    RetentionDecision { points }
}

/// Applies the newest-point guarantee and the `keep_*` rules to the counted points of `order`
/// (newest first), adding to `reasons` (indexed like `order`).
fn select(
    order: &[&RestorePoint],
    policy: &RetentionPolicy,
    tz: Tz,
    now: DateTime<Utc>,
    reasons: &mut [Vec<Reason>],
) {
    let counted: Vec<usize> = (0..order.len())
        .filter(|&i| counts(order[i].status))
        .collect();
    let Some(&newest) = counted.first() else {
        return;
    };
    reasons[newest].push(Reason::Newest);

    if let Some(n) = policy.keep_last.filter(|&n| n > 0) {
        for &i in counted.iter().take(n as usize) {
            reasons[i].push(Reason::Last(n));
        }
    }

    for rule in CalendarRule::ALL {
        let count = match rule {
            CalendarRule::Hourly => policy.keep_hourly,
            CalendarRule::Daily => policy.keep_daily,
            CalendarRule::Weekly => policy.keep_weekly,
            CalendarRule::Monthly => policy.keep_monthly,
            CalendarRule::Yearly => policy.keep_yearly,
        };
        let Some(mut left) = count.filter(|&n| n > 0) else {
            continue;
        };
        let mut last_kept: Option<Period> = None;
        let mut oldest_kept = false;
        for &i in &counted {
            if left == 0 {
                break;
            }
            let period = period_of(rule, order[i].started_at, tz);
            // Points are newest first, so the first point seen in a period is its newest.
            if last_kept != Some(period) {
                reasons[i].push(Reason::Period(period));
                last_kept = Some(period);
                left -= 1;
                oldest_kept = Some(&i) == counted.last();
            }
        }
        if left > 0 && !oldest_kept {
            if let Some(&oldest) = counted.last() {
                reasons[oldest].push(Reason::Oldest(rule));
            }
        }
    }

    if let Some(within) = policy.keep_within {
        let since = cutoff(now, within);
        for &i in &counted {
            if since.is_none_or(|c| order[i].started_at >= c) {
                reasons[i].push(Reason::Within(within));
            }
        }
    }
}

/// The index in `order` of the point to keep for deletion `d`: its newest holder that counts,
/// or, when no counted point holds it, its newest holder at all (keeping too much is the safe
/// mistake). `None` once `keep_deleted_for` has passed since the deletion was seen.
fn last_holder(
    order: &[&RestorePoint],
    by_run: &HashMap<&RunId, usize>,
    d: &Deletion,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Option<usize> {
    // Kept while `now - keep_deleted_for < seen_at`, written so it cannot overflow.
    if cutoff(now, policy.keep_deleted_for).is_some_and(|c| d.seen_at <= c) {
        return None;
    }
    // `order` is newest first, so the smallest index is the newest holder.
    let held: Vec<usize> = d
        .holders
        .iter()
        .filter_map(|run| by_run.get(run).copied())
        .collect();
    let newest_counted = held
        .iter()
        .copied()
        .filter(|&i| counts(order[i].status))
        .min();
    newest_counted.or_else(|| held.iter().copied().min())
}
