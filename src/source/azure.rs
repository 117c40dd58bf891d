//! [`AzureVaultSource`]: the [`VaultSource`] over the GA Key Vault SDK crates
//! (`azure_security_keyvault_{secrets,keys,certificates}` 1.x) and the shared Azure transport
//! and credential of [`crate::azure`].
//!
//! SDK models never leave this file: listings become [`ObjectSummary`]s, `azure_core::Error`s
//! become [`SourceError`]s (see `translate.rs`). Paging is the SDK pager's, followed to the end —
//! empty pages that still carry a nextLink included — but never off the vault's host: every
//! client carries [`SameHostPolicy`]. Retries: see [`super::sdk_retry`].
//!
//! Secret values: no operation here reads one except [`VaultSource::get_properties`] of a secret
//! (Key Vault has no value-less GET for the current version), which only restore verification
//! and drills call — never a backup; the value is dropped on the spot and never logged.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions};
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_certificates::models::{
    CertificateAttributes, RestoreCertificateParameters,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::models::{KeyAttributes, RestoreKeyParameters};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::models::{RestoreSecretParameters, SecretAttributes};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt;

use super::error::{SourceError, SourceErrorKind, SourceOp};
use super::sdk_retry::{NoResendPolicy, SdkRetryOptions, SdkRetryPolicy};
use super::translate::translate;
use super::{
    warn_many_versions, BackupBlob, DeletedInfo, ObjectProperties, ObjectSummary, RestoredObject,
    Tags, VaultSource, VersionInfo,
};
use crate::azure::{AzureSetupError, SameHostPolicy};
use crate::config::{AzureConfig, VaultConfig};
use crate::model::{ObjectKind, ObjectName, ObjectVersion, Validity, VaultName};
use tokio_util::sync::CancellationToken;

/// Settings of the SDK clients beyond transport and credential.
#[derive(Debug, Clone)]
pub struct AzureSourceOptions {
    /// Key Vault REST api-version; `None` keeps the SDK's default (2025-07-01 for the 1.x crates).
    pub api_version: Option<String>,
    /// Require the auth challenge's resource to be a parent domain of the vault's host (keep on
    /// in production; it stops a token for one resource being sent to a look-alike host).
    pub verify_challenge_resource: bool,
    /// The SDK-level retry of connection failures and 5xx (429 is never retried there).
    pub retry: SdkRetryOptions,
    /// Ends the SDK's retry waits and stops its re-sends (Ctrl-C, SIGTERM).
    pub cancel: CancellationToken,
}

impl Default for AzureSourceOptions {
    fn default() -> Self {
        AzureSourceOptions {
            api_version: None,
            verify_challenge_resource: true,
            retry: SdkRetryOptions::default(),
            cancel: CancellationToken::new(),
        }
    }
}

/// Why an [`AzureVaultSource`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AzureSourceSetupError {
    /// Transport or credential setup from `[azure]` failed.
    #[error(transparent)]
    Setup(#[from] AzureSetupError),
    /// The SDK refused the vault URL.
    #[error("cannot use {url} as the url of vault {vault}: {reason}; expected https://{{vault}}.vault.azure.net")]
    Url {
        /// The vault.
        vault: VaultName,
        /// The configured URL.
        url: String,
        /// What the SDK reported.
        reason: String,
    },
}

/// A Key Vault reached through the official SDK clients.
pub struct AzureVaultSource {
    vault: VaultName,
    secrets: SecretClient,
    keys: KeyClient,
    certificates: CertificateClient,
}

impl std::fmt::Debug for AzureVaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureVaultSource")
            .field("vault", &self.vault)
            .field("url", &self.secrets.endpoint().as_str())
            .finish_non_exhaustive()
    }
}

