//! The backup pipeline against Key Vault's throttle (issue #3's benchmark): one emulator vault
//! with 10,000 objects (5,000 secrets, 3,000 keys, 2,000 certificates), 20 ms of latency on every
//! request, the service throttle enforced (4,000 transactions per 10 s), and `kvkeep backup` with
//! `vault_share = 1.0`. Prints wall time, calls by operation, 429s, the throttle floor (calls ÷
//! budget) and the ratio to it, and kvkeep's peak RSS; then the same for a no-change repeat run.
//!
//! Run with `cargo bench --bench backup`. Shape via `KVKEEP_BENCH_SECRETS`, `_KEYS`,
//! `_CERTIFICATES`, `_LATENCY_MS` and `_CONCURRENCY`. The emulator runs in this process and
//! kvkeep as the real binary in a child process, so the RSS figure is kvkeep's alone. After the
//! first run it also prints stored bytes ÷ base64 payload bytes: what the store holds for the
//! captured objects against the size of the `value`s Key Vault answered (the emulator's blobs
//! have the service's shape and size). Figures only: targets (wall ≤ 1.15 × floor, 429s ≤ 1 %
//! of requests, RSS ≤ 64 MiB, storage ratio ≤ 0.8) are read, not asserted.

use std::time::Instant;

#[path = "support/throttled.rs"]
mod throttled;

use throttled::{Shape, BUDGET, WINDOW_SECONDS};

const VAULT: &str = "kv-bench";

fn main() {
    throttled::block_on(bench());
}

async fn bench() {
    let shape = Shape::from_env();
    let dir = tempfile::TempDir::new().expect("tempdir");
    let emulator = throttled::start_emulator(dir.path(), &[VAULT]).await;
    let control = emulator.control();
    let seeding = Instant::now();
    throttled::seed(&control, VAULT, &shape).await;
    println!(
        "seeded {} secrets, {} keys, {} certificates in {:.1} s",
        shape.secrets,
        shape.keys,
        shape.certificates,
        seeding.elapsed().as_secs_f64()
    );
    throttled::throttle_and_latency(&control, VAULT, shape.latency_ms).await;
    let setup = throttled::write_config(
        dir.path(),
        &[(VAULT, emulator.vault_url(VAULT).expect("vault url"))],
        &emulator.info().ca_cert,
        shape.concurrency,
    );
    println!(
        "throttle {BUDGET} / {WINDOW_SECONDS} s, {} ms latency, concurrency {}, vault_share 1.0\n",
        shape.latency_ms, shape.concurrency
    );

    for label in ["first run", "no-change repeat run"] {
        control.clear_counters().await.expect("clear counters");
        let started = Instant::now();
        let run = throttled::run_kvkeep(
            ["backup", "--output", "json", "--config"]
                .map(std::ffi::OsString::from)
                .into_iter()
                .chain([setup.config.clone().into_os_string()]),
        )
        .await;
        let wall = started.elapsed();
        if !run.status.success() {
            eprintln!("kvkeep backup exited with {}:\n{}", run.status, run.stdout);
        } else if let Ok(doc) = serde_json::from_str::<serde_json::Value>(run.stdout.trim()) {
            println!("  report           {}", doc["vaults"][0]["stats"]);
        }
        throttled::print_figures(label, &control, VAULT, wall, run.peak_rss_kib).await;
        if label == "first run" {
            print_storage_ratio(&setup.config);
        }
    }
    emulator.shutdown().await;
}

/// Stored bytes ÷ base64 payload bytes over every captured object, read from kvkeep's index:
/// `stored_bytes` is the sealed blob as written, `plain_bytes` the decoded backup, whose
/// base64url form (no padding) is what Key Vault answered.
fn print_storage_ratio(config: &std::path::Path) {
    let config = kvkeep::config::Config::load(config).expect("config");
    let index = kvkeep::index::Index::open(&config.index_path).expect("index");
    let vault: kvkeep::model::VaultName = VAULT.parse().expect("vault name");
    let captures = index.captures_as_of(&vault, i64::MAX).expect("captures");
    let stored: u64 = captures.iter().map(|c| c.stored_bytes).sum();
    let base64: u64 = captures
        .iter()
        .map(|c| (c.plain_bytes * 4).div_ceil(3))
        .sum();
    println!(
        "  storage          {} objects: {stored} stored bytes / {base64} base64 payload bytes = {:.3}",
        captures.len(),
        stored as f64 / base64.max(1) as f64
    );
}
