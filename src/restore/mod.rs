//! Point-in-time restore, verification and index rebuild: the read side of kvkeep (DESIGN §4, §6).
//!
//! ```text
//! --at TIME ─▶ when::parse_at(now) ─▶ index.captures_as_of(vault, at)
//!        │
//!        ▼  plan (pure): select --only ─▶ compatibility (refuse before any request to the target)
//!        │              ─▶ survey target (list + list_deleted) ─▶ decide per policy
//!        ▼
//! RestorePlan ──(--dry-run: print, stop)──▶ Restorer::execute, per object, bounded concurrency:
//!   store.get ─▶ size + SHA-256 vs manifest ─▶ open_expecting (spawn_blocking; envelope bound to
//!   vault/kind/name/run/current version/capture time) ─▶ [purge] ─▶ source.restore (409 after a
//!   purge retried for a bounded window) ─▶ restored / recovered / skipped / failed with reasons
//! ```
//!
//! [`verify`] checks the store against the index at three depths; [`rebuild`] recreates the
//! index from the store's manifests alone, so restore works on a fresh host that has only the
//! store and the identity.
//!
//! Errors: [`RestoreError`] stops a command before any object is touched; per-object problems
//! are outcomes in the report, never errors.

mod execute;
pub mod plan;
pub mod rebuild;
pub mod sync;
pub mod verify;
pub mod when;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use execute::{
    survey_target, NoRestoreProgress, ObjectOutcome, Outcome, Overall, RestoreOptions,
    RestoreProgress, RestoreReport, RestoreStats, Restorer,
};
pub use plan::{
    Action, ConflictPolicy, ObjectRef, PlanError, PlanStats, PlannedObject, RestorePlan,
    TargetState, VaultLocation,
};

use crate::config::{Config, VaultConfig};
use crate::index::{Index, IndexError};
use crate::model::VaultName;
use crate::source::{SourceError, VaultSource};

/// What stops a restore (or verification, or rebuild) before any object is touched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The index could not be read.
    #[error("{0}; if the index is damaged or missing, recreate it with `kvkeep index rebuild --identity FILE`")]
    Index(#[from] IndexError),
    /// No plan could be made (nothing at that time, unknown names, incompatible target).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The target vault's state could not be read.
    #[error("cannot read the state of the target vault before restoring: {0}")]
    Survey(#[source] SourceError),
    /// A blocking task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// What to restore.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Where the backups come from.
    pub source: VaultLocation,
    /// Where they go.
    pub target: VaultLocation,
    /// The point in time, Unix seconds.
    pub at: i64,
    /// `--only` filters (empty = every object).
    pub only: Vec<ObjectRef>,
    /// The conflict policy.
    pub policy: ConflictPolicy,
    /// `--assume-compatible`: purge-then-restore may purge where compatibility of the two
    /// vaults cannot be checked (see [`plan::purge_blocker`]).
    pub assume_compatible: bool,
}

/// Builds the plan: the point-in-time set from the index, filtered; the compatibility check
/// (before any request to the target); the target survey; the per-object decisions.
pub async fn plan_restore(
    index: Arc<Index>,
    target: &dyn VaultSource,
    request: RestoreRequest,
) -> Result<RestorePlan, RestoreError> {
    let vault = request.source.name.clone();
    let at = request.at;
    let captures = tokio::task::spawn_blocking(move || index.captures_as_of(&vault, at))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??;
    let selected = plan::select(&request.source.name, at, captures, &request.only)?;
    let warnings = plan::check_compatibility(&request.source, &request.target, &selected)?;
    let states = survey_target(target, &selected)
        .await
        .map_err(RestoreError::Survey)?;
    Ok(plan::decide(
        request.source,
        request.target,
        at,
        request.policy,
        request.assume_compatible,
        selected,
        &states,
        warnings,
    ))
}

/// The location of a configured vault.
pub fn location_of(vault: &VaultConfig) -> VaultLocation {
    VaultLocation {
        name: vault.name.clone(),
        url: vault.url.clone(),
        subscription: vault.subscription.clone(),
        geography: vault.geography.clone(),
    }
}

/// Whether two vault references name the same vault: the same name (vault names are
/// case-insensitive), or URLs of the same host. A scratch vault for a drill or a restore target
/// that turns out to be the source must be recognised however the operator spelled it.
pub fn same_vault(a_name: &VaultName, a_url: &str, b_name: &VaultName, b_url: &str) -> bool {
    if a_name.as_str().eq_ignore_ascii_case(b_name.as_str()) {
        return true;
    }
    match (url_host(a_url), url_host(b_url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The lower-cased host of a vault URL, when it has one.
fn url_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url.trim()).ok()?;
    url.host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
}

/// Resolves `--to-vault`: a configured vault's name, or a URL (matched against configured URLs
/// first, so a configured vault keeps its subscription and geography). An unconfigured URL's
/// vault is named after its first host label, with subscription and geography unknown.
pub fn resolve_target(config: &Config, spec: &str) -> Result<VaultConfig, String> {
    let spec = spec.trim();
    if !spec.contains("://") {
        let wanted: VaultName = spec
            .parse()
            .map_err(|e| format!("--to-vault {spec:?} is neither a vault name nor a URL: {e}"))?;
        return config.vault(&wanted).cloned().ok_or_else(|| {
            format!(
                "--to-vault {spec:?} is not a configured vault; give a configured name ({}) or the vault's URL (https://NAME.vault.azure.net)",
                config.vault_names()
            )
        });
    }
    let url = url::Url::parse(spec).map_err(|e| format!("--to-vault {spec:?}: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!("--to-vault {spec:?}: key vault URLs use https"));
    }
    let normal = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    if let Some(v) = config
        .vaults
        .iter()
        .find(|v| normal(&v.url) == normal(spec))
    {
        return Ok(v.clone());
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("--to-vault {spec:?} has no host"))?;
    let label = host.split('.').next().unwrap_or(host);
    let name: VaultName = label.parse().map_err(|e| {
        format!(
            "--to-vault {spec:?}: the first label of the host, {label:?}, is not a vault name: {e}"
        )
    })?;
    let template = config.vaults.first().cloned();
    Ok(VaultConfig {
        name,
        url: spec.trim_end_matches('/').to_string(),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: crate::model::ObjectKind::ALL.into_iter().collect(),
        include: Vec::new(),
        exclude: Vec::new(),
        skip_tags: Default::default(),
        payload: crate::config::PayloadMode::Native,
        deep_scan_every: template
            .map(|t| t.deep_scan_every)
            .unwrap_or(std::time::Duration::from_secs(7 * 86_400)),
        // An ad-hoc restore target is never scheduled.
        jitter: std::time::Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: Default::default(),
        rpo: None,
    })
}
