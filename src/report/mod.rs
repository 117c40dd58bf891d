//! `kvkeep report` (issue #10): per vault, what can be restored and from when, whether the
//! vault meets its RPO, what is not covered, what the next prune would forget, what the backups
//! weigh, when they were last verified and which objects Key Vault will soon expire. Built from the index alone (no Key Vault call) at a
//! "now" passed in, so the same index and time always give the same report.
//!
//! [`Report`] is the model and, serialized, the JSON form (`report_format` 1; its fields are
//! documented in the README). Adding a field is compatible; renaming or removing one, or
//! changing its meaning, bumps [`REPORT_FORMAT`]. The CSV form is [`csv`], one section per
//! file; the HTML page is [`html`], drawn from the model and the [`timeline`] of every restore
//! point; the terminal table is drawn by `cli::report`.

pub mod csv;
mod expiry;
pub mod html;
mod rpo;
#[cfg(test)]
pub(crate) mod tests;
pub mod timeline;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

pub use expiry::{
    key_vault_expiry, ExpiringObject, KeyVaultExpiryReport, ReportOptions, DEFAULT_EXPIRING_WITHIN,
    MAX_EXPIRING_WITHIN,
};
pub use rpo::{assess, late_after, schedule_period, RpoReport, RpoStatus, MIN_GRACE};

use crate::config::VaultConfig;
use crate::index::{Index, IndexError, RunStatus, VerificationDepth, VerificationRecord};
use crate::model::{ObjectKind, ObjectName, RunId, VaultName};
use crate::retention::{plan_prune, short_duration, RetentionPolicy};
use crate::scheduler::Timetable;

/// The version of the JSON (and CSV) layout.
pub const REPORT_FORMAT: u32 = 1;
/// Key Vault refuses to back up an object with more versions than this.
pub const VERSION_LIMIT: u64 = 500;
/// Objects whose newest capture holds at least this many versions are listed, so they can be
/// cleaned up before their backups start failing.
pub const VERSION_WARNING: u64 = 450;
/// The window of the storage growth figures.
pub const GROWTH_WINDOW_DAYS: u32 = 30;

/// One section of the report: what `--section` selects and CSV holds one of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Restore points: count, oldest, newest, by status, policy.
    RestorePoints,
    /// RPO status.
    Rpo,
    /// Objects without a fresh backup, and objects near the version limit.
    Coverage,
    /// What the next prune would forget.
    Expirations,
    /// Stored and plain bytes per kind, growth.
    Storage,
    /// Last quick, deep and drill verification.
    Verification,
    /// Objects whose Key Vault `exp` falls within `--expiring-within`.
    KeyVaultExpiry,
}

impl Section {
    /// Every section, in report order.
    pub const ALL: [Section; 7] = [
        Section::RestorePoints,
        Section::Rpo,
        Section::Coverage,
        Section::Expirations,
        Section::Storage,
        Section::Verification,
        Section::KeyVaultExpiry,
    ];

    /// The section's name, as `--section` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::RestorePoints => "restore-points",
            Section::Rpo => "rpo",
            Section::Coverage => "coverage",
            Section::Expirations => "expirations",
            Section::Storage => "storage",
            Section::Verification => "verification",
            Section::KeyVaultExpiry => "key-vault-expiry",
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub report_format: u32,
    /// The "now" it was built for.
    #[serde(serialize_with = "time::required")]
    pub generated_at: i64,
    /// One entry per vault, in the order asked for (configuration order by default).
    pub vaults: Vec<VaultReport>,
}

/// Everything about one vault.
#[derive(Debug, Clone, Serialize)]
pub struct VaultReport {
    /// The vault.
    pub vault: VaultName,
    /// Its restore points.
    pub restore_points: RestorePointsReport,
    /// Its RPO status.
    pub rpo: RpoReport,
    /// What is not covered.
    pub coverage: CoverageReport,
    /// What the next prune would forget.
    pub expirations: ExpirationsReport,
    /// What its backups weigh.
    pub storage: StorageReport,
    /// Its last verifications.
    pub verification: VerificationReport,
    /// Its objects whose Key Vault `exp` is near or past.
    pub key_vault_expiry: KeyVaultExpiryReport,
}

