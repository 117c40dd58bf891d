//! Pure validation of a [`RawConfig`]: every problem is collected with its key path and line;
//! defaults are applied here and nowhere else.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::{line_of, ConfigError};

/// Default index location (systemd's `StateDirectory=kvkeep`).
const DEFAULT_INDEX: &str = "/var/lib/kvkeep/index.sqlite";
const DEFAULT_SHARE: f64 = 0.1;
/// The smallest throttle share: 0.001 of a vault's 4,000 requests per 10 s is 4 per 10 s. Below
/// that a token bucket holds less than one request, and every call would wait without end.
const MIN_SHARE: f64 = 0.001;
const DEFAULT_CONCURRENCY: i64 = 4;

/// Collects errors with their lines.
pub(super) struct Check<'a> {
    pub(super) text: &'a str,
    pub(super) base: &'a Path,
    pub(super) read: &'a dyn Fn(&Path) -> std::io::Result<String>,
    pub(super) errors: Vec<ConfigError>,
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
    let encryption = super::encryption::encryption(&mut c, raw.encryption);
    let index_path = match &raw.index.path {
        Some(p) if p.get_ref().trim().is_empty() => {
            c.at("index.path", p, "must not be empty");
            None
        }
        Some(p) => Some(c.path(p.get_ref())),
        None => Some(PathBuf::from(DEFAULT_INDEX)),
    };
    let azure = super::azure::azure(&mut c, raw.azure);
    let limits = limits(&mut c, raw.limits);
    let defaults = super::vaults::vault_settings(&mut c, "defaults", raw.defaults, None);
    let vaults = super::vaults::vaults(&mut c, raw.vaults, defaults.as_ref());
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