impl AzureVaultSource {
    /// The production constructor: transport and credential from `[azure]` (CA file, host
    /// overrides, credential source), challenge verification from the config.
    pub fn from_config(
        vault: &VaultConfig,
        azure: &AzureConfig,
        options: AzureSourceOptions,
    ) -> Result<Self, AzureSourceSetupError> {
        let client_options = crate::azure::client_options(azure)?;
        let identity_options = crate::azure::identity_client_options(azure)?;
        let credential = crate::azure::credential(&azure.credential, &identity_options)?;
        let options = AzureSourceOptions {
            verify_challenge_resource: azure.verify_challenge_resource,
            ..options
        };
        Self::new(
            vault.name.clone(),
            &vault.url,
            credential,
            client_options,
            options,
        )
    }

    /// Builds the three SDK clients over an explicit transport (`client_options.transport`) and
    /// credential. The retry in `client_options` is replaced by `options.retry`.
    pub fn new(
        vault: VaultName,
        url: &str,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        options: AzureSourceOptions,
    ) -> Result<Self, AzureSourceSetupError> {
        let url_error = |e: azure_core::Error| AzureSourceSetupError::Url {
            vault: vault.clone(),
            url: url.to_string(),
            reason: e.to_string(),
        };
        let same_host = azure_core::http::Url::parse(url)
            .ok()
            .and_then(|u| SameHostPolicy::for_url(&u))
            .ok_or_else(|| AzureSourceSetupError::Url {
                vault: vault.clone(),
                url: url.to_string(),
                reason: "not an absolute https url with a host".to_string(),
            })?;
        // Every request stays on the vault's host: a nextLink elsewhere is refused before the
        // token is attached (see `SameHostPolicy`).
        let mut per_call_policies = client_options.per_call_policies.clone();
        per_call_policies.push(same_host.shared());
        // Writes are never re-sent blindly (see `NoResendPolicy`), and every SDK wait is capped
        // and ends with the cancellation token.
        let mut per_try_policies = client_options.per_try_policies.clone();
        per_try_policies.push(Arc::new(NoResendPolicy::new(options.cancel.clone())));
        let client_options = ClientOptions {
            retry: RetryOptions::custom(Arc::new(SdkRetryPolicy::new(
                options.retry,
                options.cancel.clone(),
            ))),
            per_call_policies,
            per_try_policies,
            ..client_options
        };
        let verify = Some(options.verify_challenge_resource);
        let mut secret_options = SecretClientOptions {
            client_options: client_options.clone(),
            verify_challenge_resource: verify,
            ..SecretClientOptions::default()
        };
        let mut key_options = KeyClientOptions {
            client_options: client_options.clone(),
            verify_challenge_resource: verify,
            ..KeyClientOptions::default()
        };
        let mut certificate_options = CertificateClientOptions {
            client_options,
            verify_challenge_resource: verify,
            ..CertificateClientOptions::default()
        };
        if let Some(api_version) = &options.api_version {
            secret_options.api_version = api_version.clone();
            key_options.api_version = api_version.clone();
            certificate_options.api_version = api_version.clone();
        }
        let secrets =
            SecretClient::new(url, credential.clone(), Some(secret_options)).map_err(url_error)?;
        let keys = KeyClient::new(url, credential.clone(), Some(key_options)).map_err(url_error)?;
        let certificates = CertificateClient::new(url, credential, Some(certificate_options))
            .map_err(url_error)?;
        Ok(AzureVaultSource {
            vault,
            secrets,
            keys,
            certificates,
        })
    }

