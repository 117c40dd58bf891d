//! `[[notify]]`: who hears about a run's outcome — a webhook, a local command or a
//! healthchecks.io-style ping — as written ([`RawNotify`]), as validated ([`NotifyConfig`]), and
//! the validation between them.
//!
//! The URL of a webhook or ping carries its token, so it is never in the configuration: the entry
//! names the file holding it (`url_file`), and that file is not read here. It may be a systemd
//! credential that exists only while the service runs (`LoadCredential=`), so `kvkeep config
//! check` must not need it; the notifier reads it when it sends (`crate::notify`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{line_of, parse_duration_within, ConfigError, VaultConfig};
use crate::model::VaultName;

/// How long one notification may take, retries included, unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Below a second even a healthy endpoint across an ocean times out.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The daemon waits for its notifications when a run ends; minutes would stall the next run.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// One `[[notify]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// `webhook`, `command` or `ping`.
    pub kind: Spanned<String>,
    /// File holding the URL (`webhook`, `ping`).
    pub url_file: Option<Spanned<String>>,
    /// Program and arguments (`command`).
    pub argv: Option<Spanned<Vec<Spanned<String>>>>,
    /// Outcomes that trigger the entry.
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    /// Bound of one delivery, retries included.
    pub timeout: Option<Spanned<String>>,
    /// Only runs of these vaults; all when absent.
    pub vaults: Option<Spanned<Vec<Spanned<String>>>>,
}

/// How a run ended, in the words `on` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOutcome {
    /// Every object captured or unchanged.
    Success,
    /// Some objects failed; the rest were captured.
    Partial,
    /// The run failed as a whole, or was interrupted.
    Failure,
}

impl NotifyOutcome {
    /// Every outcome, in order.
    pub const ALL: [NotifyOutcome; 3] = [
        NotifyOutcome::Success,
        NotifyOutcome::Partial,
        NotifyOutcome::Failure,
    ];

    /// The word used in the configuration and in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOutcome::Success => "success",
            NotifyOutcome::Partial => "partial",
            NotifyOutcome::Failure => "failure",
        }
    }
}

impl FromStr for NotifyOutcome {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotifyOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NotifyTarget {
    /// POST the run summary (JSON) to the URL held in `url_file`.
    Webhook {
        /// The file holding the URL (a secret: the URL carries a token).
        url_file: PathBuf,
    },
    /// Run a program, without a shell, with the summary on its standard input.
    Command {
        /// Program (an absolute path) and arguments.
        argv: Vec<String>,
    },
    /// Ping `{base}/start`, `{base}` and `{base}/fail`, with the base URL held in `url_file`.
    Ping {
        /// The file holding the base URL (a secret: the URL carries a token).
        url_file: PathBuf,
    },
}

impl NotifyTarget {
    /// `webhook`, `command` or `ping`: the `kind` key, and the first half of a notifier's name.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyTarget::Webhook { .. } => "webhook",
            NotifyTarget::Command { .. } => "command",
            NotifyTarget::Ping { .. } => "ping",
        }
    }
}

/// One validated `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyConfig {
    /// Where it goes.
    #[serde(flatten)]
    pub target: NotifyTarget,
    /// The outcomes that trigger it (never empty).
    pub on: BTreeSet<NotifyOutcome>,
    /// Bound of one delivery, retries included.
    #[serde(serialize_with = "super::model::duration_ser")]
    pub timeout: Duration,
    /// Only runs of these vaults; `None` means every vault.
    pub vaults: Option<BTreeSet<VaultName>>,
}

impl NotifyConfig {
    /// Whether a run of `vault` that ended with `outcome` is sent here.
    pub fn wants(&self, vault: &VaultName, outcome: NotifyOutcome) -> bool {
        self.on.contains(&outcome) && self.covers(vault)
    }

    /// Whether the entry's vault filter lets `vault` through.
    pub fn covers(&self, vault: &VaultName) -> bool {
        self.vaults.as_ref().is_none_or(|v| v.contains(vault))
    }
}

/// Validates every `[[notify]]` entry, adding problems to `errors`. `vaults` are the validated
/// vaults, `None` when they have errors of their own (names in a `vaults` filter are then only
/// checked for form). `base` resolves relative `url_file` paths.
pub(super) fn validate(
    raw: Vec<Spanned<RawNotify>>,
    vaults: Option<&[VaultConfig]>,
    text: &str,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Vec<NotifyConfig> {
    let mut c = Entry { text, errors };
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, entry)| c.entry(&format!("notify[{i}]"), entry, vaults, base))
        .collect()
}

