//! Azurite, the Azure Storage emulator (npm package `azurite`, pinned in `package.json`), run as a
//! child process over HTTPS for the integration tests, plus what a client needs to talk to it
//! through the official `azure_storage_blob` crate: a transport trusting the test CA, a fake
//! Entra ID credential and account SAS tokens signed with the emulator's well-known key.
//!
//! ```ignore
//! let azurite = Azurite::start().await.expect("azurite starts");
//! let service = azurite.service_client_with_token().expect("blob service client");
//! ```
//!
//! Each [`Azurite`] is its own process on its own loopback port with in-memory storage, so tests
//! never share state; the process is killed (and reaped) when the value is dropped, including
//! when the test panics.

// The harness stands in for Entra ID and Azure Storage, which run on real time: tokens and SAS
// validity windows must come from the wall clock, not from kvkeep's (pinnable) clock.
#![allow(clippy::disallowed_methods)]

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport, Url};
use azure_core::time::OffsetDateTime;
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use base64::Engine as _;
use kvkeep_emulator::tls::{ensure_cert_dir, CertPaths};
use tempfile::TempDir;

/// The storage account every Azurite instance serves.
pub const ACCOUNT: &str = "devstoreaccount1";

/// The well-known (public, documented) key of Azurite's `devstoreaccount1`.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The signed version (`sv`) of the SAS tokens made here. Azurite picks its string-to-sign by
/// comparing `sv` with "2020-12-06" (from then on the string carries the encryption scope line);
/// any real service version from then on works.
pub const SAS_VERSION: &str = "2025-11-05";

/// Permissions of [`Azurite::sas_service_url`]: read, write, delete, list, add, create, update,
/// process, tags (in the order the service documents for account SAS).
pub const ALL_BLOB_PERMISSIONS: &str = "rwdlacupt";

/// How long [`Azurite::start`] waits for the emulator to answer. It is ready in under a second
/// on an idle machine; the margin is for a 2-core machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The free port is picked before Azurite binds it, so another process can take it in between;
/// such a start is retried on a new port.
const START_ATTEMPTS: usize = 3;

/// Why Azurite could not be started.
#[derive(thiserror::Error)]
pub enum AzuriteError {
    /// The npm package is not installed in the repository.
    #[error("azurite is not installed ({bin} is missing): run `npm ci` first in {repo}")]
    NotInstalled {
        /// The launcher that was looked for.
        bin: PathBuf,
        /// The repository root, where `package.json` is.
        repo: PathBuf,
    },
    /// Local file or process handling failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The test PKI could not be made.
    #[error("test certificates for azurite: {0}")]
    Certs(#[from] kvkeep_emulator::tls::TlsError),
    /// The HTTPS client could not be built.
    #[error("https client for azurite: {0}")]
    Client(#[from] reqwest::Error),
    /// Azurite exited before it answered.
    #[error("azurite exited before it was ready ({status}); its output:\n{output}")]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
    /// Azurite kept running but never answered over HTTPS.
    #[error("azurite did not answer on {url} within {waited:?} (last error: {last_error}); its output:\n{output}")]
    NotReady {
        /// The URL probed.
        url: String,
        /// How long it was given.
        waited: Duration,
        /// The last probe failure.
        last_error: String,
        /// Its stdout and stderr.
        output: String,
    },
}

// `expect` prints errors with `Debug`; the message (with azurite's output) reads better.
impl fmt::Debug for AzuriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AzuriteError {
    let what = what.into();
    move |source| AzuriteError::Io { what, source }
}

/// A running Azurite blob service on `https://127.0.0.1:<port>/devstoreaccount1`.
pub struct Azurite {
    // Declared first so it is dropped (killed and reaped) before the scratch directory goes.
    process: Process,
    port: u16,
    certs: CertPaths,
    http: reqwest::Client,
    scratch: TempDir,
}

impl fmt::Debug for Azurite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azurite")
            .field("pid", &self.process.child.id())
            .field("port", &self.port)
            .field("scratch", &self.scratch.path())
            .finish()
    }
}

