//! The source's error vocabulary. Adapters translate their vendor errors (HTTP status, Key Vault
//! error codes, transport failures) into a [`SourceErrorKind`] here, so nothing above the source
//! names an Azure type.
//!
//! Rules: a message says which operation on which object of which vault failed, and what the
//! service said; lowercase, no trailing period. The service's `error.code` and
//! `innererror.code` are kept as data (restore decides on `ObjectIsDeletedButRecoverable`).
//! Details are scrubbed of SAS signatures and never hold a token or a secret value.

use std::fmt;
use std::time::Duration;

use crate::azure::scrub_secrets;
use crate::model::{ObjectKind, VaultName};

/// What kind of failure a [`SourceError`] is; decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceErrorKind {
    /// The object (or version) does not exist (HTTP 404).
    NotFound,
    /// The object exists where it must not (reserved for adapters that can tell it apart from a
    /// conflict; Key Vault answers 409 for both, see [`SourceErrorKind::Conflict`]).
    AlreadyExists,
    /// The name is taken, active or soft-deleted, or an operation on it is still running
    /// (HTTP 409). [`SourceError::inner_code`] tells which when the service says.
    Conflict,
    /// Not allowed: missing permission, certificate-managed object, purge protection, disabled
    /// version, failed authentication (HTTP 401/403).
    Forbidden,
    /// The service asked us to slow down (HTTP 429). Retryable after
    /// [`SourceError::retry_after`] or a backoff.
    Throttled,
    /// A failure that may pass on its own: connection reset, timeout, 5xx. Retryable.
    Transient,
    /// Anything else, e.g. a corrupt backup blob (HTTP 400): repeating fails the same way.
    Permanent,
}

impl SourceErrorKind {
    /// Whether repeating the same operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            SourceErrorKind::Throttled | SourceErrorKind::Transient
        )
    }

    fn describe(self) -> &'static str {
        match self {
            SourceErrorKind::NotFound => "not found",
            SourceErrorKind::AlreadyExists => "already exists",
            SourceErrorKind::Conflict => "conflict",
            SourceErrorKind::Forbidden => "forbidden",
            SourceErrorKind::Throttled => "throttled",
            SourceErrorKind::Transient => "transient failure",
            SourceErrorKind::Permanent => "rejected",
        }
    }
}

/// The source operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceOp {
    /// [`super::VaultSource::list`].
    List,
    /// [`super::VaultSource::list_versions`].
    ListVersions,
    /// [`super::VaultSource::backup`].
    Backup,
    /// [`super::VaultSource::restore`].
    Restore,
    /// [`super::VaultSource::list_deleted`].
    ListDeleted,
    /// [`super::VaultSource::get_deleted`].
    GetDeleted,
    /// [`super::VaultSource::recover`].
    Recover,
    /// [`super::VaultSource::purge`].
    Purge,
    /// [`super::VaultSource::delete`].
    Delete,
    /// [`super::VaultSource::get_properties`].
    GetProperties,
}

impl SourceOp {
    /// Every operation.
    pub const ALL: [SourceOp; 10] = [
        SourceOp::List,
        SourceOp::ListVersions,
        SourceOp::Backup,
        SourceOp::Restore,
        SourceOp::ListDeleted,
        SourceOp::GetDeleted,
        SourceOp::Recover,
        SourceOp::Purge,
        SourceOp::Delete,
        SourceOp::GetProperties,
    ];

    /// Whether repeating the operation after an unknown outcome is harmless. A restore, delete,
    /// recover or purge that reached the service before the connection broke would answer 409
    /// or 404 when repeated, so those are repeated only after a 429 (which the service sends
    /// for requests it did not process).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            SourceOp::List
                | SourceOp::ListVersions
                | SourceOp::Backup
                | SourceOp::ListDeleted
                | SourceOp::GetDeleted
                | SourceOp::GetProperties
        )
    }
}

impl fmt::Display for SourceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceOp::List => "list",
            SourceOp::ListVersions => "list versions",
            SourceOp::Backup => "backup",
            SourceOp::Restore => "restore",
            SourceOp::ListDeleted => "list deleted",
            SourceOp::GetDeleted => "get deleted",
            SourceOp::Recover => "recover",
            SourceOp::Purge => "purge",
            SourceOp::Delete => "delete",
            SourceOp::GetProperties => "get properties",
        })
    }
}

/// A failed source operation. Boxed: it travels in every `Result` of the seam, most of which
/// succeed, so the happy path should not carry its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: SourceErrorKind,
    op: SourceOp,
    vault: VaultName,
    object_kind: ObjectKind,
    name: Option<String>,
    code: Option<String>,
    inner_code: Option<String>,
    detail: String,
    retry_after: Option<Duration>,
    interrupted: bool,
}

