//! Whether a vault meets its recovery point objective: the age of its newest restore point
//! against its backup schedule and its optional `rpo` target. Pure: "now" and the newest point
//! are passed in.
//!
//! The rules (also in the README):
//! - `never`: no restore point that counts (completed or partially failed). A `failed` or
//!   `interrupted` run that wrote a manifest is a restore point, but retention does not count
//!   it and neither does the RPO: it may hold little that is newer than the point before it.
//! - `breach`: `rpo` is set and the newest point is older than it.
//! - `late`: the vault has a schedule and the newest point is older than one schedule period
//!   plus the vault's `jitter` plus a grace of a tenth of the period (at least 5 minutes). The
//!   period is the gap between the schedule's fire time at or before now and the next one, so a
//!   weekday schedule is not late over the weekend. The grace covers the time a run takes and
//!   how late it starts: the point's time is its start, and the next point exists only once
//!   that run has committed.
//! - `ok` otherwise; a vault without a schedule and without `rpo` is never late.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::scheduler::Timetable;

/// The smallest grace before a vault counts as late, for schedules of a few minutes.
pub const MIN_GRACE: Duration = Duration::from_secs(5 * 60);

/// A vault's RPO status, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpoStatus {
    /// No restore point that counts.
    Never,
    /// Older than `rpo`.
    Breach,
    /// Older than the schedule allows.
    Late,
    /// Fresh enough.
    Ok,
}

impl RpoStatus {
    /// The word in every output form.
    pub fn as_str(self) -> &'static str {
        match self {
            RpoStatus::Never => "never",
            RpoStatus::Breach => "breach",
            RpoStatus::Late => "late",
            RpoStatus::Ok => "ok",
        }
    }
}

/// The RPO part of a vault's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpoReport {
    /// The verdict.
    pub status: RpoStatus,
    /// Start of the newest restore point that counts.
    #[serde(serialize_with = "super::time::optional")]
    pub newest_point: Option<i64>,
    /// Its age at report time, in seconds.
    pub age_seconds: Option<u64>,
    /// The backup schedule, as configured; `None` for an on-demand vault.
    pub schedule: Option<String>,
    /// The schedule's current period: next fire time minus previous one.
    pub period_seconds: Option<u64>,
    /// Older than this is `late`: period + jitter + grace.
    pub late_after_seconds: Option<u64>,
    /// The configured `rpo`.
    pub rpo_seconds: Option<u64>,
    /// The verdict in words.
    pub reason: String,
}

/// The schedule's period around `now`: from its fire time at or before `now` to the next one.
pub fn schedule_period(timetable: &Timetable, now: DateTime<Utc>) -> Option<Duration> {
    let previous = timetable.previous_due(now)?;
    let next = timetable.next_due(now)?;
    (next - previous).to_std().ok()
}

/// How old the newest point may be before the vault is late, for a schedule `period` and a
/// `jitter` bound.
pub fn late_after(period: Duration, jitter: Duration) -> Duration {
    period + jitter + (period / 10).max(MIN_GRACE)
}

