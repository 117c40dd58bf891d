//! Bad configuration through the real binary: each malformed file makes `kvkeep backup` (and
//! `kvkeep config check`) exit 2 with an error naming the key, and nothing is written — no store
//! directory, no index file.

use std::path::Path;
use std::process::Command;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// A valid configuration whose store and index live in `dir`.
fn good(dir: &Path) -> String {
    format!(
        r#"[store]
type = "local"
path = "{store}"

[encryption]
recipients = ["{RECIPIENT}"]

[index]
path = "{index}"

[[vault]]
name = "kv-prod"
url = "https://kv-prod.vault.localhost:8443"
"#,
        store = dir.join("store").display(),
        index = dir.join("index.sqlite").display(),
    )
}

/// What is wrong, how to break the good file, and text the error must contain.
type Case = (&'static str, Box<dyn Fn(String) -> String>, &'static str);

fn cases() -> Vec<Case> {
    vec![
        (
            "unknown key",
            Box::new(|c| c.replace("[store]\n", "[store]\nflavour = \"x\"\n")),
            "unknown field `flavour`",
        ),
        (
            "unknown section",
            Box::new(|c| format!("{c}\n[storage]\n")),
            "unknown field `storage`",
        ),
        (
            "not TOML",
            Box::new(|c| c.replace("[store]", "[store")),
            "line 1",
        ),
        (
            "bad store type",
            Box::new(|c| c.replace("type = \"local\"", "type = \"s3\"")),
            "store.type",
        ),
        (
            "bad container URL",
            Box::new(|c| {
                c.replace(
                    "type = \"local\"",
                    "type = \"azure\"\ncontainer_url = \"::nope\"",
                )
                .replace("path = ", "# path = ")
            }),
            "store.container_url",
        ),
        (
            "SAS in the URL",
            Box::new(|c| {
                c.replace("type = \"local\"", "type = \"azure\"\ncontainer_url = \"https://a.blob.core.windows.net/c?sig=abc\"").replace("path = ", "# path = ")
            }),
            "query string",
        ),
        (
            "bad vault URL",
            Box::new(|c| c.replace("https://kv-prod.vault.localhost:8443", "kv-prod")),
            "vault[0].url",
        ),
        (
            "http vault URL",
            Box::new(|c| c.replace("https://kv-prod", "http://kv-prod")),
            "https",
        ),
        (
            "bad vault name",
            Box::new(|c| c.replace("name = \"kv-prod\"", "name = \"kv_prod\"")),
            "vault[0].name",
        ),
        (
            "no vaults",
            Box::new(|c| {
                c.replace("[[vault]]\nname = \"kv-prod\"\nurl = \"https://kv-prod.vault.localhost:8443\"\n", "")
            }),
            "no vaults",
        ),
        (
            "missing recipients",
            Box::new(|c| {
                c.replace(
                    &format!("recipients = [\"{RECIPIENT}\"]"),
                    "recipients = []",
                )
            }),
            "no recipients",
        ),
        (
            "bad recipient",
            Box::new(|c| c.replace(RECIPIENT, "age1xyz")),
            "encryption.recipients[0]",
        ),
        (
            "unreadable recipient file",
            Box::new(|c| {
                c.replace(
                    &format!("recipients = [\"{RECIPIENT}\"]"),
                    "recipients_file = \"/nonexistent/recipients.txt\"",
                )
            }),
            "encryption.recipients_file",
        ),
        (
            "cron placeholder",
            Box::new(|c| format!("{c}schedule = \"{{{{CRON}}}}\"\n")),
            "vault[0].schedule",
        ),
        (
            "bad cron field",
            Box::new(|c| format!("{c}schedule = \"0 25 * * *\"\n")),
            "vault[0].schedule",
        ),
        (
            "bad time zone",
            Box::new(|c| format!("{c}schedule = \"@daily\"\ntimezone = \"Moon/Base\"\n")),
            "vault[0].timezone",
        ),
        (
            "bad kind",
            Box::new(|c| format!("{c}kinds = [\"blobs\"]\n")),
            "vault[0].kinds[0]",
        ),
        (
            "share above 1",
            Box::new(|c| format!("{c}\n[limits]\nvault_share = 2.0\n")),
            "limits.vault_share",
        ),
        (
            "zstd level out of range",
            Box::new(|c| {
                c.replace(
                    &format!("recipients = [\"{RECIPIENT}\"]"),
                    &format!("recipients = [\"{RECIPIENT}\"]\nzstd_level = 99"),
                )
            }),
            "encryption.zstd_level",
        ),
        (
            "unknown credential",
            Box::new(|c| format!("{c}\n[azure]\ncredential = \"password\"\n")),
            "azure.credential",
        ),
        (
            "token file missing",
            Box::new(|c| {
                format!("{c}\n[azure]\ncredential = \"token-file\"\ntoken_file = \"/nonexistent/token\"\n")
            }),
            "azure.token_file",
        ),
    ]
}

