//! Golden tests of the report: a fixed index (three vaults, fixed times) and a fixed "now",
//! rendered as JSON and as every CSV section, compared with the snapshots committed beside this
//! file. A change to the output shows up as a snapshot diff to review, never silently.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

use super::{build_report, csv, Report, RpoStatus, Section};
use crate::config::{Config, PayloadMode};
use crate::index::{
    CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus, VerificationDepth,
    VerificationRecord,
};
use crate::model::{BlobKey, ObjectKind, RunId};

const CONFIG: &str = r#"
[store]
type = "local"
path = "/tmp/store"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[vault]]
name = "kv-prod"
schedule = "0 2 * * *"
rpo = "26h"

[vault.retention]
keep_daily = 3
min_retention = "1d"

[[vault]]
name = "kv-late"
schedule = "@every 6h"
jitter = "10m"

[[vault]]
name = "kv-empty"
"#;

/// Report time: Monday 2026-11-30 12:00 UTC.
pub(crate) fn now() -> DateTime<Utc> {
    utc(30, 12, 0)
}

fn utc(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .single()
        .expect("fixed time")
}

pub(crate) fn config() -> Config {
    Config::parse(CONFIG, "kvkeep.toml", Path::new("/tmp"), &|_| {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    })
    .expect("test configuration")
}

/// Run ids from small numbers, so snapshots read `0000000000000003`.
fn run_id(n: u64) -> RunId {
    format!("{n:016x}").parse().expect("run id")
}

fn capture(vault: &str, kind: ObjectKind, name: &str, versions: usize, at: i64) -> NewCapture {
    let version = |i: usize| format!("{i:032x}").parse().expect("version");
    NewCapture {
        object: ObjectState {
            kind,
            name: name.parse().expect("name"),
            current_version: version(versions),
            updated: at - 60,
        },
        blob: format!("objects/{vault}/{kind}/{name}/{at}.age")
            .parse()
            .expect("blob key"),
        captured_at: at,
        plain_bytes: 1_000 * versions as u64,
        stored_bytes: 600 * versions as u64,
        sha256: "ab".repeat(32),
        payload: PayloadMode::Native,
        versions: (1..=versions)
            .map(|i| CapturedVersion {
                version: version(i),
                created: Some(at - 1_000 + i as i64),
                updated: Some(at - 60),
                enabled: true,
            })
            .collect(),
        tags: None,
    }
}

struct Run<'a> {
    index: &'a Index,
    vault: &'static str,
    id: RunId,
    started: i64,
}

impl<'a> Run<'a> {
    fn begin(index: &'a Index, vault: &'static str, n: u64, started: DateTime<Utc>) -> Self {
        let id = run_id(n);
        index
            .begin_run(&id, &vault.parse().expect("vault"), started.timestamp())
            .expect("begin");
        Run {
            index,
            vault,
            id,
            started: started.timestamp(),
        }
    }

    fn capture(&self, kind: ObjectKind, name: &str, versions: usize) -> &Self {
        let c = capture(self.vault, kind, name, versions, self.started + 30);
        self.index.record_capture(&self.id, &c).expect("capture");
        self
    }

    fn fail(&self, kind: ObjectKind, name: &str, error_kind: &str, message: &str) -> &Self {
        self.index
            .record_object_error(
                &self.id,
                kind,
                &name.parse().expect("name"),
                error_kind,
                message,
                self.started + 40,
            )
            .expect("error");
        self
    }

    fn finish(&self, status: RunStatus) {
        let manifest: BlobKey =
            format!("manifests/{}/{}-{}.age", self.vault, self.started, self.id)
                .parse()
                .expect("manifest key");
        self.index
            .finish_run(
                &self.id,
                status,
                &RunStats::default(),
                self.started + 120,
                Some(&manifest),
            )
            .expect("finish");
    }
}