impl Azurite {
    /// Starts a fresh, empty Azurite blob service (HTTPS, OAuth `basic`, in-memory storage) on a
    /// free loopback port and waits until it answers.
    ///
    /// Needs `node_modules/` at the repository root (`npm ci`).
    pub async fn start() -> Result<Self, AzuriteError> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let bin = repo.join("node_modules").join(".bin").join("azurite-blob");
        if !bin.exists() {
            return Err(AzuriteError::NotInstalled { bin, repo });
        }

        let scratch = tempfile::Builder::new()
            .prefix("kvkeep-azurite-")
            .tempdir()
            .map_err(io("creating a scratch directory for azurite"))?;
        let certs = ensure_cert_dir(&scratch.path().join("certs"))?;
        let workdir = scratch.path().join("work");
        std::fs::create_dir(&workdir).map_err(io(format!(
            "creating azurite's working directory {}",
            workdir.display()
        )))?;
        let ca_pem = std::fs::read(&certs.ca_cert)
            .map_err(io(format!("reading {}", certs.ca_cert.display())))?;
        let http = https_client(&ca_pem)?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_loopback_port()?;
            let logs = scratch.path().join(format!("azurite-{port}"));
            let process = Process::spawn(&bin, &workdir, &certs, port, &logs)?;
            match wait_until_ready(process, port, &http).await {
                Ok(process) => {
                    return Ok(Azurite {
                        process,
                        port,
                        certs,
                        http,
                        scratch,
                    })
                }
                Err(AzuriteError::Exited { output, .. })
                    if attempt < START_ATTEMPTS && output.contains("EADDRINUSE") =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The loopback port Azurite listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The blob service URL, `https://127.0.0.1:<port>/devstoreaccount1`.
    ///
    /// It has no trailing slash on purpose: `azure_storage_blob` appends path segments, and
    /// `…/devstoreaccount1/` would become `…/devstoreaccount1//container` (Azurite answers 400).
    pub fn service_url(&self) -> Url {
        service_url(self.port)
    }

    /// The blob service URL with an account SAS granting [`ALL_BLOB_PERMISSIONS`] for one hour
    /// in its query. Clients built on it need no credential; clients derived from them
    /// (container, blob) keep the query.
    pub fn sas_service_url(&self) -> Url {
        let expires_on = OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        let mut url = self.service_url();
        // The SAS comes from a constant key and formatted times; failing here is a harness bug.
        let sas = account_sas(ALL_BLOB_PERMISSIONS, expires_on)
            .expect("signing an account SAS with the well-known devstoreaccount1 key");
        url.set_query(Some(&sas));
        url
    }

    /// The PEM file of the CA that signed Azurite's server certificate.
    pub fn ca_cert_path(&self) -> &Path {
        &self.certs.ca_cert
    }

    /// A reqwest client that trusts only the test CA, with automatic decompression off (the
    /// blob crate's partitioned downloads need the raw bytes) and no proxy.
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `azure_core` client options using [`Self::http_client`] as transport, with short
    /// retries so a failing test fails fast.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(50),
                max_retries: 3,
                max_delay: azure_core::time::Duration::seconds(1),
                max_total_elapsed: azure_core::time::Duration::seconds(10),
            }),
            ..Default::default()
        }
    }

    /// Blob service client options with [`Self::client_options`] and the crate's default
    /// `x-ms-version` (2026-04-06, which Azurite 3.37 accepts).
    pub fn blob_service_options(&self) -> BlobServiceClientOptions {
        BlobServiceClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        }
    }

    /// A fake Entra ID credential whose tokens Azurite (`--oauth basic`) accepts.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(FakeJwtCredential::default())
    }

    /// A blob service client authenticating with a bearer token from [`Self::credential`].
    pub fn service_client_with_token(&self) -> azure_core::Result<BlobServiceClient> {
        BlobServiceClient::new(
            self.service_url(),
            Some(self.credential()),
            Some(self.blob_service_options()),
        )
    }

    /// A blob service client without credential, authorised by the SAS of
    /// [`Self::sas_service_url`].
    pub fn service_client_with_sas(&self) -> azure_core::Result<BlobServiceClient> {
        BlobServiceClient::new(
            self.sas_service_url(),
            None,
            Some(self.blob_service_options()),
        )
    }
}

