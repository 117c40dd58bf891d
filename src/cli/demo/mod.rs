//! `kvkeep demo`: one command, no Azure, no set-up. Starts the Key Vault emulator in-process,
//! seeds a vault, writes a configuration that points kvkeep at it, and runs two backups with a
//! few changes in between, showing that only the changes are captured. It ends with a
//! point-in-time restore of the vault as the first backup saw it into a fresh vault, read back
//! through the data plane and compared with what the source held then.
//!
//! The demo goes through exactly the production path: it writes a real configuration file
//! (token-file credential, the emulator's CA as `ca_file`, a `resolve` override for the vault's
//! host name), loads it with [`Config::load`], runs [`Runner`] on it and restores through
//! [`RestoreJob`], which is what `kvkeep restore` runs. Only the emulator, the changes made to
//! it between the runs and the read-back comparison are demo-specific.

mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, EmulatorConfig};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::backup::reports_table;
use super::render::Output;
use super::restore::{load_identities, open_index, print_report, Opens, RestoreJob};
use super::{exit_code_of, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::backup::{system_clock, BackupReport, NoProgress, Runner};
use crate::config::Config;
use crate::crypto::{write_identity_file, Identity};
use crate::index::RunStatus;
use crate::model::RunId;
use crate::restore::{location_of, ConflictPolicy, NoRestoreProgress, Overall, RestoreReport};

/// The demo vault's name.
const VAULT: &str = "demo-vault";
/// The fresh vault the demo restores into.
const RESTORE_VAULT: &str = "kv-demo-restore";
/// The api-version the demo's own changes use.
const API_VERSION: &str = "7.5";
/// The bearer token the demo's clients send (the emulator accepts any).
const TOKEN: &str = "kvkeep-demo-token";

/// Arguments of `kvkeep demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's files (config, identity, store, index); it must be empty or
    /// absent. Default: a new directory under the system's temporary directory, kept afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the demo and returns the exit code.
pub fn run(args: DemoArgs) -> u8 {
    let dir = match prepare_dir(args.dir.as_deref()) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(fail) => return exit_code_of(Err(fail)),
    };
    match runtime.block_on(demo(&dir)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: the demo failed: {e}\n(its files are in {})",
                dir.display()
            );
            EXIT_FAILED
        }
    }
}

/// A fresh directory: the one given (absent or empty), or a new one under the temp dir.
fn prepare_dir(dir: Option<&Path>) -> Result<PathBuf, String> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("kvkeep-demo-{}", RunId::random())),
    };
    // Private, like everything kvkeep creates: it will hold an identity and an index.
    crate::fsutil::create_private_dir_all(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "{} is not empty; the demo needs a fresh directory (or none: it makes one)",
            dir.display()
        ));
    }
    // Relative paths in the generated config are resolved against its directory; an absolute
    // directory keeps the printed commands valid from anywhere.
    std::fs::canonicalize(&dir).map_err(|e| format!("cannot resolve {}: {e}", dir.display()))
}

