//! `kvkeep doctor` end to end: the real binary against the Key Vault emulator over HTTPS and
//! Azurite, with the emulator's faults and auth modes standing in for a missing permission, a
//! rejected token and an unreachable endpoint. Each test has its own emulator and Azurite.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{
    AuthSettings, ChallengeMode, Emulator, FaultKind, FaultSpec, TokenMode,
};
use kvkeep_emulator::vault::VaultSettings;
use serde_json::Value;
use support::azurite::Azurite;
use support::config_files::{resolve_entry, KvkeepToml};
use support::e2e::{
    azurite_with_container, emulator_beside, json_out, run_kvkeep, seed, write_container_sas,
};
use tempfile::TempDir;

const VAULT: &str = "kv-doctor";
const CONTAINER: &str = "backups";
/// The bearer token kvkeep sends: a canary that must never reach the output.
const TOKEN: &str = "doctor-canary-token-5f2e";

struct Bed {
    azurite: Azurite,
    emulator: Emulator,
    dir: TempDir,
    vault_url: String,
    configs: std::sync::atomic::AtomicUsize,
}

impl Bed {
    async fn start() -> Bed {
        let azurite = azurite_with_container(CONTAINER).await;
        let emulator = emulator_beside(&azurite, vec![VaultSettings::named(VAULT)]).await;
        let vault_url = emulator.vault_url(VAULT).expect("vault url").to_string();
        Bed {
            azurite,
            emulator,
            dir: TempDir::new().expect("tempdir"),
            vault_url,
            configs: Default::default(),
        }
    }

    /// One object of each kind (a certificate brings its managed key and secret along).
    async fn seed(&self) {
        self.seed_counts(1).await;
    }

    /// `secrets` secrets, one key and one certificate.
    async fn seed_counts(&self, secrets: usize) {
        for (kind, prefix, count) in [
            (Collection::Secrets, "s-", secrets),
            (Collection::Keys, "k-", 1),
            (Collection::Certificates, "c-", 1),
        ] {
            seed(&self.emulator, VAULT, kind, prefix, count, 1).await;
        }
    }

    /// The configuration with the store at `container_url` (the real one when `None`) and the
    /// vault at `vault_url`.
    ///
    /// Each call writes into a fresh directory (its own identity, token, SAS and index).
    fn config(&self, container_url: Option<&str>, vault_url: &str) -> PathBuf {
        self.config_trusting(container_url, vault_url, self.azurite.ca_cert_path())
    }

    /// [`Bed::config`] with `ca` as `[azure] ca_file`.
    fn config_trusting(&self, container_url: Option<&str>, vault_url: &str, ca: &Path) -> PathBuf {
        let dir = self.dir.path().join(format!(
            "c{}",
            self.configs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir(&dir).expect("config dir");
        let real = write_container_sas(&dir, &self.azurite, CONTAINER);
        let container_url = container_url.unwrap_or(&real);
        KvkeepToml {
            store: &format!(
                "[store]\ntype = \"azure\"\ncontainer_url = \"{container_url}\"\nauth = \"sas\"\nsas_url_file = \"sas.txt\"\nprefix = \"e2e/\"\n"
            ),
            ca,
            resolve: &[resolve_entry(vault_url)],
            concurrency: 4,
            rest: &format!(
                "[defaults]\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n\n[[vault]]\nname = \"{VAULT}\"\nurl = \"{vault_url}\"\n"
            ),
        }
        .write(&dir, TOKEN)
    }

    async fn fault(&self, op: &str, kind: FaultKind) {
        self.emulator
            .control()
            .add_fault(&FaultSpec {
                vault: Some(VAULT.into()),
                op: Some(op.into()),
                kind,
                count: None,
                rate: None,
                retry_after_seconds: None,
                retry_after_ms: None,
                latency_ms: None,
                page_size: None,
                next_link_host: None,
            })
            .await
            .expect("add fault");
    }

    async fn token_mode(&self, token: TokenMode) {
        self.emulator
            .control()
            .set_auth(&AuthSettings {
                challenge: ChallengeMode::Default,
                token,
            })
            .await
            .expect("set auth");
    }
}

/// `kvkeep doctor --output json <extra>`: exit code and report, after checking that nothing
/// secret reached stdout or stderr.
async fn doctor(config: &Path, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = vec!["doctor", "--output", "json"];
    args.extend_from_slice(extra);
    let out = run_kvkeep(config, &args, &[]).await;
    assert_no_secrets(config, &out);
    let report = json_out(&out);
    (out.status.code().unwrap_or(-1), report, out)
}

fn assert_no_secrets(config: &Path, out: &Output) {
    let dir = config.parent().expect("config dir");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sas = std::fs::read_to_string(dir.join("sas.txt")).expect("sas file");
    let signature = sas.split("sig=").nth(1).unwrap_or("").trim();
    assert!(!signature.is_empty());
    assert!(!text.contains(TOKEN), "the token leaked:\n{text}");
    assert!(
        !text.contains(signature),
        "the sas signature leaked:\n{text}"
    );
    assert!(
        !text.contains("AGE-SECRET-KEY"),
        "the identity leaked:\n{text}"
    );
}

/// The row for `check` of `vault` (`None`: rows without a vault).
fn row<'a>(report: &'a Value, vault: Option<&str>, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == check && c["vault"].as_str() == vault)
        .unwrap_or_else(|| panic!("no {check} row for {vault:?} in {report:#}"))
}

