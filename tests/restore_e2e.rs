//! `kvkeep restore`, `kvkeep verify` and `kvkeep index rebuild` end to end: backups of the Key
//! Vault emulator (over HTTPS, through the official SDK crates) into Azurite, taken by the
//! library's backup pipeline with a pinned clock so the points in time T1 < T2 < T3 are exact
//! without sleeping; then the real binary restores, verifies and rebuilds. What the vaults hold
//! is read back through the data plane and compared with what they held at T2; what kvkeep did
//! is checked against the emulator's request counters.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use kvkeep::backup::{Clock, NoProgress, VaultBackup};
use kvkeep::config::Config;
use kvkeep::crypto::Sealer;
use kvkeep::index::Index;
use kvkeep::source::{AzureSourceOptions, AzureVaultSource, VaultSource};
use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, FaultKind, FaultSpec};
use kvkeep_emulator::vault::VaultSettings;
use reqwest::Method;
use serde_json::{json, Value};
use support::azurite::Azurite;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, data_plane, emulator_beside, json_out, run_kvkeep, write_container_sas,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const CONTAINER: &str = "backups";
const TOKEN: &str = "restore-e2e-token";
/// Source; same geography (empty); another geography; same geography with purge protection;
/// same geography but left out of the configuration (reached by URL, compatibility unknown).
const VAULTS: [(&str, &str, bool); 5] = [
    ("kv1", "europe", false),
    ("kv2", "europe", false),
    ("kv3", "unitedstates", false),
    ("kv4", "europe", true),
    ("kv5", "europe", false),
];
/// The vault of [`VAULTS`] that is reachable but not configured.
const UNCONFIGURED: &str = "kv5";

