//! The report's `key-vault-expiry` section: objects still in a vault whose Key Vault `exp` falls
//! within `--expiring-within` of the report's "now" (already expired ones included and flagged),
//! from the `nbf`/`exp` each capture recorded (index schema 6). An expired secret or key is an
//! outage waiting to happen in the application that reads it, and kvkeep has the attributes at
//! hand from its listings, so the report warns without a call to Key Vault.

use std::time::Duration;

use serde::Serialize;

use super::time;
use crate::index::{Index, IndexError};
use crate::model::{ObjectKind, ObjectName, VaultName};

/// `--expiring-within` when not given: a month's notice.
pub const DEFAULT_EXPIRING_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// The longest `--expiring-within`: ten years covers the longest-lived certificates, and a bound
/// keeps `now + within` from overflowing.
pub const MAX_EXPIRING_WITHIN: Duration = Duration::from_secs(3_660 * 86_400);

/// What the report is built with besides the index, the vaults and "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// List objects whose `exp` is at most this far from "now" (`--expiring-within`).
    pub expiring_within: Duration,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            expiring_within: DEFAULT_EXPIRING_WITHIN,
        }
    }
}

/// Objects of one vault that expire within the window.
#[derive(Debug, Clone, Serialize)]
pub struct KeyVaultExpiryReport {
    /// The window: objects whose `exp` is at most this many seconds after `generated_at` are
    /// listed.
    pub within_seconds: u64,
    /// How many of the listed objects are already expired.
    pub expired: u64,
    /// The objects, soonest `exp` first (then by kind and name).
    pub objects: Vec<ExpiringObject>,
    /// Objects in the vault whose newest backup was recorded before kvkeep read `nbf`/`exp`:
    /// nothing is known of their expiry until a run lists them again.
    pub unknown: u64,
}

/// An object that expires within the window, as its newest backup recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringObject {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: ObjectName,
    /// Its current version's `exp`.
    #[serde(serialize_with = "time::required")]
    pub expires_at: i64,
    /// Its current version's `nbf`, when it has one.
    #[serde(serialize_with = "time::optional")]
    pub not_before: Option<i64>,
    /// Seconds from report time to `exp`; negative once expired.
    pub expires_in_seconds: i64,
    /// Whether the object is expired at report time (`exp` at or before it).
    pub expired: bool,
}

/// The section for `vault` at `now` (Unix seconds).
pub fn key_vault_expiry(
    index: &Index,
    vault: &VaultName,
    now: i64,
    within: Duration,
) -> Result<KeyVaultExpiryReport, IndexError> {
    // Bounded by MAX_EXPIRING_WITHIN on the command line; saturate for any other caller.
    let within_seconds = within.as_secs();
    let until = now.saturating_add(i64::try_from(within_seconds).unwrap_or(i64::MAX));
    let records = index.expiring_objects(vault, until)?;
    let objects: Vec<ExpiringObject> = records
        .expiring
        .into_iter()
        .map(|o| ExpiringObject {
            kind: o.kind,
            name: o.name,
            expires_at: o.expires_at,
            not_before: o.validity.not_before,
            expires_in_seconds: o.expires_at.saturating_sub(now),
            expired: o.validity.is_expired_at(now),
        })
        .collect();
    Ok(KeyVaultExpiryReport {
        within_seconds,
        expired: objects.iter().filter(|o| o.expired).count() as u64,
        objects,
        unknown: records.unknown,
    })
}
