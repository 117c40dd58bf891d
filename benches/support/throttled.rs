//! What the benches against Key Vault's throttle share (`benches/backup.rs`,
//! `benches/restore_throttled.rs`): the vault's shape from the environment, an in-process
//! emulator seeded through its control plane, the service throttle and injected latency, a
//! kvkeep configuration pointing at it, the real `kvkeep` binary run as a child process (so the
//! peak RSS measured is kvkeep's alone), and the figures both print. Included with `#[path]`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::client::ControlClient;
use kvkeep_emulator::server::{Emulator, EmulatorConfig, FaultKind, FaultSpec, ThrottleSettings};
use kvkeep_emulator::vault::VaultSettings;

// The identity, token and vault lines the end-to-end tests write too.
#[path = "../../tests/support/config_files.rs"]
mod config_files;

/// Key Vault's budget for secrets and software keys: transactions per window.
pub const BUDGET: f64 = 4000.0;
/// The throttle's window, seconds.
pub const WINDOW_SECONDS: f64 = 10.0;

/// Runs a bench's async body on a multi-threaded runtime.
pub fn block_on(bench: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench);
}

#[path = "env.rs"]
mod env;
pub use env::env_usize;

/// The benchmark's shape: issue #3's vault by default, overridable from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub secrets: usize,
    pub keys: usize,
    pub certificates: usize,
    pub latency_ms: u64,
    pub concurrency: usize,
}

impl Shape {
    /// `KVKEEP_BENCH_SECRETS`, `_KEYS`, `_CERTIFICATES`, `_LATENCY_MS`, `_CONCURRENCY`.
    pub fn from_env() -> Shape {
        Shape {
            secrets: env_usize("KVKEEP_BENCH_SECRETS", 5_000),
            keys: env_usize("KVKEEP_BENCH_KEYS", 3_000),
            certificates: env_usize("KVKEEP_BENCH_CERTIFICATES", 2_000),
            latency_ms: env_usize("KVKEEP_BENCH_LATENCY_MS", 20) as u64,
            concurrency: env_usize("KVKEEP_BENCH_CONCURRENCY", 32),
        }
    }
}

