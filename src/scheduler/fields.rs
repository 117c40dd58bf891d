//! The five fields of a classic (Vixie) cron expression, parsed into bit sets, and the day rule.
//!
//! Written by hand rather than through a cron crate because the crates we looked at differ from
//! classic cron in ways an operator would notice (Sunday numbered 1, no `5-7` range across
//! Sunday, both day fields required to match). Classic rules kept here:
//!
//! - day of week is 0-7 with 0 and 7 both Sunday, and `*` spans 0-7 when stepped (`*/2`);
//! - a range end written `sun` means 7, so `fri-sun` is 5-7;
//! - `N/S` means `N-max/S`;
//! - when both day-of-month and day-of-week are restricted (neither starts with `*`), a day
//!   matches if *either* does (`0 0 1 * 1`: the 1st and every Monday);
//! - a job whose minute or hour field starts with `*` is a "wildcard" job, which classic cron
//!   treats differently across a daylight-saving change (see `schedule.rs`).

use chrono::{Datelike, NaiveDate};

/// The parsed fields: bit `n` set means value `n` is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CronFields {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    /// Bit 0 is Sunday (7 is folded onto 0).
    days_of_week: u8,
    /// Day of month and day of week both restricted: either may match.
    either_day: bool,
    /// The minute or hour field starts with `*`.
    pub(super) wildcard: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's rules: its range, and names (the first name is `names_from`).
struct Spec {
    name: &'static str,
    allowed: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
    names_from: u8,
}

const MINUTE: Spec = Spec {
    name: "minute",
    allowed: "0-59",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Spec = Spec {
    name: "hour",
    allowed: "0-23",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY_OF_MONTH: Spec = Spec {
    name: "day of month",
    allowed: "1-31",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Spec = Spec {
    name: "month",
    allowed: "1-12 or jan-dec",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
const DAY_OF_WEEK: Spec = Spec {
    name: "day of week",
    allowed: "0-7 (0 and 7 are Sunday) or sun-sat",
    min: 0,
    max: 7,
    names: &DAYS,
    names_from: 0,
};

impl CronFields {
    /// Parses five classic fields. The error names the field and quotes only that field.
    pub(super) fn parse(fields: &[String; 5]) -> Result<Self, String> {
        let generic = |spec: &Spec, field: &str| {
            format!(
                "{} {field:?} is not valid: use {}, a list (1,15), a range (1-5), a step (*/15) or *",
                spec.name, spec.allowed
            )
        };
        let minutes = bits(&fields[0], &MINUTE).map_err(|_| generic(&MINUTE, &fields[0]))?;
        let hours = bits(&fields[1], &HOUR).map_err(|_| generic(&HOUR, &fields[1]))?;
        let dom =
            bits(&fields[2], &DAY_OF_MONTH).map_err(|_| generic(&DAY_OF_MONTH, &fields[2]))?;
        let months = bits(&fields[3], &MONTH).map_err(|_| generic(&MONTH, &fields[3]))?;
        // Day of week keeps its specific reasons: its rules (7 is Sunday) are the surprising ones.
        let dow = bits(&fields[4], &DAY_OF_WEEK)
            .map_err(|why| format!("day of week {:?}: {why}", fields[4]))?;
        let dow = (dow | (dow >> 7)) & 0x7f;
        // The masks fit their types: each spec's max is below the type's width.
        Ok(CronFields {
            minutes,
            hours: u32::try_from(hours).unwrap_or(u32::MAX),
            days_of_month: u32::try_from(dom).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            days_of_week: u8::try_from(dow).unwrap_or(u8::MAX),
            either_day: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
            wildcard: fields[0].starts_with('*') || fields[1].starts_with('*'),
        })
    }

    /// Whether the job runs on `date` at all.
    pub(super) fn matches_date(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The (hour, minute) pairs of a matching day, in order.
    pub(super) fn times(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..24u32)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60u32)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
    }
}

/// The values a field selects, as bits.
fn bits(field: &str, spec: &Spec) -> Result<u64, String> {
    let mut out = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u8>()
                    .ok()
                    .filter(|s| *s >= 1 && *s <= spec.max.max(1))
                    .ok_or_else(|| {
                        format!("step {step:?} must be a number from 1 to {}", spec.max)
                    })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec, false)?, value(b, spec, true)?)
        } else {
            let v = value(range, spec, false)?;
            (v, if step.is_some() { spec.max } else { v })
        };
        if low > high {
            return Err(format!(
                "range {range:?} runs backwards; write it low-high, e.g. 5-7 for Friday to Sunday"
            ));
        }
        for v in (low..=high).step_by(usize::from(step.unwrap_or(1))) {
            out |= 1 << v;
        }
    }
    Ok(out)
}

/// One value: a number in range or a three-letter name. For day of week, `sun` ending a range
/// is 7, so `fri-sun` runs forwards.
fn value(text: &str, spec: &Spec, range_end: bool) -> Result<u8, String> {
    if let Ok(n) = text.parse::<u8>() {
        if (spec.min..=spec.max).contains(&n) {
            return Ok(n);
        }
    } else if let Some(i) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        let n = u8::try_from(i).unwrap_or(0) + spec.names_from;
        return Ok(if spec.max == 7 && n == 0 && range_end {
            7
        } else {
            n
        });
    }
    Err(if text.is_empty() {
        "a list item or range end is empty".to_string()
    } else if spec.max == 7 {
        format!("{text:?} is not a day of week: use {}", spec.allowed)
    } else {
        format!("{text:?} is not a {}: use {}", spec.name, spec.allowed)
    })
}
