//! Retention and prune end to end (issue 9): 90 days of backups of the Key Vault emulator into
//! Azurite, over HTTPS, taken by the library's runner with a clock that walks through those
//! days while the emulator's clock is shifted to match; then the real binary's `prune
//! --dry-run` and `prune`, with the policy's reasons checked point by point, the store listed
//! against what the kept points hold, and every kept point restored into a second vault and
//! compared with what the source vault held at that time.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kvkeep::backup::{Clock, NoProgress, Runner};
use kvkeep::config::Config;
use kvkeep::crypto::Identities;
use kvkeep::index::Index;
use kvkeep::restore::{
    plan_restore, ConflictPolicy, NoRestoreProgress, RestoreOptions, RestoreRequest, Restorer,
    VaultLocation,
};
use kvkeep::source::{AzureSourceOptions, AzureVaultSource, VaultSource};
use kvkeep::store::BlobStore;
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::Emulator;
use kvkeep_emulator::vault::VaultSettings;
use reqwest::Method;
use serde_json::{json, Value};
use support::azurite::Azurite;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, data_plane, emulator_beside, json_out, run_kvkeep, seed,
    write_container_sas,
};
use support::prune_bed::listed;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const CONTAINER: &str = "backups";
const TOKEN: &str = "prune-e2e-token";
const SRC: &str = "kv-src";
const DST: &str = "kv-dst";
const HOUR: i64 = 3_600;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 90;
/// One backup every six hours for the first 88 days, then hourly for the last two: 401 runs.
/// A run takes about 90 ms in a debug build on two cores (measured), so hourly for all 90 days
/// (2,160 runs) would take over three minutes and every three hours still about 70 s before the
/// restores; every six hours keeps the whole test near a minute, and the 48 hourly runs at the
/// end give `keep_hourly = 24` a full day of real hourly points.
const SPARSE_EVERY: i64 = 6 * HOUR;
const DENSE_DAYS: i64 = 2;
/// The run before which `secrets/legacy` is deleted: about day 45.
const LEGACY_DELETED_AT_DAY: i64 = 45;
/// `secrets/app-<n>` is added every this many days.
const NEW_SECRET_EVERY_DAYS: i64 = 20;

/// What kv-src held at one backup: per secret (the certificate's own secret aside), its
/// current value and every version it has.
type SecretsState = BTreeMap<String, (String, BTreeSet<String>)>;

