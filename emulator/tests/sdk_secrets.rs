//! Secrets through the daemon's own stack: `azure_security_keyvault_secrets` 1.0.x over HTTPS with
//! the emulator's CA trusted and the challenge verification at its default (spec §11.2).
//!
//! Covers the auth challenge as the SDK performs it, set/get (latest via the trailing-slash path
//! and by version), property updates, disabled versions, paging (including page faults),
//! soft delete → recover → purge, purge protection, 404s, and the SDK's retry policy against
//! throttling, 503 and connection resets injected through the control plane.

mod common;

use std::collections::HashSet;

use azure_core::http::RequestContent;
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_secrets::models::{
    DeletionRecoveryLevel, Secret, SecretAttributes, SecretClientGetSecretOptions,
    SecretClientListSecretPropertiesOptions, SecretClientListSecretPropertiesVersionsOptions,
    SecretClientUpdateSecretPropertiesOptions, SetSecretParameters,
    UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use common::{assert_each_once, expect_http_error, inner_code, tags, Env, KV1};
use futures::TryStreamExt;
use serde_json::{json, Value};

/// Sets a secret through the SDK and returns the new version.
async fn set(client: &SecretClient, name: &str, value: &str) -> Secret {
    client
        .set_secret(
            name,
            SetSecretParameters {
                value: Some(value.into()),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("set {name}: {e:?}"))
        .into_model()
        .unwrap()
}

/// Gets a secret (latest when `version` is `None`).
async fn get(
    client: &SecretClient,
    name: &str,
    version: Option<&str>,
) -> azure_core::Result<Secret> {
    client
        .get_secret(
            name,
            Some(SecretClientGetSecretOptions {
                secret_version: version.map(str::to_string),
                ..Default::default()
            }),
        )
        .await?
        .into_model()
}

fn version_of(secret: &Secret) -> String {
    secret.resource_id().unwrap().version.expect("versioned id")
}

/// Lists the secret names page by page.
async fn list_name_pages(client: &SecretClient, maxresults: Option<i32>) -> Vec<Vec<String>> {
    let mut pages = client
        .list_secret_properties(Some(SecretClientListSecretPropertiesOptions {
            maxresults,
            ..Default::default()
        }))
        .unwrap()
        .into_pages();
    let mut out = Vec::new();
    while let Some(page) = pages.try_next().await.expect("next page") {
        let page = page.into_model().expect("page model");
        out.push(
            page.value
                .iter()
                .map(|item| {
                    let id = item.resource_id().expect("item id");
                    assert_eq!(id.version, None, "/secrets lists unversioned ids");
                    id.name
                })
                .collect(),
        );
    }
    out
}

async fn seed_secrets(env: &Env, prefix: &str, count: usize) -> Vec<String> {
    let client = env.secrets(KV1);
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}{i:03}");
        set(&client, &name, &format!("value-{i}")).await;
        names.push(name);
    }
    names
}

