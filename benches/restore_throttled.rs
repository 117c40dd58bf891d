//! Restore against Key Vault's throttle (issue #4's benchmark): the 10,000-object vault of the
//! backup benchmark (5,000 secrets, 3,000 keys, 2,000 certificates) seeded in an emulator vault,
//! backed up once by the library's [`Runner`] (unthrottled: that is the backup benchmark's
//! subject), then restored by the real `kvkeep restore` binary into a second, empty vault of the
//! same subscription and geography with 20 ms of latency on every request, the service throttle
//! enforced (4,000 transactions per 10 s) and `vault_share = 1.0`. Prints wall time, calls by
//! operation, 429s, the throttle floor (served calls ÷ budget), the ratio to it and kvkeep's
//! peak RSS.
//!
//! Run with `cargo bench -p kvkeep --bench restore_throttled`. Shape via the backup benchmark's
//! variables (`KVKEEP_BENCH_SECRETS`, `_KEYS`, `_CERTIFICATES`, `_LATENCY_MS`, `_CONCURRENCY`).
//! Figures only: the target (wall ≤ 1.15 × floor) is read, not asserted.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Instant;

use kvkeep::backup::{system_clock, NoProgress, Runner};
use kvkeep::config::Config;
use tokio_util::sync::CancellationToken;

#[path = "support/throttled.rs"]
mod throttled;

use throttled::{Shape, BUDGET, WINDOW_SECONDS};

const VAULT: &str = "kv-bench";
const TARGET: &str = "kv-bench-restore";

fn main() {
    throttled::block_on(bench());
}

async fn bench() {
    let shape = Shape::from_env();
    let dir = tempfile::TempDir::new().expect("tempdir");
    let emulator = throttled::start_emulator(dir.path(), &[VAULT, TARGET]).await;
    let control = emulator.control();
    let started = Instant::now();
    throttled::seed(&control, VAULT, &shape).await;
    println!(
        "seeded {} secrets, {} keys, {} certificates in {:.1} s",
        shape.secrets,
        shape.keys,
        shape.certificates,
        started.elapsed().as_secs_f64()
    );
    let setup = throttled::write_config(
        dir.path(),
        &[
            (VAULT, emulator.vault_url(VAULT).expect("vault url")),
            (TARGET, emulator.vault_url(TARGET).expect("target url")),
        ],
        &emulator.info().ca_cert,
        shape.concurrency,
    );

    let config = Config::load(&setup.config).expect("config");
    let started = Instant::now();
    let runner = Runner::open(&config, false, system_clock())
        .await
        .expect("open the runner");
    let backup = runner
        .backup(
            &config.vaults[..1],
            CancellationToken::new(),
            Arc::new(NoProgress),
        )
        .await;
    drop(runner);
    println!(
        "backed up {VAULT} once in {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        backup.first().map(|r| (r.status, r.stats.captured_objects))
    );
    // The backup ran in this second; a point in time after it selects it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    throttled::throttle_and_latency(&control, TARGET, shape.latency_ms).await;
    println!(
        "throttle {BUDGET} / {WINDOW_SECONDS} s, {} ms latency, concurrency {}, vault_share 1.0\n",
        shape.latency_ms, shape.concurrency
    );
    control.clear_counters().await.expect("clear counters");
    let started = Instant::now();
    let args: Vec<OsString> = [
        "restore",
        "--vault",
        VAULT,
        "--to-vault",
        TARGET,
        "--output",
        "json",
        "--identity",
    ]
    .map(OsString::from)
    .into_iter()
    .chain([
        setup.identity.clone().into_os_string(),
        "--config".into(),
        setup.config.clone().into_os_string(),
    ])
    .collect();
    let run = throttled::run_kvkeep(args).await;
    let wall = started.elapsed();
    match serde_json::from_str::<serde_json::Value>(run.stdout.trim()) {
        Ok(doc) => println!(
            "  report           {} overall {}",
            doc["restore"]["stats"], doc["overall"]
        ),
        Err(_) => eprintln!("kvkeep restore exited with {}:\n{}", run.status, run.stdout),
    }
    throttled::print_figures(
        &format!("restore into {TARGET}"),
        &control,
        TARGET,
        wall,
        run.peak_rss_kib,
    )
    .await;
    emulator.shutdown().await;
}
