//! Backup and restore through the daemon's own stack (secrets, keys and certificates, GA crates
//! 1.0.x over HTTPS, challenge verification at its default).
//!
//! What a restore must preserve (spec §8): every version with its version id, created/updated,
//! enabled, tags, content type and value or key material, restored into the vault the request
//! went to (`kv1` again, or `kv2` in the same geography and subscription). Refusals: another
//! geography (400), a name that exists or is soft-deleted (409), a corrupt blob (400 "Malformed
//! backup blob"), a blob of another kind (400), and backups of certificate-managed keys (403).

mod common;

use std::collections::{BTreeMap, HashMap};

use azure_core::time::OffsetDateTime;
use azure_security_keyvault_certificates::models::{
    CertificateClientGetCertificateOptions, ImportCertificateParameters,
    RestoreCertificateParameters,
};
use azure_security_keyvault_certificates::CertificateClient;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, KeyAttributes, KeyClientGetKeyOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyType, RestoreKeyParameters,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_secrets::models::{
    RestoreSecretParameters, SecretAttributes, SecretClientGetSecretOptions, SetSecretParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient};
use common::{
    corrupt, expect_http_error, expect_http_status, self_signed_pem, tags, KV1, KV2, KVFAR,
};
use futures::TryStreamExt;
use serde_json::json;

/// Asserts the service's blob framing (spec §8.1, §16): a length-prefixed type marker, then the
/// opaque envelope.
#[track_caller]
fn assert_framed(blob: &[u8], marker: &str) {
    assert_eq!(usize::from(blob[0]), marker.len(), "length prefix");
    assert_eq!(&blob[1..=marker.len()], marker.as_bytes(), "type marker");
    assert!(
        blob.len() > marker.len() + 32,
        "an envelope follows the marker"
    );
}

const SECRET_MARKER: &str = "AzureKeyVaultSecretBackupV1.microsoft.com";
const KEY_MARKER: &str = "AzureKeyVaultKeyBackupV1.microsoft.com";

/// What a user can observe about one version of a secret.
#[derive(Debug, PartialEq)]
struct SecretVersion {
    created: Option<OffsetDateTime>,
    updated: Option<OffsetDateTime>,
    enabled: Option<bool>,
    tags: Option<HashMap<String, String>>,
    content_type: Option<String>,
    /// `None` for disabled versions (their value cannot be read).
    value: Option<String>,
}

/// Every version of a secret, keyed by version id.
async fn secret_snapshot(client: &SecretClient, name: &str) -> BTreeMap<String, SecretVersion> {
    let mut pager = client.list_secret_properties_versions(name, None).unwrap();
    let mut out = BTreeMap::new();
    while let Some(item) = pager.try_next().await.unwrap() {
        let version = item.resource_id().unwrap().version.expect("versioned id");
        let attrs = item.attributes.clone().expect("attributes");
        let value = if attrs.enabled == Some(false) {
            None
        } else {
            client
                .get_secret(
                    name,
                    Some(SecretClientGetSecretOptions {
                        secret_version: Some(version.clone()),
                        ..Default::default()
                    }),
                )
                .await
                .unwrap()
                .into_model()
                .unwrap()
                .value
        };
        out.insert(
            version,
            SecretVersion {
                created: attrs.created,
                updated: attrs.updated,
                enabled: attrs.enabled,
                tags: item.tags.clone(),
                content_type: item.content_type.clone(),
                value,
            },
        );
    }
    out
}

