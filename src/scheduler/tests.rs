//! Table tests of schedules: classic cron fields, aliases, `@every`, and fire times across
//! daylight-saving changes pinned in three zones (Berlin and New York shift by an hour, Lord Howe
//! by thirty minutes), both transitions each.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::model::VaultName;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid date")
}

#[test]
fn classic_five_field_expressions_fire_when_cron_would() {
    let s = Schedule::parse("30 2 * * *", "UTC").expect("valid");
    assert_eq!(
        s.next_after(at(2026, 1, 1, 0, 0)),
        Some(at(2026, 1, 1, 2, 30))
    );
    assert_eq!(
        s.next_after(at(2026, 1, 1, 2, 30)),
        Some(at(2026, 1, 2, 2, 30))
    );
}

#[test]
fn sunday_is_zero_or_seven_as_in_classic_cron() {
    // 2026-01-04 is a Sunday.
    for expr in ["0 0 * * 0", "0 0 * * 7", "@weekly"] {
        let s = Schedule::parse(expr, "UTC").expect("valid");
        assert_eq!(
            s.next_after(at(2026, 1, 1, 0, 0)),
            Some(at(2026, 1, 4, 0, 0)),
            "{expr}"
        );
    }
    let weekdays = Schedule::parse("0 6 * * 1-5", "UTC").expect("valid");
    // Friday 2026-01-02 06:00 → Monday 2026-01-05 06:00.
    assert_eq!(
        weekdays.next_after(at(2026, 1, 2, 6, 0)),
        Some(at(2026, 1, 5, 6, 0))
    );
}

/// The weekdays `0 0 * * {dow}` fires on in the week of Sunday 2026-01-04.
fn fire_days(dow: &str) -> Vec<String> {
    let s = Schedule::parse(&format!("0 0 * * {dow}"), "UTC").expect(dow);
    let mut days = Vec::new();
    let mut t = at(2026, 1, 3, 23, 0);
    while let Some(next) = s.next_after(t).filter(|n| *n < at(2026, 1, 11, 0, 0)) {
        days.push(next.format("%a").to_string());
        t = next;
    }
    days
}

#[test]
fn day_of_week_ranges_lists_and_steps_mean_what_classic_cron_means() {
    let all = "Sun Mon Tue Wed Thu Fri Sat";
    let cases: &[(&str, &str)] = &[
        ("0-7", all),
        ("1-7", "Sun Mon Tue Wed Thu Fri Sat"),
        ("0-6", all),
        ("5-7", "Sun Fri Sat"),
        ("6-7", "Sun Sat"),
        ("7", "Sun"),
        ("0", "Sun"),
        ("5,7", "Sun Fri"),
        ("0,7", "Sun"),
        ("*/2", "Sun Tue Thu Sat"),
        ("*/7", "Sun"),
        ("1-5", "Mon Tue Wed Thu Fri"),
        ("1-5/2", "Mon Wed Fri"),
        ("5/1", "Sun Fri Sat"),
        ("fri-sun", "Sun Fri Sat"),
        ("Sun-Sat", all),
        ("mon,WED", "Mon Wed"),
        ("*", all),
    ];
    for (dow, expected) in cases {
        assert_eq!(fire_days(dow).join(" "), *expected, "day of week {dow:?}");
    }
}

#[test]
fn either_day_field_matches_when_both_are_restricted() {
    // Classic cron: "the 13th, and every Friday"; 2026-01-02 is a Friday, the 13th a Tuesday.
    let s = Schedule::parse("0 0 13 * 5", "UTC").expect("valid");
    assert_eq!(
        s.next_after(at(2026, 1, 1, 0, 0)),
        Some(at(2026, 1, 2, 0, 0))
    );
    assert_eq!(
        s.next_after(at(2026, 1, 9, 0, 0)),
        Some(at(2026, 1, 13, 0, 0))
    );
    // A day-of-week starting with '*' leaves day-of-month alone.
    let s = Schedule::parse("0 0 13 * */2", "UTC").expect("valid");
    assert_eq!(
        s.next_after(at(2026, 1, 1, 0, 0)),
        Some(at(2026, 1, 13, 0, 0))
    );
}

