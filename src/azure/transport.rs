//! The HTTPS transport for every Azure SDK client: a reqwest 0.13 client (the major version
//! `azure_core` 1.x implements `HttpClient` for) configured from `[azure]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{ClientOptions, Transport};

use super::response::error_chain;
use super::AzureSetupError;
use crate::config::{AzureConfig, CaScope};

/// TCP + TLS connect budget; the SDK's own default client uses the same figure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest silence while reading a response. A read timeout rather than a total one: a large
/// download that keeps making progress must not be cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the reqwest client for the vault and store endpoints:
///
/// - trusts the system roots **plus** `ca_file` when set (merged, so a private CA never stops
///   kvkeep from reaching the real Azure endpoints);
/// - resolves the host names in `resolve` to the configured addresses (port 0: the URL's port),
///   leaving every other name to the system resolver;
/// - follows no redirects (Azure REST APIs do not use them, and a redirect would carry the
///   bearer token to another host);
/// - does no automatic decompression: the blob client downloads byte ranges and checks lengths,
///   which a transparently gunzipped body would break.
pub fn http_client(azure: &AzureConfig) -> Result<reqwest::Client, AzureSetupError> {
    build(azure, true)
}

/// The client for the credential's token endpoint (Entra ID, the managed identity endpoint):
/// as [`http_client`], but it trusts `ca_file` only with `ca_scope = "all"`. Whoever holds a
/// private CA's key could otherwise impersonate the identity provider and collect the client
/// secret or federated token kvkeep presents there.
pub fn identity_http_client(azure: &AzureConfig) -> Result<reqwest::Client, AzureSetupError> {
    build(azure, azure.ca_scope == CaScope::All)
}

fn build(azure: &AzureConfig, trust_ca_file: bool) -> Result<reqwest::Client, AzureSetupError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_deflate()
        .no_brotli()
        .no_zstd()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT);
    if let Some(path) = azure.ca_file.as_ref().filter(|_| trust_ca_file) {
        let pem = std::fs::read(path).map_err(|source| AzureSetupError::ReadFile {
            what: "ca file",
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| AzureSetupError::BadFile {
                what: "ca file",
                path: path.clone(),
                reason: format!("not a PEM certificate bundle ({e})"),
            })?;
        if certs.is_empty() {
            return Err(AzureSetupError::BadFile {
                what: "ca file",
                path: path.clone(),
                reason: "it holds no PEM certificate".to_string(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    for (host, ip) in &azure.resolve {
        builder = builder.resolve(host, SocketAddr::new(*ip, 0));
    }
    builder
        .build()
        .map_err(|e| AzureSetupError::HttpClient(error_chain(&e)))
}

/// `azure_core` client options whose transport is [`http_client`]. Retry stays at the SDK
/// default; callers that retry at a higher level (the blob store does, see
/// `store::RetryStore`) switch it off themselves.
pub fn client_options(azure: &AzureConfig) -> Result<ClientOptions, AzureSetupError> {
    options_with(http_client(azure)?)
}

/// `azure_core` client options for the credential, over [`identity_http_client`].
pub fn identity_client_options(azure: &AzureConfig) -> Result<ClientOptions, AzureSetupError> {
    options_with(identity_http_client(azure)?)
}

fn options_with(http: reqwest::Client) -> Result<ClientOptions, AzureSetupError> {
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialConfig;
    use std::collections::BTreeMap;

    fn config(ca_file: Option<std::path::PathBuf>) -> AzureConfig {
        AzureConfig {
            credential: CredentialConfig::Default,
            ca_file,
            ca_scope: CaScope::Services,
            resolve: BTreeMap::from([(
                "kv1.vault.localhost".to_string(),
                "127.0.0.1".parse().expect("ip"),
            )]),
            verify_challenge_resource: true,
        }
    }

    #[test]
    fn builds_without_a_ca_file() {
        http_client(&config(None)).expect("client without extra CA");
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let err = http_client(&config(Some(path.clone()))).expect_err("garbage CA");
        let text = err.to_string();
        assert!(
            text.contains("ca file") && text.contains(&path.display().to_string()),
            "{text}"
        );

        let missing = dir.path().join("missing.pem");
        let err = http_client(&config(Some(missing))).expect_err("missing CA");
        assert!(err.to_string().contains("cannot read ca file"), "{err}");
    }

    /// Whether a GET of `url` through `client` gets past TLS (any HTTP status will do).
    async fn tls_accepted(client: &reqwest::Client, url: &str) -> bool {
        client.get(url).send().await.is_ok()
    }

    #[tokio::test]
    async fn ca_file_is_trusted_for_the_identity_provider_only_with_scope_all() {
        let emulator = kvkeep_emulator::server::Emulator::start(
            kvkeep_emulator::server::EmulatorConfig::default(),
        )
        .await
        .expect("emulator");
        let url = emulator.info().control_url.clone();
        let mut azure = config(Some(emulator.info().ca_cert.clone()));

        // Default scope: the vault/store client trusts the private CA, the identity client not.
        assert!(tls_accepted(&http_client(&azure).expect("client"), &url).await);
        let identity = identity_http_client(&azure).expect("identity client");
        assert!(
            !tls_accepted(&identity, &url).await,
            "identity client trusted ca_file"
        );

        azure.ca_scope = CaScope::All;
        let identity = identity_http_client(&azure).expect("identity client");
        assert!(
            tls_accepted(&identity, &url).await,
            "ca_scope = all must trust ca_file"
        );
        // The services client is unchanged by the scope.
        assert!(tls_accepted(&http_client(&azure).expect("client"), &url).await);
    }
}
