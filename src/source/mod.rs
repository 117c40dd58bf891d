//! The Key Vault seam: everything backup and restore ask of a vault — list (every page), list
//! versions, backup, restore, get-deleted, recover, purge, delete and get-properties.
//!
//! [`VaultSource`] is the contract; the shared contract suite in `tests/source_contract.rs` runs
//! it against each implementation:
//!
//! - [`AzureVaultSource`]: the official SDK crates (`azure_security_keyvault_*` 1.x) over HTTPS,
//!   with vendor errors translated into [`SourceErrorKind`] at the adapter;
//! - [`InMemoryVaultSource`]: the fake, with programmable failures and call counters.
//!
//! Cross-cutting behaviour wraps the seam: [`RateLimitedSource`] (token buckets per vault and per
//! subscription, throttle pauses, bounded backoff).
//!
//! Nothing here or above names an Azure type. Timestamps are Unix seconds (`i64`), exactly what
//! the service sends on the wire, so nothing is lost or reinterpreted between the listing, the
//! index and the manifests.

mod azure;
mod bucket;
mod error;
mod memory;
mod rate;
mod sdk_retry;
mod translate;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

pub use azure::{AzureSourceOptions, AzureSourceSetupError, AzureVaultSource};
pub use error::{SourceError, SourceErrorKind, SourceOp};
pub use memory::{FailureRule, InMemoryVaultSource, SeedObject};
pub use rate::{
    BackoffOptions, RateLimitOptions, RateLimitedSource, RateLimiter, RequestCounters, TokenBucket,
};
pub use sdk_retry::SdkRetryOptions;

use crate::model::{ObjectKind, ObjectName, ObjectVersion, Validity, VaultName};

/// Key Vault refuses to back up an object with more than this many versions.
pub const MAX_BACKUP_VERSIONS: usize = 500;

/// From this many versions on, listing the versions of an object logs a warning so operators can
/// prune old versions before backups start failing at [`MAX_BACKUP_VERSIONS`].
pub const VERSION_WARNING_THRESHOLD: usize = 450;

/// Tags of an object (Key Vault allows at most 15).
pub type Tags = BTreeMap<String, String>;

/// One object as the vault lists it: the attributes of its *current* version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The object's name, as the vault echoes it.
    pub name: ObjectName,
    /// Keys, secrets or certificates.
    pub kind: ObjectKind,
    /// The current version, when the listing carries it. Key Vault's list endpoints return the
    /// base id without a version, so against the real service this is `None`; change detection
    /// relies on `updated` (and the version list on deep scans), and a capture derives the
    /// current version from the version list (never from a read of the object).
    pub version: Option<ObjectVersion>,
    /// Last change of the current version (Unix seconds).
    pub updated: Option<i64>,
    /// Whether the current version is enabled.
    pub enabled: bool,
    /// Tags of the current version.
    pub tags: Tags,
    /// `nbf` and `exp` of the current version (the listing carries them with the other
    /// attributes, so recording them costs no request).
    pub validity: Validity,
    /// True for the key and secret that back a certificate: backing them up directly is refused,
    /// the certificate's backup covers them. Always false for certificates.
    pub managed: bool,
    /// Content type (secrets only; `application/x-pkcs12` or `application/x-pem-file` for the
    /// secrets of certificates).
    pub content_type: Option<String>,
}

/// One version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version id.
    pub version: ObjectVersion,
    /// Creation time (Unix seconds).
    pub created: Option<i64>,
    /// Last change (Unix seconds).
    pub updated: Option<i64>,
    /// Whether the version is enabled.
    pub enabled: bool,
    /// Tags of the version (the versions listing carries them, so they can tell apart versions
    /// created within the same second without reading any of them).
    pub tags: Tags,
    /// Content type (secrets only).
    pub content_type: Option<String>,
}

