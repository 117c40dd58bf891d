//! Several daemons, one store (issue 11), end to end: three `kvkeep daemon` processes (each its
//! own `[daemon] instance` and index, one recovery and one catalog key, as on three hosts) back
//! up the same emulator vaults on `@every 3s` into one Azurite container. While they run, one
//! vault's backups are held slow and the instance backing it up is killed with SIGKILL mid-run;
//! its lease is broken (as an operator would, instead of waiting out the 60 s) and another
//! instance takes the vault over. Then:
//!
//! - from the emulator's request log (each instance has its own token, which the log names by
//!   a fingerprint): each vault's requests come in blocks of whole runs from one instance, so
//!   no two instances ever worked on a vault at once, and every instance ran some;
//! - the killed daemon's run in flight, named on the lock blob, is recorded `interrupted` and
//!   left by it in exactly one survivor's index (the one that took the vault over), whose log
//!   tells of the takeover;
//!
//! and from the store's manifests:
//!
//! - each vault's restore points form one chain: every manifest's head names as `previous` the
//!   point just before it, so no two instances ever backed a vault up at once (two runs at once
//!   would both name the same predecessor), and their times do not overlap;
//! - no fire time (3 s window) of a vault has two restore points;
//! - every committed run was reported finished by exactly one daemon (their JSON logs);
//! - after `kvkeep index sync`, each instance's `kvkeep list runs --output json` lists every
//!   committed run, `kvkeep verify` is clean on each, and each vault's newest restore point
//!   holds every secret of the vault: nothing was lost.
//!
//! The issue asks for 30 vaults over two minutes; a shared two-core CI machine runs 12 vaults for
//! 30 s by default (`KVKEEP_E2E_MULTI_VAULTS`, `KVKEEP_E2E_MULTI_SECONDS` give the full size).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvkeep::backup::manifest::open_manifest;
use kvkeep::config::Config;
use kvkeep::crypto::{write_identity_file, Identities, Identity, KeyRole};
use kvkeep::model::{BlobKey, RunId, VaultName};
use kvkeep::store::{open_store, BlobStore, LeaseError, LeaseHolder, LeaseWork};
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::{Emulator, FaultKind, FaultSpec, LogEntry};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::Value;
use support::azurite::Azurite;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, backup_calls, emulator_beside, json_out, run_kvkeep, sas_store_section,
    seed, wait_for_backup_calls_past,
};
use tempfile::TempDir;
use tokio::io::AsyncBufReadExt;

const CONTAINER: &str = "backups";
const TOKEN: &str = "multi-instance-e2e-token";
const INSTANCES: [&str; 3] = ["host-a", "host-b", "host-c"];
/// The vault whose backups are held while its instance is killed.
const HELD: &str = "kv-m00";
/// Seconds between fire times (`@every 3s`).
const PERIOD: i64 = 3;

/// Each instance's own bearer token, so the emulator's request log tells them apart.
fn token_of(instance: &str) -> String {
    format!("{TOKEN}-{instance}")
}

