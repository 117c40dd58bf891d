//! `kvkeep report`'s key-vault-expiry section end to end: objects given `exp`/`nbf` through the
//! Key Vault emulator's data plane (as an application sets them), backed up by the real binary
//! over HTTPS into Azurite, then reported by the binary from its index. It covers the window
//! (`--expiring-within`), an index written before kvkeep recorded expiry (schema 5) upgrading
//! with every object unknown until the next backup lists them, an `exp` update recaptured, the
//! CSV section, `index rebuild` giving the same section, and a bad duration (exit 2). The
//! coverage section's count of objects left out on purpose (the certificate's managed key and
//! secret) comes from the same real run.

mod support;

use std::path::{Path, PathBuf};

use kvkeep::restore::plan::rfc3339;
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::Emulator;
use kvkeep_emulator::vault::VaultSettings;
use serde_json::{json, Value};
use support::azurite::Azurite;
use support::config_files::{resolve_entry, KvkeepToml};
use support::e2e::{
    azurite_with_container, data_plane, emulator_beside, json_out, run_kvkeep, sas_store_section,
    seed,
};
use tempfile::TempDir;

const VAULT: &str = "kv-expiry";
const CONTAINER: &str = "backups";
const TOKEN: &str = "e2e-test-token";
const DAY: i64 = 86_400;

struct Bed {
    // Kept for their lifetime: both emulators stop when dropped.
    _azurite: Azurite,
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
            _azurite: azurite,
            emulator,
            dir,
            config,
            vault_url,
        }
    }

    /// A data-plane call as an application (or the SDK) makes it; the JSON answer.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        data_plane(&self.emulator, &self.vault_url, TOKEN, method, path, body).await
    }

    async fn kvkeep(&self, args: &[&str]) -> std::process::Output {
        run_kvkeep(&self.config, args, &[]).await
    }

    /// `kvkeep backup --output json`, which must complete; the vault's stats.
    async fn backup(&self) -> Value {
        let out = self.kvkeep(&["backup", "--output", "json"]).await;
        let report = json_out(&out)["vaults"][0].clone();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report["stats"].clone()
    }

    /// The key-vault-expiry section of `kvkeep report --format json --expiring-within W`.
    async fn expiry(&self, within: &str) -> Value {
        let out = self
            .kvkeep(&["report", "--format", "json", "--expiring-within", within])
            .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_out(&out)["vaults"][0]["key_vault_expiry"].clone()
    }

    fn index_path(&self) -> PathBuf {
        self.dir.path().join("index.sqlite")
    }
}

fn write_config(dir: &Path, azurite: &Azurite, vault_url: &str) -> PathBuf {
    KvkeepToml {
        store: &sas_store_section(dir, azurite, CONTAINER, "e2e/"),
        ca: azurite.ca_cert_path(),
        resolve: &[resolve_entry(vault_url)],
        concurrency: 4,
        rest: &format!(
            r#"[[vault]]
name = "{VAULT}"
url = "{vault_url}"
"#
        ),
    }
    .write(dir, TOKEN)
}