#[tokio::test]
async fn first_request_is_an_unauthenticated_probe_then_the_token_is_sent() {
    let env = common::start().await;
    let client = env.secrets(KV1);

    let secret = set(&client, "probe", "the-value").await;
    assert_eq!(secret.value.as_deref(), Some("the-value"));

    let log = env.request_log(KV1).await;
    assert_eq!(
        log.len(),
        2,
        "one challenge round trip, then the request: {log:#?}"
    );
    let (probe, real) = (&log[0], &log[1]);
    assert_eq!(probe["method"], "PUT");
    assert_eq!(probe["hasAuthorization"], false, "probe carries no token");
    assert_eq!(probe["bodyLength"], 0, "probe carries no body");
    assert_eq!(probe["status"], 401);
    assert_eq!(real["method"], "PUT");
    assert_eq!(real["hasAuthorization"], true);
    assert!(
        real["bodyLength"].as_u64().unwrap_or(0) > 0,
        "the body is restored after the challenge"
    );
    assert_eq!(real["status"], 200);

    // The scope comes from the challenge's resource, which the SDK verified against the host.
    assert_eq!(
        env.credential.scopes(),
        vec![format!("https://vault.localhost:{}/.default", env.port())]
    );

    // Later requests carry the cached token up front: no second challenge.
    get(&client, "probe", None).await.unwrap();
    let log = env.request_log(KV1).await;
    assert_eq!(log.len(), 3, "{log:#?}");
    assert_eq!(log[2]["hasAuthorization"], true);
    assert_eq!(log[2]["status"], 200);

    // The log names the caller by a fingerprint of its token: the same for one client, absent
    // without a token, and never the token.
    assert_eq!(log[0]["caller"], serde_json::Value::Null);
    let caller = log[1]["caller"].as_str().unwrap_or_default();
    assert!(
        caller.len() == 12 && caller.bytes().all(|b| b.is_ascii_hexdigit()),
        "{caller:?}"
    );
    assert_eq!(log[2]["caller"], log[1]["caller"]);
    assert!(
        !format!("{log:?}").contains("fake-token"),
        "no token in the log"
    );
}