/// Restore points of a vault and the policy that keeps them.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePointsReport {
    /// How many.
    pub count: u64,
    /// Start of the oldest.
    #[serde(serialize_with = "time::optional")]
    pub oldest: Option<i64>,
    /// Start of the newest.
    #[serde(serialize_with = "time::optional")]
    pub newest: Option<i64>,
    /// How many ended with each status.
    pub by_status: StatusCounts,
    /// The retention policy in one line (`none: keeping everything` without a `keep_*` rule).
    pub policy: String,
    /// The policy's keys, as `kvkeep config show` prints them.
    pub policy_rules: RetentionPolicy,
}

/// Restore points per final status (a point's run wrote its manifest whatever its status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// `completed`
    pub completed: u64,
    /// `partially_failed`
    pub partially_failed: u64,
    /// `failed`
    pub failed: u64,
    /// `interrupted`
    pub interrupted: u64,
}

/// Objects without a fresh backup, and objects near Key Vault's version limit.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// How many objects no restore point holds.
    pub never_captured: u64,
    /// How many objects the newest restore point failed on but an older one holds.
    pub failing: u64,
    /// Those objects, by kind and name.
    pub objects: Vec<UncoveredObject>,
    /// [`VERSION_WARNING`].
    pub version_warning_at: u64,
    /// [`VERSION_LIMIT`].
    pub version_limit: u64,
    /// Objects whose newest capture holds at least `version_warning_at` versions, most first.
    pub many_versions: Vec<ManyVersions>,
    /// What the newest run that counted them left out on purpose; `null` when no run has
    /// (none yet, or all recorded before kvkeep counted them, or rebuilt from manifests).
    pub skipped: Option<SkippedReport>,
}

/// What the newest run left out on purpose, in one line (the table and the HTML page).
pub fn skipped_line(skipped: Option<&SkippedReport>) -> String {
    match skipped {
        None => "not known yet (counted from the next backup on)".to_string(),
        Some(s) => format!(
            "{} certificate-managed, {} by include/exclude, {} by skip tag (run of {})",
            s.managed,
            s.filtered,
            s.tagged,
            crate::restore::plan::rfc3339(s.as_of)
        ),
    }
}

/// Listed objects a run left out on purpose, by reason: covered some other way, or excluded by
/// the configuration. Not a gap in coverage, but worth seeing when a filter is wrong.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SkippedReport {
    /// Start of the run that counted them.
    #[serde(serialize_with = "time::required")]
    pub as_of: i64,
    /// A certificate's key or secret, which the certificate's backup covers.
    pub managed: u64,
    /// Left out by the vault's `include` or `exclude`.
    pub filtered: u64,
    /// Carrying one of the vault's skip tags.
    pub tagged: u64,
}

/// An object without a fresh backup.
#[derive(Debug, Clone, Serialize)]
pub struct UncoveredObject {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: ObjectName,
    /// `never_captured` (no restore point holds it) or `failing` (an older one does).
    pub state: &'static str,
    /// Its newest capture a restore point holds.
    #[serde(serialize_with = "time::optional")]
    pub last_captured_at: Option<i64>,
    /// The newest error's class, when the newest restore point's run failed on it.
    pub error_kind: Option<String>,
    /// The newest error, for a person.
    pub error: Option<String>,
    /// When its failures began (after it was last captured or seen unchanged).
    #[serde(serialize_with = "time::optional")]
    pub failing_since: Option<i64>,
    /// How many runs failed on it since then.
    pub failed_runs: Option<u64>,
}

/// An object near the version limit.
#[derive(Debug, Clone, Serialize)]
pub struct ManyVersions {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: ObjectName,
    /// Versions in its newest capture.
    pub versions: u64,
    /// When that capture was taken.
    #[serde(serialize_with = "time::required")]
    pub captured_at: i64,
}

