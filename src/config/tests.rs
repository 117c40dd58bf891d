//! Table tests of configuration validation: every malformed file gets a clear error at the right
//! key path and line, and a good file yields the expected typed values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// Parses `text` with an in-memory file system holding `files`.
fn parse_with(text: &str, files: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let files: HashMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (Path::new("/etc/kvkeep").join(p), t.to_string()))
        .collect();
    Config::parse(
        text,
        "kvkeep.toml",
        Path::new("/etc/kvkeep"),
        &|p: &Path| {
            files.get(p).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
            })
        },
    )
}

fn minimal() -> String {
    format!(
        r#"
[store]
type = "local"
path = "/var/lib/kvkeep/store"

[encryption]
recipients = ["{RECIPIENT}"]

[[vault]]
name = "kv-prod"
"#
    )
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match parse_with(text, &[]) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors,
    }
}

#[test]
fn minimal_file_gets_sensible_defaults() {
    let c = parse_with(&minimal(), &[]).expect("valid");
    assert!(
        matches!(c.store, StoreConfig::Local { ref path, .. } if path == Path::new("/var/lib/kvkeep/store"))
    );
    assert_eq!(c.encryption.recipients, vec![RECIPIENT.to_string()]);
    assert_eq!(c.encryption.zstd_level, 9);
    assert_eq!(c.index_path, PathBuf::from("/var/lib/kvkeep/index.sqlite"));
    assert!(matches!(c.azure.credential, CredentialConfig::Default));
    assert!(c.azure.verify_challenge_resource);
    assert_eq!(c.limits.vault_share, 0.1);
    assert_eq!(c.limits.concurrency, 4);
    let v = &c.vaults[0];
    assert_eq!(v.url, "https://kv-prod.vault.azure.net");
    assert_eq!(v.kinds.len(), 3);
    assert_eq!(v.skip_tags.get("kvkeep").map(String::as_str), Some("skip"));
    assert_eq!(v.payload, PayloadMode::Native);
    assert!(v.schedule.is_none());
}

#[test]
fn vault_settings_override_defaults_key_by_key() {
    let text = format!(
        "{}\n[defaults]\nschedule = \"@daily\"\ntimezone = \"Europe/Berlin\"\nkinds = [\"secrets\"]\n\n[[vault]]\nname = \"kv-other\"\nkinds = [\"keys\", \"certificates\"]\n",
        minimal()
    );
    let c = parse_with(&text, &[]).expect("valid");
    let a = &c.vaults[0];
    let b = &c.vaults[1];
    assert_eq!(
        a.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["secrets"]
    );
    assert_eq!(
        b.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["keys", "certificates"]
    );
    let s = b.schedule.as_ref().expect("inherited schedule");
    assert_eq!(s.time_zone(), "Europe/Berlin");
    assert_eq!(s.expr(), "@daily");
}

#[test]
fn relative_files_resolve_against_the_config_directory() {
    let text = minimal().replace(
        &format!("recipients = [\"{RECIPIENT}\"]"),
        "recipients_file = \"recipients.txt\"",
    );
    let c = parse_with(
        &text,
        &[("recipients.txt", &format!("# ops team\n{RECIPIENT}\n\n"))],
    )
    .expect("valid");
    assert_eq!(c.encryption.recipients, vec![RECIPIENT.to_string()]);
}

