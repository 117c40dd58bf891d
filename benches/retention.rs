//! Retention at scale (issue #9): how long the prune *plan* takes over a long history, and how
//! fast a real prune deletes from Azure Blob Storage (Azurite).
//!
//! 1. **Planning.** An index of `KVKEEP_BENCH_RETENTION_POINTS` (default 100,000) hourly
//!    restore points of one vault, each holding `KVKEEP_BENCH_RETENTION_OBJECTS` (default 10)
//!    objects, `KVKEEP_BENCH_RETENTION_CHANGED` (default all 10) of them captured afresh per
//!    run: 1,000,000 `run_members` rows and, by default, as many distinct blobs. Halfway one
//!    secret is deleted and a new one takes its place, so the deleted-object query has a
//!    50,000-point history to walk. It is built with the index's write API, 1,000 runs per
//!    transaction. A child process then runs `kvkeep::retention::plan_prune`, exactly what
//!    `kvkeep prune --dry-run` computes per vault (the index queries, the pure decision and what
//!    forgetting would free), with an 11-year policy; it prints the time of a first plan on a
//!    fresh connection, the median of four more, and its own peak RSS. Target: ≤ 1 s.
//! 2. **Prune on Azurite.** `KVKEEP_BENCH_PRUNE_FORGOTTEN` + `_PRUNE_KEPT` (default 100 + 10)
//!    hourly backups of an in-memory vault of `KVKEEP_BENCH_PRUNE_OBJECTS` (default 100)
//!    secrets, every secret rotated before every run, taken by the real backup pipeline into a
//!    container on Azurite (HTTPS, loopback, port chosen at run time). Then
//!    `kvkeep::retention::prune_vault` (what `kvkeep prune` and the daemon run) with `keep_last`
//!    = kept: it forgets 100 points and deletes 100 × 100 = 10,000 object blobs. It prints the
//!    time of each step, the store requests by operation (counted under the retry layer, so
//!    retries count) and blobs deleted per second.
//!
//! `cargo bench --bench retention` (needs `npm ci` for Azurite). Prints figures and asserts
//! only counts, never times.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvkeep::backup::{Clock, NoProgress, VaultBackup};
use kvkeep::crypto::{Identity, Sealer};
use kvkeep::index::{Index, ObjectState, RunStats, RunStatus};
use kvkeep::model::{BlobKey, ObjectKind, RunId};
use kvkeep::retention::{plan_prune, prune_vault, PruneObserver, PruneStep, RetentionPolicy};
use kvkeep::source::{InMemoryVaultSource, SeedObject, VaultSource};
use kvkeep::store::{AzureAuth, AzureBlobStore, BlobStore, RetryOptions, RetryStore};
use tokio_util::sync::CancellationToken;

#[path = "support/counting_store.rs"]
mod counting_store;
#[path = "support/index_builder.rs"]
mod index_builder;
#[path = "support/proc.rs"]
mod proc;

// Azurite, its container and the prune tests' vault, shared with the integration tests.
#[allow(dead_code)]
#[path = "../tests/support"]
mod support {
    pub mod azurite;
    pub mod config_files;
    pub mod e2e;
    pub mod prune_bed;
}

use counting_store::CountingStore;
use index_builder::{env_usize, new_capture, object_name, HOUR, START};
use proc::{children, cpu_seconds, proc_status};
use support::prune_bed::{name, vault, vault_config};

/// Set in the child process that only plans (so its peak RSS is the plan's own): the index path.
const CHILD: &str = "KVKEEP_BENCH_RETENTION_CHILD";

/// The planning target.
const PLAN_TARGET: Duration = Duration::from_secs(1);

/// Runs per index write transaction while building the planning index.
const RUNS_PER_TRANSACTION: usize = 1_000;

const CONTAINER: &str = "backups";

fn main() {
    if let Some(path) = std::env::var_os(CHILD) {
        plan_child(std::path::Path::new(&path));
        return;
    }
    planning();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(prune_on_azurite());
}

/// 24 hourly points on top of a week of everything, then 30 days, 52 weeks and 10 years: about
/// 300 of 100,000 hourly points are kept.
fn planning_policy() -> RetentionPolicy {
    RetentionPolicy {
        keep_hourly: Some(24),
        keep_daily: Some(30),
        keep_weekly: Some(52),
        keep_monthly: Some(120),
        ..RetentionPolicy::default()
    }
}

