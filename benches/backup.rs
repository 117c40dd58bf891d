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
    }
    emulator.shutdown().await;
}