struct Bed {
    _azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    config: PathBuf,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let vaults = VAULTS
            .iter()
            .map(|(name, geo, protected)| VaultSettings {
                geo: geo.to_string(),
                purge_protection: *protected,
                // kv2 keeps a purged name blocked for a moment, as Key Vault does.
                purge_lag_secs: if *name == "kv2" { 2 } else { 0 },
                ..VaultSettings::named(*name)
            })
            .collect();
        let emulator = emulator_beside(&azurite, vaults).await;
        let dir = TempDir::new().expect("tempdir");
        let config = write_config(dir.path(), &azurite, &emulator);
        Bed {
            _azurite: azurite,
            emulator,
            dir,
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

    /// Everything the vault holds, active objects only: per `kind/name/version`, the full GET
    /// of that version (value, attributes, tags, content type, key material), with the vault's
    /// URL replaced so two vaults compare.
    async fn snapshot(&self, vault: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for kind in ["secrets", "keys", "certificates"] {
            for item in self.list(vault, kind).await {
                let name = last_segment(&item);
                for version in self.list(vault, &format!("{kind}/{name}/versions")).await {
                    let v = last_segment(&version);
                    // A disabled version cannot be read (403 SecretDisabled): its listing,
                    // with attributes and tags, stands for it.
                    let full = if version["attributes"]["enabled"] == json!(false) {
                        version.clone()
                    } else {
                        self.call(vault, Method::GET, &format!("{kind}/{name}/{v}"), None)
                            .await
                    };
                    let text = full.to_string().replace(&self.url(vault), "https://VAULT");
                    out.insert(
                        format!("{kind}/{name}/{v}"),
                        serde_json::from_str(&text).expect("json"),
                    );
                }
            }
        }
        out
    }

    async fn current_version(&self, vault: &str, kind: &str, name: &str) -> String {
        let v = self
            .call(vault, Method::GET, &format!("{kind}/{name}/"), None)
            .await;
        let id = v["id"].as_str().or(v["key"]["kid"].as_str()).expect("id");
        id.rsplit('/').next().expect("version").to_string()
    }

    async fn put_secret(&self, vault: &str, name: &str, value: &str, tags: Value) {
        self.call(
            vault,
            Method::PUT,
            &format!("secrets/{name}"),
            Some(json!({"value": value, "tags": tags, "contentType": "text/plain"})),
        )
        .await;
    }

    async fn create_key(&self, vault: &str, name: &str) {
        self.call(
            vault,
            Method::POST,
            &format!("keys/{name}/create"),
            Some(json!({"kty": "EC", "crv": "P-256", "tags": {"team": "payments"}})),
        )
        .await;
    }

    async fn delete(&self, vault: &str, kind: &str, name: &str) {
        self.call(vault, Method::DELETE, &format!("{kind}/{name}"), None)
            .await;
    }

    /// Deletes every active object, then purges every deleted one: the vault is empty and
    /// every name is free.
    async fn wipe(&self, vault: &str) {
        for kind in ["certificates", "keys", "secrets"] {
            for item in self.list(vault, kind).await {
                if item["managed"].as_bool() == Some(true) {
                    continue; // goes with its certificate
                }
                let name = last_segment(&item);
                self.delete(vault, kind, &name).await;
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
        for kind in ["certificates", "keys", "secrets"] {
            assert!(
                self.list(vault, kind).await.is_empty(),
                "{vault} {kind} empty"
            );
        }
    }

    /// One backup of kv1 by the library's pipeline, its clock pinned at `at`.
    async fn backup_at(&self, at: i64) {
        let config = Config::load(&self.config).expect("config");
        let vault = config.vaults[0].clone();
        let source =
            AzureVaultSource::from_config(&vault, &config.azure, AzureSourceOptions::default())
                .expect("source");
        let store = kvkeep::store::open_store(&config.store, &config.azure)
            .await
            .expect("store");
        let index = Arc::new(Index::open(&config.index_path).expect("index"));
        let clock: Clock = Arc::new(move || at);
        let report = VaultBackup {
            vault,
            source: Arc::new(source) as Arc<dyn VaultSource>,
            store,
            index,
            sealer: Arc::new(Sealer::from_config(&config.encryption).expect("sealer")),
            concurrency: 4,
            clock,
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            manifest_part_bytes: None,
            lease: None,
        }
        .run()
        .await;
        assert!(
            report.manifest.is_some() && report.failures.is_empty(),
            "{report:?}"
        );
        // Key Vault timestamps have one-second resolution: move the vaults' clock on so every
        // later change has a later `updated`.
        self.emulator
            .control()
            .advance_time(60)
            .await
            .expect("advance");
    }

    async fn kvkeep(&self, args: &[&str]) -> Output {
        run_kvkeep(&self.config, args, &[]).await
    }

    /// `kvkeep restore --vault kv1 --at <at> <args>`.
    async fn restore_kv1(&self, at: &str, args: &[&str]) -> Output {
        let mut all = vec!["restore", "--vault", "kv1", "--at", at];
        all.extend_from_slice(args);
        self.kvkeep(&all).await
    }

    async fn clear_counters(&self) {
        self.emulator
            .control()
            .clear_counters()
            .await
            .expect("clear");
    }

    fn identity(&self) -> String {
        self.dir.path().join("identity.txt").display().to_string()
    }

    async fn requests_to(&self, vault: &str) -> BTreeMap<String, u64> {
        let counters = self.emulator.control().counters().await.expect("counters");
        counters.vaults.get(vault).cloned().unwrap_or_default()
    }
}

/// The last segment of a listed item's `id` (or a key's `kid`): its name, or its version when
/// the item is a version.
fn last_segment(item: &Value) -> String {
    let id = item["id"].as_str().or(item["kid"].as_str()).expect("id");
    id.rsplit('/').next().expect("last segment").to_string()
}

/// Asserts kvkeep's exit code, showing its output when it differs.
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn write_config(dir: &Path, azurite: &Azurite, emulator: &Emulator) -> PathBuf {
    let container_url = write_container_sas(dir, azurite, CONTAINER);
    let mut resolve = Vec::new();
    let mut vaults = String::new();
    for (name, geo, _) in VAULTS {
        let url = emulator.vault_url(name).expect("url");
        resolve.push(resolve_entry(url));
        if name != UNCONFIGURED {
            vaults.push_str(&vault_section(name, url, geo));
        }
    }
    KvkeepToml {
        store: &format!(
            r#"[store]
type = "azure"
container_url = "{container_url}"
auth = "sas"
sas_url_file = "sas.txt"
prefix = "dr/"
"#
        ),
        ca: azurite.ca_cert_path(),
        resolve: &resolve,
        concurrency: 4,
        rest: &vaults,
    }
    .write(dir, TOKEN)
}

/// A fault on one operation of one vault for the next `count` requests.
fn fault(vault: &str, op: &str, kind: FaultKind, retry_after_seconds: Option<u64>) -> FaultSpec {
    FaultSpec {
        vault: Some(vault.into()),
        op: Some(op.into()),
        kind,
        count: Some(1),
        rate: None,
        retry_after_seconds,
        retry_after_ms: None,
        latency_ms: None,
        page_size: None,
        next_link_host: None,
    }
}

/// Answers lost after key vault acted, and a 503 asking for an hour: a restore, purge or
/// recover that took effect is reported done (not "name taken"), and none of them is sent
/// twice; the hour is not waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_and_hour_long_retry_after_do_not_mislead_or_stall_a_restore() {
    let bed = Bed::start().await;
    let now = kvkeep::clock::now_unix();
    bed.put_secret("kv1", "s-lost", "one", json!({})).await;
    bed.put_secret("kv1", "s-lost", "two", json!({})).await;
    bed.backup_at(now - 3_600).await;
    let at = rfc3339(now - 60);
    let identity = bed.identity();
    let restore = |target: &'static str, policy: &'static str| {
        let (at, identity) = (at.clone(), identity.clone());
        let bed = &bed;
        async move {
            let args = [
                "--to-vault",
                target,
                "--only",
                "secrets/s-lost",
                "--on-conflict",
                policy,
                "--identity",
                &identity,
                "--output",
                "json",
                "--purge-wait",
                "30s",
            ];
            // Hang detector only: an hour-long wait would otherwise stall the suite.
            let out = tokio::time::timeout(
                std::time::Duration::from_secs(600),
                bed.restore_kv1(&at, &args),
            )
            .await
            .expect("the restore did not wait out the service's hour");
            let doc = json_out(&out);
            (out.status.code(), doc["restore"]["objects"][0].clone())
        }
    };
    let versions = |vault: &'static str| {
        let bed = &bed;
        async move {
            let mut v: Vec<String> = bed
                .list(vault, "secrets/s-lost/versions")
                .await
                .iter()
                .map(last_segment)
                .collect();
            v.sort();
            v
        }
    };
    let control = bed.emulator.control();
    let count = |ops: &BTreeMap<String, u64>, op: &str| ops.get(op).copied().unwrap_or(0);

    // Restore: carried out, answer lost. Recognised by the versions kv2 now holds.
    bed.clear_counters().await;
    control
        .add_fault(&fault(
            "kv2",
            "secrets.restore",
            FaultKind::ResetAfter,
            None,
        ))
        .await
        .expect("fault");
    let (code, o) = restore("kv2", "skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("restored")),
        "{o}"
    );
    assert_eq!(versions("kv2").await, versions("kv1").await);
    assert_eq!(
        count(&bed.requests_to("kv2").await, "secrets.restore"),
        1,
        "not sent twice"
    );

    // Purge: carried out, answer lost. Recognised by the deleted object being gone.
    bed.delete("kv2", "secrets", "s-lost").await;
    bed.clear_counters().await;
    control
        .add_fault(&fault("kv2", "secrets.purge", FaultKind::ResetAfter, None))
        .await
        .expect("fault");
    let (code, o) = restore("kv2", "purge-then-restore").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("restored")),
        "{o}"
    );
    assert_eq!(
        count(&bed.requests_to("kv2").await, "secrets.purge"),
        1,
        "not sent twice"
    );
    assert_eq!(versions("kv2").await, versions("kv1").await);

    // Recover: carried out, answer lost. Recognised by the object being active.
    bed.delete("kv2", "secrets", "s-lost").await;
    bed.clear_counters().await;
    control
        .add_fault(&fault(
            "kv2",
            "secrets.recover",
            FaultKind::ResetAfter,
            None,
        ))
        .await
        .expect("fault");
    let (code, o) = restore("kv2", "recover-then-skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("recovered")),
        "{o}"
    );
    assert_eq!(
        count(&bed.requests_to("kv2").await, "secrets.recover"),
        1,
        "not sent twice"
    );

    // 503 with Retry-After of an hour, on the survey's listing (repeatable: retried after the
    // capped wait) and on the restore (not repeatable: kvkeep looks, then sends it again).
    bed.clear_counters().await;
    for op in ["secrets.list", "secrets.restore"] {
        control
            .add_fault(&fault("kv4", op, FaultKind::Error503, Some(3_600)))
            .await
            .expect("fault");
    }
    let (code, o) = restore("kv4", "skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("restored")),
        "{o}"
    );
    let kv4 = bed.requests_to("kv4").await;
    assert_eq!(count(&kv4, "secrets.restore"), 2, "{kv4:?}");
    assert_eq!(versions("kv4").await, versions("kv1").await);
}