/// A secret with three versions: different content types and tags, the oldest one disabled.
async fn make_secret(client: &SecretClient, name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (ct, tag)) in [("text/plain", "a"), ("application/json", "b"), ("", "c")]
        .into_iter()
        .enumerate()
    {
        let secret = client
            .set_secret(
                name,
                SetSecretParameters {
                    value: Some(format!("value-{i}-{name}")),
                    content_type: (!ct.is_empty()).then(|| ct.to_string()),
                    tags: Some(tags(&[("generation", tag)])),
                    ..Default::default()
                }
                .try_into()
                .unwrap(),
                None,
            )
            .await
            .unwrap()
            .into_model()
            .unwrap();
        ids.push(secret.id.unwrap());
    }
    let oldest = ids[0]
        .parse::<azure_security_keyvault_secrets::ResourceId>()
        .unwrap();
    client
        .update_secret_properties(
            name,
            azure_security_keyvault_secrets::models::UpdateSecretPropertiesParameters {
                secret_attributes: Some(SecretAttributes {
                    enabled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            Some(
                azure_security_keyvault_secrets::models::SecretClientUpdateSecretPropertiesOptions {
                    secret_version: oldest.version,
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    ids
}

async fn backup_secret(client: &SecretClient, name: &str) -> Vec<u8> {
    client
        .backup_secret(name, None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .value
        .expect("backup blob")
}

async fn restore_secret(
    client: &SecretClient,
    blob: &[u8],
) -> azure_core::Result<azure_security_keyvault_secrets::models::Secret> {
    client
        .restore_secret(
            RestoreSecretParameters {
                secret_backup: Some(blob.to_vec()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await?
        .into_model()
}

#[tokio::test]
async fn secret_backup_restores_all_versions_into_the_same_vault() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let ids = make_secret(&client, "payroll").await;
    let before = secret_snapshot(&client, "payroll").await;
    assert_eq!(before.len(), 3);

    let blob = backup_secret(&client, "payroll").await;
    assert_framed(&blob, SECRET_MARKER);
    client.delete_secret("payroll", None).await.unwrap();
    client.purge_deleted_secret("payroll", None).await.unwrap();

    let restored = restore_secret(&client, &blob).await.expect("restore");
    assert_eq!(
        restored.id.as_ref(),
        ids.last(),
        "the latest version answers"
    );
    assert_eq!(restored.value, None, "restore answers without the value");
    assert_eq!(secret_snapshot(&client, "payroll").await, before);

    let latest = client
        .get_secret("payroll", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(latest.id.as_ref(), ids.last());
    assert_eq!(latest.value.as_deref(), Some("value-2-payroll"));
}

#[tokio::test]
async fn secret_backup_restores_into_another_vault_of_the_same_geo_only() {
    let env = common::start().await;
    let source = env.secrets(KV1);
    make_secret(&source, "shared").await;
    let before = secret_snapshot(&source, "shared").await;
    let blob = backup_secret(&source, "shared").await;

    // kv2: same geography and subscription; ids now carry kv2's authority.
    let target = env.secrets(KV2);
    let restored = restore_secret(&target, &blob)
        .await
        .expect("restore into kv2");
    let id = restored.resource_id().unwrap();
    assert_eq!(id.vault_url, env.url(KV2).trim_end_matches('/'));
    assert_eq!(secret_snapshot(&target, "shared").await, before);
    // The source is untouched.
    assert_eq!(secret_snapshot(&source, "shared").await, before);

    // kvfar: another geography cannot open the blob.
    let far = env.secrets(KVFAR);
    expect_http_status(restore_secret(&far, &blob).await, 400);
    expect_http_error(far.get_secret("shared", None).await, 404, "SecretNotFound");
}

#[tokio::test]
async fn secret_restore_conflicts_with_existing_and_soft_deleted_names() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    make_secret(&client, "taken").await;
    let blob = backup_secret(&client, "taken").await;

    let err = expect_http_error(restore_secret(&client, &blob).await, 409, "Conflict");
    assert!(
        common::error_message(&err).contains("There was a conflict restoring the secret"),
        "{err:?}"
    );

    client.delete_secret("taken", None).await.unwrap();
    expect_http_error(restore_secret(&client, &blob).await, 409, "Conflict");
    // A soft-deleted secret cannot be backed up (spec §8.2).
    expect_http_error(
        client.backup_secret("taken", None).await,
        404,
        "SecretNotFound",
    );
    // The soft-deleted secret is untouched by the refused restore.
    client.get_deleted_secret("taken", None).await.unwrap();
}

#[tokio::test]
async fn corrupt_or_foreign_blobs_are_400() {
    let env = common::start().await;
    let secrets = env.secrets(KV1);
    make_secret(&secrets, "fragile").await;
    let blob = backup_secret(&secrets, "fragile").await;
    secrets.delete_secret("fragile", None).await.unwrap();
    secrets.purge_deleted_secret("fragile", None).await.unwrap();

    let err = restore_secret(&secrets, &corrupt(&blob)).await;
    let err = expect_http_error(err, 400, "Malformed backup blob");
    assert_eq!(common::error_message(&err), "Backup blob is corrupt.");
    expect_http_error(
        restore_secret(&secrets, b"definitely not a backup").await,
        400,
        "Malformed backup blob",
    );
    let truncated = &blob[..blob.len() / 2];
    expect_http_error(
        restore_secret(&secrets, truncated).await,
        400,
        "Malformed backup blob",
    );
    expect_http_error(
        secrets.get_secret("fragile", None).await,
        404,
        "SecretNotFound",
    );

    // A key blob is not a secret blob.
    let keys = env.keys(KV1);
    create_ec(&keys, "some-key").await;
    let key_blob = backup_key(&keys, "some-key").await;
    expect_http_status(restore_secret(&secrets, &key_blob).await, 400);
    let err = restore_key(&keys, &corrupt(&key_blob)).await;
    expect_http_error(err, 400, "Malformed backup blob");
}

async fn create_ec(client: &KeyClient, name: &str) -> String {
    client
        .create_key(
            name,
            CreateKeyParameters {
                kty: Some(KeyType::Ec),
                curve: Some(CurveName::P256),
                tags: Some(tags(&[("name", name)])),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .key
        .unwrap()
        .kid
        .unwrap()
}

async fn backup_key(client: &KeyClient, name: &str) -> Vec<u8> {
    client
        .backup_key(name, None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .value
        .expect("backup blob")
}

async fn restore_key(
    client: &KeyClient,
    blob: &[u8],
) -> azure_core::Result<azure_security_keyvault_keys::models::Key> {
    client
        .restore_key(
            RestoreKeyParameters {
                key_backup: Some(blob.to_vec()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await?
        .into_model()
}

/// What a user can observe about one key version.
#[derive(Debug, PartialEq)]
struct KeyVersion {
    created: Option<OffsetDateTime>,
    updated: Option<OffsetDateTime>,
    enabled: Option<bool>,
    tags: Option<HashMap<String, String>>,
    x: Option<Vec<u8>>,
    y: Option<Vec<u8>>,
    key_ops: Option<Vec<String>>,
}

async fn key_snapshot(client: &KeyClient, name: &str) -> BTreeMap<String, KeyVersion> {
    let mut pager = client.list_key_properties_versions(name, None).unwrap();
    let mut out = BTreeMap::new();
    while let Some(item) = pager.try_next().await.unwrap() {
        let version = azure_security_keyvault_keys::ResourceExt::resource_id(&item)
            .unwrap()
            .version
            .expect("versioned kid");
        let attrs = item.attributes.clone().expect("attributes");
        // A disabled version's key material is not read (spec §4.2 leaves GET on a disabled key
        // unspecified); its attributes and tags still are compared.
        let jwk = if attrs.enabled == Some(false) {
            None
        } else {
            let key = client
                .get_key(
                    name,
                    Some(KeyClientGetKeyOptions {
                        key_version: Some(version.clone()),
                        ..Default::default()
                    }),
                )
                .await
                .unwrap()
                .into_model()
                .unwrap();
            assert_eq!(key.tags, item.tags, "get and list agree on tags");
            key.key
        };
        out.insert(
            version,
            KeyVersion {
                created: attrs.created,
                updated: attrs.updated,
                enabled: attrs.enabled,
                tags: item.tags.clone(),
                x: jwk.as_ref().and_then(|k| k.x.clone()),
                y: jwk.as_ref().and_then(|k| k.y.clone()),
                key_ops: jwk.and_then(|k| k.key_ops),
            },
        );
    }
    out
}

#[tokio::test]
async fn key_backup_restores_all_versions_here_and_in_kv2_but_not_in_another_geo() {
    let env = common::start().await;
    let client = env.keys(KV1);
    create_ec(&client, "master").await;
    let latest_kid = create_ec(&client, "master").await;
    let first_version = key_snapshot(&client, "master")
        .await
        .into_keys()
        .find(|v| !latest_kid.ends_with(v.as_str()))
        .unwrap();
    client
        .update_key_properties(
            "master",
            UpdateKeyPropertiesParameters {
                key_attributes: Some(KeyAttributes {
                    enabled: Some(false),
                    ..Default::default()
                }),
                tags: Some(tags(&[("retired", "yes")])),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            Some(KeyClientUpdateKeyPropertiesOptions {
                key_version: Some(first_version),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let before = key_snapshot(&client, "master").await;
    assert_eq!(before.len(), 2);

    let blob = backup_key(&client, "master").await;
    assert_framed(&blob, KEY_MARKER);
    client.delete_key("master", None).await.unwrap();
    client.purge_deleted_key("master", None).await.unwrap();

    let restored = restore_key(&client, &blob).await.expect("restore");
    assert_eq!(
        restored.key.unwrap().kid.as_deref(),
        Some(latest_kid.as_str())
    );
    assert_eq!(key_snapshot(&client, "master").await, before);

    // Conflicts: the name exists now.
    expect_http_error(restore_key(&client, &blob).await, 409, "Conflict");

    // kv2 (same geo) accepts the blob, kvfar does not.
    let kv2 = env.keys(KV2);
    let restored = restore_key(&kv2, &blob).await.expect("restore into kv2");
    let kid = restored.key.unwrap().kid.unwrap();
    assert!(
        kid.starts_with(&format!("https://{}/keys/master/", env.authority(KV2))),
        "{kid}"
    );
    assert_eq!(key_snapshot(&kv2, "master").await, before);
    let far = env.keys(KVFAR);
    expect_http_status(restore_key(&far, &blob).await, 400);
    expect_http_error(far.get_key("master", None).await, 404, "KeyNotFound");

    // Soft-deleted name in kv2: conflict too.
    kv2.delete_key("master", None).await.unwrap();
    expect_http_error(restore_key(&kv2, &blob).await, 409, "Conflict");
}

/// A PEM import tagged `kind = tls`.
fn pem_import(pem: &str) -> ImportCertificateParameters {
    ImportCertificateParameters {
        tags: Some(tags(&[("kind", "tls")])),
        ..common::pem_import(pem)
    }
}

async fn restore_certificate(
    client: &CertificateClient,
    blob: &[u8],
) -> azure_core::Result<azure_security_keyvault_certificates::models::Certificate> {
    client
        .restore_certificate(
            RestoreCertificateParameters {
                certificate_backup: Some(blob.to_vec()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await?
        .into_model()
}

/// What a user can observe about a certificate version and its managed secret.
#[derive(Debug, PartialEq)]
struct CertVersion {
    cer: Option<Vec<u8>>,
    created: Option<OffsetDateTime>,
    updated: Option<OffsetDateTime>,
    tags: Option<HashMap<String, String>>,
    secret_value: Option<String>,
    secret_managed: Option<bool>,
    key_x: Option<Vec<u8>>,
}

async fn cert_snapshot(
    env: &common::Env,
    vault: &str,
    name: &str,
) -> BTreeMap<String, CertVersion> {
    let certs = env.certificates(vault);
    let secrets = env.secrets(vault);
    let keys = env.keys(vault);
    let mut pager = certs
        .list_certificate_properties_versions(name, None)
        .unwrap();
    let mut out = BTreeMap::new();
    while let Some(item) = pager.try_next().await.unwrap() {
        let version = azure_security_keyvault_certificates::ResourceExt::resource_id(&item)
            .unwrap()
            .version
            .expect("versioned id");
        let cert = certs
            .get_certificate(
                name,
                Some(CertificateClientGetCertificateOptions {
                    certificate_version: Some(version.clone()),
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
            .into_model()
            .unwrap();
        let secret = secrets
            .get_secret(
                name,
                Some(SecretClientGetSecretOptions {
                    secret_version: Some(version.clone()),
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
            .into_model()
            .unwrap();
        let key = keys
            .get_key(
                name,
                Some(KeyClientGetKeyOptions {
                    key_version: Some(version.clone()),
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
            .into_model()
            .unwrap();
        let attrs = cert.attributes.clone().expect("attributes");
        out.insert(
            version,
            CertVersion {
                cer: cert.cer,
                created: attrs.created,
                updated: attrs.updated,
                tags: cert.tags,
                secret_value: secret.value,
                secret_managed: secret.managed,
                key_x: key.key.and_then(|k| k.x),
            },
        );
    }
    out
}

#[tokio::test]
async fn certificate_backup_restores_versions_and_managed_objects() {
    let env = common::start().await;
    let certs = env.certificates(KV1);
    for _ in 0..2 {
        let (pem, _) = self_signed_pem("edge");
        certs
            .import_certificate("edge", pem_import(&pem).try_into().unwrap(), None)
            .await
            .unwrap();
    }
    let before = cert_snapshot(&env, KV1, "edge").await;
    assert_eq!(before.len(), 2);
    assert!(before.values().all(|v| v.secret_managed == Some(true)));

    // The managed key refuses its own backup.
    let keys = env.keys(KV1);
    let err = keys.backup_key("edge", None).await;
    let err = common::expect_http_error_body(err, 403, "Forbidden");
    assert!(
        common::error_message(&err).contains("associated with a certificate"),
        "{err:?}"
    );

    let blob = certs
        .backup_certificate("edge", None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .value
        .expect("blob");
    // Certificate backups carry the key marker on the real service.
    assert_framed(&blob, KEY_MARKER);
    certs.delete_certificate("edge", None).await.unwrap();
    certs.purge_deleted_certificate("edge", None).await.unwrap();
    expect_http_error(keys.get_key("edge", None).await, 404, "KeyNotFound");

    let restored = restore_certificate(&certs, &blob).await.expect("restore");
    assert_eq!(restored.tags, Some(tags(&[("kind", "tls")])));
    assert_eq!(cert_snapshot(&env, KV1, "edge").await, before);
    let key = keys
        .get_key("edge", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(key.managed, Some(true));
    assert_eq!(key.key.unwrap().kid, restored.kid);

    expect_http_error(restore_certificate(&certs, &blob).await, 409, "Conflict");

    let kv2 = env.certificates(KV2);
    let restored = restore_certificate(&kv2, &blob)
        .await
        .expect("restore into kv2");
    assert!(restored.id.unwrap().starts_with(&format!(
        "https://{}/certificates/edge/",
        env.authority(KV2)
    )));
    assert_eq!(cert_snapshot(&env, KV2, "edge").await, before);

    let far = env.certificates(KVFAR);
    expect_http_status(restore_certificate(&far, &blob).await, 400);
    expect_http_error(
        restore_certificate(&certs, &corrupt(&blob)).await,
        400,
        "Malformed backup blob",
    );
}

#[tokio::test]
async fn restore_right_after_purge_conflicts_until_the_purge_lag_has_passed() {
    let env = common::start().await;
    env.patch_vault(KV1, json!({"purgeLagSecs": 30})).await;
    let client = env.secrets(KV1);
    make_secret(&client, "laggy").await;
    let before = secret_snapshot(&client, "laggy").await;
    let blob = backup_secret(&client, "laggy").await;
    client.delete_secret("laggy", None).await.unwrap();
    client.purge_deleted_secret("laggy", None).await.unwrap();

    // What the daemon must retry through: 409 Conflict, not retried by the SDK.
    expect_http_error(restore_secret(&client, &blob).await, 409, "Conflict");

    let (status, body) = env
        .control("POST", "time", Some(json!({"advanceSeconds": 31})))
        .await;
    assert_eq!(status, 200, "{body}");
    restore_secret(&client, &blob)
        .await
        .expect("restore after the lag");
    assert_eq!(secret_snapshot(&client, "laggy").await, before);
}

#[tokio::test]
async fn blobs_restore_into_a_later_emulator_run_with_the_same_backup_key_seed() {
    let first = common::start_with_seed(Some("suite-seed")).await;
    let client = first.secrets(KV1);
    make_secret(&client, "durable").await;
    let before = secret_snapshot(&client, "durable").await;
    let blob = backup_secret(&client, "durable").await;
    first.emulator.shutdown().await;

    let second = common::start_with_seed(Some("suite-seed")).await;
    let client = second.secrets(KV1);
    restore_secret(&client, &blob)
        .await
        .expect("same seed, same geo: the blob opens");
    assert_eq!(secret_snapshot(&client, "durable").await, before);

    let other = common::start_with_seed(Some("another-seed")).await;
    expect_http_error(
        restore_secret(&other.secrets(KV1), &blob).await,
        400,
        "Malformed backup blob",
    );
}