struct Bed {
    _azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    config_path: PathBuf,
    config: Config,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let vaults = [SRC, DST]
            .iter()
            .map(|name| VaultSettings {
                geo: "europe".into(),
                ..VaultSettings::named(*name)
            })
            .collect();
        let emulator = emulator_beside(&azurite, vaults).await;
        let dir = TempDir::new().expect("tempdir");
        let config_path = write_config(dir.path(), &azurite, &emulator);
        let config = Config::load(&config_path).expect("config");
        Bed {
            _azurite: azurite,
            emulator,
            dir,
            config_path,
            config,
        }
    }

    fn url(&self, vault: &str) -> String {
        self.emulator
            .vault_url(vault)
            .expect("vault url")
            .to_string()
    }

    /// A data-plane call; returns the JSON body (or `null`).
    async fn call(&self, vault: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        data_plane(&self.emulator, &self.url(vault), TOKEN, method, path, body).await
    }

    /// Every item of a list, following nextLink.
    async fn list(&self, vault: &str, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut page = self.call(vault, Method::GET, path, None).await;
        loop {
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => {
                    page = self.call(vault, Method::GET, next, None).await
                }
                _ => return out,
            }
        }
    }

    /// Sets a secret's value; returns the new version.
    async fn put_secret(&self, vault: &str, name: &str, value: &str) -> String {
        let v = self
            .call(
                vault,
                Method::PUT,
                &format!("secrets/{name}"),
                Some(json!({"value": value})),
            )
            .await;
        last_segment(&v)
    }

    /// The names of the vault's objects of `kind` that are not managed by a certificate.
    async fn names(&self, vault: &str, kind: &str) -> BTreeSet<String> {
        self.list(vault, kind)
            .await
            .iter()
            .filter(|item| item["managed"].as_bool() != Some(true))
            .map(last_segment)
            .collect()
    }

    /// Deletes every active object, then purges every deleted one.
    async fn wipe(&self, vault: &str) {
        for kind in ["certificates", "keys", "secrets"] {
            for name in self.names(vault, kind).await {
                self.call(vault, Method::DELETE, &format!("{kind}/{name}"), None)
                    .await;
            }
        }
        for kind in ["certificates", "keys", "secrets"] {
            for item in self.list(vault, &format!("deleted{kind}")).await {
                let name = last_segment(&item);
                self.call(
                    vault,
                    Method::DELETE,
                    &format!("deleted{kind}/{name}"),
                    None,
                )
                .await;
            }
        }
    }

    /// The vault's clock becomes `at` (Unix seconds), moving on with the wall clock from there.
    async fn emulator_time(&self, at: i64) {
        self.emulator
            .control()
            .set_time_shift(at - kvkeep::clock::now_unix())
            .await
            .expect("time shift");
    }

    async fn kvkeep(&self, args: &[&str]) -> Output {
        run_kvkeep(&self.config_path, args, &[]).await
    }

    fn vault(&self, name: &str) -> kvkeep::config::VaultConfig {
        self.config
            .vaults
            .iter()
            .find(|v| v.name.as_str() == name)
            .expect("configured vault")
            .clone()
    }

    async fn store(&self) -> Arc<dyn BlobStore> {
        kvkeep::store::open_store(&self.config.store, &self.config.azure)
            .await
            .expect("store")
    }

    fn index(&self) -> Arc<Index> {
        Arc::new(Index::open(&self.config.index_path).expect("index"))
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.path().join("identity.txt")
    }

    /// Restores kv-src as of `at` into the emptied kv-dst through the library's planner and
    /// executor (the binary's restore is covered by restore_e2e); returns the objects restored.
    async fn restore_into_dst(&self, at: i64, identities: &Arc<Identities>) -> usize {
        self.wipe(DST).await;
        let target: Arc<dyn VaultSource> = Arc::new(
            AzureVaultSource::from_config(
                &self.vault(DST),
                &self.config.azure,
                AzureSourceOptions::default(),
            )
            .expect("target"),
        );
        let plan = plan_restore(
            self.index(),
            target.as_ref(),
            RestoreRequest {
                source: location(&self.vault(SRC)),
                target: location(&self.vault(DST)),
                at,
                only: Vec::new(),
                policy: ConflictPolicy::Skip,
                assume_compatible: false,
            },
        )
        .await
        .expect("restore plan");
        let report = Restorer {
            store: self.store().await,
            target,
            identities: identities.clone(),
            options: RestoreOptions {
                concurrency: 4,
                ..RestoreOptions::default()
            },
            progress: Arc::new(NoRestoreProgress),
            cancel: CancellationToken::new(),
        }
        .execute(&plan)
        .await;
        assert_eq!(
            report.stats.failed_objects, 0,
            "restore of {at}: {report:?}"
        );
        report.stats.restored_objects
    }

    /// kv-dst's secrets (the certificate's own aside): current value and every version.
    async fn dst_secrets(&self) -> SecretsState {
        let mut out = SecretsState::new();
        for name in self.names(DST, "secrets").await {
            let current = self
                .call(DST, Method::GET, &format!("secrets/{name}/"), None)
                .await;
            let versions = self
                .list(DST, &format!("secrets/{name}/versions"))
                .await
                .iter()
                .map(last_segment)
                .collect();
            let value = current["value"].as_str().expect("value").to_string();
            out.insert(name, (value, versions));
        }
        out
    }
}

fn location(vault: &kvkeep::config::VaultConfig) -> VaultLocation {
    VaultLocation {
        name: vault.name.clone(),
        url: vault.url.clone(),
        subscription: vault.subscription.clone(),
        geography: vault.geography.clone(),
    }
}