fn kvkeep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .env_remove("KVKEEP_CONFIG")
        .output()
        .expect("the kvkeep binary runs")
}

#[test]
fn the_good_file_is_accepted_so_the_cases_below_test_one_fault_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kvkeep.toml");
    std::fs::write(&path, good(dir.path())).expect("write");
    let out = kvkeep(&["config", "check", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_malformed_config_is_a_clear_error_with_exit_2_and_nothing_is_written() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for (what, edit, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kvkeep.toml");
        std::fs::write(&path, edit(good(dir.path()))).expect("write");
        let config = path.to_str().expect("utf-8");
        for args in [
            vec!["backup", "--config", config, "--all"],
            vec!["config", "check", "--config", config],
        ] {
            let out = kvkeep(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}: {args:?} exit code; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(expected),
                "{what}: {args:?} error should mention {expected:?}:\n{stderr}"
            );
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            assert!(
                !stderr.contains("sig=abc"),
                "{what}: a SAS signature leaked: {stderr}"
            );
        }
        let written: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "kvkeep.toml")
            .collect();
        assert!(
            written.is_empty(),
            "{what}: nothing may be written, found {written:?}"
        );
    }
}

/// `--config` works before the subcommand as well as after it, and `$KVKEEP_CONFIG` still
/// applies when it is absent. A file with one unknown key proves which file was read: the error
/// names it and exits 2 (the default `/etc/kvkeep/kvkeep.toml` does not exist here).
#[test]
fn config_is_accepted_before_or_after_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("marked.toml");
    std::fs::write(
        &path,
        good(dir.path()).replace("[store]\n", "[store]\nmarker_key = 1\n"),
    )
    .expect("write");
    let config = path.to_str().expect("utf-8");
    let commands: [&[&str]; 8] = [
        &["config", "check"],
        &["config", "show"],
        &["backup", "--all"],
        &["restore", "--vault", "kv-prod", "--dry-run"],
        &["verify"],
        &["list", "runs"],
        &[
            "list", "versions", "--vault", "kv-prod", "--kind", "secrets", "--name", "x",
        ],
        &["index", "rebuild"],
    ];
    for command in commands {
        let before: Vec<&str> = ["--config", config]
            .iter()
            .chain(command)
            .copied()
            .collect();
        let after: Vec<&str> = command
            .iter()
            .chain(&["--config", config])
            .copied()
            .collect();
        let short: Vec<&str> = ["-c", config].iter().chain(command).copied().collect();
        for args in [before, after, short] {
            let out = kvkeep(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains("marked.toml") && stderr.contains("marker_key"),
                "{args:?} should read the given file: {stderr}"
            );
        }
        let out = Command::new(env!("CARGO_BIN_EXE_kvkeep"))
            .args(command)
            .env("KVKEEP_CONFIG", config)
            .output()
            .expect("the kvkeep binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("marked.toml") && stderr.contains("marker_key"),
            "{command:?} with $KVKEEP_CONFIG: {stderr}"
        );
    }
    // Without either, the documented default is used.
    let out = kvkeep(&["config", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/etc/kvkeep/kvkeep.toml"), "{stderr}");
}

/// A value that must never appear in an error.
const CANARY: &str = "CANARY";
/// A private key pasted where it does not belong.
const PASTED_KEY: &str =
    "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY";
/// A SAS URL pasted where it does not belong.
const PASTED_SAS: &str =
    "https://acct.blob.core.windows.net/c?sv=2022-11-02&sp=rwl&sig=CANARY%2Bsig%3D";

/// The good file turned into an Azure store with `extra` lines in `[store]`.
fn azure_store(c: &str, extra: &str) -> String {
    c.replace(
        "type = \"local\"",
        &format!(
            "type = \"azure\"\ncontainer_url = \"https://a.blob.core.windows.net/c\"\n{extra}"
        ),
    )
    .replace("path = \"/", "# path = \"/")
}

/// The good file with `[azure]` holding `lines`.
fn azure_section(c: &str, lines: &str) -> String {
    format!("{c}\n[azure]\n{lines}\n")
}

/// A canary in every key that can hold a secret and in each kind of type error: the error names
/// the key path and line, and never the value (nor a path that is a pasted value).
#[test]
fn errors_name_key_and_line_but_never_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk_pem = dir.path().join("CANARY.pem");
    std::fs::write(&junk_pem, "not a certificate").expect("write");
    let bad_recipients = dir.path().join("recipients-CANARY.txt");
    std::fs::write(&bad_recipients, format!("{PASTED_KEY}\nCANARYage1zzz\n")).expect("write");
    let junk_pem = junk_pem.display().to_string();
    let bad_recipients = bad_recipients.display().to_string();
    let r = format!("recipients = [\"{RECIPIENT}\"]");
    let cases: Vec<(&str, String)> = vec![
        // type errors
        ("encryption.recipients", good(dir.path()).replace(&r, &format!("recipients = \"{PASTED_KEY}\""))),
        ("encryption.zstd_level", good(dir.path()).replace(&r, &format!("{r}\nzstd_level = \"{PASTED_KEY}\""))),
        ("limits.vault_share", format!("{}\n[limits]\nvault_share = \"{CANARY}\"\n", good(dir.path()))),
        ("limits.concurrency", format!("{}\n[limits]\nconcurrency = [\"{CANARY}\"]\n", good(dir.path()))),
        ("azure.verify_challenge_resource", azure_section(&good(dir.path()), &format!("verify_challenge_resource = \"{CANARY}\""))),
        ("azure.resolve", azure_section(&good(dir.path()), &format!("resolve = \"{PASTED_SAS}\""))),
        ("vault[0].kinds", format!("{}kinds = \"{CANARY}\"\n", good(dir.path()))),
        ("vault[0].skip_tags", format!("{}skip_tags = \"{CANARY}\"\n", good(dir.path()))),
        ("vault[0].skip_tags.kvkeep", format!("{}skip_tags = {{ kvkeep = [\"{CANARY}\"] }}\n", good(dir.path()))),
        // a secret pasted as a key
        ("store.<key not shown>", good(dir.path()).replace("[store]\n", &format!("[store]\n{PASTED_KEY} = 1\n"))),
        // secret-bearing keys
        ("encryption.recipients[0]", good(dir.path()).replace(RECIPIENT, PASTED_KEY)),
        ("encryption.recipients_file", good(dir.path()).replace(&r, &format!("recipients_file = \"{PASTED_KEY}\""))),
        ("encryption.recipients_file", good(dir.path()).replace(&r, &format!("recipients_file = \"{bad_recipients}\""))),
        ("store.sas_url_file", azure_store(&good(dir.path()), &format!("auth = \"sas\"\nsas_url_file = \"{PASTED_SAS}\""))),
        ("store.container_url", azure_store(&good(dir.path()), "").replace("https://a.blob.core.windows.net/c", PASTED_SAS)),
        ("azure.client_secret_file", azure_section(&good(dir.path()), &format!("credential = \"client-secret\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"x~{CANARY}.Q8Q~secretvalue\""))),
        ("azure.token_file", azure_section(&good(dir.path()), &format!("credential = \"token-file\"\ntoken_file = \"eyJ0eXAi.{CANARY}.sig\""))),
        ("azure.ca_file", azure_section(&good(dir.path()), &format!("ca_file = \"{PASTED_KEY}\""))),
        ("azure.ca_file", azure_section(&good(dir.path()), &format!("ca_file = \"{junk_pem}\""))),
        // every other key that takes a string
        ("store.type", good(dir.path()).replace("type = \"local\"", &format!("type = \"{CANARY}\""))),
        ("store.auth", azure_store(&good(dir.path()), &format!("auth = \"{CANARY}\""))),
        ("store.access_tier", azure_store(&good(dir.path()), &format!("access_tier = \"{CANARY}\""))),
        ("store.prefix", good(dir.path()).replace("[store]\n", &format!("[store]\nprefix = \"/{CANARY}\"\n"))),
        ("azure.credential", azure_section(&good(dir.path()), &format!("credential = \"{PASTED_KEY}\""))),
        ("azure.ca_scope", azure_section(&good(dir.path()), &format!("ca_scope = \"{CANARY}\""))),
        ("azure.resolve.kv.localhost", azure_section(&good(dir.path()), &format!("resolve = {{ \"kv.localhost\" = \"{CANARY}\" }}"))),
        ("vault[0].name", good(dir.path()).replace("name = \"kv-prod\"", &format!("name = \"{PASTED_KEY}\""))),
        ("vault[0].url", good(dir.path()).replace("https://kv-prod.vault.localhost:8443", PASTED_SAS)),
        ("vault[0].schedule", format!("{}schedule = \"{PASTED_KEY}\"\n", good(dir.path()))),
        ("vault[0].timezone", format!("{}schedule = \"@daily\"\ntimezone = \"{CANARY}\"\n", good(dir.path()))),
        ("vault[0].kinds[0]", format!("{}kinds = [\"{CANARY}\"]\n", good(dir.path()))),
        ("vault[0].include[0]", format!("{}include = [\"{CANARY}[\"]\n", good(dir.path()))),
        ("vault[0].payload", format!("{}payload = \"{CANARY}\"\n", good(dir.path()))),
        ("vault[0].deep_scan_every", format!("{}deep_scan_every = \"{CANARY}\"\n", good(dir.path()))),
        ("vault[0].deep_scan_every", format!("{}deep_scan_every = \"7{CANARY}\"\n", good(dir.path()))),
        // not TOML at all: a SAS URL pasted on a line of its own
        ("", good(dir.path()).replace("[index]\n", &format!("[index]\n{PASTED_SAS}\n"))),
    ];
    for (key, text) in cases {
        let path = dir.path().join("kvkeep.toml");
        std::fs::write(&path, &text).expect("write");
        let config = path.to_str().expect("utf-8");
        for args in [
            vec!["config", "check", "--config", config],
            vec!["backup", "--all", "--config", config],
        ] {
            let out = kvkeep(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{key}: {args:?}: {stderr}\n{text}"
            );
            let named = if key.is_empty() {
                stderr.contains("line ")
            } else {
                stderr.contains(&format!("{key} (line "))
            };
            assert!(
                named,
                "{key}: the error should name the key and line:\n{stderr}"
            );
            assert!(
                !stderr.to_lowercase().contains("canary"),
                "{key}: the value leaked:\n{stderr}"
            );
        }
    }
}