fn statuses(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| format!("{} {}: {}", c["check"], c["status"], c["detail"]))
        .collect()
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn with_port(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).expect("url");
    url.set_port(Some(port)).expect("port");
    url.as_str().trim_end_matches('/').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_every_check_and_leaves_nothing_behind() {
    let bed = Bed::start().await;
    // More secrets than one page holds: doctor lists one page only.
    bed.seed_counts(40).await;
    let config = bed.config(None, &bed.vault_url);
    // A backup first, so the newest manifest exists for --identity.
    let backup = run_kvkeep(&config, &["backup"], &[]).await;
    assert_eq!(
        backup.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    bed.emulator
        .control()
        .clear_counters()
        .await
        .expect("clear");

    let identity = config.with_file_name("identity.txt");
    let identity = identity.to_str().expect("utf-8 path");
    let (code, report, out) = doctor(&config, &["--identity", identity]).await;
    assert_eq!(
        code,
        0,
        "{:#?}\n{}",
        statuses(&report),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["outcome"], "ok");
    let checks = report["checks"].as_array().expect("checks");
    for c in checks {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["fix"].is_null(), "{c}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
    }
    let names: Vec<(Option<&str>, &str)> = checks
        .iter()
        .map(|c| (c["vault"].as_str(), c["check"].as_str().expect("check")))
        .collect();
    let v = Some(VAULT);
    assert_eq!(
        names,
        [
            (None, "config"),
            (None, "index"),
            (None, "store"),
            (None, "locks"),
            (v, "connect"),
            (v, "list keys"),
            (v, "backup keys"),
            (v, "list secrets"),
            (v, "backup secrets"),
            (v, "list certificates"),
            (v, "backup certificates"),
            (v, "clock"),
            (v, "schedule"),
            (v, "manifest"),
        ]
    );
    assert!(
        row(&report, v, "schedule")["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("0 3 * * * (Europe/Berlin): next run 20")),
        "{report:#}"
    );
    assert_eq!(
        row(&report, v, "list secrets")["detail"],
        "25 secrets listed (one page; the rest not fetched)"
    );
    assert_eq!(row(&report, v, "list keys")["detail"], "2 keys listed");
    // One page and one backup per kind, and never a read of a value.
    let counters = bed.emulator.control().counters().await.expect("counters");
    let ops = counters.vaults.get(VAULT).cloned().unwrap_or_default();
    for kind in ["secrets", "keys", "certificates"] {
        assert_eq!(ops.get(&format!("{kind}.backup")), Some(&1), "{ops:?}");
        assert_eq!(ops.get(&format!("{kind}.list")), Some(&1), "{ops:?}");
        assert_eq!(ops.get(&format!("{kind}.get")), None, "{ops:?}");
    }
    // The probe is gone, and doctor recorded no run.
    let listed = run_kvkeep(&config, &["list", "runs", "--output", "json"], &[]).await;
    assert_eq!(json_out(&listed).as_array().map(Vec::len), Some(1));
    let loaded = kvkeep::config::Config::load(&config).expect("config");
    let store = kvkeep::store::open_store(&loaded.store, &loaded.azure)
        .await
        .expect("store");
    assert!(store.list("doctor/").await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_backup_permission_is_named_with_what_to_grant() {
    let bed = Bed::start().await;
    bed.seed().await;
    let config = bed.config(None, &bed.vault_url);
    bed.fault("secrets.backup", FaultKind::Forbidden).await;

    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 3, "{:#?}", statuses(&report));
    assert_eq!(report["outcome"], "some_failed");
    let failed = row(&report, Some(VAULT), "backup secrets");
    assert_eq!(failed["status"], "fail", "{failed}");
    let fix = failed["fix"].as_str().expect("fix");
    assert!(
        fix.contains("lacks the `backup` permission on secrets")
            && fix.contains("access policy `backup`")
            && fix.contains("Microsoft.KeyVault/vaults/secrets/backup/action"),
        "{fix}"
    );
    // Everything else still works, and says so.
    for check in [
        "connect",
        "list secrets",
        "backup keys",
        "backup certificates",
    ] {
        assert_eq!(row(&report, Some(VAULT), check)["status"], "ok", "{check}");
    }
    assert_eq!(row(&report, None, "store")["status"], "ok");

    // The table names the permission too.
    let out = run_kvkeep(&config, &["doctor"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(
            "fail kv-doctor backup secrets: the identity lacks the `backup` permission on secrets"
        ),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_a_credential_problem_and_a_one_off_401_is_not() {
    let bed = Bed::start().await;
    bed.seed().await;
    let config = bed.config(None, &bed.vault_url);

    // One 401 to a request that carried a token (a revoked token, say): doctor asks once more,
    // passes, and warns that it happened.
    bed.token_mode(TokenMode::RejectOnce).await;
    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 0, "{:#?}", statuses(&report));
    let connect = row(&report, Some(VAULT), "connect");
    assert_eq!(connect["status"], "warn", "{connect}");
    assert!(
        connect["detail"]
            .as_str()
            .is_some_and(|d| d.contains("refused kvkeep's token once (401)")),
        "{connect}"
    );
    assert_eq!(row(&report, Some(VAULT), "backup secrets")["status"], "ok");

    // Every token refused (the emulator wants a JWT; kvkeep's token file holds none).
    bed.token_mode(TokenMode::Jwt).await;
    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 3, "{:#?}", statuses(&report));
    let connect = row(&report, Some(VAULT), "connect");
    assert_eq!(connect["status"], "fail");
    assert!(
        connect["fix"]
            .as_str()
            .is_some_and(|f| f.contains("did not accept kvkeep's token (401)")
                && f.contains("[azure] credential")),
        "{connect}"
    );
    // Nothing per kind is claimed for a vault kvkeep cannot authenticate to.
    assert!(
        !report.to_string().contains("\"list secrets\""),
        "{report:#}"
    );
    // The store does not depend on the vault's token.
    assert_eq!(row(&report, None, "store")["status"], "ok");

    // A challenge naming another domain's resource: kvkeep sends no token there at all.
    bed.emulator
        .control()
        .set_auth(&AuthSettings {
            challenge: ChallengeMode::Foreign,
            token: TokenMode::Any,
        })
        .await
        .expect("set auth");
    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 3, "{:#?}", statuses(&report));
    let connect = row(&report, Some(VAULT), "connect");
    assert!(
        connect["fix"]
            .as_str()
            .is_some_and(|f| f.contains("challenge names a resource")),
        "{connect}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_fails_with_what_to_check_and_nothing_reachable_exits_1() {
    let bed = Bed::start().await;
    bed.seed().await;
    let real = format!("{}/{CONTAINER}", bed.azurite.service_url());
    let dead_store = with_port(&real, closed_port());
    let config = bed.config(Some(&dead_store), &bed.vault_url);

    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 3, "{:#?}", statuses(&report));
    let store = row(&report, None, "store");
    assert_eq!(store["status"], "fail");
    assert!(
        store["fix"]
            .as_str()
            .is_some_and(|f| f.contains("[store] container_url")),
        "{store}"
    );
    assert_eq!(row(&report, Some(VAULT), "connect")["status"], "ok");

    // The vault unreachable too: nothing answers, exit 1, and the vault's row says why.
    let dead_vault = with_port(&bed.vault_url, closed_port());
    let config = bed.config(Some(&dead_store), &dead_vault);
    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 1, "{:#?}", statuses(&report));
    assert_eq!(report["outcome"], "nothing_reachable");
    let connect = row(&report, Some(VAULT), "connect");
    assert_eq!(connect["status"], "fail");
    assert!(
        connect["fix"]
            .as_str()
            .is_some_and(|f| f.contains("cannot connect to")),
        "{connect}"
    );
    assert_eq!(row(&report, Some(VAULT), "clock")["status"], "warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_before_anything_is_contacted() {
    let bed = Bed::start().await;
    let config = bed.config(None, &bed.vault_url);
    let out = run_kvkeep(&config, &["doctor", "--vault", "kv-nope"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configured vaults: kv-doctor"));

    // An identity file others can read is refused unread.
    let loose = config.with_file_name("loose.txt");
    std::fs::copy(config.with_file_name("identity.txt"), &loose).expect("copy");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let out = run_kvkeep(
        &config,
        &["doctor", "--identity", loose.to_str().expect("path")],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    assert_no_secrets(&config, &out);
    let counters = bed.emulator.control().counters().await.expect("counters");
    assert!(
        counters.vaults.get(VAULT).is_none_or(|ops| ops.is_empty()),
        "{counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_reported_as_a_tls_problem() {
    let bed = Bed::start().await;
    bed.seed().await;
    // Another emulator's CA: valid PEM, but not the one that signed the vault's and Azurite's
    // certificates.
    let other = Emulator::start(Default::default())
        .await
        .expect("other emulator");
    let config = bed.config_trusting(None, &bed.vault_url, &other.info().ca_cert);

    let (code, report, _) = doctor(&config, &[]).await;
    assert_eq!(code, 1, "{:#?}", statuses(&report));
    let connect = row(&report, Some(VAULT), "connect");
    assert!(
        connect["fix"]
            .as_str()
            .is_some_and(|f| f.contains("tls to kv-doctor.vault.localhost failed")
                && f.contains("[azure] ca_file")),
        "{connect}"
    );
    assert_eq!(row(&report, None, "store")["status"], "fail");
}

/// The backup probe only tries an object kvkeep would back up: a secret tagged
/// `kvkeep = "skip"` (the default skip tag) is never backed up by the doctor either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_probe_skips_objects_the_configuration_leaves_out() {
    let bed = Bed::start().await;
    bed.emulator
        .control()
        .seed(
            VAULT,
            &SeedSpec {
                kind: Collection::Secrets,
                prefix: "skipped-".into(),
                count: 1,
                versions: 1,
                tags: [("kvkeep".to_string(), "skip".to_string())].into(),
                value_bytes: 32,
            },
        )
        .await
        .expect("seed");
    let config = bed.config(None, &bed.vault_url);
    let (_, report, out) = doctor(&config, &[]).await;
    let probe = row(&report, Some(VAULT), "backup secrets");
    assert_eq!(
        probe["status"],
        "warn",
        "{probe}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        probe["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no object to try"),
        "{probe}"
    );
    let counters = bed.emulator.control().counters().await.expect("counters");
    let backups = counters
        .vaults
        .get(VAULT)
        .and_then(|c| c.get("secrets.backup"))
        .copied()
        .unwrap_or(0);
    assert_eq!(backups, 0, "the skip-tagged secret was backed up");
}