/// Each malformed file, the key path the error must name, and a phrase it must contain.
#[test]
fn malformed_files_each_get_a_clear_error() {
    let m = minimal();
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{m}\n[store2]\n"), "store2", "unknown field"),
        (m.replace("type = \"local\"", "type = \"local\"\ncolour = \"blue\""), "store.colour", "unknown field `colour`"),
        (m.replace("type = \"local\"", "type = \"s3\""), "store.type", "expected \"local\" or \"azure\""),
        (m.replace("path = \"/var/lib/kvkeep/store\"", ""), "store.path", "missing"),
        (m.replace("type = \"local\"\npath = \"/var/lib/kvkeep/store\"", "type = \"azure\"\ncontainer_url = \"not a url\""), "store.container_url", "not a URL"),
        (m.replace("type = \"local\"\npath = \"/var/lib/kvkeep/store\"", "type = \"azure\"\ncontainer_url = \"http://acct.blob.core.windows.net/c\""), "store.container_url", "https"),
        (m.replace("type = \"local\"\npath = \"/var/lib/kvkeep/store\"", "type = \"azure\"\ncontainer_url = \"https://acct.blob.core.windows.net/c?sv=2020&sig=SECRETSIG\""), "store.container_url", "query string"),
        (m.replace("type = \"local\"\npath = \"/var/lib/kvkeep/store\"", "type = \"azure\"\ncontainer_url = \"https://acct.blob.core.windows.net/c\"\nauth = \"sas\""), "store.sas_url_file", "missing"),
        (m.replace("type = \"local\"\npath = \"/var/lib/kvkeep/store\"", "type = \"azure\"\ncontainer_url = \"https://acct.blob.core.windows.net/c\"\nauth = \"sas\"\nsas_url_file = \"/run/missing\""), "store.sas_url_file", "cannot be read"),
        (m.replace(&format!("recipients = [\"{RECIPIENT}\"]"), "recipients = []"), "encryption.recipients", "no recipients"),
        (m.replace(&format!("recipients = [\"{RECIPIENT}\"]"), "recipients = [\"age1nope\"]"), "encryption.recipients[0]", "not an age"),
        (m.replace(&format!("recipients = [\"{RECIPIENT}\"]"), "recipients_file = \"nowhere.txt\""), "encryption.recipients_file", "cannot be read"),
        (m.replace(&format!("recipients = [\"{RECIPIENT}\"]"), &format!("recipients = [\"{RECIPIENT}\"]\nzstd_level = 40")), "encryption.zstd_level", "between 1 and 22"),
        (m.replace("[encryption]", "[encryption_]"), "encryption_", "unknown field"),
        (m.replace("name = \"kv-prod\"", "name = \"kv_prod!\""), "vault[0].name", "invalid vault name"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nurl = \"https://kv-prod.vault.azure.net/some/path\""), "vault[0].url", "without a path"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nurl = \"kv-prod.vault.azure.net\""), "vault[0].url", "not a URL"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nschedule = \"{{SCHEDULE}}\""), "vault[0].schedule", "5 fields"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nschedule = \"61 * * * *\""), "vault[0].schedule", "invalid cron"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nschedule = \"@daily\"\ntimezone = \"Mars/Olympus\""), "vault[0].timezone", "unknown time zone"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nkinds = [\"blobs\"]"), "vault[0].kinds[0]", "unknown object kind"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\ninclude = [\"db-[\"]"), "vault[0].include[0]", "invalid glob"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\npayload = \"yaml\""), "vault[0].payload", "unknown payload"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\ndeep_scan_every = \"often\""), "vault[0].deep_scan_every", "not a duration"),
        (format!("{m}\n[[vault]]\nname = \"KV-PROD\"\n"), "vault[1].name", "listed twice"),
        (m.replace("[[vault]]\nname = \"kv-prod\"", ""), "vault", "no vaults"),
        (format!("{m}\n[limits]\nvault_share = 1.5\n"), "limits.vault_share", "between 0.001 and 1"),
        (format!("{m}\n[limits]\nvault_share = 0.0009\n"), "limits.vault_share", "between 0.001 and 1"),
        (format!("{m}\n[limits]\nsubscription_share = 0.0\n"), "limits.subscription_share", "between 0.001 and 1"),
        (format!("{m}\n[limits]\nsubscription_share = nan\n"), "limits.subscription_share", "between 0.001 and 1"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\ndeep_scan_every = \"999999999999y\""), "vault[0].deep_scan_every", "at most 366d"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\ndeep_scan_every = \"30m\""), "vault[0].deep_scan_every", "at least 1h"),
        (m.replace("name = \"kv-prod\"", "name = \"kv-prod\"\nschedule = \"0 0 * * 5-3\""), "vault[0].schedule", "\"0 0 * * 5-3\": day of week"),
        (format!("{m}\n[limits]\nconcurrency = 0\n"), "limits.concurrency", "between 1 and 64"),
        (format!("{m}\n[azure]\ncredential = \"magic\"\n"), "azure.credential", "unknown credential"),
        (format!("{m}\n[azure]\ncredential = \"client-secret\"\ntenant_id = \"t\"\n"), "azure.client_id", "missing"),
        (format!("{m}\n[azure]\ncredential = \"token-file\"\n"), "azure.token_file", "missing"),
        (format!("{m}\n[azure]\nca_file = \"/nope/ca.pem\"\n"), "azure.ca_file", "cannot be read"),
        (format!("{m}\n[azure]\nresolve = {{ \"kv1.vault.localhost\" = \"localhost\" }}\n"), "azure.resolve.kv1.vault.localhost", "not an IP address"),
        ("[store\n".to_string(), "", "line"),
    ];
    assert!(cases.len() >= 15);
    for (text, path, phrase) in cases {
        let errors = errors_of(&text);
        let rendered = ConfigErrors {
            file: "kvkeep.toml".into(),
            errors: errors.clone(),
        }
        .to_string();
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.to_string().contains(phrase)),
            "expected an error at {path:?} containing {phrase:?}; got:\n{rendered}\nfor:\n{text}"
        );
        assert!(
            !rendered.contains("SECRETSIG"),
            "a SAS signature leaked into: {rendered}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once_with_lines() {
    let text = "[store]\ntype = \"s3\"\n\n[encryption]\nrecipients = [\"age1bad\"]\nzstd_level = 0\n\n[[vault]]\nname = \"x\"\n";
    let errors = errors_of(text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "store.type",
            "encryption.recipients[0]",
            "encryption.zstd_level",
            "vault[0].name"
        ]
    );
    assert_eq!(errors[0].line, Some(2));
    assert_eq!(errors[3].line, Some(9));
}