#[test]
fn errors_quote_the_expression_as_written_never_a_translation() {
    let cases: &[(&str, &str)] = &[
        ("0 0 * * 8", "day of week \"8\""),
        ("0 0 * * 5-3", "runs backwards"),
        ("0 0 * * */0", "step"),
        ("0 0 * * mon-", "empty"),
        ("0 0 * * funday", "\"funday\" is not a day of week"),
        ("61 * * * *", "minute \"61\""),
        ("0 25 * * *", "hour \"25\""),
        ("0 0 32 * *", "day of month \"32\""),
        ("0 0 * 13 *", "month \"13\""),
    ];
    for (expr, phrase) in cases {
        let err = Schedule::parse(expr, "UTC").expect_err(expr).to_string();
        assert!(err.contains(&format!("{expr:?}")), "{expr}: {err}");
        assert!(err.contains(phrase), "{expr}: {err}");
        for translated in ["0 0 0 ", "Sun,", "Fri,", "Sat"] {
            assert!(!err.contains(translated), "{expr}: {err}");
        }
    }
    // Something without 5 fields may be a secret pasted into the wrong key: not quoted.
    let err = Schedule::parse("AGE-SECRET-KEY-1CANARY", "UTC")
        .expect_err("one field")
        .to_string();
    assert!(!err.contains("CANARY") && err.contains("5 fields"), "{err}");
}

#[test]
fn time_zones_shift_fire_times() {
    let s = Schedule::parse("@daily", "Europe/Berlin").expect("valid");
    // Midnight in Berlin in winter is 23:00 UTC the day before.
    assert_eq!(
        s.next_after(at(2026, 1, 1, 12, 0)),
        Some(at(2026, 1, 1, 23, 0))
    );
}

#[test]
fn bad_expressions_are_refused_with_a_reason() {
    assert!(matches!(
        Schedule::parse("0 0 * * * *", "UTC"),
        Err(ScheduleError::FieldCount { fields: 6, .. })
    ));
    assert!(matches!(
        Schedule::parse("61 * * * *", "UTC"),
        Err(ScheduleError::Invalid { .. })
    ));
    assert!(matches!(
        Schedule::parse("0 0 * * 9", "UTC"),
        Err(ScheduleError::Invalid { .. })
    ));
    assert!(matches!(
        Schedule::parse("@daily", "Mars/Olympus"),
        Err(ScheduleError::TimeZone(_))
    ));
    assert!(matches!(
        Schedule::parse("{{SCHEDULE}}", "UTC"),
        Err(ScheduleError::FieldCount { .. })
    ));
}

/// A UTC instant from "YYYY-MM-DD HH:MM[:SS]".
fn utc(text: &str) -> DateTime<Utc> {
    let text = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_string()
    };
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S")
        .expect("test time")
        .and_utc()
}

