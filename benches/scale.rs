//! A large vault end to end (issue 7, item 3): 25,000 secrets × 100 versions backed up,
//! committed (a format 2 manifest of many parts), the index rebuilt from the store, and the
//! vault restored into an empty vault, each by the real `kvkeep` binary in a child process so
//! its peak RSS is its own. Before manifests were split, such a run could not commit at all.
//!
//! Run with `cargo bench --bench scale`. Shape via `KVKEEP_BENCH_SCALE_OBJECTS` (default 25,000)
//! and `KVKEEP_BENCH_SCALE_VERSIONS` (default 100). No throttle or latency is injected: kvkeep's
//! own rate limiter (`vault_share = 1.0`, 400 requests/s) paces it. Figures only: the target
//! (peak RSS of backup and of rebuild under 256 MiB) is read, not asserted; the exit codes and
//! counts are.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Instant;

use kvkeep_emulator::api::{Collection, SeedSpec};

#[path = "support/throttled.rs"]
mod throttled;

use throttled::env_usize;

const VAULT: &str = "kv-scale";
const TARGET: &str = "kv-scale-dr";

fn main() {
    throttled::block_on(bench());
}

fn args(words: &[&str], config: &std::path::Path) -> Vec<OsString> {
    words
        .iter()
        .map(OsString::from)
        .chain([OsString::from("--config"), config.as_os_str().to_owned()])
        .collect()
}

async fn bench() {
    let objects = env_usize("KVKEEP_BENCH_SCALE_OBJECTS", 25_000);
    let versions = env_usize("KVKEEP_BENCH_SCALE_VERSIONS", 100);
    let dir = tempfile::TempDir::new().expect("tempdir");
    let emulator = throttled::start_emulator(dir.path(), &[VAULT, TARGET]).await;
    let control = emulator.control();
    let seeding = Instant::now();
    control
        .seed(
            VAULT,
            &SeedSpec {
                kind: Collection::Secrets,
                prefix: "secret-".into(),
                count: objects,
                versions,
                tags: BTreeMap::new(),
                value_bytes: 32,
            },
        )
        .await
        .expect("seed");
    println!(
        "seeded {objects} secrets x {versions} versions in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let setup = throttled::write_config(
        dir.path(),
        &[
            (VAULT, emulator.vault_url(VAULT).expect("vault url")),
            (TARGET, emulator.vault_url(TARGET).expect("vault url")),
        ],
        &emulator.info().ca_cert,
        32,
    );
    let identity = setup.identity.display().to_string();
    let steps: [(&str, Vec<&str>); 3] = [
        (
            "backup",
            vec!["backup", "--vault", VAULT, "--output", "json"],
        ),
        (
            "index rebuild",
            vec![
                "index",
                "rebuild",
                "--identity",
                &identity,
                "--output",
                "json",
            ],
        ),
        (
            "restore",
            vec![
                "restore",
                "--vault",
                VAULT,
                "--to-vault",
                TARGET,
                "--identity",
                &identity,
                "--output",
                "json",
            ],
        ),
    ];
    for (label, words) in steps {
        let started = Instant::now();
        let run = throttled::run_kvkeep(args(&words, &setup.config)).await;
        let wall = started.elapsed();
        let doc: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_default();
        let summary = match label {
            "backup" => doc["vaults"][0]["stats"].to_string(),
            "index rebuild" => format!(
                "{} runs, {} captures, problems {}",
                doc["rebuild"]["runs"], doc["rebuild"]["captures"], doc["rebuild"]["problems"]
            ),
            _ => doc["restore"]["stats"].to_string(),
        };
        println!(
            "{label:<14} exit {:?}  wall {:>7.1} s  peak RSS {:>6.1} MiB  {summary}",
            run.status.code(),
            wall.as_secs_f64(),
            run.peak_rss_kib as f64 / 1024.0
        );
        assert!(run.status.success(), "{label} failed:\n{}", run.stdout);
    }
    let store = dir.path().join("store");
    let count = |sub: &str| {
        walk(&store.join(sub))
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .fold((0usize, 0u64), |(n, b), len| (n + 1, b + len))
    };
    let (parts, part_bytes) = count("manifest-parts");
    let (blobs, blob_bytes) = count("objects");
    println!(
        "store: {blobs} object blobs ({:.1} MiB), manifest parts: {parts} ({:.1} MiB)",
        blob_bytes as f64 / 1048576.0,
        part_bytes as f64 / 1048576.0
    );
    emulator.shutdown().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
