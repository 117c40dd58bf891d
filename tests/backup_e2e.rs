//! `kvkeep backup` end to end: the real binary, configured by a file, backing up the Key Vault
//! emulator over HTTPS (through the official SDK crates) into Azurite (through the official
//! blob crate), with faults injected by the emulator. Counters come from the emulator's control
//! plane, so "no backup calls" is what the service saw, not what kvkeep believes it did.
//!
//! One scenario per test, each with its own emulator and Azurite, so they run in parallel
//! without sharing state.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, FaultKind, FaultSpec};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::{json, Value};
use support::azurite::Azurite;
use support::config_files::{resolve_entry, KvkeepToml};
use support::e2e::{
    azurite_with_container, data_plane, emulator_beside, json_out, run_kvkeep, sas_store_section,
};
use tempfile::TempDir;

const VAULT: &str = "kv-e2e";
const CONTAINER: &str = "backups";
use support::e2e::API_VERSION;
const TOKEN: &str = "e2e-test-token";

/// More than three pages of 25 of each kind.
const SECRETS: usize = 80;
const KEYS: usize = 78;
const CERTIFICATES: usize = 77;

/// Everything one scenario runs against.
struct Bed {
    azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    config: PathBuf,
    vault_url: String,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let emulator = emulator_beside(&azurite, vec![VaultSettings::named(VAULT)]).await;
        let vault_url = emulator.vault_url(VAULT).expect("vault url").to_string();
        let dir = TempDir::new().expect("tempdir");
        let config = write_config(dir.path(), &azurite, &vault_url);
        Bed {
            azurite,
            emulator,
            dir,
            config,
            vault_url,
        }
    }

    async fn seed(&self, kind: Collection, prefix: &str, count: usize, versions: usize) {
        self.seed_tagged(kind, prefix, count, versions, BTreeMap::new())
            .await;
    }

    async fn seed_tagged(
        &self,
        kind: Collection,
        prefix: &str,
        count: usize,
        versions: usize,
        tags: BTreeMap<String, String>,
    ) {
        self.emulator
            .control()
            .seed(
                VAULT,
                &SeedSpec {
                    tags,
                    ..SeedSpec::new(kind, prefix, count, versions)
                },
            )
            .await
            .expect("seed");
    }

    /// The standard vault: every kind over several pages, several versions, certificate-managed
    /// keys and secrets, one skip-tagged secret.
    async fn seed_standard(&self) {
        self.seed(Collection::Secrets, "secret-", SECRETS, 2).await;
        self.seed(Collection::Keys, "key-", KEYS, 2).await;
        self.seed(Collection::Certificates, "cert-", CERTIFICATES, 1)
            .await;
        self.seed_tagged(
            Collection::Secrets,
            "ignored-",
            1,
            1,
            BTreeMap::from([("kvkeep".to_string(), "skip".to_string())]),
        )
        .await;
    }

    /// A data-plane call, as an application would make it.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        self.call_value(method, path, body).await;
    }

    /// A data-plane call, as an application would make it; the JSON answer (null when none).
    async fn call_value(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        data_plane(&self.emulator, &self.vault_url, TOKEN, method, path, body).await
    }

    /// Moves the emulator's clock on: Key Vault timestamps have one-second resolution, and a
    /// change in the same second as the last capture is (correctly) only found by a deep scan.
    async fn later(&self) {
        self.emulator
            .control()
            .advance_time(60)
            .await
            .expect("advance time");
    }

    async fn fault(&self, op: &str, kind: FaultKind, count: u64, retry_after: Option<u64>) {
        self.emulator
            .control()
            .add_fault(&FaultSpec {
                vault: Some(VAULT.into()),
                op: Some(op.into()),
                kind,
                count: Some(count),
                rate: None,
                retry_after_seconds: retry_after,
                retry_after_ms: None,
                latency_ms: None,
                page_size: None,
                next_link_host: None,
            })
            .await
            .expect("add fault");
    }

    /// Requests per operation the emulator saw for the vault since the last clear.
    async fn counters(&self) -> BTreeMap<String, u64> {
        let counters = self.emulator.control().counters().await.expect("counters");
        counters.vaults.get(VAULT).cloned().unwrap_or_default()
    }

    async fn clear_counters(&self) {
        self.emulator
            .control()
            .clear_counters()
            .await
            .expect("clear counters");
    }

    /// `kvkeep <args> --config <file>`, with extra environment.
    async fn kvkeep(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_kvkeep(&self.config, args, env).await
    }

    /// `kvkeep backup --output json`: the exit code and the vault's report.
    async fn backup(&self) -> (i32, Value, Output) {
        let out = self.kvkeep(&["backup", "--output", "json"], &[]).await;
        let report = report_of(&out);
        (out.status.code().unwrap_or(-1), report, out)
    }
}