/// The verdict for a vault whose newest counted restore point started at `newest` (Unix
/// seconds), with the schedule `schedule` (its expression and current period), `jitter` and
/// `rpo`, at `now`.
pub fn assess(
    newest: Option<i64>,
    schedule: Option<(&str, Duration)>,
    jitter: Duration,
    rpo: Option<Duration>,
    now: i64,
) -> RpoReport {
    let late = schedule.map(|(_, period)| late_after(period, jitter));
    let mut report = RpoReport {
        status: RpoStatus::Ok,
        newest_point: newest,
        age_seconds: None,
        schedule: schedule.map(|(expr, _)| expr.to_string()),
        period_seconds: schedule.map(|(_, period)| period.as_secs()),
        late_after_seconds: late.map(|d| d.as_secs()),
        rpo_seconds: rpo.map(|d| d.as_secs()),
        reason: String::new(),
    };
    let Some(newest) = newest else {
        report.status = RpoStatus::Never;
        report.reason = "no completed or partially failed restore point yet".into();
        return report;
    };
    // A point from the future (a clock step back) is as fresh as can be, not negative.
    let age = Duration::from_secs(u64::try_from(now.saturating_sub(newest)).unwrap_or(0));
    report.age_seconds = Some(age.as_secs());
    let old = format!("newest restore point is {} old", super::human_duration(age));
    (report.status, report.reason) = match (rpo, late, schedule) {
        (Some(rpo), _, _) if age > rpo => (
            RpoStatus::Breach,
            format!("{old}, over the rpo of {}", super::human_duration(rpo)),
        ),
        (_, Some(late), Some((_, period))) if age > late => (
            RpoStatus::Late,
            format!(
                "{old}; the schedule fires every {}, late after {}",
                super::human_duration(period),
                super::human_duration(late)
            ),
        ),
        (None, None, _) => (
            RpoStatus::Ok,
            format!("{old}; on demand and no rpo set, so never late"),
        ),
        _ => (RpoStatus::Ok, old),
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600;
    const DAY: Duration = Duration::from_secs(86_400);
    const NOW: i64 = 1_800_000_000;

    fn status(age: u64, schedule: Option<Duration>, rpo: Option<Duration>) -> RpoStatus {
        let newest = NOW - i64::try_from(age).expect("age");
        assess(
            Some(newest),
            schedule.map(|p| ("@daily", p)),
            Duration::from_secs(600),
            rpo,
            NOW,
        )
        .status
    }

    #[test]
    fn late_starts_one_second_after_period_plus_jitter_plus_a_tenth() {
        // Daily with 10 minutes of jitter: 24h + 10m + 2h24m = 26h34m.
        let limit = 24 * HOUR + 600 + 144 * 60;
        assert_eq!(late_after(DAY, Duration::from_secs(600)).as_secs(), limit);
        assert_eq!(status(limit, Some(DAY), None), RpoStatus::Ok);
        assert_eq!(status(limit + 1, Some(DAY), None), RpoStatus::Late);
    }

    #[test]
    fn short_schedules_get_at_least_five_minutes_of_grace() {
        let every_minute = Duration::from_secs(60);
        assert_eq!(
            late_after(every_minute, Duration::ZERO),
            Duration::from_secs(360)
        );
    }

    #[test]
    fn breach_starts_one_second_past_the_rpo_and_outranks_late() {
        let rpo = Duration::from_secs(26 * HOUR);
        assert_eq!(status(26 * HOUR, Some(DAY), Some(rpo)), RpoStatus::Ok);
        assert_eq!(
            status(26 * HOUR + 1, Some(DAY), Some(rpo)),
            RpoStatus::Breach
        );
        // Far past both: breach, the worse of the two, is what is reported.
        assert_eq!(
            status(10 * 24 * HOUR, Some(DAY), Some(rpo)),
            RpoStatus::Breach
        );
        // An rpo above the late limit: late first, then breach.
        let loose = Duration::from_secs(48 * HOUR);
        assert_eq!(status(30 * HOUR, Some(DAY), Some(loose)), RpoStatus::Late);
        assert_eq!(status(49 * HOUR, Some(DAY), Some(loose)), RpoStatus::Breach);
    }

    #[test]
    fn no_restore_point_is_never_whatever_the_targets() {
        let r = assess(None, Some(("@daily", DAY)), Duration::ZERO, Some(DAY), NOW);
        assert_eq!(r.status, RpoStatus::Never);
        assert_eq!(r.age_seconds, None);
        assert!(r.reason.contains("no completed"), "{}", r.reason);
    }

    #[test]
    fn an_on_demand_vault_without_rpo_is_never_late() {
        let r = assess(Some(NOW - 400 * 86_400), None, Duration::ZERO, None, NOW);
        assert_eq!(r.status, RpoStatus::Ok);
        assert!(r.reason.contains("never late"), "{}", r.reason);
        // With an rpo it can still breach.
        assert_eq!(status(2 * 24 * HOUR, None, Some(DAY)), RpoStatus::Breach);
    }

    #[test]
    fn a_point_from_the_future_is_zero_old() {
        let r = assess(
            Some(NOW + 60),
            Some(("@daily", DAY)),
            Duration::ZERO,
            None,
            NOW,
        );
        assert_eq!((r.status, r.age_seconds), (RpoStatus::Ok, Some(0)));
    }

    #[test]
    fn a_weekday_schedule_is_not_late_over_the_weekend() {
        use crate::scheduler::Schedule;
        use chrono::TimeZone;
        let weekdays = Timetable::new(
            Schedule::parse("0 2 * * 1-5", "UTC").expect("schedule"),
            Duration::ZERO,
        );
        // Sunday 2026-11-29 20:00: the last run was Friday 02:00, the next is Monday 02:00.
        let sunday = Utc
            .with_ymd_and_hms(2026, 11, 29, 20, 0, 0)
            .single()
            .expect("time");
        let period = schedule_period(&weekdays, sunday).expect("period");
        assert_eq!(period, 3 * DAY);
        let friday = Utc
            .with_ymd_and_hms(2026, 11, 27, 2, 0, 0)
            .single()
            .expect("time");
        let r = assess(
            Some(friday.timestamp()),
            Some(("0 2 * * 1-5", period)),
            Duration::ZERO,
            None,
            sunday.timestamp(),
        );
        assert_eq!(r.status, RpoStatus::Ok, "{}", r.reason);
    }
}
