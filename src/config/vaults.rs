//! Validation of `[defaults]` and each `[[vault]]`: names, URLs, kinds, filters, schedules and
//! time zones, deep scans, jitter, verify schedules, retention and RPO, with the defaults merged
//! into each vault.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::model::*;
use super::parse_duration_within;
use super::raw::*;
use super::validate::Check;
use crate::model::{ObjectKind, VaultName};
use crate::scheduler::Schedule;

/// Deep scans at most hourly (each lists every version of every object) and at least yearly.
const MIN_DEEP_SCAN: Duration = Duration::from_secs(3_600);
const MAX_DEEP_SCAN: Duration = Duration::from_secs(366 * 86_400);
const DEFAULT_DEEP_SCAN: &str = "7d";
/// Jitter spreads starts inside a window; past a day it would blur even daily schedules.
const MAX_JITTER: Duration = Duration::from_secs(86_400);
/// Bounds of `rpo`: below a minute no schedule could meet it; above a year it says nothing.
const MIN_RPO: Duration = Duration::from_secs(60);
const MAX_RPO: Duration = Duration::from_secs(366 * 86_400);
/// Quick verify reads every blob's metadata: weekly unless configured.
const DEFAULT_VERIFY_SCHEDULE: &str = "@weekly";
const UNKNOWN_TIME_ZONE: &str = "unknown time zone: use an IANA name such as UTC or Europe/Berlin";

/// `e`'s message without the value it quotes: the key path and line say where it is.
fn unquoted(e: impl std::fmt::Display, value: &str) -> String {
    e.to_string().replace(&format!(" {value:?}"), "")
}

/// Per-vault settings after validation, before defaults are merged.
#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    schedule: Option<(String, Spanned<String>)>,
    timezone: Option<Spanned<String>>,
    kinds: Option<BTreeSet<ObjectKind>>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    skip_tags: Option<BTreeMap<String, String>>,
    payload: Option<PayloadMode>,
    deep_scan_every: Option<Duration>,
    jitter: Option<Duration>,
    paused: Option<bool>,
    verify_schedule: Option<(String, Spanned<String>)>,
    retention: super::retention::RetentionSettings,
    rpo: Option<Duration>,
}

/// Validates the per-vault keys of `[defaults]` or one `[[vault]]` (at key path `at`).
pub(super) fn vault_settings(
    c: &mut Check,
    at: &str,
    raw: RawVaultDefaults,
    _parent: Option<&Settings>,
) -> Option<Settings> {
    let before = c.errors.len();
    let mut s = Settings {
        schedule: raw.schedule.map(|v| (v.get_ref().clone(), v)),
        timezone: raw.timezone,
        skip_tags: raw.skip_tags,
        paused: raw.paused.map(Spanned::into_inner),
        verify_schedule: raw.verify_schedule.map(|v| (v.get_ref().clone(), v)),
        retention: super::retention::settings(at, raw.retention, c.text, &mut c.errors),
        ..Settings::default()
    };
    if let Some(kinds) = raw.kinds {
        let mut set = BTreeSet::new();
        for (i, k) in kinds.iter().enumerate() {
            match ObjectKind::from_str(k.get_ref()) {
                Ok(kind) => {
                    set.insert(kind);
                }
                Err(e) => c.at(format!("{at}.kinds[{i}]"), k, unquoted(e, k.get_ref())),
            }
        }
        if kinds.is_empty() {
            c.here(
                format!("{at}.kinds"),
                "must name at least one of keys, secrets, certificates",
            );
        }
        s.kinds = Some(set);
    }
    for (key, list, slot) in [
        ("include", raw.include, &mut s.include),
        ("exclude", raw.exclude, &mut s.exclude),
    ] {
        if let Some(list) = list {
            let mut out = Vec::new();
            for (i, g) in list.iter().enumerate() {
                match globset::Glob::new(g.get_ref()) {
                    Ok(_) => out.push(g.get_ref().clone()),
                    Err(e) => c.at(
                        format!("{at}.{key}[{i}]"),
                        g,
                        format!("invalid glob: {}", e.kind()),
                    ),
                }
            }
            *slot = Some(out);
        }
    }
    if let Some(p) = &raw.payload {
        match p.get_ref().as_str() {
            "native" => s.payload = Some(PayloadMode::Native),
            "portable" => c.at(
                format!("{at}.payload"),
                p,
                "payload = \"portable\" is not available yet; use \"native\"",
            ),
            _ => c.at(
                format!("{at}.payload"),
                p,
                "unknown payload mode: expected \"native\"",
            ),
        }
    }
    if let Some(d) = &raw.deep_scan_every {
        match parse_duration_within(d.get_ref(), MIN_DEEP_SCAN, MAX_DEEP_SCAN) {
            Ok(dur) => s.deep_scan_every = Some(dur),
            Err(why) => c.at(
                format!("{at}.deep_scan_every"),
                d,
                format!("{why} (a deep scan lists every version of every object)"),
            ),
        }
    }
    if let Some(j) = &raw.jitter {
        match parse_duration_within(j.get_ref(), Duration::ZERO, MAX_JITTER) {
            Ok(dur) => s.jitter = Some(dur),
            Err(why) => c.at(
                format!("{at}.jitter"),
                j,
                format!(
                    "{why} (the bound of a vault's start offset, e.g. \"10m\"; \"0s\" for none)"
                ),
            ),
        }
    }
    if let Some(r) = &raw.rpo {
        match parse_duration_within(r.get_ref(), MIN_RPO, MAX_RPO) {
            Ok(dur) => s.rpo = Some(dur),
            Err(why) => c.at(
                format!("{at}.rpo"),
                r,
                format!("{why} (the oldest a vault's newest restore point may be, e.g. \"26h\")"),
            ),
        }
    }
    (c.errors.len() == before).then_some(s)
}

