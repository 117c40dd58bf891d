//! Start-up and plumbing the end-to-end tests share (`backup_e2e.rs`, `restore_e2e.rs`, …):
//! Azurite with the backup container made, the Key Vault emulator trusting the same test CA,
//! the store's SAS file, data-plane calls as an application makes them, and the real `kvkeep`
//! binary run against a configuration file.

use std::path::Path;
use std::process::Output;

use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, EmulatorConfig};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::Value;

use super::azurite::{account_sas, Azurite};

/// Starts Azurite and creates `container` in it.
pub async fn azurite_with_container(container: &str) -> Azurite {
    let azurite = Azurite::start().await.expect("start azurite");
    azurite
        .service_client_with_sas()
        .expect("harness client")
        .blob_container_client(container)
        .create(None)
        .await
        .expect("create the container");
    azurite
}

/// Starts the Key Vault emulator serving `vaults`, its certificates issued by Azurite's test
/// CA, so both emulators share one CA and one `ca_file` serves kvkeep.
pub async fn emulator_beside(azurite: &Azurite, vaults: Vec<VaultSettings>) -> Emulator {
    let cert_dir = azurite
        .ca_cert_path()
        .parent()
        .expect("the ca file is in a directory")
        .to_path_buf();
    Emulator::start(EmulatorConfig {
        vaults,
        cert_dir: Some(cert_dir),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the key vault emulator")
}

/// Writes `dir/sas.txt` (mode 0600), the container's URL with an account SAS valid for two hours (for
/// `auth = "sas"`, `sas_url_file = "sas.txt"`), and returns the container URL.
pub fn write_container_sas(dir: &Path, azurite: &Azurite, container: &str) -> String {
    let container_url = format!("{}/{container}", azurite.service_url());
    let sas = account_sas(
        "rwdlacup",
        OffsetDateTime::from_unix_timestamp(kvkeep::clock::now_unix()).expect("valid time")
            + AzDuration::hours(2),
    )
    .expect("sign a sas");
    super::config_files::write_private(&dir.join("sas.txt"), &format!("{container_url}?{sas}\n"));
    container_url
}

/// The `[store]` section of an e2e configuration: `container` on `azurite` through a SAS URL
/// written to `dir/sas.txt` (see [`write_container_sas`]), blobs under `prefix`.
pub fn sas_store_section(dir: &Path, azurite: &Azurite, container: &str, prefix: &str) -> String {
    let container_url = write_container_sas(dir, azurite, container);
    format!(
        "[store]\ntype = \"azure\"\ncontainer_url = \"{container_url}\"\nauth = \"sas\"\nsas_url_file = \"sas.txt\"\nprefix = \"{prefix}\"\n"
    )
}

/// `kvkeep <args> --config <config>`, with extra environment and no inherited `RUST_LOG` or
/// `KVKEEP_CONFIG`.
pub async fn run_kvkeep(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvkeep"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("KVKEEP_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run kvkeep")
}

/// kvkeep's stdout as one JSON document; panics with stdout and stderr when it is not.
pub fn json_out(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The api-version the tests' own data-plane calls speak.
pub const API_VERSION: &str = "7.5";

/// A data-plane call as an application makes it: `path` under `vault_url` (or a whole
/// `https://` URL, as a `nextLink` is) with bearer `token`. It must succeed; returns the JSON
/// answer (`null` when there is none).
pub async fn data_plane(
    emulator: &Emulator,
    vault_url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = if path.starts_with("https://") {
        path.to_string()
    } else {
        format!(
            "{}/{path}{sep}api-version={API_VERSION}",
            vault_url.trim_end_matches('/')
        )
    };
    let mut request = emulator
        .http_client()
        .request(method.clone(), url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("data-plane call");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Seeds `count` objects of `kind` named `{prefix}…` into `vault`, each with `versions`
/// versions, no tags and 32-byte values.
pub async fn seed(
    emulator: &Emulator,
    vault: &str,
    kind: Collection,
    prefix: &str,
    count: usize,
    versions: usize,
) {
    emulator
        .control()
        .seed(vault, &SeedSpec::new(kind, prefix, count, versions))
        .await
        .unwrap_or_else(|e| panic!("seed {prefix}… into {vault}: {e}"));
}

/// Backup calls (of any kind) the emulator received for `vault` so far.
pub async fn backup_calls(emulator: &Emulator, vault: &str) -> u64 {
    let counters = emulator.control().counters().await.expect("counters");
    counters
        .vaults
        .get(vault)
        .map(|ops| {
            ops.iter()
                .filter(|(op, _)| op.ends_with(".backup"))
                .map(|(_, n)| *n)
                .sum()
        })
        .unwrap_or(0)
}

/// Waits (polling every 50 ms, for at most two minutes) until `vault` has received more than
/// `calls` backup calls: a run is under way there.
pub async fn wait_for_backup_calls_past(emulator: &Emulator, vault: &str, calls: u64) {
    for _ in 0..2_400 {
        if backup_calls(emulator, vault).await > calls {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{vault} received no backup call past the {calls} before");
}
