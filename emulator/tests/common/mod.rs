//! Shared harness of the SDK contract tests (`sdk_*.rs`): an in-process emulator with the vaults
//! `kv1` and `kv2` (same geography and subscription) and `kvfar` (another geography), a fake token
//! credential, clients of the GA crates wired to the emulator's HTTPS transport with the challenge
//! verification left at its default, and small helpers for the control plane and SDK errors.
//!
//! Every test starts its own emulator on an ephemeral loopback port, so tests are independent and
//! run in parallel.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_core::time::{Duration, OffsetDateTime};
use azure_security_keyvault_certificates::models::{
    CertificatePolicy, ImportCertificateParameters, SecretProperties as CertSecretProperties,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use kvkeep_emulator::server::{Emulator, EmulatorConfig};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::{json, Value};

/// The main vault.
pub const KV1: &str = "kv1";
/// A second vault in the same geography and subscription as `kv1`.
pub const KV2: &str = "kv2";
/// A vault in another geography: backups of `kv1` must not restore there.
pub const KVFAR: &str = "kvfar";

/// A credential that hands out a fixed token valid for an hour and remembers the scopes it was
/// asked for (the challenge flow derives the scope from the emulator's `WWW-Authenticate`).
#[derive(Debug, Default)]
pub struct FakeCredential {
    scopes: Mutex<Vec<String>>,
}

impl FakeCredential {
    /// Every scope requested so far, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken {
            token: Secret::new("fake-token".to_string()),
            expires_on: OffsetDateTime::now_utc() + Duration::hours(1),
        })
    }
}

/// A running emulator plus everything a test needs to talk to it.
pub struct Env {
    /// The in-process emulator.
    pub emulator: Emulator,
    /// The credential every client of this environment shares.
    pub credential: Arc<FakeCredential>,
}

/// Starts an emulator with `kv1`, `kv2` and `kvfar`.
pub async fn start() -> Env {
    start_with_seed(None).await
}

/// Like [`start`], with a deterministic backup-blob key (`EmulatorConfig::backup_key_seed`).
pub async fn start_with_seed(backup_key_seed: Option<&str>) -> Env {
    let mut far = VaultSettings::named(KVFAR);
    far.geo = "asia".into();
    far.region = "japaneast".into();
    let emulator = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named(KV1), VaultSettings::named(KV2), far],
        backup_key_seed: backup_key_seed.map(str::to_string),
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");
    Env {
        emulator,
        credential: Arc::new(FakeCredential::default()),
    }
}

impl Env {
    /// `https://{vault}.vault.localhost:{port}`.
    pub fn url(&self, vault: &str) -> String {
        self.emulator
            .vault_url(vault)
            .unwrap_or_else(|| panic!("vault {vault} is served"))
            .to_string()
    }

    /// `host:port` of a vault, the authority every id of that vault starts with.
    pub fn authority(&self, vault: &str) -> String {
        self.url(vault)
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.authority(KV1)
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("vault URLs carry the port")
    }

