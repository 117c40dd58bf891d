//! Configuration: TOML → [`raw::RawConfig`] → validated [`Config`].
//!
//! Validation is pure (files it must read come through a reader function) and reports every
//! problem at once, each with its key path and line, so an operator fixes a file in one pass.
//! Secrets are never written inline: the file names where they live (`*_file` keys, suited to
//! systemd's `LoadCredential=`), and [`Config`] holds only those paths.

mod azure;
mod daemon;
mod duration;
mod encryption;
mod model;
mod notify;
mod raw;
mod report;
mod retention;
mod secret_files;
mod store;
mod toml_error;
mod validate;
mod vaults;

use std::fmt;
use std::path::Path;

pub(crate) use daemon::host_name;
pub use daemon::{DaemonConfig, FALLBACK_INSTANCE};
pub use duration::parse_duration_within;
pub use model::{
    AccessTier, AzureConfig, CaScope, Config, CredentialConfig, EncryptionConfig, Limits,
    LockContainer, PayloadMode, StoreAuth, StoreConfig, VaultConfig,
};
pub use notify::{NotifyConfig, NotifyOutcome, NotifyTarget};
pub use report::ReportConfig;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `vault[2].url`; empty for file-level problems.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file, for the heading.
    pub file: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{} has {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`. Relative paths inside it are resolved
    /// against the file's directory. Secret files it names that group or others can access are
    /// refused (with the `chmod 600` that fixes them).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                line: None,
                message: format!("cannot read the configuration file: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let config = Config::parse(&text, &file, base, &|p: &Path| std::fs::read_to_string(p))?;
        let errors = secret_files::check(&config);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { file, errors })
        }
    }

    /// Parses and validates `text`. `origin` names the file in messages; relative paths are
    /// resolved against `base`; `read` reads the files the configuration refers to.
    pub fn parse(
        text: &str,
        origin: &str,
        base: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigErrors {
            file: origin.to_string(),
            errors: vec![toml_error::config_error(text, &e)],
        })?;
        validate::validate(raw, text, base, read).map_err(|errors| ConfigErrors {
            file: origin.to_string(),
            errors,
        })
    }

    /// The configured vault called `name`.
    pub fn vault(&self, name: &crate::model::VaultName) -> Option<&VaultConfig> {
        self.vaults.iter().find(|v| &v.name == name)
    }

    /// The configured vault names, comma-separated: for messages about a name that is not one.
    pub fn vault_names(&self) -> String {
        let names: Vec<&str> = self.vaults.iter().map(|v| v.name.as_str()).collect();
        names.join(", ")
    }
}

/// A minimal valid file (a local store, one recipient, vault `kv-prod`) with `extra` appended,
/// parsed as `/etc/kvkeep/kvkeep.toml` with no file readable: for the tests of one section.
#[cfg(test)]
pub(crate) fn parse_minimal(extra: &str) -> Result<Config, ConfigErrors> {
    let text = format!(
        "\n[store]\ntype = \"local\"\npath = \"/var/lib/kvkeep/store\"\n\n[encryption]\n\
         recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\n\
         [[vault]]\nname = \"kv-prod\"\n{extra}\n"
    );
    Config::parse(&text, "kvkeep.toml", Path::new("/etc/kvkeep"), &|_| {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    })
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(at.min(text.len()))
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
