//! The HTTPS server: TLS, host routing, the auth challenge, api-version checks, paging, the
//! control plane, throttling and fault injection around the vault state of [`crate::vault`].
//!
//! Request pipeline (data plane, see `dispatch.rs`): body read (bounded) → auth (§3.4, before
//! anything else) → vault lookup by `Host` → api-version → routing to an [`crate::api::Op`] →
//! counters → faults → throttle → [`crate::vault::Vault::apply`] → JSON with the §16 headers.
//! Every data-plane request lands in the request log, the unauthenticated ones included.

mod auth;
mod control;
mod dispatch;
mod faults;
mod listener;
mod paging;
mod response;
mod routing;
mod state;
mod stats;
mod throttle;

pub use auth::{AuthSettings, ChallengeMode, TokenMode};
pub use control::{TimeInfo, VaultInfo};
pub use faults::{FaultKind, FaultRule, FaultSpec};
pub use stats::{Counters, LogEntry};
pub use throttle::ThrottleSettings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::client::{self, ControlClient};
use crate::vault::VaultSettings;

use state::State;

/// How an emulator is started (library form of the command line in the README).
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The HTTPS listener; must be a loopback address. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Vaults that exist at start-up (and after a control-plane reset).
    pub vaults: Vec<VaultSettings>,
    /// Directory with `ca.pem`, `server.pem`, `server.key` (generated when absent); `None` = a
    /// temporary directory removed when the [`Emulator`] is dropped.
    pub cert_dir: Option<PathBuf>,
    /// Serve each vault on its own `127.0.0.1` port instead of routing by host name.
    pub loopback: bool,
    /// Makes the backup-blob master key deterministic (SHA-256 of the seed), so blobs made by one
    /// emulator run restore into the next; `None` = random.
    pub backup_key_seed: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            vaults: Vec::new(),
            cert_dir: None,
            loopback: false,
            backup_key_seed: None,
        }
    }
}

/// What a started emulator offers; the binary prints it as its one JSON ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyInfo {
    /// Start-up vault name → vault URL (`https://NAME.vault.localhost:PORT`, or
    /// `https://127.0.0.1:PORT` in loopback mode).
    pub vaults: BTreeMap<String, String>,
    /// Base URL of the control plane (`https://127.0.0.1:PORT/_emulator`).
    pub control_url: String,
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The certificate directory in use.
    pub cert_dir: PathBuf,
    /// The address the main listener is bound to.
    pub listen: String,
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Only loopback addresses may be served: the emulator accepts any token.
    #[error(
        "listen address {0} is not a loopback address; the emulator only serves 127.0.0.1/::1"
    )]
    NotLoopback(SocketAddr),
    /// A start-up vault's settings are invalid or duplicated.
    #[error("vault {name}: {reason}")]
    InvalidVault {
        /// The vault name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The listening socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The temporary certificate directory could not be created.
    #[error("creating a temporary certificate directory: {0}")]
    TempDir(std::io::Error),
    /// The test PKI could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The HTTP client for the emulator could not be built.
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// A running emulator. Dropping it stops the listeners (in the background); prefer
/// [`Emulator::shutdown`] to wait for open connections to finish.
#[derive(Debug)]
pub struct Emulator {
    info: ReadyInfo,
    state: Arc<State>,
    shutdown_tx: watch::Sender<bool>,
    tracker_rx: Option<mpsc::Receiver<()>>,
    http: reqwest::Client,
    control: ControlClient,
    // Kept only so the temporary certificate directory lives as long as the emulator.
    _temp_dir: Option<tempfile::TempDir>,
}

impl Emulator {
    /// Binds the listener(s), makes or loads the certificates, and starts serving on the current
    /// tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, StartError> {
        if !config.listen.ip().is_loopback() {
            return Err(StartError::NotLoopback(config.listen));
        }
        let mut startup = Vec::new();
        for settings in &config.vaults {
            let settings = control::validate_settings(settings.clone()).map_err(|e| {
                StartError::InvalidVault {
                    name: settings.name.clone(),
                    reason: e.message,
                }
            })?;
            if startup
                .iter()
                .any(|s: &VaultSettings| s.name == settings.name)
            {
                return Err(StartError::InvalidVault {
                    name: settings.name,
                    reason: "listed twice".into(),
                });
            }
            startup.push(settings);
        }

        let (temp_dir, dir) = match &config.cert_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("kvkeep-emulator-")
                    .tempdir()
                    .map_err(StartError::TempDir)?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let paths = crate::tls::ensure_cert_dir(&dir)?;
        let tls = crate::tls::server_config(&paths)?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;

        let master_key = match &config.backup_key_seed {
            Some(seed) => Sha256::digest(seed.as_bytes()).into(),
            None => rand::random::<[u8; 32]>(),
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (tracker_tx, tracker_rx) = mpsc::channel::<()>(1);
        let state = Arc::new(State::new(
            tls,
            local.port(),
            config.loopback,
            master_key,
            startup.clone(),
            shutdown_rx,
            tracker_tx,
        ));
        for settings in &startup {
            state
                .create_vault(settings.clone())
                .await
                .map_err(|e| StartError::InvalidVault {
                    name: settings.name.clone(),
                    reason: e.message,
                })?;
        }
        listener::spawn(state.clone(), listener, listener::Binding::Shared);

        let host = match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let control_url = format!("https://{host}:{}/_emulator", local.port());
        let vaults = startup
            .iter()
            .filter_map(|s| state.vault_url(&s.name).map(|url| (s.name.clone(), url)))
            .collect();
        let info = ReadyInfo {
            vaults,
            control_url: control_url.clone(),
            ca_cert: paths.ca_cert.clone(),
            cert_dir: paths.dir.clone(),
            listen: local.to_string(),
        };
        let http = client::http_client(&paths.ca_cert)?;
        let control = ControlClient::new(http.clone(), control_url);
        tracing::info!(listen = %local, loopback = config.loopback, vaults = startup.len(), "emulator ready");
        Ok(Emulator {
            info,
            state,
            shutdown_tx,
            tracker_rx: Some(tracker_rx),
            http,
            control,
            _temp_dir: temp_dir,
        })
    }

    /// The ready information (the same data as the binary's JSON ready line).
    pub fn info(&self) -> &ReadyInfo {
        &self.info
    }

    /// URL of a start-up vault (vaults created later are listed by `GET /_emulator/vaults`).
    pub fn vault_url(&self, name: &str) -> Option<&str> {
        self.info
            .vaults
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, url)| url.as_str())
    }

    /// A reqwest client that trusts the emulator's CA, resolves `*.localhost` to 127.0.0.1 and
    /// follows no redirects (as azure_core's own client).
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Typed access to the control plane.
    pub fn control(&self) -> ControlClient {
        self.control.clone()
    }

    /// Stops accepting, lets open connections finish their request in flight (at most 5 s), and
    /// returns when everything is closed.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        // Connection and accept tasks each hold a tracker sender; once the state's own copy is
        // gone the channel closes exactly when the last of them has ended.
        self.state.drop_tracker();
        if let Some(mut rx) = self.tracker_rx.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // A test that fails before calling shutdown must not leave a server behind.
        let _ = self.shutdown_tx.send(true);
        self.state.drop_tracker();
    }
}
