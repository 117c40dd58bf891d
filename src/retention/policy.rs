//! The retention policy of one vault: which restore points to keep, as configured.

use std::time::Duration;

use serde::Serialize;

/// Nothing younger is ever deleted unless configured otherwise: a week covers a bad change
/// noticed late and a weekend without anyone looking.
pub const DEFAULT_MIN_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// How long the last copy of a deleted object is kept unless configured otherwise. Longer than
/// Key Vault's 90-day soft-delete window, so an object that was deleted and then purged at the end
/// of that window can still be restored for a month after the purge.
pub const DEFAULT_KEEP_DELETED_FOR: Duration = Duration::from_secs(120 * 86_400);

/// How old the blobs of a run that never committed must be before prune deletes them, unless
/// configured otherwise: a day is longer than any backup run, so a run still going (on this host
/// or, with several daemons on one store, another) never loses a blob it is writing.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(86_400);

/// Which restore points of a vault are kept. The `keep_*` rules are OR-ed: a point is kept when
/// any rule selects it. With no `keep_*` rule set the policy keeps everything (see
/// [`RetentionPolicy::is_empty`]); `min_retention` and `keep_deleted_for` only ever keep more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    /// Keep the newest n restore points.
    pub keep_last: Option<u32>,
    /// Keep the newest point of each of the newest n hours that have points.
    pub keep_hourly: Option<u32>,
    /// The same for days.
    pub keep_daily: Option<u32>,
    /// The same for ISO weeks (Monday to Sunday, numbered as ISO 8601 does).
    pub keep_weekly: Option<u32>,
    /// The same for calendar months.
    pub keep_monthly: Option<u32>,
    /// The same for calendar years.
    pub keep_yearly: Option<u32>,
    /// Keep every restore point that started at most this long before now.
    #[serde(serialize_with = "optional_duration")]
    pub keep_within: Option<Duration>,
    /// Nothing younger than this is ever forgotten, whatever the rules say.
    #[serde(serialize_with = "duration")]
    pub min_retention: Duration,
    /// For every object seen deleted from the vault, the newest restore point holding it is kept
    /// this long after the deletion was seen.
    #[serde(serialize_with = "duration")]
    pub keep_deleted_for: Duration,
    /// Whether the daemon prunes the vault after each successful backup. Off unless set: an
    /// operator turns it on once the policy is what they want (`kvkeep prune --dry-run`).
    pub prune: bool,
    /// How old the blobs of a run that never committed must be before prune deletes them.
    #[serde(serialize_with = "duration")]
    pub grace_period: Duration,
}

impl Default for RetentionPolicy {
    /// The policy of a vault that configures none: keep everything.
    fn default() -> Self {
        RetentionPolicy {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            min_retention: DEFAULT_MIN_RETENTION,
            keep_deleted_for: DEFAULT_KEEP_DELETED_FOR,
            prune: false,
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

impl RetentionPolicy {
    /// True when no `keep_*` rule is set: such a policy keeps every restore point, because a
    /// backup tool that deletes backups nobody asked it to delete is worse than one that grows.
    /// A count of 0 is treated as unset (validation never produces one).
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().all(|n| n.unwrap_or(0) == 0) && self.keep_within.is_none()
    }
}

/// Durations are shown as written in the configuration (`120d`, not humantime's
/// `3months 28days 16h 19m 12s`), so `kvkeep config show` output can be pasted back.
fn duration<S: serde::Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&super::short_duration(*d))
}

fn optional_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, ser),
        None => ser.serialize_none(),
    }
}
