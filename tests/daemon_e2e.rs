//! `kvkeep daemon` end to end (issue 8): the real binary running three vaults of the Key Vault
//! emulator on `@every 2s` into Azurite, over HTTPS through the official SDK crates, while the
//! test changes a secret, lets the daemon prune one vault (`prune = true`), sends SIGHUP with a
//! broken and then a grown configuration, and stops it with SIGTERM in the middle of a run.
//! systemd's side is a Unix datagram socket set as NOTIFY_SOCKET, so what the daemon tells
//! systemd is checked as systemd would receive it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvkeep::index::{Index, RunRecord, RunStatus, VerificationDepth};
use kvkeep::model::VaultName;
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::{Emulator, FaultKind, FaultSpec};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::json;
use support::azurite::Azurite;
use support::config_files::write_private;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, emulator_beside, run_kvkeep, sas_store_section, seed,
    wait_for_backup_calls_past,
};
use support::http_sink::Server;
use tempfile::TempDir;

const CONTAINER: &str = "backups";
const TOKEN: &str = "daemon-e2e-token";
const API_VERSION: &str = "7.5";
/// Scheduled from the start.
const FIRST: [&str; 3] = ["kv-a", "kv-b", "kv-c"];
/// Added by a reload.
const ADDED: &str = "kv-d";
/// Stands for the token a webhook URL carries: it must never reach a log line.
const HOOK_TOKEN: &str = "CANARY-hook-token-51c";

/// The scenario's services and files.
struct Bed {
    _azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    config: PathBuf,
    /// The configuration as first written, without `[[vault]]` sections.
    head: String,
    /// The receiver of the webhook and the ping.
    hooks: Server,
    /// `http://127.0.0.1:PORT` of the daemon's health and metrics endpoint.
    endpoint: String,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let vaults = FIRST
            .iter()
            .chain([&ADDED])
            .map(|name| VaultSettings::named(*name))
            .collect();
        let emulator = emulator_beside(&azurite, vaults).await;
        let dir = TempDir::new().expect("tempdir");
        let hooks = Server::start(&[200], Duration::ZERO).await;
        write_private(
            &dir.path().join("webhook-url"),
            &hooks.url(&format!("/hook/{HOOK_TOKEN}")),
        );
        write_private(&dir.path().join("ping-url"), &hooks.url("/ping/kv-a"));
        let store = sas_store_section(dir.path(), &azurite, CONTAINER, "daemon/");
        let resolve: Vec<String> = FIRST
            .iter()
            .chain([&ADDED])
            .map(|name| resolve_entry(emulator.vault_url(name).expect("vault url")))
            .collect();
        let config = KvkeepToml {
            store: &store,
            ca: azurite.ca_cert_path(),
            resolve: &resolve,
            concurrency: 4,
            rest: r#"[defaults]
schedule = "@every 2s"
verify_schedule = "@every 3s"

[daemon]
listen = "LISTEN"
shutdown_timeout = "30s"

[report]
html_path = "report.html"

[[notify]]
kind = "webhook"
url_file = "webhook-url"
on = ["success", "partial", "failure"]

[[notify]]
kind = "ping"
url_file = "ping-url"
vaults = ["kv-a"]

"#,
        }
        .write(dir.path(), TOKEN);
        // A port free a moment ago, for the health and metrics endpoint.
        let endpoint = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let head = std::fs::read_to_string(&config)
            .expect("config")
            .replace("LISTEN", &endpoint);
        let bed = Bed {
            _azurite: azurite,
            emulator,
            dir,
            config,
            head,
            hooks,
            endpoint: format!("http://{endpoint}"),
        };
        bed.write_vaults(&FIRST);
        bed
    }

    /// Rewrites the configuration with `[[vault]]` sections for `names`.
    fn write_vaults(&self, names: &[&str]) {
        let mut text = self.head.clone();
        for name in names {
            let url = self.emulator.vault_url(name).expect("vault url");
            text.push_str(&vault_section(name, url, "westeurope"));
            if *name == "kv-b" {
                // kv-b is pruned by the daemon after each backup down to its two newest points.
                text.push_str(
                    "\n[vault.retention]\nkeep_last = 2\nmin_retention = \"0s\"\nprune = true\n",
                );
            }
        }
        std::fs::write(&self.config, text).expect("config");
    }

    /// `kvkeep daemon` on the bed's configuration, reporting to the notify socket at `socket`.
    fn spawn_daemon(&self, socket: &Path) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
            .args(["daemon", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("KVKEEP_CONFIG")
            .env("NOTIFY_SOCKET", socket)
            // systemd's WatchdogSec=2s: the loop pings at least every second.
            .env("WATCHDOG_USEC", "2000000")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the daemon")
    }

    /// Holds every backup answer of `vault` for `ms` milliseconds.
    async fn hold_backups(&self, vault: &str, ms: u64) {
        self.emulator
            .control()
            .add_fault(&FaultSpec {
                vault: Some(vault.into()),
                op: Some("secrets.backup".into()),
                kind: FaultKind::Latency,
                count: None,
                rate: None,
                retry_after_seconds: None,
                retry_after_ms: None,
                latency_ms: Some(ms),
                page_size: None,
                next_link_host: None,
            })
            .await
            .expect("add fault");
    }

    /// GET `path` on the daemon's endpoint: the status and the body.
    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.endpoint))
            .await
            .expect("the endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    fn index_path(&self) -> PathBuf {
        self.dir.path().join("index.sqlite")
    }

    /// Every run of `vault`, newest first (none while the index does not exist yet).
    fn runs(&self, vault: &str) -> Vec<RunRecord> {
        let vault: VaultName = vault.parse().expect("vault");
        if !self.index_path().exists() {
            return Vec::new();
        }
        Index::open(self.index_path())
            .and_then(|index| index.list_runs(Some(&vault)))
            .unwrap_or_default()
    }

    fn committed(&self, vault: &str) -> Vec<RunRecord> {
        self.runs(vault)
            .into_iter()
            .filter(|r| r.is_committed())
            .collect()
    }
}