/// (kind, name, expires_at, not_before, expired) of each listed object, in report order.
fn listed(section: &Value) -> Vec<(String, String, String, Value, bool)> {
    section["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("no objects in {section}"))
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["name"].as_str().unwrap_or_default().to_string(),
                o["expires_at"].as_str().unwrap_or_default().to_string(),
                o["not_before"].clone(),
                o["expired"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

fn entry(
    kind: &str,
    name: &str,
    exp: i64,
    nbf: Option<i64>,
    expired: bool,
) -> (String, String, String, Value, bool) {
    (
        kind.to_string(),
        name.to_string(),
        rfc3339(exp),
        nbf.map_or(Value::Null, |t| json!(rfc3339(t))),
        expired,
    )
}

/// The index as kvkeep at schema version 5 left it: no period columns, version 5.
fn back_to_schema_5(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open the index");
    conn.execute_batch(
        "CREATE INDEX captures_by_object_time ON captures (object, captured_at);
         DROP INDEX captures_by_object_time_sizes;
         ALTER TABLE runs DROP COLUMN skipped_managed;
         ALTER TABLE runs DROP COLUMN skipped_filtered;
         ALTER TABLE runs DROP COLUMN skipped_tagged;
         ALTER TABLE captures DROP COLUMN validity_known;
         ALTER TABLE captures DROP COLUMN not_before;
         ALTER TABLE captures DROP COLUMN expires_at;
         ALTER TABLE runs DROP COLUMN abandoned_by;
         PRAGMA user_version = 5;",
    )
    .expect("back to schema 5");
}

fn schema_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("schema version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_what_key_vault_will_expire_from_what_backups_recorded() {
    let bed = Bed::start().await;
    let now = kvkeep::clock::now_unix();
    // Secrets: expiring in 10 days (with nbf), in 60 days, expired yesterday, never. A key
    // expiring in 20 days. A certificate, whose exp is its X.509 notAfter (about ten years).
    let put = |name: &'static str, attributes: Value| {
        let body = json!({"value": format!("value of {name}"), "attributes": attributes});
        (format!("secrets/{name}"), body)
    };
    for (path, body) in [
        put("soon", json!({"nbf": now - 5 * DAY, "exp": now + 10 * DAY})),
        put("later", json!({"exp": now + 60 * DAY})),
        put("lapsed", json!({"exp": now - DAY})),
        put("plain", json!({})),
    ] {
        bed.call(reqwest::Method::PUT, &path, Some(body)).await;
    }
    bed.call(
        reqwest::Method::POST,
        "keys/signing/create",
        Some(json!({"kty": "EC", "attributes": {"exp": now + 20 * DAY}})),
    )
    .await;
    seed(&bed.emulator, VAULT, Collection::Certificates, "tls-", 1, 1).await;
    let cert = bed
        .call(reqwest::Method::GET, "certificates/tls-00000", None)
        .await;
    let cert_exp = cert["attributes"]["exp"].as_i64().expect("certificate exp");
    let cert_nbf = cert["attributes"]["nbf"].as_i64().expect("certificate nbf");

    let first = bed.backup().await;
    assert_eq!(first["captured_objects"], 6, "{first}");
    // The certificate's managed key and secret were listed and left out on purpose: the
    // coverage section counts them from the run's plan.
    let out = bed.kvkeep(&["report", "--format", "json"]).await;
    let skipped = json_out(&out)["vaults"][0]["coverage"]["skipped"].clone();
    assert_eq!(
        (
            &skipped["managed"],
            &skipped["filtered"],
            &skipped["tagged"]
        ),
        (&json!(2), &json!(0), &json!(0)),
        "{skipped}"
    );

    // 30 days: the lapsed secret first (flagged), then the secret and the key, by exp.
    let expected_30d = vec![
        entry("secrets", "lapsed", now - DAY, None, true),
        entry(
            "secrets",
            "soon",
            now + 10 * DAY,
            Some(now - 5 * DAY),
            false,
        ),
        entry("keys", "signing", now + 20 * DAY, None, false),
    ];
    let section = bed.expiry("30d").await;
    assert_eq!(listed(&section), expected_30d, "{section}");
    assert_eq!(section["within_seconds"], 30 * DAY);
    assert_eq!(section["expired"], 1);
    assert_eq!(section["unknown"], 0);
    // 90 days takes in the secret expiring in 60; ten years the certificate.
    let section = bed.expiry("90d").await;
    assert_eq!(
        listed(&section).last(),
        Some(&entry("secrets", "later", now + 60 * DAY, None, false))
    );
    assert_eq!(listed(&section).len(), 4);
    let section = bed.expiry("3660d").await;
    assert_eq!(
        listed(&section).last(),
        Some(&entry(
            "certificates",
            "tls-00000",
            cert_exp,
            Some(cert_nbf),
            false
        ))
    );

    // An index written by kvkeep before schema 6: the report upgrades it and knows nothing of
    // any object's expiry; the next backup, with nothing changed, learns it from its listing.
    back_to_schema_5(&bed.index_path());
    let section = bed.expiry("30d").await;
    assert_eq!(
        schema_version(&bed.index_path()),
        kvkeep::index::supported_version(),
        "opened means upgraded"
    );
    assert_eq!(listed(&section), vec![], "{section}");
    assert_eq!(section["unknown"], 6);
    let second = bed.backup().await;
    assert_eq!(second["captured_objects"], 0, "{second}");
    assert_eq!(second["backup_calls"], 0, "{second}");
    let section = bed.expiry("30d").await;
    assert_eq!(listed(&section), expected_30d, "{section}");
    assert_eq!(section["unknown"], 0);

    // An application moves `later`'s exp closer (no new version; `updated` moves, so the next
    // backup captures it again). A second on, so `updated` differs from the captured one.
    bed.emulator
        .control()
        .advance_time(60)
        .await
        .expect("advance the emulator's clock");
    bed.call(
        reqwest::Method::PATCH,
        "secrets/later",
        Some(json!({"attributes": {"exp": now + 5 * DAY}})),
    )
    .await;
    let third = bed.backup().await;
    assert_eq!(third["captured_objects"], 1, "{third}");
    let section = bed.expiry("30d").await;
    let expected_after = vec![
        entry("secrets", "lapsed", now - DAY, None, true),
        entry("secrets", "later", now + 5 * DAY, None, false),
        entry(
            "secrets",
            "soon",
            now + 10 * DAY,
            Some(now - 5 * DAY),
            false,
        ),
        entry("keys", "signing", now + 20 * DAY, None, false),
    ];
    assert_eq!(listed(&section), expected_after, "{section}");

    // The CSV section, one row per object.
    let out = bed
        .kvkeep(&["report", "--format", "csv", "--section", "key-vault-expiry"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "vault,kind,name,state,expires_at,not_before,within_seconds,objects"
    );
    assert_eq!(
        lines[1],
        format!(
            "{VAULT},secrets,lapsed,expired,{},,2592000,",
            rfc3339(now - DAY)
        )
    );
    assert_eq!(lines.len(), 5, "{csv}");

    // The manifests carry the periods: an index rebuilt from the store alone reports the same.
    let identity = bed.dir.path().join("identity.txt");
    let identity = identity.to_str().expect("utf-8 path");
    let out = bed
        .kvkeep(&["index", "rebuild", "--identity", identity])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = bed.expiry("30d").await;
    assert_eq!(listed(&section), expected_after, "{section}");
    assert_eq!(section["unknown"], 0);

    // A window that is not a duration is a usage error that names the flag.
    let out = bed.kvkeep(&["report", "--expiring-within", "soon"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--expiring-within"), "{stderr}");
}