/// (zone, expression, after, expected next fire time), all times UTC.
const DST_NEXT: &[(&str, &str, &str, &str)] = &[
    // Europe/Berlin: 2026-03-29 01:00Z clocks jump 02:00 CET -> 03:00 CEST.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28 12:00",
        "2026-03-29 01:00",
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-29 01:00",
        "2026-03-30 00:30",
    ),
    (
        "Europe/Berlin",
        "0 3 * * *",
        "2026-03-28 12:00",
        "2026-03-29 01:00",
    ),
    (
        "Europe/Berlin",
        "@hourly",
        "2026-03-29 00:00",
        "2026-03-29 01:00",
    ),
    (
        "Europe/Berlin",
        "@hourly",
        "2026-03-29 01:00",
        "2026-03-29 02:00",
    ),
    (
        "Europe/Berlin",
        "*/20 2 * * *",
        "2026-03-28 12:00",
        "2026-03-29 01:00",
    ),
    (
        "Europe/Berlin",
        "*/20 2 * * *",
        "2026-03-29 01:00",
        "2026-03-30 00:00",
    ),
    // Europe/Berlin: 2026-10-25 01:00Z clocks fall back 03:00 CEST -> 02:00 CET; 02:xx twice.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24 12:00",
        "2026-10-25 00:30",
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-25 00:30",
        "2026-10-26 01:30",
    ),
    // The case cron 0.17 got wrong: it answered 2026-10-25 00:30, in the past.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-25 01:10",
        "2026-10-26 01:30",
    ),
    (
        "Europe/Berlin",
        "@daily",
        "2026-10-24 12:00",
        "2026-10-24 22:00",
    ),
    (
        "Europe/Berlin",
        "@daily",
        "2026-10-24 22:00",
        "2026-10-25 23:00",
    ),
    // Wildcard jobs follow the clock through the repeated hour (Vixie).
    (
        "Europe/Berlin",
        "@hourly",
        "2026-10-25 00:00",
        "2026-10-25 01:00",
    ),
    (
        "Europe/Berlin",
        "@hourly",
        "2026-10-25 01:00",
        "2026-10-25 02:00",
    ),
    // America/New_York: 2026-03-08 07:00Z clocks jump 02:00 EST -> 03:00 EDT.
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-07 12:00",
        "2026-03-08 07:00",
    ),
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-08 07:00",
        "2026-03-09 06:30",
    ),
    (
        "America/New_York",
        "0 0 * * *",
        "2026-03-07 12:00",
        "2026-03-08 05:00",
    ),
    (
        "America/New_York",
        "0 0 * * *",
        "2026-03-08 05:00",
        "2026-03-09 04:00",
    ),
    // America/New_York: 2026-11-01 06:00Z clocks fall back 02:00 EDT -> 01:00 EST; 01:xx twice.
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31 12:00",
        "2026-11-01 05:30",
    ),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-11-01 05:30",
        "2026-11-02 06:30",
    ),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-11-01 06:10",
        "2026-11-02 06:30",
    ),
    (
        "America/New_York",
        "30 * * * *",
        "2026-11-01 05:30",
        "2026-11-01 06:30",
    ),
    // Australia/Lord_Howe: 2026-10-03 15:30Z clocks jump 02:00 +10:30 -> 02:30 +11.
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03 00:00",
        "2026-10-03 15:30",
    ),
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03 15:30",
        "2026-10-04 15:15",
    ),
    (
        "Australia/Lord_Howe",
        "45 2 * * *",
        "2026-10-03 00:00",
        "2026-10-03 15:45",
    ),
    // Australia/Lord_Howe: 2026-04-04 15:00Z clocks fall back 02:00 +11 -> 01:30 +10:30.
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04 00:00",
        "2026-04-04 14:45",
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04 14:45",
        "2026-04-05 15:15",
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04 15:05",
        "2026-04-05 15:15",
    ),
    (
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-04-04 14:30",
        "2026-04-04 15:00",
    ),
    (
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-04-04 15:00",
        "2026-04-04 15:30",
    ),
];

#[test]
fn daylight_saving_changes_fire_as_classic_cron_does_and_never_in_the_past() {
    let mut failures = Vec::new();
    for (tz, expr, after, expected) in DST_NEXT {
        let s = Schedule::parse(expr, tz).expect(expr);
        let got = s.next_after(utc(after));
        if got != Some(utc(expected)) {
            failures.push(format!(
                "{tz} {expr:?} after {after}: got {got:?}, want {expected}"
            ));
        }
        if let Some(got) = got {
            assert!(
                got > utc(after),
                "{tz} {expr} after {after}: {got} not in the future"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (zone, expression, at, expected previous fire time at or before it), all UTC.
const DST_PREVIOUS: &[(&str, &str, &str, &str)] = &[
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-25 01:10",
        "2026-10-25 00:30",
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-25 00:30",
        "2026-10-25 00:30",
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-29 02:00",
        "2026-03-29 01:00",
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-29 00:59",
        "2026-03-28 01:30",
    ),
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-08 08:00",
        "2026-03-08 07:00",
    ),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-11-01 07:00",
        "2026-11-01 05:30",
    ),
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03 16:00",
        "2026-10-03 15:30",
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04 15:30",
        "2026-04-04 14:45",
    ),
];