/// The last segment of an item's `id` (or a key's `kid`).
fn last_segment(item: &Value) -> String {
    let id = item["id"]
        .as_str()
        .or(item["kid"].as_str())
        .or(item["key"]["kid"].as_str())
        .expect("id");
    id.rsplit('/').next().expect("last segment").to_string()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_config(dir: &Path, azurite: &Azurite, emulator: &Emulator) -> PathBuf {
    let container_url = write_container_sas(dir, azurite, CONTAINER);
    let mut resolve = Vec::new();
    let mut vaults = String::new();
    for name in [SRC, DST] {
        let url = emulator.vault_url(name).expect("url");
        resolve.push(resolve_entry(url));
        vaults.push_str(&vault_section(name, url, "europe"));
        if name == SRC {
            vaults.push_str(
                r#"[vault.retention]
keep_hourly = 24
keep_daily = 14
keep_weekly = 8
keep_monthly = 3
min_retention = "1d"
keep_deleted_for = "120d"

"#,
            );
        }
    }
    KvkeepToml {
        store: &format!(
            r#"[store]
type = "azure"
container_url = "{container_url}"
auth = "sas"
sas_url_file = "sas.txt"
prefix = "prune/"
"#
        ),
        ca: azurite.ca_cert_path(),
        resolve: &resolve,
        concurrency: 4,
        rest: &vaults,
    }
    .write(dir, TOKEN)
}

/// The simulated backup times, oldest first: every [`SPARSE_EVERY`] up to [`DENSE_DAYS`] before
/// `end`, then hourly up to `end`.
fn schedule(end: i64) -> Vec<i64> {
    let start = end - DAYS * DAY;
    let dense_from = end - DENSE_DAYS * DAY;
    let mut times = Vec::new();
    let mut t = start;
    while t < dense_from {
        times.push(t);
        t += SPARSE_EVERY;
    }
    let mut t = dense_from;
    while t <= end {
        times.push(t);
        t += HOUR;
    }
    times
}

/// Every blob under the store's three prefixes.
async fn all_blobs(store: &dyn BlobStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["manifests/", "manifest-parts/", "objects/"] {
        out.extend(listed(store, prefix).await);
    }
    out
}

/// The points of one vault of a `prune` JSON document: (run, keep, reasons).
fn points_of(doc: &Value) -> Vec<(String, bool, Vec<String>)> {
    doc["vaults"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["run"].as_str().expect("run").to_string(),
                p["keep"].as_bool().expect("keep"),
                p["reasons"]
                    .as_array()
                    .expect("reasons")
                    .iter()
                    .map(|r| r.as_str().expect("reason").to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_days_of_backups_pruned_by_policy_restore_as_they_were() {
    let started = Instant::now();
    let bed = Bed::start().await;
    // The simulated days end half an hour before the real now, because the binary prunes by
    // the wall clock: no point is then within minutes of the `min_retention` boundary (points
    // are whole hours apart), so the dry run and the prune a few seconds later decide alike.
    let end = kvkeep::clock::now_unix() - HOUR / 2;
    let times = schedule(end);
    let first = times[0];

    // Seed, a minute before the first backup: secrets, one key, one certificate.
    bed.emulator_time(first - 600).await;
    let mut state = SecretsState::new();
    for (name, value) in [
        ("db-password", "pw-0"),
        ("api-token", "tok-0"),
        ("legacy", "legacy-0"),
        ("static", "never-changes"),
    ] {
        let version = bed.put_secret(SRC, name, value).await;
        state.insert(name.into(), (value.into(), BTreeSet::from([version])));
    }
    bed.call(
        SRC,
        Method::POST,
        "keys/signing/create",
        Some(json!({"kty": "EC", "crv": "P-256"})),
    )
    .await;
    seed(&bed.emulator, SRC, Collection::Certificates, "tls", 1, 1).await;
    let certificates = bed.names(SRC, "certificates").await;
    assert_eq!(certificates.len(), 1, "{certificates:?}");
    // The certificate's own secret is not one of ours: compared through the certificate.
    let cert_secrets: BTreeSet<String> = certificates.clone();

    // The backups: the runner's clock and the emulator's walk through the 90 days together.
    let now = Arc::new(AtomicI64::new(first));
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
    let runner = Runner::open(&bed.config, false, clock)
        .await
        .expect("runner");
    let src = bed.vault(SRC);
    let mut expected: BTreeMap<i64, SecretsState> = BTreeMap::new();
    let mut legacy_deleted = false;
    let mut added = 0;
    for (run, &at) in times.iter().enumerate() {
        let day = (at - first) / DAY;
        // Changes happen in the minute before the run.
        bed.emulator_time(at - 60).await;
        if run > 0 {
            let value = format!("pw-{run}");
            let version = bed.put_secret(SRC, "db-password", &value).await;
            let entry = state.get_mut("db-password").expect("db-password");
            entry.0 = value;
            entry.1.insert(version);
        }
        if run > 0 && run % 10 == 0 {
            let value = format!("tok-{run}");
            let version = bed.put_secret(SRC, "api-token", &value).await;
            let entry = state.get_mut("api-token").expect("api-token");
            entry.0 = value;
            entry.1.insert(version);
        }
        if day / NEW_SECRET_EVERY_DAYS > added {
            added += 1;
            let name = format!("app-{added}");
            let value = format!("app-{added}-{run}");
            let version = bed.put_secret(SRC, &name, &value).await;
            state.insert(name, (value, BTreeSet::from([version])));
        }
        // Deleted between two runs of the same UTC day, so the last point holding it is no
        // calendar rule's pick (a later point of its day is) and only `keep_deleted_for`
        // keeps it.
        if !legacy_deleted && day >= LEGACY_DELETED_AT_DAY && times[run - 1] / DAY == at / DAY {
            legacy_deleted = true;
            bed.call(SRC, Method::DELETE, "secrets/legacy", None).await;
            state.remove("legacy");
        }
        now.store(at, Ordering::SeqCst);
        let report = runner
            .backup_one(&src, CancellationToken::new(), Arc::new(NoProgress))
            .await;
        assert!(
            report.manifest.is_some() && report.failures.is_empty(),
            "run {run} at {at}: {report:?}"
        );
        expected.insert(at, state.clone());
    }
    drop(runner);
    bed.emulator_time(kvkeep::clock::now_unix()).await;
    eprintln!(
        "{} backups over {DAYS} days in {:?}",
        times.len(),
        started.elapsed()
    );

    // The dry run: reasons point by point, and nothing deleted.
    let store = bed.store().await;
    let before = all_blobs(store.as_ref()).await;
    let out = bed
        .kvkeep(&["prune", "--dry-run", "--vault", SRC, "--output", "json"])
        .await;
    assert_exit(&out, 0);
    let dry = json_out(&out);
    assert_eq!(dry["dry_run"], true);
    let points = points_of(&dry);
    assert_eq!(points.len(), times.len(), "every backup is a point");
    let kept: BTreeSet<String> = points.iter().filter(|p| p.1).map(|p| p.0.clone()).collect();
    let forgotten = points.len() - kept.len();
    assert_eq!(dry["vaults"][0]["forgotten_points"], forgotten);
    let has = |prefix: &str| {
        points
            .iter()
            .filter(|p| p.1 && p.2.iter().any(|r| r.starts_with(prefix)))
            .count()
    };
    assert!(has("hourly ") >= 20, "{dry}");
    assert!(has("daily ") >= 10, "{dry}");
    assert!(has("weekly ") >= 6, "{dry}");
    assert!(has("monthly ") >= 2, "{dry}");
    let legacy_reason: Vec<&(String, bool, Vec<String>)> = points
        .iter()
        .filter(|p| {
            p.2.iter()
                .any(|r| r.starts_with("last copy of secrets/legacy deleted "))
        })
        .collect();
    assert_eq!(legacy_reason.len(), 1, "{dry}");
    assert!(legacy_reason[0].1, "the last copy of legacy is kept");
    assert_eq!(legacy_reason[0].2.len(), 1, "kept for that alone: {dry}");
    // The point holding it is the last backup before the deletion.
    let index = bed.index();
    let records = index.restore_points(&src.name).expect("points");
    let started_at: BTreeMap<String, i64> = records
        .iter()
        .map(|p| (p.run.to_string(), p.started_at))
        .collect();
    let legacy_at = started_at[&legacy_reason[0].0];
    assert!(expected[&legacy_at].contains_key("legacy"));
    let after_legacy = times.iter().find(|&&t| t > legacy_at).expect("later run");
    assert!(!expected[after_legacy].contains_key("legacy"));
    for (run, keep, reasons) in &points {
        if !keep {
            assert_eq!(reasons, &["not selected by any rule"], "{run}");
        }
    }
    assert!(forgotten > 200, "{forgotten} of {}", points.len());
    assert!(dry["vaults"][0]["blobs_to_delete"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        all_blobs(store.as_ref()).await,
        before,
        "the dry run deleted nothing"
    );

    // The prune: the same decision, carried out.
    let out = bed
        .kvkeep(&["prune", "--vault", SRC, "--output", "json"])
        .await;
    assert_exit(&out, 0);
    let pruned = json_out(&out);
    assert_eq!(pruned["totals"]["forgotten_points"], forgotten, "{pruned}");
    assert_eq!(pruned["totals"]["deleted_manifests"], forgotten, "{pruned}");
    assert_eq!(
        pruned["totals"]["deleted_blobs"],
        dry["vaults"][0]["blobs_to_delete"]
    );
    assert!(pruned["totals"]["deleted_blobs"].as_u64().unwrap_or(0) > 0);
    assert_eq!(pruned["totals"]["failed"], 0);
    assert_eq!(pruned["totals"]["postponed"], 0);
    let pruned_kept: BTreeSet<String> = points_of(&pruned)
        .into_iter()
        .filter(|p| p.1)
        .map(|p| p.0)
        .collect();
    assert_eq!(pruned_kept, kept, "the prune kept what the dry run showed");

    // What is left is exactly what the kept points hold.
    let index = bed.index();
    let records = index.restore_points(&src.name).expect("points");
    let runs: BTreeSet<String> = records.iter().map(|p| p.run.to_string()).collect();
    assert_eq!(runs, kept, "restore points after the prune");
    let heads: BTreeSet<String> = records.iter().map(|p| p.manifest.to_string()).collect();
    assert_eq!(listed(store.as_ref(), "manifests/").await, heads);
    for part in listed(store.as_ref(), "manifest-parts/").await {
        assert!(
            runs.iter().any(|r| part.contains(r.as_str())),
            "part {part} of a forgotten run is left"
        );
    }
    let mut held = BTreeSet::new();
    for p in &records {
        for c in index.restore_point_contents(&p.run).expect("contents") {
            held.insert(c.blob.to_string());
        }
    }
    assert_eq!(listed(store.as_ref(), "objects/").await, held);
    assert!(index.unheld_blobs(&src.name).expect("unheld").is_empty());
    assert!(all_blobs(store.as_ref()).await.len() < before.len());

    // Every kept point restores into kv-dst as kv-src was at that time.
    let restore_started = Instant::now();
    let identities = Arc::new(Identities::from_file(&bed.identity_path()).expect("identity"));
    for p in &records {
        let want = &expected[&p.started_at];
        let restored = bed.restore_into_dst(p.started_at, &identities).await;
        // The secrets, the key, the certificate (its managed key and secret go with it).
        assert_eq!(restored, want.len() + 2, "point at {}", p.started_at);
        let mut got = bed.dst_secrets().await;
        got.retain(|name, _| !cert_secrets.contains(name));
        assert_eq!(&got, want, "secrets of the point at {}", p.started_at);
        assert_eq!(
            bed.names(DST, "keys").await,
            BTreeSet::from(["signing".to_string()])
        );
        assert_eq!(bed.names(DST, "certificates").await, certificates);
    }
    eprintln!(
        "{} kept points restored and compared in {:?}",
        records.len(),
        restore_started.elapsed()
    );

    // The store verifies, blob by blob, and a second prune has nothing to do.
    let identity = bed.identity_path().display().to_string();
    let out = bed
        .kvkeep(&[
            "verify",
            "--vault",
            SRC,
            "--deep",
            "--identity",
            &identity,
            "--output",
            "json",
        ])
        .await;
    assert_exit(&out, 0);
    let verified = json_out(&out);
    let report = &verified["verify"][0];
    assert_eq!(report["problems"], json!([]), "{verified}");
    assert_eq!(report["checked_manifests"], heads.len(), "{verified}");
    assert_eq!(report["checked_blobs"], held.len(), "{verified}");
    let out = bed
        .kvkeep(&["prune", "--vault", SRC, "--output", "json"])
        .await;
    assert_exit(&out, 0);
    let again = json_out(&out);
    for total in ["forgotten_points", "deleted_manifests", "deleted_blobs"] {
        assert_eq!(again["totals"][total], 0, "{again}");
    }
    eprintln!("whole test in {:?}", started.elapsed());
}