/// The disaster-recovery scenario of issue 4, then conflicts, rebuild and a corrupt index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_after_losing_everything() {
    let bed = Bed::start().await;
    let now = kvkeep::clock::now_unix();
    let (t1, t2, t3) = (now - 3 * 3_600, now - 2 * 3_600, now - 3_600);

    // Seed: secrets with two versions and tags, keys, a certificate (with its managed pair).
    bed.put_secret("kv1", "s-alpha", "alpha-1", json!({"env": "dev"}))
        .await;
    let alpha_1 = bed.current_version("kv1", "secrets", "s-alpha").await;
    bed.put_secret("kv1", "s-alpha", "alpha-2", json!({"env": "test"}))
        .await;
    bed.put_secret("kv1", "s-beta", "beta-1", json!({})).await;
    bed.put_secret("kv1", "s-gamma", "gamma-1", json!({"owner": "a"}))
        .await;
    bed.create_key("kv1", "k-ec").await;
    bed.emulator
        .control()
        .seed(
            "kv1",
            &SeedSpec {
                kind: Collection::Certificates,
                prefix: "c-tls".into(),
                count: 1,
                versions: 1,
                tags: BTreeMap::from([("svc".to_string(), "web".to_string())]),
                value_bytes: 32,
            },
        )
        .await
        .expect("seed certificate");
    bed.backup_at(t1).await;

    // Between T1 and T2: a new version with new tags, a tag change, a deletion, new objects.
    bed.put_secret(
        "kv1",
        "s-alpha",
        "alpha-3",
        json!({"env": "prod", "rev": "3"}),
    )
    .await;
    let gamma = bed.current_version("kv1", "secrets", "s-gamma").await;
    bed.call(
        "kv1",
        Method::PATCH,
        &format!("secrets/s-gamma/{gamma}"),
        Some(json!({"tags": {"owner": "b"}})),
    )
    .await;
    // An older version disabled: restore must bring back every version's attributes.
    // (Not the current one: backup cannot read a secret whose current version is disabled.)
    bed.call(
        "kv1",
        Method::PATCH,
        &format!("secrets/s-alpha/{alpha_1}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    bed.delete("kv1", "secrets", "s-beta").await;
    bed.put_secret("kv1", "s-delta", "delta-1", json!({"new": "yes"}))
        .await;
    bed.create_key("kv1", "k-ec").await;
    bed.create_key("kv1", "k-new").await;
    let at_t2 = bed.snapshot("kv1").await;
    bed.backup_at(t2).await;

    // Between T2 and T3: more change, which the restore must not bring back.
    bed.put_secret("kv1", "s-delta", "delta-2", json!({})).await;
    bed.delete("kv1", "secrets", "s-gamma").await;
    bed.create_key("kv1", "k-later").await;
    bed.backup_at(t3).await;
    assert_ne!(bed.snapshot("kv1").await, at_t2, "T3 differs from T2");

    // The disaster: everything deleted and purged.
    bed.wipe("kv1").await;

    // Restore T2 into the same vault: exactly the T2 state comes back.
    let at = rfc3339(t2);
    let identity = bed.identity();
    let out = bed
        .restore_kv1(&at, &["--identity", &identity, "--output", "json"])
        .await;
    assert_exit(&out, 0);
    let report = json_out(&out);
    assert_eq!(report["overall"], "ok");
    assert_eq!(
        report["restore"]["stats"]["restored_objects"], 6,
        "{report}"
    );
    assert_eq!(bed.snapshot("kv1").await, at_t2, "kv1 equals its T2 state");

    // Into a second vault of the same geography.
    let out = bed
        .restore_kv1(&at, &["--to-vault", "kv2", "--identity", &identity])
        .await;
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("6 restored"),
        "{}",
        show(&out)
    );
    assert_eq!(
        bed.snapshot("kv2").await,
        at_t2,
        "kv2 equals kv1's T2 state"
    );

    // Into another geography: refused before any request reaches that vault.
    bed.clear_counters().await;
    let out = bed
        .restore_kv1(
            &at,
            &["--to-vault", &bed.url("kv3"), "--identity", &identity],
        )
        .await;
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused before anything was written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("geography \"europe\"") && stderr.contains("\"unitedstates\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("same subscription and geography"),
        "{stderr}"
    );
    assert_eq!(
        bed.requests_to("kv3").await,
        BTreeMap::new(),
        "no request reached kv3"
    );

    // --only with a name that did not exist at T2: usage error, nothing restored.
    let out = bed
        .restore_kv1(
            &at,
            &[
                "--to-vault",
                "kv4",
                "--only",
                "secrets/s-beta",
                "--identity",
                &identity,
            ],
        )
        .await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("nothing restored: secrets/s-beta did not exist"),
        "{}",
        show(&out)
    );
    assert_eq!(bed.requests_to("kv4").await, BTreeMap::new());

    conflicts(&bed, &at, &identity).await;
    verify_and_rebuild(&bed, [t1, t2, t3], &identity).await;
}

