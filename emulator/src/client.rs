//! Client-side helpers for talking to the emulator from Rust: a DNS resolver for `*.localhost`
//! (the system resolver here does not know those names), a reqwest client that trusts the
//! emulator's CA, and [`ControlClient`], typed calls to the control plane.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{SeedReport, SeedSpec};
use crate::server::{
    AuthSettings, Counters, FaultRule, FaultSpec, LogEntry, ThrottleSettings, TimeInfo, VaultInfo,
};
use crate::vault::VaultSettings;

/// Resolves `localhost` and every `*.localhost` name to 127.0.0.1 (RFC 6761 reserves them for
/// loopback); other names go to the system resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalhostResolver;

impl Resolve for LocalhostResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            // Port 0: reqwest substitutes the URL's port.
            let addrs: Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(addrs.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

/// Which roots a client built by [`client_builder`] trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustRoots {
    /// Only the emulator's CA (`tls_certs_only`): the safe choice for tests.
    CaOnly,
    /// The emulator's CA in addition to the platform's roots (`tls_certs_merge`), for a client
    /// that also talks to real endpoints.
    CaAndSystem,
}

/// Errors building a client or calling the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read.
    #[error("reading CA certificate {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// reqwest refused the configuration, or the request failed on the wire.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The control plane answered with an error status.
    #[error("control plane answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
}

