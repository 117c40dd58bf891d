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
    assert_eq!(stdout.trim(), format!("kvkeep {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_command_is_a_usage_error_with_exit_code_two() {
    let out = kvkeep(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("frobnicate"), "stderr names the bad command: {stderr}");
}

#[test]
fn help_exits_zero() {
    let out = kvkeep(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
}