#[test]
fn the_previous_fire_time_is_at_or_before_now_across_daylight_saving_changes() {
    let mut failures = Vec::new();
    for (tz, expr, at, expected) in DST_PREVIOUS {
        let s = Schedule::parse(expr, tz).expect(expr);
        let got = s.previous_at_or_before(utc(at));
        if got != Some(utc(expected)) {
            failures.push(format!(
                "{tz} {expr:?} at {at}: got {got:?}, want {expected}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn next_and_previous_agree_through_every_transition() {
    // Walk a week around each change minute-schedule by schedule: times strictly increase, and
    // each fire time is its own "previous at or before" while a second earlier is not.
    let windows = [
        ("Europe/Berlin", "2026-03-26 00:00"),
        ("Europe/Berlin", "2026-10-22 00:00"),
        ("America/New_York", "2026-03-05 00:00"),
        ("America/New_York", "2026-10-29 00:00"),
        ("Australia/Lord_Howe", "2026-04-01 00:00"),
        ("Australia/Lord_Howe", "2026-09-30 00:00"),
    ];
    for (tz, start) in windows {
        for expr in ["*/15 * * * *", "30 2 * * *", "0 1-3 * * *", "@hourly"] {
            let s = Schedule::parse(expr, tz).expect(expr);
            let end = utc(start) + chrono::TimeDelta::days(7);
            let mut t = utc(start);
            while let Some(next) = s.next_after(t).filter(|n| *n < end) {
                assert!(next > t, "{tz} {expr}: {next} after {t}");
                assert_eq!(s.previous_at_or_before(next), Some(next), "{tz} {expr}");
                let before = s.previous_at_or_before(next - chrono::TimeDelta::seconds(1));
                assert!(before.is_some_and(|b| b < next), "{tz} {expr}: {before:?}");
                assert_eq!(
                    before.and_then(|b| s.next_after(b)),
                    Some(next),
                    "{tz} {expr}"
                );
                t = next;
            }
        }
    }
}

#[test]
fn every_fires_on_multiples_of_its_period_since_the_epoch() {
    let s = Schedule::parse("@every 15m", "Europe/Berlin").expect("valid");
    assert_eq!(
        s.next_after(utc("2026-01-01 00:07:30")),
        Some(utc("2026-01-01 00:15"))
    );
    assert_eq!(
        s.next_after(utc("2026-01-01 00:15")),
        Some(utc("2026-01-01 00:30"))
    );
    assert_eq!(
        s.previous_at_or_before(utc("2026-01-01 00:15")),
        Some(utc("2026-01-01 00:15"))
    );
    assert_eq!(
        s.previous_at_or_before(utc("2026-01-01 00:29:59")),
        Some(utc("2026-01-01 00:15"))
    );
    assert_eq!(s.every(), Some(Duration::from_secs(900)));
    // 2026-01-01T00:00Z is 70,128 periods of 7 h after the epoch, so it is a fire time.
    let s = Schedule::parse("@EVERY 7h", "UTC").expect("valid");
    assert_eq!(
        s.next_after(utc("2026-01-01 00:00")),
        Some(utc("2026-01-01 07:00"))
    );
    let s = Schedule::parse("@every 1s", "UTC").expect("the minimum");
    assert_eq!(
        s.next_after(utc("2026-01-01 00:00:00")),
        Some(utc("2026-01-01 00:00:01"))
    );
    // A daylight-saving change does not bend an interval.
    let s = Schedule::parse("@every 1h", "Europe/Berlin").expect("valid");
    assert_eq!(
        s.next_after(utc("2026-10-25 00:30")),
        Some(utc("2026-10-25 01:00"))
    );
}

#[test]
fn bad_every_periods_are_refused_without_quoting_them() {
    for (expr, phrase) in [
        ("@every 500ms", "at least 1s"),
        ("@every 1500ms", "whole number of seconds"),
        ("@every", "empty"),
        ("@every 15", "needs a unit"),
        ("@every 3fortnights", "unknown unit"),
        ("@every 400d", "at most 366d"),
    ] {
        let err = Schedule::parse(expr, "UTC").expect_err(expr);
        assert!(matches!(err, ScheduleError::Every(_)), "{expr}: {err:?}");
        let err = err.to_string();
        assert!(err.contains(phrase), "{expr}: {err}");
        let value = expr.trim_start_matches("@every").trim();
        if !value.is_empty() {
            assert!(!err.contains(value), "{expr} echoed: {err}");
        }
    }
    // Not an @every at all: an unknown alias.
    assert!(matches!(
        Schedule::parse("@everyday", "UTC"),
        Err(ScheduleError::FieldCount { fields: 1 })
    ));
}

#[test]
fn a_schedule_that_can_never_fire_is_refused_and_february_29th_is_not() {
    assert!(matches!(
        Schedule::parse("0 0 30 2 *", "UTC"),
        Err(ScheduleError::Never { .. })
    ));
    let leap = Schedule::parse("0 0 29 2 *", "UTC").expect("leap day");
    assert_eq!(
        leap.next_after(utc("2026-01-01 00:00")),
        Some(utc("2028-02-29 00:00"))
    );
    assert_eq!(
        leap.next_after(utc("2096-03-01 00:00")),
        Some(utc("2104-02-29 00:00"))
    );
    assert_eq!(
        leap.previous_at_or_before(utc("2026-01-01 00:00")),
        Some(utc("2024-02-29 00:00"))
    );
}

/// `kv-prod`'s offset under a 600 s bound.
const PINNED_KV_PROD_OFFSET: u64 = 437;

#[test]
fn jitter_offsets_are_stable_per_vault_and_below_the_bound() {
    let bound = Duration::from_secs(600);
    let name = |n: &str| n.parse::<VaultName>().expect("name");
    let a = jitter_offset(&name("kv-prod"), bound);
    assert_eq!(
        a,
        jitter_offset(&name("KV-PROD"), bound),
        "names are case-insensitive"
    );
    // Pinned, so a change of hash (which would move every vault's runs) is noticed.
    assert_eq!(a, Duration::from_secs(PINNED_KV_PROD_OFFSET));
    let offsets: std::collections::BTreeSet<Duration> = (0..50)
        .map(|i| jitter_offset(&name(&format!("kv-{i}")), bound))
        .collect();
    assert!(offsets.iter().all(|o| *o < bound));
    assert!(offsets.len() > 30, "offsets spread out: {offsets:?}");
    assert_eq!(
        jitter_offset(&name("kv-prod"), Duration::ZERO),
        Duration::ZERO
    );
    assert_eq!(
        jitter_offset(&name("kv-prod"), Duration::from_millis(999)),
        Duration::ZERO
    );
    assert_eq!(
        jitter_offset(&name("kv-prod"), Duration::from_secs(1)),
        Duration::ZERO
    );
}

#[test]
fn a_timetable_shifts_fire_times_by_its_offset_and_stays_in_the_future() {
    let s = Schedule::parse("@every 15m", "UTC").expect("valid");
    let t = Timetable::new(s.clone(), Duration::from_secs(100));
    // Exactly at a jittered fire time: the next one, never this one.
    assert_eq!(
        t.next_due(utc("2026-01-01 00:01:40")),
        Some(utc("2026-01-01 00:16:40"))
    );
    assert_eq!(
        t.next_due(utc("2026-01-01 00:00:00")),
        Some(utc("2026-01-01 00:01:40"))
    );
    assert_eq!(
        t.previous_due(utc("2026-01-01 00:16:39")),
        Some(utc("2026-01-01 00:01:40"))
    );
    assert_eq!(
        t.previous_due(utc("2026-01-01 00:16:40")),
        Some(utc("2026-01-01 00:16:40"))
    );
    let upcoming = t.upcoming(utc("2026-01-01 00:00:00"), 4);
    let want: Vec<_> = ["00:01:40", "00:16:40", "00:31:40", "00:46:40"]
        .iter()
        .map(|hms| utc(&format!("2026-01-01 {hms}")))
        .collect();
    assert_eq!(upcoming, want);
    assert_eq!(
        next_due(&s, utc("2026-01-01 00:15")),
        Some(utc("2026-01-01 00:30"))
    );
    // Through the Berlin case, with an offset: still strictly after now.
    let berlin = Schedule::parse("30 2 * * *", "Europe/Berlin").expect("valid");
    let t = Timetable::new(berlin, Duration::from_secs(300));
    assert_eq!(
        t.next_due(utc("2026-10-25 01:10")),
        Some(utc("2026-10-26 01:35"))
    );
    assert_eq!(
        t.previous_due(utc("2026-10-25 01:10")),
        Some(utc("2026-10-25 00:35"))
    );
}
