//! The store's error vocabulary. Adapters translate their vendor errors (HTTP status and service
//! error codes, `std::io` kinds) into a [`StoreErrorKind`] here, so nothing above the store names
//! an Azure or file-system error type.
//!
//! Rules: every message says which operation on which blob (or prefix) of which store failed
//! and what to do; it is lowercase and has no trailing period. `detail` is scrubbed of SAS
//! signatures when the error is built, and never holds a token.

use std::fmt;
use std::time::Duration;

use crate::azure::scrub_secrets;

/// What kind of failure a [`StoreError`] is; decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The blob does not exist.
    NotFound,
    /// `put_new` found a blob of that name: blobs are written once and never replaced.
    AlreadyExists,
    /// The credential, SAS or file permissions do not allow the operation.
    Forbidden,
    /// The service asked us to slow down (HTTP 429 / 503 `ServerBusy`). Retryable.
    Throttled,
    /// A failure that may pass on its own: connection reset, timeout, 500/502/504. Retryable.
    Transient,
    /// The store refuses to delete a blob it must keep: Azure's immutability policy or legal
    /// hold (409 `BlobImmutableDueToPolicy` / `BlobImmutableDueToLegalHold`). Prune postpones
    /// such a blob instead of failing; it can go once the retention period or hold ends.
    Immutable,
    /// Anything else: retrying the same request will fail the same way.
    Permanent,
}

impl StoreErrorKind {
    /// Whether repeating the same operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Throttled | StoreErrorKind::Transient)
    }
}

/// The store operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// `put_new`.
    Put,
    /// `get`.
    Get,
    /// `head`.
    Head,
    /// `list`.
    List,
    /// `delete`.
    Delete,
    /// Opening the store (reading its configuration, credentials, directory).
    Open,
    /// `acquire_lease` (creating the lock blob, leasing it, recording the holder).
    AcquireLease,
    /// `renew_lease`.
    RenewLease,
    /// `release_lease`.
    ReleaseLease,
    /// `break_lease`.
    BreakLease,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreOp::Put => "write",
            StoreOp::Get => "read",
            StoreOp::Head => "stat",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Open => "open",
            StoreOp::AcquireLease => "acquire lease on",
            StoreOp::RenewLease => "renew lease on",
            StoreOp::ReleaseLease => "release lease on",
            StoreOp::BreakLease => "break lease on",
        })
    }
}

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    op: StoreOp,
    key: String,
    store: String,
    detail: String,
    retry_after: Option<Duration>,
}

impl StoreError {
    /// An error of `kind` for `op` on `key` (a blob key, or the prefix for `list`) in `store`
    /// (a description without secrets, e.g. `local store /var/lib/kvkeep/store`). `detail` is
    /// the cause and hint; it is scrubbed of SAS signatures here.
    pub fn new(
        kind: StoreErrorKind,
        op: StoreOp,
        key: impl Into<String>,
        store: impl Into<String>,
        detail: impl AsRef<str>,
    ) -> Self {
        StoreError {
            kind,
            op,
            key: key.into(),
            store: store.into(),
            detail: scrub_secrets(detail.as_ref()),
            retry_after: None,
        }
    }

    /// Adds the delay the service asked for (`Retry-After`, `x-ms-retry-after-ms`).
    pub fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The failed operation.
    pub fn op(&self) -> StoreOp {
        self.op
    }

    /// The blob key (or list prefix) concerned.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The cause and hint, without secrets.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The delay the service asked for before a retry, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether repeating the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.op {
            StoreOp::List => format!("blobs under prefix {:?}", self.key),
            StoreOp::Open => String::new(),
            _ => format!("blob {}", self.key),
        };
        let what = if subject.is_empty() {
            format!("{} {}", self.op, self.store)
        } else {
            format!("{} {subject} in {}", self.op, self.store)
        };
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", self.detail)
        };
        match self.kind {
            StoreErrorKind::NotFound => write!(
                f,
                "{what} failed: no such blob (was it pruned, or is the store prefix wrong?){detail}"
            ),
            StoreErrorKind::AlreadyExists => write!(
                f,
                "{what} refused: a blob of that name exists and blobs are never overwritten{detail}"
            ),
            StoreErrorKind::Forbidden => write!(f, "{what} denied{detail}"),
            StoreErrorKind::Throttled => write!(
                f,
                "{what} throttled by the service{detail}; retry later or lower [limits] concurrency"
            ),
            StoreErrorKind::Transient => {
                write!(
                    f,
                    "{what} failed{detail}; the error is transient, a retry may succeed"
                )
            }
            StoreErrorKind::Immutable => write!(
                f,
                "{what} refused: the blob is under an immutability policy or legal hold{detail}; it can be deleted once that ends"
            ),
            StoreErrorKind::Permanent => write!(f, "{what} failed{detail}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_key_and_store_and_hide_signatures() {
        let e = StoreError::new(
            StoreErrorKind::Transient,
            StoreOp::Put,
            "objects/kv1/x.age",
            "azure container https://a.blob.core.windows.net/c",
            "connection reset (url https://a.blob.core.windows.net/c/x?sv=1&sig=SECRET)",
        );
        let text = e.to_string();
        assert!(text.starts_with("write blob objects/kv1/x.age in azure container https://a.blob.core.windows.net/c failed"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(e.is_retryable());

        let e = StoreError::new(
            StoreErrorKind::NotFound,
            StoreOp::Get,
            "k",
            "local store /s",
            "",
        );
        assert_eq!(
            e.to_string(),
            "read blob k in local store /s failed: no such blob (was it pruned, or is the store prefix wrong?)"
        );
        assert!(!e.is_retryable());

        let e = StoreError::new(
            StoreErrorKind::Forbidden,
            StoreOp::List,
            "objects/",
            "local store /s",
            "permission denied",
        );
        assert_eq!(
            e.to_string(),
            "list blobs under prefix \"objects/\" in local store /s denied: permission denied"
        );
    }
}
