//! The validated configuration: every value typed and checked, defaults applied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::notify::NotifyConfig;
use crate::model::{ObjectKind, VaultName};
use crate::scheduler::Schedule;

/// The whole configuration. It holds no secret values — only the paths of files that hold them —
/// so it can be shown in full.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where backups go.
    pub store: StoreConfig,
    /// How they are sealed.
    pub encryption: EncryptionConfig,
    /// The SQLite index file.
    pub index_path: PathBuf,
    /// Authentication and connection to Azure.
    pub azure: AzureConfig,
    /// Throttle shares and concurrency.
    pub limits: Limits,
    /// The vaults to back up.
    pub vaults: Vec<VaultConfig>,
    /// How `kvkeep daemon` runs.
    pub daemon: super::daemon::DaemonConfig,
    /// The HTML report the daemon keeps (`[report]`).
    pub report: super::report::ReportConfig,
    /// Who hears about a run's outcome (`[[notify]]`).
    pub notify: Vec<NotifyConfig>,
}

/// The blob store.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// A local directory (the embedded default; also good for tests and air-gapped copies).
    Local {
        /// The directory.
        path: PathBuf,
        /// Prefix of every blob name.
        prefix: String,
    },
    /// An Azure Blob Storage container.
    Azure {
        /// `https://{account}.blob.core.windows.net/{container}` (no query string).
        container_url: String,
        /// How to authenticate.
        auth: StoreAuth,
        /// Prefix of every blob name.
        prefix: String,
        /// Tier for new blobs; the account default when absent.
        access_tier: Option<AccessTier>,
        /// A separate container for the vaults' lock blobs (`[store] lock_container_url`): the
        /// backup container may then be under an immutability policy, which refuses the
        /// metadata writes a lease holder makes. `None`: locks live beside the backups.
        locks: Option<LockContainer>,
    },
}

/// The container that holds the lock blobs when it is not the backup container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockContainer {
    /// Its URL (no query string).
    pub container_url: String,
    /// How to authenticate: the `[azure]` credential like the backup container, or its own SAS
    /// URL file (`lock_sas_url_file`) when the backup container uses a SAS.
    pub auth: StoreAuth,
}

/// Blob store authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StoreAuth {
    /// The `[azure]` credential (Entra ID token for `https://storage.azure.com`).
    Credential,
    /// A SAS URL read from a file when needed (the URL is a secret).
    Sas {
        /// The file holding the SAS URL.
        url_file: PathBuf,
    },
}

/// Blob access tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTier {
    /// Hot.
    Hot,
    /// Cool.
    Cool,
    /// Cold.
    Cold,
}

/// Sealing settings. Public keys, and the path (never the content) of the catalog identity
/// file: the backup path never needs an identity.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionConfig {
    /// Recovery recipients (`age1…`), de-duplicated, inline ones first: every blob is sealed
    /// to them.
    pub recipients: Vec<String>,
    /// The catalog recipient (`age1…`): manifests are also sealed to it, object blobs never.
    /// Never one of `recipients`.
    pub catalog_recipient: Option<String>,
    /// The catalog identity file on daemon hosts (a `LoadCredential=` file): opens manifests
    /// that other instances wrote. Read by [`crate::crypto::load_catalog_identity`].
    pub catalog_identity_file: Option<PathBuf>,
    /// zstd level, 1–22.
    pub zstd_level: i32,
}

/// How kvkeep authenticates to Azure and reaches it.
#[derive(Debug, Clone, Serialize)]
pub struct AzureConfig {
    /// The credential source.
    pub credential: CredentialConfig,
    /// Extra CA (PEM) to trust, e.g. the emulator's.
    pub ca_file: Option<PathBuf>,
    /// Which endpoints trust `ca_file`.
    pub ca_scope: CaScope,
    /// Host name → address overrides (lets a host such as `kv1.vault.localhost` resolve without
    /// editing system files).
    pub resolve: BTreeMap<String, IpAddr>,
    /// Check that Key Vault's challenge resource belongs to the vault's domain (keep on).
    pub verify_challenge_resource: bool,
}

