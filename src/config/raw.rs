//! The configuration file as written: serde structs mirroring the TOML, unknown keys refused,
//! values wrapped in `Spanned` where validation needs to point at a line. Nothing is checked
//! here beyond TOML types; `validate` turns a `RawConfig` into a `Config`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[store]`
    pub store: Option<Spanned<RawStore>>,
    /// `[encryption]`
    pub encryption: Option<Spanned<RawEncryption>>,
    /// `[index]`
    #[serde(default)]
    pub index: RawIndex,
    /// `[azure]`
    #[serde(default)]
    pub azure: RawAzure,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[defaults]`: per-vault settings every `[[vault]]` inherits.
    #[serde(default)]
    pub defaults: RawVaultDefaults,
    /// `[[vault]]`: the vaults to back up.
    #[serde(default, rename = "vault")]
    pub vaults: Vec<Spanned<RawVault>>,
    /// `[daemon]`
    #[serde(default)]
    pub daemon: super::daemon::RawDaemon,
    /// `[report]`
    #[serde(default)]
    pub report: super::report::RawReport,
    /// `[[notify]]`: who hears about a run's outcome.
    #[serde(default, rename = "notify")]
    pub notify: Vec<Spanned<super::notify::RawNotify>>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `local` or `azure`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Local directory.
    pub path: Option<Spanned<String>>,
    /// Azure Blob container URL.
    pub container_url: Option<Spanned<String>>,
    /// `credential` or `sas`.
    pub auth: Option<Spanned<String>>,
    /// File holding the SAS URL (a secret, so never inline).
    pub sas_url_file: Option<Spanned<String>>,
    /// Blob name prefix.
    pub prefix: Option<Spanned<String>>,
    /// Access tier for new blobs.
    pub access_tier: Option<Spanned<String>>,
    /// A separate container for the lock blobs.
    pub lock_container_url: Option<Spanned<String>>,
    /// File holding the lock container's SAS URL (with `auth = "sas"`).
    pub lock_sas_url_file: Option<Spanned<String>>,
}

/// `[encryption]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// age recipients inline.
    #[serde(default)]
    pub recipients: Vec<Spanned<String>>,
    /// File with one age recipient per line.
    pub recipients_file: Option<Spanned<String>>,
    /// The catalog recipient (manifests only).
    pub catalog_recipient: Option<Spanned<String>>,
    /// The catalog identity file (daemon hosts).
    pub catalog_identity_file: Option<Spanned<String>>,
    /// zstd level.
    pub zstd_level: Option<Spanned<i64>>,
}

/// `[index]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    /// SQLite file.
    pub path: Option<Spanned<String>>,
}

/// `[azure]`: how kvkeep authenticates and connects.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    /// Credential source.
    pub credential: Option<Spanned<String>>,
    /// Tenant for `client-secret`.
    pub tenant_id: Option<Spanned<String>>,
    /// Client id for `client-secret` / user-assigned managed identity.
    pub client_id: Option<Spanned<String>>,
    /// File holding the client secret.
    pub client_secret_file: Option<Spanned<String>>,
    /// File holding a bearer token (`token-file`: emulator and tests).
    pub token_file: Option<Spanned<String>>,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<Spanned<String>>,
    /// Which endpoints trust `ca_file`: `services` (vault and store) or `all`.
    pub ca_scope: Option<Spanned<String>>,
    /// Host name → IP overrides.
    #[serde(default)]
    pub resolve: BTreeMap<String, Spanned<String>>,
    /// Verify that the Key Vault challenge resource matches the vault's domain.
    pub verify_challenge_resource: Option<bool>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Share of each vault's throttle budget kvkeep may use.
    pub vault_share: Option<Spanned<f64>>,
    /// Share of each subscription's budget.
    pub subscription_share: Option<Spanned<f64>>,
    /// Objects in flight per vault.
    pub concurrency: Option<Spanned<i64>>,
}

/// Settings shared by `[defaults]` and `[[vault]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVaultDefaults {
    /// Cron schedule.
    pub schedule: Option<Spanned<String>>,
    /// IANA time zone of the schedule.
    pub timezone: Option<Spanned<String>>,
    /// Kinds to back up.
    pub kinds: Option<Vec<Spanned<String>>>,
    /// Name globs to include.
    pub include: Option<Vec<Spanned<String>>>,
    /// Name globs to exclude.
    pub exclude: Option<Vec<Spanned<String>>>,
    /// Objects carrying any of these tag values are skipped.
    pub skip_tags: Option<BTreeMap<String, String>>,
    /// `native` or `portable`.
    pub payload: Option<Spanned<String>>,
    /// How often a deep scan compares version lists (e.g. `7d`).
    pub deep_scan_every: Option<Spanned<String>>,
    /// Bound of the per-vault start offset (e.g. `10m`).
    pub jitter: Option<Spanned<String>>,
    /// `true`: the daemon does not run this vault's schedule.
    pub paused: Option<Spanned<bool>>,
    /// Quick verify schedule (default `@weekly`; `""` turns it off).
    pub verify_schedule: Option<Spanned<String>>,
    /// `[defaults.retention]`: which restore points to keep.
    pub retention: Option<super::retention::RawRetention>,
    /// Recovery point objective: `kvkeep report` calls a vault in breach when its newest
    /// restore point is older than this (e.g. `26h`).
    pub rpo: Option<Spanned<String>>,
}

/// `[[vault]]`: the same optional settings as `[defaults]`, plus the vault's identity. (The fields
/// are repeated rather than `#[serde(flatten)]`ed because serde ignores `deny_unknown_fields` on
/// flattened structs, and unknown keys must be errors.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// Vault name.
    pub name: Spanned<String>,
    /// Vault URL; default `https://{name}.vault.azure.net`.
    pub url: Option<Spanned<String>>,
    /// Subscription id.
    pub subscription: Option<Spanned<String>>,
    /// Azure geography.
    pub geography: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::schedule`].
    pub schedule: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::timezone`].
    pub timezone: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::kinds`].
    pub kinds: Option<Vec<Spanned<String>>>,
    /// See [`RawVaultDefaults::include`].
    pub include: Option<Vec<Spanned<String>>>,
    /// See [`RawVaultDefaults::exclude`].
    pub exclude: Option<Vec<Spanned<String>>>,
    /// See [`RawVaultDefaults::skip_tags`].
    pub skip_tags: Option<BTreeMap<String, String>>,
    /// See [`RawVaultDefaults::payload`].
    pub payload: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::deep_scan_every`].
    pub deep_scan_every: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::jitter`].
    pub jitter: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::paused`].
    pub paused: Option<Spanned<bool>>,
    /// See [`RawVaultDefaults::verify_schedule`].
    pub verify_schedule: Option<Spanned<String>>,
    /// See [`RawVaultDefaults::retention`].
    pub retention: Option<super::retention::RawRetention>,
    /// See [`RawVaultDefaults::rpo`].
    pub rpo: Option<Spanned<String>>,
}