/// Validates every `[[vault]]` and merges `defaults` into each.
pub(super) fn vaults(
    c: &mut Check,
    raw: Vec<Spanned<RawVault>>,
    defaults: Option<&Settings>,
) -> Option<Vec<VaultConfig>> {
    if raw.is_empty() {
        c.here(
            "vault",
            "no vaults: add at least one [[vault]] with name = \"...\"",
        );
        return None;
    }
    let before = c.errors.len();
    let empty = Settings::default();
    let defaults = defaults.unwrap_or(&empty);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in raw.into_iter().enumerate() {
        let v = v.into_inner();
        let at = format!("vault[{i}]");
        let name = match VaultName::from_str(v.name.get_ref()) {
            Ok(n) => {
                if !seen.insert(n.clone()) {
                    c.at(
                        format!("{at}.name"),
                        &v.name,
                        "this vault is listed twice (names are case-insensitive)",
                    );
                }
                Some(n)
            }
            Err(e) => {
                c.at(format!("{at}.name"), &v.name, unquoted(e, v.name.get_ref()));
                None
            }
        };
        let url = match (&v.url, &name) {
            (Some(u), _) => vault_url(c, &format!("{at}.url"), u),
            (None, Some(n)) => Some(format!("https://{n}.vault.azure.net")),
            (None, None) => None,
        };
        for (key, val) in [
            ("subscription", &v.subscription),
            ("geography", &v.geography),
        ] {
            if let Some(val) = val {
                if val.get_ref().trim().is_empty() {
                    c.at(format!("{at}.{key}"), val, "must not be empty when given");
                }
            }
        }
        let own = vault_settings(
            c,
            &at,
            RawVaultDefaults {
                schedule: v.schedule,
                timezone: v.timezone,
                kinds: v.kinds,
                include: v.include,
                exclude: v.exclude,
                skip_tags: v.skip_tags,
                payload: v.payload,
                deep_scan_every: v.deep_scan_every,
                jitter: v.jitter,
                paused: v.paused,
                verify_schedule: v.verify_schedule,
                retention: v.retention,
                rpo: v.rpo,
            },
            Some(defaults),
        );
        let Some(own) = own else { continue };
        // Vault settings win over [defaults], key by key.
        let schedule_src = own.schedule.or_else(|| defaults.schedule.clone());
        let tz = own.timezone.or_else(|| defaults.timezone.clone());
        let schedule = match &schedule_src {
            None => None,
            Some((expr, span)) => {
                let tz_name = tz.as_ref().map(|t| t.get_ref().as_str()).unwrap_or("UTC");
                match Schedule::parse(expr, tz_name) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        match (&e, &tz) {
                            (crate::scheduler::ScheduleError::TimeZone(_), Some(t)) => {
                                c.at(format!("{at}.timezone"), t, UNKNOWN_TIME_ZONE);
                            }
                            // A schedule error quotes the expression only when it has the five
                            // fields of cron, so a pasted secret is never repeated.
                            _ => c.at(format!("{at}.schedule"), span, e.to_string()),
                        }
                        continue;
                    }
                }
            }
        };
        if schedule.is_none() {
            if let Some(t) = &tz {
                if chrono_tz::Tz::from_str(t.get_ref()).is_err() {
                    c.at(format!("{at}.timezone"), t, UNKNOWN_TIME_ZONE);
                }
            }
        }
        let tz_name = tz.as_ref().map(|t| t.get_ref().as_str()).unwrap_or("UTC");
        let verify_schedule = match own
            .verify_schedule
            .or_else(|| defaults.verify_schedule.clone())
        {
            // `""` turns quick verify off for this vault.
            Some((expr, _)) if expr.trim().is_empty() => None,
            Some((expr, span)) => match Schedule::parse(&expr, tz_name) {
                Ok(s) => Some(s),
                // A bad time zone is reported once, above.
                Err(crate::scheduler::ScheduleError::TimeZone(_)) => continue,
                Err(e) => {
                    c.at(format!("{at}.verify_schedule"), &span, e.to_string());
                    continue;
                }
            },
            None => Schedule::parse(DEFAULT_VERIFY_SCHEDULE, tz_name).ok(),
        };
        let (Some(name), Some(url)) = (name, url) else {
            continue;
        };
        out.push(VaultConfig {
            name,
            url,
            subscription: v.subscription.map(|s| s.into_inner()),
            geography: v.geography.map(|s| s.into_inner()),
            schedule,
            kinds: own
                .kinds
                .or_else(|| defaults.kinds.clone())
                .unwrap_or_else(|| ObjectKind::ALL.into_iter().collect()),
            include: own
                .include
                .or_else(|| defaults.include.clone())
                .unwrap_or_default(),
            exclude: own
                .exclude
                .or_else(|| defaults.exclude.clone())
                .unwrap_or_default(),
            skip_tags: own
                .skip_tags
                .or_else(|| defaults.skip_tags.clone())
                .unwrap_or_else(|| BTreeMap::from([("kvkeep".to_string(), "skip".to_string())])),
            payload: own
                .payload
                .or(defaults.payload)
                .unwrap_or(PayloadMode::Native),
            deep_scan_every: own
                .deep_scan_every
                .or(defaults.deep_scan_every)
                .or_else(|| humantime::parse_duration(DEFAULT_DEEP_SCAN).ok())
                .unwrap_or(Duration::from_secs(7 * 86_400)),
            jitter: own.jitter.or(defaults.jitter).unwrap_or(Duration::ZERO),
            paused: own.paused.or(defaults.paused).unwrap_or(false),
            verify_schedule,
            retention: own.retention.over(&defaults.retention),
            rpo: own.rpo.or(defaults.rpo),
        });
    }
    (c.errors.len() == before).then_some(out)
}

/// A vault URL: https, a host, no path, query or fragment; returned without a trailing slash.
fn vault_url(c: &mut Check, key: &str, u: &Spanned<String>) -> Option<String> {
    let parsed = match url::Url::parse(u.get_ref()) {
        Ok(p) => p,
        Err(e) => {
            c.at(
                key,
                u,
                format!("not a URL ({e}); write e.g. https://NAME.vault.azure.net"),
            );
            return None;
        }
    };
    let problem = if parsed.scheme() != "https" {
        Some("must use https: Key Vault clients never send tokens over plain http")
    } else if parsed.host_str().is_none() {
        Some("has no host")
    } else if parsed.path() != "/" && !parsed.path().is_empty() {
        Some("must be the vault's root, without a path (a vault is identified by its host)")
    } else if parsed.query().is_some() || parsed.fragment().is_some() {
        Some("must not carry a query or fragment")
    } else {
        None
    };
    if let Some(p) = problem {
        c.at(key, u, p);
        return None;
    }
    Some(u.get_ref().trim_end_matches('/').to_string())
}
