//! Golden tests of the report: a fixed index (three vaults, fixed times) and a fixed "now",
//! rendered as JSON and as every CSV section, compared with the snapshots committed beside this
//! file. A change to the output shows up as a snapshot diff to review, never silently.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

use super::{build_report, build_report_with, csv, Report, ReportOptions, RpoStatus, Section};
use crate::config::{Config, PayloadMode};
use crate::index::{
    CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus, VerificationDepth,
    VerificationRecord,
};
use crate::model::{BlobKey, ObjectKind, RunId, Validity};

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
        validity: None,
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

    /// A capture that recorded its current version's `nbf`/`exp` (index schema 6).
    fn capture_valid(
        &self,
        kind: ObjectKind,
        name: &str,
        versions: usize,
        validity: Validity,
    ) -> &Self {
        let c = NewCapture {
            validity: Some(validity),
            ..capture(self.vault, kind, name, versions, self.started + 30)
        };
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
/// sighting, a secret with 460 versions, and two verifications. Key Vault expiry: the key
/// expired two days ago, the password (recaptured on the 26th) expires in ten days, the
/// certificate in sixty, the busy secret never. kv-late: a point in October (before kvkeep
/// recorded expiry) and one two days old whose secret expires in twenty days, on a six-hourly
/// schedule. kv-empty: nothing at all.
pub(crate) fn fixture() -> Index {
    let index = Index::open_in_memory().expect("index");
    use ObjectKind::{Certificates, Keys, Secrets};
    let day = 86_400;
    let at = now().timestamp();
    let first = Run::begin(&index, "kv-prod", 1, utc(25, 2, 0));
    first
        .capture(Secrets, "db-password", 3)
        .capture_valid(
            Keys,
            "signing-key",
            2,
            Validity {
                not_before: Some(at - 400 * day),
                expires: Some(at - 2 * day),
            },
        )
        .capture_valid(
            Certificates,
            "tls-cert",
            1,
            Validity {
                not_before: Some(at - 30 * day),
                expires: Some(at + 60 * day),
            },
        )
        .capture_valid(Secrets, "busy-secret", 460, Validity::default());
    first.finish(RunStatus::Completed);
    Run::begin(&index, "kv-prod", 2, utc(26, 2, 0))
        .capture_valid(
            Secrets,
            "db-password",
            4,
            Validity {
                not_before: None,
                expires: Some(at + 10 * day),
            },
        )
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
    // The newest run counted what it left out; kv-late's runs predate the counts.
    index
        .write(|w| {
            w.record_skipped(
                &run_id(6),
                &crate::index::SkippedCounts {
                    managed: 2,
                    filtered: 3,
                    tagged: 1,
                },
            )
        })
        .expect("skipped counts");
    // Older than the 30-day growth window: counted in storage, not in growth.
    let october = Utc
        .with_ymd_and_hms(2026, 10, 15, 12, 0, 0)
        .single()
        .expect("fixed time");
    Run::begin(&index, "kv-late", 7, october)
        .capture(Secrets, "app-secret", 1)
        .finish(RunStatus::Completed);
    Run::begin(&index, "kv-late", 8, utc(28, 12, 0))
        .capture_valid(
            Secrets,
            "app-config",
            2,
            Validity {
                not_before: None,
                expires: Some(at + 20 * day),
            },
        )
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

#[test]
fn key_vault_expiry_lists_what_expires_within_the_window_soonest_first() {
    let report = report();
    let [prod, late, empty] = [&report.vaults[0], &report.vaults[1], &report.vaults[2]];
    let day = 86_400;
    let at = now().timestamp();

    // Default window, 30 days: the key expired two days ago comes first and is flagged; the
    // password's newest capture (the 26th, not the 25th's, which had no period recorded)
    // expires in ten days. The certificate (sixty days) and the secret without `exp` are not
    // listed, and every object in kv-prod has a known period.
    let e = &prod.key_vault_expiry;
    assert_eq!(e.within_seconds, 30 * day as u64);
    let listed: Vec<(&str, i64, bool)> = e
        .objects
        .iter()
        .map(|o| (o.name.as_str(), o.expires_at, o.expired))
        .collect();
    assert_eq!(
        listed,
        [
            ("signing-key", at - 2 * day, true),
            ("db-password", at + 10 * day, false),
        ]
    );
    assert_eq!(e.expired, 1);
    assert_eq!(e.unknown, 0);
    assert_eq!(e.objects[0].kind, ObjectKind::Keys);
    assert_eq!(e.objects[0].not_before, Some(at - 400 * day));
    assert_eq!(e.objects[0].expires_in_seconds, -2 * day);
    assert_eq!(e.objects[1].not_before, None);
    assert_eq!(e.objects[1].expires_in_seconds, 10 * day);

    // kv-late: the October secret was backed up before kvkeep recorded expiry.
    let l = &late.key_vault_expiry;
    assert_eq!(l.objects.len(), 1);
    assert_eq!(l.objects[0].name.as_str(), "app-config");
    assert_eq!(l.unknown, 1);
    assert_eq!(empty.key_vault_expiry.objects.len(), 0);
    assert_eq!(empty.key_vault_expiry.unknown, 0);

    // A wider window takes in the certificate; a zero one keeps only what is already expired.
    for (within_days, expected) in [
        (90, vec!["signing-key", "db-password", "tls-cert"]),
        (0, vec!["signing-key"]),
    ] {
        let options = ReportOptions {
            expiring_within: std::time::Duration::from_secs(within_days * day as u64),
        };
        let wider =
            build_report_with(&fixture(), &config().vaults, now(), &options).expect("report");
        let names: Vec<&str> = wider.vaults[0]
            .key_vault_expiry
            .objects
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, expected, "within {within_days}d");
    }
}