/// Active, soft-deleted and purge-protected targets under each policy, on the emulator.
async fn conflicts(bed: &Bed, at: &str, identity: &str) {
    let restore = |target: &'static str, policy: &'static str| {
        let at = at.to_string();
        let identity = identity.to_string();
        async move {
            let out = bed
                .restore_kv1(
                    &at,
                    &[
                        "--to-vault",
                        target,
                        "--only",
                        "secrets/s-alpha",
                        "--on-conflict",
                        policy,
                        "--identity",
                        &identity,
                        "--output",
                        "json",
                        "--purge-wait",
                        "30s",
                    ],
                )
                .await;
            let code = out.status.code();
            let doc = json_out(&out);
            (code, doc["restore"]["objects"][0].clone())
        }
    };
    // Active in kv1 (restored above): skip leaves it, fail reports it.
    let (code, o) = restore("kv1", "skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("skipped")),
        "{o}"
    );
    let (code, o) = restore("kv1", "fail").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(1), Some("failed")),
        "{o}"
    );
    assert!(
        o["reason"]
            .as_str()
            .unwrap_or("")
            .contains("already exists"),
        "{o}"
    );

    // Soft-deleted in kv2, whose purged names stay blocked for 2 s: skip, then
    // purge-then-restore (the 409s after the purge are retried).
    bed.delete("kv2", "secrets", "s-alpha").await;
    let (code, o) = restore("kv2", "skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("skipped")),
        "{o}"
    );
    assert!(
        o["reason"].as_str().unwrap_or("").contains("soft-deleted"),
        "{o}"
    );
    bed.clear_counters().await;
    let (code, o) = restore("kv2", "purge-then-restore").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("restored")),
        "{o}"
    );
    let kv2 = bed.requests_to("kv2").await;
    assert!(
        kv2.get("secrets.restore").copied().unwrap_or(0) >= 2,
        "a 409 was retried: {kv2:?}"
    );
    assert_eq!(bed.snapshot("kv2").await, bed.snapshot("kv1").await);

    // Where kvkeep cannot tell that key vault will accept the backup, purge-then-restore must
    // not purge: a refused restore after the purge would lose the object from both vaults.
    // kv5 is reached by URL only (subscription and geography unknown); a key into kv2 needs a
    // premium vault if it is HSM-protected, and kv2's pricing tier is not configured.
    let kv5 = bed.url(UNCONFIGURED);
    bed.put_secret(UNCONFIGURED, "s-alpha", "kv5's own", json!({}))
        .await;
    bed.delete(UNCONFIGURED, "secrets", "s-alpha").await;
    bed.create_key("kv2", "k-ec").await;
    bed.delete("kv2", "keys", "k-ec").await;
    let purge = |target: String, only: &'static str, assume: bool| {
        let at = at.to_string();
        let identity = identity.to_string();
        async move {
            let mut args = vec![
                "--to-vault",
                &target,
                "--only",
                only,
                "--on-conflict",
                "purge-then-restore",
                "--identity",
                &identity,
                "--output",
                "json",
            ];
            if assume {
                args.push("--assume-compatible");
            }
            let out = bed.restore_kv1(&at, &args).await;
            (
                out.status.code(),
                json_out(&out)["restore"]["objects"][0].clone(),
            )
        }
    };
    for (vault, target, only, kind, name, unknown) in [
        (
            UNCONFIGURED,
            kv5.clone(),
            "secrets/s-alpha",
            "secrets",
            "s-alpha",
            "geography",
        ),
        (
            "kv2",
            "kv2".to_string(),
            "keys/k-ec",
            "keys",
            "k-ec",
            "pricing tier",
        ),
    ] {
        bed.clear_counters().await;
        let (code, o) = purge(target.clone(), only, false).await;
        assert_eq!(
            (code, o["outcome"].as_str()),
            (Some(1), Some("failed")),
            "{o}"
        );
        let reason = o["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("left alone")
                && reason.contains(unknown)
                && reason.contains("--assume-compatible"),
            "{reason}"
        );
        // The soft-deleted copy survives, untouched: no purge and no restore was sent.
        let deleted = bed
            .call(vault, Method::GET, &format!("deleted{kind}/{name}"), None)
            .await;
        assert!(deleted["recoveryId"].is_string(), "{deleted}");
        let requests = bed.requests_to(vault).await;
        assert!(
            requests
                .keys()
                .all(|op| !op.ends_with(".purge") && !op.ends_with(".restore")),
            "{requests:?}"
        );
        // The operator vouches for the target: purged and restored.
        let (code, o) = purge(target, only, true).await;
        assert_eq!(
            (code, o["outcome"].as_str()),
            (Some(0), Some("restored")),
            "{o}"
        );
    }

    // Purge protection in kv4: purge-then-restore is refused with the way out; recover works.
    let (code, _) = restore("kv4", "skip").await;
    assert_eq!(code, Some(0));
    bed.delete("kv4", "secrets", "s-alpha").await;
    let (code, o) = restore("kv4", "purge-then-restore").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(1), Some("failed")),
        "{o}"
    );
    let reason = o["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("purge protection") && reason.contains("recover-then-skip"),
        "{reason}"
    );
    let (code, o) = restore("kv4", "recover-then-skip").await;
    assert_eq!(
        (code, o["outcome"].as_str()),
        (Some(0), Some("recovered")),
        "{o}"
    );
}