fn run_id(r: usize) -> RunId {
    format!("{:016x}", r + 1).parse().expect("run id")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn planning() {
    let points = env_usize("KVKEEP_BENCH_RETENTION_POINTS", 100_000);
    let objects = env_usize("KVKEEP_BENCH_RETENTION_OBJECTS", 10).max(1);
    let changed = env_usize("KVKEEP_BENCH_RETENTION_CHANGED", objects).clamp(1, objects);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let built = Instant::now();
    let captures = build_history(&path, points, objects, changed);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "planning index: {points} restore points x {objects} objects held = {} run_members rows, {captures} captures (blobs); built in {:.1} s, file {:.0} MiB",
        points * objects,
        built.elapsed().as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().expect("bench exe"))
        .env(CHILD, &path)
        .output()
        .expect("planning child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "planning child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "  (child process wall {:.1} s)\n",
        t.elapsed().as_secs_f64()
    );
}

/// Writes `points` hourly committed runs of the prune tests' vault. Each holds `objects`
/// secrets, `changed` of them captured afresh (in rotation; the first run captures all) and
/// the others held from their last capture. At the halfway run the last secret is seen deleted
/// and a new one is captured in its place. Returns the captures written.
fn build_history(path: &std::path::Path, points: usize, objects: usize, changed: usize) -> usize {
    let index = Index::open(path).expect("create index");
    let vault = vault();
    let half = points / 2;
    // The object each slot holds (the last slot changes hands halfway) and its last capture.
    let mut held: Vec<Option<(ObjectState, BlobKey)>> = vec![None; objects];
    let mut captures = 0;
    for batch in (0..points).collect::<Vec<_>>().chunks(RUNS_PER_TRANSACTION) {
        index
            .write(|w| {
                for &r in batch {
                    let run = run_id(r);
                    let at = START + r as i64 * HOUR;
                    w.begin_run(&run, &vault, at)?;
                    if r == half {
                        w.record_deleted(&run, ObjectKind::Secrets, &object_name(objects - 1), at)?;
                        held[objects - 1] = None;
                    }
                    for (slot, last) in held.iter_mut().enumerate() {
                        let o = if r >= half && slot == objects - 1 {
                            objects
                        } else {
                            slot
                        };
                        let fresh = (slot + objects - (r * changed) % objects) % objects < changed;
                        match last {
                            Some((state, blob)) if !fresh => {
                                w.record_unchanged(&run, state, blob, at, false)?;
                            }
                            _ => {
                                let capture = new_capture(&vault, o, r, at);
                                w.record_capture(&run, &capture)?;
                                *last = Some((capture.object, capture.blob));
                                captures += 1;
                            }
                        }
                    }
                    let manifest: BlobKey = format!("manifests/{vault}/{at}-{run}.age")
                        .parse()
                        .expect("manifest key");
                    w.finish_run(
                        &run,
                        RunStatus::Completed,
                        &RunStats::default(),
                        at + 60,
                        Some(&manifest),
                    )?;
                }
                Ok(())
            })
            .expect("record runs");
    }
    captures
}