/// Which endpoints trust `[azure] ca_file`.
///
/// A private CA is usually there for the vault and store hosts (an emulator, a TLS-inspecting
/// proxy in front of them). Trusting it for the identity provider too would let whoever holds
/// that CA's key impersonate Entra ID and collect the client secret or federated token kvkeep
/// sends there, so that needs saying explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaScope {
    /// Key Vault and Blob Storage hosts only (the default).
    #[default]
    Services,
    /// Also the credential's token endpoint (Entra ID, the managed identity endpoint).
    All,
}

/// Credential sources, from the `azure_identity` chain plus a token file for emulators.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CredentialConfig {
    /// The developer-tools/managed-identity chain.
    Default,
    /// Managed identity (system-assigned, or user-assigned with a client id).
    ManagedIdentity {
        /// User-assigned identity's client id.
        client_id: Option<String>,
    },
    /// Workload identity (federated token from the environment, e.g. AKS).
    WorkloadIdentity,
    /// App registration with a client secret read from a file.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client id.
        client_id: String,
        /// File holding the secret.
        secret_file: PathBuf,
    },
    /// The Azure CLI's login.
    AzureCli,
    /// A bearer token read from a file (emulators and tests).
    TokenFile {
        /// The file.
        path: PathBuf,
    },
}

/// Rate and concurrency limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Fraction (0–1] of a vault's throttle budget kvkeep may use.
    pub vault_share: f64,
    /// Fraction (0–1] of a subscription's budget kvkeep may use.
    pub subscription_share: f64,
    /// Objects in flight per vault.
    pub concurrency: usize,
}

/// What is captured of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadMode {
    /// Key Vault's own backup blob: same subscription and geography only.
    Native,
    /// Values and attributes (secrets and certificates only): restorable anywhere.
    Portable,
}

impl PayloadMode {
    /// The word for the mode wherever kvkeep records it — index, manifests, JSON output — the
    /// same as its serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Native => "native",
            PayloadMode::Portable => "portable",
        }
    }
}

impl std::str::FromStr for PayloadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(PayloadMode::Native),
            "portable" => Ok(PayloadMode::Portable),
            other => Err(format!("unknown payload mode {other:?}")),
        }
    }
}

/// One vault to back up.
#[derive(Debug, Clone, Serialize)]
pub struct VaultConfig {
    /// The vault's name.
    pub name: VaultName,
    /// Its URL.
    pub url: String,
    /// Subscription id, when known (restore compatibility checks).
    pub subscription: Option<String>,
    /// Azure geography, when known.
    pub geography: Option<String>,
    /// Backup schedule; `None` means on demand only.
    #[serde(serialize_with = "schedule_ser")]
    pub schedule: Option<Schedule>,
    /// Kinds to capture.
    pub kinds: BTreeSet<ObjectKind>,
    /// Name globs to include (empty = all).
    pub include: Vec<String>,
    /// Name globs to exclude.
    pub exclude: Vec<String>,
    /// Skip objects whose tag `k` has value `v`.
    pub skip_tags: BTreeMap<String, String>,
    /// Payload mode.
    pub payload: PayloadMode,
    /// How often to compare full version lists.
    #[serde(serialize_with = "duration_ser")]
    pub deep_scan_every: Duration,
    /// Bound of the start offset added to every fire time (stable per vault, below the bound).
    #[serde(serialize_with = "duration_ser")]
    pub jitter: Duration,
    /// The daemon leaves this vault's schedules alone (on-demand commands still work).
    pub paused: bool,
    /// Quick verify schedule; `None` when turned off with `""`.
    #[serde(serialize_with = "schedule_ser")]
    pub verify_schedule: Option<Schedule>,
    /// Which restore points to keep.
    pub retention: crate::retention::RetentionPolicy,
    /// Recovery point objective: the oldest the newest restore point may be before
    /// `kvkeep report` calls the vault in breach; `None` when not set.
    #[serde(serialize_with = "optional_duration_ser")]
    pub rpo: Option<Duration>,
}

fn schedule_ser<S: serde::Serializer>(s: &Option<Schedule>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&s.to_string()),
        None => ser.serialize_none(),
    }
}

/// A duration as configured (`1h 30m`), for `kvkeep config show`; every section serializes
/// its durations with this.
pub(super) fn duration_ser<S: serde::Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&humantime::format_duration(*d).to_string())
}

fn optional_duration_ser<S: serde::Serializer>(
    d: &Option<Duration>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration_ser(d, ser),
        None => ser.serialize_none(),
    }
}