/// Quick, deep and drill verification; the index deleted and rebuilt from the store gives the
/// same plans; a corrupt index is reported with its remedy.
async fn verify_and_rebuild(bed: &Bed, times: [i64; 3], identity: &str) {
    let out = bed
        .kvkeep(&["verify", "--vault", "kv1", "--output", "json"])
        .await;
    assert_exit(&out, 0);
    let out = bed
        .kvkeep(&[
            "verify",
            "--vault",
            "kv1",
            "--deep",
            "--identity",
            identity,
            "--output",
            "json",
        ])
        .await;
    assert_exit(&out, 0);
    let doc = json_out(&out);
    assert!(
        doc["verify"][0]["checked_blobs"].as_u64().unwrap_or(0) >= 8,
        "{doc}"
    );

    // Drill into kv3? No: another geography is refused. Into a fresh same-geography vault.
    bed.wipe("kv2").await;
    let out = bed
        .kvkeep(&[
            "verify",
            "--vault",
            "kv1",
            "--drill",
            "--scratch-vault",
            "kv2",
            "--identity",
            identity,
            "--output",
            "json",
        ])
        .await;
    assert_exit(&out, 0);
    let doc = json_out(&out);
    assert_eq!(doc["verify"][0]["drilled_objects"], 6, "{doc}");
    for kind in ["secrets", "keys", "certificates"] {
        assert!(
            bed.list("kv2", kind).await.is_empty(),
            "drill cleaned up {kind}"
        );
        assert!(
            bed.list("kv2", &format!("deleted{kind}")).await.is_empty(),
            "drill purged {kind}"
        );
    }
    let index = Index::open(bed.dir.path().join("index.sqlite")).expect("index");
    let vault = "kv1".parse().expect("vault");
    for depth in [
        kvkeep::index::VerificationDepth::Quick,
        kvkeep::index::VerificationDepth::Deep,
        kvkeep::index::VerificationDepth::Drill,
    ] {
        let v = index
            .last_verification(&vault, Some(depth))
            .expect("read")
            .expect("recorded");
        assert!(v.ok, "{v:?}");
    }
    drop(index);

    // Plans at T1, T2 and T3 before and after losing the index.
    let plans = || async {
        let mut out = Vec::new();
        for when in [times[0], times[1], times[2] - 1, times[2]].map(rfc3339) {
            let o = bed
                .restore_kv1(&when, &["--dry-run", "--output", "json"])
                .await;
            assert_exit(&o, 0);
            out.push(json_out(&o));
        }
        out
    };
    let before = plans().await;
    assert_ne!(
        before[0]["plan"]["objects"], before[1]["plan"]["objects"],
        "the points differ"
    );
    let index_path = bed.dir.path().join("index.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", index_path.display()));
    }
    let out = bed
        .kvkeep(&["restore", "--vault", "kv1", "--dry-run"])
        .await;
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kvkeep index rebuild"),
        "{}",
        show(&out)
    );
    let out = bed
        .kvkeep(&[
            "index",
            "rebuild",
            "--identity",
            identity,
            "--output",
            "json",
        ])
        .await;
    assert_exit(&out, 0);
    let doc = json_out(&out);
    assert_eq!(doc["rebuild"]["runs"], 3, "{doc}");
    assert_eq!(
        plans().await,
        before,
        "the rebuilt index plans the same restores"
    );

    // A corrupt index: the command fails with the remedy, no panic; rebuild replaces it.
    std::fs::write(
        &index_path,
        b"this is not a database, it was overwritten by accident",
    )
    .expect("corrupt");
    let out = bed
        .kvkeep(&["restore", "--vault", "kv1", "--dry-run"])
        .await;
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("index rebuild") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let out = bed
        .kvkeep(&["index", "rebuild", "--identity", identity])
        .await;
    assert_exit(&out, 0);
    assert_eq!(plans().await, before);

    damage(bed, &before[1], times[1], identity).await;
}

