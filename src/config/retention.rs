//! `[defaults.retention]` and `[vault.retention]`: the raw table, its validation, and the merge
//! of a vault's keys over the defaults' into a [`RetentionPolicy`].
//!
//! Kept apart from `validate.rs` so the retention keys have one home; errors follow the same
//! rules as everywhere in the configuration: key path and line, never the value.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{line_of, parse_duration_within, ConfigError};
use crate::retention::{
    RetentionPolicy, DEFAULT_GRACE_PERIOD, DEFAULT_KEEP_DELETED_FOR, DEFAULT_MIN_RETENTION,
};

/// The largest `keep_*` count: far above any sensible policy, small enough that a typo of a few
/// extra digits is caught.
const MAX_COUNT: i64 = 100_000;
const YEAR: u64 = 366 * 86_400;
/// `min_retention` up to ten years: past that it stops every prune, which is better said with an
/// empty policy.
const MAX_MIN_RETENTION: Duration = Duration::from_secs(10 * YEAR);
/// `keep_within` and `keep_deleted_for` up to a century; the bound only keeps the arithmetic on
/// timestamps from overflowing.
const MAX_LONG: Duration = Duration::from_secs(100 * YEAR);

/// `[defaults.retention]` / `[[vault]] retention`: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Keep the newest n restore points.
    pub keep_last: Option<Spanned<i64>>,
    /// Newest point of each of the last n hours with points.
    pub keep_hourly: Option<Spanned<i64>>,
    /// … days.
    pub keep_daily: Option<Spanned<i64>>,
    /// … ISO weeks.
    pub keep_weekly: Option<Spanned<i64>>,
    /// … months.
    pub keep_monthly: Option<Spanned<i64>>,
    /// … years.
    pub keep_yearly: Option<Spanned<i64>>,
    /// Keep every point younger than this (e.g. `14d`).
    pub keep_within: Option<Spanned<String>>,
    /// Nothing younger is ever deleted (default `7d`).
    pub min_retention: Option<Spanned<String>>,
    /// How long the last copy of a deleted object is kept (default `120d`).
    pub keep_deleted_for: Option<Spanned<String>>,
    /// Whether the daemon prunes the vault after each successful backup (default false).
    pub prune: Option<bool>,
    /// How old the blobs of a run that never committed must be before prune deletes them
    /// (default `24h`).
    pub grace_period: Option<Spanned<String>>,
}

/// The retention keys one table set, validated, before defaults are merged.
#[derive(Debug, Clone, Default)]
pub(super) struct RetentionSettings {
    counts: [Option<u32>; 6],
    keep_within: Option<Duration>,
    min_retention: Option<Duration>,
    keep_deleted_for: Option<Duration>,
    prune: Option<bool>,
    grace_period: Option<Duration>,
}

/// `grace_period` at least an hour: a run of a big vault, or one going on another host, may
/// still be writing its blobs; a year at most.
const MIN_GRACE: Duration = Duration::from_secs(3_600);
const MAX_GRACE: Duration = Duration::from_secs(YEAR);

const COUNT_KEYS: [&str; 6] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
];

