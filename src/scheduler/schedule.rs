//! A backup schedule: a classic 5-field cron expression, an `@daily`-style alias or
//! `@every DURATION`, evaluated in an IANA time zone the way classic (Vixie) cron would.
//!
//! Fire times are found day by day in the zone's local calendar (`fields.rs` says which days and
//! which hour:minute pairs), then each local time is mapped to an instant. Daylight-saving
//! changes follow Vixie cron:
//!
//! - a local time that does not exist (clocks jump forward) fires once, at the first instant
//!   after the gap (Berlin's `30 2 * * *` on the spring-forward day runs at 03:00 CEST);
//! - a local time that exists twice (clocks fall back) fires once, at its first instant, for a
//!   fixed-time job. A wildcard job (minute or hour field starting with `*`, so `@hourly`,
//!   `*/15 * * * *`) follows the clock instead and fires at both instants, as Vixie cron runs
//!   wildcard jobs "at the current time": an hourly backup stays hourly in real time rather than
//!   leaving a two-hour hole once a year;
//! - every answer is strictly after the `after` instant it was asked about.
//!
//! `@every DURATION` ignores the calendar: it fires at every whole multiple of the period since
//! the Unix epoch (1970-01-01T00:00:00Z). Anchoring at a fixed instant rather than at the
//! daemon's start keeps fire times the same across restarts and across hosts sharing a store,
//! and makes `@every 1h` fire on the hour and `@every 1d` at midnight UTC. The time zone is then
//! only used to show local times.
//!
//! Error messages quote what the operator wrote, never a translation, and an expression without
//! five fields is not quoted at all: it may be a secret pasted into the wrong key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::fields::CronFields;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Wrong number of fields.
    #[error("the cron expression has {fields} field(s); use 5 fields (minute hour day-of-month month day-of-week), an alias such as @daily, or @every 15m")]
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
    /// The cron expression selects no day that exists (`0 0 30 2 *`).
    #[error(
        "the cron expression {expr:?} never fires (no such day); check day of month and month"
    )]
    Never {
        /// The expression, as written.
        expr: String,
    },
    /// `@every` with a bad duration. The duration is not quoted.
    #[error("@every: the period {0}")]
    Every(String),
    /// Unknown time zone.
    #[error("unknown time zone {0:?}: use an IANA name such as UTC or Europe/Berlin")]
    TimeZone(String),
}

/// The shortest and longest `@every` period.
const MIN_EVERY: Duration = Duration::from_secs(1);
const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// How many local days a search looks through. February 29th can be eight years away (2096 to
/// 2104), and the either-day rule makes any weekday at most a week away.
const SEARCH_DAYS: u32 = 8 * 366 + 14;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    kind: Kind,
}

/// Two schedules are the same when written the same in the same zone: what a reload compares
/// to decide whether a job's next fire time stands.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for Schedule {}

#[derive(Debug, Clone)]
enum Kind {
    Cron(CronFields),
    /// The period in whole seconds (at least 1).
    Every(i64),
}