async fn demo(dir: &Path) -> Result<u8, String> {
    println!("kvkeep demo: files in {}\n", dir.display());
    let emulator = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named(VAULT)],
        cert_dir: Some(dir.join("emulator-tls")),
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("starting the key vault emulator: {e}"))?;
    let vault_url = emulator
        .vault_url(VAULT)
        .ok_or("the emulator did not report the demo vault's url")?
        .to_string();
    println!("1. started a key vault emulator in-process: {vault_url}");

    let control = emulator.control();
    for (kind, prefix, count, versions) in [
        (Collection::Secrets, "app-secret-", 6, 3),
        (Collection::Keys, "app-key-", 3, 2),
        (Collection::Certificates, "app-cert-", 2, 2),
    ] {
        control
            .seed(VAULT, &SeedSpec::new(kind, prefix, count, versions))
            .await
            .map_err(|e| format!("seeding the emulator: {e}"))?;
    }
    println!(
        "   seeded {VAULT}: 6 secrets (3 versions each), 3 keys (2 versions), 2 certificates \
         (2 versions, each with its certificate-managed key and secret)"
    );

    let source_vault = DemoVault::of(VaultSettings::named(VAULT), vault_url.clone());
    let paths = write_setup(dir, &emulator.info().ca_cert, &[&source_vault])?;
    println!(
        "2. generated an age identity ({}, mode 0600) and a configuration ({})",
        paths.identity.display(),
        paths.config.display()
    );

    // From here on: the production path, driven by the file just written.
    let config = Config::load(&paths.config).map_err(|e| e.to_string())?;
    let runner = Runner::open(&config, false, system_clock())
        .await
        .map_err(|e| e.to_string())?;

    println!("\n3. first backup: every object is new");
    let first = backup(&runner, &config).await;
    print!("{}", reports_table(std::slice::from_ref(&first)));
    // What the vault held at the first backup: what the restore at the end must reproduce.
    let http = emulator.http_client();
    let at_first = snapshot::take(&http, &vault_url, TOKEN).await?;
    // The restore point is the first run's end; the second run must start after it (the index
    // has one-second resolution), which costs at most a second here.
    let at = first.finished_at;
    while crate::clock::now_unix() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Key Vault's timestamps have one-second resolution; the demo runs in well under a second,
    // so the emulator's clock is moved on a minute, as if the changes came later.
    control
        .advance_time(60)
        .await
        .map_err(|e| format!("moving the emulator's clock: {e}"))?;
    let changes = change_vault(&emulator, &vault_url).await?;
    println!("\n4. a minute later (emulator time), changed the vault through its REST API:");
    for c in &changes {
        println!("   - {c}");
    }

    println!("\n5. second backup: only the changes are captured, the deleted secret is recorded");
    let second = backup(&runner, &config).await;
    print!("{}", reports_table(std::slice::from_ref(&second)));
    let captured: Vec<String> = runner
        .index()
        .list_objects(Some(&config.vaults[0].name))
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|o| o.last_seen >= second.started_at && o.deleted_at.is_none())
        .filter(|o| {
            runner
                .index()
                .list_captures(&o.vault, o.kind, &o.name)
                .map(|c| c.first().is_some_and(|c| c.run == second.run))
                .unwrap_or(false)
        })
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    println!("   captured in the second run: {}", captured.join(", "));
    drop(runner);

    let restored = restore_first_point(&emulator, dir, &paths, &source_vault, at, &at_first).await;
    emulator.shutdown().await;
    let restored_ok = match restored {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: the restore step failed: {e}");
            false
        }
    };

    // Step 7: the retention report of the backed-up vault, as the daemon would keep it.
    let report_path = config
        .report
        .html_path
        .clone()
        .unwrap_or_else(|| dir.join("report.html"));
    let report_written = write_report(&config, &report_path);
    match &report_written {
        Ok(bytes) => println!(
            "\n7. wrote the HTML retention report ({bytes} bytes; timeline, RPO, coverage, storage):\n   {}",
            report_path.display()
        ),
        Err(e) => eprintln!("error: the report step failed: {e}"),
    }

    let config_arg = paths.config.display();
    println!(
        "\nwhere everything is:\n\
         \x20 configuration  {config_arg}\n\
         \x20 identity       {} (the private key; only restore needs it)\n\
         \x20 store          {} (sealed blobs: objects/ and manifests/)\n\
         \x20 index          {}\n\
         \x20 report         {} (open it in a browser)\n\
         \nlook further (the emulator is gone, the index and store remain):\n\
         \x20 kvkeep list runs --config {config_arg}\n\
         \x20 kvkeep report --config {config_arg}\n\
         \x20 kvkeep list objects --config {config_arg}\n\
         \x20 kvkeep list versions --config {config_arg} --vault {VAULT} --kind secrets --name app-secret-00000\n\
         \x20 age -d -i {} {}/manifests/{VAULT}/<file>.age | zstd -d | tail -c +13   (a manifest, by hand)",
        paths.identity.display(),
        dir.join("store").display(),
        dir.join("index.sqlite").display(),
        report_path.display(),
        paths.identity.display(),
        dir.join("store").display(),
    );

    let expected = first.status == RunStatus::Completed
        && second.status == RunStatus::Completed
        && second.stats.captured_objects == 2
        && second.stats.deleted_objects == 1;
    if !expected {
        eprintln!("error: the demo's runs did not end as expected (see the reports above)");
        return Ok(EXIT_FAILED);
    }
    if report_written.is_err() {
        return Ok(EXIT_FAILED);
    }
    if !restored_ok {
        eprintln!(
            "error: the restored vault does not match the first backup's point in time (see above)"
        );
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// Writes the HTML report of `config`'s vaults to `path` from the index; its size on success.
fn write_report(config: &Config, path: &Path) -> Result<usize, String> {
    let index = crate::index::Index::open(&config.index_path).map_err(|e| e.to_string())?;
    let html = crate::report::html::build_html(&index, &config.vaults, crate::clock::now())
        .map_err(|e| e.to_string())?;
    crate::fsutil::replace_private_file(path, html.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(html.len())
}

/// Step 6: creates a fresh vault, adds it to the configuration, restores the point `at` (the
/// first backup) into it as `kvkeep restore --at AT --to-vault kv-demo-restore` does, reads the
/// vault back and compares it with `expected`. Ok(true) when every object was restored and
/// everything matches; the mismatches are printed otherwise.
async fn restore_first_point(
    emulator: &Emulator,
    dir: &Path,
    paths: &DemoPaths,
    source_vault: &DemoVault,
    at: i64,
    expected: &snapshot::Snapshot,
) -> Result<bool, String> {
    let created = emulator
        .control()
        .create_vault(&VaultSettings::named(RESTORE_VAULT))
        .await
        .map_err(|e| format!("creating vault {RESTORE_VAULT} in the emulator: {e}"))?;
    let target_vault = DemoVault::of(created.settings, created.url);
    // The restore needs the target configured: its host resolved to the emulator, and its
    // subscription and geography known so compatibility is checked before any write.
    write_config(
        dir,
        &paths.recipient,
        &emulator.info().ca_cert,
        &[source_vault, &target_vault],
    )?;
    let config = Config::load(&paths.config).map_err(|e| e.to_string())?;
    let target = config
        .vaults
        .iter()
        .find(|v| v.name.as_str() == RESTORE_VAULT)
        .cloned()
        .ok_or("the regenerated configuration lacks the restore vault")?;
    let source = config
        .vaults
        .iter()
        .find(|v| v.name.as_str() == VAULT)
        .map(location_of)
        .ok_or("the regenerated configuration lacks the demo vault")?;
    println!(
        "\n6. point-in-time restore: created an empty vault {RESTORE_VAULT} ({}), added it to the \
         configuration, and restored {VAULT} as the first backup saw it (--at {}), before the changes of step 4:",
        target_vault.url,
        crate::restore::plan::rfc3339(at),
    );
    let job = RestoreJob {
        source,
        target,
        at,
        only: Vec::new(),
        policy: ConflictPolicy::Skip,
        assume_compatible: false,
        purge_wait: std::time::Duration::from_secs(60),
    };
    println!(
        "   (what `kvkeep restore --config {} --vault {VAULT} --at {} --to-vault {RESTORE_VAULT} --identity {}` does)",
        paths.config.display(),
        crate::restore::plan::rfc3339(at),
        paths.identity.display(),
    );
    let fail = |Fail(_, message): Fail| message;
    let index = open_index(&config).map_err(fail)?;
    let identities = load_identities(
        Some(&paths.identity),
        "restore",
        &config,
        Opens::Backups("restore"),
    )
    .map_err(fail)?;
    let (_, report) = job
        .run(
            &config,
            index,
            identities,
            Arc::new(NoRestoreProgress),
            CancellationToken::new(),
        )
        .await
        .map_err(fail)?;
    print_report(&report, Output::Table);

    let actual = snapshot::take(&emulator.http_client(), &target_vault.url, TOKEN).await?;
    let differences = expected.differences(&actual);
    Ok(summarise(&report, expected, &differences))
}

/// Prints the comparison; true when everything was restored and matches.
fn summarise(
    report: &RestoreReport,
    expected: &snapshot::Snapshot,
    differences: &[String],
) -> bool {
    let restored = report.stats.restored_objects;
    let all_restored = report.overall() == Overall::Ok && report.stats.skipped_objects == 0;
    println!(
        "   read {RESTORE_VAULT} back and compared every version ({} versions of {} objects, the \
         certificate-managed keys and secrets included) with {VAULT} at the first backup: names, \
         version ids, attributes, tags, key material and secret values",
        expected.versions(),
        expected.objects(),
    );
    if all_restored && differences.is_empty() {
        println!("   restored {restored} objects into {RESTORE_VAULT}: all match");
        if expected.has_object("secrets", "app-secret-00001") {
            println!(
                "   (so secret app-secret-00001, deleted since, is back; app-secret-00000 has its \
                 pre-rotation current version; key app-key-00000 has no owner tag)"
            );
        }
        return true;
    }
    println!(
        "   restored {restored} objects into {RESTORE_VAULT}: {} difference(s)",
        differences.len()
    );
    for d in differences {
        println!("   - {d}");
    }
    false
}

async fn backup(runner: &Runner, config: &Config) -> BackupReport {
    runner
        .backup(
            &config.vaults,
            CancellationToken::new(),
            Arc::new(NoProgress),
        )
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!("the demo configuration has one vault"))
}

/// Files written for the demo.
struct DemoPaths {
    config: PathBuf,
    identity: PathBuf,
    /// The identity's public key, for rewriting the configuration.
    recipient: String,
}

/// A vault of the emulator as the configuration names it.
struct DemoVault {
    name: String,
    url: String,
    subscription: String,
    geography: String,
}

impl DemoVault {
    fn of(settings: VaultSettings, url: String) -> DemoVault {
        DemoVault {
            name: settings.name,
            url,
            subscription: settings.subscription,
            geography: settings.geo,
        }
    }
}

/// Writes the identity (0600), a bearer-token file for the emulator (which accepts any token)
/// and the configuration.
fn write_setup(dir: &Path, ca: &Path, vaults: &[&DemoVault]) -> Result<DemoPaths, String> {
    let identity_path = dir.join("identity.txt");
    // A comment in the identity file; reading the clock for it is harmless.
    let created = chrono::DateTime::from_timestamp(crate::clock::now_unix(), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let recipient = write_identity_file(&identity_path, &Identity::generate(), &created, false)
        .map_err(|e| e.to_string())?;
    let token_path = dir.join("token.txt");
    write_private(&token_path, &format!("{TOKEN}\n"))?;
    let config_path = write_config(dir, &recipient, ca, vaults)?;
    Ok(DemoPaths {
        config: config_path,
        identity: identity_path,
        recipient,
    })
}

/// Writes (or rewrites) `kvkeep.toml` naming `vaults`, each host resolved to the emulator.
fn write_config(
    dir: &Path,
    recipient: &str,
    ca: &Path,
    vaults: &[&DemoVault],
) -> Result<PathBuf, String> {
    let mut resolve = Vec::new();
    let mut sections = String::new();
    for v in vaults {
        let host = url::Url::parse(&v.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| format!("the emulator's vault url {} has no host", v.url))?;
        resolve.push(format!("\"{host}\" = \"127.0.0.1\""));
        sections.push_str(&format!(
            "[[vault]]\nname = \"{}\"\nurl = \"{}\"\nsubscription = \"{}\"\ngeography = \"{}\"\n\n",
            v.name, v.url, v.subscription, v.geography
        ));
    }
    let config = format!(
        r#"# Generated by `kvkeep demo`: kvkeep pointed at an in-process Key Vault emulator.
# Relative paths are relative to this file.

[store]
type = "local"
path = "store"

[encryption]
recipients = ["{recipient}"]   # public key; the identity is in identity.txt

[index]
path = "index.sqlite"

[azure]
credential = "token-file"      # the emulator accepts any bearer token
token_file = "token.txt"
ca_file = "{ca}"               # the emulator's test CA
resolve = {{ {resolve} }}

[limits]
vault_share = 1.0
subscription_share = 1.0
concurrency = 4

[report]
html_path = "report.html"      # `kvkeep daemon` keeps it up to date; the demo writes it once

{sections}"#,
        ca = ca.display(),
        resolve = resolve.join(", "),
    );
    let config_path = dir.join("kvkeep.toml");
    std::fs::write(&config_path, config)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    Ok(config_path)
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    crate::fsutil::create_private_file(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A new version of one secret, a tag change on one key, one secret deleted — through the
/// vault's REST API, as an application would. Returns what was done.
async fn change_vault(emulator: &Emulator, vault_url: &str) -> Result<Vec<String>, String> {
    let http = emulator.http_client();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = http
            .request(
                method,
                format!("{vault_url}/{path}?api-version={API_VERSION}"),
            )
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let steps = [
        (
            reqwest::Method::PUT,
            "secrets/app-secret-00000",
            Some(json!({"value": "rotated-by-the-demo"})),
            "new version of secret app-secret-00000",
        ),
        (
            reqwest::Method::PATCH,
            "keys/app-key-00000",
            Some(json!({"tags": {"owner": "demo"}})),
            "tag owner=demo set on key app-key-00000",
        ),
        (
            reqwest::Method::DELETE,
            "secrets/app-secret-00001",
            None,
            "secret app-secret-00001 deleted",
        ),
    ];
    let mut done = Vec::new();
    for (method, path, body, what) in steps {
        let response = call(method, path, body)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "{what}: the emulator answered {}",
                response.status()
            ));
        }
        done.push(what.to_string());
    }
    Ok(done)
}