fn service_url(port: u16) -> Url {
    // Built from a literal and a number: always a valid URL.
    Url::parse(&format!("https://{}:{port}/{ACCOUNT}", Ipv4Addr::LOCALHOST))
        .expect("loopback service URL parses")
}

fn https_client(ca_pem: &[u8]) -> Result<reqwest::Client, AzuriteError> {
    let ca = reqwest::Certificate::from_pem(ca_pem)?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_gzip()
        .no_deflate()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Asks the kernel for a free port on 127.0.0.1 and releases it for Azurite to bind.
fn free_loopback_port() -> Result<u16, AzuriteError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io("reading the free loopback port"))?
        .port();
    Ok(port)
}

/// The Azurite child process; killed and reaped on drop.
struct Process {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    fn spawn(
        bin: &Path,
        workdir: &Path,
        certs: &CertPaths,
        port: u16,
        logs: &Path,
    ) -> Result<Self, AzuriteError> {
        let stdout = logs.with_extension("stdout");
        let stderr = logs.with_extension("stderr");
        // Files, not pipes: nobody reads the output while the tests run, and a full pipe
        // would block the emulator.
        let stdout_file =
            File::create(&stdout).map_err(io(format!("creating {}", stdout.display())))?;
        let stderr_file =
            File::create(&stderr).map_err(io(format!("creating {}", stderr.display())))?;
        // No --skipApiVersionCheck: Azurite 3.37.0 accepts the 2026-04-06 x-ms-version that
        // azure_storage_blob 1.1 sends (3.35 did not), and the check catches a client newer
        // than the pinned emulator. --location is not given: it cannot be combined with
        // --inMemoryPersistence; the working directory keeps Azurite's stray files instead.
        let child = Command::new(bin)
            .arg("--blobHost")
            .arg(Ipv4Addr::LOCALHOST.to_string())
            .arg("--blobPort")
            .arg(port.to_string())
            .arg("--cert")
            .arg(&certs.server_cert)
            .arg("--key")
            .arg(&certs.server_key)
            .args([
                "--oauth",
                "basic",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
            ])
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr_file)
            .spawn()
            .map_err(io(format!("starting {} (is node on PATH?)", bin.display())))?;
        Ok(Process {
            child,
            stdout,
            stderr,
        })
    }

    fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read(&self.stdout),
            read(&self.stderr)
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL, then wait so the port is closed once the drop returns. Errors mean the
        // process is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Probes the service until it answers anything over HTTPS (an unauthenticated request gets 403,
