//! `kvkeep report` over a large index: by default 1,000 vaults, each with 100 secrets captured
//! by 10 daily runs (1,000,000 captures, every tenth run left without a manifest), a retention
//! policy and a schedule per vault. Times building the report (every section: restore points,
//! RPO, coverage, the next prune's plan, storage, verification, Key Vault expiry), its JSON
//! rendering and the HTML page (report, timeline of every restore point, rendering), and prints
//! the sizes.
//!
//! Run with `cargo bench --bench report`. Shape via `KVKEEP_BENCH_VAULTS`,
//! `KVKEEP_BENCH_OBJECTS` (per vault) and `KVKEEP_BENCH_RUNS` (per vault). It prints figures and
//! the budgets beside them (≤ 2 s for 1,000 vaults / 1,000,000 captures, HTML ≤ 5 MB);
//! it asserts nothing about time.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kvkeep::config::Config;
use kvkeep::index::Index;
use kvkeep::model::RunId;

#[path = "support/index_builder.rs"]
mod index_builder;

use index_builder::{env_usize, record_run_as};

const DAY: i64 = 86_400;
/// The first run's time: 2026-01-01T02:00:00Z, the daily schedule's fire time.
const START: i64 = 1_767_232_800;

/// A configuration with `vaults` vaults on a daily schedule, each with a retention policy that
/// forgets some of its points, so the expirations section has work to do.
fn config(vaults: usize) -> Config {
    let mut text = String::from(
        "[store]\ntype = \"local\"\npath = \"/var/lib/kvkeep/store\"\n\n\
         [encryption]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\n\
         [defaults]\nschedule = \"0 2 * * *\"\nrpo = \"26h\"\n\n\
         [defaults.retention]\nkeep_last = 3\nkeep_weekly = 2\nmin_retention = \"1d\"\n",
    );
    for v in 0..vaults {
        text.push_str(&format!("\n[[vault]]\nname = \"kv-bench-{v:04}\"\n"));
    }
    Config::parse(&text, "bench.toml", Path::new("/etc/kvkeep"), &|_| {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    })
    .expect("bench configuration")
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let vaults = env_usize("KVKEEP_BENCH_VAULTS", 1_000);
    let objects = env_usize("KVKEEP_BENCH_OBJECTS", 100);
    let runs = env_usize("KVKEEP_BENCH_RUNS", 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let config = config(vaults);

    let built = Instant::now();
    {
        let index = Index::open(&path).expect("create index");
        let mut run_number = 0;
        for vault in &config.vaults {
            for r in 0..runs {
                // Run ids are unique across vaults.
                let run: RunId = format!("{:016x}", run_number + 1).parse().expect("run id");
                let at = START + r as i64 * DAY;
                record_run_as(&index, &vault.name, &run, r, at, objects, false);
                run_number += 1;
            }
        }
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {} captures ({vaults} vaults x {objects} objects x {runs} runs) in {:.1} s; file {:.0} MiB",
        vaults * objects * runs,
        built.elapsed().as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );

    let index = Index::open(&path).expect("reopen index");
    let now = Utc
        .timestamp_opt(START + runs as i64 * DAY - 3_600, 0)
        .single()
        .expect("now");
    let mut build_times = Vec::new();
    let mut json_times = Vec::new();
    let mut json_size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let report =
            kvkeep::report::build_report(&index, &config.vaults, now).expect("build the report");
        build_times.push(t.elapsed());
        let t = Instant::now();
        let json = serde_json::to_string_pretty(&report).expect("render JSON");
        json_times.push(t.elapsed());
        json_size = json.len();
        assert_eq!(report.vaults.len(), vaults, "every vault reported");
    }
    let build = median(build_times);
    println!(
        "report of {vaults} vaults: built in {:.3} s (median of 5; budget 2 s: {}), JSON rendered in {:.3} s, {:.1} MiB",
        build.as_secs_f64(),
        if build <= Duration::from_secs(2) {
            "met"
        } else {
            "MISSED"
        },
        median(json_times).as_secs_f64(),
        json_size as f64 / (1024.0 * 1024.0)
    );

    let mut html_times = Vec::new();
    let mut html_size = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let html = kvkeep::report::html::build_html(&index, &config.vaults, now)
            .expect("build the HTML report");
        html_times.push(t.elapsed());
        html_size = html.len();
    }
    let mib = html_size as f64 / (1024.0 * 1024.0);
    println!(
        "HTML page of {vaults} vaults: built and rendered in {:.3} s (median of 3), {:.2} MiB \
         ({:.1} KiB per vault; budget 5 MB: {})",
        median(html_times).as_secs_f64(),
        mib,
        html_size as f64 / 1024.0 / vaults.max(1) as f64,
        if html_size <= 5_000_000 {
            "met"
        } else {
            "MISSED"
        }
    );
}
