//! Raw-HTTP golden tests of the emulator's wire behaviour (no SDK): the auth challenge, api
//! versions, path and query normalisation, headers, paging links, errors, the control plane with
//! faults and throttling, and the binary's ready line and exit codes.

use std::io::BufRead;
use std::time::Duration;

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{
    AuthSettings, ChallengeMode, Emulator, EmulatorConfig, FaultKind, FaultSpec, ThrottleSettings,
    TokenMode,
};
use kvkeep_emulator::vault::VaultSettings;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

const API: &str = "api-version=2025-07-01";

async fn start() -> Emulator {
    let mut other = VaultSettings::named("kv2");
    other.subscription = "00000000-0000-0000-0000-000000000002".into();
    other.region = "northeurope".into();
    Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named("kv1"), other],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

fn url(emulator: &Emulator, vault: &str, path_and_query: &str) -> String {
    format!("{}{path_and_query}", emulator.vault_url(vault).unwrap())
}

fn port(emulator: &Emulator) -> u16 {
    emulator
        .info()
        .listen
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn send(
    emulator: &Emulator,
    method: Method,
    url: &str,
    token: bool,
    body: Option<&str>,
) -> Response {
    let mut request = emulator.http_client().request(method, url);
    if token {
        request = request.header("authorization", "Bearer x");
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    request.send().await.expect("request sent")
}

async fn get(emulator: &Emulator, url: &str) -> Response {
    send(emulator, Method::GET, url, true, None).await
}

async fn error_code(response: Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("json error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec {
        vault: None,
        op: None,
        kind,
        count: None,
        rate: None,
        retry_after_seconds: None,
        retry_after_ms: None,
        latency_ms: None,
        page_size: None,
        next_link_host: None,
    }
}

/// A fault rule that fires once.
fn once(kind: FaultKind) -> FaultSpec {
    FaultSpec {
        count: Some(1),
        ..fault(kind)
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_the_challenge_before_any_validation() {
    let emu = start().await;
    let port = port(&emu);
    let challenge = format!(
        "Bearer authorization=\"https://login.emulator.invalid/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.localhost:{port}\""
    );
    let cases = [
        (
            Method::PUT,
            url(&emu, "kv1", &format!("/secrets/s1?{API}")),
            None,
        ),
        (
            Method::POST,
            url(&emu, "kv1", &format!("/secrets/restore?{API}")),
            None,
        ),
        (
            Method::GET,
            url(&emu, "kv1", "/secrets?api-version=1999-01-01"),
            None,
        ),
        (
            Method::PUT,
            url(&emu, "kv1", &format!("/secrets/s1?{API}")),
            Some("{not json"),
        ),
        (Method::GET, url(&emu, "kv1", "/nonsense/route"), None),
        (
            Method::GET,
            format!("https://nope.vault.localhost:{port}/secrets?{API}"),
            None,
        ),
    ];
    for (method, url, body) in cases {
        let response = send(&emu, method.clone(), &url, false, body).await;
        assert_eq!(response.status(), 401, "{method} {url}");
        assert_eq!(response.headers()["www-authenticate"], challenge.as_str());
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}})
        );
    }
    // A bearer scheme with an empty token is no token.
    let response = emu
        .http_client()
        .get(url(&emu, "kv1", &format!("/secrets?{API}")))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The log shows the first request without a token and without a body.
    let log = emu.control().log(Some("kv1")).await.unwrap();
    assert_eq!(log[0].status, 401);
    assert!(!log[0].has_authorization);
    assert_eq!(log[0].body_length, 0);
    assert_eq!(log[0].op.as_deref(), Some("secrets.set"));
    assert_eq!(log[0].method, "PUT");
    emu.shutdown().await;
}

