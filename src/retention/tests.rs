//! Pinned examples of the retention decision: every rule, the time-zone and ISO-week edges, and
//! the guarantees (newest, min_retention, deleted objects), each as an operator would read it.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::*;
use crate::index::RunStatus;
use crate::model::{ObjectKind, RunId};

const DAY: u64 = 86_400;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a pinned RFC 3339 time")
}

fn run(n: usize) -> RunId {
    format!("{n:016x}").parse().expect("16 hex digits")
}

/// Points from `(start, status)`, run ids numbered in list order.
fn points(list: &[(&str, RunStatus)]) -> Vec<RestorePoint> {
    list.iter()
        .enumerate()
        .map(|(i, (t, status))| RestorePoint {
            run: run(i + 1),
            started_at: at(t),
            status: *status,
        })
        .collect()
}

/// A policy with no rule and no minimum age, for tests to fill in.
fn rules() -> RetentionPolicy {
    RetentionPolicy {
        min_retention: Duration::ZERO,
        ..RetentionPolicy::default()
    }
}

/// The decision as lines `time keep|forget: reason, reason`, newest first.
fn table(d: &RetentionDecision) -> Vec<String> {
    d.points
        .iter()
        .map(|p| {
            let reasons: Vec<String> = p.reasons.iter().map(ToString::to_string).collect();
            format!(
                "{} {}: {}",
                p.started_at.format("%Y-%m-%dT%H:%MZ"),
                if p.keep { "keep" } else { "forget" },
                reasons.join(", ")
            )
        })
        .collect()
}

use RunStatus::{Completed, Failed, Interrupted, PartiallyFailed};

/// README example 1.
#[test]
fn daily_weekly_monthly_with_a_deleted_secret() {
    let pts = points(&[
        ("2026-11-03T10:00:00Z", Completed),
        ("2026-11-03T04:00:00Z", Failed),
        ("2026-11-03T02:00:00Z", Completed),
        ("2026-11-02T02:00:00Z", Completed),
        ("2026-11-01T02:00:00Z", PartiallyFailed),
        ("2026-10-31T02:00:00Z", Completed),
        ("2026-10-25T02:00:00Z", Completed),
        ("2026-10-18T02:00:00Z", Completed),
        ("2026-09-30T02:00:00Z", Completed),
        ("2026-09-15T02:00:00Z", Completed),
    ]);
    let deleted = Deletion {
        kind: ObjectKind::Secrets,
        name: "db-password".parse().expect("name"),
        seen_at: at("2026-10-25T02:00:00Z"),
        holders: vec![run(10), run(8), run(9)],
    };
    let policy = RetentionPolicy {
        keep_last: Some(2),
        keep_daily: Some(3),
        keep_weekly: Some(2),
        keep_monthly: Some(2),
        min_retention: Duration::from_secs(DAY),
        ..RetentionPolicy::default()
    };
    let d = decide(
        &pts,
        &[deleted],
        &policy,
        chrono_tz::UTC,
        at("2026-11-03T12:00:00Z"),
    );
    assert_eq!(
        table(&d),
        [
            "2026-11-03T10:00Z keep: newest, last 2, daily 2026-11-03, weekly 2026-W45, monthly 2026-11, younger than min_retention",
            "2026-11-03T04:00Z keep: younger than min_retention",
            "2026-11-03T02:00Z keep: last 2, younger than min_retention",
            "2026-11-02T02:00Z keep: daily 2026-11-02",
            "2026-11-01T02:00Z keep: daily 2026-11-01, weekly 2026-W44",
            "2026-10-31T02:00Z keep: monthly 2026-10",
            "2026-10-25T02:00Z forget: not selected by any rule",
            "2026-10-18T02:00Z keep: last copy of secrets/db-password deleted 2026-10-25",
            "2026-09-30T02:00Z forget: not selected by any rule",
            "2026-09-15T02:00Z forget: not selected by any rule",
        ]
    );
    assert_eq!(d.kept().count(), 7);
    let forgotten: Vec<&RunId> = d.forgotten().map(|p| &p.run).collect();
    assert_eq!(forgotten, [&run(7), &run(9), &run(10)]);
}