    /// Client options: the emulator's transport (trusts its CA, resolves `*.localhost`) and a
    /// quick exponential retry policy so retried faults don't slow the suite down.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.emulator.http_client()))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: Duration::milliseconds(10),
                max_retries: 4,
                max_delay: Duration::seconds(2),
                max_total_elapsed: Duration::seconds(60),
            }),
            ..ClientOptions::default()
        }
    }

    /// A `SecretClient` for a vault (api-version and challenge verification at their defaults).
    pub fn secrets(&self, vault: &str) -> SecretClient {
        SecretClient::new(
            &self.url(vault),
            self.credential.clone(),
            Some(SecretClientOptions {
                client_options: self.client_options(),
                ..SecretClientOptions::default()
            }),
        )
        .expect("secret client")
    }

    /// A `KeyClient` for a vault.
    pub fn keys(&self, vault: &str) -> KeyClient {
        KeyClient::new(
            &self.url(vault),
            self.credential.clone(),
            Some(KeyClientOptions {
                client_options: self.client_options(),
                ..KeyClientOptions::default()
            }),
        )
        .expect("key client")
    }

    /// A `CertificateClient` for a vault.
    pub fn certificates(&self, vault: &str) -> CertificateClient {
        CertificateClient::new(
            &self.url(vault),
            self.credential.clone(),
            Some(CertificateClientOptions {
                client_options: self.client_options(),
                ..CertificateClientOptions::default()
            }),
        )
        .expect("certificate client")
    }

    /// Sends one control-plane request (`path` relative to `/_emulator/`) and returns the status
    /// and the JSON body (`Value::Null` when empty).
    pub async fn control(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!(
            "{}/{}",
            self.emulator.info().control_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let http = self.emulator.http_client();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut request = http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control plane answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("control plane body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("control plane answers JSON")
        };
        (status, value)
    }

    /// Installs a fault rule (`POST /_emulator/faults`).
    pub async fn add_fault(&self, rule: Value) {
        let (status, body) = self.control("POST", "faults", Some(rule.clone())).await;
        assert_eq!(status, 201, "fault {rule} accepted: {body}");
    }

    /// The fault rules with their `fired`/`remaining` counters.
    pub async fn faults(&self) -> Vec<Value> {
        let (status, body) = self.control("GET", "faults", None).await;
        assert_eq!(status, 200, "{body}");
        body["faults"].as_array().cloned().unwrap_or_default()
    }

    /// Changes vault settings (`PATCH /_emulator/vaults/{name}`).
    pub async fn patch_vault(&self, vault: &str, settings: Value) {
        let (status, body) = self
            .control("PATCH", &format!("vaults/{vault}"), Some(settings))
            .await;
        assert_eq!(status, 200, "vault {vault} patched: {body}");
    }

    /// The request log of one vault, oldest first.
    pub async fn request_log(&self, vault: &str) -> Vec<Value> {
        let (status, body) = self
            .control("GET", &format!("log?vault={vault}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let mut requests = body["requests"].as_array().cloned().unwrap_or_default();
        requests.sort_by_key(|r| r["seq"].as_u64());
        requests
    }

    /// Log entries of one operation (`secrets.get`, ...).
    pub async fn requests_of(&self, vault: &str, op: &str) -> Vec<Value> {
        self.request_log(vault)
            .await
            .into_iter()
            .filter(|r| r["op"] == json!(op))
            .collect()
    }

    /// Statuses of the logged requests of one operation, oldest first.
    pub async fn statuses_of(&self, vault: &str, op: &str) -> Vec<u64> {
        self.requests_of(vault, op)
            .await
            .iter()
            .map(|r| r["status"].as_u64().unwrap_or(0))
            .collect()
    }

    /// Clears the request log.
    pub async fn clear_log(&self) {
        let (status, body) = self.control("DELETE", "log", None).await;
        assert_eq!(status, 204, "{body}");
    }
}

/// Unwraps the error of an SDK call and checks the HTTP status and the service error code the SDK
/// extracted (`ErrorKind::HttpResponse { status, error_code, .. }`).
#[track_caller]
pub fn expect_http_error<T>(
    result: azure_core::Result<T>,
    status: u16,
    code: &str,
) -> azure_core::Error {
    let err = match result {
        Ok(_) => panic!("expected HTTP {status} {code:?}, but the call succeeded"),
        Err(err) => err,
    };
    assert_eq!(
        err.http_status().map(u16::from),
        Some(status),
        "status of {err:?}"
    );
    match err.kind() {
        ErrorKind::HttpResponse { error_code, .. } => {
            assert_eq!(error_code.as_deref(), Some(code), "error code of {err:?}")
        }
        other => panic!("expected an HTTP response error, got {other:?}"),
    }
    err
}

/// Unwraps the error of an SDK call and checks the HTTP status and the `error.code` of the body the
/// service sent.
///
/// For errors whose message contains a JSON escape (the service's `Operation "purge" is not
/// allowed…` and `Operation "backup" is not allowed…` wordings): azure_core 1.1's `check_success`
/// reads `code`/`message` as borrowed `&str`, which cannot hold an unescaped copy, so the parse
/// fails and the SDK reports the status number (`"403"`) as `error_code`. The daemon sees the same
/// against the real service; the body still carries the real code.
#[track_caller]
pub fn expect_http_error_body<T>(
    result: azure_core::Result<T>,
    status: u16,
    code: &str,
) -> azure_core::Error {
    let err = expect_http_status(result, status);
    assert_eq!(
        error_body(&err)["error"]["code"].as_str(),
        Some(code),
        "error.code in the body of {err:?}"
    );
    err
}

/// Unwraps the error of an SDK call and checks only the HTTP status.
#[track_caller]
pub fn expect_http_status<T>(result: azure_core::Result<T>, status: u16) -> azure_core::Error {
    let err = match result {
        Ok(_) => panic!("expected HTTP {status}, but the call succeeded"),
        Err(err) => err,
    };
    assert_eq!(
        err.http_status().map(u16::from),
        Some(status),
        "status of {err:?}"
    );
    err
}

/// The JSON error body the service sent with an SDK error.
pub fn error_body(err: &azure_core::Error) -> Value {
    match err.kind() {
        ErrorKind::HttpResponse {
            raw_response: Some(raw),
            ..
        } => serde_json::from_slice(raw.body().as_ref()).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `error.innererror.code` of an SDK error, when the service sent one.
pub fn inner_code(err: &azure_core::Error) -> Option<String> {
    error_body(err)["error"]["innererror"]["code"]
        .as_str()
        .map(str::to_string)
}

/// `error.message` of an SDK error.
pub fn error_message(err: &azure_core::Error) -> String {
    error_body(err)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts that `pages` (of a listing) hold each of `expected` exactly once.
pub fn assert_each_once(pages: &[Vec<String>], expected: &[String]) {
    let all: Vec<&String> = pages.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "no name is listed twice: {pages:?}"
    );
    let expected: HashSet<&String> = expected.iter().collect();
    assert_eq!(unique, expected, "every name is listed");
}

/// The content type of a PEM certificate bundle.
pub const PEM: &str = "application/x-pem-file";

/// Import parameters for a PEM bundle whose managed secret keeps the PEM content type.
pub fn pem_import(pem: &str) -> ImportCertificateParameters {
    ImportCertificateParameters {
        base64_encoded_certificate: Some(pem.to_string()),
        certificate_policy: Some(CertificatePolicy {
            secret_properties: Some(CertSecretProperties {
                content_type: Some(PEM.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Tags from string pairs.
pub fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Flips bits in the middle of a backup blob.
pub fn corrupt(blob: &[u8]) -> Vec<u8> {
    let mut bad = blob.to_vec();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..(mid + 8).min(blob.len())] {
        *b ^= 0x5a;
    }
    bad
}

/// A self-signed certificate (ECDSA P-256, made with rcgen) as the PEM bundle Key Vault imports:
/// the certificate followed by its PKCS#8 private key. Returns `(pem_bundle, certificate_der)`.
pub fn self_signed_pem(common_name: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key pair");
    let mut params = rcgen::CertificateParams::new(vec![format!("{common_name}.example.test")])
        .expect("certificate params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    (pem, cert.der().to_vec())
}