/// How the emulator's request log names `instance`: the first 12 hex digits of the SHA-256 of
/// its token.
fn caller_of(instance: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token_of(instance).as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// From the emulator's request log of one vault: no two instances ever worked on it at once.
/// Cut into blocks of consecutive requests from one instance, the log must hold whole runs in
/// every block: each run lists each kind once (the first page of `keys.list`, `secrets.list`,
/// `certificates.list`), so each block holds as many first pages of each kind, and at least one.
/// Two runs at once would interleave: a block would hold part of a run (a kind missing, or only
/// the backups after the listings). Requests a fault held (the killed daemon's, answered after
/// its death) and those of other clients (the test's own seeding) are left out. Returns the
/// runs seen per instance.
fn assert_one_at_a_time(vault: &str, log: &[LogEntry]) -> BTreeMap<&'static str, usize> {
    const LISTS: [&str; 3] = ["keys.list", "secrets.list", "certificates.list"];
    let instances: BTreeMap<String, &'static str> =
        INSTANCES.iter().map(|&n| (caller_of(n), n)).collect();
    let mut blocks: Vec<(&'static str, [usize; 3], Vec<u64>)> = Vec::new();
    for entry in log {
        let Some(&who) = entry.caller.as_ref().and_then(|c| instances.get(c)) else {
            continue;
        };
        if entry.fault.is_some() || entry.status == 0 {
            continue;
        }
        if blocks.last().is_none_or(|b| b.0 != who) {
            blocks.push((who, [0; 3], Vec::new()));
        }
        let Some(block) = blocks.last_mut() else {
            continue;
        };
        block.2.push(entry.seq);
        let first_page = !entry.query.contains("skiptoken");
        if let Some(kind) = LISTS.iter().position(|l| entry.op.as_deref() == Some(*l)) {
            if first_page {
                block.1[kind] += 1;
            }
        }
    }
    let mut runs: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (who, lists, seqs) in &blocks {
        assert!(
            lists[0] >= 1 && lists.iter().all(|&n| n == lists[0]),
            "{vault}: requests {seqs:?} by {who} hold part of a run (first pages of keys, secrets, certificates: {lists:?}): another instance worked on the vault at the same time"
        );
        *runs.entry(who).or_default() += lists[0];
    }
    runs
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vault_names() -> Vec<String> {
    let n = env_number("KVKEEP_E2E_MULTI_VAULTS", 12).max(1);
    (0..n).map(|i| format!("kv-m{i:02}")).collect()
}

/// One instance: its directory (configuration, index, identities), and once started its daemon
/// and the JSON log lines it wrote.
struct Instance {
    name: &'static str,
    dir: TempDir,
    config: PathBuf,
    daemon: Option<tokio::process::Child>,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Instance {
    fn write(
        name: &'static str,
        azurite: &Azurite,
        emulator: &Emulator,
        vaults: &[String],
        keys: &Keys,
    ) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let store = sas_store_section(dir.path(), azurite, CONTAINER, "multi/");
        let resolve: Vec<String> = vaults
            .iter()
            .map(|v| resolve_entry(emulator.vault_url(v).expect("vault url")))
            .collect();
        let mut rest = format!(
            "[defaults]\nschedule = \"@every {PERIOD}s\"\nverify_schedule = \"\"\n\n[daemon]\ninstance = \"{name}\"\nlisten = \"\"\nsync_interval = \"2s\"\nshutdown_timeout = \"20s\"\n\n"
        );
        for v in vaults {
            rest.push_str(&vault_section(
                v,
                emulator.vault_url(v).expect("vault url"),
                "westeurope",
            ));
        }
        let config = KvkeepToml {
            store: &store,
            ca: azurite.ca_cert_path(),
            resolve: &resolve,
            concurrency: 4,
            rest: &rest,
        }
        .write(dir.path(), &token_of(name));
        // One recovery key and one catalog key for all three, as the runbook says.
        write_identity_file(
            &dir.path().join("identity.txt"),
            &keys.recovery,
            "2026-01-01T00:00:00Z",
            true,
        )
        .expect("recovery identity");
        write_identity_file(
            &dir.path().join("catalog.txt"),
            &keys.catalog,
            "2026-01-01T00:00:00Z",
            false,
        )
        .expect("catalog identity");
        let text = std::fs::read_to_string(&config).expect("config");
        let (head, tail) = text
            .split_once("[encryption]\n")
            .expect("an encryption table");
        let tail = tail.split_once('\n').map(|(_, t)| t).unwrap_or_default();
        let text = format!(
            "{head}[encryption]\nrecipients = [\"{}\"]\ncatalog_recipient = \"{}\"\ncatalog_identity_file = \"catalog.txt\"\n{tail}",
            keys.recovery.recipient(),
            keys.catalog.recipient()
        );
        std::fs::write(&config, text).expect("config");
        Instance {
            name,
            dir,
            config,
            daemon: None,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn start(&mut self) {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
            .args(["daemon", "--log-format", "json", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("KVKEEP_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().expect("stderr");
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                log.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        });
        self.daemon = Some(child);
    }

    fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(|c| c.id())
    }

    /// The runs this daemon logged as finished by its own scheduled backups: (vault, run, status).
    fn finished_runs(&self) -> Vec<(String, String, String)> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l["fields"]["message"] == "scheduled backup finished")
            .map(|l| {
                let field = |k: &str| l["fields"][k].as_str().unwrap_or_default().to_string();
                (field("vault"), field("run"), field("status"))
            })
            .collect()
    }

    /// Whether this daemon logged a message starting with `start`, naming `field` = `value`.
    fn logged(&self, start: &str, field: &str, value: &str) -> bool {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(start))
                    && l["fields"][field]
                        .as_str()
                        .is_some_and(|v| v.contains(value))
            })
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .take(40)
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Keys {
    recovery: Identity,
    catalog: Identity,
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Polls `check` every 100 ms until it holds or `deadline` passes; panics with `what`.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {deadline:?}");
}

/// A committed run as its manifest head says: (started, finished, run, previous).
type Point = (i64, i64, RunId, Option<RunId>);

/// Every vault's restore points in the store, read from the manifest heads with the catalog
/// identity, oldest first.
async fn points_in_store(
    store: &Arc<dyn BlobStore>,
    catalog: &Arc<Identities>,
) -> BTreeMap<String, Vec<Point>> {
    let mut points: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for meta in store.list("manifests/").await.expect("list manifests") {
        let key: &BlobKey = &meta.key;
        let mut parts = key.as_str().split('/');
        let vault: VaultName = parts.nth(1).expect("vault").parse().expect("vault name");
        let run: RunId = key
            .as_str()
            .rsplit('-')
            .next()
            .and_then(|s| s.strip_suffix(".age"))
            .expect("run")
            .parse()
            .expect("run id");
        let opened = open_manifest(store.as_ref(), catalog, &vault, &run, key)
            .await
            .expect("the catalog identity opens every manifest");
        let head = &opened.head;
        points.entry(vault.to_string()).or_default().push((
            head.started_at,
            head.finished_at,
            head.run.clone(),
            head.previous.clone(),
        ));
    }
    for list in points.values_mut() {
        list.sort_by_key(|p| (p.0, p.1));
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_one_store_and_take_over_a_killed_ones_vaults() {
    let vaults = vault_names();
    let seconds = env_number("KVKEEP_E2E_MULTI_SECONDS", 30).max(12);
    let azurite = azurite_with_container(CONTAINER).await;
    let emulator =
        emulator_beside(&azurite, vaults.iter().map(VaultSettings::named).collect()).await;
    for v in &vaults {
        seed(&emulator, v, Collection::Secrets, "app", 3, 1).await;
    }
    let keys = Keys {
        recovery: Identity::generate(),
        catalog: Identity::generate_with_role(KeyRole::Catalog),
    };
    let mut instances: Vec<Instance> = INSTANCES
        .iter()
        .map(|name| Instance::write(name, &azurite, &emulator, &vaults, &keys))
        .collect();
    let config = Config::load(&instances[0].config).expect("config");
    let store = open_store(&config.store, &config.azure)
        .await
        .expect("store");
    let catalog = Arc::new(
        Identities::from_file(&instances[0].dir.path().join("catalog.txt")).expect("catalog"),
    );
    let began = Instant::now();
    for instance in &mut instances {
        instance.start();
    }

    // Halfway: one vault's backups are held, a change makes its next run call backup, and the
    // instance that holds its lease then is killed mid-run.
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    let held: VaultName = HELD.parse().expect("vault");
    emulator
        .control()
        .add_fault(&FaultSpec {
            vault: Some(HELD.into()),
            op: Some("secrets.backup".into()),
            kind: FaultKind::Latency,
            count: None,
            rate: None,
            retry_after_seconds: None,
            retry_after_ms: None,
            latency_ms: Some(30_000),
            page_size: None,
            next_link_host: None,
        })
        .await
        .expect("hold backups");
    let calls = backup_calls(&emulator, HELD).await;
    seed(&emulator, HELD, Collection::Secrets, "late", 1, 1).await;
    wait_for_backup_calls_past(&emulator, HELD, calls).await;
    let probe = LeaseHolder::new("probe").expect("holder");
    let holder = match store
        .acquire_lease(&held, &probe, kvkeep::store::LeaseDuration::DEFAULT)
        .await
    {
        Err(LeaseError::Held { by: Some(by), .. }) => by,
        other => panic!("the held vault's lease should be held by a daemon: {other:?}"),
    };
    let victim = instances
        .iter()
        .position(|i| i.name == holder.instance)
        .expect("a daemon of ours holds the lease");
    // The lock blob names the run in flight, so that whoever takes over can record it.
    let dead_run = match &holder.work {
        Some(LeaseWork::Backup { run }) => run.to_string(),
        other => panic!("the lease should name the backup run in flight: {other:?}"),
    };
    let pid = holder.pid.expect("the lease names the holder's pid");
    assert_eq!(
        instances[victim].pid(),
        Some(pid),
        "the lease names the daemon's pid"
    );
    let survivors: Vec<usize> = (0..instances.len()).filter(|&i| i != victim).collect();
    let held_runs = |instances: &[Instance]| -> usize {
        survivors
            .iter()
            .map(|&i| {
                instances[i]
                    .finished_runs()
                    .iter()
                    .filter(|(v, _, status)| v == HELD && status == "completed")
                    .count()
            })
            .sum()
    };
    let held_before = held_runs(&instances);
    signal(pid, "KILL");
    let killed_at = kvkeep::clock::now_unix();
    let _ = instances[victim]
        .daemon
        .as_mut()
        .expect("daemon")
        .wait()
        .await;
    instances[victim].daemon = None;
    // Instead of waiting out the dead instance's 60 s lease: break it, and let backups answer.
    store.break_lease(&held).await.expect("break the lease");
    emulator
        .control()
        .clear_faults()
        .await
        .expect("clear faults");
    wait_until(
        "a surviving instance backs the killed one's vault up",
        Duration::from_secs(60),
        || {
            let taken = held_runs(&instances) > held_before;
            async move { taken }
        },
    )
    .await;

    // The rest of the time, then a clean stop of the survivors.
    let rest = Duration::from_secs(seconds).saturating_sub(began.elapsed());
    tokio::time::sleep(rest).await;
    for &i in &survivors {
        let pid = instances[i].pid().expect("running");
        signal(pid, "TERM");
    }
    for &i in &survivors {
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            instances[i].daemon.as_mut().expect("daemon").wait(),
        )
        .await
        .expect("the daemon stops")
        .expect("exit status");
        assert_eq!(
            status.code(),
            Some(0),
            "{}: {}",
            instances[i].name,
            instances[i].log_text()
        );
    }

    // The store's restore points, vault by vault.
    let points = points_in_store(&store, &catalog).await;
    let committed: BTreeSet<String> = points.values().flatten().map(|p| p.2.to_string()).collect();
    for v in &vaults {
        let list = points.get(v).map(Vec::as_slice).unwrap_or_default();
        assert!(list.len() >= 2, "{v} has {} restore points", list.len());
        for pair in list.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            // One chain: each names the one before it, so none ran beside another.
            assert_eq!(
                after.3.as_ref(),
                Some(&before.2),
                "{v}: run {} follows {:?}, not {}",
                after.2,
                after.3,
                before.2
            );
            assert!(
                after.0 >= before.1,
                "{v}: runs overlap: {before:?} {after:?}"
            );
            // At most one restore point per fire time.
            assert_ne!(
                after.0.div_euclid(PERIOD),
                before.0.div_euclid(PERIOD),
                "{v}: two restore points in one {PERIOD} s window: {before:?} {after:?}"
            );
        }
    }
    // The killed instance's vault was taken over: a restore point started after the kill.
    assert!(
        points[HELD].iter().any(|p| p.0 >= killed_at),
        "{HELD}: {:?}",
        points[HELD]
    );

    // Every restore point was made by exactly one daemon (the killed one may have made some
    // before it died; those it logged count too).
    let mut by_daemon: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let finished: Vec<Vec<(String, String, String)>> =
        instances.iter().map(Instance::finished_runs).collect();
    for (instance, runs) in instances.iter().zip(&finished) {
        for (_, run, _) in runs {
            by_daemon
                .entry(run.clone())
                .or_default()
                .push(instance.name);
        }
    }
    let finished_at: BTreeMap<String, i64> = points
        .values()
        .flatten()
        .map(|p| (p.2.to_string(), p.1))
        .collect();
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &committed {
        let made_by = by_daemon.get(run).cloned().unwrap_or_default();
        match made_by.as_slice() {
            [one] => *per_instance.entry(one).or_default() += 1,
            // The killed daemon's runs of other vaults that wrote their manifest just before
            // the SIGKILL, which left no time to log them.
            [] => {
                assert!(
                    finished_at[run] <= killed_at + 1,
                    "run {run} was reported by no daemon, yet finished after the kill"
                );
                *per_instance.entry("killed before logging").or_default() += 1;
            }
            _ => panic!("run {run} was reported by {made_by:?}"),
        }
    }
    println!(
        "{} vaults, {} s: {} restore points, by instance {per_instance:?}",
        vaults.len(),
        seconds,
        committed.len()
    );

    // The emulator saw each vault's runs one at a time, from one instance each, and every
    // instance ran some (its request log names callers by their tokens).
    let mut runs_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &vaults {
        let log = emulator.control().log(Some(v)).await.expect("request log");
        for (who, n) in assert_one_at_a_time(v, &log) {
            *runs_seen.entry(who).or_default() += n;
        }
    }
    assert_eq!(
        runs_seen.len(),
        INSTANCES.len(),
        "every instance backed vaults up: {runs_seen:?}"
    );

    // Each instance, synced, lists every committed run and verifies clean; nothing is lost.
    // The killed daemon's run in flight is recorded interrupted, naming it, by the one survivor
    // that took its vault over (it found the lease broken, not released).
    let mut takeovers = Vec::new();
    for instance in &instances {
        let synced = run_kvkeep(
            &instance.config,
            &["index", "sync", "--output", "json"],
            &[],
        )
        .await;
        assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
        let listed = run_kvkeep(&instance.config, &["list", "runs", "--output", "json"], &[]).await;
        assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
        let listed = json_out(&listed);
        let runs = listed.as_array().expect("runs");
        for r in runs.iter().filter(|r| r["run"] == dead_run.as_str()) {
            if r["abandoned_by"] == holder.instance.as_str() {
                assert_eq!(r["status"], "interrupted", "{r}");
                assert_eq!(r["committed"], false, "{r}");
                takeovers.push(instance.name);
            }
        }
        let listed: BTreeSet<String> = runs
            .iter()
            .filter(|r| r["committed"] == true)
            .map(|r| r["run"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(listed, committed, "{}", instance.name);
        let verified = run_kvkeep(&instance.config, &["verify", "--output", "json"], &[]).await;
        assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    }
    assert_eq!(
        takeovers.len(),
        1,
        "exactly one survivor records the killed daemon's run {dead_run} as left by it: {takeovers:?}"
    );
    assert_ne!(takeovers[0], holder.instance);
    assert!(
        instances.iter().any(|i| i.name == takeovers[0]
            && i.logged(
                "took the vault over from a kvkeep instance",
                "previous_holder",
                &format!("kvkeep instance {} (pid {pid}", holder.instance)
            )),
        "the survivor's log tells of the takeover, naming the dead instance"
    );
    let index = kvkeep::index::Index::open(instances[survivors[0]].dir.path().join("index.sqlite"))
        .expect("index");
    for v in &vaults {
        let name: VaultName = v.parse().expect("vault");
        let newest = index
            .restore_points(&name)
            .expect("points")
            .pop()
            .expect("a restore point");
        let held = index
            .restore_point_contents(&newest.run)
            .expect("contents")
            .len();
        let expected = if v == HELD { 4 } else { 3 };
        assert_eq!(
            held, expected,
            "{v}: the newest restore point holds every secret"
        );
    }
}

/// The request-log check above fails on interleaved runs, and passes whole ones.
#[test]
fn the_one_at_a_time_check_catches_two_runs_at_once() {
    let entry = |seq: u64, who: &str, op: &str| LogEntry {
        seq,
        vault: Some("kv-m00".into()),
        method: "GET".into(),
        path: "/".into(),
        query: "api-version=2025-07-01".into(),
        op: Some(op.into()),
        status: 200,
        has_authorization: true,
        caller: Some(caller_of(who)),
        body_length: 0,
        fault: None,
    };
    let run = |who: &str, from: u64| {
        vec![
            entry(from, who, "keys.list"),
            entry(from + 1, who, "secrets.list"),
            entry(from + 2, who, "certificates.list"),
            entry(from + 3, who, "secrets.backup"),
        ]
    };
    let mut whole = run("host-a", 1);
    whole.extend(run("host-b", 5));
    whole.extend(run("host-a", 9));
    let seen = assert_one_at_a_time("kv-m00", &whole);
    assert_eq!(seen, BTreeMap::from([("host-a", 2), ("host-b", 1)]));

    // host-b lists while host-a's run is still backing up.
    let mut at_once = run("host-a", 1);
    let late = at_once.pop().expect("the backup");
    at_once.extend(run("host-b", 5));
    at_once.push(late);
    let caught = std::panic::catch_unwind(|| assert_one_at_a_time("kv-m00", &at_once));
    assert!(caught.is_err(), "interleaved runs must be caught");
}