/// README example 2: months in the vault's time zone, a count larger than the history (the
/// oldest point is kept too), keep_within, and runs that did not succeed.
#[test]
fn monthly_in_berlin_with_oldest_and_within() {
    let pts = points(&[
        ("2026-11-03T01:00:00Z", Interrupted),
        ("2026-11-02T23:30:00Z", Completed),
        ("2026-11-02T06:00:00Z", Completed),
        ("2026-11-01T10:00:00Z", Completed),
        ("2026-10-31T23:30:00Z", Completed),
        ("2026-10-15T02:00:00Z", Completed),
        ("2026-09-20T02:00:00Z", Completed),
        ("2026-09-05T02:00:00Z", Completed),
        ("2026-09-01T02:00:00Z", Failed),
    ]);
    let policy = RetentionPolicy {
        keep_monthly: Some(6),
        keep_within: Some(Duration::from_secs(48 * 3_600)),
        min_retention: Duration::from_secs(DAY),
        ..RetentionPolicy::default()
    };
    let d = decide(
        &pts,
        &[],
        &policy,
        chrono_tz::Europe::Berlin,
        at("2026-11-03T12:00:00Z"),
    );
    assert_eq!(
        table(&d),
        [
            "2026-11-03T01:00Z keep: younger than min_retention",
            "2026-11-02T23:30Z keep: newest, monthly 2026-11, within 48h, younger than min_retention",
            "2026-11-02T06:00Z keep: within 48h",
            "2026-11-01T10:00Z forget: not selected by any rule",
            // 00:30 on 1 November in Berlin: November, whose newest point is already kept.
            "2026-10-31T23:30Z forget: not selected by any rule",
            "2026-10-15T02:00Z keep: monthly 2026-10",
            "2026-09-20T02:00Z keep: monthly 2026-09",
            "2026-09-05T02:00Z keep: oldest monthly",
            "2026-09-01T02:00Z forget: failed runs are not counted by the policy",
        ]
    );
}

#[test]
fn periods_are_taken_on_the_vaults_wall_clock() {
    let berlin = chrono_tz::Europe::Berlin;
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let cases: [(&str, Tz, CalendarRule, &str); 11] = [
        // Spring forward: 00:30Z is 01:30 CET, 01:30Z is already 03:30 CEST.
        (
            "2026-03-29T00:30:00Z",
            berlin,
            CalendarRule::Hourly,
            "2026-03-29 01:00",
        ),
        (
            "2026-03-29T01:30:00Z",
            berlin,
            CalendarRule::Hourly,
            "2026-03-29 03:00",
        ),
        // 23:30Z on the 28th is the 29th in Berlin, not in UTC.
        (
            "2026-03-28T23:30:00Z",
            berlin,
            CalendarRule::Daily,
            "2026-03-29",
        ),
        (
            "2026-03-28T23:30:00Z",
            chrono_tz::UTC,
            CalendarRule::Daily,
            "2026-03-28",
        ),
        // Fall back: 02:30 CEST and 02:30 CET are the same hourly period.
        (
            "2026-10-25T00:30:00Z",
            berlin,
            CalendarRule::Hourly,
            "2026-10-25 02:00",
        ),
        (
            "2026-10-25T01:30:00Z",
            berlin,
            CalendarRule::Hourly,
            "2026-10-25 02:00",
        ),
        // ISO weeks: week 1 of 2026 starts on Monday 29 December 2025.
        (
            "2025-12-28T12:00:00Z",
            chrono_tz::UTC,
            CalendarRule::Weekly,
            "2025-W52",
        ),
        (
            "2025-12-29T12:00:00Z",
            chrono_tz::UTC,
            CalendarRule::Weekly,
            "2026-W01",
        ),
        (
            "2026-01-04T12:00:00Z",
            chrono_tz::UTC,
            CalendarRule::Weekly,
            "2026-W01",
        ),
        ("2025-12-31T23:30:00Z", berlin, CalendarRule::Yearly, "2026"),
        (
            "2026-01-31T23:30:00Z",
            berlin,
            CalendarRule::Monthly,
            "2026-02",
        ),
    ];
    for (t, tz, rule, want) in cases {
        assert_eq!(
            period_of(rule, at(t), tz).to_string(),
            want,
            "{t} {rule} in {tz}"
        );
    }
    assert_eq!(
        period_of(CalendarRule::Daily, at("2026-10-25T22:30:00Z"), berlin),
        Period::Day(date("2026-10-25"))
    );
}