/// Validates the table at `at` (`defaults` or `vault[2]`), pushing problems to `errors` with
/// lines taken from `text`.
pub(super) fn settings(
    at: &str,
    raw: Option<RawRetention>,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> RetentionSettings {
    let Some(raw) = raw else {
        return RetentionSettings::default();
    };
    let mut error = |key: &str, line_at: usize, message: String| {
        errors.push(ConfigError {
            path: format!("{at}.retention.{key}"),
            line: Some(line_of(text, line_at)),
            message,
        });
    };
    let mut out = RetentionSettings::default();
    let counts = [
        &raw.keep_last,
        &raw.keep_hourly,
        &raw.keep_daily,
        &raw.keep_weekly,
        &raw.keep_monthly,
        &raw.keep_yearly,
    ];
    for ((key, value), slot) in COUNT_KEYS.iter().zip(counts).zip(&mut out.counts) {
        let Some(value) = value else { continue };
        match u32::try_from(*value.get_ref()) {
            // 0 is "off": a vault's way to drop a rule its [defaults.retention] sets.
            Ok(n) if (0..=MAX_COUNT).contains(value.get_ref()) => *slot = Some(n),
            _ => error(
                key,
                value.span().start,
                format!("must be a whole number between 0 and {MAX_COUNT} (0 turns the rule off; leave the key out to inherit it)"),
            ),
        }
    }
    let durations = [
        (
            "keep_within",
            &raw.keep_within,
            Duration::from_secs(1),
            MAX_LONG,
            "every restore point younger than this is kept, e.g. \"14d\"",
        ),
        (
            "min_retention",
            &raw.min_retention,
            Duration::ZERO,
            MAX_MIN_RETENTION,
            "nothing younger is ever deleted; at most 10 years; \"0s\" for no minimum",
        ),
        (
            "keep_deleted_for",
            &raw.keep_deleted_for,
            Duration::ZERO,
            MAX_LONG,
            "how long the last copy of a deleted object is kept, e.g. \"120d\"",
        ),
    ];
    let mut parsed = [None; 4];
    let durations = durations.into_iter().chain([(
        "grace_period",
        &raw.grace_period,
        MIN_GRACE,
        MAX_GRACE,
        "how old the blobs of a run that never finished must be before prune deletes them, e.g. \"24h\"",
    )]);
    for ((key, value, min, max, hint), slot) in durations.zip(&mut parsed) {
        let Some(value) = value else { continue };
        match parse_duration_within(value.get_ref(), min, max) {
            Ok(d) => *slot = Some(d),
            Err(why) => error(key, value.span().start, format!("{why} ({hint})")),
        }
    }
    [
        out.keep_within,
        out.min_retention,
        out.keep_deleted_for,
        out.grace_period,
    ] = parsed;
    out.prune = raw.prune;
    out
}

impl RetentionSettings {
    /// The vault's policy: each key from the vault's own table when it sets it, else from
    /// `[defaults.retention]`, else kvkeep's default (no rule, `min_retention = "7d"`,
    /// `keep_deleted_for = "120d"`).
    pub(super) fn over(&self, defaults: &RetentionSettings) -> RetentionPolicy {
        let count = |i: usize| self.counts[i].or(defaults.counts[i]);
        RetentionPolicy {
            keep_last: count(0),
            keep_hourly: count(1),
            keep_daily: count(2),
            keep_weekly: count(3),
            keep_monthly: count(4),
            keep_yearly: count(5),
            keep_within: self.keep_within.or(defaults.keep_within),
            min_retention: self
                .min_retention
                .or(defaults.min_retention)
                .unwrap_or(DEFAULT_MIN_RETENTION),
            keep_deleted_for: self
                .keep_deleted_for
                .or(defaults.keep_deleted_for)
                .unwrap_or(DEFAULT_KEEP_DELETED_FOR),
            prune: self.prune.or(defaults.prune).unwrap_or(false),
            grace_period: self
                .grace_period
                .or(defaults.grace_period)
                .unwrap_or(DEFAULT_GRACE_PERIOD),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, ConfigErrors};
    use crate::retention::RetentionPolicy;

    const DAY: u64 = 86_400;

    /// A valid file with two vaults, with `extra` after `[[vault]] kv-a` (so `[vault.retention]`
    /// there belongs to kv-a) and `defaults` as the `[defaults]` section.
    fn file(defaults: &str, extra: &str) -> String {
        format!(
            "[store]\ntype = \"local\"\npath = \"/var/lib/kvkeep/store\"\n\n[encryption]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\n[defaults]\n{defaults}\n\n[[vault]]\nname = \"kv-b\"\n\n[[vault]]\nname = \"kv-a\"\n{extra}\n"
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(
            text,
            "kvkeep.toml",
            Path::new("/etc/kvkeep"),
            &|_: &Path| Err(std::io::Error::new(std::io::ErrorKind::NotFound, "none")),
        )
    }

    #[test]
    fn without_a_retention_table_everything_is_kept_with_the_default_guards() {
        let c = parse(&file("", "")).expect("valid");
        let policy = &c.vaults[0].retention;
        assert!(policy.is_empty());
        assert_eq!(policy.min_retention, Duration::from_secs(7 * DAY));
        assert_eq!(policy.keep_deleted_for, Duration::from_secs(120 * DAY));
        assert_eq!(*policy, RetentionPolicy::default());
    }

    #[test]
    fn a_zero_count_turns_off_a_rule_the_defaults_set() {
        let defaults = "[defaults.retention]\nkeep_daily = 7";
        let own = "\n[vault.retention]\nkeep_daily = 0";
        let c = parse(&file(defaults, own)).expect("valid");
        let [b, a] = [&c.vaults[0].retention, &c.vaults[1].retention];
        assert_eq!(b.keep_daily, Some(7));
        assert!(!b.is_empty());
        // kv-a has no rule left: it keeps everything, as a vault without a policy does.
        assert!(a.is_empty(), "{a:?}");
    }

    #[test]
    fn a_vault_key_overrides_the_same_default_key_only() {
        let defaults = "[defaults.retention]\nkeep_daily = 7\nkeep_weekly = 4\nkeep_within = \"48h\"\nmin_retention = \"14d\"";
        let own = "\n[vault.retention]\nkeep_daily = 30\nkeep_deleted_for = \"0s\"";
        let c = parse(&file(defaults, own)).expect("valid");
        let [b, a] = [&c.vaults[0].retention, &c.vaults[1].retention];
        assert_eq!(
            *b,
            RetentionPolicy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_within: Some(Duration::from_secs(48 * 3_600)),
                min_retention: Duration::from_secs(14 * DAY),
                ..RetentionPolicy::default()
            }
        );
        assert_eq!(
            *a,
            RetentionPolicy {
                keep_daily: Some(30),
                keep_weekly: Some(4),
                keep_within: Some(Duration::from_secs(48 * 3_600)),
                min_retention: Duration::from_secs(14 * DAY),
                keep_deleted_for: Duration::ZERO,
                ..RetentionPolicy::default()
            }
        );
        let all = "[defaults.retention]\nkeep_last = 1\nkeep_hourly = 2\nkeep_daily = 3\nkeep_weekly = 4\nkeep_monthly = 5\nkeep_yearly = 100000\nmin_retention = \"0s\"";
        let c = parse(&file(all, "")).expect("valid");
        let p = &c.vaults[1].retention;
        let counts = [
            p.keep_last,
            p.keep_hourly,
            p.keep_daily,
            p.keep_weekly,
            p.keep_monthly,
            p.keep_yearly,
        ];
        assert_eq!(counts, [1, 2, 3, 4, 5, 100_000].map(Some));
        assert_eq!(p.min_retention, Duration::ZERO);
    }

    #[test]
    fn config_show_includes_the_policy() {
        let c = parse(&file("[defaults.retention]\nkeep_daily = 7", "")).expect("valid");
        let shown = serde_json::to_value(&c).expect("json");
        let r = &shown["vaults"][0]["retention"];
        assert_eq!(r["keep_daily"], 7);
        assert_eq!(r["keep_monthly"], serde_json::Value::Null);
        assert_eq!(r["min_retention"], "7d");
        assert_eq!(r["keep_deleted_for"], "120d");
    }

    /// The commented-out block in `config/kvkeep.example.toml` is valid once uncommented.
    #[test]
    fn the_example_files_retention_block_parses_when_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kvkeep.example.toml");
        let example = std::fs::read_to_string(path).expect("the shipped example");
        let keys = ["[defaults.retention]", "keep_", "min_retention"];
        let text: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => format!("{rest}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(
            text.contains("\n[defaults.retention]\n"),
            "the block is still there"
        );
        let c = parse(&text).expect("valid");
        let p = &c.vaults[0].retention;
        assert_eq!(
            (p.keep_last, p.keep_daily, p.keep_weekly),
            (Some(3), Some(14), Some(8))
        );
        assert_eq!(p.keep_within, Some(Duration::from_secs(48 * 3_600)));
        assert_eq!(
            *p,
            RetentionPolicy {
                keep_last: Some(3),
                keep_daily: Some(14),
                keep_weekly: Some(8),
                keep_within: Some(Duration::from_secs(48 * 3_600)),
                ..RetentionPolicy::default()
            }
        );
    }

    /// Each bad key: where it goes, the path and line the error must name, a phrase it must
    /// contain, and text that must not be echoed.
    #[test]
    fn bad_keys_name_path_and_line_and_never_echo_the_value() {
        // Line of `extra`'s first line in `file("", extra)` and of `defaults`' first line.
        const VAULT_LINE: usize = 16;
        const DEFAULTS_LINE: usize = 9;
        let cases: [(&str, &str, &str, usize, &str, &str); 12] = [
            (
                "",
                "keep_daily = 100001",
                "vault[1].retention.keep_daily",
                1,
                "between 0 and 100000",
                "100001",
            ),
            (
                "",
                "keep_hourly = -3",
                "vault[1].retention.keep_hourly",
                1,
                "between 0 and 100000",
                "-3",
            ),
            (
                "",
                "keep_yearly = 9999999999",
                "vault[1].retention.keep_yearly",
                1,
                "between 0 and 100000",
                "9999999999",
            ),
            (
                "",
                "keep_within = \"SECRETSAUCE\"",
                "vault[1].retention.keep_within",
                1,
                "not a duration",
                "SECRETSAUCE",
            ),
            (
                "",
                "keep_within = \"0s\"",
                "vault[1].retention.keep_within",
                1,
                "at least 1s",
                "0s",
            ),
            (
                "",
                "min_retention = \"11y\"",
                "vault[1].retention.min_retention",
                1,
                "at most 3660d",
                "11y",
            ),
            (
                "",
                "keep_deleted_for = \"-5d\"",
                "vault[1].retention.keep_deleted_for",
                1,
                "not a duration",
                "-5d",
            ),
            (
                "",
                "keep_deleted_for = \"999999999999y\"",
                "vault[1].retention.keep_deleted_for",
                1,
                "at most 36600d",
                "999999999999y",
            ),
            (
                "",
                "keep_dayly = 7",
                "vault[1].retention.keep_dayly",
                1,
                "unknown field `keep_dayly`",
                "= 7",
            ),
            (
                "",
                "keep_daily = \"SECRETSAUCE\"",
                "vault[1].retention.keep_daily",
                1,
                "wrong type",
                "SECRETSAUCE",
            ),
            (
                "keep_monthly = -1",
                "",
                "defaults.retention.keep_monthly",
                0,
                "between 0 and 100000",
                "-1",
            ),
            (
                "min_retention = \"SECRETSAUCE\"",
                "",
                "defaults.retention.min_retention",
                0,
                "not a duration",
                "SECRETSAUCE",
            ),
        ];
        for (defaults, own, path, in_vault, phrase, secret) in cases {
            let text = if in_vault == 1 {
                file("", &format!("\n[vault.retention]\n{own}"))
            } else {
                file(&format!("[defaults.retention]\n{defaults}"), "")
            };
            let line = if in_vault == 1 {
                VAULT_LINE + 2
            } else {
                DEFAULTS_LINE + 1
            };
            let err = parse(&text).expect_err(path);
            let rendered = err.to_string();
            assert!(
                err.errors
                    .iter()
                    .any(|e| e.path == path && e.line == Some(line) && e.message.contains(phrase)),
                "expected {path:?} at line {line} with {phrase:?}; got:\n{rendered}\nfor:\n{text}"
            );
            assert!(!rendered.contains(secret), "{secret} echoed: {rendered}");
        }
    }
}