/// which proves TLS and the listener are up).
async fn wait_until_ready(
    mut process: Process,
    port: u16,
    http: &reqwest::Client,
) -> Result<Process, AzuriteError> {
    let mut probe = service_url(port);
    probe.set_query(Some("comp=list"));
    let started = Instant::now();
    loop {
        if let Some(status) = process
            .child
            .try_wait()
            .map_err(io("checking whether azurite is still running"))?
        {
            return Err(AzuriteError::Exited {
                status,
                output: process.output(),
            });
        }
        let last_error = match http
            .get(probe.as_str())
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(_) => return Ok(process),
            Err(e) => error_chain(&e),
        };
        if started.elapsed() > READY_TIMEOUT {
            return Err(AzuriteError::NotReady {
                url: probe.to_string(),
                waited: READY_TIMEOUT,
                last_error,
                output: process.output(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Builds an account SAS query string (without `?`) for the blob service of `devstoreaccount1`,
/// HTTPS only, valid from a minute ago (clock skew) until `expires_on`.
///
/// `permissions` uses the account SAS letters (`r`, `w`, `d`, `l`, `a`, `c`, `u`, `p`, `t`, …)
/// in the documented order; resource types are service, container and object.
pub fn account_sas(permissions: &str, expires_on: OffsetDateTime) -> azure_core::Result<String> {
    let starts_on = OffsetDateTime::now_utc() - azure_core::time::Duration::minutes(1);
    let (services, resource_types, protocol) = ("b", "sco", "https");
    let start = sas_time(starts_on);
    let expiry = sas_time(expires_on);
    // Account SAS string-to-sign from version 2020-12-06 on: the fields below, an empty signed
    // IP, the (empty) encryption scope, and a final empty line.
    let string_to_sign = [
        ACCOUNT,
        permissions,
        services,
        resource_types,
        &start,
        &expiry,
        "",
        protocol,
        SAS_VERSION,
        "",
        "",
    ]
    .join("\n");
    let signature = azure_core::hmac::hmac_sha256(&string_to_sign, &Secret::new(ACCOUNT_KEY))?;
    let mut query = Url::parse("https://sas.invalid/").expect("literal URL parses");
    query
        .query_pairs_mut()
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", services)
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("st", &start)
        .append_pair("se", &expiry)
        .append_pair("spr", protocol)
        .append_pair("sig", &signature);
    Ok(query.query().unwrap_or_default().to_string())
}

/// SAS times are ISO 8601 in UTC to the second: `2026-01-02T03:04:05Z`.
fn sas_time(at: OffsetDateTime) -> String {
    // Normalise to UTC (the timestamp is in range because it came from a valid time).
    let at = OffsetDateTime::from_unix_timestamp(at.unix_timestamp()).unwrap_or(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A [`TokenCredential`] handing out unsigned JWTs that Azurite's `--oauth basic` mode accepts:
/// it decodes tokens without checking signatures, but requires `aud`, an `iss` under
/// `https://sts.windows.net/` and a valid `iat`/`nbf`/`exp` window.
#[derive(Debug, Clone)]
pub struct FakeJwtCredential {
    /// The tenant in `iss` and `tid`.
    pub tenant_id: String,
    /// The principal in `oid` (Azurite uses it for user delegation keys).
    pub object_id: String,
}

impl Default for FakeJwtCredential {
    fn default() -> Self {
        FakeJwtCredential {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string(),
            object_id: "6a8f9d1e-0b5c-4e3a-9f2d-7c1b0a4e5d6f".to_string(),
        }
    }
}

impl FakeJwtCredential {
    /// How long the tokens live; well above the 5 minutes under which azure_core's bearer
    /// policy fetches a new token for every request.
    pub const LIFETIME_MINUTES: i64 = 60;

    /// An unsigned JWT (`alg: none`) for `audience`, valid from `now` (back-dated a minute for
    /// clock skew) to `expires_on`.
    pub fn token(&self, audience: &str, now: OffsetDateTime, expires_on: OffsetDateTime) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
        let issued = now.unix_timestamp() - 60;
        let claims = serde_json::json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{}/", self.tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": expires_on.unix_timestamp(),
            "oid": self.object_id,
            "tid": self.tenant_id,
            "sub": self.object_id,
            "appid": self.object_id,
        });
        format!(
            "{}.{}.",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        )
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeJwtCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // The audience is the resource of the scope: `https://storage.azure.com/.default`
        // becomes `https://storage.azure.com`.
        let audience = scopes
            .first()
            .map(|scope| scope.trim_end_matches("/.default"))
            .unwrap_or("https://storage.azure.com");
        let now = OffsetDateTime::now_utc();
        let expires_on = now + azure_core::time::Duration::minutes(Self::LIFETIME_MINUTES);
        Ok(AccessToken::new(
            self.token(audience, now, expires_on),
            expires_on,
        ))
    }
}
