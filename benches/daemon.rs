//! The daemon's cost at rest and its punctuality (issue #8), with the real `kvkeep daemon` as a
//! child process:
//! - idle: 1,000 configured vaults whose schedules are far away (each has a committed run, so
//!   nothing is caught up): resident memory and CPU time over a window (`KVKEEP_BENCH_IDLE_SECS`,
//!   default 60);
//! - tick lateness: `KVKEEP_BENCH_DUE_VAULTS` (default 50) emulator vaults on `@every 10s`, all
//!   due at the same instants, with `max_parallel_vaults` as large: how late each job starts
//!   against its fire time (from the daemon's `job started` log lines), as p50 / p99 / max, over
//!   `KVKEEP_BENCH_LATENESS_SECS` (default 45).
//!
//! `cargo bench --bench daemon`. Prints figures; asserts nothing about time.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

#[path = "support/proc.rs"]
mod proc;
#[path = "support/throttled.rs"]
mod throttled;

use kvkeep::index::{Index, RunStats, RunStatus};
use kvkeep::model::{BlobKey, RunId, VaultName};
use proc::{cpu_seconds, proc_status};
use throttled::{block_on, env_usize, start_emulator, write_config, Shape};

fn main() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let due = env_usize("KVKEEP_BENCH_DUE_VAULTS", 50);
        let names: Vec<String> = (0..due).map(|i| format!("kv-due-{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let emulator = start_emulator(dir.path(), &refs).await;
        idle(dir.path(), &emulator.info().ca_cert).await;
        lateness(dir.path(), &emulator, &refs).await;
    });
}

/// 1,000 vaults, none due: what the daemon costs while it waits.
async fn idle(base: &Path, ca: &Path) {
    let vaults = env_usize("KVKEEP_BENCH_IDLE_VAULTS", 1_000);
    let window = Duration::from_secs(env_usize("KVKEEP_BENCH_IDLE_SECS", 60) as u64);
    let dir = base.join("idle");
    std::fs::create_dir_all(&dir).expect("dir");
    let names: Vec<String> = (0..vaults).map(|i| format!("kv-idle-{i:04}")).collect();
    let urls: Vec<String> = names
        .iter()
        .map(|n| format!("https://{n}.vault.azure.net"))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .zip(&urls)
        .map(|(n, u)| (n.as_str(), u.as_str()))
        .collect();
    let setup = write_config(&dir, &pairs, ca, 4);
    // Yearly on 1 January, 03:00 UTC: each vault's committed run below is newer than its
    // previous fire time, so none is caught up at start.
    append(
        &setup.config,
        "\n[defaults]\nschedule = \"0 3 1 1 *\"\nverify_schedule = \"\"\n\n[daemon]\nlisten = \"\"\n",
    );
    {
        let index = Index::open(dir.join("index.sqlite")).expect("index");
        let now = kvkeep::clock::now_unix();
        for name in &names {
            let vault: VaultName = name.parse().expect("vault");
            let run = RunId::random();
            let manifest: BlobKey = format!("manifests/{name}/{now}-{run}.age")
                .parse()
                .expect("key");
            index.begin_run(&run, &vault, now - 60).expect("run");
            index
                .finish_run(
                    &run,
                    RunStatus::Completed,
                    &RunStats::default(),
                    now - 30,
                    Some(&manifest),
                )
                .expect("finish");
        }
    }
    let mut child = daemon(&setup.config, false);
    let pid = child.id();
    // Past start-up (index, agenda of 1,000 vaults), then the window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let cpu_after = cpu_seconds(pid);
    let rss = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    stop(&mut child);
    println!(
        "idle daemon, {vaults} vaults, none due, {} s window:",
        window.as_secs()
    );
    println!("  RSS now          {:.1} MiB", rss as f64 / 1024.0);
    println!("  peak RSS         {:.1} MiB", hwm as f64 / 1024.0);
    println!(
        "  CPU time         {:.3} s ({:.3} % of one core)\n",
        cpu_after - cpu_before,
        100.0 * (cpu_after - cpu_before) / window.as_secs_f64()
    );
}

/// `vaults` emulator vaults on `@every 10s`: how late each job starts against its fire time.
async fn lateness(base: &Path, emulator: &kvkeep_emulator::server::Emulator, vaults: &[&str]) {
    let window = Duration::from_secs(env_usize("KVKEEP_BENCH_LATENESS_SECS", 45) as u64);
    let dir = base.join("lateness");
    std::fs::create_dir_all(&dir).expect("dir");
    let shape = Shape {
        secrets: 5,
        keys: 0,
        certificates: 0,
        latency_ms: 0,
        concurrency: 4,
    };
    let control = emulator.control();
    let mut pairs = Vec::new();
    for vault in vaults {
        throttled::seed(&control, vault, &shape).await;
        pairs.push((*vault, emulator.vault_url(vault).expect("url")));
    }
    let setup = write_config(&dir, &pairs, &emulator.info().ca_cert, 4);
    append(
        &setup.config,
        &format!(
            "\n[defaults]\nschedule = \"@every 10s\"\nverify_schedule = \"\"\n\n[daemon]\nlisten = \"\"\nmax_parallel_vaults = {}\n",
            vaults.len().min(64)
        ),
    );
    let mut child = daemon(&setup.config, true);
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut late = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["fields"]["message"] == "job started" {
                if let Some(ms) = value["fields"]["late_ms"].as_u64() {
                    late.push(ms);
                }
            }
        }
        late
    });
    tokio::time::sleep(window).await;
    stop(&mut child);
    let mut late = reader.join().unwrap_or_default();
    late.sort_unstable();
    let at = |q: f64| -> u64 {
        if late.is_empty() {
            return 0;
        }
        late[((late.len() - 1) as f64 * q).round() as usize]
    };
    println!(
        "tick lateness, {} vaults on @every 10s, max_parallel_vaults {}, {} s:",
        vaults.len(),
        vaults.len().min(64),
        window.as_secs()
    );
    println!("  job starts       {}", late.len());
    println!("  p50              {} ms", at(0.5));
    println!("  p99              {} ms", at(0.99));
    println!(
        "  max              {} ms\n",
        late.last().copied().unwrap_or(0)
    );
}

fn append(path: &Path, text: &str) {
    let mut config = std::fs::read_to_string(path).expect("config");
    config.push_str(text);
    std::fs::write(path, config).expect("config");
}

/// `kvkeep daemon`; with `debug`, JSON debug logs on stderr (the `job started` lines).
fn daemon(config: &Path, debug: bool) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"));
    command
        .args(["daemon", "--config"])
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null());
    if debug {
        command
            .args(["-v", "--log-format", "json"])
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped());
    } else {
        command
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::inherit());
    }
    command.spawn().expect("start kvkeep daemon")
}

fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