/// The child's part: `plan_prune` over the index at `path`, five times, then the index calls
/// it makes one by one; prints times and this process's peak RSS.
fn plan_child(path: &std::path::Path) {
    let index = Index::open(path).expect("open index");
    let points = index.restore_points(&vault()).expect("points");
    let last = points.last().map(|p| p.started_at).unwrap_or(START);
    let now = chrono::DateTime::from_timestamp(last + HOUR, 0).expect("now");
    let vault = vault_config(planning_policy());
    drop(points);
    let rss_before = peak_rss_kib();

    let mut times = Vec::new();
    let mut plan = None;
    let mut rss_first = 0;
    for _ in 0..5 {
        let t = Instant::now();
        plan = Some(plan_prune(&index, &vault, now).expect("plan"));
        times.push(t.elapsed());
        if rss_first == 0 {
            rss_first = peak_rss_kib();
        }
    }
    let plan = plan.expect("planned");
    let first = times[0];
    let mut rest = times[1..].to_vec();
    rest.sort();
    let peak = peak_rss_kib();
    let kept = plan.decision.kept().count();
    let forgotten = plan.decision.forgotten().count();
    println!(
        "plan_prune ({} points: {kept} kept, {forgotten} to forget; {} manifests and {} blobs ({} MiB) would be deleted):",
        plan.decision.points.len(),
        plan.forget_manifests.len(),
        plan.freed_blobs,
        plan.freed_bytes / (1024 * 1024),
    );
    println!(
        "  first plan (fresh connection)  {}  target <= {}: {}",
        ms(first),
        ms(PLAN_TARGET),
        if first <= PLAN_TARGET {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  next 4 plans                   median {} (min {}, max {})",
        ms(rest[rest.len() / 2]),
        ms(rest[0]),
        ms(rest[rest.len() - 1])
    );
    println!(
        "  peak RSS                       {} after the first plan, {} after all five (after opening the index: {})",
        mib(rss_first),
        mib(peak),
        mib(rss_before)
    );

    // The index calls plan_prune makes, one by one (warm), to show where the time goes.
    let forgotten_runs: Vec<RunId> = plan.decision.forgotten().map(|p| p.run.clone()).collect();
    let t = Instant::now();
    let n = index.restore_points(&vault.name).expect("points").len();
    println!(
        "  restore_points                 {} ({n} rows)",
        ms(t.elapsed())
    );
    let t = Instant::now();
    let n = index
        .deleted_objects_with_holders(&vault.name)
        .expect("deletions");
    println!(
        "  deleted_objects_with_holders   {} ({} objects, {} holders)",
        ms(t.elapsed()),
        n.len(),
        n.iter().map(|d| d.holders.len()).sum::<usize>()
    );
    let t = Instant::now();
    let space = index
        .space_held_only_by(&vault.name, &forgotten_runs)
        .expect("freed space");
    println!(
        "  space_held_only_by             {} ({} blobs)",
        ms(t.elapsed()),
        space.blobs
    );
}

/// This process's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    proc_status(std::process::id(), "VmHWM:")
}

/// Keeps the newest `kept` points and nothing more (no minimum age).
fn prune_policy(kept: usize) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: Some(u32::try_from(kept).unwrap_or(u32::MAX)),
        min_retention: Duration::ZERO,
        ..RetentionPolicy::default()
    }
}

