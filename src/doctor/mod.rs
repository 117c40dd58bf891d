//! `kvkeep doctor`: the preflight a person runs before trusting kvkeep (DESIGN.md §8), as a pure
//! report of checks plus the checks themselves.
//!
//! Every check is one [`Check`] row: which vault (or none), what was checked, ok/warn/fail, what
//! was found and, for a warning or failure, what to do. [`DoctorReport::outcome`] folds the rows
//! into the command's result. The checks never print or keep a secret: rows carry only names,
//! counts, kinds and the service's (scrubbed) error text, never a value, token or SAS URL.
//!
//! [`readiness`] is the cheap part (configuration, index, store) the daemon's `/readyz` reuses;
//! [`run`] adds the per-vault checks that talk to Key Vault and, with an identity, open the
//! newest manifest of each vault.

mod advice;
mod local;
mod vault;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, VaultConfig};
use crate::crypto::Identities;
use crate::model::{ObjectKind, VaultName};

pub use advice::{backup_permission_fix, list_permission_fix};
pub use local::{check_index, check_locks, check_report, check_store, LEASE_PROBE_VAULT};

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works.
    Ok,
    /// Works, or could not be proven, with something worth knowing.
    Warn,
    /// Does not work; the row says what to do.
    Fail,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        })
    }
}

/// What a row checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckName {
    /// The configuration loaded and validated.
    Config,
    /// The index opens (or is created) and takes a write transaction.
    Index,
    /// The store takes a probe blob, gives it back identical and deletes it.
    Store,
    /// The lock container grants a vault lease and keeps the holder's record.
    Locks,
    /// The vault's host resolves, TLS verifies and a token for the vault's resource is accepted.
    Connect,
    /// One listing of a kind.
    List(ObjectKind),
    /// One backup of one object of a kind.
    Backup(ObjectKind),
    /// The local clock against the vault's `Date` header.
    Clock,
    /// The vault's schedule and next run.
    Schedule,
    /// The newest committed manifest opens with the identity.
    Manifest,
    /// The directory of `[report] html_path` takes a private file.
    Report,
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckName::Config => f.write_str("config"),
            CheckName::Index => f.write_str("index"),
            CheckName::Store => f.write_str("store"),
            CheckName::Locks => f.write_str("locks"),
            CheckName::Connect => f.write_str("connect"),
            CheckName::List(kind) => write!(f, "list {kind}"),
            CheckName::Backup(kind) => write!(f, "backup {kind}"),
            CheckName::Clock => f.write_str("clock"),
            CheckName::Schedule => f.write_str("schedule"),
            CheckName::Manifest => f.write_str("manifest"),
            CheckName::Report => f.write_str("report"),
        }
    }
}

impl Serialize for CheckName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The vault checked; `None` for the index, the store and the configuration.
    pub vault: Option<VaultName>,
    /// What was checked.
    pub check: CheckName,
    /// The result.
    pub status: CheckStatus,
    /// What was found (never a secret value, token or SAS URL).
    pub detail: String,
    /// What to do, for a warning or failure that has a remedy.
    pub fix: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn ok(vault: Option<&VaultName>, check: CheckName, detail: impl Into<String>) -> Self {
        Check {
            vault: vault.cloned(),
            check,
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning, with what to do about it when there is something.
    pub fn warn(
        vault: Option<&VaultName>,
        check: CheckName,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Check {
            vault: vault.cloned(),
            check,
            status: CheckStatus::Warn,
            detail: detail.into(),
            fix,
        }
    }

    /// A failed check and what to do.
    pub fn fail(
        vault: Option<&VaultName>,
        check: CheckName,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            vault: vault.cloned(),
            check,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the checks add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DoctorOutcome {
    /// Every check passed (warnings allowed).
    Ok,
    /// Some checks failed; each says what to do.
    SomeFailed,
    /// Neither the store nor any vault could be reached.
    NothingReachable,
}

/// Every row `kvkeep doctor` produced, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The rows.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The result: nothing reachable when the store failed and every vault's connection did
    /// (a preflight on a host with no network, say); some failed when any row failed; else ok.
    pub fn outcome(&self) -> DoctorOutcome {
        let failed = |c: &Check| c.status == CheckStatus::Fail;
        if !self.checks.iter().any(failed) {
            return DoctorOutcome::Ok;
        }
        let store_failed = self
            .checks
            .iter()
            .any(|c| c.check == CheckName::Store && failed(c));
        let connects: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.check == CheckName::Connect)
            .collect();
        if store_failed && connects.iter().all(|c| failed(c)) {
            DoctorOutcome::NothingReachable
        } else {
            DoctorOutcome::SomeFailed
        }
    }
}

/// What `kvkeep doctor` checks besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// The vaults to check (each a configured vault).
    pub vaults: Vec<VaultConfig>,
    /// Identities that open the manifests; without them the manifest check is left out.
    pub identities: Option<Arc<Identities>>,
    /// Ends every wait (Ctrl-C).
    pub cancel: CancellationToken,
}

/// The cheap checks, for the daemon's `/readyz`: the configuration (already valid, since it
/// loaded), the index (opens and takes a write) and the store (probe write, read, delete). No
/// request reaches a vault.
pub async fn readiness(config: &Config, cancel: &CancellationToken) -> Vec<Check> {
    let vaults = config.vaults.len();
    let mut checks = vec![Check::ok(
        None,
        CheckName::Config,
        format!(
            "valid; {vaults} vault{}",
            if vaults == 1 { "" } else { "s" }
        ),
    )];
    checks.push(check_index(&config.index_path).await);
    checks.push(check_store(config, cancel).await);
    checks
}

/// Every check: [`readiness`], the lock container, then each vault in turn (connection, list and backup per kind,
/// clock skew, schedule, and with identities the newest manifest).
pub async fn run(config: &Config, options: &DoctorOptions) -> DoctorReport {
    let mut checks = readiness(config, &options.cancel).await;
    // Not part of readiness: `/readyz` must not take leases at every poll.
    checks.push(check_locks(config, &options.cancel).await);
    if let Some(path) = &config.report.html_path {
        checks.push(local::check_report(path).await);
    }
    for vault in &options.vaults {
        if options.cancel.is_cancelled() {
            break;
        }
        checks.extend(vault::check_vault(config, vault, &options.cancel).await);
        if let Some(identities) = &options.identities {
            checks.push(
                local::check_manifest(config, &vault.name, identities, &options.cancel).await,
            );
        }
    }
    DoctorReport { checks }
}

#[cfg(test)]
mod tests;