/// Out-of-range numbers and durations are refused with the key, not accepted to overflow or
/// starve later.
#[test]
fn shares_and_durations_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "limits.vault_share",
            format!("{}\n[limits]\nvault_share = 0.0001\n", good(dir.path())),
            "between 0.001 and 1",
        ),
        (
            "limits.subscription_share",
            format!(
                "{}\n[limits]\nsubscription_share = 1e-9\n",
                good(dir.path())
            ),
            "between 0.001 and 1",
        ),
        (
            "vault[0].deep_scan_every",
            format!("{}deep_scan_every = \"999999999999y\"\n", good(dir.path())),
            "at most 366d",
        ),
        (
            "vault[0].deep_scan_every",
            format!("{}deep_scan_every = \"50000d\"\n", good(dir.path())),
            "at most 366d",
        ),
        (
            "defaults.deep_scan_every",
            format!(
                "{}\n[defaults]\ndeep_scan_every = \"99999999999999999999s\"\n",
                good(dir.path())
            ),
            "at most 366d",
        ),
    ];
    for (key, text, phrase) in cases {
        let path = dir.path().join("kvkeep.toml");
        std::fs::write(&path, &text).expect("write");
        let out = kvkeep(&["config", "check", "--config", path.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(phrase),
            "{key}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{key}: {stderr}");
    }

    let path = dir.path().join("kvkeep.toml");
    std::fs::write(&path, good(dir.path())).expect("write");
    let config = path.to_str().expect("utf-8");
    for wait in ["99999999999999d", "2h"] {
        let out = kvkeep(&[
            "restore",
            "--vault",
            "kv-prod",
            "--dry-run",
            "--purge-wait",
            wait,
            "--config",
            config,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{wait}: {stderr}");
        assert!(
            stderr.contains("--purge-wait") && stderr.contains("at most 1h"),
            "{wait}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{wait}: {stderr}");
    }
}

/// An identity pasted as the `--identity` argument is not printed back by the commands that
/// read one.
#[test]
fn a_pasted_identity_argument_is_not_echoed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kvkeep.toml");
    std::fs::write(&path, good(dir.path())).expect("write");
    let config = path.to_str().expect("utf-8");
    let commands: [&[&str]; 3] = [
        &["restore", "--vault", "kv-prod", "--identity", PASTED_KEY],
        &["index", "rebuild", "--identity", PASTED_KEY],
        &["verify", "--deep", "--identity", PASTED_KEY],
    ];
    for command in commands {
        let args: Vec<&str> = command
            .iter()
            .chain(&["--config", config])
            .copied()
            .collect();
        let out = kvkeep(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("--identity"), "{command:?}: {stderr}");
        assert!(
            !stderr.contains(CANARY),
            "{command:?} echoed the identity: {stderr}"
        );
    }
}
