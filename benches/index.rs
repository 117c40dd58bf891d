//! Point-in-time planning over a large index: builds an index file with a million captures (by
//! default 10,000 objects in one vault, each captured by 100 hourly runs, every tenth run left
//! without a manifest) and times `Index::captures_as_of` at several points in time.
//!
//! Run with `cargo bench --bench index`. Shape via `KVKEEP_BENCH_OBJECTS` and
//! `KVKEEP_BENCH_RUNS`. It prints figures and asserts nothing about time: the budget (≤ 50 ms for
//! a million captures) is checked by reading the output, not by a flaky test.

use std::time::{Duration, Instant};

use kvkeep::config::PayloadMode;
use kvkeep::index::{CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus};
use kvkeep::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

const HOUR: i64 = 3600;
const START: i64 = 1_700_000_000;

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

/// One hourly run capturing every object, in one batched transaction. Every tenth run dies
/// before its manifest, and every hundredth object is deleted halfway, so the query has to skip
/// uncommitted captures and check deletions like in production.
fn record_run(index: &Index, vault: &VaultName, r: usize, objects: usize) {
    let run: RunId = format!("{:016x}", r + 1).parse().expect("run id");
    let at = START + r as i64 * HOUR;
    let committed = r % 10 != 9;
    let deleting = r > 0 && r == 50;
    index
        .write(|w| {
            w.begin_run(&run, vault, at)?;
            for o in 0..objects {
                let gone = o % 100 == 0 && r >= 50;
                if gone {
                    if deleting {
                        w.record_deleted(&run, ObjectKind::Secrets, &object_name(o), at)?;
                    }
                    continue;
                }
                w.record_capture(&run, &new_capture(vault, o, r, at))?;
            }
            let manifest: Option<BlobKey> = committed.then(|| {
                format!("manifests/{vault}/{at}-{run}.age")
                    .parse()
                    .expect("manifest key")
            });
            let status = if committed {
                RunStatus::Completed
            } else {
                RunStatus::Interrupted
            };
            w.finish_run(
                &run,
                status,
                &RunStats::default(),
                at + 60,
                manifest.as_ref(),
            )
        })
        .expect("record run");
}

fn object_name(o: usize) -> ObjectName {
    format!("secret-{o:06}").parse().expect("object name")
}

fn new_capture(vault: &VaultName, o: usize, r: usize, at: i64) -> NewCapture {
    let version: ObjectVersion = format!("{:032x}", (o as u128) << 32 | r as u128)
        .parse()
        .expect("version");
    NewCapture {
        object: ObjectState {
            kind: ObjectKind::Secrets,
            name: object_name(o),
            current_version: version.clone(),
            updated: at - 10,
        },
        blob: format!("objects/{vault}/secrets/secret-{o:06}/{at}-{r:016x}.age")
            .parse()
            .expect("blob key"),
        captured_at: at,
        plain_bytes: 4096,
        stored_bytes: 2100,
        sha256: format!("{:064x}", o * 1_000 + r),
        payload: PayloadMode::Native,
        versions: vec![CapturedVersion {
            version,
            created: Some(at - 10),
            updated: Some(at - 10),
            enabled: true,
        }],
    }
}