/// What the next prune would forget, were it run at report time.
#[derive(Debug, Clone, Serialize)]
pub struct ExpirationsReport {
    /// Restore points it would forget.
    pub forgotten_points: u64,
    /// Those points counted by reason.
    pub by_reason: Vec<ReasonCount>,
    /// The points, newest first.
    pub points: Vec<ExpiringPoint>,
    /// Manifests it would delete.
    pub manifests: u64,
    /// Object blobs no kept point holds.
    pub blobs: u64,
    /// Their stored size.
    pub stored_bytes: u64,
}

/// How many points are forgotten for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    /// The reason, as prune words it.
    pub reason: String,
    /// How many points.
    pub points: u64,
}

/// A restore point the next prune would forget.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringPoint {
    /// Its run.
    pub run: RunId,
    /// Its start.
    #[serde(serialize_with = "time::required")]
    pub started_at: i64,
    /// Its status.
    pub status: String,
    /// Why it goes.
    pub reason: String,
}

/// What a vault's backups weigh.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReport {
    /// Object blobs the index records (manifests are not counted).
    pub blobs: u64,
    /// Their size as stored.
    pub stored_bytes: u64,
    /// Their payload size before compression and encryption.
    pub plain_bytes: u64,
    /// Captures taken in the last [`GROWTH_WINDOW_DAYS`] days.
    pub growth_30d: Growth,
    /// The same per kind (kinds without blobs left out).
    pub by_kind: Vec<KindStorage>,
}

/// Captures taken in the growth window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Growth {
    /// How many.
    pub captures: u64,
    /// Their stored size.
    pub stored_bytes: u64,
    /// Their payload size.
    pub plain_bytes: u64,
}

/// Storage of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindStorage {
    /// The kind.
    pub kind: ObjectKind,
    /// Object blobs.
    pub blobs: u64,
    /// Their size as stored.
    pub stored_bytes: u64,
    /// Their payload size.
    pub plain_bytes: u64,
    /// Captures in the growth window.
    pub growth_30d: Growth,
}

/// The last verification at each depth.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationReport {
    /// Blobs present with their recorded size and hash.
    pub quick: Option<LastVerification>,
    /// Blobs open and match the index.
    pub deep: Option<LastVerification>,
    /// A restore into a scratch vault matched.
    pub drill: Option<LastVerification>,
}

/// One verification's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LastVerification {
    /// When.
    #[serde(serialize_with = "time::required")]
    pub at: i64,
    /// `ok` or `problems`.
    pub result: &'static str,
    /// What it found.
    pub detail: String,
}

impl From<VerificationRecord> for LastVerification {
    fn from(v: VerificationRecord) -> Self {
        LastVerification {
            at: v.at,
            result: if v.ok { "ok" } else { "problems" },
            detail: v.detail,
        }
    }
}

/// Builds the report of `vaults` from `index` at `now`, with the default options.
pub fn build_report(
    index: &Index,
    vaults: &[VaultConfig],
    now: DateTime<Utc>,
) -> Result<Report, IndexError> {
    build_report_with(index, vaults, now, &ReportOptions::default())
}

/// Builds the report of `vaults` from `index` at `now` with `options`.
pub fn build_report_with(
    index: &Index,
    vaults: &[VaultConfig],
    now: DateTime<Utc>,
    options: &ReportOptions,
) -> Result<Report, IndexError> {
    let vaults = vaults
        .iter()
        .map(|v| vault_report(index, v, now, options, &plan_prune(index, v, now)?))
        .collect::<Result<_, _>>()?;
    Ok(Report {
        report_format: REPORT_FORMAT,
        generated_at: now.timestamp(),
        vaults,
    })
}

