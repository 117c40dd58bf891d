//! `kvkeep prune --dry-run` through the real binary, on an index of 40 daily restore points:
//! the policy's verdict and reasons per point, totals, "keeping everything" without a policy,
//! a vault whose lock is held refused by name, and the real prune.

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
name = "kv-kept"

[vault.retention]
keep_daily = 7
keep_monthly = 2
min_retention = "1d"

[[vault]]
name = "kv-all"
"#;

const DAY: i64 = 86_400;

/// One completed run a day for 40 days, the newest a day old, in each vault.
fn index_with_daily_points(dir: &Path) -> i64 {
    let index = Index::open(dir.join("index.sqlite")).expect("index");
    let now = kvkeep::clock::now_unix();
    for vault in ["kv-kept", "kv-all"] {
        let name: VaultName = vault.parse().expect("vault");
        for day in (1..=40).rev() {
            let run = RunId::random();
            let started = now - day * DAY;
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
    now
}

fn kvkeep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .arg("--config")
        .arg(dir.join("kvkeep.toml"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run kvkeep")
}

#[test]
fn a_dry_run_shows_each_points_verdict_and_reasons_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kvkeep.toml"), CONFIG).expect("config");
    index_with_daily_points(dir.path());
    let before = std::fs::read(dir.path().join("index.sqlite")).expect("index bytes");

    let out = kvkeep(dir.path(), &["prune", "--dry-run", "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let kept = &doc["vaults"][0];
    assert_eq!(kept["vault"], "kv-kept");
    let points = kept["points"].as_array().expect("points");
    assert_eq!(points.len(), 40);
    // Newest first: the seven newest days are kept as daily points; the newest also as newest.
    for p in &points[..7] {
        assert_eq!(p["keep"], true, "{p}");
        assert!(
            p["reasons"]
                .as_array()
                .expect("reasons")
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.starts_with("daily "))),
            "{p}"
        );
    }
    assert!(points[0]["reasons"].to_string().contains("newest"));
    let forgotten = kept["forgotten_points"].as_u64().expect("count");
    // 40 points: 7 daily, plus at most 2 monthly winners among the rest (and the oldest).
    assert!((30..=33).contains(&forgotten), "{kept}");
    assert_eq!(kept["manifests_to_delete"].as_u64(), Some(forgotten));
    assert!(points
        .iter()
        .filter(|p| p["keep"] == false)
        .all(|p| p["reasons"]
            .to_string()
            .contains("not selected by any rule")));

    let all = &doc["vaults"][1];
    assert_eq!(all["policy"], "none: keeping everything");
    assert_eq!(all["forgotten_points"], 0);

    let table = kvkeep(dir.path(), &["prune", "--dry-run", "--vault", "kv-all"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("no retention policy, keeping everything"),
        "{text}"
    );
    assert!(text.contains("40 kept, 0 to forget"), "{text}");

    // Dry runs changed nothing.
    let after = std::fs::read(dir.path().join("index.sqlite")).expect("index bytes");
    assert!(before == after, "a dry run changed the index");

    // While a backup holds kv-kept's lock, prune refuses that vault (exit 1, naming the holder)
    // and still prunes the other one.
    {
        let vault: kvkeep::model::VaultName = "kv-kept".parse().expect("vault");
        let _held =
            kvkeep::index::lock_vault(&dir.path().join("index.sqlite"), &vault, "kvkeep backup", 0)
                .expect("lock");
        let busy = kvkeep(dir.path(), &["prune"]);
        assert_eq!(busy.status.code(), Some(1));
        let err = String::from_utf8_lossy(&busy.stderr);
        assert!(
            err.contains("kvkeep backup of vault kv-kept")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }
    let still = kvkeep(
        dir.path(),
        &[
            "prune",
            "--dry-run",
            "--output",
            "json",
            "--vault",
            "kv-kept",
        ],
    );
    let still: Value = serde_json::from_slice(&still.stdout).expect("json");
    assert_eq!(
        still["vaults"][0]["forgotten_points"].as_u64(),
        Some(forgotten)
    );

    // The real prune: the forgotten points go (their manifests were never written here, which
    // counts as already deleted), the totals say so, and the next plan has nothing to forget.
    let pruned = kvkeep(dir.path(), &["prune", "--output", "json"]);
    assert_eq!(
        pruned.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let doc: Value = serde_json::from_slice(&pruned.stdout).expect("json");
    assert_eq!(doc["dry_run"], false);
    assert_eq!(
        doc["vaults"][0]["forgotten_points"].as_u64(),
        Some(forgotten)
    );
    assert_eq!(doc["totals"]["forgotten_points"].as_u64(), Some(forgotten));
    assert_eq!(doc["totals"]["vaults_not_pruned"], 0);
    let again = kvkeep(dir.path(), &["prune", "--dry-run", "--output", "json"]);
    let again: Value = serde_json::from_slice(&again.stdout).expect("json");
    let points = again["vaults"][0]["points"].as_array().expect("points");
    assert_eq!(points.len() as u64, 40 - forgotten);
    assert_eq!(again["vaults"][0]["forgotten_points"], 0);
    assert_eq!(
        again["vaults"][1]["points"].as_array().map(Vec::len),
        Some(40)
    );
}