/// Polls `done` every 50 ms for up to two minutes; panics with `what` when it never holds.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2_400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon never {what}");
}

/// The notifications the daemon sent to the socket at `path`, collected as they arrive.
fn notify_socket(path: &Path) -> Arc<Mutex<Vec<String>>> {
    let socket = tokio::net::UnixDatagram::bind(path).expect("notify socket");
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(text);
        }
    });
    messages
}

fn all_messages(messages: &Mutex<Vec<String>>) -> String {
    messages
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .join("\n")
}

fn signal(pid: &str, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_three_vaults_reloads_on_sighup_and_stops_mid_run_cleanly() {
    let bed = Bed::start().await;
    for vault in FIRST.iter().chain([&ADDED]) {
        seed(&bed.emulator, vault, Collection::Secrets, "secret-", 4, 1).await;
    }
    let socket_path = bed.dir.path().join("notify.sock");
    let messages = notify_socket(&socket_path);
    let child = bed.spawn_daemon(&socket_path);
    let pid = child.id().expect("pid").to_string();

    // Every vault is backed up on schedule, each by its own runs.
    wait_for("backed up each vault twice", || {
        FIRST.iter().all(|v| bed.committed(v).len() >= 2)
    })
    .await;
    for vault in FIRST {
        assert_eq!(
            bed.committed(vault)
                .last()
                .map(|r| r.stats.captured_objects),
            Some(4),
            "{vault}'s first run captures its four secrets"
        );
    }
    // Quick verification runs on its own schedule and is recorded like `kvkeep verify`'s.
    wait_for("verified kv-a", || {
        Index::open(bed.index_path())
            .and_then(|i| i.last_verification(&"kv-a".parse().expect("vault"), None))
            .ok()
            .flatten()
            .is_some_and(|v| v.ok && v.depth == VerificationDepth::Quick)
    })
    .await;

    // A changed secret is captured at a following tick, and only it.
    bed.emulator
        .control()
        .advance_time(60)
        .await
        .expect("advance time");
    let url = bed
        .emulator
        .vault_url("kv-b")
        .expect("vault url")
        .to_string();
    let response = bed
        .emulator
        .http_client()
        .put(format!(
            "{url}/secrets/secret-00001?api-version={API_VERSION}"
        ))
        .bearer_auth(TOKEN)
        .json(&json!({ "value": "rotated" }))
        .send()
        .await
        .expect("rotate a secret");
    assert!(response.status().is_success(), "{}", response.status());
    wait_for("captured the rotated secret", || {
        bed.committed("kv-b")
            .first()
            .is_some_and(|r| r.stats.captured_objects == 1)
    })
    .await;

    // kv-b (prune = true, keep_last = 2) is pruned after its backups; the others keep all. The
    // metric counts a prune once it has ended, so it is what is waited for.
    let pruned_points = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"kvkeep_pruned_points_total{vault="kv-b"} "#))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while pruned_points(&bed.get("/metrics").await.1) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "kv-b was never pruned: {:?}",
            bed.runs("kv-b")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forgotten = bed
        .runs("kv-b")
        .iter()
        .filter(|r| r.forgotten_at.is_some())
        .count();
    assert!(forgotten >= 2, "{:?}", bed.runs("kv-b"));
    assert!(
        bed.committed("kv-b").len() <= 3,
        "{:?}",
        bed.committed("kv-b")
    );
    assert!(bed.runs("kv-a").iter().all(|r| r.forgotten_at.is_none()));

    // Prometheus sees what happened, per vault.
    let (status, metrics) = bed.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"kvkeep_objects_total{vault="kv-b",kind="secrets",outcome="captured"} 5"#,
        r#"kvkeep_objects_total{vault="kv-a",kind="secrets",outcome="captured"} 4"#,
        r#"kvkeep_last_run_status{vault="kv-b",status="completed"} 1"#,
        r#"kvkeep_last_verify_success{vault="kv-a"} 1"#,
        r#"kvkeep_build_info{version=""#,
        r#"kvkeep_start_delay_seconds_count{vault="kv-a"}"#,
        r#"kvkeep_pruned_blobs_total{vault="kv-b"}"#,
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    assert!(!metrics.contains(r#"kvkeep_pruned_points_total{vault="kv-a"}"#));
    assert!(
        !metrics.contains(r#"kvkeep_prune_failures_total{vault="kv-b"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kvkeep_next_run_timestamp_seconds{vault="kv-c"}"#),
        "{metrics}"
    );
    assert_eq!(bed.get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(bed.get("/readyz").await, (200, "ready".to_string()));
    assert!(
        metrics.contains("kvkeep_report_written_timestamp_seconds "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("kvkeep_report_failures_total 1"),
        "{metrics}"
    );

    // [report] html_path: the HTML report is rewritten after runs and served at /report.
    let (status, page) = bed.get("/report").await;
    assert_eq!(status, 200, "{page}");
    for vault in FIRST {
        assert!(
            page.contains(&format!(r#"<section class="vault" id="vault-{vault}""#)),
            "no section for {vault} in /report"
        );
    }
    assert!(!page.contains(r#"id="vault-kv-d""#));

    // SIGHUP with a broken file: every problem logged, the old configuration kept running.
    let good = std::fs::read_to_string(&bed.config).expect("config");
    std::fs::write(
        &bed.config,
        format!("{good}\n[[vault]]\nname = \"Not A Vault!\"\n"),
    )
    .expect("config");
    signal(&pid, "HUP");
    wait_for("refused the broken configuration", || {
        all_messages(&messages).contains("reload refused")
    })
    .await;
    // Still alive, but not ready: a restart would not come back with this file.
    let (status, reason) = bed.get("/readyz").await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("reload refused"), "{reason}");
    let before = bed.committed("kv-a").len();
    wait_for("kept backing up after a refused reload", || {
        bed.committed("kv-a").len() >= before + 2
    })
    .await;

    // SIGHUP adding a vault schedules it.
    bed.write_vaults(&[FIRST[0], FIRST[1], FIRST[2], ADDED]);
    signal(&pid, "HUP");
    wait_for("backed up the vault added by a reload", || {
        !bed.committed(ADDED).is_empty()
    })
    .await;
    assert_eq!(bed.get("/readyz").await.0, 200);
    let report_file = bed.dir.path().join("report.html");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !bed
        .get("/report")
        .await
        .1
        .contains(&format!(r#"<section class="vault" id="vault-{ADDED}""#))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the added vault never showed in /report"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM while kv-c is mid-run: every backup answer of kv-c is held for a while.
    bed.hold_backups("kv-c", 1_500).await;
    bed.emulator
        .control()
        .clear_counters()
        .await
        .expect("clear counters");
    // Twelve new secrets: three rounds of four held calls, so objects are still queued when
    // the stop comes.
    seed(&bed.emulator, "kv-c", Collection::Secrets, "later-", 12, 1).await;
    wait_for_backup_calls_past(&bed.emulator, "kv-c", 0).await;
    signal(&pid, "TERM");
    let out = child.wait_with_output().await.expect("the daemon exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for vault in FIRST.iter().chain([&ADDED]) {
        let runs = bed.runs(vault);
        assert!(
            runs.iter().all(|r| r.status != RunStatus::Running),
            "{vault}: a run left running: {runs:?}"
        );
    }
    assert!(
        bed.runs("kv-c")
            .iter()
            .any(|r| r.status == RunStatus::Interrupted),
        "the run stopped mid-way is committed as interrupted: {:?}\n{stderr}",
        bed.runs("kv-c")
    );
    // The last report, written after the stop, is private and shows the interrupted run.
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&report_file).expect("the report file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let page = std::fs::read_to_string(&report_file).expect("report");
        let kv_c = page
            .split(r#"<section class="vault" id="vault-kv-c""#)
            .nth(1)
            .expect("kv-c's section");
        let kv_c = kv_c.split("</section>").next().unwrap_or_default();
        // The facts line: "<dt>Restore points</dt><dd>N from … M failed, K interrupted</dd>".
        let facts = kv_c
            .split("<dt>Restore points</dt><dd>")
            .nth(1)
            .and_then(|rest| rest.split("</dd>").next())
            .expect("kv-c's restore points line");
        let interrupted: u32 = facts
            .strip_suffix(" interrupted")
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count of interrupted points in {facts:?}"));
        assert!(
            interrupted >= 1,
            "kv-c's interrupted run is not in the last report: {facts:?}, {:?}",
            bed.runs("kv-c")
        );
    }
    // The broken file's problem was logged by key, and the daemon said what it did.
    assert!(stderr.contains("vault[3].name"), "{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");

    let messages = all_messages(&messages);
    for expected in [
        "READY=1",
        "WATCHDOG=1",
        "RELOADING=1",
        "MONOTONIC_USEC=",
        "STATUS=reload refused: ",
        "STATUS=3 vault(s) scheduled",
        "STATUS=4 vault(s) scheduled",
        "STOPPING=1",
    ] {
        assert!(
            messages.contains(expected),
            "no {expected} sent to systemd: {messages}"
        );
    }

    // The webhook heard every run's outcome, the interrupted one as a failure; the ping
    // bracketed kv-a's runs and no other vault's.
    let summaries: Vec<serde_json::Value> = bed
        .hooks
        .seen()
        .iter()
        .filter(|r| r.method == "POST" && r.target.starts_with("/hook/"))
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON summary"))
        .collect();
    for vault in FIRST.iter().chain([&ADDED]) {
        assert!(
            summaries
                .iter()
                .any(|s| s["vault"] == *vault && s["outcome"] == "success"),
            "no success summary for {vault}: {summaries:?}"
        );
    }
    assert!(
        summaries.iter().any(|s| s["vault"] == "kv-c"
            && s["status"] == "interrupted"
            && s["outcome"] == "failure"),
        "{summaries:?}"
    );
    let pings: Vec<String> = bed
        .hooks
        .seen()
        .iter()
        .filter(|r| r.target.starts_with("/ping/"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert!(
        pings.contains(&"GET /ping/kv-a/start".to_string()),
        "{pings:?}"
    );
    assert!(pings.contains(&"GET /ping/kv-a".to_string()), "{pings:?}");
    assert!(
        pings.iter().all(|p| p.starts_with("GET /ping/kv-a")),
        "{pings:?}"
    );
    assert!(!stderr.contains(HOOK_TOKEN), "{stderr}");

    // Everything the daemon wrote verifies.
    let verify = run_kvkeep(&bed.config, &["verify"], &[]).await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// `[daemon] shutdown_timeout`: a stop that cannot finish the objects in flight in time ends the
/// process anyway, with exit 1 and a message saying so; the next daemon start marks the run it
/// left behind interrupted, so nothing stays `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_outlasts_shutdown_timeout_exits_1_and_the_next_start_cleans_up() {
    let bed = Bed::start().await;
    bed.write_vaults(&["kv-a"]);
    let text = std::fs::read_to_string(&bed.config).expect("config");
    std::fs::write(
        &bed.config,
        text.replace("shutdown_timeout = \"30s\"", "shutdown_timeout = \"1s\""),
    )
    .expect("config");
    seed(&bed.emulator, "kv-a", Collection::Secrets, "secret-", 4, 1).await;
    // Every backup answer is held for two minutes: far longer than the stop may take.
    bed.hold_backups("kv-a", 120_000).await;
    let socket_path = bed.dir.path().join("notify.sock");
    let _messages = notify_socket(&socket_path);
    let child = bed.spawn_daemon(&socket_path);
    let pid = child.id().expect("pid").to_string();
    wait_for_backup_calls_past(&bed.emulator, "kv-a", 0).await;
    signal(&pid, "TERM");
    let out = child.wait_with_output().await.expect("the daemon exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shutdown_timeout passed"), "{stderr}");
    assert!(stderr.contains("timeout=1s"), "{stderr}");
    assert!(
        bed.runs("kv-a")
            .first()
            .is_some_and(|r| r.status == RunStatus::Running),
        "the run cut off is still marked running until the next run: {:?}",
        bed.runs("kv-a")
    );

    bed.emulator
        .control()
        .clear_faults()
        .await
        .expect("clear faults");
    // The daemon marks it interrupted at start, even for a vault it will not run (paused).
    let mut text = std::fs::read_to_string(&bed.config).expect("config");
    text.push_str("paused = true\n");
    std::fs::write(&bed.config, text).expect("config");
    let child = bed.spawn_daemon(&socket_path);
    let pid = child.id().expect("pid").to_string();
    wait_for("marked the run left behind interrupted", || {
        let runs = bed.runs("kv-a");
        !runs.is_empty() && runs.iter().all(|r| r.status == RunStatus::Interrupted)
    })
    .await;
    signal(&pid, "TERM");
    let out = child.wait_with_output().await.expect("the daemon exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup = run_kvkeep(&bed.config, &["backup"], &[]).await;
    assert_eq!(
        backup.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let runs = bed.runs("kv-a");
    assert!(
        runs.iter().all(|r| r.status != RunStatus::Running),
        "{runs:?}"
    );
    assert!(
        runs.iter().any(|r| r.status == RunStatus::Interrupted),
        "{runs:?}"
    );
}
