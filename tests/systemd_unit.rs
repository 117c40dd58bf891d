//! The shipped unit files (`systemd/kvkeep.service`, and `kvkeep-verify.service` for deep
//! verification): systemd's own security analysis scores each 2.0 or better with no directive it
//! fails to parse, and they keep what the daemon and the verification rely on.
//! Run where `systemd-analyze` exists (it does on the CI machines; elsewhere the test says so).

use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/kvkeep.service");
const VERIFY_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/kvkeep-verify.service");

#[test]
fn the_units_score_2_or_better_in_systemd_analyze_security_without_warnings() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed here: the unit's score is not checked");
        return;
    }
    for (unit, name) in [
        (UNIT, "kvkeep.service"),
        (VERIFY_UNIT, "kvkeep-verify.service"),
    ] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(Path::new(unit))
            .output()
            .expect("run systemd-analyze");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for warning in [
            "Failed to parse",
            "Unknown key",
            "Unknown section",
            "ignoring",
        ] {
            assert!(
                !stderr.contains(warning) && !stdout.contains(warning),
                "systemd-analyze warns about {name} ({warning}):\n{stderr}"
            );
        }
        let label = format!("Overall exposure level for {name}:");
        let score: f64 = stdout
            .lines()
            .find_map(|l| l.split(label.as_str()).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no overall score for {name} in:\n{stdout}\n{stderr}"));
        assert!(score <= 2.0, "{name}: exposure {score} > 2.0:\n{stdout}");
    }
}

#[test]
fn the_verify_unit_gets_the_identity_as_a_credential_never_as_an_argument_path_in_etc() {
    let unit = std::fs::read_to_string(VERIFY_UNIT).expect("unit file");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains("verify --deep --identity %d/identity"),
        "{exec}"
    );
    assert!(unit
        .lines()
        .any(|l| l.starts_with("LoadCredential=identity:")));
    let timer =
        std::fs::read_to_string(VERIFY_UNIT.replace(".service", ".timer")).expect("timer file");
    assert!(
        timer.lines().any(|l| l.starts_with("OnCalendar=")),
        "{timer}"
    );
}

#[test]
fn the_unit_is_a_notify_service_with_a_watchdog_and_a_config_check_first() {
    let unit = std::fs::read_to_string(UNIT).expect("unit file");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/usr/local/bin/kvkeep config check",
        "ExecStart=/usr/local/bin/kvkeep daemon",
        "StateDirectory=kvkeep",
        "User=kvkeep",
        // Not Type=notify-reload: systemd 249-252 (Debian 12, RHEL 9, Ubuntu 22.04) lack it.
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line:?}"
        );
    }
    assert!(!unit.lines().any(|l| l.starts_with("Type=notify-reload")));
}
