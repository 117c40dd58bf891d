//! `kvkeep report` through the real binary: the JSON document and its RPO verdicts, a CSV
//! section written to a private file, the HTML page on stdout, and the exit codes of the
//! mistakes a person makes (CSV without a section, JSON or HTML with one, an unknown vault or
//! section, no index). The HTML in a browser is `report_browser.rs`.

use std::path::Path;
use std::process::{Command, Output};

use kvkeep::index::{Index, RunStats, RunStatus};
use kvkeep::model::{BlobKey, RunId, VaultName};
use serde_json::Value;

const CONFIG: &str = r#"
[store]
type = "local"
path = "store"

[index]
path = "index.sqlite"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[vault]]
name = "kv-fresh"
schedule = "@every 1h"
rpo = "2h"

[[vault]]
name = "kv-stale"
schedule = "@every 1h"
rpo = "2h"

[[vault]]
name = "kv-new"
"#;

const HOUR: i64 = 3_600;

/// kv-fresh: a completed run every hour for a day, the newest 30 minutes old. kv-stale: one
/// completed run three hours old. kv-new: nothing.
fn setup(dir: &Path) {
    std::fs::write(dir.join("kvkeep.toml"), CONFIG).expect("config");
    let index = Index::open(dir.join("index.sqlite")).expect("index");
    let now = kvkeep::clock::now_unix();
    let mut starts: Vec<(&str, i64)> = (0..24)
        .map(|h| ("kv-fresh", now - HOUR / 2 - h * HOUR))
        .collect();
    starts.push(("kv-stale", now - 3 * HOUR));
    for (vault, started) in starts {
        let name: VaultName = vault.parse().expect("vault");
        let run = RunId::random();
        let manifest: BlobKey = format!("manifests/{vault}/{started}-{run}.age")
            .parse()
            .expect("key");
        index.begin_run(&run, &name, started).expect("begin");
        index
            .finish_run(
                &run,
                RunStatus::Completed,
                &RunStats::default(),
                started + 60,
                Some(&manifest),
            )
            .expect("finish");
    }
}

fn kvkeep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(dir.join("kvkeep.toml"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run kvkeep")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_json_report_gives_each_vault_its_rpo_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let out = kvkeep(dir.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["report_format"], 1);
    let vaults = doc["vaults"].as_array().expect("vaults");
    let verdicts: Vec<(&str, &str)> = vaults
        .iter()
        .map(|v| {
            (
                v["vault"].as_str().unwrap_or_default(),
                v["rpo"]["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("kv-fresh", "ok"),
            ("kv-stale", "breach"),
            ("kv-new", "never")
        ]
    );
    assert_eq!(vaults[0]["restore_points"]["count"], 24);
    assert_eq!(
        vaults[0]["restore_points"]["policy"],
        "none: keeping everything"
    );

    // --vault narrows the report to the vaults named.
    let one = kvkeep(dir.path(), &["--format", "json", "--vault", "kv-stale"]);
    let doc: Value = serde_json::from_slice(&one.stdout).expect("json");
    assert_eq!(doc["vaults"].as_array().map(Vec::len), Some(1));

    // The table says the same for a person.
    let table = kvkeep(dir.path(), &["--section", "rpo"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    assert!(
        text.contains("breach: newest restore point is 3h") && text.contains("over the rpo of 2h"),
        "{text}"
    );
}

#[test]
fn the_html_report_goes_to_stdout_as_one_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let out = kvkeep(dir.path(), &["--format", "html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.trim_end().ends_with("</html>"), "{page}");
    for vault in ["kv-fresh", "kv-stale", "kv-new"] {
        assert!(
            page.contains(&format!(r#"<section class="vault" id="vault-{vault}""#)),
            "{vault}"
        );
    }
    // kv-fresh's 24 hourly points and kv-stale's one, each a mark.
    assert_eq!(
        page.matches(r#"class="point status-completed""#).count(),
        25
    );
}

#[cfg(unix)]
#[test]
fn a_csv_section_goes_to_a_private_file_replaced_whole() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let file = dir.path().join("rpo.csv");
    std::fs::write(
        &file,
        "an older report that is longer than the new one\n".repeat(100),
    )
    .expect("old file");
    let path = file.to_str().expect("utf-8 path");
    let out = kvkeep(
        dir.path(),
        &["--format", "csv", "--section", "rpo", "--out", path],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the report went to stdout too");
    let text = std::fs::read_to_string(&file).expect("report file");
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines[0].starts_with("vault,status,newest_point,age_seconds"),
        "{text}"
    );
    assert!(lines[1].starts_with("kv-fresh,ok,"), "{text}");
    assert!(lines[3].starts_with("kv-new,never,"), "{text}");
    assert!(!text.contains("older report"), "{text}");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn mistakes_are_usage_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());

    let csv = kvkeep(dir.path(), &["--format", "csv"]);
    assert_eq!(csv.status.code(), Some(2));
    assert!(csv.stdout.is_empty());
    assert!(
        stderr(&csv).contains("add --section with one of restore-points, rpo"),
        "{}",
        stderr(&csv)
    );

    let json = kvkeep(dir.path(), &["--format", "json", "--section", "storage"]);
    assert_eq!(json.status.code(), Some(2));
    assert!(
        stderr(&json).contains("drop --section"),
        "{}",
        stderr(&json)
    );

    let html = kvkeep(dir.path(), &["--format", "html", "--section", "rpo"]);
    assert_eq!(html.status.code(), Some(2));
    assert!(html.stdout.is_empty());
    assert!(
        stderr(&html).contains("HTML report always holds every section"),
        "{}",
        stderr(&html)
    );

    let section = kvkeep(dir.path(), &["--format", "csv", "--section", "everything"]);
    assert_eq!(section.status.code(), Some(2));

    let vault = kvkeep(dir.path(), &["--vault", "kv-nowhere"]);
    assert_eq!(vault.status.code(), Some(2));
    assert!(
        stderr(&vault).contains("configured vaults"),
        "{}",
        stderr(&vault)
    );
}

#[test]
fn without_an_index_the_report_fails_and_names_the_remedy() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kvkeep.toml"), CONFIG).expect("config");
    let out = kvkeep(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("kvkeep index rebuild"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("index.sqlite").exists(),
        "report created an index"
    );
}