/// A reqwest 0.13 client builder trusting the CA in `ca_cert` (PEM), resolving `*.localhost`
/// with [`LocalhostResolver`], HTTP/1.1 only and following no redirects (as azure_core's own
/// client does). Add timeouts or pool settings before `build()`.
pub fn client_builder(
    ca_cert: &Path,
    roots: TrustRoots,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let pem = std::fs::read(ca_cert).map_err(|source| ClientError::ReadCa {
        path: ca_cert.to_path_buf(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)?;
    let builder = reqwest::Client::builder();
    let builder = match roots {
        TrustRoots::CaOnly => builder.tls_certs_only(certs),
        TrustRoots::CaAndSystem => builder.tls_certs_merge(certs),
    };
    Ok(builder
        .dns_resolver(LocalhostResolver)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .connect_timeout(std::time::Duration::from_secs(10)))
}

/// [`client_builder`] with only the emulator's CA, built.
pub fn http_client(ca_cert: &Path) -> Result<reqwest::Client, ClientError> {
    Ok(client_builder(ca_cert, TrustRoots::CaOnly)?.build()?)
}

/// Typed calls to the control plane (`/_emulator/...`, README table).
#[derive(Debug, Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct VaultList {
    vaults: Vec<VaultInfo>,
}

#[derive(Deserialize)]
struct FaultList {
    faults: Vec<FaultRule>,
}

#[derive(Deserialize)]
struct FaultId {
    id: u64,
}

#[derive(Deserialize)]
struct RequestLog {
    requests: Vec<LogEntry>,
}

impl ControlClient {
    /// A client for the control plane at `control_url` (the ready line's `controlUrl`).
    pub fn new(http: reqwest::Client, control_url: impl Into<String>) -> Self {
        ControlClient {
            http,
            base: control_url.into().trim_end_matches('/').to_string(),
        }
    }

    /// The control plane's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, ClientError> {
        let mut request = self.http.request(method, format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let value = self.send(method, path, body).await?.unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| ClientError::Status {
            status: 200,
            body: format!("unexpected answer: {e}"),
        })
    }

    fn to_value(value: &impl Serialize) -> Option<Value> {
        // The control-plane types all serialise to plain JSON objects.
        serde_json::to_value(value).ok()
    }

    /// `GET /vaults`.
    pub async fn vaults(&self) -> Result<Vec<VaultInfo>, ClientError> {
        Ok(self
            .call::<VaultList>(Method::GET, "vaults", None)
            .await?
            .vaults)
    }

    /// `POST /vaults`.
    pub async fn create_vault(&self, settings: &VaultSettings) -> Result<VaultInfo, ClientError> {
        self.call(Method::POST, "vaults", Self::to_value(settings))
            .await
    }

    /// `PATCH /vaults/{name}` with any subset of the settings but `name`, e.g.
    /// `json!({"purgeProtection": true})`.
    pub async fn update_vault(&self, name: &str, patch: Value) -> Result<VaultInfo, ClientError> {
        self.call(Method::PATCH, &format!("vaults/{name}"), Some(patch))
            .await
    }

    /// `DELETE /vaults/{name}`.
    pub async fn delete_vault(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("vaults/{name}"), None)
            .await
            .map(drop)
    }

    /// `POST /vaults/{name}/seed`.
    pub async fn seed(&self, vault: &str, spec: &SeedSpec) -> Result<SeedReport, ClientError> {
        self.call(
            Method::POST,
            &format!("vaults/{vault}/seed"),
            Self::to_value(spec),
        )
        .await
    }

    /// `GET /time`.
    pub async fn time(&self) -> Result<TimeInfo, ClientError> {
        self.call(Method::GET, "time", None).await
    }

    /// `POST /time {"shiftSeconds"}`: the vault clock becomes wall clock + `seconds`.
    pub async fn set_time_shift(&self, seconds: i64) -> Result<TimeInfo, ClientError> {
        self.call(
            Method::POST,
            "time",
            Some(json!({ "shiftSeconds": seconds })),
        )
        .await
    }

    /// `POST /time {"advanceSeconds"}`: moves the vault clock forward (or back) by `seconds`.
    pub async fn advance_time(&self, seconds: i64) -> Result<TimeInfo, ClientError> {
        self.call(
            Method::POST,
            "time",
            Some(json!({ "advanceSeconds": seconds })),
        )
        .await
    }

    /// `GET /throttle`.
    pub async fn throttle(&self) -> Result<ThrottleSettings, ClientError> {
        self.call(Method::GET, "throttle", None).await
    }

    /// `PUT /throttle` (all fields).
    pub async fn set_throttle(
        &self,
        settings: &ThrottleSettings,
    ) -> Result<ThrottleSettings, ClientError> {
        self.call(Method::PUT, "throttle", Self::to_value(settings))
            .await
    }

    /// `POST /faults`; returns the rule id.
    pub async fn add_fault(&self, spec: &FaultSpec) -> Result<u64, ClientError> {
        Ok(self
            .call::<FaultId>(Method::POST, "faults", Self::to_value(spec))
            .await?
            .id)
    }

    /// `GET /faults`.
    pub async fn faults(&self) -> Result<Vec<FaultRule>, ClientError> {
        Ok(self
            .call::<FaultList>(Method::GET, "faults", None)
            .await?
            .faults)
    }

    /// `DELETE /faults/{id}`.
    pub async fn delete_fault(&self, id: u64) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("faults/{id}"), None)
            .await
            .map(drop)
    }

    /// `DELETE /faults`.
    pub async fn clear_faults(&self) -> Result<(), ClientError> {
        self.send(Method::DELETE, "faults", None).await.map(drop)
    }

    /// `GET /counters`.
    pub async fn counters(&self) -> Result<Counters, ClientError> {
        self.call(Method::GET, "counters", None).await
    }

    /// `DELETE /counters`.
    pub async fn clear_counters(&self) -> Result<(), ClientError> {
        self.send(Method::DELETE, "counters", None).await.map(drop)
    }

    /// `GET /log[?vault=]`.
    pub async fn log(&self, vault: Option<&str>) -> Result<Vec<LogEntry>, ClientError> {
        let path = match vault {
            Some(vault) => format!("log?vault={vault}"),
            None => "log".to_string(),
        };
        Ok(self
            .call::<RequestLog>(Method::GET, &path, None)
            .await?
            .requests)
    }

    /// `DELETE /log`.
    pub async fn clear_log(&self) -> Result<(), ClientError> {
        self.send(Method::DELETE, "log", None).await.map(drop)
    }

    /// `GET /auth`.
    pub async fn auth(&self) -> Result<AuthSettings, ClientError> {
        self.call(Method::GET, "auth", None).await
    }

    /// `PUT /auth`.
    pub async fn set_auth(&self, settings: &AuthSettings) -> Result<AuthSettings, ClientError> {
        self.call(Method::PUT, "auth", Self::to_value(settings))
            .await
    }

    /// `POST /reset`.
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.send(Method::POST, "reset", None).await.map(drop)
    }
}
