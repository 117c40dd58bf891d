//! [`AzureBlobStore`]: blobs in an Azure Blob Storage container, over the official
//! `azure_storage_blob` 1.x crate.
//!
//! - Write-once is enforced by the service, not by a check-then-write: every upload carries
//!   `If-None-Match: *`, which the service answers with 409 `BlobAlreadyExists` (or 412
//!   `ConditionNotMet`) when the name exists — atomically, so of two racing writers one wins.
//!   Blobs over 4 MiB go up as staged blocks; the condition sits on the final commit, so the
//!   loser's blocks are never committed.
//! - Auth is an Entra ID bearer token (any `TokenCredential`, scope
//!   `https://storage.azure.com/.default`) or a SAS (query string from a URL in a file, sent
//!   with no credential). The crate has no shared-key auth, and kvkeep wants none.
//! - `x-ms-version` is the crate's default (2026-04-06), which Azurite 3.37 accepts.
//! - Errors are translated here from HTTP status and `x-ms-error-code` into [`StoreErrorKind`];
//!   the SDK's error text is scrubbed of SAS signatures (reqwest quotes request URLs).
//! - The SDK pipeline's own retry should be off (`RetryOptions::none()`, as `open_store` does):
//!   [`super::RetryStore`] is the single retry layer.
//! - Vault leases are blob leases on `locks/{vault}` (see `azure_lease.rs`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, StatusCode, Url};
use azure_storage_blob::models::{
    AccessTier as SdkTier, BlobClientGetPropertiesResultHeaders, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use bytes::Bytes;
use futures::TryStreamExt;

use super::lease::{Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::{normalise_prefix, BlobMeta, BlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::azure::{error_chain, read_secret_file, retry_after, Redacted};
use crate::config::AccessTier;
use crate::model::{BlobKey, VaultName};

/// How the store authenticates.
#[derive(Clone)]
pub enum AzureAuth {
    /// An Entra ID credential (the `[azure]` one); the identity needs the *Storage Blob Data
    /// Contributor* role on the container (or Reader + a write/delete-capable custom role).
    Credential(Arc<dyn TokenCredential>),
    /// A shared access signature: the query string of a SAS URL, sent with every request.
    Sas {
        /// The SAS query (`sv=…&sig=…`), a secret.
        query: Redacted<String>,
        /// The host of the SAS URL the query came from, when it was a full URL; checked against
        /// the container URL so a SAS for another account fails at start, not on first write.
        host: Option<String>,
    },
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureAuth::Credential(c) => f.debug_tuple("Credential").field(c).finish(),
            AzureAuth::Sas { host, .. } => f
                .debug_struct("Sas")
                .field("query", &"[redacted]")
                .field("host", host)
                .finish(),
        }
    }
}

impl AzureAuth {
    /// Reads a SAS from `path`: a full SAS URL (`https://…?sv=…&sig=…`), or just its query
    /// string (with or without the leading `?`). Whitespace around it is ignored.
    pub fn sas_from_file(path: &Path) -> Result<Self, crate::azure::AzureSetupError> {
        let text = read_secret_file("sas url file", path)?;
        let bad = |reason: &str| crate::azure::AzureSetupError::BadFile {
            what: "sas url file",
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = text.expose();
        let (query, host) = if text.starts_with("https://") || text.starts_with("http://") {
            let url = Url::parse(text).map_err(|_| bad("it does not hold a valid url"))?;
            let parts = url
                .query()
                .map(|q| (q.to_string(), url.host_str().map(str::to_ascii_lowercase)));
            // The parsed URL holds the whole SAS too: erase it as well.
            zeroize::Zeroize::zeroize(&mut String::from(url));
            parts.ok_or_else(|| bad("the url has no query string, so no sas"))?
        } else {
            (text.trim_start_matches('?').to_string(), None)
        };
        if !query.split('&').any(|pair| pair.starts_with("sig=")) {
            return Err(bad(
                "it holds no sas signature (sig=); paste the whole sas url",
            ));
        }
        Ok(AzureAuth::Sas {
            query: Redacted::new(query),
            host,
        })
    }

    fn hint(&self) -> String {
        match self {
            AzureAuth::Credential(_) => "check that the identity of [azure] credential has the storage blob data contributor role on the container".to_string(),
            AzureAuth::Sas { query, .. } => {
                let expiry = query
                    .expose()
                    .split('&')
                    .find_map(|p| p.strip_prefix("se="))
                    .map(|se| format!(" (it expires at {})", se.replace("%3A", ":")))
                    .unwrap_or_default();
                format!("check that the sas url grants read, add, create, write, delete and list on the container and has not expired{expiry}")
            }
        }
    }
}

/// Blobs in an Azure Blob Storage container, under a prefix.
pub struct AzureBlobStore {
    container: BlobContainerClient,
    prefix: String,
    tier: Option<SdkTier>,
    /// `maxresults` for list pages; `None` is the service's default (5,000).
    list_page_size: Option<i32>,
    /// "azure container {url}" (never with the SAS) for messages.
    pub(super) name: String,
    auth_hint: String,
}

impl std::fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

impl AzureBlobStore {
    /// A store over the container at `container_url` (`https://{account}.blob.core.windows.net/
    /// {container}`, no query string). `options` carries the transport (see
    /// [`crate::azure::client_options`]) and should have retries off when wrapped in a
    /// [`super::RetryStore`]. The container must exist: kvkeep never creates it, so a typo in the
    /// URL shows as an error instead of a new, empty container.
    pub fn new(
        container_url: &str,
        auth: AzureAuth,
        options: ClientOptions,
        prefix: &str,
        access_tier: Option<AccessTier>,
    ) -> Result<Self, StoreError> {
        let base = container_url.trim_end_matches('/');
        let name = format!("azure container {base}");
        let open_err = |detail: String| {
            StoreError::new(
                StoreErrorKind::Permanent,
                StoreOp::Open,
                "",
                name.clone(),
                detail,
            )
        };
        let mut url =
            Url::parse(base).map_err(|e| open_err(format!("container url is not a url: {e}")))?;
        if url.query().is_some() {
            return Err(open_err(
                "the container url carries a query string; put a sas url in a file and use auth = \"sas\"".to_string(),
            ));
        }
        let auth_hint = auth.hint();
        let credential = match auth {
            AzureAuth::Credential(c) => Some(c),
            AzureAuth::Sas { query, host } => {
                if let Some(host) = host {
                    let container_host = url.host_str().unwrap_or_default().to_ascii_lowercase();
                    if host != container_host {
                        return Err(open_err(format!(
                            "the sas url is for host {host} but the container url is on {container_host}"
                        )));
                    }
                }
                url.set_query(Some(query.expose()));
                None
            }
        };
        let container = BlobContainerClient::new(
            url,
            credential,
            Some(BlobContainerClientOptions {
                client_options: options,
                ..Default::default()
            }),
        )
        .map_err(|e| open_err(e.to_string()))?;
        Ok(AzureBlobStore {
            container,
            prefix: normalise_prefix(prefix),
            tier: access_tier.map(|t| match t {
                AccessTier::Hot => SdkTier::Hot,
                AccessTier::Cool => SdkTier::Cool,
                AccessTier::Cold => SdkTier::Cold,
            }),
            list_page_size: None,
            name,
            auth_hint,
        })
    }

    /// Lists with at most `n` blobs per page (the service default is 5,000). Tests use a small
    /// value to exercise paging.
    pub fn with_list_page_size(mut self, n: u16) -> Self {
        self.list_page_size = Some(i32::from(n.max(1)));
        self
    }

    pub(super) fn blob(&self, key: &BlobKey) -> BlobClient {
        self.container
            .blob_client(&format!("{}{}", self.prefix, key.as_str()))
    }

    pub(super) fn translate(&self, op: StoreOp, key: &str, error: azure_core::Error) -> StoreError {
        translate(op, key, &self.name, &self.auth_hint, error)
    }
}

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let options = BlobClientUploadOptions {
            tier: self.tier.clone(),
            ..Default::default()
        }
        .if_not_exists();
        self.blob(key)
            .upload(bytes.into(), Some(options))
            .await
            .map(|_| ())
            .map_err(|e| self.translate(StoreOp::Put, key.as_str(), e))
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        let err = |e| self.translate(StoreOp::Get, key.as_str(), e);
        let response = self.blob(key).download(None).await.map_err(err)?;
        response.body.collect().await.map_err(err)
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        let err = |e| self.translate(StoreOp::Head, key.as_str(), e);
        let response = self.blob(key).get_properties(None).await.map_err(err)?;
        let size = response.content_length().map_err(err)?.unwrap_or(0);
        Ok(BlobMeta {
            key: key.clone(),
            size_bytes: size,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        let err = |e| self.translate(StoreOp::List, prefix, e);
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(format!("{}{prefix}", self.prefix)),
            maxresults: self.list_page_size,
            ..Default::default()
        };
        // The pager follows NextMarker until the last page: every blob, however many pages.
        let mut pager = self.container.list_blobs(Some(options)).map_err(err)?;
        let mut out = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(err)? {
            let Some(name) = item.name.as_deref() else {
                continue;
            };
            // Blobs that are not kvkeep keys (written by something else into the container)
            // are not ours to list.
            let Some(Ok(key)) = name.strip_prefix(&self.prefix).map(str::parse::<BlobKey>) else {
                tracing::debug!(store = %self.name, blob = name, "skipping a blob whose name is not a kvkeep key");
                continue;
            };
            let size_bytes = item
                .properties
                .as_ref()
                .and_then(|p| p.content_length)
                .unwrap_or(0);
            out.push(BlobMeta { key, size_bytes });
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.blob(key)
            .delete(None)
            .await
            .map(|_| ())
            .map_err(|e| self.translate(StoreOp::Delete, key.as_str(), e))
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        self.acquire_lease_azure(vault, holder, duration).await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.renew_lease_azure(lease).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        self.release_lease_azure(&lease).await
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        self.break_lease_azure(vault).await
    }
}

/// Translates an SDK error into the store vocabulary, from the HTTP status and the service's
/// `x-ms-error-code`; transport errors by whether the request can have reached the service.
fn translate(
    op: StoreOp,
    key: &str,
    store: &str,
    auth_hint: &str,
    error: azure_core::Error,
) -> StoreError {
    // error_chain scrubs SAS signatures (reqwest quotes request URLs), as StoreError::new does.
    let text = error_chain(&error);
    let (kind, detail, retry_after) = match error.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let code = error_code.clone().unwrap_or_default();
            let said = if code.is_empty() {
                format!("the service answered {status}")
            } else {
                format!("the service answered {status} {code}")
            };
            let retry_after = raw_response.as_deref().and_then(|r| retry_after(r.headers()));
            let (kind, detail) = match (*status, code.as_str()) {
                (StatusCode::NotFound, "ContainerNotFound") => (
                    StoreErrorKind::Permanent,
                    format!("{said}: the container does not exist; create it (kvkeep never creates containers) or fix store.container_url"),
                ),
                // Only a read or delete can miss its blob; a 404 to a write or list means the
                // URL points somewhere else (wrong account, path-style vs host-style URL).
                (StatusCode::NotFound, _) if matches!(op, StoreOp::Get | StoreOp::Head | StoreOp::Delete) => {
                    (StoreErrorKind::NotFound, String::new())
                }
                (StatusCode::NotFound, _) => (
                    StoreErrorKind::Permanent,
                    format!("{said}; check store.container_url (https://ACCOUNT.blob.core.windows.net/CONTAINER)"),
                ),
                (StatusCode::Conflict, "BlobAlreadyExists") | (StatusCode::PreconditionFailed, "ConditionNotMet")
                    if op == StoreOp::Put =>
                {
                    (StoreErrorKind::AlreadyExists, String::new())
                }
                // WORM containers: the blob is kept until its retention period or hold ends.
                (StatusCode::Conflict, "BlobImmutableDueToPolicy" | "BlobImmutableDueToLegalHold")
                    if op == StoreOp::Delete =>
                {
                    (StoreErrorKind::Immutable, said)
                }
                (StatusCode::Unauthorized | StatusCode::Forbidden, _) => {
                    (StoreErrorKind::Forbidden, format!("{said}; {auth_hint}"))
                }
                (StatusCode::TooManyRequests, _) | (StatusCode::ServiceUnavailable, "ServerBusy") => {
                    (StoreErrorKind::Throttled, said)
                }
                (StatusCode::RequestTimeout | StatusCode::InternalServerError | StatusCode::BadGateway
                    | StatusCode::ServiceUnavailable | StatusCode::GatewayTimeout, _) => {
                    (StoreErrorKind::Transient, said)
                }
                (StatusCode::BadRequest, "") => (
                    StoreErrorKind::Permanent,
                    format!("{said} with no error code; a storage emulator answers so to an x-ms-version it does not know"),
                ),
                _ => (StoreErrorKind::Permanent, said),
            };
            (kind, detail, retry_after)
        }
        // The request never left: always safe to retry.
        ErrorKind::Connection if looks_like_tls_trust(&text) => (
            StoreErrorKind::Permanent,
            format!("{text}; the server's certificate is not trusted: set [azure] ca_file for a private ca or emulator"),
            None,
        ),
        ErrorKind::Connection | ErrorKind::Io => (StoreErrorKind::Transient, text, None),
        ErrorKind::Credential => (
            StoreErrorKind::Forbidden,
            format!("no token could be obtained: {text}; check [azure] credential"),
            None,
        ),
        _ => (StoreErrorKind::Permanent, text, None),
    };
    StoreError::new(kind, op, key, store, detail).with_retry_after(retry_after)
}