/// Starts the emulator with `vaults` (default geography and subscription, so native backups
/// restore between them), its certificates under `dir`.
pub async fn start_emulator(dir: &Path, vaults: &[&str]) -> Emulator {
    Emulator::start(EmulatorConfig {
        vaults: vaults.iter().map(|v| VaultSettings::named(*v)).collect(),
        cert_dir: Some(dir.join("tls")),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the emulator")
}

/// Seeds `vault` with the shape's objects, one version each, through the control plane.
pub async fn seed(control: &ControlClient, vault: &str, shape: &Shape) {
    for (kind, prefix, count) in [
        (Collection::Secrets, "secret-", shape.secrets),
        (Collection::Keys, "key-", shape.keys),
        (Collection::Certificates, "cert-", shape.certificates),
    ] {
        if count > 0 {
            control
                .seed(
                    vault,
                    &SeedSpec {
                        kind,
                        prefix: prefix.into(),
                        count,
                        versions: 1,
                        tags: BTreeMap::new(),
                        value_bytes: 32,
                    },
                )
                .await
                .expect("seed");
        }
    }
}

/// Turns on the service throttle ([`BUDGET`] per [`WINDOW_SECONDS`]) and `latency_ms` on every
/// request to `vault`.
pub async fn throttle_and_latency(control: &ControlClient, vault: &str, latency_ms: u64) {
    control
        .set_throttle(&ThrottleSettings {
            enabled: true,
            vault_budget: BUDGET as u32,
            window_seconds: WINDOW_SECONDS as u32,
            ..ThrottleSettings::default()
        })
        .await
        .expect("throttle on");
    if latency_ms > 0 {
        control
            .add_fault(&FaultSpec {
                vault: Some(vault.into()),
                op: Some("*".into()),
                kind: FaultKind::Latency,
                count: None,
                rate: None,
                retry_after_seconds: None,
                retry_after_ms: None,
                latency_ms: Some(latency_ms),
                page_size: None,
                next_link_host: None,
            })
            .await
            .expect("latency");
    }
}

/// The files a bench's kvkeep runs with.
pub struct BenchSetup {
    /// `kvkeep.toml`.
    pub config: PathBuf,
    /// The age identity (mode 0600) matching the configured recipient.
    pub identity: PathBuf,
}

/// Writes an identity, a token file and a configuration with `vault_share = 1.0` and the
/// shape's concurrency, listing each `(name, url)` of `vaults` (same subscription and
/// geography, as the emulator's defaults are).
pub fn write_config(
    dir: &Path,
    vaults: &[(&str, &str)],
    ca: &Path,
    concurrency: usize,
) -> BenchSetup {
    let mut resolve = Vec::new();
    let mut sections = String::new();
    for (name, url) in vaults {
        resolve.push(config_files::resolve_entry(url));
        sections.push_str(&config_files::vault_section(name, url, "europe"));
    }
    let path = config_files::KvkeepToml {
        store: "[store]\ntype = \"local\"\npath = \"store\"\n",
        ca,
        resolve: &resolve,
        concurrency,
        rest: &sections,
    }
    .write(dir, "bench-token");
    BenchSetup {
        config: path,
        identity: dir.join("identity.txt"),
    }
}

/// How one kvkeep process ended.
pub struct KvkeepRun {
    pub status: ExitStatus,
    pub stdout: String,
    /// Peak resident set, KiB.
    pub peak_rss_kib: u64,
}

/// Runs the `kvkeep` binary with `args` and samples its peak resident set from
/// `/proc/<pid>/status` (`VmHWM`, a high-water mark, so sampling loses little).
pub async fn run_kvkeep<I, S>(args: I) -> KvkeepRun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start kvkeep");
    let pid = child.id().unwrap_or_default();
    // Read stdout while waiting: a large report must not fill the pipe and stall kvkeep.
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        out
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm(pid) {
            peak = peak.max(kib);
        }
        tokio::select! {
            status = child.wait() => break status.expect("kvkeep exits"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    KvkeepRun {
        status,
        stdout: reader.await.unwrap_or_default(),
        peak_rss_kib: peak,
    }
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Prints the figures of one run against `vault`: wall time, requests by operation, 429s, the
/// throttle floor and the ratio to it, kvkeep's peak RSS.
pub async fn print_figures(
    label: &str,
    control: &ControlClient,
    vault: &str,
    wall: Duration,
    peak_rss_kib: u64,
) {
    let counters = control.counters().await.expect("counters");
    let calls = counters.vaults.get(vault).cloned().unwrap_or_default();
    let throttled = counters.throttled.get(vault).copied().unwrap_or(0);
    let total: u64 = calls.values().sum();
    // 429s take no budget, so the floor counts only the calls that were served.
    let served = total.saturating_sub(throttled) as f64;
    let floor = served / (BUDGET / WINDOW_SECONDS);
    println!("{label}:");
    println!("  wall time        {:.1} s", wall.as_secs_f64());
    println!("  requests         {total}");
    for (op, n) in &calls {
        println!("    {op:<28} {n}");
    }
    println!(
        "  429s             {throttled} ({:.2} % of requests)",
        if total > 0 {
            100.0 * throttled as f64 / total as f64
        } else {
            0.0
        }
    );
    println!(
        "  throttle floor   {floor:.1} s (served requests ÷ {} per s)",
        BUDGET / WINDOW_SECONDS
    );
    if floor > 0.0 {
        println!("  wall ÷ floor     {:.3}", wall.as_secs_f64() / floor);
    }
    println!(
        "  kvkeep peak RSS  {:.1} MiB\n",
        peak_rss_kib as f64 / 1024.0
    );
}
