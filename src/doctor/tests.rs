//! Unit tests of the pure parts of the doctor: the outcome of a report, the advice for each kind
//! of failed call, and the clock-skew row.

use chrono::{DateTime, Utc};

use super::advice::advise;
use super::vault::{check_schedule, skew_check};
use super::*;
use crate::source::{SourceError, SourceErrorKind, SourceOp};

fn vault(name: &str) -> VaultName {
    name.parse().expect("vault name")
}

fn row(vault_name: Option<&str>, check: CheckName, status: CheckStatus) -> Check {
    let v = vault_name.map(vault);
    Check {
        vault: v,
        check,
        status,
        detail: String::new(),
        fix: None,
    }
}

#[test]
fn the_outcome_is_ok_failed_or_nothing_reachable() {
    use CheckStatus::*;
    let store = |s| row(None, CheckName::Store, s);
    let connect = |v, s| row(Some(v), CheckName::Connect, s);
    let backup = |v, s| row(Some(v), CheckName::Backup(ObjectKind::Secrets), s);
    let cases: Vec<(Vec<Check>, DoctorOutcome)> = vec![
        (vec![], DoctorOutcome::Ok),
        (
            vec![store(Ok), connect("kv1", Ok), backup("kv1", Warn)],
            DoctorOutcome::Ok,
        ),
        (
            vec![store(Ok), connect("kv1", Ok), backup("kv1", Fail)],
            DoctorOutcome::SomeFailed,
        ),
        (
            vec![store(Fail), connect("kv1", Ok)],
            DoctorOutcome::SomeFailed,
        ),
        (
            vec![store(Ok), connect("kv1", Fail)],
            DoctorOutcome::SomeFailed,
        ),
        (
            vec![store(Fail), connect("kv1", Fail), connect("kv2", Ok)],
            DoctorOutcome::SomeFailed,
        ),
        (
            vec![store(Fail), connect("kv1", Fail), connect("kv2", Fail)],
            DoctorOutcome::NothingReachable,
        ),
        // No vault selected and the store down: nothing that was asked for is reachable.
        (vec![store(Fail)], DoctorOutcome::NothingReachable),
        (
            vec![row(None, CheckName::Index, Fail)],
            DoctorOutcome::SomeFailed,
        ),
    ];
    for (checks, expected) in cases {
        let report = DoctorReport { checks };
        assert_eq!(report.outcome(), expected, "{:?}", report.checks);
    }
}

#[test]
fn the_cli_maps_outcomes_to_exit_codes() {
    use crate::cli::doctor::exit_code;
    assert_eq!(exit_code(DoctorOutcome::Ok), 0);
    assert_eq!(exit_code(DoctorOutcome::SomeFailed), 3);
    assert_eq!(exit_code(DoctorOutcome::NothingReachable), 1);
}

#[test]
fn checks_serialise_with_their_names_and_no_vault_as_null() {
    let report = DoctorReport {
        checks: vec![
            Check::ok(None, CheckName::Store, "fine"),
            Check::fail(
                Some(&vault("kv1")),
                CheckName::Backup(ObjectKind::Secrets),
                "denied",
                "grant it",
            ),
        ],
    };
    let json = crate::cli::doctor::report_json(&report);
    assert_eq!(json["outcome"], "some_failed");
    assert_eq!(json["checks"][0]["vault"], serde_json::Value::Null);
    assert_eq!(json["checks"][0]["check"], "store");
    assert_eq!(json["checks"][0]["status"], "ok");
    assert_eq!(json["checks"][1]["check"], "backup secrets");
    assert_eq!(json["checks"][1]["status"], "fail");
    assert_eq!(json["checks"][1]["fix"], "grant it");
    let table = crate::cli::doctor::report_table(&report);
    assert!(table.contains("-      store"), "{table}");
    assert!(
        table.contains("fail kv1 backup secrets: grant it"),
        "{table}"
    );
}

fn error(kind: SourceErrorKind, op: SourceOp, detail: &str, code: Option<&str>) -> SourceError {
    SourceError::new(
        kind,
        op,
        &vault("kv1"),
        ObjectKind::Secrets,
        Some("s1"),
        detail,
    )
    .with_codes(code.map(str::to_string), None)
}

