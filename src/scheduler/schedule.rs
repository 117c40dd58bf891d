//! A backup schedule: a standard 5-field cron expression (or an `@daily`-style alias) evaluated in
//! a time zone, meaning what classic (Vixie) cron means.
//!
//! The `cron` crate wants a seconds field, numbers Sunday as 1 and cannot run a day-of-week
//! range across Sunday (`5-7`). So the day-of-week field is expanded here, with classic cron's
//! rules (0 and 7 are Sunday, `*` spans 0-7 for steps), into the list of day names the crate
//! understands. Two more classic rules are kept here rather than in the crate:
//!
//! - when both day-of-month and day-of-week are restricted (neither starts with `*`), a day
//!   matches if *either* does (`0 0 1 * 1`: the 1st and every Monday), so two crate schedules
//!   are evaluated and the earlier fire time wins;
//! - error messages quote what the operator wrote, never the translation, which would be
//!   confusing (`0 … Sun,Mon`). An expression without 5 fields is not quoted at all: it may be
//!   a secret pasted into the wrong key.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Wrong number of fields.
    #[error("the cron expression has {fields} field(s); use 5 fields (minute hour day-of-month month day-of-week) or an alias such as @daily")]
    FieldCount {
        /// How many fields it had.
        fields: usize,
    },
    /// A field is not valid cron.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Invalid {
        /// The expression, as written.
        expr: String,
        /// Which field is wrong and why, in the operator's own terms.
        reason: String,
    },
    /// Unknown time zone.
    #[error("unknown time zone {0:?}: use an IANA name such as UTC or Europe/Berlin")]
    TimeZone(String),
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    cron: cron::Schedule,
    /// The day-of-week half when both day fields are restricted (classic cron's "either day
    /// field matches" rule); `cron` then holds the day-of-month half.
    either: Option<cron::Schedule>,
}

/// The five classic fields: name for messages, and what is allowed, for the hint.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 (0 and 7 are Sunday) or sun-sat"),
];

impl Schedule {
    /// Parses `expr` (5-field cron or alias) in the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.to_string()))?;
        let fields = classic_fields(expr)?;
        let invalid = |reason: String| ScheduleError::Invalid {
            expr: expr.trim().to_string(),
            reason,
        };
        // Each field is checked alone first, so a message can say which one is wrong (the
        // crate's own message quotes its 6-field translation).
        for (i, field) in fields.iter().take(4).enumerate() {
            let mut probe = ["*"; 4];
            probe[i] = field;
            let six = format!("0 {} {} {} {} *", probe[0], probe[1], probe[2], probe[3]);
            if cron::Schedule::from_str(&six).is_err() {
                let (name, allowed) = FIELDS[i];
                return Err(invalid(format!(
                    "{name} {field:?} is not valid: use {allowed}, a list (1,15), a range (1-5), a step (*/15) or *"
                )));
            }
        }
        let days = day_of_week(&fields[4])
            .map_err(|why| invalid(format!("day of week {:?}: {why}", fields[4])))?;
        let build = |dom: &str, dow: &str| {
            let six = format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], dom, fields[3], dow
            );
            cron::Schedule::from_str(&six)
                .map_err(|_| invalid("not a valid cron expression".to_string()))
        };
        // Classic cron looks at the first character: `*/2` counts as unrestricted.
        let both_restricted = !fields[2].starts_with('*') && !fields[4].starts_with('*');
        let (cron, either) = if both_restricted {
            (build(&fields[2], "*")?, Some(build("*", &days)?))
        } else {
            (build(&fields[2], &days)?, None)
        };
        Ok(Schedule {
            expr: expr.trim().to_string(),
            tz,
            cron,
            either,
        })
    }

    /// The expression as the operator wrote it.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone's IANA name.
    pub fn time_zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        let first = self.cron.after(&local).next();
        let second = self.either.as_ref().and_then(|s| s.after(&local).next());
        let next = match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.with_timezone(&Utc))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

/// The five classic fields of `expr`, aliases expanded.
fn classic_fields(expr: &str) -> Result<[String; 5], ScheduleError> {
    let trimmed = expr.trim();
    let classic = match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => trimmed.to_string(),
    };
    let fields: Vec<String> = classic.split_whitespace().map(str::to_string).collect();
    <[String; 5]>::try_from(fields).map_err(|fields| ScheduleError::FieldCount {
        fields: fields.len(),
    })
}

/// Day names as the `cron` crate reads them, indexed by classic cron's number (0 = Sunday).
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Expands a classic day-of-week field into the `cron` crate's dialect: `*` stays `*`, anything
/// else becomes the list of day names it selects. Errors say what is wrong in classic terms.
fn day_of_week(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".to_string());
    }
    let mut days = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u8>()
                    .ok()
                    .filter(|s| (1..=7).contains(s))
                    .ok_or_else(|| format!("step {step:?} must be a number from 1 to 7"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            // Classic cron's day-of-week range is 0-7, which is what a step counts over.
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            (day_number(a, false)?, day_number(b, true)?)
        } else {
            let d = day_number(range, false)?;
            (d, if step.is_some() { 7 } else { d })
        };
        if low > high {
            return Err(format!(
                "range {range:?} runs backwards; write it low-high, e.g. 5-7 for Friday to Sunday"
            ));
        }
        for d in (low..=high).step_by(usize::from(step.unwrap_or(1))) {
            days.insert(d % 7);
        }
    }
    let names: Vec<&str> = days.iter().map(|d| DAY_NAMES[usize::from(*d)]).collect();
    Ok(names.join(","))
}

/// A day of week: 0-7 or a three-letter name. `sun` ends a range as 7, so `fri-sun` is 5-7.
fn day_number(text: &str, range_end: bool) -> Result<u8, String> {
    if let Ok(n) = text.parse::<u8>() {
        if n <= 7 {
            return Ok(n);
        }
    } else if let Some(i) = DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        let n = u8::try_from(i).unwrap_or(0);
        return Ok(if n == 0 && range_end { 7 } else { n });
    }
    Err(if text.is_empty() {
        "a list item or range end is empty".to_string()
    } else {
        format!("{text:?} is not a day of week: use 0-7 (0 and 7 are Sunday) or sun-sat")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
}