/// Error collection for one entry, with lines from the source text.
struct Entry<'a> {
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl Entry<'_> {
    fn at<T>(&mut self, path: String, value: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path,
            line: Some(line_of(self.text, value.span().start)),
            message: message.into(),
        });
    }

    fn entry(
        &mut self,
        at: &str,
        raw: Spanned<RawNotify>,
        vaults: Option<&[VaultConfig]>,
        base: &Path,
    ) -> Option<NotifyConfig> {
        let before = self.errors.len();
        let raw = raw.into_inner();
        let kind = raw.kind.get_ref().as_str();
        let target = match kind {
            "webhook" | "ping" => {
                if let Some(argv) = &raw.argv {
                    self.at(
                        format!("{at}.argv"),
                        argv,
                        "only used with kind = \"command\"",
                    );
                }
                self.url_file(at, &raw, base).map(|url_file| {
                    if kind == "webhook" {
                        NotifyTarget::Webhook { url_file }
                    } else {
                        NotifyTarget::Ping { url_file }
                    }
                })
            }
            "command" => {
                if let Some(f) = &raw.url_file {
                    self.at(
                        format!("{at}.url_file"),
                        f,
                        "only used with kind = \"webhook\" or \"ping\"",
                    );
                }
                self.argv(at, &raw)
                    .map(|argv| NotifyTarget::Command { argv })
            }
            _ => {
                self.at(
                    format!("{at}.kind"),
                    &raw.kind,
                    "unknown notification kind: expected \"webhook\", \"command\" or \"ping\"",
                );
                None
            }
        };
        let on = self.on(at, &raw, kind == "ping");
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match parse_duration_within(t.get_ref(), MIN_TIMEOUT, MAX_TIMEOUT) {
                Ok(d) => d,
                Err(why) => {
                    self.at(
                        format!("{at}.timeout"),
                        t,
                        format!("{why} (it bounds one delivery, retries included)"),
                    );
                    DEFAULT_TIMEOUT
                }
            },
        };
        let vaults = self.vaults(at, &raw, vaults);
        let config = NotifyConfig {
            target: target?,
            on,
            timeout,
            vaults,
        };
        (self.errors.len() == before).then_some(config)
    }

    fn url_file(&mut self, at: &str, raw: &RawNotify, base: &Path) -> Option<PathBuf> {
        match &raw.url_file {
            Some(f) if f.get_ref().trim().is_empty() => {
                self.at(format!("{at}.url_file"), f, "must not be empty");
                None
            }
            Some(f) => {
                let p = Path::new(f.get_ref());
                Some(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                })
            }
            None => {
                self.at(
                    format!("{at}.url_file"),
                    &raw.kind,
                    "missing: this kind needs url_file, a file (mode 0600) holding the URL; the URL carries a token, so it is never written in the configuration",
                );
                None
            }
        }
    }

    fn argv(&mut self, at: &str, raw: &RawNotify) -> Option<Vec<String>> {
        let Some(argv) = &raw.argv else {
            self.at(
                format!("{at}.argv"),
                &raw.kind,
                "missing: kind = \"command\" needs argv = [\"/absolute/path/to/program\", \"arg\", ...]",
            );
            return None;
        };
        let Some(program) = argv.get_ref().first() else {
            self.at(
                format!("{at}.argv"),
                argv,
                "must name a program: argv = [\"/absolute/path/to/program\", \"arg\", ...]",
            );
            return None;
        };
        // No shell and no PATH search: the program kvkeep runs is the one the file names, not
        // whichever comes first in the service's PATH.
        if !Path::new(program.get_ref()).is_absolute() {
            self.at(
                format!("{at}.argv[0]"),
                program,
                "must be an absolute path (kvkeep runs the program directly, without a shell or a PATH search)",
            );
            return None;
        }
        Some(argv.get_ref().iter().map(|a| a.get_ref().clone()).collect())
    }

    fn on(&mut self, at: &str, raw: &RawNotify, ping: bool) -> BTreeSet<NotifyOutcome> {
        let Some(words) = &raw.on else {
            // A ping that hears only about failures would look dead to the monitoring service
            // after every good run; a webhook or command usually pages someone, so only on trouble.
            return if ping {
                NotifyOutcome::ALL.into_iter().collect()
            } else {
                [NotifyOutcome::Partial, NotifyOutcome::Failure].into()
            };
        };
        if words.get_ref().is_empty() {
            self.at(
                format!("{at}.on"),
                words,
                "must name at least one of success, partial, failure (remove the entry to turn it off)",
            );
        }
        let mut on = BTreeSet::new();
        for w in words.get_ref() {
            match NotifyOutcome::from_str(w.get_ref()) {
                Ok(o) => {
                    on.insert(o);
                }
                Err(()) => self.at(
                    format!("{at}.on"),
                    w,
                    "unknown outcome: expected success, partial or failure",
                ),
            }
        }
        on
    }

    fn vaults(
        &mut self,
        at: &str,
        raw: &RawNotify,
        known: Option<&[VaultConfig]>,
    ) -> Option<BTreeSet<VaultName>> {
        let list = raw.vaults.as_ref()?;
        if list.get_ref().is_empty() {
            self.at(
                format!("{at}.vaults"),
                list,
                "an empty list matches no vault: name at least one, or remove the key to match every vault",
            );
        }
        let mut out = BTreeSet::new();
        for (j, v) in list.get_ref().iter().enumerate() {
            let key = format!("{at}.vaults[{j}]");
            match VaultName::from_str(v.get_ref()) {
                Ok(name) if known.is_none_or(|k| k.iter().any(|c| c.name == name)) => {
                    out.insert(name);
                }
                Ok(_) => self.at(
                    key,
                    v,
                    "not a configured vault: use the name of a [[vault]] entry",
                ),
                Err(_) => self.at(
                    key,
                    v,
                    "not a vault name (3-24 letters, digits and hyphens)",
                ),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests;