/// The attributes and tags of an object's current version (for verification after a restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProperties {
    /// The object's name.
    pub name: ObjectName,
    /// Its kind.
    pub kind: ObjectKind,
    /// The current version.
    pub version: ObjectVersion,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Creation time of the current version (Unix seconds).
    pub created: Option<i64>,
    /// Last change (Unix seconds).
    pub updated: Option<i64>,
    /// Not valid before (Unix seconds).
    pub not_before: Option<i64>,
    /// Expiry (Unix seconds).
    pub expires: Option<i64>,
    /// Tags.
    pub tags: Tags,
    /// Certificate-managed key or secret.
    pub managed: bool,
    /// Content type (secrets).
    pub content_type: Option<String>,
}

/// The raw bytes of a Key Vault backup (already base64url-decoded): opaque, encrypted by the
/// service, restorable only into a vault of the same subscription and geography.
///
/// `Debug` prints only the length: the blob is ciphertext, but nothing gains from dumping it.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupBlob(Vec<u8>);

impl BackupBlob {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        BackupBlob(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty (never for a real backup).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for BackupBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupBlob({} bytes)", self.0.len())
    }
}

/// What a restore created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredObject {
    /// The restored object's name (taken from the blob by the service).
    pub name: ObjectName,
    /// Its current version (the original version ids are kept).
    pub version: ObjectVersion,
}

/// A soft-deleted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedInfo {
    /// The name.
    pub name: ObjectName,
    /// When it was deleted (Unix seconds).
    pub deleted_on: Option<i64>,
    /// When the service will purge it (Unix seconds).
    pub scheduled_purge: Option<i64>,
    /// Whether it was a certificate-managed key or secret.
    pub managed: bool,
}

/// A Key Vault as backup and restore see it. One value per vault; cheap to share
/// (`Arc<dyn VaultSource>`) and safe to call concurrently.
///
/// Errors are [`SourceError`]s whose [`SourceErrorKind`] says whether retrying can help; their
/// messages name the vault, the kind and the object.
#[async_trait]
pub trait VaultSource: Send + Sync {
    /// The vault this source reads and writes.
    fn vault(&self) -> &VaultName;

    /// Every active object of `kind` (all pages), in the order the vault returns them.
    async fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectSummary>, SourceError>;

    /// Every version of an object (all pages). An unknown name gives an empty list, as the
    /// service answers `200` with no items.
    async fn list_versions(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionInfo>, SourceError>;

    /// The service's backup of an object with all its versions. `Forbidden` for
    /// certificate-managed keys and secrets, `NotFound` for absent or soft-deleted objects.
    async fn backup(&self, kind: ObjectKind, name: &ObjectName) -> Result<BackupBlob, SourceError>;

    /// Restores a backup into this vault, keeping version ids. `Conflict` when the name exists,
    /// active or soft-deleted (and for a while after a purge); `Permanent` for a corrupt blob or
    /// one from another geography.
    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError>;

    /// Every soft-deleted object of a kind (every page). Certificate-managed keys and secrets
    /// deleted with their certificate are not listed, as on the service.
    async fn list_deleted(&self, kind: ObjectKind) -> Result<Vec<DeletedInfo>, SourceError>;

    /// The soft-deleted object of that name, if any.
    async fn get_deleted(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<DeletedInfo>, SourceError>;

    /// Recovers a soft-deleted object with all its versions.
    async fn recover(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError>;

    /// Permanently removes a soft-deleted object (`Forbidden` under purge protection).
    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError>;

    /// Soft-deletes an object (restore drills and tests; backup never deletes).
    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError>;

    /// Attributes and tags of the current version.
    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError>;
}

/// Warns when an object is approaching the service's backup limit of 500 versions. Called by
/// every implementation's `list_versions`, so the warning does not depend on the backend.
pub(crate) fn warn_many_versions(
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    count: usize,
) {
    if count >= VERSION_WARNING_THRESHOLD {
        tracing::warn!(
            vault = %vault,
            kind = %kind,
            name = %name,
            versions = count,
            limit = MAX_BACKUP_VERSIONS,
            "object is close to key vault's backup limit of 500 versions; backups fail beyond it, remove old versions"
        );
    }
}
