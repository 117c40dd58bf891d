//! The backup pipeline against Key Vault's throttle (issue #3's benchmark): one emulator vault
//! with 10,000 objects (5,000 secrets, 3,000 keys, 2,000 certificates), 20 ms of latency on every
//! request, the service throttle enforced (4,000 transactions per 10 s), and `kvkeep backup` with
//! `vault_share = 1.0`. Prints wall time, calls by operation, 429s, the throttle floor (calls ÷
//! budget) and the ratio to it, and kvkeep's peak RSS; then the same for a no-change repeat run.
//!
//! Run with `cargo bench --bench backup`. Shape via `KVKEEP_BENCH_SECRETS`, `_KEYS`,
//! `_CERTIFICATES`, `_LATENCY_MS` and `_CONCURRENCY`. The emulator runs in this process and
//! kvkeep as the real binary in a child process, so the RSS figure is kvkeep's alone. Figures
//! only: targets (wall ≤ 1.15 × floor, 429s ≤ 1 % of requests, RSS ≤ 64 MiB) are read, not
//! asserted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, EmulatorConfig, FaultKind, FaultSpec, ThrottleSettings};
use kvkeep_emulator::vault::VaultSettings;

const VAULT: &str = "kv-bench";
/// Key Vault's budget for secrets and software keys: transactions per window.
const BUDGET: f64 = 4000.0;
const WINDOW_SECONDS: f64 = 10.0;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let secrets = env_usize("KVKEEP_BENCH_SECRETS", 5_000);
    let keys = env_usize("KVKEEP_BENCH_KEYS", 3_000);
    let certificates = env_usize("KVKEEP_BENCH_CERTIFICATES", 2_000);
    let latency_ms = env_usize("KVKEEP_BENCH_LATENCY_MS", 20) as u64;
    let concurrency = env_usize("KVKEEP_BENCH_CONCURRENCY", 32);

    let dir = tempfile::TempDir::new().expect("tempdir");
    let emulator = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named(VAULT)],
        cert_dir: Some(dir.path().join("tls")),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the emulator");
    let control = emulator.control();
    let seeding = Instant::now();
    for (kind, prefix, count) in [
        (Collection::Secrets, "secret-", secrets),
        (Collection::Keys, "key-", keys),
        (Collection::Certificates, "cert-", certificates),
    ] {
        if count > 0 {
            control
                .seed(
                    VAULT,
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
    println!(
        "seeded {secrets} secrets, {keys} keys, {certificates} certificates in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
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
                vault: Some(VAULT.into()),
                op: Some("*".into()),
                kind: FaultKind::Latency,
                count: None,
                rate: None,
                retry_after_seconds: None,
                retry_after_ms: None,
                latency_ms: Some(latency_ms),
                page_size: None,
            })
            .await
            .expect("latency");
    }
    let config = write_config(
        dir.path(),
        emulator.vault_url(VAULT).expect("vault url"),
        &emulator.info().ca_cert,
        concurrency,
    );
    println!(
        "throttle {BUDGET} / {WINDOW_SECONDS} s, {latency_ms} ms latency, concurrency {concurrency}, vault_share 1.0\n"
    );

    for label in ["first run", "no-change repeat run"] {
        control.clear_counters().await.expect("clear counters");
        let started = Instant::now();
        let peak_rss = run_kvkeep(&config).await;
        let wall = started.elapsed();
        let counters = control.counters().await.expect("counters");
        let calls = counters.vaults.get(VAULT).cloned().unwrap_or_default();
        let throttled = counters.throttled.get(VAULT).copied().unwrap_or(0);
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
        println!("  kvkeep peak RSS  {:.1} MiB\n", peak_rss as f64 / 1024.0);
    }
    emulator.shutdown().await;
}

/// Runs `kvkeep backup` and returns its peak resident set (KiB), sampled from
/// `/proc/<pid>/status` (`VmHWM`, a high-water mark, so sampling loses little).
async fn run_kvkeep(config: &Path) -> u64 {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["backup", "--output", "json", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start kvkeep");
    let pid = child.id().unwrap_or_default();
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
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        let _ = stdout.read_to_string(&mut out).await;
    }
    if !status.success() {
        eprintln!("kvkeep backup exited with {status}:\n{out}");
    } else if let Ok(doc) = serde_json::from_str::<serde_json::Value>(out.trim()) {
        println!("  report           {}", doc["vaults"][0]["stats"]);
    }
    peak
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

fn write_config(dir: &Path, vault_url: &str, ca: &Path, concurrency: usize) -> std::path::PathBuf {
    let identity = kvkeep::crypto::Identity::generate();
    std::fs::write(dir.join("token.txt"), "bench-token\n").expect("token");
    let host = url::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .expect("vault host");
    let config = format!(
        r#"[store]
type = "local"
path = "store"

[encryption]
recipients = ["{recipient}"]

[index]
path = "index.sqlite"

[azure]
credential = "token-file"
token_file = "token.txt"
ca_file = "{ca}"
resolve = {{ "{host}" = "127.0.0.1" }}

[limits]
vault_share = 1.0
subscription_share = 1.0
concurrency = {concurrency}

[[vault]]
name = "{VAULT}"
url = "{vault_url}"
"#,
        recipient = identity.recipient(),
        ca = ca.display(),
    );
    let path = dir.join("kvkeep.toml");
    std::fs::write(&path, config).expect("config");
    path
}
