//! Pure validation of a [`RawConfig`]: every problem is collected with its key path and line;
//! defaults are applied here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::{line_of, parse_duration_within, ConfigError};
use crate::model::{ObjectKind, VaultName};
use crate::scheduler::Schedule;

/// Default index location (systemd's `StateDirectory=kvkeep`).
const DEFAULT_INDEX: &str = "/var/lib/kvkeep/index.sqlite";
const DEFAULT_ZSTD_LEVEL: i64 = 9;
const DEFAULT_SHARE: f64 = 0.1;
/// The smallest throttle share: 0.001 of a vault's 4,000 requests per 10 s is 4 per 10 s. Below
/// that a token bucket holds less than one request, and every call would wait without end.
const MIN_SHARE: f64 = 0.001;
/// Deep scans at most hourly (each lists every version of every object) and at least yearly.
const MIN_DEEP_SCAN: Duration = Duration::from_secs(3_600);
const MAX_DEEP_SCAN: Duration = Duration::from_secs(366 * 86_400);
const DEFAULT_CONCURRENCY: i64 = 4;
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

/// Collects errors with their lines.
pub(super) struct Check<'a> {
    text: &'a str,
    base: &'a Path,
    read: &'a dyn Fn(&Path) -> std::io::Result<String>,
    errors: Vec<ConfigError>,
}

impl Check<'_> {
    pub(super) fn at<T>(
        &mut self,
        path: impl Into<String>,
        value: &Spanned<T>,
        message: impl Into<String>,
    ) {
        let line = Some(line_of(self.text, value.span().start));
        self.errors.push(ConfigError {
            path: path.into(),
            line,
            message: message.into(),
        });
    }

    pub(super) fn here(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Resolves a file reference and checks it can be read. Echoes neither the contents nor
    /// the path: a SAS URL or client secret pasted where its file's path belongs would
    /// otherwise be printed back as "cannot read <secret>".
    pub(super) fn readable_file(
        &mut self,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<(PathBuf, String)> {
        let path = self.path(value.get_ref());
        match (self.read)(&path) {
            Ok(text) => Some((path, text)),
            Err(e) => {
                self.at(
                    key,
                    value,
                    format!("the file cannot be read: {e}; check the path and that kvkeep's user may read it (the path is not shown: it may be a secret pasted into the wrong key)"),
                );
                None
            }
        }
    }
}

/// Validates `raw` against the source `text` (for line numbers).
pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut c = Check {
        text,
        base,
        read,
        errors: Vec::new(),
    };
    let store = super::store::validate(&mut c, raw.store);
    let encryption = encryption(&mut c, raw.encryption);
    let index_path = match &raw.index.path {
        Some(p) if p.get_ref().trim().is_empty() => {
            c.at("index.path", p, "must not be empty");
            None
        }
        Some(p) => Some(c.path(p.get_ref())),
        None => Some(PathBuf::from(DEFAULT_INDEX)),
    };
    let azure = azure(&mut c, raw.azure);
    let limits = limits(&mut c, raw.limits);
    let defaults = vault_settings(&mut c, "defaults", raw.defaults, None);
    let vaults = vaults(&mut c, raw.vaults, defaults.as_ref());
    let daemon = super::daemon::validate(&mut c, raw.daemon);
    let report = super::report::validate(&mut c, raw.report);
    let notify = super::notify::validate(raw.notify, vaults.as_deref(), text, base, &mut c.errors);

    match (
        store, encryption, index_path, azure, limits, vaults, daemon, report,
    ) {
        (
            Some(store),
            Some(encryption),
            Some(index_path),
            Some(azure),
            Some(limits),
            Some(vaults),
            Some(daemon),
            Some(report),
        ) if c.errors.is_empty() => Ok(Config {
            store,
            encryption,
            index_path,
            azure,
            limits,
            vaults,
            daemon,
            report,
            notify,
        }),
        _ => {
            c.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(c.errors)
        }
    }
}