#[tokio::test]
async fn api_versions_are_checked_after_auth() {
    let emu = start().await;
    let control = emu.control();
    // emptyPage answers list requests without touching the vault, so acceptance is visible.
    control
        .add_fault(&fault(FaultKind::EmptyPage))
        .await
        .unwrap();
    for version in [
        "7.0",
        "7.1",
        "7.2",
        "7.3",
        "7.4",
        "7.5",
        "7.6",
        "2016-10-01",
        "2025-07-01",
        "2026-04-01",
    ] {
        let response = get(
            &emu,
            &url(&emu, "kv1", &format!("/secrets?api-version={version}")),
        )
        .await;
        assert_eq!(response.status(), 200, "{version}");
    }
    let (status, code, message) =
        error_code(get(&emu, &url(&emu, "kv1", "/secrets?api-version=2024-13-01")).await).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "BadParameter"));
    assert_eq!(
        message,
        "The specified version (2024-13-01) is not recognized. Consider using the latest supported version (2026-04-01)."
    );
    let (status, code, _) = error_code(get(&emu, &url(&emu, "kv1", "/secrets")).await).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "BadParameter"));
    emu.shutdown().await;
}

#[tokio::test]
async fn every_response_carries_the_service_headers() {
    let emu = start().await;
    let response = emu
        .http_client()
        .get(url(&emu, "kv2", "/secrets?api-version=0.1"))
        .header("authorization", "Bearer x")
        .header("x-ms-client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    let h = response.headers();
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(h["expires"], "-1");
    assert!(h.contains_key("date"));
    assert_eq!(
        h["strict-transport-security"],
        "max-age=31536000;includeSubDomains"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-ms-request-id"].len(), 36);
    assert_eq!(h["x-ms-keyvault-region"], "northeurope");
    assert!(h.contains_key("x-ms-keyvault-service-version"));
    assert!(h["x-ms-keyvault-network-info"]
        .to_str()
        .unwrap()
        .contains("addr=127.0.0.1"));
    assert_eq!(h["x-ms-client-request-id"], "abc-123");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    let response = get(&emu, &url(&emu, "kv1", "/secrets?api-version=0.1")).await;
    assert!(!response.headers().contains_key("x-ms-client-request-id"));
    assert_ne!(
        response.headers()["x-ms-request-id"],
        h["x-ms-request-id"],
        "request ids are unique"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn next_links_are_absolute_and_resume_where_they_stand() {
    let emu = start().await;
    emu.control()
        .add_fault(&fault(FaultKind::EmptyPage))
        .await
        .unwrap();
    let port = port(&emu);
    let response = get(&emu, &url(&emu, "kv1", &format!("/secrets?{API}"))).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["value"], json!([]));
    let link = body["nextLink"].as_str().unwrap().to_string();
    let prefix = format!("https://kv1.vault.localhost:{port}/secrets?{API}&$skiptoken=");
    assert!(link.starts_with(&prefix), "{link}");
    let token = &link[prefix.len()..];
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // maxresults is echoed only when sent; a percent-encoded $skiptoken is accepted.
    let again = format!(
        "https://kv1.vault.localhost:{port}//secrets/?%24skiptoken={token}&{API}&maxresults=5"
    );
    let body: Value = get(&emu, &again).await.json().await.unwrap();
    assert_eq!(
        body["nextLink"],
        format!("https://kv1.vault.localhost:{port}/secrets?{API}&$skiptoken={token}&maxresults=5")
    );
    // Versions and deleted collections build their links the same way.
    let body: Value = get(
        &emu,
        &url(&emu, "kv1", &format!("/Secrets/s1/versions?{API}")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(body["nextLink"].as_str().unwrap().starts_with(&format!(
        "https://kv1.vault.localhost:{port}/Secrets/s1/versions?{API}&$skiptoken="
    )));
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_queries_and_bodies_are_bad_parameters() {
    let emu = start().await;
    for maxresults in ["0", "26", "ten", ""] {
        let response = get(
            &emu,
            &url(
                &emu,
                "kv1",
                &format!("/secrets?{API}&maxresults={maxresults}"),
            ),
        )
        .await;
        let (status, code, _) = error_code(response).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "BadParameter"),
            "{maxresults}"
        );
    }
    let response = get(
        &emu,
        &url(&emu, "kv1", &format!("/keys?{API}&$skiptoken=not+a+token")),
    )
    .await;
    assert_eq!(error_code(response).await.1, "BadParameter");
    for body in ["{\"value\":", "not json", "[1,"] {
        let response = send(
            &emu,
            Method::PUT,
            &url(&emu, "kv1", &format!("/secrets/s1?{API}")),
            true,
            Some(body),
        )
        .await;
        let (status, code, _) = error_code(response).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "BadParameter"),
            "{body}"
        );
    }
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = send(
        &emu,
        Method::PUT,
        &url(&emu, "kv1", &format!("/secrets/s1?{API}")),
        true,
        Some(&huge),
    )
    .await;
    assert_eq!(response.status(), 413);
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_vaults_and_routes_are_404() {
    let emu = start().await;
    let port = port(&emu);
    let response = get(
        &emu,
        &format!("https://nope.vault.localhost:{port}/secrets?{API}"),
    )
    .await;
    let (status, code, _) = error_code(response).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "VaultNotFound"));
    let response = get(&emu, &format!("https://127.0.0.1:{port}/secrets?{API}")).await;
    assert_eq!(response.status(), 404);
    let response = get(&emu, &url(&emu, "kv1", &format!("/storage/x?{API}"))).await;
    assert_eq!(response.status(), 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn paths_normalise_to_operations() {
    let emu = start().await;
    let control = emu.control();
    // A 503 fault per expected operation proves where each path was routed.
    let cases = [
        (Method::GET, "/secrets/s1/", "secrets.get"),
        (Method::GET, "//secrets//s1", "secrets.get"),
        (
            Method::GET,
            "/KEYS/k1/0123456789abcdef0123456789abcdef",
            "keys.get",
        ),
        (Method::GET, "/deletedSecrets", "secrets.list_deleted"),
        (
            Method::DELETE,
            "/deletedcertificates/c1",
            "certificates.purge",
        ),
        (
            Method::POST,
            "/certificates//restore",
            "certificates.restore",
        ),
        (Method::POST, "/keys/k1/backup", "keys.backup"),
        (Method::POST, "/deletedkeys/k1/recover", "keys.recover"),
        (Method::PATCH, "/secrets/s1/", "secrets.update"),
        (
            Method::GET,
            "/certificates/c1/pending",
            "certificates.get_operation",
        ),
    ];
    for (method, path, op) in cases {
        control.clear_faults().await.unwrap();
        control
            .add_fault(&FaultSpec {
                op: Some(op.into()),
                ..once(FaultKind::Error503)
            })
            .await
            .unwrap();
        let body = (method == Method::PATCH).then_some("{}");
        let response = send(
            &emu,
            method.clone(),
            &url(&emu, "kv1", &format!("{path}?{API}")),
            true,
            body,
        )
        .await;
        assert_eq!(response.status(), 503, "{method} {path}");
    }
    let counters = control.counters().await.unwrap();
    assert_eq!(counters.vaults["kv1"]["secrets.get"], 2);
    assert_eq!(counters.faulted["kv1"], 10);
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_answer_as_configured() {
    let emu = start().await;
    let control = emu.control();
    let list = url(&emu, "kv1", &format!("/secrets?{API}"));

    control.add_fault(&once(FaultKind::Throttle)).await.unwrap();
    let response = get(&emu, &list).await;
    assert!(!response.headers().contains_key("retry-after"));
    assert!(!response.headers().contains_key("x-ms-retry-after-ms"));
    let (status, code, _) = error_code(response).await;
    assert_eq!((status.as_u16(), code.as_str()), (429, "Throttled"));

    control
        .add_fault(&FaultSpec {
            retry_after_seconds: Some(2),
            retry_after_ms: Some(1500),
            ..once(FaultKind::Throttle)
        })
        .await
        .unwrap();
    let response = get(&emu, &list).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()["x-ms-retry-after-ms"], "1500");

    control.add_fault(&once(FaultKind::Error503)).await.unwrap();
    assert_eq!(get(&emu, &list).await.status(), 503);
    control.add_fault(&once(FaultKind::Error500)).await.unwrap();
    assert_eq!(get(&emu, &list).await.status(), 500);

    control
        .add_fault(&FaultSpec {
            vault: Some("kv1".into()),
            ..once(FaultKind::Reset)
        })
        .await
        .unwrap();
    let reset = emu
        .http_client()
        .get(&list)
        .header("authorization", "Bearer x")
        .send()
        .await;
    assert!(
        reset.is_err(),
        "the connection is dropped without a response"
    );

    // Latency then serve: the request is answered by what comes next (here an empty page).
    control
        .add_fault(&FaultSpec {
            latency_ms: Some(50),
            ..once(FaultKind::Latency)
        })
        .await
        .unwrap();
    control
        .add_fault(&once(FaultKind::EmptyPage))
        .await
        .unwrap();
    assert_eq!(get(&emu, &list).await.status(), 200);

    let rules = control.faults().await.unwrap();
    assert_eq!(rules.len(), 7);
    assert!(rules.iter().all(|r| r.remaining == Some(0) && r.fired == 1));
    let log = control.log(Some("kv1")).await.unwrap();
    let faults: Vec<_> = log
        .iter()
        .map(|e| e.fault.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        faults,
        [
            "throttle",
            "throttle",
            "error503",
            "error500",
            "reset",
            "latency+emptyPage"
        ]
    );
    assert_eq!(log[4].status, 0, "a reset has no status");
    control.delete_fault(rules[0].id).await.unwrap();
    assert_eq!(control.faults().await.unwrap().len(), 6);
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_spends_vault_and_subscription_budgets() {
    let emu = start().await;
    let control = emu.control();
    control
        .set_throttle(&ThrottleSettings {
            enabled: true,
            vault_budget: 3,
            window_seconds: 3600,
            ..ThrottleSettings::default()
        })
        .await
        .unwrap();
    let kv1 = url(&emu, "kv1", &format!("/secrets/missing?{API}"));
    for _ in 0..3 {
        assert_ne!(get(&emu, &kv1).await.status(), 429);
    }
    let response = get(&emu, &kv1).await;
    assert!(!response.headers().contains_key("retry-after"));
    let (status, code, message) = error_code(response).await;
    assert_eq!((status.as_u16(), code.as_str()), (429, "Throttled"));
    assert!(message.contains("VaultRequestTypeLimitReached"));
    // kv2 lives in another subscription: unaffected.
    let kv2 = url(&emu, "kv2", &format!("/secrets/missing?{API}"));
    assert_ne!(get(&emu, &kv2).await.status(), 429);

    let counters = control.counters().await.unwrap();
    assert_eq!(counters.throttled["kv1"], 1);
    assert_eq!(counters.vaults["kv1"]["secrets.get"], 4);
    assert!(!counters.throttled.contains_key("kv2"));

    control
        .set_throttle(&ThrottleSettings {
            enabled: true,
            vault_budget: 1,
            window_seconds: 3600,
            retry_after_seconds: Some(7),
            ..ThrottleSettings::default()
        })
        .await
        .unwrap();
    assert_ne!(get(&emu, &kv1).await.status(), 429);
    let response = get(&emu, &kv1).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    emu.shutdown().await;
}

#[tokio::test]
async fn control_plane_round_trips() {
    let emu = start().await;
    let control = emu.control();
    let mut settings = VaultSettings::named("Fresh-Vault");
    settings.recoverable_days = Some(7);
    let created = control.create_vault(&settings).await.unwrap();
    assert_eq!(created.settings.name, "fresh-vault");
    assert_eq!(created.settings.recoverable_days, Some(7));
    assert_eq!(
        created.url,
        format!("https://fresh-vault.vault.localhost:{}", port(&emu))
    );
    let dup = control.create_vault(&settings).await.unwrap_err();
    assert!(dup.to_string().contains("409"), "{dup}");
    let bad = control
        .create_vault(&VaultSettings {
            recoverable_days: Some(3),
            ..VaultSettings::named("x")
        })
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("400"), "{bad}");

    let patched = control
        .update_vault(
            "fresh-vault",
            json!({"purgeProtection": true, "region": "eastus"}),
        )
        .await
        .unwrap();
    assert!(patched.settings.purge_protection);
    assert_eq!(patched.settings.region, "eastus");
    assert!(control
        .update_vault("fresh-vault", json!({"regoin": "x"}))
        .await
        .is_err());
    let names: Vec<_> = control
        .vaults()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.settings.name)
        .collect();
    assert_eq!(names, ["fresh-vault", "kv1", "kv2"]);

    // The new vault is served (its region shows in the headers).
    let response = get(&emu, &format!("{}/secrets?api-version=0", created.url)).await;
    assert_eq!(response.headers()["x-ms-keyvault-region"], "eastus");
    control.delete_vault("fresh-vault").await.unwrap();
    assert!(control.delete_vault("fresh-vault").await.is_err());

    // Time shift.
    let before = control.time().await.unwrap();
    let shifted = control.set_time_shift(86_400).await.unwrap();
    assert_eq!(shifted.shift_seconds, 86_400);
    assert!(shifted.now >= before.now + 86_400);
    let advanced = control.advance_time(100).await.unwrap();
    assert_eq!(advanced.shift_seconds, 86_500);

    // Auth settings.
    let auth = control
        .set_auth(&AuthSettings {
            challenge: ChallengeMode::Scope,
            token: TokenMode::Any,
        })
        .await
        .unwrap();
    assert_eq!(auth.challenge, ChallengeMode::Scope);

    // Reset: back to the start-up vaults, everything cleared.
    control
        .create_vault(&VaultSettings::named("temp"))
        .await
        .unwrap();
    control
        .add_fault(&fault(FaultKind::Error500))
        .await
        .unwrap();
    control
        .set_throttle(&ThrottleSettings {
            enabled: true,
            ..ThrottleSettings::default()
        })
        .await
        .unwrap();
    get(&emu, &url(&emu, "kv1", "/secrets?api-version=0")).await;
    control.reset().await.unwrap();
    let names: Vec<_> = control
        .vaults()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.settings.name)
        .collect();
    assert_eq!(names, ["kv1", "kv2"]);
    assert!(control.faults().await.unwrap().is_empty());
    assert!(control.log(None).await.unwrap().is_empty());
    assert!(control.counters().await.unwrap().vaults.is_empty());
    assert_eq!(control.time().await.unwrap().shift_seconds, 0);
    assert!(!control.throttle().await.unwrap().enabled);
    assert_eq!(control.auth().await.unwrap(), AuthSettings::default());
    emu.shutdown().await;
}

#[tokio::test]
async fn control_plane_refuses_bad_requests() {
    let emu = start().await;
    let http = emu.http_client();
    let base = emu.info().control_url.clone();
    let cases = [
        (Method::POST, "faults", json!({"kind": "explode"}), 400),
        (
            Method::POST,
            "faults",
            json!({"kind": "error500", "rate": 1.5}),
            400,
        ),
        (
            Method::POST,
            "faults",
            json!({"kind": "error500", "cuont": 1}),
            400,
        ),
        (Method::POST, "time", json!({}), 400),
        (Method::PUT, "throttle", json!({"vaultBudget": "many"}), 400),
        (Method::PUT, "auth", json!({"token": "sometimes"}), 400),
        (Method::POST, "vaults", json!({"name": "a.b"}), 400),
        (
            Method::POST,
            "vaults/nope/seed",
            json!({"kind": "secrets", "prefix": "s", "count": 1}),
            404,
        ),
        (Method::GET, "nothing", json!({}), 404),
    ];
    for (method, path, body, status) in cases {
        let response = http
            .request(method.clone(), format!("{base}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path} {body}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn token_modes() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let emu = start().await;
    let control = emu.control();
    let port = port(&emu);
    let list = url(&emu, "kv1", "/secrets?api-version=0");
    let with_token = |token: String| {
        emu.http_client()
            .get(&list)
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let jwt = |aud: &str, exp: i64| {
        let claims = json!({"aud": aud, "exp": exp, "nbf": 0});
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string()))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    control
        .set_auth(&AuthSettings {
            token: TokenMode::Jwt,
            ..AuthSettings::default()
        })
        .await
        .unwrap();
    let resource = format!("https://vault.localhost:{port}");
    assert_eq!(
        with_token(jwt(&resource, now + 600))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        with_token(jwt("https://vault.azure.net", now + 600))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        with_token(jwt(&resource, now - 10)).await.unwrap().status(),
        401
    );
    let response = with_token("opaque".into()).await.unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert!(error_code(response).await.2.starts_with("AKV10022"));

    control
        .set_auth(&AuthSettings {
            token: TokenMode::RejectOnce,
            ..AuthSettings::default()
        })
        .await
        .unwrap();
    assert_eq!(with_token("x".into()).await.unwrap().status(), 401);
    assert_eq!(with_token("x".into()).await.unwrap().status(), 400);
    assert_eq!(control.auth().await.unwrap().token, TokenMode::Any);

    for (mode, header) in [
        (
            ChallengeMode::Scope,
            format!("scope=\"https://vault.localhost:{port}/.default\""),
        ),
        (
            ChallengeMode::Authority,
            format!("resource=\"https://kv1.vault.localhost:{port}\""),
        ),
        (
            ChallengeMode::Foreign,
            "resource=\"https://vault.azure.net\"".to_string(),
        ),
    ] {
        control
            .set_auth(&AuthSettings {
                challenge: mode,
                ..AuthSettings::default()
            })
            .await
            .unwrap();
        let response = send(&emu, Method::GET, &list, false, None).await;
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer authorization=\"https://login.emulator.invalid/"));
        assert!(challenge.ends_with(&header), "{mode:?}: {challenge}");
    }
    control
        .set_auth(&AuthSettings {
            challenge: ChallengeMode::None,
            ..AuthSettings::default()
        })
        .await
        .unwrap();
    let response = send(&emu, Method::GET, &list, false, None).await;
    assert_eq!(response.status(), 401);
    assert!(!response.headers().contains_key("www-authenticate"));
    emu.shutdown().await;
}

#[tokio::test]
async fn loopback_mode_serves_each_vault_on_its_own_port() {
    let emu = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named("kv1"), VaultSettings::named("kv2")],
        loopback: true,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let kv1 = emu.vault_url("kv1").unwrap().to_string();
    let kv2 = emu.vault_url("kv2").unwrap().to_string();
    assert!(kv1.starts_with("https://127.0.0.1:"));
    assert_ne!(kv1, kv2);
    let response = send(
        &emu,
        Method::GET,
        &format!("{kv1}/secrets?{API}"),
        false,
        None,
    )
    .await;
    let authority = kv1.trim_start_matches("https://");
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        format!("Bearer authorization=\"https://login.emulator.invalid/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://{authority}\"")
    );
    emu.control()
        .add_fault(&fault(FaultKind::EmptyPage))
        .await
        .unwrap();
    let body: Value = get(&emu, &format!("{kv2}/keys?{API}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["nextLink"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{kv2}/keys?")));
    let log = emu.control().log(None).await.unwrap();
    assert_eq!(log[0].vault.as_deref(), Some("kv1"));
    assert_eq!(log[1].vault.as_deref(), Some("kv2"));
    // A vault created later gets a port too.
    let created = emu
        .control()
        .create_vault(&VaultSettings::named("kv3"))
        .await
        .unwrap();
    let response = send(
        &emu,
        Method::GET,
        &format!("{}/secrets?{API}", created.url),
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 401);
    emu.shutdown().await;
}

