//! A backup schedule: a standard 5-field cron expression (or an `@daily`-style alias) evaluated in
//! a time zone.
//!
//! The `cron` crate wants a seconds field and numbers Sunday as 1; operators write classic cron,
//! where Sunday is 0 or 7. We translate once, here, so every other module sees one meaning.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Wrong number of fields.
    #[error("cron expression {expr:?} has {fields} fields; use 5 fields (minute hour day-of-month month day-of-week) or an alias such as @daily")]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it had.
        fields: usize,
    },
    /// The cron parser refused the expression.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Invalid {
        /// The expression.
        expr: String,
        /// The parser's reason.
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
}

impl Schedule {
    /// Parses `expr` (5-field cron or alias) in the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.to_string()))?;
        let six = to_six_fields(expr)?;
        let cron = cron::Schedule::from_str(&six).map_err(|e| ScheduleError::Invalid {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Schedule {
            expr: expr.trim().to_string(),
            tz,
            cron,
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
        self.cron
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

/// Turns classic cron into the `cron` crate's dialect: adds a seconds field and maps numeric
/// days of week (0/7 = Sunday) to names.
fn to_six_fields(expr: &str) -> Result<String, ScheduleError> {
    let trimmed = expr.trim();
    let classic = match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => trimmed.to_string(),
    };
    let fields: Vec<&str> = classic.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError::FieldCount {
            expr: expr.to_string(),
            fields: fields.len(),
        });
    }
    let dow = day_of_week_names(fields[4]).ok_or_else(|| ScheduleError::Invalid {
        expr: expr.to_string(),
        reason: format!("day of week {:?} must use 0-7 or Sun-Sat", fields[4]),
    })?;
    Ok(format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], dow
    ))
}

fn day_of_week_names(field: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut out = String::new();
    for (i, item) in field.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A step ("*/2", "1-5/2") keeps its step number; only the range part holds days.
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let mut parts = Vec::new();
        for day in range.split('-') {
            if let Ok(n) = day.parse::<usize>() {
                parts.push((*NAMES.get(n)?).to_string());
            } else {
                parts.push(day.to_string());
            }
        }
        out.push_str(&parts.join("-"));
        if let Some(step) = step {
            out.push('/');
            out.push_str(step);
        }
    }
    Some(out)
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