fn encryption(c: &mut Check, raw: Option<Spanned<RawEncryption>>) -> Option<EncryptionConfig> {
    let Some(raw) = raw else {
        c.here("encryption", "missing section: add [encryption] with recipients = [\"age1...\"] (create one with `kvkeep keys generate`)");
        return None;
    };
    let span_for_empty = raw.span();
    let raw = raw.into_inner();
    let mut recipients = Vec::new();
    let mut ok = true;
    for (i, r) in raw.recipients.iter().enumerate() {
        match recipient(r.get_ref()) {
            Ok(r) => recipients.push(r),
            Err(msg) => {
                c.at(format!("encryption.recipients[{i}]"), r, msg);
                ok = false;
            }
        }
    }
    if let Some(file) = &raw.recipients_file {
        if let Some((_, text)) = c.readable_file("encryption.recipients_file", file) {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match recipient(line) {
                    Ok(r) => recipients.push(r),
                    Err(msg) => {
                        c.at(
                            "encryption.recipients_file",
                            file,
                            format!("line {} of the file: {msg}", n + 1),
                        );
                        ok = false;
                    }
                }
            }
        } else {
            ok = false;
        }
    }
    if ok && recipients.is_empty() {
        c.errors.push(ConfigError {
            path: "encryption.recipients".into(),
            line: Some(line_of(c.text, span_for_empty.start)),
            message: "no recipients: add at least one age public key (age1...) inline or in recipients_file; `kvkeep keys generate` makes one".into(),
        });
        ok = false;
    }
    let mut seen = BTreeSet::new();
    recipients.retain(|r| seen.insert(r.clone()));
    let zstd_level = match &raw.zstd_level {
        None => DEFAULT_ZSTD_LEVEL,
        Some(l) if (1..=22).contains(l.get_ref()) => *l.get_ref(),
        Some(l) => {
            c.at("encryption.zstd_level", l, "must be between 1 and 22");
            ok = false;
            DEFAULT_ZSTD_LEVEL
        }
    };
    let catalog_recipient = match &raw.catalog_recipient {
        None => None,
        Some(r) => match recipient(r.get_ref()) {
            // Object blobs are sealed to every recovery recipient: the same key as catalog
            // recipient would put every backup within reach of the daemon hosts.
            Ok(catalog) if recipients.contains(&catalog) => {
                c.at(
                    "encryption.catalog_recipient",
                    r,
                    "is also one of the recipients: backups are sealed to every recipient, so the catalog identity, which sits on daemon hosts, would open every backup; make a separate catalog key with `kvkeep keys generate --catalog`",
                );
                ok = false;
                None
            }
            Ok(catalog) => Some(catalog),
            Err(msg) => {
                c.at("encryption.catalog_recipient", r, msg);
                ok = false;
                None
            }
        },
    };
    let catalog_identity_file = match &raw.catalog_identity_file {
        None => None,
        Some(p) if p.get_ref().trim().is_empty() => {
            c.at("encryption.catalog_identity_file", p, "must not be empty: name the catalog identity file (e.g. /run/credentials/kvkeep.service/catalog-identity) or remove the key");
            ok = false;
            None
        }
        Some(p) if catalog_recipient.is_none() && raw.catalog_recipient.is_none() => {
            // An identity without its recipient: the daemon would seal nothing to it, so the
            // manifests it is meant to open would not open with it.
            c.at("encryption.catalog_identity_file", p, "is set without catalog_recipient: set [encryption] catalog_recipient to the public key `kvkeep keys generate --catalog` printed for it");
            ok = false;
            None
        }
        Some(p) => Some(c.path(p.get_ref())),
    };
    ok.then_some(EncryptionConfig {
        recipients,
        catalog_recipient,
        catalog_identity_file,
        zstd_level: zstd_level as i32,
    })
}

/// Checks one age recipient. A pasted identity is refused without echoing it.
fn recipient(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err("this is an age identity (a private key), not a recipient: remove it from the configuration at once and put its public key (age1...) here instead".into());
    }
    age::x25519::Recipient::from_str(s)
        .map(|r| r.to_string())
        .map_err(|_| {
            "not an age X25519 recipient (expected age1 followed by 58 characters)".to_string()
        })
}