impl Schedule {
    /// Parses `expr` (5-field cron, alias or `@every DURATION`) in the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.to_string()))?;
        let trimmed = expr.trim();
        let kind = match every_period(trimmed) {
            Some(period) => Kind::Every(period.map_err(ScheduleError::Every)?),
            None => {
                let fields = classic_fields(trimmed)?;
                let cron = CronFields::parse(&fields).map_err(|reason| ScheduleError::Invalid {
                    expr: trimmed.to_string(),
                    reason,
                })?;
                Kind::Cron(cron)
            }
        };
        let schedule = Schedule {
            expr: trimmed.to_string(),
            tz,
            kind,
        };
        // A schedule that never fires would leave a vault silently unprotected.
        let reference = DateTime::from_timestamp(946_684_800, 0).unwrap_or_default();
        if schedule.next_after(reference).is_none() {
            return Err(ScheduleError::Never {
                expr: schedule.expr,
            });
        }
        Ok(schedule)
    }

    /// The expression as the operator wrote it.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone's IANA name.
    pub fn time_zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The time zone, for showing fire times locally.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The `@every` period, if this is an `@every` schedule.
    pub fn every(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(secs) => u64::try_from(secs).ok().map(Duration::from_secs),
            Kind::Cron(_) => None,
        }
    }

    /// The first fire time strictly after `after`; `None` only past the calendar's end.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(period) => {
                let k = after.timestamp().div_euclid(*period).checked_add(1)?;
                DateTime::from_timestamp(k.checked_mul(*period)?, 0)
            }
            Kind::Cron(cron) => self.cron_next_after(cron, after),
        }
    }

    /// The last fire time at or before `at` (what a daemon compares its newest run against to
    /// catch up once after downtime).
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(period) => {
                let k = at.timestamp().div_euclid(*period);
                DateTime::from_timestamp(k.checked_mul(*period)?, 0)
            }
            Kind::Cron(cron) => self.cron_previous(cron, at),
        }
    }

    fn cron_next_after(&self, cron: &CronFields, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start a day early: the instant after a gap, or the second instant of a repeated hour,
        // can belong to a local date before `after`'s.
        let mut date = after.with_timezone(&self.tz).date_naive().pred_opt()?;
        for _ in 0..SEARCH_DAYS {
            if let Some(t) = self.fires_on(cron, date).into_iter().find(|t| *t > after) {
                // A gap spanning midnight maps a late fire time onto the next day's first
                // instant; the next day can then hold an earlier one.
                let next_day = date
                    .succ_opt()
                    .and_then(|d| self.fires_on(cron, d).into_iter().find(|t| *t > after));
                return Some(next_day.map_or(t, |n| n.min(t)));
            }
            date = date.succ_opt()?;
        }
        None
    }

    fn cron_previous(&self, cron: &CronFields, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut date = at.with_timezone(&self.tz).date_naive().succ_opt()?;
        for _ in 0..SEARCH_DAYS {
            if let Some(t) = self.fires_on(cron, date).into_iter().rfind(|t| *t <= at) {
                let previous_day = date
                    .pred_opt()
                    .and_then(|d| self.fires_on(cron, d).into_iter().rfind(|t| *t <= at));
                return Some(previous_day.map_or(t, |p| p.max(t)));
            }
            date = date.pred_opt()?;
        }
        None
    }

    /// The instants a cron job fires at on local date `date`, sorted, without duplicates.
    fn fires_on(&self, cron: &CronFields, date: NaiveDate) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        if !cron.matches_date(date) {
            return out;
        }
        for (h, m) in cron.times() {
            let Some(local) = date.and_hms_opt(h, m, 0) else {
                continue;
            };
            match self.tz.from_local_datetime(&local) {
                LocalResult::Single(t) => out.push(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => {
                    let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                    out.push(a.min(b));
                    if cron.wildcard {
                        out.push(a.max(b));
                    }
                }
                LocalResult::None => out.extend(gap_end(self.tz, local)),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The first instant whose local time is after `local`, which falls in a gap (clocks jumped
/// forward over it): the moment the gap ends. Found by bisection over whole seconds within two
/// days either side, where local time only moves forward (no zone changes its offset twice in
/// four days).
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let after = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).naive_local() > local)
    };
    let guess = local.and_utc().timestamp();
    let (mut lo, mut hi) = (guess - 2 * 86_400, guess + 2 * 86_400);
    if after(lo)? || !after(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if after(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// `Some` when `expr` is an `@every` schedule, with its period in seconds or why it is refused.
fn every_period(expr: &str) -> Option<Result<i64, String>> {
    let head = expr.get(..6)?;
    let rest = &expr[6..];
    if !head.eq_ignore_ascii_case("@every")
        || !(rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        return None;
    }
    Some(
        crate::config::parse_duration_within(rest, MIN_EVERY, MAX_EVERY).and_then(|d| {
            if d.subsec_nanos() != 0 {
                Err("must be a whole number of seconds".to_string())
            } else {
                i64::try_from(d.as_secs()).map_err(|_| "is too long".to_string())
            }
        }),
    )
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

/// The five classic fields of `expr`, aliases expanded.
fn classic_fields(expr: &str) -> Result<[String; 5], ScheduleError> {
    let classic = match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => expr.to_string(),
    };
    let fields: Vec<String> = classic.split_whitespace().map(str::to_string).collect();
    <[String; 5]>::try_from(fields).map_err(|fields| ScheduleError::FieldCount {
        fields: fields.len(),
    })
}