/// The report of one vault, whose prune plan at `now` is `plan` (the HTML page shares it with
/// the vault's timeline rather than planning twice).
pub(crate) fn vault_report(
    index: &Index,
    vault: &VaultConfig,
    now: DateTime<Utc>,
    options: &ReportOptions,
    plan: &crate::retention::PrunePlan,
) -> Result<VaultReport, IndexError> {
    let points = index.restore_points(&vault.name)?;
    let mut by_status = StatusCounts::default();
    for p in &points {
        match p.status {
            RunStatus::Completed => by_status.completed += 1,
            RunStatus::PartiallyFailed => by_status.partially_failed += 1,
            RunStatus::Failed => by_status.failed += 1,
            RunStatus::Interrupted => by_status.interrupted += 1,
            // A manifest only ever ends a run; the index refuses a running one with a manifest.
            RunStatus::Running => {}
        }
    }
    let restore_points = RestorePointsReport {
        count: points.len() as u64,
        oldest: points.first().map(|p| p.started_at),
        newest: points.last().map(|p| p.started_at),
        by_status,
        policy: policy_line(&vault.retention),
        policy_rules: vault.retention.clone(),
    };

    // The same points retention counts: see `rpo.rs` for why failed and interrupted ones don't.
    let newest_counted = points
        .iter()
        .rev()
        .find(|p| matches!(p.status, RunStatus::Completed | RunStatus::PartiallyFailed))
        .map(|p| p.started_at);
    let schedule = Timetable::for_vault(vault)
        .and_then(|t| schedule_period(&t, now).map(|period| (t.schedule().to_string(), period)));
    let rpo = assess(
        newest_counted,
        schedule.as_ref().map(|(expr, p)| (expr.as_str(), *p)),
        vault.jitter,
        vault.rpo,
        now.timestamp(),
    );

    let uncovered: Vec<UncoveredObject> = index
        .uncovered_objects(&vault.name)?
        .into_iter()
        .map(|o| UncoveredObject {
            kind: o.kind,
            name: o.name,
            state: if o.last_captured_at.is_some() {
                "failing"
            } else {
                "never_captured"
            },
            last_captured_at: o.last_captured_at,
            error_kind: o.failure.as_ref().map(|f| f.error_kind.clone()),
            error: o.failure.as_ref().map(|f| f.message.clone()),
            failing_since: o.failure.as_ref().map(|f| f.since),
            failed_runs: o.failure.as_ref().map(|f| f.failed_runs),
        })
        .collect();
    let coverage = CoverageReport {
        never_captured: uncovered
            .iter()
            .filter(|o| o.state == "never_captured")
            .count() as u64,
        failing: uncovered.iter().filter(|o| o.state == "failing").count() as u64,
        objects: uncovered,
        version_warning_at: VERSION_WARNING,
        version_limit: VERSION_LIMIT,
        many_versions: index
            .objects_with_many_versions(&vault.name, VERSION_WARNING)?
            .into_iter()
            .map(|o| ManyVersions {
                kind: o.kind,
                name: o.name,
                versions: o.versions,
                captured_at: o.captured_at,
            })
            .collect(),
        skipped: index
            .newest_skipped(&vault.name)?
            .map(|(as_of, counts)| SkippedReport {
                as_of,
                managed: counts.managed,
                filtered: counts.filtered,
                tagged: counts.tagged,
            }),
    };

    let mut by_reason: Vec<ReasonCount> = Vec::new();
    let mut expiring = Vec::new();
    for p in plan.decision.forgotten() {
        let reason = p
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        match by_reason.iter_mut().find(|r| r.reason == reason) {
            Some(r) => r.points += 1,
            None => by_reason.push(ReasonCount {
                reason: reason.clone(),
                points: 1,
            }),
        }
        expiring.push(ExpiringPoint {
            run: p.run.clone(),
            started_at: p.started_at.timestamp(),
            status: p.status.as_str().to_string(),
            reason,
        });
    }
    let expirations = ExpirationsReport {
        forgotten_points: expiring.len() as u64,
        by_reason,
        points: expiring,
        manifests: plan.forget_manifests.len() as u64,
        blobs: plan.freed_blobs,
        stored_bytes: plan.freed_bytes,
    };

    let window_start = now - TimeDelta::days(i64::from(GROWTH_WINDOW_DAYS));
    let mut by_kind: Vec<KindStorage> = index
        .storage_by_kind(&vault.name, window_start.timestamp(), now.timestamp())?
        .into_iter()
        .map(|k| KindStorage {
            kind: k.kind,
            blobs: k.blobs,
            stored_bytes: k.stored_bytes,
            plain_bytes: k.plain_bytes,
            growth_30d: Growth {
                captures: k.window_captures,
                stored_bytes: k.window_stored_bytes,
                plain_bytes: k.window_plain_bytes,
            },
        })
        .collect();
    // In kvkeep's kind order (keys, secrets, certificates), as everywhere else in the report.
    by_kind.sort_by_key(|k| k.kind);
    let mut growth = Growth::default();
    for k in &by_kind {
        growth.captures += k.growth_30d.captures;
        growth.stored_bytes += k.growth_30d.stored_bytes;
        growth.plain_bytes += k.growth_30d.plain_bytes;
    }
    let storage = StorageReport {
        blobs: by_kind.iter().map(|k| k.blobs).sum(),
        stored_bytes: by_kind.iter().map(|k| k.stored_bytes).sum(),
        plain_bytes: by_kind.iter().map(|k| k.plain_bytes).sum(),
        growth_30d: growth,
        by_kind,
    };

    let last = |depth| -> Result<Option<LastVerification>, IndexError> {
        Ok(index
            .last_verification(&vault.name, Some(depth))?
            .map(LastVerification::from))
    };
    let verification = VerificationReport {
        quick: last(VerificationDepth::Quick)?,
        deep: last(VerificationDepth::Deep)?,
        drill: last(VerificationDepth::Drill)?,
    };

    Ok(VaultReport {
        vault: vault.name.clone(),
        restore_points,
        rpo,
        coverage,
        expirations,
        storage,
        verification,
        key_vault_expiry: key_vault_expiry(
            index,
            &vault.name,
            now.timestamp(),
            options.expiring_within,
        )?,
    })
}

