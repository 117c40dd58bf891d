//! The emulator's shared state: the vaults (each behind its own `std::sync::Mutex`), the clock
//! shift, and the control-plane settings every request consults.
//!
//! Vault locks are std mutexes on purpose: every vault operation is short and synchronous and the
//! lock is never held across an `.await`; bulk seeding takes the lock inside `spawn_blocking`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::error::KvError;
use crate::vault::{Vault, VaultSettings};

use super::auth::AuthState;
use super::faults::Faults;
use super::listener;
use super::stats::Stats;
use super::throttle::Throttle;

/// Locks a std mutex, recovering from poisoning: a panic inside one vault operation (caught and
/// answered with 500) must not take the whole emulator down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One vault and what the HTTP layer needs to know about it.
#[derive(Debug)]
pub(crate) struct VaultEntry {
    pub vault: Mutex<Vault>,
}

/// Everything the request handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub tls: Arc<rustls::ServerConfig>,
    /// Port of the main (host-routed) listener.
    pub port: u16,
    pub loopback: bool,
    master_key: [u8; 32],
    startup: Vec<VaultSettings>,
    /// Lower-case vault name → vault. A `RwLock` because lookups happen on every request and
    /// changes only through the control plane.
    vaults: RwLock<HashMap<String, Arc<VaultEntry>>>,
    /// Loopback mode: lower-case vault name → its port. Ports outlive the vault so that a vault
    /// deleted and created again (or restored by a reset) keeps its URL.
    loopback_ports: Mutex<HashMap<String, u16>>,
    time_shift: AtomicI64,
    pub auth: AuthState,
    pub throttle: Mutex<Throttle>,
    pub faults: Mutex<Faults>,
    pub stats: Stats,
    pub shutdown: watch::Receiver<bool>,
    tracker: Mutex<Option<mpsc::Sender<()>>>,
}

impl State {
    pub fn new(
        tls: Arc<rustls::ServerConfig>,
        port: u16,
        loopback: bool,
        master_key: [u8; 32],
        startup: Vec<VaultSettings>,
        shutdown: watch::Receiver<bool>,
        tracker: mpsc::Sender<()>,
    ) -> Self {
        State {
            tls,
            port,
            loopback,
            master_key,
            startup,
            vaults: RwLock::new(HashMap::new()),
            loopback_ports: Mutex::new(HashMap::new()),
            time_shift: AtomicI64::new(0),
            auth: AuthState::default(),
            throttle: Mutex::new(Throttle::default()),
            faults: Mutex::new(Faults::default()),
            stats: Stats::default(),
            shutdown,
            tracker: Mutex::new(Some(tracker)),
        }
    }

    /// A token a task holds while it runs, so shutdown can wait for it; `None` once shutting down.
    pub fn tracker(&self) -> Option<mpsc::Sender<()>> {
        lock(&self.tracker).clone()
    }

    pub fn drop_tracker(&self) {
        lock(&self.tracker).take();
    }

    /// The vaults' clock: wall clock plus the control plane's shift, in Unix seconds.
    pub fn now(&self) -> i64 {
        wall_clock() + self.time_shift.load(Ordering::Relaxed)
    }

    pub fn shift(&self) -> i64 {
        self.time_shift.load(Ordering::Relaxed)
    }

    pub fn set_shift(&self, seconds: i64) {
        self.time_shift.store(seconds, Ordering::Relaxed);
    }

    pub fn vault(&self, name: &str) -> Option<Arc<VaultEntry>> {
        let vaults = self.vaults.read().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = vaults.get(name) {
            return Some(entry.clone());
        }
        vaults.get(&name.to_ascii_lowercase()).cloned()
    }

    /// All vaults, sorted by name.
    pub fn vault_list(&self) -> Vec<(String, Arc<VaultEntry>)> {
        let vaults = self.vaults.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = vaults.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Creates a vault (settings already validated); in loopback mode binds its port first.
    pub async fn create_vault(self: &Arc<Self>, settings: VaultSettings) -> Result<(), KvError> {
        let key = settings.name.to_ascii_lowercase();
        if self.vault(&key).is_some() {
            return Err(vault_exists(&settings.name));
        }
        if self.loopback {
            self.ensure_loopback_port(&key).await?;
        }
        let entry = Arc::new(VaultEntry {
            vault: Mutex::new(Vault::new(settings.clone(), self.master_key)),
        });
        let mut vaults = self.vaults.write().unwrap_or_else(|p| p.into_inner());
        if vaults.contains_key(&key) {
            return Err(vault_exists(&settings.name));
        }
        vaults.insert(key, entry);
        Ok(())
    }

    async fn ensure_loopback_port(self: &Arc<Self>, key: &str) -> Result<(), KvError> {
        if lock(&self.loopback_ports).contains_key(key) {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| KvError::new(500, "InternalError", format!("binding a port: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| KvError::new(500, "InternalError", format!("binding a port: {e}")))?
            .port();
        let mut ports = lock(&self.loopback_ports);
        if ports.contains_key(key) {
            // Lost a race with a concurrent create of the same name; the other listener serves.
            return Ok(());
        }
        ports.insert(key.to_string(), port);
        drop(ports);
        listener::spawn(
            self.clone(),
            listener,
            listener::Binding::Vault(key.to_string()),
        );
        Ok(())
    }

    pub fn remove_vault(&self, name: &str) -> bool {
        let mut vaults = self.vaults.write().unwrap_or_else(|p| p.into_inner());
        vaults.remove(&name.to_ascii_lowercase()).is_some()
    }

    /// The URL clients use for a vault.
    pub fn vault_url(&self, name: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        if self.loopback {
            lock(&self.loopback_ports)
                .get(&key)
                .map(|port| format!("https://127.0.0.1:{port}"))
        } else {
            Some(format!("https://{key}.vault.localhost:{}", self.port))
        }
    }

    /// Back to the start-up vaults, empty.
    pub async fn reset_vaults(self: &Arc<Self>) {
        self.vaults
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for settings in self.startup.clone() {
            if let Err(e) = self.create_vault(settings).await {
                tracing::warn!(error = %e, "re-creating a start-up vault on reset");
            }
        }
    }
}

fn vault_exists(name: &str) -> KvError {
    KvError::new(409, "Conflict", format!("vault {name} already exists"))
}

/// Seconds since the Unix epoch by the wall clock.
pub(crate) fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
