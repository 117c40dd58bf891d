//! Throughput benchmark: starts the emulator in-process, seeds 100,000 secrets, then drives
//! latest-version GETs (90 %) and first-page lists (10 %) over HTTPS with N concurrent
//! keep-alive connections, and prints requests/s, latency percentiles and peak RSS.
//!
//! `cargo bench -p kvkeep-emulator --bench throughput`; knobs: `BENCH_SECONDS` (5),
//! `BENCH_CONCURRENCY` (16), `BENCH_OBJECTS` (100000). Client and server share the machine's
//! cores, so the figure is a lower bound for the server alone.

use std::time::{Duration, Instant};

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::client;
use kvkeep_emulator::server::{Emulator, EmulatorConfig};
use kvkeep_emulator::vault::VaultSettings;
use rand::Rng;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let seconds = knob("BENCH_SECONDS", 5);
    let concurrency = knob("BENCH_CONCURRENCY", 16);
    let objects = knob("BENCH_OBJECTS", 100_000);

    let emulator = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named("bench")],
        ..EmulatorConfig::default()
    })
    .await?;
    let seeding = Instant::now();
    let report = emulator
        .control()
        .seed(
            "bench",
            &SeedSpec {
                kind: Collection::Secrets,
                prefix: "s".into(),
                count: objects,
                versions: 1,
                tags: Default::default(),
                value_bytes: 32,
            },
        )
        .await?;
    println!(
        "seeded {} secrets in {:.1} s",
        report.objects,
        seeding.elapsed().as_secs_f64()
    );
    let vault = emulator
        .vault_url("bench")
        .ok_or("no vault url")?
        .to_string();
    let ca = emulator.info().ca_cert.clone();

    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        // One client per worker: one keep-alive connection each.
        let http = client::http_client(&ca)?;
        let vault = vault.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let url = {
                    let mut rng = rand::thread_rng();
                    if rng.gen_ratio(1, 10) {
                        format!("{vault}/secrets?api-version=2025-07-01")
                    } else {
                        let i = rng.gen_range(0..objects.max(1));
                        format!("{vault}/secrets/s{i:05}/?api-version=2025-07-01")
                    }
                };
                let started = Instant::now();
                let ok = match http
                    .get(&url)
                    .header("authorization", "Bearer x")
                    .send()
                    .await
                {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        response.bytes().await.is_ok() && ok
                    }
                    Err(_) => false,
                };
                latencies.push(started.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} requests ({} errors) in {:.1} s with {} connections: {:.0} requests/s",
        latencies.len(),
        errors,
        elapsed,
        concurrency,
        latencies.len() as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS: {:.0} MiB", kib as f64 / 1024.0);
    }
    emulator.shutdown().await;
    Ok(())
}
