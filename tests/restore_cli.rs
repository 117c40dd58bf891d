//! `kvkeep restore`, `verify` and `index rebuild` through the real binary, for the mistakes an
//! operator makes before any vault is touched: each is refused with its exit code and a message
//! that says what to do.

use std::process::{Command, Output};

const CONFIG: &str = r#"
[store]
type = "local"
path = "store"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[index]
path = "index.sqlite"

[[vault]]
name = "kv-prod"
"#;

fn kvkeep(dir: &std::path::Path, args: &[&str]) -> Output {
    let config = dir.join("kvkeep.toml");
    std::fs::write(&config, CONFIG).expect("config");
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("KVKEEP_CONFIG")
        .output()
        .expect("run kvkeep")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn usage_mistakes_exit_two_with_what_to_write() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "restore",
                "--vault",
                "kv-prod",
                "--at",
                "yesterday",
                "--dry-run",
            ],
            "\"2h ago\"",
        ),
        (
            &[
                "restore",
                "--vault",
                "kv-prod",
                "--on-conflict",
                "overwrite",
            ],
            "purge-then-restore",
        ),
        (
            &[
                "restore",
                "--vault",
                "kv-prod",
                "--only",
                "secret-db",
                "--dry-run",
            ],
            "KIND/NAME",
        ),
        (&["restore", "--vault", "kv-prod"], "needs --identity FILE"),
        (
            &[
                "restore",
                "--vault",
                "kv-prod",
                "--to-vault",
                "kv-nope",
                "--dry-run",
            ],
            "not a configured vault",
        ),
        (
            &["restore", "--vault", "kv-gone", "--dry-run"],
            "needs --to-vault",
        ),
        (
            &[
                "restore",
                "--vault",
                "kv-prod",
                "--identity",
                "/nonexistent/identity.txt",
            ],
            // The path is not repeated (it may be an identity pasted as the argument).
            "cannot read identity file given with --identity",
        ),
        (&["index", "rebuild"], "needs --identity FILE"),
        (&["verify", "--deep"], "needs --identity FILE"),
    ];
    for (args, hint) in cases {
        let out = kvkeep(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(hint), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_missing_index_is_not_created_and_points_to_rebuild() {
    let dir = tempfile::tempdir().expect("dir");
    let out = kvkeep(dir.path(), &["restore", "--vault", "kv-prod", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kvkeep index rebuild --identity FILE"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("index.sqlite").exists(),
        "no empty index left behind"
    );
    let out = kvkeep(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn rebuild_of_an_empty_store_gives_an_empty_index() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("store")).expect("store dir");
    let identity = dir.path().join("identity.txt");
    kvkeep::crypto::write_identity_file(
        &identity,
        &kvkeep::crypto::Identity::generate(),
        "2026-01-01T00:00:00Z",
        false,
    )
    .expect("identity");
    let out = kvkeep(
        dir.path(),
        &[
            "index",
            "rebuild",
            "--identity",
            &identity.display().to_string(),
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["rebuild"]["manifests"], 0);
    assert!(dir.path().join("index.sqlite").exists());
    // With an index but no backups, a restore has nothing to restore and says so.
    let out = kvkeep(dir.path(), &["restore", "--vault", "kv-prod", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no restore point"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_drill_refuses_the_source_vault_as_scratch_however_it_is_spelled() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let config = d.join("drill.toml");
    std::fs::write(
        &config,
        format!(
            "{CONFIG}url = \"https://kv-prod.vault.azure.net\"\n\n[[vault]]\nname = \"kv-alias\"\nurl = \"https://KV-PROD.vault.azure.net/\"\n\n[[vault]]\nname = \"kv-dr\"\nurl = \"https://kv-dr.vault.azure.net\"\n"
        ),
    )
    .expect("config");
    let identity = d.join("identity.txt");
    kvkeep::crypto::write_identity_file(
        &identity,
        &kvkeep::crypto::Identity::generate(),
        "2026-01-01T00:00:00Z",
        false,
    )
    .expect("identity");
    let drill = |scratch: &str| {
        Command::new(env!("CARGO_BIN_EXE_kvkeep"))
            .args(["verify", "--vault", "kv-prod", "--drill", "--scratch-vault"])
            .arg(scratch)
            .arg("--identity")
            .arg(&identity)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("KVKEEP_CONFIG")
            .output()
            .expect("run kvkeep")
    };
    for scratch in [
        "kv-prod",
        "KV-Prod",
        "https://kv-prod.vault.azure.net",
        "https://KV-PROD.Vault.Azure.NET/",
        "https://kv-prod.vault.azure.net:443/some/path",
        "kv-alias",
    ] {
        let out = drill(scratch);
        assert_eq!(out.status.code(), Some(2), "{scratch}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("is the source vault kv-prod") && err.contains("--scratch-vault"),
            "{scratch}: {err}"
        );
    }
    // Nothing was opened before the refusal: the index does not exist, and a real scratch vault
    // gets as far as reporting that.
    let out = drill("kv-dr");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no index"), "{}", stderr(&out));
}