#[test]
fn a_dst_change_makes_no_duplicate_hour_or_day() {
    let berlin = chrono_tz::Europe::Berlin;
    // 25 hours apart, one day in Berlin (the day the clocks go back).
    let pts = points(&[
        ("2026-10-25T22:30:00Z", Completed),
        ("2026-10-24T22:30:00Z", Completed),
        ("2026-10-23T22:30:00Z", Completed),
    ]);
    let policy = RetentionPolicy {
        keep_daily: Some(2),
        ..rules()
    };
    let d = decide(&pts, &[], &policy, berlin, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        table(&d),
        [
            "2026-10-25T22:30Z keep: newest, daily 2026-10-25",
            "2026-10-24T22:30Z forget: not selected by any rule",
            "2026-10-23T22:30Z keep: daily 2026-10-24",
        ]
    );

    // The repeated hour 02:00–03:00 is one hourly period.
    let pts = points(&[
        ("2026-10-25T01:30:00Z", Completed),
        ("2026-10-25T00:30:00Z", Completed),
        ("2026-10-24T23:30:00Z", Completed),
    ]);
    let policy = RetentionPolicy {
        keep_hourly: Some(2),
        ..rules()
    };
    let d = decide(&pts, &[], &policy, berlin, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        table(&d),
        [
            "2026-10-25T01:30Z keep: newest, hourly 2026-10-25 02:00",
            "2026-10-25T00:30Z forget: not selected by any rule",
            "2026-10-24T23:30Z keep: hourly 2026-10-25 01:00",
        ]
    );
}

#[test]
fn a_count_larger_than_the_periods_keeps_the_oldest_point_too() {
    // Four points in one month and keep_monthly = 4: the month's newest, and the oldest so the
    // history reaches back as far as it can (as restic's forget does).
    let pts = points(&[
        ("2026-01-04T20:20:00Z", Completed),
        ("2026-01-04T20:09:00Z", Completed),
        ("2026-01-03T01:04:00Z", Completed),
        ("2026-01-02T13:42:00Z", Completed),
    ]);
    let policy = RetentionPolicy {
        keep_monthly: Some(4),
        ..rules()
    };
    let d = decide(
        &pts,
        &[],
        &policy,
        chrono_tz::UTC,
        at("2026-06-01T00:00:00Z"),
    );
    assert_eq!(
        table(&d),
        [
            "2026-01-04T20:20Z keep: newest, monthly 2026-01",
            "2026-01-04T20:09Z forget: not selected by any rule",
            "2026-01-03T01:04Z forget: not selected by any rule",
            "2026-01-02T13:42Z keep: oldest monthly",
        ]
    );
    // When the oldest point wins its own period, it needs no second reason; when the count is
    // used up, the oldest is not kept for it.
    let pts = points(&[
        ("2026-03-01T00:00:00Z", Completed),
        ("2026-02-01T00:00:00Z", Completed),
        ("2026-01-01T00:00:00Z", Completed),
    ]);
    for (n, oldest) in [
        (5, "keep: monthly 2026-01"),
        (2, "forget: not selected by any rule"),
    ] {
        let policy = RetentionPolicy {
            keep_monthly: Some(n),
            ..rules()
        };
        let d = decide(
            &pts,
            &[],
            &policy,
            chrono_tz::UTC,
            at("2026-06-01T00:00:00Z"),
        );
        assert_eq!(
            table(&d)[2],
            format!("2026-01-01T00:00Z {oldest}"),
            "keep_monthly = {n}"
        );
    }
}