async fn prune_on_azurite() {
    let forgotten = env_usize("KVKEEP_BENCH_PRUNE_FORGOTTEN", 100);
    let kept = env_usize("KVKEEP_BENCH_PRUNE_KEPT", 10).max(1);
    let objects = env_usize("KVKEEP_BENCH_PRUNE_OBJECTS", 100);
    let runs = forgotten + kept;

    let azurite = support::e2e::azurite_with_container(CONTAINER).await;
    let mut options = azurite.client_options();
    // The retry layer is RetryStore's, as in production (`open_store`).
    options.retry = azure_core::http::RetryOptions::none();
    let azure = AzureBlobStore::new(
        &format!("{}/{CONTAINER}", azurite.service_url()),
        AzureAuth::Credential(azurite.credential()),
        options,
        "",
        None,
    )
    .expect("azure store");
    let counting = Arc::new(CountingStore::new(Arc::new(azure)));
    let store: Arc<dyn BlobStore> = Arc::new(RetryStore::new(
        counting.clone() as Arc<dyn BlobStore>,
        RetryOptions::default(),
    ));

    // The history: `runs` hourly backups by the real pipeline, every secret rotated each time.
    let dir = tempfile::tempdir().expect("temp dir");
    let index = Arc::new(Index::open(dir.path().join("index.sqlite")).expect("index"));
    let source = Arc::new(InMemoryVaultSource::new(vault(), START - 10_000));
    let identity = Identity::generate();
    let sealer = Arc::new(Sealer::new(&[identity.recipient()], 3).expect("sealer"));
    let config = vault_config(prune_policy(kept));
    let now = Arc::new(AtomicI64::new(START));
    let seeding = Instant::now();
    for r in 0..runs {
        for o in 0..objects {
            source.put(
                ObjectKind::Secrets,
                &name(&format!("secret-{o:04}")),
                SeedObject::value(format!("value-{o}-{r}")),
            );
        }
        now.store(START + r as i64 * HOUR, Ordering::SeqCst);
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
        let report = VaultBackup {
            vault: config.clone(),
            source: source.clone() as Arc<dyn VaultSource>,
            store: store.clone(),
            index: index.clone(),
            sealer: sealer.clone(),
            concurrency: 16,
            clock,
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            manifest_part_bytes: None,
            lease: None,
        }
        .run()
        .await;
        assert!(report.manifest.is_some(), "run {r} committed: {report:?}");
    }
    let seeded = counting.puts.load(Ordering::Relaxed);
    println!(
        "prune store: {runs} hourly backups of {objects} secrets (all rotated every run) into Azurite by the backup pipeline: {seeded} blobs written in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    counting.reset();
    let marks: Arc<Mutex<BTreeMap<&'static str, Instant>>> = Arc::default();
    let observer: PruneObserver = {
        let marks = marks.clone();
        Arc::new(move |step: &PruneStep| {
            let label = match step {
                PruneStep::MarkForgotten(_) => "mark",
                PruneStep::DeleteManifest(_) | PruneStep::DeleteManifestPart(_) => "manifests",
                PruneStep::ManifestDeleted(_) => return,
                PruneStep::Sweep(_) => "sweep",
                PruneStep::DeleteBlob(_) => "blobs",
                PruneStep::DropRows(_) => "rows",
            };
            if let Ok(mut marks) = marks.lock() {
                marks.entry(label).or_insert_with(Instant::now);
            }
        })
    };
    let prune_now = chrono::DateTime::from_timestamp(START + runs as i64 * HOUR, 0).expect("now");
    // Azurite is this process's only child now: its CPU time shows which side is the bottleneck.
    let azurite_pid = children().first().copied();
    let cpu = || {
        (
            cpu_seconds(std::process::id()),
            azurite_pid.map_or(0.0, cpu_seconds),
        )
    };
    let cpu_before = cpu();
    let started = Instant::now();
    let outcome = prune_vault(
        &index,
        &store,
        &config,
        prune_now,
        Some(observer),
        &CancellationToken::new(),
    )
    .await
    .expect("prune");
    let ended = Instant::now();
    let cpu_after = cpu();
    let wall = ended - started;
    assert!(outcome.complete(), "prune complete: {outcome:?}");
    assert_eq!(outcome.forgotten_points, forgotten, "points forgotten");
    assert_eq!(outcome.deleted_blobs, forgotten * objects, "blobs deleted");

    println!(
        "prune on Azurite ({runs} points, keep_last = {kept}): forgot {} points, deleted {} manifests and {} blobs ({} MiB)",
        outcome.forgotten_points,
        outcome.deleted_manifests,
        outcome.deleted_blobs,
        outcome.freed_bytes / (1024 * 1024)
    );
    println!("  wall time        {:.2} s", wall.as_secs_f64());
    let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
    // Each step lasts from its first announcement to the next step's (or the end).
    let mut steps: Vec<(&str, Instant)> = vec![("plan", started)];
    let mut ordered: Vec<(&str, Instant)> = marks.into_iter().collect();
    ordered.sort_by_key(|(_, at)| *at);
    steps.extend(ordered);
    let mut blob_step = wall;
    for (i, (label, at)) in steps.iter().enumerate() {
        let until = steps.get(i + 1).map_or(ended, |(_, next)| *next);
        let took = until - *at;
        if *label == "blobs" {
            blob_step = took;
        }
        println!("    {label:<14} {:.2} s", took.as_secs_f64());
    }
    let total: u64 = counting
        .counters()
        .iter()
        .map(|(_, c)| c.load(Ordering::Relaxed))
        .sum();
    println!("  store requests   {total}");
    for (op, c) in counting.counters() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            println!("    {op:<14} {n}");
        }
    }
    let share = |cpu: f64| 100.0 * cpu / wall.as_secs_f64();
    let (own, emulator) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    println!(
        "  CPU              Azurite {emulator:.1} s ({:.0} % of one core), this process (prune, SDK, TLS) {own:.1} s ({:.0} %)",
        share(emulator),
        share(own)
    );
    println!(
        "  blobs/s          {:.0} over the blob step ({} deletes in flight), {:.0} over the whole prune\n",
        outcome.deleted_blobs as f64 / blob_step.as_secs_f64(),
        kvkeep::retention::DELETE_CONCURRENCY,
        outcome.deleted_blobs as f64 / wall.as_secs_f64()
    );
}