impl SourceError {
    /// The call was not made, or not repeated, because kvkeep was asked to stop (the
    /// cancellation token fired while it waited for the rate limiter or a retry). Its kind is
    /// `Transient`: the same call later would go ahead.
    pub fn interrupted(
        op: SourceOp,
        vault: &VaultName,
        object_kind: ObjectKind,
        name: Option<&str>,
    ) -> Self {
        let mut e = SourceError::new(
            SourceErrorKind::Transient,
            op,
            vault,
            object_kind,
            name,
            "interrupted: kvkeep was asked to stop while waiting to send it",
        );
        e.0.interrupted = true;
        e
    }

    /// Whether this is [`SourceError::interrupted`].
    pub fn is_interrupted(&self) -> bool {
        self.0.interrupted
    }

    /// An error of `kind` for `op` on object `name` (none for `list` and `restore`) of
    /// `object_kind` in `vault`. `detail` is the service's message or the cause; it is scrubbed
    /// of SAS signatures here.
    pub fn new(
        kind: SourceErrorKind,
        op: SourceOp,
        vault: &VaultName,
        object_kind: ObjectKind,
        name: Option<&str>,
        detail: impl AsRef<str>,
    ) -> Self {
        SourceError(Box::new(Inner {
            kind,
            op,
            vault: vault.clone(),
            object_kind,
            name: name.map(str::to_string),
            code: None,
            inner_code: None,
            detail: scrub_secrets(detail.as_ref()),
            retry_after: None,
            interrupted: false,
        }))
    }

    /// Adds the service's `error.code` and `error.innererror.code`.
    pub fn with_codes(mut self, code: Option<String>, inner_code: Option<String>) -> Self {
        self.0.code = code;
        self.0.inner_code = inner_code;
        self
    }

    /// Adds the delay the service asked for (`Retry-After`, `x-ms-retry-after-ms`).
    pub fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.0.retry_after = delay;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> SourceErrorKind {
        self.0.kind
    }

    /// The failed operation.
    pub fn op(&self) -> SourceOp {
        self.0.op
    }

    /// The vault.
    pub fn vault(&self) -> &VaultName {
        &self.0.vault
    }

    /// The kind of object concerned.
    pub fn object_kind(&self) -> ObjectKind {
        self.0.object_kind
    }

    /// The object's name, when the operation concerns one object.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The service's `error.code` (`SecretNotFound`, `Conflict`, `Malformed backup blob`, …).
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// The service's `error.innererror.code` (`ObjectIsDeletedButRecoverable`,
    /// `ObjectIsBeingDeleted`, `SecretDisabled`, …).
    pub fn inner_code(&self) -> Option<&str> {
        self.0.inner_code.as_deref()
    }

    /// The service's message or the cause.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// How long the service asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        self.0.kind.is_retryable()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        let singular = e.object_kind.as_str().trim_end_matches('s');
        match &e.name {
            Some(name) => write!(f, "{} of {singular} {name} in vault {}", e.op, e.vault)?,
            None if e.op == SourceOp::Restore => {
                write!(f, "restore of a {singular} backup into vault {}", e.vault)?
            }
            None => write!(f, "{} of {} in vault {}", e.op, e.object_kind, e.vault)?,
        }
        write!(f, " failed: {}", e.kind.describe())?;
        match (&e.code, &e.inner_code) {
            (Some(code), Some(inner)) => write!(f, " ({code}/{inner})")?,
            (Some(code), None) => write!(f, " ({code})")?,
            _ => {}
        }
        if !e.detail.is_empty() {
            write!(f, ": {}", e.detail.trim_end_matches('.'))?;
        }
        if let Some(delay) = e.retry_after {
            write!(f, "; retry after {} ms", delay.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> VaultName {
        "kv-prod".parse().expect("vault name")
    }

    #[test]
    fn messages_name_vault_kind_object_and_codes() {
        let err = SourceError::new(
            SourceErrorKind::Conflict,
            SourceOp::Restore,
            &vault(),
            ObjectKind::Secrets,
            Some("db-password"),
            "Secret db-password is currently in a deleted but recoverable state.",
        )
        .with_codes(
            Some("Conflict".into()),
            Some("ObjectIsDeletedButRecoverable".into()),
        );
        assert_eq!(
            err.to_string(),
            "restore of secret db-password in vault kv-prod failed: conflict \
             (Conflict/ObjectIsDeletedButRecoverable): Secret db-password is currently in a \
             deleted but recoverable state"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn list_and_nameless_restore_read_naturally() {
        let list = SourceError::new(
            SourceErrorKind::Throttled,
            SourceOp::List,
            &vault(),
            ObjectKind::Keys,
            None,
            "",
        )
        .with_retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(
            list.to_string(),
            "list of keys in vault kv-prod failed: throttled; retry after 1500 ms"
        );
        assert!(list.is_retryable());
        let restore = SourceError::new(
            SourceErrorKind::Permanent,
            SourceOp::Restore,
            &vault(),
            ObjectKind::Certificates,
            None,
            "Backup blob is corrupt.",
        );
        assert_eq!(
            restore.to_string(),
            "restore of a certificate backup into vault kv-prod failed: rejected: Backup blob is corrupt"
        );
    }
}
