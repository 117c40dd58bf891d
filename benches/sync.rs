//! Index sync (issue #11): what it costs an instance to catch up with the runs other instances
//! committed to the shared store.
//!
//! The parent writes `KVKEEP_BENCH_SYNC_MANIFESTS` (default 1,000) format 2 manifests of a
//! vault of `KVKEEP_BENCH_SYNC_OBJECTS` (default 10,000) secrets, a tenth of them captured
//! afresh each run (10 million entries), sealed to a recovery and a catalog recipient, to a
//! local store. A child process (so the figures are its own) loads them into the in-memory
//! store behind a request counter and, with an empty index and the catalog identity:
//!
//! 1. syncs the vault: every manifest is new (time, store requests by operation, peak RSS above
//!    what the loaded store takes);
//! 2. syncs again with nothing new: the steady state of the daemon's timer;
//! 3. deletes the manifests of the oldest tenth of the runs, as another instance's prune would,
//!    and syncs: those restore points are forgotten.
//!
//! `cargo bench --bench sync`. Prints figures and asserts only counts, never times.

use std::sync::Arc;
use std::time::Instant;

use kvkeep::crypto::{write_identity_file, Identities, Identity, KeyRole, Sealer};
use kvkeep::index::Index;
use kvkeep::model::VaultName;
use kvkeep::restore::sync::{sync_vault, SyncReport};
use kvkeep::store::{BlobStore, InMemoryStore, LocalStore};
use tokio_util::sync::CancellationToken;

#[path = "support/counting_store.rs"]
mod counting_store;
#[path = "support/index_builder.rs"]
mod index_builder;
#[path = "support/manifest_history.rs"]
mod manifest_history;
#[path = "support/proc.rs"]
mod proc;

use counting_store::CountingStore;
use index_builder::{env_usize, START};
use proc::proc_status;

/// Set in the child process that syncs: the directory with the store and the identity.
const CHILD: &str = "KVKEEP_BENCH_SYNC_CHILD";

fn vault() -> VaultName {
    "kv-bench".parse().expect("vault")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(dir) = std::env::var_os(CHILD) {
        child(&rt, std::path::Path::new(&dir));
        return;
    }
    let manifests = env_usize("KVKEEP_BENCH_SYNC_MANIFESTS", 1_000);
    let per = env_usize("KVKEEP_BENCH_SYNC_OBJECTS", 10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn BlobStore> =
        Arc::new(LocalStore::open(&dir.path().join("store"), "").expect("store"));
    let recovery = Identity::generate();
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    let sealer = Arc::new(
        Sealer::new(&[recovery.recipient()], 3)
            .and_then(|s| s.with_catalog(&catalog.recipient()))
            .expect("sealer"),
    );
    let t = Instant::now();
    manifest_history::write_history(&rt, &store, &sealer, &vault(), manifests, per);
    let stored: u64 = rt
        .block_on(store.list(""))
        .expect("list")
        .iter()
        .map(|b| b.size_bytes)
        .sum();
    println!(
        "store: {manifests} manifests of {per} objects written in {:.1} s ({:.1} MiB of heads and parts)",
        t.elapsed().as_secs_f64(),
        stored as f64 / (1024.0 * 1024.0)
    );
    write_identity_file(&dir.path().join("catalog.txt"), &catalog, "bench", false)
        .expect("identity");
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

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Samples this process's anonymous (private) resident memory every 20 ms until stopped, and
/// returns its peak: the index is read through a memory map, whose pages count in RSS as the
/// page cache they are, so the total peak says little about what the sync itself allocates.
struct AnonSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl AnonSampler {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let pid = std::process::id();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_status(pid, "RssAnon:"));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak.max(proc_status(pid, "RssAnon:"))
        });
        AnonSampler { stop, thread }
    }

    fn peak_kib(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Resets this process's peak RSS to its current RSS (Linux `clear_refs`), so the next peak is
/// the sync's own; whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn child(rt: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let pid = std::process::id();
    let local = LocalStore::open(&dir.join("store"), "").expect("store");
    let memory = Arc::new(InMemoryStore::new());
    rt.block_on(async {
        for blob in local.list("").await.expect("list") {
            let bytes = local.get(&blob.key).await.expect("get");
            memory.put_new(&blob.key, bytes).await.expect("put");
        }
    });
    let counting = Arc::new(CountingStore::new(memory.clone()));
    let store: Arc<dyn BlobStore> = counting.clone();
    let identities = Arc::new(Identities::from_file(&dir.join("catalog.txt")).expect("identity"));
    let index = Arc::new(Index::open(dir.join("index.sqlite")).expect("index"));
    let cancel = CancellationToken::new();
    let sync = || {
        rt.block_on(sync_vault(
            &index,
            &store,
            &identities,
            &vault(),
            8,
            &cancel,
            START,
        ))
        .expect("sync")
    };
    let print = |what: &str, report: &SyncReport, seconds: f64| {
        let (requests, total) = counting.summary();
        println!(
            "{what}: {:.2} s; {} runs replayed ({} captures), {} points forgotten, of {} manifests listed; store requests {total} ({requests})",
            seconds,
            report.replayed_runs,
            report.captures,
            report.forgotten_points,
            report.manifests,
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        counting.reset();
    };

    // 1. Every manifest is new.
    let before = proc_status(pid, "VmRSS:");
    let anon_before = proc_status(pid, "RssAnon:");
    let reset = reset_peak_rss();
    let sampler = AnonSampler::start();
    let t = Instant::now();
    let report = sync();
    let seconds = t.elapsed().as_secs_f64();
    let peak = proc_status(pid, "VmHWM:");
    let anon_peak = sampler.peak_kib();
    let index_file = std::fs::metadata(dir.join("index.sqlite"))
        .map(|m| m.len() / 1024)
        .unwrap_or(0);
    print(
        "sync of every manifest into an empty index",
        &report,
        seconds,
    );
    if reset {
        println!(
            "  peak RSS {} above the {} the loaded store and runtime took before the sync",
            mib(peak.saturating_sub(before)),
            mib(before)
        );
    } else {
        println!(
            "  peak RSS {} (the loaded store included: clear_refs unavailable)",
            mib(peak)
        );
    }
    println!(
        "  of which private (anonymous) memory: peak {} above the {} before; the rest is the index file ({}) mapped read-only",
        mib(anon_peak.saturating_sub(anon_before)),
        mib(anon_before),
        mib(index_file)
    );
    let manifests = report.manifests;
    assert_eq!(report.replayed_runs, manifests);

    // 2. Nothing new: the daemon's timer most of the time.
    let t = Instant::now();
    let report = sync();
    print("sync with nothing new", &report, t.elapsed().as_secs_f64());
    assert!(!report.changed());

    // 3. Another instance pruned the oldest tenth.
    let pruned = manifests / 10;
    rt.block_on(async {
        let heads = memory
            .list(&format!("manifests/{}/", vault()))
            .await
            .expect("list");
        let parts = memory
            .list(&format!("manifest-parts/{}/", vault()))
            .await
            .expect("list");
        for head in heads.iter().take(pruned) {
            let stem = head
                .key
                .as_str()
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".age"))
                .expect("head name")
                .to_string();
            memory.delete(&head.key).await.expect("delete head");
            for part in parts
                .iter()
                .filter(|p| p.key.as_str().contains(&format!("/{stem}/")))
            {
                memory.delete(&part.key).await.expect("delete part");
            }
        }
    });
    let t = Instant::now();
    let report = sync();
    print(
        &format!("sync after another instance pruned {pruned} points"),
        &report,
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(report.forgotten_points, pruned);
}
