//! Files kvkeep writes are private, and secret files others may read are refused — through the
//! real binary, as an operator meets them.
//!
//! The backup runs under `umask 000`, so every mode checked here is one kvkeep set itself.
//! Each refused secret file holds a canary that must appear in neither stdout nor stderr.
#![cfg(unix)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::{Emulator, EmulatorConfig};
use kvkeep_emulator::vault::VaultSettings;
use support::config_files::{resolve_entry, vault_section, write_identity, write_token};
use support::e2e::seed;

const VAULT: &str = "kv-private";

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file and directory below `root` (not `root` itself).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// `kvkeep <args> --config <config>` under `umask 000`.
fn kvkeep_umask0(config: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("KVKEEP_CONFIG")
        .output()
        .expect("run kvkeep")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_a_backup_to_a_local_store_creates_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emulator = Emulator::start(EmulatorConfig {
        vaults: vec![VaultSettings::named(VAULT)],
        cert_dir: Some(dir.path().join("tls")),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the emulator");
    for (kind, prefix) in [(Collection::Secrets, "secret-"), (Collection::Keys, "key-")] {
        seed(&emulator, VAULT, kind, prefix, 3, 2).await;
    }
    let url = emulator.vault_url(VAULT).expect("vault url").to_string();
    let recipient = write_identity(dir.path());
    write_token(dir.path(), "any-token");
    // The index directory exists (systemd's StateDirectory=), and is world-readable here: the
    // files kvkeep puts in it must not be.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("kvkeep.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ntype = \"local\"\npath = \"store\"\n\n[encryption]\nrecipients = [\"{recipient}\"]\n\n[index]\npath = \"state/index.sqlite\"\n\n[azure]\ncredential = \"token-file\"\ntoken_file = \"token.txt\"\nca_file = \"{ca}\"\nresolve = {{ {resolve} }}\n\n[limits]\nvault_share = 1.0\nsubscription_share = 1.0\n\n{vault}",
            ca = emulator.info().ca_cert.display(),
            resolve = resolve_entry(&url),
            vault = vault_section(VAULT, &url, "europe"),
        ),
    )
    .expect("config");

    let config_for_run = config.clone();
    let out = tokio::task::spawn_blocking(move || kvkeep_umask0(&config_for_run, &["backup"]))
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let store = dir.path().join("store");
    assert_eq!(mode(&store), 0o700, "the store directory kvkeep created");
    let mut files = 0;
    for path in walk(&store).into_iter().chain(walk(&state)) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        if !path.is_dir() {
            files += 1;
        }
        assert_eq!(
            mode(&path),
            want,
            "{} has mode {:04o}",
            path.display(),
            mode(&path)
        );
    }
    assert!(
        state.join("index.sqlite").is_file() && files > 7,
        "the backup wrote its index and blobs ({files} files)"
    );
    emulator.shutdown().await;
}

/// Writes `content` to `dir/name` with mode 0644, as `echo > file` under the usual umask does.
fn world_readable(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

/// Runs `args` with `config` in `dir` and checks that it is refused, naming `file` and the
/// `chmod 600` fix, and that `canary` appears nowhere in the output.
fn assert_refused(dir: &Path, config: &str, args: &[&str], file: &Path, canary: &str) {
    let path = dir.join("kvkeep.toml");
    std::fs::write(&path, config).expect("config");
    let out = kvkeep_umask0(&path, args);
    let all = text(&out);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?} must fail: {all}"
    );
    assert!(
        all.contains(&format!("chmod 600 {}", file.display())),
        "{args:?} names the file and the fix: {all}"
    );
    assert!(!all.contains(canary), "{args:?} leaked the canary: {all}");
    assert_eq!(
        mode(file),
        0o644,
        "kvkeep does not change the operator's file"
    );
}

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

#[test]
fn token_sas_client_secret_and_identity_files_others_can_read_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let local = format!(
        "[store]\ntype = \"local\"\npath = \"store\"\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n[index]\npath = \"index.sqlite\"\n"
    );
    let vault = "[[vault]]\nname = \"kv-prod\"\n";

    let canary = "canary-token-4YtP9";
    let token = world_readable(d, "token.txt", canary);
    assert_refused(
        d,
        &format!(
            "{local}[azure]\ncredential = \"token-file\"\ntoken_file = \"token.txt\"\n{vault}"
        ),
        &["backup"],
        &token,
        canary,
    );

    let canary = "canary-client-secret-Q7vR2";
    let secret = world_readable(d, "client-secret.txt", canary);
    assert_refused(
        d,
        &format!("{local}[azure]\ncredential = \"client-secret\"\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret_file = \"client-secret.txt\"\n{vault}"),
        &["backup"],
        &secret,
        canary,
    );

    let canary = "canarySASsig8Jm3";
    let sas = world_readable(
        d,
        "sas.txt",
        &format!(
            "https://acct.blob.core.windows.net/backups?sv=2025-11-05&sp=racwdl&sig={canary}\n"
        ),
    );
    assert_refused(
        d,
        &format!("[store]\ntype = \"azure\"\ncontainer_url = \"https://acct.blob.core.windows.net/backups\"\nauth = \"sas\"\nsas_url_file = \"sas.txt\"\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n[index]\npath = \"index.sqlite\"\n{vault}"),
        &["backup"],
        &sas,
        canary,
    );

    // A notification's URL carries its token: `config check` (the unit's ExecStartPre=)
    // refuses the file before the daemon starts.
    let canary = "canary-hook-token-Wd81";
    let hook = world_readable(
        d,
        "webhook-url.txt",
        &format!("https://hooks.example.net/services/{canary}\n"),
    );
    assert_refused(
        d,
        &format!(
            "{local}{vault}\n[[notify]]\nkind = \"webhook\"\nurl_file = \"webhook-url.txt\"\n"
        ),
        &["config", "check"],
        &hook,
        canary,
    );

    // The identity's own key is the canary; every command that takes --identity refuses it.
    let identity = kvkeep::crypto::Identity::generate();
    let key_file = d.join("identity.txt");
    kvkeep::crypto::write_identity_file(&key_file, &identity, "2026-01-01T00:00:00Z", false)
        .expect("identity");
    let content = std::fs::read_to_string(&key_file).expect("read");
    let secret_line = content
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("secret line")
        .to_string();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = format!("{local}{vault}");
    let key_arg = key_file.to_str().expect("utf-8 temp path");
    for args in [
        &["index", "rebuild", "--identity", key_arg][..],
        &["restore", "--vault", "kv-prod", "--identity", key_arg][..],
        &["verify", "--deep", "--identity", key_arg][..],
    ] {
        assert_refused(d, &config, args, &key_file, &secret_line[16..]);
    }
}