#[test]
fn failed_and_interrupted_runs_never_displace_a_good_one() {
    let pts = points(&[
        ("2026-11-03T02:00:00Z", Failed),
        ("2026-11-02T02:00:00Z", Interrupted),
        ("2026-11-01T02:00:00Z", Completed),
        ("2026-10-31T02:00:00Z", PartiallyFailed),
        ("2026-10-30T02:00:00Z", Completed),
    ]);
    let policy = RetentionPolicy {
        keep_last: Some(2),
        keep_daily: Some(1),
        ..rules()
    };
    let d = decide(
        &pts,
        &[],
        &policy,
        chrono_tz::UTC,
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(
        table(&d),
        [
            "2026-11-03T02:00Z forget: failed runs are not counted by the policy",
            "2026-11-02T02:00Z forget: interrupted runs are not counted by the policy",
            "2026-11-01T02:00Z keep: newest, last 2, daily 2026-11-01",
            "2026-10-31T02:00Z keep: last 2",
            "2026-10-30T02:00Z forget: not selected by any rule",
        ]
    );
}

#[test]
fn the_newest_good_point_is_kept_however_old() {
    let pts = points(&[
        ("2025-01-01T00:00:00Z", Failed),
        ("2024-01-01T00:00:00Z", Completed),
        ("2023-01-01T00:00:00Z", Completed),
    ]);
    let policy = RetentionPolicy {
        keep_within: Some(Duration::from_secs(7 * DAY)),
        ..RetentionPolicy::default()
    };
    let d = decide(
        &pts,
        &[],
        &policy,
        chrono_tz::UTC,
        at("2026-12-01T00:00:00Z"),
    );
    let kept: Vec<&RunId> = d.kept().map(|p| &p.run).collect();
    assert_eq!(kept, [&run(2)]);
    assert_eq!(d.points[1].reasons, [Reason::Newest]);
}

#[test]
fn an_empty_policy_keeps_everything_and_says_so() {
    let pts = points(&[
        ("2020-01-01T00:00:00Z", Failed),
        ("2019-01-01T00:00:00Z", Completed),
        ("2018-01-01T00:00:00Z", Interrupted),
    ]);
    let policy = RetentionPolicy::default();
    assert!(policy.is_empty());
    let d = decide(
        &pts,
        &[],
        &policy,
        chrono_tz::UTC,
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(d.forgotten().count(), 0);
    for p in &d.points {
        assert_eq!(p.reasons, [Reason::NoPolicy]);
    }
    assert_eq!(
        Reason::NoPolicy.to_string(),
        "no retention policy: keeping everything"
    );
    let one_rule = RetentionPolicy {
        keep_within: Some(Duration::from_secs(DAY)),
        ..RetentionPolicy::default()
    };
    assert!(!one_rule.is_empty());
    let zero = RetentionPolicy {
        keep_daily: Some(0),
        ..RetentionPolicy::default()
    };
    assert!(
        zero.is_empty(),
        "a count of 0 selects nothing and is no rule"
    );
}

#[test]
fn keep_within_and_min_retention_are_measured_from_now() {
    let now = at("2026-11-03T12:00:00Z");
    let pts = points(&[
        ("2026-11-03T11:00:00Z", Completed),
        ("2026-11-01T12:00:01Z", Completed),
        ("2026-11-01T12:00:00Z", Completed),
        ("2026-11-01T11:59:59Z", Completed),
        ("2026-10-27T12:00:01Z", Failed),
        ("2026-10-27T12:00:00Z", Failed),
    ]);
    let policy = RetentionPolicy {
        keep_within: Some(Duration::from_secs(2 * DAY)),
        min_retention: Duration::from_secs(7 * DAY),
        ..RetentionPolicy::default()
    };
    let d = decide(&pts, &[], &policy, chrono_tz::UTC, now);
    let within = |i: usize| {
        d.points[i]
            .reasons
            .contains(&Reason::Within(Duration::from_secs(2 * DAY)))
    };
    // keep_within includes its boundary: started_at >= now - d.
    assert!(within(1) && within(2) && !within(3));
    // min_retention protects what is strictly younger; a failed run exactly 7 days old goes.
    assert_eq!(d.points[4].reasons, [Reason::MinRetention]);
    assert!(!d.points[5].keep);
    assert!(d.points[..5].iter().all(|p| p.keep));
}

#[test]
fn the_newest_holder_of_a_deleted_object_is_kept_for_keep_deleted_for() {
    let pts = points(&[
        ("2026-10-03T02:00:00Z", Completed),
        ("2026-10-02T02:00:00Z", Failed),
        ("2026-10-01T02:00:00Z", Completed),
        ("2026-09-30T02:00:00Z", Completed),
    ]);
    let deletion = |holders: Vec<RunId>| Deletion {
        kind: ObjectKind::Secrets,
        name: "db-password".parse().expect("name"),
        seen_at: at("2026-10-02T10:00:00Z"),
        holders,
    };
    let policy = RetentionPolicy {
        keep_last: Some(1),
        keep_deleted_for: Duration::from_secs(120 * DAY),
        ..rules()
    };
    let kept = |deletions: &[Deletion], now: &str| -> Vec<RunId> {
        decide(&pts, deletions, &policy, chrono_tz::UTC, at(now))
            .kept()
            .map(|p| p.run.clone())
            .collect()
    };
    // Held by the failed run and the two before it: the newest good holder is kept.
    let d = [deletion(vec![run(4), run(2), run(3)])];
    assert_eq!(kept(&d, "2026-12-01T00:00:00Z"), [run(1), run(3)]);
    let decision = decide(
        &pts,
        &d,
        &policy,
        chrono_tz::UTC,
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(
        decision.points[2].reasons[0].to_string(),
        "last copy of secrets/db-password deleted 2026-10-02"
    );
    // Until 120 days after the deletion was seen, not a second longer.
    assert_eq!(kept(&d, "2027-01-30T09:59:59Z"), [run(1), run(3)]);
    assert_eq!(kept(&d, "2027-01-30T10:00:00Z"), [run(1)]);
    // Only a failed run holds it: that run is kept rather than nothing.
    let d = [deletion(vec![run(2)])];
    assert_eq!(kept(&d, "2026-12-01T00:00:00Z"), [run(1), run(2)]);
    // Holders that are not restore points any more are ignored.
    let d = [deletion(vec![run(99)])];
    assert_eq!(kept(&d, "2026-12-01T00:00:00Z"), [run(1)]);
}

#[test]
fn the_callers_order_does_not_matter() {
    let mut pts = points(&[
        ("2026-11-03T02:00:00Z", Completed),
        ("2026-11-03T02:00:00Z", Completed),
        ("2026-11-02T02:00:00Z", Completed),
        ("2026-11-01T02:00:00Z", Failed),
    ]);
    let policy = RetentionPolicy {
        keep_daily: Some(2),
        ..rules()
    };
    let now = at("2026-12-01T00:00:00Z");
    let want = decide(&pts, &[], &policy, chrono_tz::UTC, now);
    pts.reverse();
    assert_eq!(decide(&pts, &[], &policy, chrono_tz::UTC, now), want);
    pts.swap(0, 2);
    assert_eq!(decide(&pts, &[], &policy, chrono_tz::UTC, now), want);
    // Of two points started at the same second, the higher run id counts as the newer.
    assert_eq!(want.points[0].run, run(2));
}

#[test]
fn reasons_read_as_documented() {
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let cases = [
        (Reason::Newest, "newest"),
        (Reason::Last(5), "last 5"),
        (
            Reason::Period(Period::Hour(date("2026-11-03"), 7)),
            "hourly 2026-11-03 07:00",
        ),
        (
            Reason::Period(Period::Day(date("2026-11-03"))),
            "daily 2026-11-03",
        ),
        (Reason::Period(Period::Week(2026, 1)), "weekly 2026-W01"),
        (Reason::Period(Period::Month(2026, 11)), "monthly 2026-11"),
        (Reason::Period(Period::Year(2026)), "yearly 2026"),
        (Reason::Oldest(CalendarRule::Weekly), "oldest weekly"),
        (
            Reason::Within(Duration::from_secs(48 * 3_600)),
            "within 48h",
        ),
        (Reason::Within(Duration::from_secs(30 * DAY)), "within 30d"),
        (Reason::MinRetention, "younger than min_retention"),
        (
            Reason::NotCounted(RunStatus::Interrupted),
            "interrupted runs are not counted by the policy",
        ),
        (Reason::NotSelected, "not selected by any rule"),
    ];
    for (reason, want) in cases {
        assert_eq!(reason.to_string(), want);
        assert_eq!(serde_json::to_value(&reason).expect("json"), want);
    }
    for (secs, want) in [
        (90, "90s"),
        (600, "10m"),
        (86_400, "24h"),
        (3 * 86_400, "3d"),
        (5_400, "90m"),
    ] {
        assert_eq!(short_duration(Duration::from_secs(secs)), want);
    }
}

#[test]
fn the_policy_shows_its_durations_as_words() {
    let policy = RetentionPolicy {
        keep_daily: Some(7),
        keep_within: Some(Duration::from_secs(2 * DAY)),
        ..RetentionPolicy::default()
    };
    let shown = serde_json::to_value(&policy).expect("json");
    assert_eq!(shown["keep_daily"], 7);
    assert_eq!(shown["keep_weekly"], serde_json::Value::Null);
    assert_eq!(shown["keep_within"], "48h");
    assert_eq!(shown["min_retention"], "7d");
    assert_eq!(shown["keep_deleted_for"], "120d");
}