#[test]
fn a_pasted_private_key_is_refused_and_never_echoed() {
    let canary =
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY";
    let text = minimal().replace(RECIPIENT, canary);
    let err = parse_with(&text, &[]).expect_err("refused").to_string();
    assert!(err.contains("private key"), "{err}");
    assert!(
        !err.contains("CANARY") && !err.contains("SECRET-KEY-1"),
        "{err}"
    );
}

#[test]
fn the_shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kvkeep.example.toml");
    let c = Config::load(&path).expect("config/kvkeep.example.toml is valid");
    assert_eq!(c.vaults.len(), 1);
    assert_eq!(c.vaults[0].name.as_str(), "kv-prod-weu");
    assert!(c.vaults[0].schedule.is_some());
    assert_eq!(c.daemon.instance, None, "the host name unless set");

    // `[daemon] instance` is listed commented out (a copied file must not give every host the
    // same name); uncommented, it is valid.
    let example = std::fs::read_to_string(&path).expect("the shipped example");
    let text = example.replace("\n# instance = ", "\ninstance = ");
    assert_ne!(text, example, "the example lists [daemon] instance");
    let base = path.parent().expect("config/");
    let c = Config::parse(&text, "kvkeep.example.toml", base, &|p| {
        std::fs::read_to_string(p)
    })
    .expect("valid with the instance set");
    assert_eq!(c.daemon.instance.as_deref(), Some("backup-1"));
}

#[test]
fn ca_scope_defaults_to_the_services_and_can_widen_to_all() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let files = [("ca.pem", pem)];
    let with = |lines: &str| format!("{}\n[azure]\nca_file = \"ca.pem\"\n{lines}\n", minimal());
    let c = parse_with(&with(""), &files).expect("valid");
    assert_eq!(c.azure.ca_scope, CaScope::Services);
    let c = parse_with(&with("ca_scope = \"services\""), &files).expect("valid");
    assert_eq!(c.azure.ca_scope, CaScope::Services);
    let c = parse_with(&with("ca_scope = \"all\""), &files).expect("valid");
    assert_eq!(c.azure.ca_scope, CaScope::All);
    let shown = serde_json::to_value(&c).expect("json");
    assert_eq!(shown["azure"]["ca_scope"], "all");

    let err = parse_with(&with("ca_scope = \"everything\""), &files).expect_err("unknown");
    assert!(
        err.errors.iter().any(|e| e.path == "azure.ca_scope"
            && e.line == Some(14)
            && e.message.contains("\"services\"")),
        "{err}"
    );
    let err = parse_with(
        &format!("{}\n[azure]\nca_scope = \"all\"\n", minimal()),
        &[],
    )
    .expect_err("scope without a file");
    assert!(err.to_string().contains("only used with ca_file"), "{err}");
}

#[test]
fn a_type_error_names_the_key_and_line_not_the_value() {
    let canary =
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY";
    let text = minimal().replace(&format!("[\"{RECIPIENT}\"]"), &format!("\"{canary}\""));
    let err = parse_with(&text, &[]).expect_err("a string is not a list");
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = &err.errors[0];
    assert_eq!(e.path, "encryption.recipients");
    assert_eq!(e.line, Some(7));
    assert_eq!(e.message, "wrong type: expected an array, found a string");
}

