//! The catalog key end to end: the real binary backs the Key Vault emulator up (over HTTPS,
//! through the official SDK crates) into Azurite with `[encryption] catalog_recipient` and
//! `catalog_identity_file` set; then, on what is now a disaster-recovery host with only the
//! catalog identity, the index is deleted and `kvkeep index rebuild --identity catalog.txt`
//! reproduces the runs. Restore with the catalog identity is refused, saying why, and a canary
//! secret never comes out with it; restore with the recovery identity brings the canary back.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use kvkeep::config::Config;
use kvkeep::crypto::{open, BlobType, CryptoError, Identities};
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::Emulator;
use kvkeep_emulator::vault::VaultSettings;
use reqwest::Method;
use serde_json::{json, Value};
use support::azurite::Azurite;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, data_plane, emulator_beside, json_out, run_kvkeep, sas_store_section,
    seed,
};
use tempfile::TempDir;

const CONTAINER: &str = "backups";
const TOKEN: &str = "catalog-e2e-token";
const CANARY: &str = "catalog-e2e-canary-4b1d: only a recovery key may read this";

struct Bed {
    _azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    config: PathBuf,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let emulator = emulator_beside(
            &azurite,
            ["kv1", "kv2"]
                .into_iter()
                .map(|name| VaultSettings {
                    geo: "europe".into(),
                    ..VaultSettings::named(name)
                })
                .collect(),
        )
        .await;
        let dir = TempDir::new().expect("tempdir");
        let store = sas_store_section(dir.path(), &azurite, CONTAINER, "dr/");
        let mut resolve = Vec::new();
        let mut vaults = String::new();
        for name in ["kv1", "kv2"] {
            let url = emulator.vault_url(name).expect("url");
            resolve.push(resolve_entry(url));
            vaults.push_str(&vault_section(name, url, "europe"));
        }
        let config = KvkeepToml {
            store: &store,
            ca: azurite.ca_cert_path(),
            resolve: &resolve,
            concurrency: 4,
            rest: &vaults,
        }
        .write(dir.path(), TOKEN);
        Bed {
            _azurite: azurite,
            emulator,
            dir,
            config,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn kvkeep(&self, args: &[&str]) -> Output {
        run_kvkeep(&self.config, args, &[]).await
    }

    /// A data-plane call on `vault`; returns the JSON body.
    async fn call(&self, vault: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = self.emulator.vault_url(vault).expect("url").to_string();
        data_plane(&self.emulator, &url, TOKEN, method, path, body).await
    }
}

/// Neither stream of `out` holds the canary.
fn assert_no_canary(out: &Output, what: &str) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(CANARY),
            "{what} printed the canary"
        );
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Adds the catalog key to the configuration's `[encryption]` table, as the runbook says.
fn add_catalog(config: &Path, recipient: &str) {
    let text = std::fs::read_to_string(config).expect("config");
    let text = text.replacen(
        "[encryption]\n",
        &format!(
            "[encryption]\ncatalog_recipient = \"{recipient}\"\ncatalog_identity_file = \"catalog.txt\"\n"
        ),
        1,
    );
    std::fs::write(config, text).expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_key_rebuilds_the_index_and_never_restores() {
    let bed = Bed::start().await;
    bed.call(
        "kv1",
        Method::PUT,
        "secrets/canary",
        Some(json!({ "value": CANARY })),
    )
    .await;
    for (kind, prefix) in [(Collection::Secrets, "secret-"), (Collection::Keys, "key-")] {
        seed(&bed.emulator, "kv1", kind, prefix, 3, 2).await;
    }

    let generated = bed
        .kvkeep(&[
            "keys",
            "generate",
            "--catalog",
            "--out",
            &bed.path("catalog.txt"),
        ])
        .await;
    assert_eq!(generated.status.code(), Some(0), "{}", stderr(&generated));
    let catalog_recipient = String::from_utf8_lossy(&generated.stdout)
        .trim()
        .to_string();
    add_catalog(&bed.config, &catalog_recipient);
    let check = bed.kvkeep(&["config", "check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    // Two runs, the second after a change, so the index holds more than one restore point.
    let backup = bed.kvkeep(&["backup", "--vault", "kv1"]).await;
    assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));
    // Runs are ordered by their start second: two in one second would replay in either order.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    bed.call(
        "kv1",
        Method::PUT,
        "secrets/secret-0",
        Some(json!({ "value": "changed" })),
    )
    .await;
    let backup = bed.kvkeep(&["backup", "--vault", "kv1"]).await;
    assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));
    let before = json_out(&bed.kvkeep(&["list", "runs", "--output", "json"]).await);
    assert_eq!(before.as_array().map(Vec::len), Some(2), "{before}");

    // What the catalog identity opens in the store: every manifest, and not one backup.
    let config = Config::load(&bed.config).expect("config");
    let store = kvkeep::store::open_store(&config.store, &config.azure)
        .await
        .expect("store");
    let catalog = Identities::from_file(&bed.dir.path().join("catalog.txt")).expect("catalog");
    let (mut manifests, mut objects) = (0, 0);
    for meta in store.list("").await.expect("list") {
        // The vault's lock blob holds no backup and is sealed to nobody.
        if meta.key.as_str().starts_with(kvkeep::store::LOCKS_PREFIX) {
            continue;
        }
        let bytes = store.get(&meta.key).await.expect("get");
        match open(&bytes, &catalog) {
            Ok(opened) => {
                assert_eq!(opened.header.blob, BlobType::Manifest, "{}", meta.key);
                assert!(meta.key.as_str().starts_with("manifest"), "{}", meta.key);
                assert!(!String::from_utf8_lossy(&opened.payload).contains(CANARY));
                manifests += 1;
            }
            Err(CryptoError::NoMatchingIdentity { .. }) => {
                assert!(meta.key.as_str().starts_with("objects/"), "{}", meta.key);
                objects += 1;
            }
            Err(e) => panic!("{}: {e}", meta.key),
        }
    }
    assert_eq!(manifests, 4, "a head and a part per run");
    assert!(
        objects >= 7,
        "the canary, three secrets, three keys: {objects}"
    );

    // A disaster-recovery host: the index is gone, only the catalog identity is at hand.
    std::fs::remove_file(bed.dir.path().join("index.sqlite")).expect("remove the index");
    let rebuild = bed
        .kvkeep(&[
            "index",
            "rebuild",
            "--identity",
            &bed.path("catalog.txt"),
            "--output",
            "json",
        ])
        .await;
    assert_eq!(
        rebuild.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&rebuild.stdout),
        stderr(&rebuild)
    );
    assert_no_canary(&rebuild, "index rebuild");
    let rebuilt = json_out(&rebuild);
    assert_eq!(rebuilt["rebuild"]["runs"], 2, "{rebuilt}");
    let after = json_out(&bed.kvkeep(&["list", "runs", "--output", "json"]).await);
    assert_eq!(after, before, "the rebuilt index lists the same runs");

    // Restore needs a recovery identity: refused up front, saying which key was given.
    let refused = bed
        .kvkeep(&[
            "restore",
            "--vault",
            "kv1",
            "--to-vault",
            "kv2",
            "--identity",
            &bed.path("catalog.txt"),
        ])
        .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("this is the catalog identity: it opens manifests only; restore needs a recovery identity"),
        "{message}"
    );
    assert!(!message.contains("AGE-SECRET-KEY"), "{message}");
    assert_no_canary(&refused, "restore with the catalog identity");
    let deep = bed
        .kvkeep(&[
            "verify",
            "--deep",
            "--vault",
            "kv1",
            "--identity",
            &bed.path("catalog.txt"),
        ])
        .await;
    assert_eq!(deep.status.code(), Some(2), "{}", stderr(&deep));
    assert!(stderr(&deep).contains("this is the catalog identity"));
    let secrets = bed.call("kv2", Method::GET, "secrets", None).await;
    assert_eq!(secrets["value"], json!([]), "nothing reached kv2");

    // The recovery identity restores, canary included.
    let restored = bed
        .kvkeep(&[
            "restore",
            "--vault",
            "kv1",
            "--to-vault",
            "kv2",
            "--identity",
            &bed.path("identity.txt"),
            "--output",
            "json",
        ])
        .await;
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert_no_canary(&restored, "restore");
    let canary = bed.call("kv2", Method::GET, "secrets/canary", None).await;
    assert_eq!(canary["value"], CANARY);
    let changed = bed.call("kv2", Method::GET, "secrets/secret-0", None).await;
    assert_eq!(changed["value"], "changed");
}