#[test]
fn failed_calls_say_what_to_fix() {
    use SourceErrorKind::*;
    let host = "kv1.vault.azure.net";
    let cases: [(SourceError, CheckStatus, &str); 11] = [
        (
            error(
                Forbidden,
                SourceOp::Backup,
                "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/backup/action'",
                Some("Forbidden"),
            ),
            CheckStatus::Fail,
            "lacks the `backup` permission on secrets",
        ),
        (
            error(
                Forbidden,
                SourceOp::List,
                "Client address is not authorized and caller is not a trusted service. Client address: 203.0.113.9",
                Some("Forbidden"),
            ),
            CheckStatus::Fail,
            "the vault's network rules refuse this host",
        ),
        (
            error(Forbidden, SourceOp::Backup, "does not have secrets backup permission", Some("Forbidden")),
            CheckStatus::Fail,
            "lacks the `backup` permission on secrets: grant access policy `backup` on secrets, or with Azure RBAC the data action `Microsoft.KeyVault/vaults/secrets/backup/action` (e.g. the Key Vault Secrets Officer role)",
        ),
        (
            error(Forbidden, SourceOp::List, "does not have secrets list permission", Some("Forbidden")),
            CheckStatus::Fail,
            "lacks the `list` permission on secrets: grant access policy `list` on secrets, or with Azure RBAC the data action `Microsoft.KeyVault/vaults/secrets/readMetadata/action`",
        ),
        (
            error(Forbidden, SourceOp::List, "AKV10022: Invalid audience.", Some("Unauthorized")),
            CheckStatus::Fail,
            "did not accept kvkeep's token (401)",
        ),
        (
            error(Forbidden, SourceOp::List, "no access token for key vault: expired; check the [azure] credential", None),
            CheckStatus::Fail,
            "did not accept kvkeep's token (401)",
        ),
        (
            error(Transient, SourceOp::List, "connection to key vault failed: error sending request: dns error: failed to lookup address information", None),
            CheckStatus::Fail,
            "the host kv1.vault.azure.net does not resolve",
        ),
        (
            error(Transient, SourceOp::List, "connection to key vault failed: invalid peer certificate: UnknownIssuer", None),
            CheckStatus::Fail,
            "tls to kv1.vault.azure.net failed",
        ),
        (
            error(Transient, SourceOp::List, "connection to key vault failed: Connection refused (os error 111)", None),
            CheckStatus::Fail,
            "cannot connect to kv1.vault.azure.net",
        ),
        (
            error(Permanent, SourceOp::List, "unexpected answer from key vault: invalid audience in challenge: Bearer resource=\"https://evil\"", None),
            CheckStatus::Fail,
            "challenge names a resource",
        ),
        (
            error(Throttled, SourceOp::Backup, "", Some("Throttled")),
            CheckStatus::Warn,
            "throttling",
        ),
    ];
    for (e, status, fix) in cases {
        let (got_status, detail, got_fix) = advise(&e, host);
        assert_eq!(got_status, status, "{e}");
        assert!(got_fix.contains(fix), "{e}\n{got_fix}");
        assert_eq!(detail, e.to_string());
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

#[test]
fn clock_skew_above_five_minutes_warns() {
    let now = at("2026-12-04T12:00:00Z");
    let ok = skew_check(None, Some(at("2026-12-04T11:56:00Z")), now);
    assert_eq!(
        (ok.status, ok.detail.as_str()),
        (CheckStatus::Ok, "local clock is 240s ahead of the vault's")
    );
    let warn = skew_check(None, Some(at("2026-12-04T12:05:01Z")), now);
    assert_eq!(warn.status, CheckStatus::Warn);
    assert_eq!(warn.detail, "local clock is 301s behind the vault's");
    assert!(warn.fix.as_deref().unwrap_or("").contains("NTP"));
    let skipped = skew_check(None, None, now);
    assert_eq!(skipped.status, CheckStatus::Warn);
    assert!(skipped.detail.starts_with("skipped"));
}

fn local_config(store: &std::path::Path, index: &std::path::Path) -> Config {
    let identity = crate::crypto::Identity::generate();
    let text = format!(
        "[store]\ntype = \"local\"\npath = \"{}\"\n[index]\npath = \"{}\"\n[encryption]\nrecipients = [\"{}\"]\n[[vault]]\nname = \"kv-one\"\n",
        store.display(),
        index.display(),
        identity.recipient()
    );
    Config::parse(&text, "t.toml", std::path::Path::new("/tmp"), &|p| {
        std::fs::read_to_string(p)
    })
    .expect("config")
}

#[tokio::test]
async fn readiness_proves_the_index_and_store_and_leaves_no_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).expect("store dir");
    let config = local_config(&store_dir, &dir.path().join("index.sqlite"));
    let checks = readiness(&config, &CancellationToken::new()).await;
    let names: Vec<String> = checks.iter().map(|c| c.check.to_string()).collect();
    assert_eq!(names, ["config", "index", "store"]);
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{checks:#?}"
    );
    // The index exists now, with no run in it; the store holds nothing.
    let index = crate::index::Index::open(dir.path().join("index.sqlite")).expect("index");
    assert!(index.list_runs(None).expect("runs").is_empty());
    let mut left = Vec::new();
    for entry in walk(&store_dir) {
        left.push(entry);
    }
    assert!(left.is_empty(), "{left:?}");

    // An index in a directory that does not exist: a failure that says what to do.
    let config = local_config(&store_dir, &dir.path().join("missing/index.sqlite"));
    let checks = readiness(&config, &CancellationToken::new()).await;
    let index = &checks[1];
    assert_eq!(
        (index.check, index.status),
        (CheckName::Index, CheckStatus::Fail)
    );
    assert!(
        index
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("[index] path")),
        "{index:?}"
    );
    assert_eq!(DoctorReport { checks }.outcome(), DoctorOutcome::SomeFailed);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_schedule_row_applies_jitter_and_says_when_a_vault_is_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = local_config(&dir.path().join("store"), &dir.path().join("index"));
    let mut vault = config.vaults.remove(0);
    vault.schedule = Some(crate::scheduler::Schedule::parse("@every 1d", "UTC").expect("schedule"));
    vault.jitter = std::time::Duration::from_secs(3_600);
    let row = check_schedule(&vault);
    assert_eq!(row.status, CheckStatus::Ok, "{}", row.detail);
    // The daemon's fire time: midnight UTC plus the vault's fixed offset, never midnight itself.
    let expected = crate::scheduler::Timetable::for_vault(&vault)
        .and_then(|t| t.next_due(crate::clock::now()))
        .expect("next");
    assert!(
        row.detail
            .ends_with(&expected.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "{}",
        row.detail
    );
    vault.paused = true;
    let row = check_schedule(&vault);
    assert_eq!(row.status, CheckStatus::Warn);
    assert!(row.detail.contains("paused"), "{}", row.detail);
    vault.schedule = None;
    assert!(check_schedule(&vault).detail.starts_with("no schedule"));
}