    fn err(
        &self,
        op: SourceOp,
        kind: ObjectKind,
        name: Option<&str>,
    ) -> impl Fn(azure_core::Error) -> SourceError + '_ {
        let name = name.map(str::to_string);
        move |e| translate(&e, op, &self.vault, kind, name.as_deref())
    }

    fn invalid(
        &self,
        op: SourceOp,
        kind: ObjectKind,
        name: Option<&str>,
        what: &str,
    ) -> SourceError {
        SourceError::new(
            SourceErrorKind::Permanent,
            op,
            &self.vault,
            kind,
            name,
            format!("unexpected answer from key vault: {what}"),
        )
    }

    /// Name and version out of an object id, checked.
    fn parse_id(
        &self,
        id: Option<&str>,
        op: SourceOp,
        kind: ObjectKind,
        name: Option<&str>,
    ) -> Result<(ObjectName, Option<ObjectVersion>), SourceError> {
        let id = id.ok_or_else(|| self.invalid(op, kind, name, "an object without id"))?;
        split_id(id).ok_or_else(|| self.invalid(op, kind, name, &format!("unparsable id {id}")))
    }
}

/// `https://{vault}/{collection}/{name}[/{version}]` → name and version.
fn split_id(id: &str) -> Option<(ObjectName, Option<ObjectVersion>)> {
    let url = url::Url::parse(id).ok()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let _collection = segments.next()?;
    let name = segments.next()?.parse().ok()?;
    let version = match segments.next() {
        Some(v) => Some(v.parse().ok()?),
        None => None,
    };
    Some((name, version))
}

fn unix(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| t.unix_timestamp())
}

fn tags(tags: Option<HashMap<String, String>>) -> Tags {
    tags.unwrap_or_default().into_iter().collect()
}

/// The attribute fields kvkeep reads, common to the three SDK attribute types.
#[derive(Default)]
struct Attrs {
    enabled: bool,
    created: Option<i64>,
    updated: Option<i64>,
    not_before: Option<i64>,
    expires: Option<i64>,
}

macro_rules! attrs_from {
    ($t:ty) => {
        impl From<Option<$t>> for Attrs {
            fn from(a: Option<$t>) -> Attrs {
                match a {
                    // The service omits `enabled` only when it is the default, true.
                    Some(a) => Attrs {
                        enabled: a.enabled.unwrap_or(true),
                        created: unix(a.created),
                        updated: unix(a.updated),
                        not_before: unix(a.not_before),
                        expires: unix(a.expires),
                    },
                    None => Attrs {
                        enabled: true,
                        ..Attrs::default()
                    },
                }
            }
        }
    };
}
attrs_from!(SecretAttributes);
attrs_from!(KeyAttributes);
attrs_from!(CertificateAttributes);