/// A missing and a truncated blob in the store, then a wrong identity: the damaged objects fail
/// with their reason, the others restore, verify lists the damage; nothing panics.
async fn damage(bed: &Bed, plan_at_t2: &Value, t2: i64, identity: &str) {
    let config = Config::load(&bed.config).expect("config");
    let store = kvkeep::store::open_store(&config.store, &config.azure)
        .await
        .expect("store");
    let blob_of = |name: &str| -> kvkeep::model::BlobKey {
        plan_at_t2["plan"]["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["name"] == name)
            .and_then(|o| o["blob"].as_str())
            .expect("planned blob")
            .parse()
            .expect("key")
    };
    let missing = blob_of("s-delta");
    store.delete(&missing).await.expect("delete blob");
    let truncated = blob_of("k-new");
    let bytes = store.get(&truncated).await.expect("get");
    store.delete(&truncated).await.expect("delete");
    store
        .put_new(&truncated, bytes.slice(..bytes.len() / 2))
        .await
        .expect("put truncated");

    bed.wipe("kv2").await;
    let at = rfc3339(t2);
    let out = bed
        .restore_kv1(
            &at,
            &[
                "--to-vault",
                "kv2",
                "--identity",
                identity,
                "--output",
                "json",
            ],
        )
        .await;
    assert_exit(&out, 3);
    let doc = json_out(&out);
    assert_eq!(doc["overall"], "partial");
    assert_eq!(doc["restore"]["stats"]["restored_objects"], 4, "{doc}");
    let reason = |name: &str| {
        doc["restore"]["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| {
                (
                    o["outcome"].clone(),
                    o["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .expect("object")
    };
    let (outcome, why) = reason("s-delta");
    assert_eq!(outcome, "failed");
    assert!(
        why.contains("missing from the store") && why.contains("--at"),
        "{why}"
    );
    let (outcome, why) = reason("k-new");
    assert_eq!(outcome, "failed");
    assert!(why.contains("damaged"), "{why}");

    let out = bed.kvkeep(&["verify", "--vault", "kv1"]).await;
    assert_exit(&out, 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(missing.as_str()) && stdout.contains(truncated.as_str()),
        "{stdout}"
    );

    // A wrong identity: every object fails with the reason, nothing is written, exit 1.
    let wrong = bed.dir.path().join("wrong-identity.txt");
    kvkeep::crypto::write_identity_file(
        &wrong,
        &kvkeep::crypto::Identity::generate(),
        "2026-01-01T00:00:00Z",
        false,
    )
    .expect("wrong identity");
    bed.wipe("kv2").await;
    bed.clear_counters().await;
    let wrong = wrong.display().to_string();
    let out = bed
        .restore_kv1(&at, &["--to-vault", "kv2", "--identity", &wrong])
        .await;
    assert_exit(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cannot be opened with the given identity"),
        "{stdout}"
    );
    let kv2 = bed.requests_to("kv2").await;
    assert!(
        kv2.keys().all(|op| !op.ends_with(".restore")),
        "nothing restored into kv2: {kv2:?}"
    );
}
