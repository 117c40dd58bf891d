//! Certificates through the daemon's own stack: `azure_security_keyvault_certificates` 1.0.x over
//! HTTPS with the emulator's CA trusted and the challenge verification at its default (§11.2).
//!
//! Covers import of a PEM bundle and of a password-protected PFX (both made here with rcgen and
//! p12-keystore), the managed key and secret that appear with `managed = true` and refuse their own
//! backups, get latest and by version, property updates, paging, soft delete → recover → purge
//! (including the managed key and secret) and 404s.

mod common;

use std::collections::HashSet;

use azure_core::base64;
use azure_core::http::poller::PollerOptions;
use azure_core::time::Duration;
use azure_security_keyvault_certificates::models::{
    Certificate, CertificateAttributes, CertificateClientCreateCertificateOptions,
    CertificateClientGetCertificateOptions, CertificateClientListCertificatePropertiesOptions,
    CertificatePolicy, CreateCertificateParameters, ImportCertificateParameters, IssuerParameters,
    SecretProperties, UpdateCertificatePropertiesParameters, X509CertificateProperties,
};
use azure_security_keyvault_certificates::{CertificateClient, ResourceExt};
use azure_security_keyvault_keys::models::Key;
use azure_security_keyvault_secrets::models::{
    ContentType as SecretContentType, Secret, SecretClientGetSecretOptions,
    SecretClientListSecretPropertiesOptions,
};
use common::{expect_http_error, pem_import, self_signed_pem, tags, Env, KV1, PEM};
use futures::TryStreamExt;
use sha1::{Digest, Sha1};

const PKCS12: &str = "application/x-pkcs12";

async fn import_pem(client: &CertificateClient, name: &str) -> (Certificate, Vec<u8>) {
    let (pem, der) = self_signed_pem(name);
    let cert = client
        .import_certificate(name, pem_import(&pem).try_into().unwrap(), None)
        .await
        .unwrap_or_else(|e| panic!("import {name}: {e:?}"))
        .into_model()
        .unwrap();
    (cert, der)
}

async fn get(
    client: &CertificateClient,
    name: &str,
    version: Option<&str>,
) -> azure_core::Result<Certificate> {
    client
        .get_certificate(
            name,
            Some(CertificateClientGetCertificateOptions {
                certificate_version: version.map(str::to_string),
                ..Default::default()
            }),
        )
        .await?
        .into_model()
}

fn version_of(cert: &Certificate) -> String {
    cert.resource_id().unwrap().version.expect("versioned id")
}

/// The latest version of the secret that backs certificate `name` in kv1.
async fn managed_secret(env: &Env, name: &str) -> Secret {
    env.secrets(KV1)
        .get_secret(name, None)
        .await
        .unwrap_or_else(|e| panic!("get the managed secret {name}: {e:?}"))
        .into_model()
        .unwrap()
}

/// The latest version of the key that backs certificate `name` in kv1.
async fn managed_key(env: &Env, name: &str) -> Key {
    env.keys(KV1)
        .get_key(name, None)
        .await
        .unwrap_or_else(|e| panic!("get the managed key {name}: {e:?}"))
        .into_model()
        .unwrap()
}