fn azure(c: &mut Check, raw: RawAzure) -> Option<AzureConfig> {
    let mut ok = true;
    let kind = raw
        .credential
        .as_ref()
        .map(|k| k.get_ref().as_str())
        .unwrap_or("default");
    let unused = |c: &mut Check, key: &str, v: &Option<Spanned<String>>, needed_by: &str| {
        if let Some(v) = v {
            c.at(
                format!("azure.{key}"),
                v,
                format!("only used with credential = \"{needed_by}\""),
            );
        }
    };
    let credential = match kind {
        "default" | "managed-identity" | "workload-identity" | "azure-cli" => {
            unused(c, "tenant_id", &raw.tenant_id, "client-secret");
            unused(
                c,
                "client_secret_file",
                &raw.client_secret_file,
                "client-secret",
            );
            unused(c, "token_file", &raw.token_file, "token-file");
            if kind != "managed-identity" {
                unused(
                    c,
                    "client_id",
                    &raw.client_id,
                    "client-secret or managed-identity",
                );
            }
            match kind {
                "default" => Some(CredentialConfig::Default),
                "managed-identity" => Some(CredentialConfig::ManagedIdentity {
                    client_id: raw.client_id.as_ref().map(|s| s.get_ref().clone()),
                }),
                "workload-identity" => Some(CredentialConfig::WorkloadIdentity),
                _ => Some(CredentialConfig::AzureCli),
            }
        }
        "client-secret" => {
            unused(c, "token_file", &raw.token_file, "token-file");
            let mut need = |key: &str, v: &Option<Spanned<String>>| match v {
                Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
                _ => {
                    let cred = raw.credential.as_ref();
                    if let Some(cred) = cred {
                        c.at(
                            format!("azure.{key}"),
                            cred,
                            "missing: credential = \"client-secret\" needs tenant_id, client_id and client_secret_file",
                        );
                    }
                    None
                }
            };
            let tenant_id = need("tenant_id", &raw.tenant_id);
            let client_id = need("client_id", &raw.client_id);
            let secret_file = match &raw.client_secret_file {
                Some(f) => c
                    .readable_file("azure.client_secret_file", f)
                    .map(|(p, _)| p),
                None => {
                    need("client_secret_file", &None);
                    None
                }
            };
            match (tenant_id, client_id, secret_file) {
                (Some(tenant_id), Some(client_id), Some(secret_file)) => {
                    Some(CredentialConfig::ClientSecret {
                        tenant_id,
                        client_id,
                        secret_file,
                    })
                }
                _ => None,
            }
        }
        "token-file" => {
            unused(c, "tenant_id", &raw.tenant_id, "client-secret");
            unused(
                c,
                "client_id",
                &raw.client_id,
                "client-secret or managed-identity",
            );
            unused(
                c,
                "client_secret_file",
                &raw.client_secret_file,
                "client-secret",
            );
            match &raw.token_file {
                Some(f) => c
                    .readable_file("azure.token_file", f)
                    .map(|(path, _)| CredentialConfig::TokenFile { path }),
                None => {
                    if let Some(cred) = &raw.credential {
                        c.at("azure.token_file", cred, "missing: credential = \"token-file\" needs token_file, a file holding a bearer token");
                    }
                    None
                }
            }
        }
        _ => {
            if let Some(cred) = &raw.credential {
                c.at("azure.credential", cred, "unknown credential: expected default, managed-identity, workload-identity, client-secret, azure-cli or token-file");
            }
            None
        }
    };
    ok &= credential.is_some();
    let ca_file = match &raw.ca_file {
        None => None,
        Some(f) => match c.readable_file("azure.ca_file", f) {
            Some((path, text)) if text.contains("-----BEGIN CERTIFICATE-----") => Some(path),
            Some(_) => {
                c.at(
                    "azure.ca_file",
                    f,
                    "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                );
                ok = false;
                None
            }
            None => {
                ok = false;
                None
            }
        },
    };
    let ca_scope = match raw.ca_scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "services")) => CaScope::Services,
        Some((_, "all")) => CaScope::All,
        Some((s, _)) => {
            c.at("azure.ca_scope", s, "unknown scope: expected \"services\" (ca_file is trusted for the vault and store hosts only) or \"all\" (also for the identity provider)");
            ok = false;
            CaScope::Services
        }
    };
    if let (Some(s), None) = (&raw.ca_scope, &raw.ca_file) {
        c.at("azure.ca_scope", s, "only used with ca_file");
        ok = false;
    }
    let mut resolve = BTreeMap::new();
    for (host, addr) in &raw.resolve {
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
        if !host_ok {
            c.at(
                "azure.resolve",
                addr,
                "a key is not a host name (letters, digits, '-' and '.')",
            );
            ok = false;
            continue;
        }
        match IpAddr::from_str(addr.get_ref()) {
            Ok(ip) => {
                resolve.insert(host.to_ascii_lowercase(), ip);
            }
            Err(_) => {
                c.at(
                    format!("azure.resolve.{host}"),
                    addr,
                    "not an IP address (e.g. 127.0.0.1 or ::1)",
                );
                ok = false;
            }
        }
    }
    Some(AzureConfig {
        credential: credential?,
        ca_file,
        ca_scope,
        resolve,
        verify_challenge_resource: raw.verify_challenge_resource.unwrap_or(true),
    })
    .filter(|_| ok)
}

fn limits(c: &mut Check, raw: RawLimits) -> Option<Limits> {
    let mut ok = true;
    let mut share = |c: &mut Check, key: &str, v: &Option<Spanned<f64>>| match v {
        None => DEFAULT_SHARE,
        Some(s) if (MIN_SHARE..=1.0).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            c.at(format!("limits.{key}"), s, "must be between 0.001 and 1 (a fraction of the service's throttle limit, e.g. 0.1; a smaller share would leave kvkeep waiting minutes for every request)");
            ok = false;
            DEFAULT_SHARE
        }
    };
    let vault_share = share(c, "vault_share", &raw.vault_share);
    let subscription_share = share(c, "subscription_share", &raw.subscription_share);
    let concurrency = match &raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(n) if (1..=64).contains(n.get_ref()) => *n.get_ref(),
        Some(n) => {
            c.at("limits.concurrency", n, "must be between 1 and 64");
            ok = false;
            DEFAULT_CONCURRENCY
        }
    };
    ok.then_some(Limits {
        vault_share,
        subscription_share,
        concurrency: concurrency as usize,
    })
}

/// Per-vault settings after validation, before defaults are merged.
#[derive(Debug, Clone, Default)]
struct Settings {
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

fn vault_settings(
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

fn vaults(
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