fn looks_like_tls_trust(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("certificate") || lower.contains("unknownissuer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::headers::HeaderName;
    use azure_core::http::headers::Headers;
    use azure_core::http::RawResponse;
    use std::time::Duration;

    fn http_error(status: StatusCode, code: &str, headers: Headers) -> azure_core::Error {
        ErrorKind::HttpResponse {
            status,
            error_code: (!code.is_empty()).then(|| code.to_string()),
            raw_response: Some(Box::new(RawResponse::from_bytes(
                status,
                headers,
                Bytes::new(),
            ))),
        }
        .into_error()
    }

    fn kind_of(op: StoreOp, status: StatusCode, code: &str) -> StoreErrorKind {
        translate(
            op,
            "k",
            "azure container x",
            "hint",
            http_error(status, code, Headers::new()),
        )
        .kind()
    }

    #[test]
    fn statuses_and_codes_map_to_the_vocabulary() {
        use StoreErrorKind as K;
        let cases = [
            (
                StoreOp::Put,
                StatusCode::NotFound,
                "ResourceNotFound",
                K::Permanent,
            ),
            (StoreOp::List, StatusCode::NotFound, "", K::Permanent),
            (
                StoreOp::Delete,
                StatusCode::NotFound,
                "BlobNotFound",
                K::NotFound,
            ),
            (
                StoreOp::Get,
                StatusCode::NotFound,
                "BlobNotFound",
                K::NotFound,
            ),
            (
                StoreOp::Get,
                StatusCode::NotFound,
                "ContainerNotFound",
                K::Permanent,
            ),
            (
                StoreOp::Put,
                StatusCode::Conflict,
                "BlobAlreadyExists",
                K::AlreadyExists,
            ),
            (
                StoreOp::Put,
                StatusCode::PreconditionFailed,
                "ConditionNotMet",
                K::AlreadyExists,
            ),
            (
                StoreOp::Put,
                StatusCode::PreconditionFailed,
                "LeaseIdMissing",
                K::Permanent,
            ),
            (
                StoreOp::Delete,
                StatusCode::Conflict,
                "BlobImmutableDueToPolicy",
                K::Immutable,
            ),
            (
                StoreOp::Delete,
                StatusCode::Conflict,
                "BlobImmutableDueToLegalHold",
                K::Immutable,
            ),
            (
                StoreOp::Put,
                StatusCode::Forbidden,
                "AuthorizationPermissionMismatch",
                K::Forbidden,
            ),
            (StoreOp::List, StatusCode::Unauthorized, "", K::Forbidden),
            (StoreOp::Put, StatusCode::TooManyRequests, "", K::Throttled),
            (
                StoreOp::Put,
                StatusCode::ServiceUnavailable,
                "ServerBusy",
                K::Throttled,
            ),
            (
                StoreOp::Get,
                StatusCode::ServiceUnavailable,
                "",
                K::Transient,
            ),
            (
                StoreOp::Get,
                StatusCode::InternalServerError,
                "InternalError",
                K::Transient,
            ),
            (StoreOp::Get, StatusCode::BadRequest, "", K::Permanent),
        ];
        for (op, status, code, want) in cases {
            assert_eq!(kind_of(op, status, code), want, "{op:?} {status} {code}");
        }
    }

    #[test]
    fn throttling_carries_the_requested_delay() {
        let mut headers = Headers::new();
        headers.insert(HeaderName::from_static("x-ms-retry-after-ms"), "1500");
        let e = translate(
            StoreOp::Put,
            "k",
            "s",
            "h",
            http_error(StatusCode::TooManyRequests, "", headers),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        let mut headers = Headers::new();
        headers.insert(HeaderName::from_static("retry-after"), "3");
        let e = translate(
            StoreOp::Put,
            "k",
            "s",
            "h",
            http_error(StatusCode::TooManyRequests, "", headers),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn transport_errors_are_transient_and_scrubbed() {
        let e = azure_core::Error::with_message(
            ErrorKind::Io,
            "error sending request for url (https://a.blob.core.windows.net/c/k?sv=1&sig=TOPSECRET)",
        );
        let e = translate(
            StoreOp::Get,
            "k",
            "azure container https://a.blob.core.windows.net/c",
            "h",
            e,
        );
        assert_eq!(e.kind(), StoreErrorKind::Transient);
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
    }

    /// Writes a SAS file with mode 0600, as the runbook asks (others' access is refused).
    fn write_sas(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }

    #[test]
    fn sas_files_accept_urls_and_bare_queries_and_refuse_unsigned_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sas");
        write_sas(&path, "https://acct.blob.core.windows.net/c?sv=2025-11-05&se=2030-01-01T00%3A00%3A00Z&sig=abc\n");
        let auth = AzureAuth::sas_from_file(&path).expect("sas url");
        assert!(!format!("{auth:?}").contains("sig=abc"));
        assert!(
            auth.hint().contains("expires at 2030-01-01T00:00:00Z"),
            "{}",
            auth.hint()
        );
        let err = AzureBlobStore::new(
            "https://other.blob.core.windows.net/c",
            auth,
            ClientOptions::default(),
            "",
            None,
        )
        .expect_err("host mismatch");
        assert!(
            err.to_string()
                .contains("for host acct.blob.core.windows.net"),
            "{err}"
        );

        write_sas(&path, "?sv=2025-11-05&sig=abc");
        AzureAuth::sas_from_file(&path).expect("bare query");

        write_sas(&path, "https://acct.blob.core.windows.net/c");
        let err = AzureAuth::sas_from_file(&path).expect_err("no sas");
        assert!(
            !err.to_string().contains("acct"),
            "the file's content is never quoted: {err}"
        );
    }
}
