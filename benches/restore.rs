//! Restore-side figures: point-in-time *planning* over a large index (the index query, the pure
//! plan and a survey of an empty in-memory target), and `index rebuild` from 1,000 manifests in
//! a local store.
//!
//! Run with `cargo bench --bench restore`. Shapes: `KVKEEP_BENCH_OBJECTS` × `KVKEEP_BENCH_RUNS`
//! captures (default 10,000 × 100 = 1,000,000, built by the index bench's builder), and
//! `KVKEEP_BENCH_MANIFESTS` manifests of `KVKEEP_BENCH_MANIFEST_OBJECTS` objects each (default
//! 1,000 × 10,000: a 10,000-object vault backed up 1,000 times, a tenth of it changing each
//! run). The rebuild runs in a child process so its peak RSS is its own. It prints figures and
//! asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvkeep::backup::manifest::MANIFEST_FORMAT;
use kvkeep::crypto::{Identities, Identity, Sealer};
use kvkeep::index::Index;
use kvkeep::model::VaultName;
use kvkeep::restore::{plan_restore, ConflictPolicy, RestoreRequest, VaultLocation};
use kvkeep::source::InMemoryVaultSource;
use kvkeep::store::{BlobStore, LocalStore};
use tokio_util::sync::CancellationToken;

#[path = "support/index_builder.rs"]
mod index_builder;
#[path = "support/manifest_history.rs"]
mod manifest_history;

use index_builder::{env_usize, record_run, HOUR, START};

fn main() {
    if let Some(dir) = std::env::var_os(CHILD) {
        rebuild_child(std::path::Path::new(&dir));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    planning(&rt);
    rebuild(&rt);
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn location(name: &str) -> VaultLocation {
    VaultLocation {
        name: name.parse().expect("vault"),
        url: format!("https://{name}.vault.azure.net"),
        subscription: Some("sub".into()),
        geography: Some("europe".into()),
    }
}

fn planning(rt: &tokio::runtime::Runtime) {
    let objects = env_usize("KVKEEP_BENCH_OBJECTS", 10_000);
    let runs = env_usize("KVKEEP_BENCH_RUNS", 100);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let vault: VaultName = "kv-bench".parse().expect("vault");
    let built = Instant::now();
    {
        let index = Index::open(&path).expect("index");
        for r in 0..runs {
            record_run(&index, &vault, r, objects);
        }
    }
    println!(
        "index: {} captures ({objects} objects x {runs} runs) built in {:.1} s",
        objects * runs,
        built.elapsed().as_secs_f64()
    );
    let index = Arc::new(Index::open(&path).expect("reopen"));
    let target = InMemoryVaultSource::new("kv-dr".parse().expect("vault"), START);
    let at = START + (runs as i64 / 2) * HOUR + 60;
    let mut query = Vec::new();
    let mut whole = Vec::new();
    let mut planned = 0;
    for _ in 0..11 {
        let t = Instant::now();
        let set = index.captures_as_of(&vault, at).expect("query");
        query.push(t.elapsed());
        let t = Instant::now();
        let plan = rt
            .block_on(plan_restore(
                index.clone(),
                &target,
                RestoreRequest {
                    source: location("kv-bench"),
                    target: location("kv-dr"),
                    at,
                    only: Vec::new(),
                    policy: ConflictPolicy::Skip,
                    assume_compatible: false,
                },
            ))
            .expect("plan");
        whole.push(t.elapsed());
        planned = plan.objects.len();
        assert_eq!(planned, set.len());
    }
    query.sort();
    whole.sort();
    println!(
        "point-in-time query over {} captures: median {} (min {}, max {})",
        objects * runs,
        ms(query[query.len() / 2]),
        ms(query[0]),
        ms(query[query.len() - 1])
    );
    println!(
        "restore plan ({planned} objects: query + select + compatibility + target survey + decide): median {} (min {}, max {})",
        ms(whole[whole.len() / 2]),
        ms(whole[0]),
        ms(whole[whole.len() - 1])
    );
}

/// Set in the child process that only rebuilds (so its peak RSS is the rebuild's alone).
const CHILD: &str = "KVKEEP_BENCH_REBUILD_CHILD";

fn rebuild(rt: &tokio::runtime::Runtime) {
    let manifests = env_usize("KVKEEP_BENCH_MANIFESTS", 1_000);
    let per = env_usize("KVKEEP_BENCH_MANIFEST_OBJECTS", 10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn BlobStore> =
        Arc::new(LocalStore::open(&dir.path().join("store"), "").expect("store"));
    let identity = Identity::generate();
    let sealer = Arc::new(Sealer::new(&[identity.recipient()], 3).expect("sealer"));
    let vault: VaultName = "kv-bench".parse().expect("vault");
    let written = Instant::now();
    manifest_history::write_history(rt, &store, &sealer, &vault, manifests, per);
    println!(
        "store: {manifests} manifests (format {MANIFEST_FORMAT}) of {per} objects written in {:.1} s",
        written.elapsed().as_secs_f64()
    );
    kvkeep::crypto::write_identity_file(
        &dir.path().join("identity.txt"),
        &identity,
        "bench",
        false,
    )
    .expect("identity");
    // The rebuild runs in a child process: this one holds the writer's allocations.
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().expect("bench exe"))
        .env(CHILD, dir.path())
        .output()
        .expect("child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("  (child process wall {:.1} s)", t.elapsed().as_secs_f64());
}

/// The child's part: rebuild the index from the store in `dir`, print time and peak RSS.
fn rebuild_child(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store: Arc<dyn BlobStore> =
        Arc::new(LocalStore::open(&dir.join("store"), "").expect("store"));
    let identities =
        Arc::new(Identities::from_file(&dir.join("identity.txt")).expect("identity file"));
    let index_path = dir.join("index.sqlite");
    let t = Instant::now();
    let report = rt
        .block_on(kvkeep::restore::rebuild::rebuild(
            store,
            identities,
            &index_path,
            8,
            CancellationToken::new(),
            START,
        ))
        .expect("rebuild");
    println!(
        "index rebuild from {} manifests ({} runs, {} captures): {:.1} s, peak RSS {:.1} MiB",
        report.manifests,
        report.runs,
        report.captures,
        t.elapsed().as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// This process's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
