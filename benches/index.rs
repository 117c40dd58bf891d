//! Point-in-time planning over a large index: builds an index file with a million captures (by
//! default 10,000 objects in one vault, each captured by 100 hourly runs, every tenth run left
//! without a manifest) and times `Index::captures_as_of` at several points in time.
//!
//! Run with `cargo bench --bench index`. Shape via `KVKEEP_BENCH_OBJECTS` and
//! `KVKEEP_BENCH_RUNS`. It prints figures and asserts nothing about time: the budget (≤ 50 ms for
//! a million captures) is checked by reading the output, not by a flaky test.

use std::time::{Duration, Instant};

use kvkeep::index::Index;
use kvkeep::model::VaultName;

#[path = "support/index_builder.rs"]
mod index_builder;

use index_builder::{env_usize, record_run, HOUR, START};

fn main() {
    let objects = env_usize("KVKEEP_BENCH_OBJECTS", 10_000);
    let runs = env_usize("KVKEEP_BENCH_RUNS", 100);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let vault: VaultName = "kv-bench".parse().expect("vault name");

    let built = Instant::now();
    {
        let index = Index::open(&path).expect("create index");
        for r in 0..runs {
            record_run(&index, &vault, r, objects);
        }
    }
    let build_time = built.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {} captures ({objects} objects x {runs} runs) in {:.1} s; file {:.0} MiB",
        objects * runs,
        build_time.as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );

    let index = Index::open(&path).expect("reopen index");
    let last = START + (runs as i64 - 1) * HOUR;
    for (label, at) in [
        ("newest", last + 60),
        ("middle", START + (runs as i64 / 2) * HOUR + 60),
        ("oldest", START + 60),
    ] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..15 {
            let t = Instant::now();
            let set = index
                .captures_as_of(&vault, at)
                .expect("point-in-time query");
            times.push(t.elapsed());
            found = set.len();
        }
        times.sort();
        println!(
            "captures_as_of({label}): {found} objects, median {}, min {}, max {}",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
