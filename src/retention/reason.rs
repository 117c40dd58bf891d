//! Why a restore point is kept or forgotten, in words an operator reads in prune's plan.

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

use crate::index::RunStatus;
use crate::model::{ObjectKind, ObjectName};

/// A calendar rule of the policy: one restore point per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CalendarRule {
    /// `keep_hourly`
    Hourly,
    /// `keep_daily`
    Daily,
    /// `keep_weekly` (ISO weeks)
    Weekly,
    /// `keep_monthly`
    Monthly,
    /// `keep_yearly`
    Yearly,
}

impl CalendarRule {
    /// Every calendar rule, shortest period first.
    pub const ALL: [CalendarRule; 5] = [
        CalendarRule::Hourly,
        CalendarRule::Daily,
        CalendarRule::Weekly,
        CalendarRule::Monthly,
        CalendarRule::Yearly,
    ];

    /// The rule's word, as in its key without `keep_`.
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarRule::Hourly => "hourly",
            CalendarRule::Daily => "daily",
            CalendarRule::Weekly => "weekly",
            CalendarRule::Monthly => "monthly",
            CalendarRule::Yearly => "yearly",
        }
    }
}

impl fmt::Display for CalendarRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One calendar period in the vault's time zone. Periods are local wall-clock fields, so the
/// repeated hour of a DST fall-back is one hourly period and a 23- or 25-hour day is one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// An hour of a local date (0–23).
    Hour(NaiveDate, u32),
    /// A local date.
    Day(NaiveDate),
    /// An ISO 8601 week: its week-based year and number (1–53).
    Week(i32, u32),
    /// A month of a year (1–12).
    Month(i32, u32),
    /// A year.
    Year(i32),
}

impl Period {
    /// The rule whose periods these are.
    pub fn rule(self) -> CalendarRule {
        match self {
            Period::Hour(..) => CalendarRule::Hourly,
            Period::Day(_) => CalendarRule::Daily,
            Period::Week(..) => CalendarRule::Weekly,
            Period::Month(..) => CalendarRule::Monthly,
            Period::Year(_) => CalendarRule::Yearly,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Hour(date, hour) => write!(f, "{date} {hour:02}:00"),
            Period::Day(date) => write!(f, "{date}"),
            Period::Week(year, week) => write!(f, "{year}-W{week:02}"),
            Period::Month(year, month) => write!(f, "{year}-{month:02}"),
            Period::Year(year) => write!(f, "{year}"),
        }
    }
}

/// Why a point is kept (every reason that applies is listed) or forgotten (exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The policy sets no `keep_*` rule, so everything is kept.
    NoPolicy,
    /// The newest restore point that counts: always kept, so a vault never loses its last
    /// good backup to a policy.
    Newest,
    /// Among the newest n points (`keep_last = n`).
    Last(u32),
    /// The newest point of this period, which is among the newest n periods of its rule.
    Period(Period),
    /// The oldest point, kept because this rule's count is larger than the number of periods
    /// that have points (restic's `forget` does the same: the history reaches back as far as
    /// the rule asked for, as soon as there is history that far back).
    Oldest(CalendarRule),
    /// Started within `keep_within` of now.
    Within(Duration),
    /// The newest point holding an object seen deleted from the vault, inside `keep_deleted_for`.
    LastCopyOfDeleted {
        /// The deleted object's kind.
        kind: ObjectKind,
        /// Its name.
        name: ObjectName,
        /// The local date its deletion was seen.
        seen: NaiveDate,
    },
    /// Younger than `min_retention`.
    MinRetention,
    /// Forgotten: a `failed` or `interrupted` run is never counted by the rules.
    NotCounted(RunStatus),
    /// Forgotten: no rule selects it.
    NotSelected,
}

impl Reason {
    /// True for the reasons that keep a point.
    pub fn keeps(&self) -> bool {
        !matches!(self, Reason::NotCounted(_) | Reason::NotSelected)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoPolicy => f.write_str("no retention policy: keeping everything"),
            Reason::Newest => f.write_str("newest"),
            Reason::Last(n) => write!(f, "last {n}"),
            Reason::Period(p) => write!(f, "{} {p}", p.rule()),
            Reason::Oldest(rule) => write!(f, "oldest {rule}"),
            Reason::Within(d) => write!(f, "within {}", short_duration(*d)),
            Reason::LastCopyOfDeleted { kind, name, seen } => {
                write!(f, "last copy of {kind}/{name} deleted {seen}")
            }
            Reason::MinRetention => f.write_str("younger than min_retention"),
            Reason::NotCounted(status) => {
                write!(f, "{status} runs are not counted by the policy")
            }
            Reason::NotSelected => f.write_str("not selected by any rule"),
        }
    }
}

/// Reasons appear in JSON output as the same words as in tables.
impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// `d` in one unit, as operators write durations: days from three days up (`7d`, `120d`),
/// hours below that when whole (`48h` reads better than `2d` for a short window), then
/// minutes, then seconds.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3 * 86_400 && secs.is_multiple_of(86_400) {
        return format!("{}d", secs / 86_400);
    }
    for (unit, per) in [("h", 3_600), ("m", 60)] {
        if secs >= per && secs.is_multiple_of(per) {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}
