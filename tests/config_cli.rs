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