/// kv-prod: a daily point at 02:00 from 25 to 30 November (the 27th `failed`, the 28th
/// `partially_failed`), a certificate failing since the 28th, a secret refused on its first
/// sighting, a secret with 460 versions, and two verifications. kv-late: a point in October
/// and one two days old, on a six-hourly schedule. kv-empty: nothing at all.
pub(crate) fn fixture() -> Index {
    let index = Index::open_in_memory().expect("index");
    use ObjectKind::{Certificates, Keys, Secrets};
    let first = Run::begin(&index, "kv-prod", 1, utc(25, 2, 0));
    first
        .capture(Secrets, "db-password", 3)
        .capture(Keys, "signing-key", 2)
        .capture(Certificates, "tls-cert", 1)
        .capture(Secrets, "busy-secret", 460);
    first.finish(RunStatus::Completed);
    Run::begin(&index, "kv-prod", 2, utc(26, 2, 0))
        .capture(Secrets, "db-password", 4)
        .finish(RunStatus::Completed);
    Run::begin(&index, "kv-prod", 3, utc(27, 2, 0)).finish(RunStatus::Failed);
    for (n, day, status) in [
        (4, 28, RunStatus::PartiallyFailed),
        (5, 29, RunStatus::PartiallyFailed),
        (6, 30, RunStatus::PartiallyFailed),
    ] {
        let run = Run::begin(&index, "kv-prod", n, utc(day, 2, 0));
        run.fail(
            Certificates,
            "tls-cert",
            "forbidden",
            "backup of certificates/tls-cert refused (403): grant certificates/backup",
        );
        if day == 30 {
            run.fail(
                Secrets,
                "New-Secret",
                "throttled",
                "Key Vault throttled the backup, \"Throttled\", retries exhausted",
            );
        }
        run.finish(status);
    }
    // Older than the 30-day growth window: counted in storage, not in growth.
    let october = Utc
        .with_ymd_and_hms(2026, 10, 15, 12, 0, 0)
        .single()
        .expect("fixed time");
    Run::begin(&index, "kv-late", 7, october)
        .capture(Secrets, "app-secret", 1)
        .finish(RunStatus::Completed);
    Run::begin(&index, "kv-late", 8, utc(28, 12, 0))
        .capture(Secrets, "app-config", 2)
        .finish(RunStatus::Completed);
    for (at, depth, ok, detail) in [
        (utc(30, 3, 0), VerificationDepth::Quick, true, "5 blobs ok"),
        (
            utc(20, 4, 0),
            VerificationDepth::Deep,
            false,
            "1 of 5 blobs damaged: objects/kv-prod/keys/signing-key/1795572030.age",
        ),
    ] {
        index
            .record_verification(&VerificationRecord {
                vault: "kv-prod".parse().expect("vault"),
                at: at.timestamp(),
                depth,
                ok,
                detail: detail.into(),
            })
            .expect("verification");
    }
    index
}

fn report() -> Report {
    build_report(&fixture(), &config().vaults, now()).expect("report")
}

#[test]
fn the_json_report_matches_its_golden_copy() {
    let json = serde_json::to_string_pretty(&report()).expect("json");
    insta::assert_snapshot!("report_json", json);
}

#[test]
fn every_csv_section_matches_its_golden_copy() {
    let report = report();
    for section in Section::ALL {
        let text = csv::render(&report, section).expect("csv");
        assert!(text.ends_with("\r\n"), "RFC 4180 line ends: {text:?}");
        insta::assert_snapshot!(format!("csv_{}", section.as_str()), text);
    }
}

#[test]
fn what_an_operator_reads_first_is_right() {
    let report = report();
    let [prod, late, empty] = [&report.vaults[0], &report.vaults[1], &report.vaults[2]];
    assert_eq!(report.report_format, 1);

    // kv-prod: six points, newest this morning; the 27th failed and is not counted.
    assert_eq!(prod.restore_points.count, 6);
    assert_eq!(prod.restore_points.by_status.failed, 1);
    assert_eq!(prod.rpo.status, RpoStatus::Ok, "{}", prod.rpo.reason);
    assert_eq!(prod.rpo.age_seconds, Some(10 * 3_600));
    assert_eq!(prod.rpo.period_seconds, Some(86_400));
    // The certificate fails since the 28th, in three runs; the new secret was never captured.
    let objects = &prod.coverage.objects;
    let cert = objects
        .iter()
        .find(|o| o.kind == ObjectKind::Certificates)
        .expect("the failing certificate");
    assert_eq!(
        (cert.name.as_str(), cert.state, cert.failed_runs),
        ("tls-cert", "failing", Some(3))
    );
    assert_eq!(cert.failing_since, Some(utc(28, 2, 0).timestamp() + 40));
    let new = objects
        .iter()
        .find(|o| o.kind == ObjectKind::Secrets)
        .expect("the new secret");
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(
        (new.name.as_str(), new.state),
        ("New-Secret", "never_captured")
    );
    assert_eq!(new.error_kind.as_deref(), Some("throttled"));
    assert_eq!(prod.coverage.many_versions[0].versions, 460);
    // keep_daily 3 keeps the 28th to the 30th; the failed 27th and the two before go.
    assert_eq!(prod.expirations.forgotten_points, 3);
    assert_eq!(prod.expirations.by_reason.len(), 2);
    assert_eq!(
        prod.verification.deep.as_ref().map(|d| d.result),
        Some("problems")
    );
    assert!(prod.verification.drill.is_none());

    // kv-late: two days without a point on a six-hourly schedule.
    assert_eq!(late.rpo.status, RpoStatus::Late, "{}", late.rpo.reason);
    assert_eq!(late.restore_points.policy, "none: keeping everything");
    // Two blobs stored, one of them captured in the last 30 days.
    assert_eq!(late.storage.blobs, 2);
    assert_eq!(late.storage.growth_30d.captures, 1);
    assert_eq!(late.storage.growth_30d.stored_bytes, 1_200);
    // kv-empty: nothing at all.
    assert_eq!(empty.rpo.status, RpoStatus::Never);
    assert_eq!(empty.restore_points.count, 0);
    assert_eq!(empty.storage.blobs, 0);
}

#[test]
fn a_csv_field_with_a_comma_or_quote_is_quoted() {
    let text = csv::render(&report(), Section::Coverage).expect("csv");
    assert!(
        text.contains(r#""Key Vault throttled the backup, ""Throttled"", retries exhausted""#),
        "{text}"
    );
}