#[test]
fn scheduling_keys_default_and_override_one_key_at_a_time() {
    let c = parse_with(&minimal(), &[]).expect("valid");
    let v = &c.vaults[0];
    assert_eq!(v.jitter, std::time::Duration::ZERO);
    assert!(!v.paused);
    assert_eq!(
        v.verify_schedule.as_ref().map(|s| s.expr()),
        Some("@weekly")
    );
    let text = format!(
        "{}\n[defaults]\njitter = \"10m\"\npaused = true\nverify_schedule = \"0 4 * * 0\"\ntimezone = \"Europe/Berlin\"\n\n[[vault]]\nname = \"kv-b\"\npaused = false\n\n[[vault]]\nname = \"kv-c\"\njitter = \"0s\"\nverify_schedule = \"\"\n",
        minimal()
    );
    let c = parse_with(&text, &[]).expect("valid");
    let [a, b, cc] = [&c.vaults[0], &c.vaults[1], &c.vaults[2]];
    assert_eq!(a.jitter, std::time::Duration::from_secs(600));
    assert!(a.paused);
    let verify = a
        .verify_schedule
        .as_ref()
        .expect("inherited verify schedule");
    assert_eq!(
        (verify.expr(), verify.time_zone()),
        ("0 4 * * 0", "Europe/Berlin")
    );
    assert_eq!(b.jitter, std::time::Duration::from_secs(600));
    assert!(!b.paused, "a vault's own paused = false wins");
    assert!(b.verify_schedule.is_some());
    assert_eq!(cc.jitter, std::time::Duration::ZERO);
    assert!(cc.paused);
    assert!(cc.verify_schedule.is_none(), "\"\" turns quick verify off");
}

#[test]
fn bad_scheduling_keys_name_key_and_line_and_never_echo_the_value() {
    let m = minimal();
    let with = |extra: &str| {
        m.replace(
            "name = \"kv-prod\"",
            &format!("name = \"kv-prod\"\n{extra}"),
        )
    };
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            with("jitter = \"SECRETSAUCE\""),
            "vault[0].jitter",
            "not a duration",
            "SECRETSAUCE",
        ),
        (
            with("jitter = \"2d\""),
            "vault[0].jitter",
            "at most 1d",
            "2d",
        ),
        (
            with("schedule = \"@every 250ms\""),
            "vault[0].schedule",
            "at least 1s",
            "250ms",
        ),
        (
            with("schedule = \"@every SECRETSAUCE\""),
            "vault[0].schedule",
            "not a duration",
            "SECRETSAUCE",
        ),
        (
            with("verify_schedule = \"SECRETSAUCE\""),
            "vault[0].verify_schedule",
            "5 fields",
            "SECRETSAUCE",
        ),
        (
            with("verify_schedule = \"0 0 30 2 *\""),
            "vault[0].verify_schedule",
            "never fires",
            "@@",
        ),
        (with("paused = \"yes\""), "", "paused", "yes"),
        (
            with("rpo = \"SECRETSAUCE\""),
            "vault[0].rpo",
            "not a duration",
            "SECRETSAUCE",
        ),
        (with("rpo = \"30s\""), "vault[0].rpo", "at least 1m", "30s"),
        (
            format!("{m}\n[defaults]\njitter = \"-5m\"\n"),
            "defaults.jitter",
            "not a duration",
            "-5m",
        ),
    ];
    for (text, path, phrase, secret) in cases {
        let errors = errors_of(&text);
        let rendered = ConfigErrors {
            file: "kvkeep.toml".into(),
            errors: errors.clone(),
        }
        .to_string();
        let hit = errors
            .iter()
            .find(|e| (path.is_empty() || e.path == path) && e.to_string().contains(phrase));
        assert!(
            hit.is_some(),
            "expected {path:?} with {phrase:?}; got:\n{rendered}"
        );
        assert!(hit.is_some_and(|e| e.line.is_some()), "no line: {rendered}");
        assert!(!rendered.contains(secret), "{secret} echoed: {rendered}");
    }
}

#[test]
fn rpo_is_unset_by_default_and_a_vault_overrides_the_default() {
    let c = parse_with(&minimal(), &[]).expect("valid");
    assert_eq!(c.vaults[0].rpo, None);
    let text = format!(
        "{}\n[defaults]\nrpo = \"26h\"\n\n[[vault]]\nname = \"kv-tight\"\nrpo = \"2h\"\n",
        minimal()
    );
    let c = parse_with(&text, &[]).expect("valid");
    assert_eq!(
        c.vaults[0].rpo,
        Some(std::time::Duration::from_secs(26 * 3_600))
    );
    assert_eq!(
        c.vaults[1].rpo,
        Some(std::time::Duration::from_secs(2 * 3_600))
    );
    // `config show` prints it as written, so the output can be pasted back.
    let shown = serde_json::to_value(&c).expect("json");
    assert_eq!(shown["vaults"][1]["rpo"], "2h");
}

