//! `kvkeep schedule` through the real binary: next fire times per vault (in the future, strictly
//! increasing, spaced by the schedule, shifted by the vault's jitter), `paused` shown, and exit 2
//! for an unknown vault or a bad configuration.

use std::process::Command;

use chrono::{DateTime, Utc};

const CONFIG: &str = r#"
[store]
type = "local"
path = "store"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[defaults]
timezone = "Europe/Berlin"

[[vault]]
name = "kv-every"
schedule = "@every 15m"

[[vault]]
name = "kv-jitter"
schedule = "@every 15m"
jitter = "10m"

[[vault]]
name = "kv-paused"
schedule = "@daily"
paused = true

[[vault]]
name = "kv-adhoc"
"#;

fn kvkeep(config: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kvkeep.toml");
    std::fs::write(&path, config).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("KVKEEP_CONFIG")
        .output()
        .expect("the kvkeep binary runs")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
}

fn vault<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["vaults"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["vault"] == name))
        .unwrap_or_else(|| panic!("{name} in {doc}"))
}

#[test]
fn every_15m_fires_in_the_future_strictly_increasing_and_15_minutes_apart() {
    let doc = json_of(&kvkeep(
        CONFIG,
        &["schedule", "--output", "json", "--count", "4"],
    ));
    let now = time(&doc["now"]);
    for (name, offset) in [("kv-every", Some(0)), ("kv-jitter", None)] {
        let v = vault(&doc, name);
        assert_eq!(v["status"], "scheduled", "{v}");
        let next = v["next"].as_array().expect("next");
        assert_eq!(next.len(), 4, "{v}");
        let utc: Vec<DateTime<Utc>> = next.iter().map(|n| time(&n["utc"])).collect();
        assert!(utc[0] > now, "{name}: {} not after {now}", utc[0]);
        assert!(utc[0] <= now + chrono::TimeDelta::minutes(15), "{v}");
        for pair in utc.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::TimeDelta::minutes(15), "{v}");
        }
        // The local time is the same instant, shown in Berlin's offset.
        for n in next {
            assert_eq!(time(&n["local"]), time(&n["utc"]));
            let local = n["local"].as_str().unwrap_or_default();
            assert!(
                local.ends_with("+01:00") || local.ends_with("+02:00"),
                "{local}"
            );
        }
        // Fire times sit on the epoch-anchored 15-minute grid, shifted by the vault's offset.
        let jitter = v["jitter_offset_seconds"].as_i64().expect("offset");
        if let Some(expected) = offset {
            assert_eq!(jitter, expected);
        } else {
            assert!((0..600).contains(&jitter), "{v}");
        }
        assert_eq!((utc[0].timestamp() - jitter).rem_euclid(900), 0, "{v}");
    }
}

#[test]
fn the_jitter_offset_is_the_same_on_every_run() {
    let a = json_of(&kvkeep(
        CONFIG,
        &["schedule", "--output", "json", "--vault", "kv-jitter"],
    ));
    let b = json_of(&kvkeep(
        CONFIG,
        &["schedule", "--output", "json", "--vault", "kv-jitter"],
    ));
    assert_eq!(
        vault(&a, "kv-jitter")["jitter_offset_seconds"],
        vault(&b, "kv-jitter")["jitter_offset_seconds"]
    );
    assert_eq!(a["vaults"].as_array().map(Vec::len), Some(1));
}

#[test]
fn paused_and_on_demand_vaults_say_so() {
    let doc = json_of(&kvkeep(CONFIG, &["schedule", "--output", "json"]));
    let paused = vault(&doc, "kv-paused");
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next"].as_array().map(Vec::len), Some(0));
    assert_eq!(vault(&doc, "kv-adhoc")["status"], "on-demand");

    let out = kvkeep(CONFIG, &["schedule"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    let paused_line = table
        .lines()
        .find(|l| l.starts_with("kv-paused"))
        .unwrap_or_default();
    assert!(paused_line.contains("paused"), "{table}");
    assert!(table.contains("on demand"), "{table}");
    // Default count: 5 rows for each scheduled vault (2 of them), plus header, paused, on demand.
    assert_eq!(table.lines().count(), 1 + 5 + 5 + 1 + 1, "{table}");
    assert!(table.contains("CET") || table.contains("CEST"), "{table}");
}

#[test]
fn an_unknown_vault_is_a_usage_error_listing_the_configured_ones() {
    let out = kvkeep(CONFIG, &["schedule", "--vault", "kv-nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kv-nope") && stderr.contains("kv-every"),
        "{stderr}"
    );
}

#[test]
fn a_bad_count_or_configuration_exits_two() {
    assert_eq!(
        kvkeep(CONFIG, &["schedule", "--count", "0"]).status.code(),
        Some(2)
    );
    let bad = CONFIG.replace("@every 15m\"\njitter", "@every 0s\"\njitter");
    let out = kvkeep(&bad, &["schedule"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vault[1].schedule"), "{stderr}");
}