#[tokio::test]
async fn the_report_check_probes_the_directory_and_warns_when_it_cannot_write() {
    use super::{check_report, CheckName, CheckStatus};

    let dir = tempfile::tempdir().expect("dir");
    let ok = check_report(&dir.path().join("report.html")).await;
    assert_eq!((ok.check, ok.status), (CheckName::Report, CheckStatus::Ok));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("list").count(),
        0,
        "the probe file is gone"
    );

    let missing = check_report(&dir.path().join("no-such-dir").join("report.html")).await;
    assert_eq!(missing.status, CheckStatus::Warn);
    assert!(missing.detail.contains("no-such-dir"), "{}", missing.detail);
    assert!(missing
        .fix
        .as_deref()
        .is_some_and(|f| f.contains("[report] html_path")));

    let a_directory = check_report(dir.path()).await;
    assert_eq!(a_directory.status, CheckStatus::Warn);
    assert!(a_directory.detail.contains("names a directory"));
}

#[tokio::test]
async fn the_locks_check_takes_and_releases_a_probe_lease_and_fails_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).expect("store dir");
    let config = local_config(&store_dir, &dir.path().join("index.sqlite"));
    let check = super::check_locks(&config, &CancellationToken::new()).await;
    assert_eq!(
        (check.check, check.status),
        (CheckName::Locks, CheckStatus::Ok),
        "{check:?}"
    );
    assert!(
        check.detail.contains("locks/kvkeep-lease-probe") && check.detail.contains("released"),
        "{}",
        check.detail
    );
    // Released: anyone may take the probe's lock at once.
    let store = crate::store::LocalStore::open(&store_dir, "").expect("store");
    let vault: VaultName = super::LEASE_PROBE_VAULT.parse().expect("vault");
    let holder = crate::store::LeaseHolder::new("other").expect("holder");
    let lease = crate::store::BlobStore::acquire_lease(
        &store,
        &vault,
        &holder,
        crate::store::LeaseDuration::DEFAULT,
    )
    .await
    .expect("released by the check");
    // Held by another instance meanwhile: leases work all the same.
    let check = super::check_locks(&config, &CancellationToken::new()).await;
    assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
    assert!(
        check.detail.contains("kvkeep instance other"),
        "{}",
        check.detail
    );
    crate::store::BlobStore::release_lease(&store, lease)
        .await
        .expect("release");

    // A store kvkeep cannot use (its path is a file): a failure that says what to fix.
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"x").expect("file");
    let config = local_config(&not_a_dir, &dir.path().join("index.sqlite"));
    let check = super::check_locks(&config, &CancellationToken::new()).await;
    assert_eq!(check.status, CheckStatus::Fail, "{check:?}");
    assert!(
        check.fix.as_deref().is_some_and(|f| !f.is_empty()),
        "{check:?}"
    );
}