/// Collects every item of an SDK pager (all pages, empty ones included).
macro_rules! collect_pager {
    ($self:ident, $pager:expr, $op:expr, $kind:expr, $name:expr) => {
        collect_pager!($self, $pager, $op, $kind, $name, usize::MAX)
    };
    // At most `$limit` items: the pager fetches pages lazily, so a small limit costs one page.
    ($self:ident, $pager:expr, $op:expr, $kind:expr, $name:expr, $limit:expr) => {{
        let err = $self.err($op, $kind, $name);
        let mut pager = $pager.map_err(&err)?;
        let mut items = Vec::new();
        while items.len() < $limit {
            match pager.try_next().await.map_err(&err)? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        items
    }};
}

/// Calls the SDK method of `kind`'s client that takes just the object's name (the three
/// clients name the same operation differently) and drops the answer.
macro_rules! per_kind {
    ($self:ident, $kind:expr, $name:expr, $secret:ident, $key:ident, $certificate:ident) => {
        match $kind {
            ObjectKind::Secrets => $self.secrets.$secret($name.as_str(), None).await.map(drop),
            ObjectKind::Keys => $self.keys.$key($name.as_str(), None).await.map(drop),
            ObjectKind::Certificates => $self
                .certificates
                .$certificate($name.as_str(), None)
                .await
                .map(drop),
        }
    };
}

impl AzureVaultSource {
    /// The first `limit` objects of `kind` as the vault lists them: [`VaultSource::list`] that
    /// stops early. `kvkeep doctor` proves listing works with one page (25 objects on Key
    /// Vault) instead of walking a large vault to its end.
    pub async fn list_at_most(
        &self,
        kind: ObjectKind,
        limit: usize,
    ) -> Result<Vec<ObjectSummary>, SourceError> {
        let op = SourceOp::List;
        // (id, attributes, tags, managed, content type), as in get_properties, so the three item
        // types share one conversion below.
        let items: Vec<_> = match kind {
            ObjectKind::Secrets => collect_pager!(
                self,
                self.secrets.list_secret_properties(None),
                op,
                kind,
                None,
                limit
            )
            .into_iter()
            .map(|i| {
                let attrs = Attrs::from(i.attributes);
                (i.id, attrs, i.tags, i.managed, i.content_type)
            })
            .collect(),
            ObjectKind::Keys => collect_pager!(
                self,
                self.keys.list_key_properties(None),
                op,
                kind,
                None,
                limit
            )
            .into_iter()
            .map(|i| (i.kid, Attrs::from(i.attributes), i.tags, i.managed, None))
            .collect(),
            ObjectKind::Certificates => collect_pager!(
                self,
                self.certificates.list_certificate_properties(None),
                op,
                kind,
                None,
                limit
            )
            .into_iter()
            .map(|i| (i.id, Attrs::from(i.attributes), i.tags, None, None))
            .collect(),
        };
        let mut out = Vec::with_capacity(items.len());
        for (id, attrs, tag_map, managed, content_type) in items {
            let (name, version) = self.parse_id(id.as_deref(), op, kind, None)?;
            out.push(ObjectSummary {
                name,
                kind,
                version,
                updated: attrs.updated,
                enabled: attrs.enabled,
                tags: tags(tag_map),
                validity: Validity {
                    not_before: attrs.not_before,
                    expires: attrs.expires,
                },
                managed: managed.unwrap_or(false),
                content_type,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl VaultSource for AzureVaultSource {
    fn vault(&self) -> &VaultName {
        &self.vault
    }

    async fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectSummary>, SourceError> {
        self.list_at_most(kind, usize::MAX).await
    }

    async fn list_versions(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionInfo>, SourceError> {
        let op = SourceOp::ListVersions;
        let n = Some(name.as_str());
        // (id, attributes, tags, content type), so the three item types share one conversion
        // below.
        type Item = (
            Option<String>,
            Attrs,
            Option<HashMap<String, String>>,
            Option<String>,
        );
        let items: Vec<Item> = match kind {
            ObjectKind::Secrets => collect_pager!(
                self,
                self.secrets
                    .list_secret_properties_versions(name.as_str(), None),
                op,
                kind,
                n
            )
            .into_iter()
            .map(|i| (i.id, Attrs::from(i.attributes), i.tags, i.content_type))
            .collect(),
            ObjectKind::Keys => collect_pager!(
                self,
                self.keys.list_key_properties_versions(name.as_str(), None),
                op,
                kind,
                n
            )
            .into_iter()
            .map(|i| (i.kid, Attrs::from(i.attributes), i.tags, None))
            .collect(),
            ObjectKind::Certificates => collect_pager!(
                self,
                self.certificates
                    .list_certificate_properties_versions(name.as_str(), None),
                op,
                kind,
                n
            )
            .into_iter()
            .map(|i| (i.id, Attrs::from(i.attributes), i.tags, None))
            .collect(),
        };
        let mut versions = Vec::with_capacity(items.len());
        for (id, attrs, tag_map, content_type) in items {
            let (_, version) = self.parse_id(id.as_deref(), op, kind, n)?;
            let version = version
                .ok_or_else(|| self.invalid(op, kind, n, "a version item without version"))?;
            versions.push(VersionInfo {
                version,
                created: attrs.created,
                updated: attrs.updated,
                enabled: attrs.enabled,
                tags: tags(tag_map),
                content_type,
            });
        }
        warn_many_versions(&self.vault, kind, name, versions.len());
        Ok(versions)
    }

    async fn backup(&self, kind: ObjectKind, name: &ObjectName) -> Result<BackupBlob, SourceError> {
        let op = SourceOp::Backup;
        let n = Some(name.as_str());
        // The SDK models decode the base64url `value` already.
        let value = match kind {
            ObjectKind::Secrets => self
                .secrets
                .backup_secret(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|b| b.value),
            ObjectKind::Keys => self
                .keys
                .backup_key(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|b| b.value),
            ObjectKind::Certificates => self
                .certificates
                .backup_certificate(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|b| b.value),
        }
        .map_err(self.err(op, kind, n))?;
        match value {
            Some(bytes) if !bytes.is_empty() => Ok(BackupBlob::new(bytes)),
            _ => Err(self.invalid(op, kind, n, "a backup without value")),
        }
    }

    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError> {
        let op = SourceOp::Restore;
        let err = self.err(op, kind, None);
        let bytes = Some(blob.to_vec());
        let id = match kind {
            ObjectKind::Secrets => {
                let body = RestoreSecretParameters {
                    secret_backup: bytes,
                }
                .try_into()
                .map_err(&err)?;
                self.secrets
                    .restore_secret(body, None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?
                    .id
            }
            ObjectKind::Keys => {
                let body = RestoreKeyParameters { key_backup: bytes }
                    .try_into()
                    .map_err(&err)?;
                self.keys
                    .restore_key(body, None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?
                    .key
                    .and_then(|k| k.kid)
            }
            ObjectKind::Certificates => {
                let body = RestoreCertificateParameters {
                    certificate_backup: bytes,
                }
                .try_into()
                .map_err(&err)?;
                self.certificates
                    .restore_certificate(body, None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?
                    .id
            }
        };
        let (name, version) = self.parse_id(id.as_deref(), op, kind, None)?;
        let version = version
            .ok_or_else(|| self.invalid(op, kind, Some(name.as_str()), "an id without version"))?;
        Ok(RestoredObject { name, version })
    }

    async fn list_deleted(&self, kind: ObjectKind) -> Result<Vec<DeletedInfo>, SourceError> {
        let op = SourceOp::ListDeleted;
        // (id, deleted, scheduled purge, managed): the three item types share one conversion.
        let items: Vec<_> = match kind {
            ObjectKind::Secrets => collect_pager!(
                self,
                self.secrets.list_deleted_secret_properties(None),
                op,
                kind,
                None
            )
            .into_iter()
            .map(|d| (d.id, d.deleted_date, d.scheduled_purge_date, d.managed))
            .collect(),
            ObjectKind::Keys => collect_pager!(
                self,
                self.keys.list_deleted_key_properties(None),
                op,
                kind,
                None
            )
            .into_iter()
            .map(|d| (d.kid, d.deleted_date, d.scheduled_purge_date, d.managed))
            .collect(),
            ObjectKind::Certificates => collect_pager!(
                self,
                self.certificates.list_deleted_certificate_properties(None),
                op,
                kind,
                None
            )
            .into_iter()
            .map(|d| (d.id, d.deleted_date, d.scheduled_purge_date, None))
            .collect(),
        };
        let mut out = Vec::with_capacity(items.len());
        for (id, deleted, purge, managed) in items {
            let (name, _) = self.parse_id(id.as_deref(), op, kind, None)?;
            out.push(DeletedInfo {
                name,
                deleted_on: unix(deleted),
                scheduled_purge: unix(purge),
                managed: managed.unwrap_or(false),
            });
        }
        Ok(out)
    }

    async fn get_deleted(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<DeletedInfo>, SourceError> {
        let op = SourceOp::GetDeleted;
        let err = self.err(op, kind, Some(name.as_str()));
        let result = match kind {
            ObjectKind::Secrets => self
                .secrets
                .get_deleted_secret(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|d| (d.deleted_date, d.scheduled_purge_date, d.managed)),
            ObjectKind::Keys => self
                .keys
                .get_deleted_key(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|d| (d.deleted_date, d.scheduled_purge_date, d.managed)),
            ObjectKind::Certificates => self
                .certificates
                .get_deleted_certificate(name.as_str(), None)
                .await
                .and_then(|r| r.into_model())
                .map(|d| (d.deleted_date, d.scheduled_purge_date, None)),
        };
        match result {
            Ok((deleted, purge, managed)) => Ok(Some(DeletedInfo {
                name: name.clone(),
                deleted_on: unix(deleted),
                scheduled_purge: unix(purge),
                managed: managed.unwrap_or(false),
            })),
            Err(e) => {
                let e = err(e);
                if e.kind() == SourceErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn recover(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        per_kind!(
            self,
            kind,
            name,
            recover_deleted_secret,
            recover_deleted_key,
            recover_deleted_certificate
        )
        .map_err(self.err(SourceOp::Recover, kind, Some(name.as_str())))
    }

    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        per_kind!(
            self,
            kind,
            name,
            purge_deleted_secret,
            purge_deleted_key,
            purge_deleted_certificate
        )
        .map_err(self.err(SourceOp::Purge, kind, Some(name.as_str())))
    }

    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        per_kind!(
            self,
            kind,
            name,
            delete_secret,
            delete_key,
            delete_certificate
        )
        .map_err(self.err(SourceOp::Delete, kind, Some(name.as_str())))
    }

    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError> {
        let op = SourceOp::GetProperties;
        let n = Some(name.as_str());
        let err = self.err(op, kind, n);
        let (id, attrs, tag_map, managed, content_type) = match kind {
            ObjectKind::Secrets => {
                let secret = self
                    .secrets
                    .get_secret(name.as_str(), None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?;
                // Destructure so the value is dropped here, unread (see the module docs).
                let azure_security_keyvault_secrets::models::Secret {
                    id,
                    attributes,
                    tags,
                    managed,
                    content_type,
                    value: _,
                    ..
                } = secret;
                (id, Attrs::from(attributes), tags, managed, content_type)
            }
            ObjectKind::Keys => {
                let key = self
                    .keys
                    .get_key(name.as_str(), None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?;
                (
                    key.key.and_then(|k| k.kid),
                    Attrs::from(key.attributes),
                    key.tags,
                    key.managed,
                    None,
                )
            }
            ObjectKind::Certificates => {
                let cert = self
                    .certificates
                    .get_certificate(name.as_str(), None)
                    .await
                    .map_err(&err)?
                    .into_model()
                    .map_err(&err)?;
                (
                    cert.id,
                    Attrs::from(cert.attributes),
                    cert.tags,
                    None,
                    cert.content_type,
                )
            }
        };
        let (listed_name, version) = self.parse_id(id.as_deref(), op, kind, n)?;
        let version = version.ok_or_else(|| self.invalid(op, kind, n, "an id without version"))?;
        Ok(ObjectProperties {
            name: listed_name,
            kind,
            version,
            enabled: attrs.enabled,
            created: attrs.created,
            updated: attrs.updated,
            not_before: attrs.not_before,
            expires: attrs.expires,
            tags: tags(tag_map),
            managed: managed.unwrap_or(false),
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_name_and_version() {
        let (name, version) =
            split_id("https://kv1.vault.azure.net/secrets/db-Password/0123abcd").expect("id");
        assert_eq!(name.as_str(), "db-Password");
        assert_eq!(version.map(|v| v.to_string()), Some("0123abcd".into()));
        let (name, version) = split_id("https://kv1.vault.localhost:8443/keys/k1").expect("id");
        assert_eq!(name.as_str(), "k1");
        assert!(version.is_none());
        assert!(split_id("https://kv1.vault.azure.net/secrets").is_none());
        assert!(split_id("not a url").is_none());
        assert!(split_id("https://kv1.vault.azure.net/secrets/bad_name").is_none());
    }
}