#[test]
fn the_binary_prints_one_ready_line_and_exits_0_on_sigterm() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep-emulator"))
        .args(["--vault", "kv1", "--vault", "kv2:geo=us:subscription=s2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
    let listen = ready["listen"].as_str().unwrap();
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(
        ready["vaults"]["kv1"],
        format!("https://kv1.vault.localhost:{port}")
    );
    assert_eq!(
        ready["vaults"]["kv2"],
        format!("https://kv2.vault.localhost:{port}")
    );
    assert_eq!(
        ready["controlUrl"],
        format!("https://127.0.0.1:{port}/_emulator")
    );
    let ca = ready["caCert"].as_str().unwrap();
    assert!(std::path::Path::new(ca).exists());
    assert!(ca.starts_with(ready["certDir"].as_str().unwrap()));

    let exit = signal_and_wait(&mut child, "-TERM");
    assert_eq!(exit.code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
    assert!(
        !std::path::Path::new(ca).exists(),
        "the temporary cert dir is removed"
    );
}

/// Sends `signal` (`-TERM`, `-INT`) to the emulator process with kill(1) and waits up to 30 s
/// for it to exit.
fn signal_and_wait(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after {signal}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A supervisor may signal the moment it has read the ready line: the handlers are installed
/// before the line is printed, so even an immediate SIGTERM or SIGINT is a graceful exit 0 (a
/// signal arriving before registration used to kill the process: exit status None).
#[test]
fn a_signal_sent_right_after_the_ready_line_still_exits_0() {
    for signal in ["-TERM", "-INT", "-TERM", "-INT"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep-emulator"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let exit = signal_and_wait(&mut child, signal);
        assert_eq!(exit.code(), Some(0), "{signal}: {exit:?}");
        assert!(serde_json::from_str::<Value>(&line).is_ok(), "{line}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        vec!["--listen", "not-an-address"],
        vec!["--vault", "kv1:days=3"],
        vec!["--vault", "kv1:colour=blue"],
        vec!["--listen", "0.0.0.0:0"],
        vec!["--vault", "bad.name"],
        vec!["--frobnicate"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep-emulator"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.is_empty());
    }
}

// ---- data-plane success paths (need the vault implementation) ----

async fn put_secret(emu: &Emulator, vault: &str, name: &str, value: &str) -> Value {
    let response = send(
        emu,
        Method::PUT,
        &url(emu, vault, &format!("/secrets/{name}?{API}")),
        true,
        Some(&json!({ "value": value }).to_string()),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn secrets_round_trip_with_trailing_slash_and_ids_from_host() {
    let emu = start().await;
    let port = port(&emu);
    let set = put_secret(&emu, "kv1", "s1", "v1").await;
    let id = set["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("https://kv1.vault.localhost:{port}/secrets/s1/")));
    let got: Value = get(&emu, &url(&emu, "kv1", &format!("/secrets/s1/?{API}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["value"], "v1");
    assert_eq!(got["id"], id);
    // No body and no content type on backup.
    let response = send(
        &emu,
        Method::POST,
        &url(&emu, "kv1", &format!("/secrets/s1/backup?{API}")),
        true,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn purge_is_a_bare_204() {
    let emu = start().await;
    put_secret(&emu, "kv1", "gone", "v").await;
    let response = send(
        &emu,
        Method::DELETE,
        &url(&emu, "kv1", &format!("/secrets/gone?{API}")),
        true,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        &emu,
        Method::DELETE,
        &url(&emu, "kv1", &format!("/deletedsecrets/gone?{API}")),
        true,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert!(!response.headers().contains_key("content-type"));
    assert!(response.headers().contains_key("x-ms-request-id"));
    assert!(response.bytes().await.unwrap().is_empty());
    emu.shutdown().await;
}

async fn list_all(emu: &Emulator, first: &str) -> (Vec<Value>, Vec<usize>, Vec<String>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut links = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(link) = next {
        let body: Value = get(emu, &link).await.json().await.unwrap();
        let page = body["value"].as_array().unwrap().clone();
        sizes.push(page.len());
        items.extend(page);
        next = body["nextLink"].as_str().map(str::to_string);
        links.extend(next.clone());
        assert!(sizes.len() < 1000, "paging does not end");
    }
    (items, sizes, links)
}

#[tokio::test]
async fn seeded_vaults_page_with_next_links_and_page_faults() {
    let emu = start().await;
    let control = emu.control();
    let report = control
        .seed(
            "kv1",
            &SeedSpec {
                kind: Collection::Secrets,
                prefix: "s".into(),
                count: 60,
                versions: 1,
                tags: Default::default(),
                value_bytes: 8,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.objects, 60);
    let vaults = control.vaults().await.unwrap();
    assert_eq!(
        vaults
            .iter()
            .find(|v| v.settings.name == "kv1")
            .unwrap()
            .counts
            .secrets,
        60
    );

    let (items, sizes, links) = list_all(&emu, &url(&emu, "kv1", &format!("/secrets?{API}"))).await;
    assert_eq!(items.len(), 60);
    assert_eq!(sizes, [25, 25, 10]);
    assert!(links.iter().all(|l| !l.contains("maxresults")));
    let (items, _, links) = list_all(
        &emu,
        &url(&emu, "kv1", &format!("/secrets?{API}&maxresults=7")),
    )
    .await;
    assert_eq!(items.len(), 60);
    assert!(links.iter().all(|l| l.ends_with("&maxresults=7")));

    // Empty pages (first one included) and short pages lose and repeat nothing.
    control
        .add_fault(&FaultSpec {
            count: Some(3),
            ..fault(FaultKind::EmptyPage)
        })
        .await
        .unwrap();
    control
        .add_fault(&FaultSpec {
            count: Some(2),
            page_size: Some(4),
            next_link_host: None,
            ..fault(FaultKind::ShortPage)
        })
        .await
        .unwrap();
    let (faulted, sizes, _) = list_all(&emu, &url(&emu, "kv1", &format!("/secrets?{API}"))).await;
    assert_eq!(&sizes[..5], [0, 0, 0, 4, 4]);
    assert_eq!(faulted, items);
    let counters = control.counters().await.unwrap();
    assert!(counters.vaults["kv1"]["secrets.list"] >= 10);
    emu.shutdown().await;
}

#[tokio::test]
async fn reset_after_carries_the_request_out_and_loses_the_answer() {
    let emu = start().await;
    let control = emu.control();
    put_secret(&emu, "kv1", "lost", "v").await;
    control
        .add_fault(&FaultSpec {
            op: Some("secrets.delete".into()),
            ..once(FaultKind::ResetAfter)
        })
        .await
        .unwrap();
    let delete = emu
        .http_client()
        .delete(url(&emu, "kv1", &format!("/secrets/lost?{API}")))
        .header("authorization", "Bearer x")
        .send()
        .await;
    assert!(
        delete.is_err(),
        "the connection is dropped without a response"
    );
    // The delete happened all the same.
    let deleted = get(
        &emu,
        &url(&emu, "kv1", &format!("/deletedsecrets/lost?{API}")),
    )
    .await;
    assert_eq!(deleted.status(), 200);
    let gone = get(&emu, &url(&emu, "kv1", &format!("/secrets/lost?{API}"))).await;
    assert_eq!(gone.status(), 404);
    let log = control.log(Some("kv1")).await.unwrap();
    assert!(
        log.iter().any(|e| e.fault.as_deref() == Some("resetAfter")
            && e.op.as_deref() == Some("secrets.delete")),
        "{log:?}"
    );
    emu.shutdown().await;
}