/// A password-protected PKCS#12 file holding a fresh self-signed certificate and its key.
fn self_signed_pfx(common_name: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec![format!("{common_name}.example.test")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().to_vec();
    let chain = p12_keystore::PrivateKeyChain::new(
        key.serialize_der(),
        [1u8, 2, 3, 4],
        [p12_keystore::Certificate::from_der(&der).unwrap()],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        common_name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    (store.writer(password).write().unwrap(), der)
}

#[tokio::test]
async fn pem_import_creates_managed_key_and_secret() {
    let env = common::start().await;
    let certs = env.certificates(KV1);
    let (cert, der) = import_pem(&certs, "web-tls").await;

    let authority = env.authority(KV1);
    let version = version_of(&cert);
    assert_eq!(
        cert.id.as_deref(),
        Some(format!("https://{authority}/certificates/web-tls/{version}").as_str())
    );
    assert_eq!(
        cert.kid.as_deref(),
        Some(format!("https://{authority}/keys/web-tls/{version}").as_str())
    );
    assert_eq!(
        cert.sid.as_deref(),
        Some(format!("https://{authority}/secrets/web-tls/{version}").as_str())
    );
    assert_eq!(cert.cer.as_deref(), Some(der.as_slice()), "cer is the DER");
    assert_eq!(
        cert.x509_thumbprint.as_deref(),
        Some(Sha1::digest(&der).as_slice()),
        "x5t is the SHA-1 thumbprint"
    );
    let attrs = cert.attributes.clone().expect("attributes");
    assert_eq!(attrs.enabled, Some(true));
    assert!(attrs.created.is_some() && attrs.not_before.is_some() && attrs.expires.is_some());

    // The managed secret holds the PEM bundle and points at the key.
    let secret = managed_secret(&env, "web-tls").await;
    assert_eq!(secret.managed, Some(true));
    assert_eq!(secret.id, cert.sid);
    assert_eq!(secret.kid, cert.kid);
    assert_eq!(secret.content_type.as_deref(), Some(PEM));
    let value = secret.value.expect("value");
    assert!(value.contains("-----BEGIN CERTIFICATE-----"), "{value}");
    assert!(value.contains("PRIVATE KEY-----"), "{value}");

    // The managed key is the certificate's key.
    let key = managed_key(&env, "web-tls").await;
    assert_eq!(key.managed, Some(true));
    assert_eq!(key.key.as_ref().unwrap().kid, cert.kid);

    // Both are listed as managed.
    let (secrets, keys) = (env.secrets(KV1), env.keys(KV1));
    let mut pager = secrets
        .list_secret_properties(Some(SecretClientListSecretPropertiesOptions::default()))
        .unwrap();
    let item = pager.try_next().await.unwrap().expect("the managed secret");
    assert_eq!(item.managed, Some(true));
    assert_eq!(item.content_type.as_deref(), Some(PEM));
    let mut pager = keys.list_key_properties(None).unwrap();
    let item = pager.try_next().await.unwrap().expect("the managed key");
    assert_eq!(item.managed, Some(true));

    // Backing up the managed key or secret is refused: back up the certificate instead.
    common::expect_http_error_body(keys.backup_key("web-tls", None).await, 403, "Forbidden");
    common::expect_http_error_body(
        secrets.backup_secret("web-tls", None).await,
        403,
        "Forbidden",
    );

    // The policy remembers the secret content type.
    let policy = certs
        .get_certificate_policy("web-tls", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        policy
            .secret_properties
            .and_then(|p| p.content_type)
            .as_deref(),
        Some(PEM)
    );
}

#[tokio::test]
async fn pfx_import_with_password_creates_managed_pkcs12_secret() {
    let env = common::start().await;
    let certs = env.certificates(KV1);
    let (pfx, der) = self_signed_pfx("pfx-cert", "s3cret");

    let cert = certs
        .import_certificate(
            "pfx-cert",
            ImportCertificateParameters {
                base64_encoded_certificate: Some(base64::encode(&pfx)),
                password: Some("s3cret".into()),
                certificate_policy: Some(CertificatePolicy {
                    secret_properties: Some(SecretProperties {
                        content_type: Some(PKCS12.into()),
                    }),
                    ..Default::default()
                }),
                tags: Some(tags(&[("source", "pfx")])),
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
    assert_eq!(cert.cer.as_deref(), Some(der.as_slice()));
    assert_eq!(cert.tags, Some(tags(&[("source", "pfx")])));

    let secret = managed_secret(&env, "pfx-cert").await;
    assert_eq!(secret.managed, Some(true));
    assert_eq!(secret.content_type.as_deref(), Some(PKCS12));
    // The secret is the PFX again (base64, no password), holding the same certificate.
    let bytes = base64::decode(secret.value.expect("value")).expect("base64 PFX");
    let store = p12_keystore::KeyStore::from_pkcs12(&bytes, "").expect("PFX without password");
    let (_, chain) = store.private_key_chain().expect("key and chain");
    assert_eq!(chain.chain()[0].as_der(), der.as_slice());

    let key = managed_key(&env, "pfx-cert").await;
    assert_eq!(key.managed, Some(true));
    assert_eq!(key.key.unwrap().kid, cert.kid);
}

#[tokio::test]
async fn self_signed_create_is_polled_to_the_certificate() {
    let env = common::start().await;
    let certs = env.certificates(KV1);
    let policy = CertificatePolicy {
        x509_certificate_properties: Some(X509CertificateProperties {
            subject: Some("CN=created.example.test".into()),
            ..Default::default()
        }),
        issuer_parameters: Some(IssuerParameters {
            name: Some("Self".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cert = certs
        .begin_create_certificate(
            "created",
            CreateCertificateParameters {
                certificate_policy: Some(policy),
                tags: Some(tags(&[("how", "create")])),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            // The 202 says "inProgress" without Retry-After; poll at the SDK's minimum, 1 s,
            // instead of its 30 s default.
            Some(CertificateClientCreateCertificateOptions {
                method_options: PollerOptions {
                    frequency: Duration::seconds(1),
                    ..Default::default()
                },
            }),
        )
        .unwrap()
        .await
        .expect("the poller reaches the certificate")
        .into_model()
        .unwrap();
    let version = version_of(&cert);
    assert_eq!(
        cert.id.as_deref(),
        Some(
            format!(
                "https://{}/certificates/created/{version}",
                env.authority(KV1)
            )
            .as_str()
        )
    );
    assert_eq!(cert.tags, Some(tags(&[("how", "create")])));
    let der = cert.cer.clone().expect("cer");
    assert_eq!(
        cert.x509_thumbprint.as_deref(),
        Some(Sha1::digest(&der).as_slice())
    );

    // The operation's POST and pending polls, then the certificate itself.
    let ops: Vec<String> = env
        .request_log(KV1)
        .await
        .iter()
        .filter(|r| r["status"].as_u64() != Some(401))
        .filter_map(|r| r["op"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ops.first().map(String::as_str), Some("certificates.create"));
    assert_eq!(ops.last().map(String::as_str), Some("certificates.get"));

    let secret = managed_secret(&env, "created").await;
    assert_eq!(secret.managed, Some(true));
    assert_eq!(secret.id, cert.sid);
    let key = managed_key(&env, "created").await;
    assert_eq!(key.managed, Some(true));
    assert_eq!(key.key.unwrap().kid, cert.kid);
}

#[tokio::test]
async fn out_content_type_converts_a_pkcs12_secret_to_pem() {
    let env = common::start().await;
    let certs = env.certificates(KV1);
    let (pfx, _) = self_signed_pfx("pfx-cert", "s3cret");
    certs
        .import_certificate(
            "pfx-cert",
            ImportCertificateParameters {
                base64_encoded_certificate: Some(base64::encode(&pfx)),
                password: Some("s3cret".into()),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .unwrap();

    // Asked for PEM, the service converts the PKCS#12 secret (spec §4.1 S3, `outContentType`).
    let as_pem = env
        .secrets(KV1)
        .get_secret(
            "pfx-cert",
            Some(SecretClientGetSecretOptions {
                out_content_type: Some(SecretContentType::Pem),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(as_pem.content_type.as_deref(), Some(PEM));
    let pem_text = as_pem.value.expect("value");
    assert!(
        pem_text.contains("-----BEGIN CERTIFICATE-----") && pem_text.contains("PRIVATE KEY-----"),
        "outContentType=application/x-pem-file answers PEM: {pem_text:.80}"
    );
}

#[tokio::test]
async fn get_latest_specific_version_and_update_properties() {
    let env = common::start().await;
    let client = env.certificates(KV1);
    let (first, first_der) = import_pem(&client, "rolling").await;
    let (second, second_der) = import_pem(&client, "rolling").await;
    assert_ne!(first.id, second.id);

    env.clear_log().await;
    let latest = get(&client, "rolling", None).await.unwrap();
    assert_eq!(latest.id, second.id);
    assert_eq!(latest.cer.as_deref(), Some(second_der.as_slice()));
    let gets = env.requests_of(KV1, "certificates.get").await;
    assert_eq!(gets[0]["path"], "/certificates/rolling/");

    let old = get(&client, "rolling", Some(&version_of(&first)))
        .await
        .unwrap();
    assert_eq!(old.id, first.id);
    assert_eq!(old.cer.as_deref(), Some(first_der.as_slice()));

    // The managed secret follows the certificate's versions.
    let old_secret = env
        .secrets(KV1)
        .get_secret(
            "rolling",
            Some(SecretClientGetSecretOptions {
                secret_version: Some(version_of(&first)),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(old_secret.id, first.sid);

    let mut pages = client
        .list_certificate_properties_versions("rolling", None)
        .unwrap()
        .into_pages();
    let mut ids = HashSet::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        for item in page.into_model().unwrap().value {
            assert!(ids.insert(item.id.unwrap()));
        }
    }
    assert_eq!(
        ids,
        HashSet::from([first.id.unwrap(), second.id.clone().unwrap()])
    );

    let updated = client
        .update_certificate_properties(
            "rolling",
            UpdateCertificatePropertiesParameters {
                tags: Some(tags(&[("team", "edge")])),
                certificate_attributes: Some(CertificateAttributes {
                    enabled: Some(false),
                    ..Default::default()
                }),
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
    assert_eq!(updated.id, second.id);
    assert_eq!(updated.tags, Some(tags(&[("team", "edge")])));
    assert_eq!(updated.attributes.unwrap().enabled, Some(false));
    let latest = get(&client, "rolling", None).await.unwrap();
    assert_eq!(latest.tags, Some(tags(&[("team", "edge")])));
    assert_eq!(latest.attributes.unwrap().enabled, Some(false));
}

#[tokio::test]
async fn listing_61_certificates_yields_every_name_once_over_three_pages() {
    let env = common::start().await;
    let client = env.certificates(KV1);
    let mut names = Vec::new();
    for i in 0..61 {
        let name = format!("cert-{i:03}");
        import_pem(&client, &name).await;
        names.push(name);
    }

    let mut pages = client
        .list_certificate_properties(Some(CertificateClientListCertificatePropertiesOptions {
            ..Default::default()
        }))
        .unwrap()
        .into_pages();
    let mut page_count = 0;
    let mut listed = Vec::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        page_count += 1;
        for item in page.into_model().unwrap().value {
            let id = item.resource_id().unwrap();
            assert_eq!(id.version, None);
            assert_eq!(item.x509_thumbprint.as_ref().map(Vec::len), Some(20));
            listed.push(id.name);
        }
    }
    assert!(page_count >= 3);
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "no name listed twice");
    assert_eq!(unique, names.iter().collect());
}

#[tokio::test]
async fn delete_recover_delete_purge_lifecycle_carries_the_managed_objects() {
    let env = common::start().await;
    let client = env.certificates(KV1);
    let secrets = env.secrets(KV1);
    let keys = env.keys(KV1);
    let (cert, _) = import_pem(&client, "cycle").await;

    let deleted = client
        .delete_certificate("cycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        deleted.recovery_id.as_deref(),
        Some(format!("https://{}/deletedcertificates/cycle", env.authority(KV1)).as_str())
    );
    assert!(deleted.deleted_date.is_some() && deleted.scheduled_purge_date.is_some());
    assert_eq!(deleted.id, cert.id);

    expect_http_error(
        get(&client, "cycle", None).await,
        404,
        "CertificateNotFound",
    );
    expect_http_error(
        secrets.get_secret("cycle", None).await,
        404,
        "SecretNotFound",
    );
    expect_http_error(keys.get_key("cycle", None).await, 404, "KeyNotFound");
    client.get_deleted_certificate("cycle", None).await.unwrap();
    let mut pager = client.list_deleted_certificate_properties(None).unwrap();
    let item = pager.try_next().await.unwrap().expect("one deleted cert");
    assert_eq!(item.recovery_id, deleted.recovery_id);

    let recovered = client
        .recover_deleted_certificate("cycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(recovered.id, cert.id);
    let secret = secrets
        .get_secret("cycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(secret.id, cert.sid);
    assert_eq!(secret.managed, Some(true));
    keys.get_key("cycle", None).await.unwrap();

    client.delete_certificate("cycle", None).await.unwrap();
    client
        .purge_deleted_certificate("cycle", None)
        .await
        .expect("purge answers 204");
    expect_http_error(
        client.get_deleted_certificate("cycle", None).await,
        404,
        "CertificateNotFound",
    );
    expect_http_error(
        secrets.get_secret("cycle", None).await,
        404,
        "SecretNotFound",
    );
}

#[tokio::test]
async fn missing_certificates_are_404_certificate_not_found() {
    let env = common::start().await;
    let client = env.certificates(KV1);
    expect_http_error(
        get(&client, "absent", None).await,
        404,
        "CertificateNotFound",
    );
    expect_http_error(
        client.get_certificate_policy("absent", None).await,
        404,
        "CertificateNotFound",
    );
    expect_http_error(
        client.backup_certificate("absent", None).await,
        404,
        "CertificateNotFound",
    );
    expect_http_error(
        client.get_deleted_certificate("absent", None).await,
        404,
        "CertificateNotFound",
    );
}