const CATALOG: &str = "age1t0ttjgz4hh7al52u9k7j570k70m5wswz8dlakvvrg39an4d5mvkq2lv0d7";

#[test]
fn the_catalog_recipient_and_identity_file_are_optional_and_validated() {
    let c = parse_with(&minimal(), &[]).expect("valid");
    assert_eq!(c.encryption.catalog_recipient, None);
    assert_eq!(c.encryption.catalog_identity_file, None);

    let with = |lines: &str| minimal().replace("[[vault]]", &format!("{lines}\n\n[[vault]]"));
    let c = parse_with(
        &with(&format!(
            "catalog_recipient = \"{CATALOG}\"\ncatalog_identity_file = \"catalog.txt\""
        )),
        &[],
    )
    .expect("valid");
    assert_eq!(c.encryption.catalog_recipient.as_deref(), Some(CATALOG));
    assert_eq!(
        c.encryption.catalog_identity_file,
        Some(PathBuf::from("/etc/kvkeep/catalog.txt"))
    );

    // The same key as a recovery recipient: the catalog identity would open every backup.
    let err = parse_with(&with(&format!("catalog_recipient = \"{RECIPIENT}\"")), &[])
        .expect_err("same as a recipient");
    let e = &err.errors[0];
    assert_eq!(
        (e.path.as_str(), e.line),
        ("encryption.catalog_recipient", Some(9))
    );
    assert!(e.message.contains("would open every backup"), "{err}");
    assert!(e.message.contains("keys generate --catalog"), "{err}");

    // A private key pasted as the catalog recipient is refused and never echoed.
    let canary = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY";
    let err = parse_with(&with(&format!("catalog_recipient = \"{canary}\"")), &[])
        .expect_err("a private key")
        .to_string();
    assert!(err.contains("encryption.catalog_recipient") && err.contains("private key"));
    assert!(!err.contains("CANARY"), "{err}");
    let err = parse_with(&with("catalog_recipient = \"age1nope\""), &[]).expect_err("bad");
    assert_eq!(err.errors[0].path, "encryption.catalog_recipient");

    // An identity file without its recipient: nothing would be sealed to it.
    let err = parse_with(&with("catalog_identity_file = \"catalog.txt\""), &[])
        .expect_err("no recipient");
    assert_eq!(err.errors[0].path, "encryption.catalog_identity_file");
    assert!(
        err.to_string().contains("without catalog_recipient"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn loading_checks_the_catalog_identity_file_is_private_and_matches_the_recipient() {
    use crate::crypto::{write_identity_file, Identity, KeyRole};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("catalog.txt");
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    write_identity_file(&key_path, &catalog, "now", false).expect("write");
    let config_path = dir.path().join("kvkeep.toml");
    let load = |recipient: &str| {
        let text = minimal().replace(
            "[[vault]]",
            &format!(
                "catalog_recipient = \"{recipient}\"\ncatalog_identity_file = \"catalog.txt\"\n\n[[vault]]"
            ),
        );
        std::fs::write(&config_path, text).expect("write config");
        Config::load(&config_path)
    };
    let c = load(&catalog.recipient()).expect("matching key loads");
    assert_eq!(c.encryption.catalog_identity_file, Some(key_path.clone()));
    let shown = serde_json::to_string(&c).expect("json");
    assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");

    let err = load(CATALOG).expect_err("another key").to_string();
    assert!(err.contains("encryption.catalog_identity_file"), "{err}");
    assert!(
        err.contains("not of the configured catalog_recipient"),
        "{err}"
    );
    assert!(!err.contains("AGE-SECRET-KEY"), "{err}");

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = load(&catalog.recipient()).expect_err("loose").to_string();
    assert!(
        err.contains(&format!("chmod 600 {}", key_path.display())),
        "{err}"
    );

    // A credential present only while the service runs is checked when the daemon reads it.
    std::fs::remove_file(&key_path).expect("rm");
    load(&catalog.recipient()).expect("a missing file is not a configuration error");
}