#[tokio::test]
async fn set_then_get_latest_and_a_specific_version() {
    let env = common::start().await;
    let client = env.secrets(KV1);

    let first = client
        .set_secret(
            "db-password",
            SetSecretParameters {
                value: Some("one".into()),
                content_type: Some("text/plain".into()),
                tags: Some(tags(&[("env", "test")])),
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
    let second = set(&client, "db-password", "two").await;

    let v1 = version_of(&first);
    let v2 = version_of(&second);
    assert_ne!(v1, v2);
    for v in [&v1, &v2] {
        assert_eq!(v.len(), 32, "versions are 32 hex chars: {v}");
        assert!(v
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
    let id = first.resource_id().unwrap();
    assert_eq!(id.vault_url, env.url(KV1).trim_end_matches('/'));
    assert_eq!(id.name, "db-password");

    let attrs = first.attributes.clone().expect("attributes");
    assert_eq!(attrs.enabled, Some(true));
    assert!(attrs.created.is_some() && attrs.updated.is_some());
    assert_eq!(attrs.created, attrs.updated);
    assert_eq!(
        attrs.recovery_level,
        Some(DeletionRecoveryLevel::RecoverablePurgeable)
    );
    assert_eq!(attrs.recoverable_days, Some(90));

    // Latest: the SDK asks for `/secrets/db-password/` (empty version, trailing slash).
    env.clear_log().await;
    let latest = get(&client, "db-password", None).await.unwrap();
    assert_eq!(latest.value.as_deref(), Some("two"));
    assert_eq!(latest.id, second.id);
    let gets = env.requests_of(KV1, "secrets.get").await;
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0]["path"], "/secrets/db-password/");

    // A specific, older version keeps its own value, content type and tags.
    let old = get(&client, "db-password", Some(&v1)).await.unwrap();
    assert_eq!(old.value.as_deref(), Some("one"));
    assert_eq!(old.id, first.id);
    assert_eq!(old.content_type.as_deref(), Some("text/plain"));
    assert_eq!(old.tags, Some(tags(&[("env", "test")])));

    // Names are case-insensitive; the name is echoed as first created.
    let upper = get(&client, "DB-PASSWORD", None).await.unwrap();
    assert_eq!(upper.id, second.id);

    // An unknown version of an existing secret is a 404 too.
    let err = get(
        &client,
        "db-password",
        Some("0123456789abcdef0123456789abcdef"),
    )
    .await;
    expect_http_error(err, 404, "SecretNotFound");
}

#[tokio::test]
async fn update_properties_changes_tags_content_type_and_enabled() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let first = set(&client, "api-key", "v1").await;
    let second = set(&client, "api-key", "v2").await;

    // Update the latest version (PATCH /secrets/api-key/).
    let updated = client
        .update_secret_properties(
            "api-key",
            UpdateSecretPropertiesParameters {
                content_type: Some("application/json".into()),
                tags: Some(tags(&[("owner", "team-a"), ("tier", "gold")])),
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
    assert_eq!(updated.value, None, "an update answers without the value");
    assert_eq!(updated.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        updated.tags,
        Some(tags(&[("owner", "team-a"), ("tier", "gold")]))
    );
    let attrs = updated.attributes.expect("attributes");
    assert!(attrs.updated >= attrs.created);

    let latest = get(&client, "api-key", None).await.unwrap();
    assert_eq!(latest.value.as_deref(), Some("v2"));
    assert_eq!(latest.content_type.as_deref(), Some("application/json"));
    assert_eq!(latest.tags, updated.tags);

    // Disable the older version by version id: only that version becomes unreadable.
    let v1 = version_of(&first);
    let disabled = client
        .update_secret_properties(
            "api-key",
            UpdateSecretPropertiesParameters {
                secret_attributes: Some(SecretAttributes {
                    enabled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            Some(SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(v1.clone()),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(disabled.id, first.id);
    assert_eq!(disabled.attributes.unwrap().enabled, Some(false));
    assert_eq!(
        disabled.tags, None,
        "the other version's tags are untouched"
    );

    let err = get(&client, "api-key", Some(&v1)).await;
    let err = expect_http_error(err, 403, "Forbidden");
    assert_eq!(inner_code(&err).as_deref(), Some("SecretDisabled"));
    assert_eq!(
        get(&client, "api-key", None)
            .await
            .unwrap()
            .value
            .as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn disabled_secret_get_is_forbidden() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    client
        .set_secret(
            "off",
            SetSecretParameters {
                value: Some("hidden".into()),
                secret_attributes: Some(SecretAttributes {
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
        .unwrap();

    let err = expect_http_error(get(&client, "off", None).await, 403, "Forbidden");
    assert_eq!(inner_code(&err).as_deref(), Some("SecretDisabled"));

    // Still listed, with enabled = false.
    let mut pager = client.list_secret_properties(None).unwrap();
    let item = pager.try_next().await.unwrap().expect("one item");
    assert_eq!(item.attributes.unwrap().enabled, Some(false));
    assert!(pager.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn listing_62_secrets_yields_every_name_once_over_three_pages() {
    let env = common::start().await;
    let names = seed_secrets(&env, "paged-", 62).await;
    let client = env.secrets(KV1);

    let pages = list_name_pages(&client, None).await;
    assert!(pages.len() >= 3, "62 items need 3 pages of 25: {pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 25));
    assert_each_once(&pages, &names);

    // With maxresults=10 the SDK follows seven nextLinks.
    let pages = list_name_pages(&client, Some(10)).await;
    assert!(pages.len() >= 7, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 10));
    assert_each_once(&pages, &names);

    // The item stream sees the same names.
    let mut pager = client.list_secret_properties(None).unwrap();
    let mut streamed = Vec::new();
    while let Some(item) = pager.try_next().await.unwrap() {
        assert_eq!(item.managed, None);
        streamed.push(item.resource_id().unwrap().name);
    }
    assert_each_once(&[streamed], &names);
}

#[tokio::test]
async fn listing_versions_pages_over_every_version_once() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let mut ids = Vec::new();
    for i in 0..55 {
        ids.push(
            set(&client, "rotating", &format!("value-{i}"))
                .await
                .id
                .unwrap(),
        );
    }

    let mut pages = client
        .list_secret_properties_versions("rotating", None)
        .unwrap()
        .into_pages();
    let mut listed = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.try_next().await.unwrap() {
        page_count += 1;
        for item in page.into_model().unwrap().value {
            let id = item.resource_id().unwrap();
            assert_eq!(id.name, "rotating");
            assert!(id.version.is_some(), "/versions lists versioned ids");
            listed.push(item.id.unwrap());
        }
    }
    assert!(page_count >= 3, "55 versions need 3 pages");
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "no version listed twice");
    assert_eq!(unique, ids.iter().collect::<HashSet<_>>());

    // Versions of an unknown name: an empty list, not an error (spec §16).
    let mut pager = client
        .list_secret_properties_versions(
            "never-created",
            Some(SecretClientListSecretPropertiesVersionsOptions {
                maxresults: Some(5),
                ..Default::default()
            }),
        )
        .unwrap();
    assert!(pager.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn empty_and_short_page_faults_neither_lose_nor_duplicate_items() {
    let env = common::start().await;
    let names = seed_secrets(&env, "faulty-", 61).await;
    let client = env.secrets(KV1);

    env.add_fault(json!({"vault": KV1, "op": "secrets.list", "kind": "emptyPage", "count": 2}))
        .await;
    let pages = list_name_pages(&client, None).await;
    assert!(
        pages.iter().any(Vec::is_empty),
        "the injected empty pages reach the SDK: {pages:?}"
    );
    assert_each_once(&pages, &names);

    env.add_fault(json!({
        "vault": KV1, "op": "secrets.list", "kind": "shortPage", "count": 3, "pageSize": 4
    }))
    .await;
    let pages = list_name_pages(&client, None).await;
    assert!(
        pages.iter().filter(|p| p.len() == 4).count() >= 3,
        "the injected short pages reach the SDK: {pages:?}"
    );
    assert_each_once(&pages, &names);

    for fault in env.faults().await {
        assert_eq!(fault["remaining"], 0, "every fault fired: {fault}");
    }
}

#[tokio::test]
async fn delete_recover_delete_purge_lifecycle() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let created = set(&client, "lifecycle", "precious").await;

    let deleted = client
        .delete_secret("lifecycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        deleted.recovery_id.as_deref(),
        Some(format!("https://{}/deletedsecrets/lifecycle", env.authority(KV1)).as_str())
    );
    let deleted_date = deleted.deleted_date.expect("deletedDate");
    let purge_date = deleted.scheduled_purge_date.expect("scheduledPurgeDate");
    assert_eq!(
        purge_date - deleted_date,
        azure_core::time::Duration::days(90)
    );
    assert_eq!(deleted.id, created.id);
    assert_eq!(deleted.value, None, "a deleted bundle carries no value");

    // Gone from the live collection, visible in the deleted one.
    expect_http_error(get(&client, "lifecycle", None).await, 404, "SecretNotFound");
    let fetched = client
        .get_deleted_secret("lifecycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(fetched.recovery_id, deleted.recovery_id);
    assert_eq!(fetched.value, None);
    let mut pager = client.list_deleted_secret_properties(None).unwrap();
    let item = pager.try_next().await.unwrap().expect("one deleted secret");
    assert_eq!(item.recovery_id, deleted.recovery_id);
    assert!(pager.try_next().await.unwrap().is_none());

    // The name cannot be reused while soft-deleted.
    let err = client
        .set_secret(
            "lifecycle",
            RequestContent::from_str(r#"{"value":"other"}"#),
            None,
        )
        .await;
    let err = expect_http_error(err, 409, "Conflict");
    assert_eq!(
        inner_code(&err).as_deref(),
        Some("ObjectIsDeletedButRecoverable")
    );

    // Recover brings back the same version with its value.
    let recovered = client
        .recover_deleted_secret("lifecycle", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(recovered.id, created.id);
    let again = get(&client, "lifecycle", None).await.unwrap();
    assert_eq!(again.value.as_deref(), Some("precious"));
    assert_eq!(again.id, created.id);
    expect_http_error(
        client.get_deleted_secret("lifecycle", None).await,
        404,
        "SecretNotFound",
    );

    // Delete again and purge: the SDK accepts the 204.
    client.delete_secret("lifecycle", None).await.unwrap();
    client
        .purge_deleted_secret("lifecycle", None)
        .await
        .expect("purge answers 204");
    expect_http_error(
        client.get_deleted_secret("lifecycle", None).await,
        404,
        "SecretNotFound",
    );
    expect_http_error(get(&client, "lifecycle", None).await, 404, "SecretNotFound");

    // The name is free again.
    let reborn = set(&client, "lifecycle", "new").await;
    assert_ne!(reborn.id, created.id);
}

#[tokio::test]
async fn purge_protected_vault_refuses_purge() {
    let env = common::start().await;
    env.patch_vault(KV1, json!({"purgeProtection": true})).await;
    let client = env.secrets(KV1);
    let created = set(&client, "kept", "x").await;
    assert_eq!(
        created.attributes.unwrap().recovery_level,
        Some(DeletionRecoveryLevel::Recoverable)
    );

    client.delete_secret("kept", None).await.unwrap();
    let err = client.purge_deleted_secret("kept", None).await;
    let err = common::expect_http_error_body(err, 403, "Forbidden");
    assert!(
        common::error_message(&err).contains("purge protection"),
        "{err:?}"
    );

    // Still recoverable afterwards.
    client.get_deleted_secret("kept", None).await.unwrap();
    client.recover_deleted_secret("kept", None).await.unwrap();
    assert_eq!(
        get(&client, "kept", None).await.unwrap().value.as_deref(),
        Some("x")
    );
}

#[tokio::test]
async fn missing_secrets_are_404_secret_not_found() {
    let env = common::start().await;
    let client = env.secrets(KV1);

    let err = expect_http_error(get(&client, "ghost", None).await, 404, "SecretNotFound");
    assert!(common::error_message(&err).contains("ghost"), "{err:?}");
    expect_http_error(
        client.get_deleted_secret("ghost", None).await,
        404,
        "SecretNotFound",
    );
    expect_http_error(
        client.delete_secret("ghost", None).await,
        404,
        "SecretNotFound",
    );
    expect_http_error(
        client.backup_secret("ghost", None).await,
        404,
        "SecretNotFound",
    );
    expect_http_error(
        client.recover_deleted_secret("ghost", None).await,
        404,
        "SecretNotFound",
    );
}

/// Sets the secret `name` to "v", injects `fault` (on `secrets.get` of kv1), and checks that
/// the SDK's get is retried to success with the emulator answering `statuses` on the way.
async fn get_is_retried_to_success(name: &str, fault: Value, statuses: Vec<u64>) {
    let env = common::start().await;
    let client = env.secrets(KV1);
    set(&client, name, "v").await;

    env.add_fault(fault).await;
    let secret = get(&client, name, None).await.expect("retried to success");
    assert_eq!(secret.value.as_deref(), Some("v"));
    assert_eq!(env.statuses_of(KV1, "secrets.get").await, statuses);
}

#[tokio::test]
async fn throttling_without_retry_after_is_retried_to_success() {
    get_is_retried_to_success(
        "busy",
        json!({"vault": KV1, "op": "secrets.get", "kind": "throttle", "count": 2}),
        vec![429, 429, 200],
    )
    .await;
}

#[tokio::test]
async fn throttling_with_retry_after_is_retried_to_success() {
    get_is_retried_to_success(
        "busy",
        json!({
            "vault": KV1, "op": "secrets.get", "kind": "throttle", "count": 2, "retryAfterSeconds": 1
        }),
        vec![429, 429, 200],
    )
    .await;
}

#[tokio::test]
async fn throttling_beyond_the_retry_budget_surfaces_429_throttled() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    set(&client, "busy", "v").await;

    env.add_fault(json!({"vault": KV1, "op": "secrets.get", "kind": "throttle", "count": 20}))
        .await;
    expect_http_error(get(&client, "busy", None).await, 429, "Throttled");
    // One try plus the four retries the harness allows.
    assert_eq!(env.statuses_of(KV1, "secrets.get").await, vec![429; 5]);
}

#[tokio::test]
async fn service_unavailable_is_retried_to_success() {
    get_is_retried_to_success(
        "flaky",
        json!({"vault": KV1, "op": "secrets.get", "kind": "error503", "count": 2}),
        vec![503, 503, 200],
    )
    .await;
}

#[tokio::test]
async fn connection_reset_is_retried_to_success() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    set(&client, "reset", "v").await;

    env.add_fault(json!({"vault": KV1, "op": "secrets.get", "kind": "reset", "count": 1}))
        .await;
    let secret = get(&client, "reset", None)
        .await
        .expect("retried to success");
    assert_eq!(secret.value.as_deref(), Some("v"));

    let gets = env.requests_of(KV1, "secrets.get").await;
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert!(
        !gets[0]["fault"].is_null(),
        "the first try was reset: {gets:#?}"
    );
    assert_eq!(gets[1]["status"], 200);
    let faults = env.faults().await;
    assert_eq!(faults[0]["fired"], 1);
}

#[tokio::test]
async fn recovery_level_and_retention_follow_the_vault_settings() {
    let env = common::start().await;
    let client = env.secrets(KV1);

    // Retention below 90 days: CustomizedRecoverable+Purgeable.
    env.patch_vault(KV1, json!({"recoverableDays": 7})).await;
    let short = set(&client, "short-retention", "x").await;
    let attrs = short.attributes.unwrap();
    assert_eq!(
        attrs.recovery_level,
        Some(DeletionRecoveryLevel::CustomizedRecoverablePurgeable)
    );
    assert_eq!(attrs.recoverable_days, Some(7));
    let deleted = client
        .delete_secret("short-retention", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        deleted.scheduled_purge_date.unwrap() - deleted.deleted_date.unwrap(),
        azure_core::time::Duration::days(7)
    );

    // Once the vault clock passes scheduledPurgeDate the deleted secret is gone for good.
    let (status, body) = env
        .control("POST", "time", Some(json!({"advanceSeconds": 8 * 86400})))
        .await;
    assert_eq!(status, 200, "{body}");
    expect_http_error(
        client.get_deleted_secret("short-retention", None).await,
        404,
        "SecretNotFound",
    );
    set(&client, "short-retention", "reused").await;

    // No soft delete (legacy vault): Purgeable, delete is final and carries no recovery fields.
    env.patch_vault(KV1, json!({"recoverableDays": null})).await;
    let legacy = set(&client, "legacy", "x").await;
    assert_eq!(
        legacy.attributes.unwrap().recovery_level,
        Some(DeletionRecoveryLevel::Purgeable)
    );
    let deleted = client
        .delete_secret("legacy", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(deleted.recovery_id, None);
    assert_eq!(deleted.scheduled_purge_date, None);
    expect_http_error(
        client.get_deleted_secret("legacy", None).await,
        404,
        "SecretNotFound",
    );
    set(&client, "legacy", "again").await;
}

#[tokio::test]
async fn listing_deleted_secrets_pages_over_every_name_once() {
    let env = common::start().await;
    let names = seed_secrets(&env, "gone-", 30).await;
    let client = env.secrets(KV1);
    for name in &names {
        client.delete_secret(name, None).await.unwrap();
    }
    let mut pages = client
        .list_deleted_secret_properties(None)
        .unwrap()
        .into_pages();
    let mut listed = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.try_next().await.unwrap() {
        page_count += 1;
        for item in page.into_model().unwrap().value {
            assert!(item.recovery_id.is_some() && item.deleted_date.is_some());
            listed.push(item.resource_id().unwrap().name);
        }
    }
    assert!(page_count >= 2, "30 deleted secrets need 2 pages of 25");
    assert_each_once(&[listed], &names);
}

#[tokio::test]
async fn values_and_validity_dates_roundtrip_exactly() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let tricky = "line 1\nline \"2\"\t\u{e9}\u{1f511} {\"json\": [1, 2]} \\ </end>";
    let large: String = (0..20 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let not_before = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let expires = OffsetDateTime::from_unix_timestamp(4_100_000_000).unwrap();

    for (name, value) in [("tricky", tricky), ("large", large.as_str())] {
        client
            .set_secret(
                name,
                SetSecretParameters {
                    value: Some(value.to_string()),
                    secret_attributes: Some(SecretAttributes {
                        not_before: Some(not_before),
                        expires: Some(expires),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .try_into()
                .unwrap(),
                None,
            )
            .await
            .unwrap();
        let got = get(&client, name, None).await.unwrap();
        assert_eq!(got.value.as_deref(), Some(value), "value of {name}");
        let attrs = got.attributes.unwrap();
        assert_eq!(attrs.not_before, Some(not_before));
        assert_eq!(attrs.expires, Some(expires));
    }
}

#[tokio::test]
async fn service_limits_are_400_bad_parameter() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    let too_large = "x".repeat(25 * 1024 + 1);
    let sixteen_tags: Vec<(String, String)> = (0..16)
        .map(|i| (format!("t{i}"), "v".to_string()))
        .collect();
    let cases = [
        (
            "bad_name",
            SetSecretParameters {
                value: Some("v".into()),
                ..Default::default()
            },
        ),
        (
            "too-large",
            SetSecretParameters {
                value: Some(too_large),
                ..Default::default()
            },
        ),
        (
            "many-tags",
            SetSecretParameters {
                value: Some("v".into()),
                tags: Some(sixteen_tags.into_iter().collect()),
                ..Default::default()
            },
        ),
    ];
    for (name, params) in cases {
        let result = client
            .set_secret(name, params.try_into().unwrap(), None)
            .await;
        expect_http_error(result, 400, "BadParameter");
    }
    let mut pager = client.list_secret_properties(None).unwrap();
    assert!(
        pager.try_next().await.unwrap().is_none(),
        "nothing was stored"
    );
}

async fn set_auth(env: &Env, settings: Value) {
    let (status, body) = env.control("PUT", "auth", Some(settings)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn scope_form_of_the_challenge_is_accepted() {
    let env = common::start().await;
    set_auth(&env, json!({"challenge": "scope"})).await;
    let client = env.secrets(KV1);
    set(&client, "scoped", "v").await;
    assert_eq!(
        env.credential.scopes(),
        vec![format!("https://vault.localhost:{}/.default", env.port())]
    );
}

#[tokio::test]
async fn challenges_for_another_domain_are_refused_before_any_token_is_asked_for() {
    for mode in ["foreign", "authority"] {
        let env = common::start().await;
        set_auth(&env, json!({"challenge": mode})).await;
        let client = env.secrets(KV1);
        let err = client
            .set_secret("never", RequestContent::from_str(r#"{"value":"v"}"#), None)
            .await
            .expect_err("challenge verification refuses the resource");
        assert_eq!(err.http_status(), None, "{mode}: {err:?}");
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            chain.push_str(&format!(" <- {cause}"));
            source = cause.source();
        }
        assert!(
            chain.contains("doesn't match the requested domain"),
            "{mode}: {chain}"
        );
        assert!(
            env.credential.scopes().is_empty(),
            "{mode}: no token asked for"
        );
        let log = env.request_log(KV1).await;
        assert_eq!(log.len(), 1, "{mode}: only the probe went out: {log:#?}");
        assert_eq!(log[0]["hasAuthorization"], false);
    }
}

#[tokio::test]
async fn a_401_without_challenge_surfaces_as_unauthorized() {
    let env = common::start().await;
    set_auth(&env, json!({"challenge": "none"})).await;
    let client = env.secrets(KV1);
    expect_http_error(get(&client, "any", None).await, 401, "Unauthorized");
    assert!(env.credential.scopes().is_empty());
}

#[tokio::test]
async fn a_rejected_token_is_rechallenged_once_then_succeeds() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    set(&client, "guarded", "v").await;
    set_auth(&env, json!({"token": "rejectOnce"})).await;
    env.clear_log().await;

    let secret = get(&client, "guarded", None)
        .await
        .expect("re-challenge succeeds");
    assert_eq!(secret.value.as_deref(), Some("v"));
    let log = env.request_log(KV1).await;
    let seen: Vec<(bool, u64)> = log
        .iter()
        .map(|r| {
            (
                r["hasAuthorization"].as_bool().unwrap_or(false),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(seen, vec![(true, 401), (true, 200)], "{log:#?}");
}

#[tokio::test]
async fn faults_in_the_middle_of_paging_are_retried_without_losing_items() {
    let env = common::start().await;
    let names = seed_secrets(&env, "midway-", 60).await;
    let client = env.secrets(KV1);

    let mut pages = client.list_secret_properties(None).unwrap().into_pages();
    let first = pages.try_next().await.unwrap().expect("first page");
    let mut listed: Vec<String> = first
        .into_model()
        .unwrap()
        .value
        .iter()
        .map(|i| i.resource_id().unwrap().name)
        .collect();

    // The following page requests meet a throttle, a 503 and a reset before they get through.
    for kind in ["throttle", "error503", "reset"] {
        env.add_fault(json!({"vault": KV1, "op": "secrets.list", "kind": kind, "count": 1}))
            .await;
    }
    while let Some(page) = pages.try_next().await.expect("retried page") {
        listed.extend(
            page.into_model()
                .unwrap()
                .value
                .iter()
                .map(|i| i.resource_id().unwrap().name),
        );
    }
    assert_each_once(&[listed], &names);
    for fault in env.faults().await {
        assert_eq!(fault["fired"], 1, "{fault}");
    }
}

#[tokio::test]
async fn the_modelled_throttle_is_absorbed_by_the_retry_policy() {
    let env = common::start().await;
    let client = env.secrets(KV1);
    set(&client, "hot", "v").await;
    let (status, body) = env
        .control(
            "PUT",
            "throttle",
            Some(json!({
                "enabled": true, "vaultBudget": 3, "windowSeconds": 1,
                "subscriptionMultiplier": 5, "retryAfterMs": 300
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for _ in 0..10 {
        let secret = get(&client, "hot", None).await.expect("retried to success");
        assert_eq!(secret.value.as_deref(), Some("v"));
    }
    let statuses = env.statuses_of(KV1, "secrets.get").await;
    assert!(
        statuses.contains(&429),
        "the budget was exceeded: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    let (_, counters) = env.control("GET", "counters", None).await;
    assert!(
        counters["throttled"][KV1].as_u64().unwrap_or(0) > 0,
        "{counters}"
    );
}

#[tokio::test]
async fn pinned_older_api_versions_work_and_unknown_ones_are_400() {
    let env = common::start().await;
    for version in ["7.5", "7.6", "2026-04-01"] {
        let client = SecretClient::new(
            &env.url(KV1),
            env.credential.clone(),
            Some(SecretClientOptions {
                api_version: version.into(),
                client_options: env.client_options(),
                ..Default::default()
            }),
        )
        .unwrap();
        let name = format!("v{}", version.replace('.', "-"));
        set(&client, &name, version).await;
        assert_eq!(
            get(&client, &name, None).await.unwrap().value.as_deref(),
            Some(version)
        );
    }
    let client = SecretClient::new(
        &env.url(KV1),
        env.credential.clone(),
        Some(SecretClientOptions {
            api_version: "1999-01-01".into(),
            client_options: env.client_options(),
            ..Default::default()
        }),
    )
    .unwrap();
    let err = expect_http_error(get(&client, "v7-5", None).await, 400, "BadParameter");
    assert!(
        common::error_message(&err).contains("1999-01-01"),
        "{err:?}"
    );
}
