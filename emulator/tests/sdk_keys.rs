//! Keys through the daemon's own stack: `azure_security_keyvault_keys` 1.0.x over HTTPS with the
//! emulator's CA trusted and the challenge verification at its default (spec §11.2).
//!
//! Covers create (EC and RSA, public JWK only, base64url members), get latest and by version,
//! property updates, paging over keys and versions (including page faults), soft delete →
//! recover → purge, purge protection and 404s.

mod common;

use std::collections::HashSet;

use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, DeletionRecoveryLevel, ImportKeyParameters, JsonWebKey, Key,
    KeyAttributes, KeyClientGetKeyOptions, KeyClientListKeyPropertiesOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyOperation, KeyType, UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, ResourceExt};
use common::{assert_each_once, expect_http_error, inner_code, tags, KV1};
use futures::TryStreamExt;
use serde_json::json;

async fn create_ec(client: &KeyClient, name: &str) -> Key {
    client
        .create_key(
            name,
            CreateKeyParameters {
                kty: Some(KeyType::Ec),
                curve: Some(CurveName::P256),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_model()
        .unwrap()
}

async fn get(client: &KeyClient, name: &str, version: Option<&str>) -> azure_core::Result<Key> {
    client
        .get_key(
            name,
            Some(KeyClientGetKeyOptions {
                key_version: version.map(str::to_string),
                ..Default::default()
            }),
        )
        .await?
        .into_model()
}

fn kid(key: &Key) -> String {
    key.key.as_ref().and_then(|k| k.kid.clone()).expect("kid")
}

fn version_of(key: &Key) -> String {
    key.resource_id().unwrap().version.expect("versioned kid")
}

/// Lists key names page by page.
async fn list_name_pages(client: &KeyClient, maxresults: Option<i32>) -> Vec<Vec<String>> {
    let mut pages = client
        .list_key_properties(Some(KeyClientListKeyPropertiesOptions {
            maxresults,
            ..Default::default()
        }))
        .unwrap()
        .into_pages();
    let mut out = Vec::new();
    while let Some(page) = pages.try_next().await.expect("next page") {
        out.push(
            page.into_model()
                .expect("page model")
                .value
                .iter()
                .map(|item| {
                    let id = item.resource_id().expect("kid");
                    assert_eq!(id.version, None, "/keys lists unversioned kids");
                    id.name
                })
                .collect(),
        );
    }
    out
}

#[tokio::test]
async fn create_ec_and_rsa_keys_return_public_jwks() {
    let env = common::start().await;
    let client = env.keys(KV1);

    let ec = client
        .create_key(
            "signing",
            CreateKeyParameters {
                kty: Some(KeyType::Ec),
                curve: Some(CurveName::P256),
                key_ops: Some(vec![KeyOperation::Sign, KeyOperation::Verify]),
                tags: Some(tags(&[("purpose", "jws")])),
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
    let jwk = ec.key.clone().expect("jwk");
    assert_eq!(jwk.kty, Some(KeyType::Ec));
    assert_eq!(jwk.crv, Some(CurveName::P256));
    assert_eq!(jwk.x.as_ref().map(Vec::len), Some(32));
    assert_eq!(jwk.y.as_ref().map(Vec::len), Some(32));
    assert_eq!(jwk.d, None, "private members never leave the vault");
    assert_eq!(
        jwk.key_ops,
        Some(vec!["sign".to_string(), "verify".to_string()])
    );
    assert_eq!(ec.tags, Some(tags(&[("purpose", "jws")])));
    let id = ec.resource_id().unwrap();
    assert_eq!(id.vault_url, env.url(KV1).trim_end_matches('/'));
    assert_eq!(id.name, "signing");
    assert_eq!(id.version.as_ref().map(String::len), Some(32));
    let attrs = ec.attributes.clone().expect("attributes");
    assert_eq!(attrs.enabled, Some(true));
    assert!(attrs.created.is_some());
    assert_eq!(attrs.created, attrs.updated);
    assert_eq!(
        attrs.recovery_level,
        Some(DeletionRecoveryLevel::RecoverablePurgeable)
    );

    let rsa = client
        .create_key(
            "wrapping",
            CreateKeyParameters {
                kty: Some(KeyType::Rsa),
                key_size: Some(2048),
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
    let jwk = rsa.key.expect("jwk");
    assert_eq!(jwk.kty, Some(KeyType::Rsa));
    assert_eq!(jwk.n.as_ref().map(Vec::len), Some(256), "2048-bit modulus");
    assert_eq!(jwk.e.as_deref(), Some(&[1u8, 0, 1][..]));
    assert_eq!(jwk.d, None);
    assert_eq!(jwk.p, None);
}

#[tokio::test]
async fn get_latest_and_specific_versions() {
    let env = common::start().await;
    let client = env.keys(KV1);
    let first = create_ec(&client, "rotated").await;
    let second = create_ec(&client, "rotated").await;
    assert_ne!(kid(&first), kid(&second));

    env.clear_log().await;
    let latest = get(&client, "rotated", None).await.unwrap();
    assert_eq!(kid(&latest), kid(&second));
    assert_eq!(latest.key.unwrap().x, second.key.as_ref().unwrap().x);
    let gets = env.requests_of(KV1, "keys.get").await;
    assert_eq!(gets[0]["path"], "/keys/rotated/", "latest = trailing slash");

    let old = get(&client, "rotated", Some(&version_of(&first)))
        .await
        .unwrap();
    assert_eq!(kid(&old), kid(&first));
    assert_eq!(old.key.unwrap().x, first.key.as_ref().unwrap().x);

    let mut pages = client
        .list_key_properties_versions("rotated", None)
        .unwrap()
        .into_pages();
    let mut kids = HashSet::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        for item in page.into_model().unwrap().value {
            assert!(item.resource_id().unwrap().version.is_some());
            assert!(kids.insert(item.kid.unwrap()));
        }
    }
    assert_eq!(kids, HashSet::from([kid(&first), kid(&second)]));
}

#[tokio::test]
async fn update_properties_changes_tags_ops_and_enabled() {
    let env = common::start().await;
    let client = env.keys(KV1);
    let first = create_ec(&client, "tagged").await;
    let second = create_ec(&client, "tagged").await;

    let updated = client
        .update_key_properties(
            "tagged",
            UpdateKeyPropertiesParameters {
                tags: Some(tags(&[("owner", "team-b")])),
                key_ops: Some(vec![KeyOperation::Verify]),
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
    assert_eq!(kid(&updated), kid(&second));
    assert_eq!(updated.tags, Some(tags(&[("owner", "team-b")])));
    assert_eq!(
        updated.key.as_ref().unwrap().key_ops,
        Some(vec!["verify".to_string()])
    );
    let latest = get(&client, "tagged", None).await.unwrap();
    assert_eq!(latest.tags, updated.tags);

    let disabled = client
        .update_key_properties(
            "tagged",
            UpdateKeyPropertiesParameters {
                key_attributes: Some(KeyAttributes {
                    enabled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            Some(KeyClientUpdateKeyPropertiesOptions {
                key_version: Some(version_of(&first)),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(kid(&disabled), kid(&first));
    assert_eq!(disabled.attributes.unwrap().enabled, Some(false));
    assert_eq!(disabled.tags, None, "the other version keeps its own tags");
}

#[tokio::test]
async fn listing_61_keys_and_page_faults_yield_every_name_once() {
    let env = common::start().await;
    let client = env.keys(KV1);
    let mut names = Vec::new();
    for i in 0..61 {
        let name = format!("key-{i:03}");
        create_ec(&client, &name).await;
        names.push(name);
    }

    let pages = list_name_pages(&client, None).await;
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 25));
    assert_each_once(&pages, &names);

    let pages = list_name_pages(&client, Some(20)).await;
    assert!(pages.len() >= 4, "{pages:?}");
    assert_each_once(&pages, &names);

    env.add_fault(json!({"vault": KV1, "op": "keys.list", "kind": "emptyPage", "count": 1}))
        .await;
    env.add_fault(json!({
        "vault": KV1, "op": "keys.list", "kind": "shortPage", "count": 2, "pageSize": 2
    }))
    .await;
    let pages = list_name_pages(&client, None).await;
    assert!(pages.iter().any(Vec::is_empty), "{pages:?}");
    assert!(pages.iter().any(|p| p.len() == 2), "{pages:?}");
    assert_each_once(&pages, &names);
}

#[tokio::test]
async fn delete_recover_delete_purge_lifecycle() {
    let env = common::start().await;
    let client = env.keys(KV1);
    let created = create_ec(&client, "doomed").await;

    let deleted = client
        .delete_key("doomed", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        deleted.recovery_id.as_deref(),
        Some(format!("https://{}/deletedkeys/doomed", env.authority(KV1)).as_str())
    );
    assert!(deleted.deleted_date.is_some() && deleted.scheduled_purge_date.is_some());
    assert_eq!(
        deleted.key.as_ref().unwrap().kid,
        created.key.as_ref().unwrap().kid
    );

    expect_http_error(get(&client, "doomed", None).await, 404, "KeyNotFound");
    client.get_deleted_key("doomed", None).await.unwrap();
    let mut pager = client.list_deleted_key_properties(None).unwrap();
    let item = pager.try_next().await.unwrap().expect("one deleted key");
    assert_eq!(item.recovery_id, deleted.recovery_id);
    assert!(pager.try_next().await.unwrap().is_none());

    let err = client
        .create_key(
            "doomed",
            CreateKeyParameters {
                kty: Some(KeyType::Ec),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await;
    let err = expect_http_error(err, 409, "Conflict");
    assert_eq!(
        inner_code(&err).as_deref(),
        Some("ObjectIsDeletedButRecoverable")
    );

    let recovered = client
        .recover_deleted_key("doomed", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(kid(&recovered), kid(&created));
    assert_eq!(
        get(&client, "doomed", None).await.unwrap().key.unwrap().x,
        created.key.as_ref().unwrap().x
    );

    client.delete_key("doomed", None).await.unwrap();
    client
        .purge_deleted_key("doomed", None)
        .await
        .expect("purge answers 204");
    expect_http_error(
        client.get_deleted_key("doomed", None).await,
        404,
        "KeyNotFound",
    );
}

#[tokio::test]
async fn purge_protected_vault_refuses_key_purge() {
    let env = common::start().await;
    env.patch_vault(KV1, json!({"purgeProtection": true})).await;
    let client = env.keys(KV1);
    create_ec(&client, "locked").await;
    client.delete_key("locked", None).await.unwrap();
    common::expect_http_error_body(
        client.purge_deleted_key("locked", None).await,
        403,
        "Forbidden",
    );
    client.get_deleted_key("locked", None).await.unwrap();
}

#[tokio::test]
async fn missing_keys_are_404_key_not_found() {
    let env = common::start().await;
    let client = env.keys(KV1);
    expect_http_error(get(&client, "nope", None).await, 404, "KeyNotFound");
    expect_http_error(client.backup_key("nope", None).await, 404, "KeyNotFound");
    expect_http_error(client.delete_key("nope", None).await, 404, "KeyNotFound");
    expect_http_error(
        client.get_deleted_key("nope", None).await,
        404,
        "KeyNotFound",
    );
}

#[tokio::test]
async fn imported_ec_key_keeps_its_public_part_and_hides_the_private_one() {
    let env = common::start().await;
    let client = env.keys(KV1);
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());

    let imported = client
        .import_key(
            "byok",
            ImportKeyParameters {
                key: Some(JsonWebKey {
                    kty: Some(KeyType::Ec),
                    crv: Some(CurveName::P256),
                    x: Some(x.clone()),
                    y: Some(y.clone()),
                    d: Some(secret.to_bytes().to_vec()),
                    key_ops: Some(vec!["sign".into(), "verify".into()]),
                    ..Default::default()
                }),
                tags: Some(tags(&[("origin", "import")])),
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
    let jwk = imported.key.clone().expect("jwk");
    assert_eq!(jwk.x.as_deref(), Some(x.as_slice()));
    assert_eq!(jwk.y.as_deref(), Some(y.as_slice()));
    assert_eq!(jwk.d, None, "the private scalar is never returned");
    assert_eq!(imported.tags, Some(tags(&[("origin", "import")])));

    let got = get(&client, "byok", None).await.unwrap();
    assert_eq!(kid(&got), kid(&imported));
    assert_eq!(got.key.unwrap().x.as_deref(), Some(x.as_slice()));

    // A public key that does not match the private scalar is refused.
    let other = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let result = client
        .import_key(
            "mismatch",
            ImportKeyParameters {
                key: Some(JsonWebKey {
                    kty: Some(KeyType::Ec),
                    crv: Some(CurveName::P256),
                    x: Some(x),
                    y: Some(y),
                    d: Some(other.to_bytes().to_vec()),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await;
    expect_http_error(result, 400, "BadParameter");
}