fn report_of(out: &Output) -> Value {
    json_out(out)["vaults"][0].clone()
}

fn stat(report: &Value, field: &str) -> u64 {
    report["stats"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{field} in {report}"))
}

fn calls(counters: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    counters
        .iter()
        .filter(|(op, _)| op.ends_with(suffix))
        .map(|(_, n)| *n)
        .sum()
}

/// The configuration an operator would write for this test bed.
fn write_config(dir: &Path, azurite: &Azurite, vault_url: &str) -> PathBuf {
    KvkeepToml {
        store: &sas_store_section(dir, azurite, CONTAINER, "e2e/"),
        ca: azurite.ca_cert_path(),
        resolve: &[resolve_entry(vault_url)],
        concurrency: 8,
        rest: &format!(
            r#"[defaults]
skip_tags = {{ kvkeep = "skip" }}

[[vault]]
name = "{VAULT}"
url = "{vault_url}"
"#
        ),
    }
    .write(dir, TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backs_up_every_page_of_every_kind_then_only_what_changed() {
    let bed = Bed::start().await;
    bed.seed_standard().await;
    let total = (SECRETS + KEYS + CERTIFICATES) as u64;

    // Faults on the way: throttling with and without Retry-After, 503s and connection resets.
    bed.fault("secrets.backup", FaultKind::Throttle, 2, None)
        .await;
    bed.fault("keys.backup", FaultKind::Throttle, 2, Some(1))
        .await;
    bed.fault("certificates.backup", FaultKind::Error503, 3, None)
        .await;
    bed.fault("secrets.list_versions", FaultKind::Reset, 3, None)
        .await;
    bed.fault("keys.list", FaultKind::Reset, 1, None).await;

    let (code, report, out) = bed.backup().await;
    assert_eq!(
        code,
        0,
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "completed");
    assert_eq!(stat(&report, "captured_objects"), total);
    assert_eq!(stat(&report, "backup_calls"), total);
    // Two managed objects per certificate, and the skip-tagged secret.
    assert_eq!(
        stat(&report, "skipped_objects"),
        2 * CERTIFICATES as u64 + 1
    );
    let counters = bed.counters().await;
    assert!(
        counters.get("secrets.list").copied().unwrap_or(0) >= 4,
        "every page of secrets is read: {counters:?}"
    );
    assert!(counters.get("certificates.list").copied().unwrap_or(0) >= 4);
    // Managed keys and secrets are never backed up directly (the service would refuse).
    assert_eq!(
        counters.get("keys.backup").copied().unwrap_or(0),
        KEYS as u64 + 2,
        "each key once, plus the two throttled attempts: {counters:?}"
    );
    let faulted = bed.emulator.control().counters().await.expect("counters");
    assert!(
        faulted.faulted.get(VAULT).copied().unwrap_or(0) >= 11,
        "every injected fault fired: {faulted:?}"
    );

    // Blobs and manifest are in Azurite, under the prefix.
    let listed = bed.kvkeep(&["list", "runs", "--output", "json"], &[]).await;
    let runs: Value = serde_json::from_slice(&listed.stdout).expect("runs json");
    assert_eq!(runs[0]["committed"], true, "{runs}");
    let manifest = runs[0]["manifest"].as_str().expect("manifest key");
    assert!(manifest.starts_with(&format!("manifests/{VAULT}/")));

    // A repeat run with nothing changed makes no backup calls at all.
    bed.clear_counters().await;
    let (code, report, _) = bed.backup().await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(stat(&report, "captured_objects"), 0);
    assert_eq!(stat(&report, "unchanged_objects"), total);
    let counters = bed.counters().await;
    assert_eq!(calls(&counters, ".backup"), 0, "{counters:?}");

    // One new secret version and one deletion: exactly that secret is captured.
    bed.later().await;
    bed.call(
        reqwest::Method::PUT,
        "secrets/secret-00007",
        Some(json!({"value": "rotated"})),
    )
    .await;
    bed.call(reqwest::Method::DELETE, "secrets/secret-00008", None)
        .await;

    // A dry run shows it and writes nothing.
    let dry = bed
        .kvkeep(&["backup", "--dry-run", "--output", "json"], &[])
        .await;
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let plan: Value = serde_json::from_slice(&dry.stdout).expect("plan json");
    assert_eq!(
        plan["plans"][0]["changed"][0]["name"], "secret-00007",
        "{plan}"
    );
    assert_eq!(
        plan["plans"][0]["gone"][0]["name"], "secret-00008",
        "{plan}"
    );
    let runs_after_dry = bed.kvkeep(&["list", "runs", "--output", "json"], &[]).await;
    let runs_after_dry: Value = serde_json::from_slice(&runs_after_dry.stdout).expect("json");
    assert_eq!(
        runs_after_dry.as_array().map(Vec::len),
        Some(2),
        "the dry run recorded no run"
    );

    bed.clear_counters().await;
    let (code, report, _) = bed.backup().await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(stat(&report, "captured_objects"), 1);
    assert_eq!(stat(&report, "deleted_objects"), 1);
    let counters = bed.counters().await;
    assert_eq!(calls(&counters, ".backup"), 1, "{counters:?}");
    assert_eq!(counters.get("secrets.backup").copied(), Some(1));

    let versions = bed
        .kvkeep(
            &[
                "list",
                "versions",
                "--vault",
                VAULT,
                "--kind",
                "secrets",
                "--name",
                "secret-00007",
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    let versions: Value = serde_json::from_slice(&versions.stdout).expect("versions json");
    assert_eq!(versions.as_array().map(Vec::len), Some(3), "{versions}");
    let objects = bed
        .kvkeep(&["list", "objects", "--output", "json"], &[])
        .await;
    let objects: Value = serde_json::from_slice(&objects.stdout).expect("objects json");
    let deleted: Vec<&Value> = objects
        .as_array()
        .expect("array")
        .iter()
        .filter(|o| !o["deleted_at"].is_null())
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["name"], "secret-00008");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_object_ends_partially_failed_with_exit_3() {
    let bed = Bed::start().await;
    bed.seed(Collection::Secrets, "secret-", 30, 1).await;
    bed.seed(Collection::Keys, "key-", 5, 1).await;
    // Key Vault refuses to back up an object of more than 500 versions: it fails every run
    // until versions are removed.
    bed.seed(Collection::Secrets, "huge-", 1, 501).await;

    let (code, report, out) = bed.backup().await;
    assert_eq!(
        code,
        3,
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "partially_failed");
    assert_eq!(stat(&report, "captured_objects"), 35);
    assert_eq!(stat(&report, "failed_objects"), 1);
    assert_eq!(report["failures"][0]["name"], "huge-00000");
    assert_eq!(report["failures"][0]["error_kind"], "too_many_versions");
    let counters = bed.counters().await;
    assert_eq!(
        counters.get("secrets.backup").copied(),
        Some(30),
        "{counters:?}"
    );

    // The table says which object failed and why.
    let table = bed.kvkeep(&["backup"], &[]).await;
    assert_eq!(table.status.code(), Some(3));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("huge-00000") && text.contains("500"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_never_appears_in_logs_index_store_or_arguments() {
    let bed = Bed::start().await;
    let canary = format!("kvkeep-canary-{}", std::process::id());
    bed.seed(Collection::Secrets, "secret-", 5, 1).await;
    bed.seed(Collection::Certificates, "cert-", 2, 1).await;
    bed.call(
        reqwest::Method::PUT,
        "secrets/canary",
        Some(json!({"value": canary})),
    )
    .await;

    let out = bed
        .kvkeep(
            &["-vv", "backup", "--output", "json"],
            &[("RUST_LOG", "trace")],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TRACE") || stderr.contains("trace"),
        "trace logging was on"
    );
    let contains = |haystack: &[u8]| {
        haystack
            .windows(canary.len())
            .any(|w| w == canary.as_bytes())
    };
    assert!(!contains(&out.stderr), "the canary is in the logs");
    assert!(!contains(&out.stdout), "the canary is in the output");

    // The index (and its write-ahead log) and every other file kvkeep wrote.
    for entry in std::fs::read_dir(bed.dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(!contains(&bytes), "the canary is in {}", path.display());
        }
    }
    // Every blob in the store, as stored.
    let config = kvkeep::config::Config::load(&bed.config).expect("config");
    let store = kvkeep::store::open_store(&config.store, &config.azure)
        .await
        .expect("open the store");
    let blobs = store.list("").await.expect("list");
    assert!(blobs.len() >= 9, "objects and manifest: {blobs:?}");
    for blob in blobs {
        let bytes = store.get(&blob.key).await.expect("get");
        assert!(!contains(&bytes), "the canary is in blob {}", blob.key);
    }
    // Nothing kvkeep is given on its command line holds secrets: only the config path.
    let args = format!("-vv backup --output json --config {}", bed.config.display());
    assert!(!args.contains(&canary));
    // The secret really was backed up (so the checks above looked at its blob).
    let report = report_of(&out);
    assert_eq!(stat(&report, "captured_objects"), 8);
    drop(bed.azurite);
}

#[test]
fn unknown_vault_names_are_usage_errors_listing_the_configured_vaults() {
    let dir = TempDir::new().expect("tempdir");
    let identity = kvkeep::crypto::Identity::generate();
    let config = dir.path().join("kvkeep.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ntype = \"local\"\npath = \"store\"\n[encryption]\nrecipients = [\"{}\"]\n[index]\npath = \"index.sqlite\"\n[[vault]]\nname = \"kv-one\"\n[[vault]]\nname = \"kv-two\"\n",
            identity.recipient()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["backup", "--vault", "kv-three", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kv-three") && stderr.contains("kv-one, kv-two"),
        "{stderr}"
    );
    assert!(!dir.path().join("store").exists(), "nothing written");
    assert!(!dir.path().join("index.sqlite").exists(), "nothing written");
    // list on a fresh configuration: nothing yet, not an error, and no index created.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["list", "runs", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(!dir.path().join("index.sqlite").exists());
}

#[test]
fn demo_runs_without_azure_and_leaves_a_usable_index() {
    let dir = TempDir::new().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["demo", "--dir"])
        .arg(&demo_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kvkeep list runs --config"), "{stdout}");
    // It ends with a point-in-time restore of the first backup into a fresh vault, read back
    // and compared: 6 secrets, 3 keys and 2 certificates restored, everything matching.
    assert!(
        stdout.contains("restored 11 objects into kv-demo-restore: all match"),
        "{stdout}"
    );
    let restore_step = stdout.find("6. point-in-time restore").expect("step 6");
    assert!(
        stdout
            .find("5. second backup")
            .is_some_and(|backup| backup < restore_step),
        "the restore comes after the second backup: {stdout}"
    );
    for file in ["kvkeep.toml", "identity.txt", "index.sqlite", "report.html"] {
        assert!(demo_dir.join(file).is_file(), "{file} is kept");
    }
    // It ends by writing the HTML report, after the restore, and says where it is.
    let report_path = demo_dir.join("report.html");
    let report_step = stdout
        .find("7. wrote the HTML retention report")
        .expect("step 7");
    assert!(restore_step < report_step, "{stdout}");
    assert!(
        stdout[report_step..].contains(&report_path.display().to_string()),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&report_path).expect("report");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        page.contains(r#"<section class="vault" id="vault-demo-vault""#),
        "no section for the demo vault"
    );
    // Both backups are restore points, drawn as marks in the timeline.
    assert!(
        page.contains("2 from "),
        "the facts line counts two restore points"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(demo_dir.join("identity.txt"))
            .expect("identity")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&report_path)
            .expect("report")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let runs = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["list", "runs", "--output", "json", "--config"])
        .arg(demo_dir.join("kvkeep.toml"))
        .output()
        .expect("list runs");
    let runs: Value = serde_json::from_slice(&runs.stdout).expect("json");
    let runs = runs.as_array().expect("array");
    assert_eq!(runs.len(), 2);
    // Newest first: the second run captured the two changed objects and saw one deletion.
    assert_eq!(runs[0]["captured_objects"], 2);
    assert_eq!(runs[0]["deleted_objects"], 1);
    assert!(runs
        .iter()
        .all(|r| r["status"] == "completed" && r["committed"] == true));
    // A second demo into the same directory is refused: it must be fresh.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["demo", "--dir"])
        .arg(&demo_dir)
        .output()
        .expect("run the demo again");
    assert_eq!(again.status.code(), Some(2));
}

/// A change to an *older* version (disabling it) moves nothing in the listing; only a deep scan
/// finds it. Driven through the library (the production wiring, [`kvkeep::backup::Runner`]) so
/// the test can move kvkeep's clock past `deep_scan_every`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_scan_catches_a_change_to_an_older_version() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    let bed = Bed::start().await;
    bed.seed(Collection::Secrets, "secret-", 3, 3).await;
    let config = kvkeep::config::Config::load(&bed.config).expect("config");
    let now = Arc::new(AtomicI64::new(kvkeep::clock::now_unix()));
    let clock: kvkeep::backup::Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let runner = kvkeep::backup::Runner::open(&config, false, clock)
        .await
        .expect("open");
    let run = || async {
        runner
            .backup(
                &config.vaults,
                tokio_util::sync::CancellationToken::new(),
                Arc::new(kvkeep::backup::NoProgress),
            )
            .await
            .remove(0)
    };
    let first = run().await;
    assert_eq!(first.stats.captured_objects, 3, "{first:?}");

    // Disable the oldest version of secret-00001; its current version is untouched.
    bed.later().await;
    let versions: Value = bed
        .emulator
        .http_client()
        .get(format!(
            "{}/secrets/secret-00001/versions?api-version={API_VERSION}",
            bed.vault_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list versions")
        .json()
        .await
        .expect("json");
    let mut ids: Vec<(i64, String)> = versions["value"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["attributes"]["created"].as_i64().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ids.sort();
    let oldest = ids[0].1.rsplit('/').next().expect("version").to_string();
    bed.call(
        reqwest::Method::PATCH,
        &format!("secrets/secret-00001/{oldest}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;

    // Within the deep-scan period the change is invisible: nothing listed moved.
    bed.clear_counters().await;
    let quiet = run().await;
    assert_eq!(quiet.stats.captured_objects, 0, "{quiet:?}");
    assert_eq!(calls(&bed.counters().await, ".list_versions"), 0);

    // Past `deep_scan_every` (7 days by default), every version list is compared.
    now.fetch_add(8 * 86_400, Ordering::SeqCst);
    bed.clear_counters().await;
    let scanned = run().await;
    let counters = bed.counters().await;
    assert_eq!(scanned.stats.captured_objects, 1, "{scanned:?}");
    // Three scans; the capture of the changed secret reuses its scan's listing.
    assert_eq!(calls(&counters, ".list_versions"), 3, "{counters:?}");
    assert_eq!(
        calls(&counters, ".get"),
        0,
        "no object is read: {counters:?}"
    );
    assert_eq!(
        counters.get("secrets.backup").copied(),
        Some(1),
        "{counters:?}"
    );
    let captured = runner
        .index()
        .list_captures(
            &config.vaults[0].name,
            kvkeep::model::ObjectKind::Secrets,
            &"secret-00001".parse().expect("name"),
        )
        .expect("captures");
    assert_eq!(captured[0].run, scanned.run);
}

/// Issue 7.7: a run left `running` by a killed process is marked `interrupted` by the next
/// backup of its vault, and only once that backup holds the vault's lock: while another
/// process holds it, the backup is refused and names that process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_is_marked_interrupted_and_a_vault_held_elsewhere_is_refused() {
    let bed = Bed::start().await;
    bed.seed(Collection::Secrets, "secret-", 3, 1).await;
    let index_path = bed.dir.path().join("index.sqlite");
    let vault: kvkeep::model::VaultName = VAULT.parse().expect("vault");
    let crashed: kvkeep::model::RunId = "00000000000000aa".parse().expect("run");
    {
        let index = kvkeep::index::Index::open(&index_path).expect("index");
        index.begin_run(&crashed, &vault, 1_000).expect("begin");
    }
    let status_of_crashed = || {
        kvkeep::index::Index::open(&index_path)
            .expect("index")
            .run(&crashed)
            .expect("read")
            .expect("run")
            .status
    };

    // Another process (this test) works on the vault: the backup must not touch it.
    let held =
        kvkeep::index::lock_vault(&index_path, &vault, "kvkeep daemon", 1_000).expect("lock");
    let (code, report, out) = bed.backup().await;
    assert_eq!(code, 1, "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("pid {}", std::process::id())) && error.contains("kvkeep daemon"),
        "the refusal names the holder: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        calls(&bed.counters().await, ".list"),
        0,
        "nothing was listed"
    );
    assert_eq!(status_of_crashed(), kvkeep::index::RunStatus::Running);

    drop(held);
    let (code, report, _) = bed.backup().await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(status_of_crashed(), kvkeep::index::RunStatus::Interrupted);
}

/// The version id at the end of an object id in a data-plane answer.
fn version_of(bundle: &Value) -> String {
    let id = bundle["id"]
        .as_str()
        .or_else(|| bundle["key"]["kid"].as_str())
        .unwrap_or_else(|| panic!("no id in {bundle}"));
    id.rsplit('/').next().unwrap_or_default().to_string()
}

/// DESIGN §6: capturing an object costs a version listing and a backup, and no secret value is
/// ever read: the daemon's identity needs list + backup only. Counted by the emulator, so it is
/// what the service saw. Includes the cases that used to need a read: a secret whose current
/// version is disabled, and versions created within the same second (the listing's attributes
/// and tags name the current one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reads_no_secret_value_and_makes_two_requests_per_object() {
    let bed = Bed::start().await;
    bed.seed(Collection::Secrets, "secret-", 30, 2).await;
    bed.seed(Collection::Keys, "key-", 3, 2).await;
    bed.seed(Collection::Certificates, "cert-", 2, 1).await;
    // Two versions in the same second, told apart by their tags only.
    let put = |value: &str, tag: &str| Some(json!({"value": value, "tags": {"generation": tag}}));
    bed.call(reqwest::Method::PUT, "secrets/twins", put("one", "1"))
        .await;
    let twin = bed
        .call_value(reqwest::Method::PUT, "secrets/twins", put("two", "2"))
        .await;
    // A secret whose current version is disabled: reading it would be refused anyway.
    bed.call(
        reqwest::Method::PUT,
        "secrets/retired",
        Some(json!({"value": "old"})),
    )
    .await;
    let retired = bed
        .call_value(
            reqwest::Method::PUT,
            "secrets/retired",
            Some(json!({"value": "last", "attributes": {"enabled": false}})),
        )
        .await;
    bed.clear_counters().await;

    let (code, report, out) = bed.backup().await;
    assert_eq!(
        code,
        0,
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let captured = stat(&report, "captured_objects");
    assert_eq!(captured, 30 + 3 + 2 + 2);
    let counters = bed.counters().await;
    assert_eq!(
        calls(&counters, ".get"),
        0,
        "no secret value (and no other object) is read: {counters:?}"
    );
    let list_pages = calls(&counters, ".list");
    let total: u64 = counters.values().sum();
    assert!(
        total <= 2 * captured + list_pages,
        "{total} requests for {captured} objects and {list_pages} list pages: {counters:?}"
    );

    let objects = bed
        .kvkeep(&["list", "objects", "--output", "json"], &[])
        .await;
    let objects: Value = serde_json::from_slice(&objects.stdout).expect("objects json");
    let current = |name: &str| {
        objects
            .as_array()
            .expect("array")
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {objects}"))["current_version"]
            .clone()
    };
    assert_eq!(current("twins"), version_of(&twin).as_str());
    assert_eq!(current("retired"), version_of(&retired).as_str());
}

/// Issue 7.6: the first interrupt lets the objects in flight finish and starts nothing more; a
/// second one exits at once with status 130 instead of waiting for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_exits_at_once_with_130() {
    let bed = Bed::start().await;
    bed.seed(Collection::Secrets, "secret-", 20, 1).await;
    // Every backup answer is held for a minute, so objects are in flight when interrupted.
    bed.emulator
        .control()
        .add_fault(&FaultSpec {
            vault: Some(VAULT.into()),
            op: Some("secrets.backup".into()),
            kind: FaultKind::Latency,
            count: None,
            rate: None,
            retry_after_seconds: None,
            retry_after_ms: None,
            latency_ms: Some(60_000),
            page_size: None,
            next_link_host: None,
        })
        .await
        .expect("add fault");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["backup", "--output", "json", "--config"])
        .arg(&bed.config)
        .env_remove("RUST_LOG")
        .env_remove("KVKEEP_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kvkeep");
    let pid = child.id().expect("pid").to_string();
    // Interrupt only once the run is capturing (its handlers are installed by then).
    let mut polls = 0;
    while calls(&bed.counters().await, ".list_versions") == 0 {
        polls += 1;
        assert!(polls < 3_000, "the backup never started capturing");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let interrupt = || {
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
    };
    assert!(interrupt().success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(interrupt().success());
    let out = child.wait_with_output().await.expect("kvkeep exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted twice"), "{stderr}");
}
