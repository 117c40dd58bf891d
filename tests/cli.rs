//! Drives the real `kvkeep` binary: exit codes and output a user sees.

use std::process::Command;

fn kvkeep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .output()
        .expect("the kvkeep binary runs")
}

#[test]
fn version_prints_the_package_version_and_exits_zero() {
    let out = kvkeep(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("kvkeep {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_command_is_a_usage_error_with_exit_code_two() {
    let out = kvkeep(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("frobnicate"),
        "stderr names the bad command: {stderr}"
    );
}

#[test]
fn help_exits_zero() {
    let out = kvkeep(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("kvkeep.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

const GOOD: &str = r#"
[store]
type = "local"
path = "store"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[vault]]
name = "kv-prod"
"#;

#[test]
fn config_check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), GOOD);
    let out = kvkeep(&["config", "check", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 vault)"));
}

#[test]
fn config_check_refuses_a_bad_file_with_exit_two_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = GOOD
        .replace("type = \"local\"", "type = \"local\"\nbogus = 1")
        .replace("kv-prod", "kv_prod");
    let path = write_config(dir.path(), &bad);
    let out = kvkeep(&["config", "check", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `bogus`"), "{stderr}");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(entries.len(), 1, "config check must not create files");
}

#[test]
fn config_check_of_a_missing_file_says_so() {
    let out = kvkeep(&["config", "check", "--config", "/nonexistent/kvkeep.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}

#[test]
fn config_show_prints_the_effective_config_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), GOOD);
    let out = kvkeep(&["config", "show", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["vaults"][0]["url"], "https://kv-prod.vault.azure.net");
    assert_eq!(v["store"]["type"], "local");
    assert_eq!(
        v["store"]["path"].as_str().map(std::path::PathBuf::from),
        Some(dir.path().join("store"))
    );
}

#[test]
fn listing_a_vault_the_config_does_not_name_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{GOOD}\n[index]\npath = \"{}\"\n",
        dir.path().join("index.sqlite").display()
    );
    let path = write_config(dir.path(), &text);
    let out = kvkeep(&[
        "list",
        "runs",
        "--vault",
        "kv-prdo",
        "--config",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vault kv-prdo is not in the configuration (configured: kv-prod)"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("index.sqlite").exists(),
        "list never creates an index"
    );
}

/// `--log-format json` (before or after the subcommand): every log line on stderr is one JSON
/// object with a level and the event's fields, for log shippers. The daemon logs its start and,
/// on SIGTERM, its stop; a vault without a schedule makes no request.
#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &format!("{GOOD}url = \"https://127.0.0.1:9\"\n\n[index]\npath = \"index.sqlite\"\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["daemon", "--log-format", "json", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines
        .next()
        .expect("a log line")
        .expect("readable log line");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().expect("exits").code(), Some(0));
    let all: Vec<&String> = std::iter::once(&first).chain(rest.iter()).collect();
    for line in &all {
        let doc: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(doc["level"].is_string(), "{line}");
    }
    assert!(all.iter().any(|l| l.contains("daemon started")), "{all:?}");
}
