//! The state of one emulated vault: secrets, keys and certificates with all their versions,
//! soft delete, and backup/restore blobs. Pure data; no I/O, no clock (time comes in [`Ctx`]).

use serde::{Deserialize, Serialize};

use crate::api::{Ctx, ObjectCounts, Op, Reply, SeedReport, SeedSpec};
use crate::error::KvError;

/// Per-vault settings, changeable through the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultSettings {
    /// Vault name (the first DNS label of its host).
    pub name: String,
    /// Azure geography; backup blobs restore only within the same geography and subscription.
    #[serde(default = "default_geo")]
    pub geo: String,
    /// Subscription id.
    #[serde(default = "default_subscription")]
    pub subscription: String,
    /// Region reported in `x-ms-keyvault-region` and messages.
    #[serde(default = "default_region")]
    pub region: String,
    /// Soft-delete retention in days (7–90); `None` = legacy vault without soft delete (`Purgeable`).
    #[serde(default = "default_days")]
    pub recoverable_days: Option<u32>,
    /// Purge protection: purge answers 403.
    #[serde(default)]
    pub purge_protection: bool,
    /// Seconds after a delete during which the name answers 409 ObjectIsBeingDeleted and the
    /// deleted object is not yet visible (0 = synchronous, the default).
    #[serde(default)]
    pub delete_lag_secs: u32,
    /// Seconds after a purge during which restore/create of the name answers 409 (0 = none).
    #[serde(default)]
    pub purge_lag_secs: u32,
}

fn default_geo() -> String {
    "europe".into()
}
fn default_subscription() -> String {
    "00000000-0000-0000-0000-000000000001".into()
}
fn default_region() -> String {
    "westeurope".into()
}
fn default_days() -> Option<u32> {
    Some(90)
}

impl VaultSettings {
    /// Settings with defaults for everything but the name.
    pub fn named(name: impl Into<String>) -> Self {
        VaultSettings {
            name: name.into(),
            geo: default_geo(),
            subscription: default_subscription(),
            region: default_region(),
            recoverable_days: default_days(),
            purge_protection: false,
            delete_lag_secs: 0,
            purge_lag_secs: 0,
        }
    }
}

/// One vault.
#[derive(Debug)]
pub struct Vault {
    settings: VaultSettings,
    backup_master_key: [u8; 32],
}

impl Vault {
    /// An empty vault. `backup_master_key` is the emulator-wide secret from which the backup blob
    /// key of each (geography, subscription) pair is derived.
    pub fn new(settings: VaultSettings, backup_master_key: [u8; 32]) -> Self {
        Vault {
            settings,
            backup_master_key,
        }
    }

    /// Current settings.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    /// Mutable settings (control plane).
    pub fn settings_mut(&mut self) -> &mut VaultSettings {
        &mut self.settings
    }

    /// Applies one data-plane operation.
    pub fn apply(&mut self, op: &Op, ctx: &Ctx) -> Result<Reply, KvError> {
        let _ = (op, ctx, &self.backup_master_key);
        todo!("vault::apply")
    }

    /// The operation's weight against the vault's throttle budget (1 for secrets and RSA-2048/EC
    /// keys, 4 for RSA-3072, 8 for RSA-4096, doubled for HSM keys).
    pub fn throttle_weight(&self, op: &Op) -> u32 {
        let _ = op;
        1
    }

    /// Bulk seeding for tests and benchmarks.
    pub fn seed(&mut self, spec: &SeedSpec, now: i64) -> Result<SeedReport, KvError> {
        let _ = (spec, now);
        todo!("vault::seed")
    }

    /// What the vault holds now.
    pub fn counts(&self) -> ObjectCounts {
        ObjectCounts::default()
    }
}