/// The policy in one line, its rules as configured: `keep_daily 7, keep_monthly 2
/// (min_retention 7d, keep_deleted_for 120d)`.
pub fn policy_line(policy: &RetentionPolicy) -> String {
    if policy.is_empty() {
        return "none: keeping everything".into();
    }
    let counts = [
        ("keep_last", policy.keep_last),
        ("keep_hourly", policy.keep_hourly),
        ("keep_daily", policy.keep_daily),
        ("keep_weekly", policy.keep_weekly),
        ("keep_monthly", policy.keep_monthly),
        ("keep_yearly", policy.keep_yearly),
    ];
    let mut rules: Vec<String> = counts
        .iter()
        .filter_map(|(key, n)| n.filter(|n| *n > 0).map(|n| format!("{key} {n}")))
        .collect();
    if let Some(within) = policy.keep_within {
        rules.push(format!("keep_within {}", short_duration(within)));
    }
    format!(
        "{} (min_retention {}, keep_deleted_for {})",
        rules.join(", "),
        short_duration(policy.min_retention),
        short_duration(policy.keep_deleted_for)
    )
}

/// A duration in its two largest units, as people read an age: `3d 4h`, `5h 30m`, `45m 10s`,
/// `12s`; a zero second unit is left out (`1d`, not `1d 0h`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let units = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let mut out = format!("{}{}", units[first].0, units[first].1);
    if let Some((n, unit)) = units.get(first + 1).filter(|(n, _)| *n > 0) {
        out.push_str(&format!(" {n}{unit}"));
    }
    out
}

/// Times in the JSON form: RFC 3339 in UTC (`2026-11-28T19:05:00Z`), `null` when absent.
pub(crate) mod time {
    /// A time that is always there.
    pub fn required<S: serde::Serializer>(at: &i64, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&crate::restore::plan::rfc3339(*at))
    }

    /// A time that may be absent.
    pub fn optional<S: serde::Serializer>(at: &Option<i64>, ser: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => required(at, ser),
            None => ser.serialize_none(),
        }
    }
}
