//! Tests of [`super::DaemonMetrics`]: each asserts lines a Prometheus user would see in the
//! exposition, in the exact format `prometheus-client` writes.

use std::sync::Arc;

use super::*;
use crate::backup::plan::{ListedObject, UnchangedObject};
use crate::backup::BackupStats;
use crate::index::LastCapture;
use crate::model::RunId;
use crate::retention::{Deferred, PruneOutcome, PrunePlan, RetentionDecision};

fn vault(name: &str) -> VaultName {
    name.parse().expect("vault name")
}

fn report(vault_name: &str, status: RunStatus, started_at: i64, finished_at: i64) -> BackupReport {
    BackupReport {
        vault: vault(vault_name),
        run: RunId::random(),
        status,
        started_at,
        finished_at,
        manifest: None,
        stats: BackupStats {
            uploaded_bytes: 1000,
            ..BackupStats::default()
        },
        failures: Vec::new(),
        error: None,
        held_elsewhere: None,
    }
}

fn unchanged(kind: ObjectKind, name: &str) -> UnchangedObject {
    UnchangedObject {
        object: ListedObject {
            kind,
            name: name.parse().expect("object name"),
            version: None,
            updated: Some(1_700_000_000),
            enabled: true,
            tags: Default::default(),
            content_type: None,
            validity: Default::default(),
        },
        current_version: "0123456789abcdef0123456789abcdef".parse().expect("version"),
        updated: 1_700_000_000,
        last: LastCapture {
            current_version: "0123456789abcdef0123456789abcdef".parse().expect("version"),
            updated: 1_700_000_000,
            captured_at: 1_700_000_010,
            blob: "objects/kv1/secrets/x/20270115T080000Z-0123456789abcdef.age"
                .parse()
                .expect("blob key"),
            last_deep_scan: None,
        },
        deep_scanned: false,
    }
}

fn plan(vault_name: &str, unchanged: Vec<UnchangedObject>) -> BackupPlan {
    BackupPlan {
        vault: vault(vault_name),
        planned_at: 1_700_000_000,
        changed: Vec::new(),
        unchanged,
        gone: Vec::new(),
        skipped: Vec::new(),
    }
}

/// The exposition's sample lines (no `#` comments).
fn samples(metrics: &DaemonMetrics) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn assert_has(metrics: &DaemonMetrics, line: &str) {
    let samples = samples(metrics);
    assert!(
        samples.iter().any(|l| l == line),
        "missing {line:?} in:\n{}",
        samples.join("\n")
    );
}

fn assert_no_series(metrics: &DaemonMetrics, needle: &str) {
    let samples = samples(metrics);
    let found: Vec<_> = samples.iter().filter(|l| l.contains(needle)).collect();
    assert!(found.is_empty(), "unexpected {needle:?} in {found:#?}");
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("timestamp")
}

#[test]
fn runs_are_counted_by_status_and_the_last_status_switches() {
    let metrics = DaemonMetrics::new();
    metrics.run_finished(&report(
        "kv1",
        RunStatus::Completed,
        1_700_000_000,
        1_700_000_042,
    ));
    assert_has(
        &metrics,
        r#"kvkeep_runs_total{vault="kv1",status="completed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="completed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="failed"} 0"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_success_timestamp_seconds{vault="kv1"} 1700000042"#,
    );

    metrics.run_finished(&report(
        "kv1",
        RunStatus::Failed,
        1_700_003_600,
        1_700_003_605,
    ));
    assert_has(
        &metrics,
        r#"kvkeep_runs_total{vault="kv1",status="completed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_runs_total{vault="kv1",status="failed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="completed"} 0"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="failed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="partially_failed"} 0"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="interrupted"} 0"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_success_timestamp_seconds{vault="kv1"} 1700000042"#,
    );
    assert_has(&metrics, r#"kvkeep_uploaded_bytes_total{vault="kv1"} 2000"#);
    assert_has(
        &metrics,
        r#"kvkeep_run_duration_seconds_count{vault="kv1"} 2"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_run_duration_seconds_sum{vault="kv1"} 47.0"#,
    );
    // 5 s falls in the 5 s bucket, 42 s first in the 60 s one.
    assert_has(
        &metrics,
        r#"kvkeep_run_duration_seconds_bucket{le="5.0",vault="kv1"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_run_duration_seconds_bucket{le="30.0",vault="kv1"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_run_duration_seconds_bucket{le="60.0",vault="kv1"} 2"#,
    );
}

#[test]
fn a_partially_failed_run_is_not_a_success() {
    let metrics = DaemonMetrics::new();
    metrics.run_finished(&report("kv1", RunStatus::Completed, 100, 110));
    metrics.run_finished(&report("kv1", RunStatus::PartiallyFailed, 200, 210));
    assert_has(
        &metrics,
        r#"kvkeep_last_success_timestamp_seconds{vault="kv1"} 110"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_last_run_status{vault="kv1",status="partially_failed"} 1"#,
    );

    let never = DaemonMetrics::new();
    never.run_finished(&report("kv2", RunStatus::PartiallyFailed, 200, 210));
    assert_no_series(&never, "kvkeep_last_success_timestamp_seconds");
}

#[test]
fn the_last_success_is_seeded_from_history_but_never_moved_back() {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.seed_last_success(&kv1, at(1_700_000_000));
    assert_has(
        &metrics,
        r#"kvkeep_last_success_timestamp_seconds{vault="kv1"} 1700000000"#,
    );
    metrics.run_finished(&report(
        "kv1",
        RunStatus::Completed,
        1_700_000_100,
        1_700_000_110,
    ));
    metrics.seed_last_success(&kv1, at(1_600_000_000));
    assert_has(
        &metrics,
        r#"kvkeep_last_success_timestamp_seconds{vault="kv1"} 1700000110"#,
    );
}

#[test]
fn objects_are_counted_by_kind_and_outcome() {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.plan_ready(&plan(
        "kv1",
        vec![
            unchanged(ObjectKind::Secrets, "s1"),
            unchanged(ObjectKind::Secrets, "s2"),
            unchanged(ObjectKind::Certificates, "c1"),
        ],
    ));
    metrics.object_done(&kv1, ObjectKind::Keys, true);
    metrics.object_done(&kv1, ObjectKind::Keys, true);
    metrics.object_done(&kv1, ObjectKind::Keys, false);
    metrics.object_done(&kv1, ObjectKind::Secrets, true);
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="keys",outcome="captured"} 2"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="keys",outcome="failed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="secrets",outcome="captured"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="secrets",outcome="unchanged"} 2"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="certificates",outcome="unchanged"} 1"#,
    );
    assert_no_series(&metrics, r#"kind="keys",outcome="unchanged""#);
}

#[test]
fn metrics_progress_feeds_a_run_into_the_metrics() {
    let metrics = Arc::new(DaemonMetrics::new());
    let progress: Arc<dyn Progress> = Arc::new(MetricsProgress::new(metrics.clone()));
    progress.planned(&plan("kv1", vec![unchanged(ObjectKind::Secrets, "s1")]));
    progress.object_done(
        &vault("kv1"),
        ObjectKind::Keys,
        &"k1".parse().expect("name"),
        false,
    );
    progress.finished(&report("kv1", RunStatus::PartiallyFailed, 100, 110));
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="secrets",outcome="unchanged"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_objects_total{vault="kv1",kind="keys",outcome="failed"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_runs_total{vault="kv1",status="partially_failed"} 1"#,
    );
}

#[test]
fn running_totals_become_counters_that_survive_a_reset_of_their_source() {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.observe_requests(
        &kv1,
        RequestCounters {
            throttled: 3,
            retries: 4,
        },
    );
    metrics.observe_requests(
        &kv1,
        RequestCounters {
            throttled: 5,
            retries: 4,
        },
    );
    assert_has(
        &metrics,
        r#"kvkeep_throttled_requests_total{vault="kv1"} 5"#,
    );
    assert_has(&metrics, r#"kvkeep_request_retries_total{vault="kv1"} 4"#);
    // A new rate limiter (a reload) starts from zero: its counts add to, not replace, the
    // counter, which must never go down.
    metrics.observe_requests(
        &kv1,
        RequestCounters {
            throttled: 1,
            retries: 2,
        },
    );
    assert_has(
        &metrics,
        r#"kvkeep_throttled_requests_total{vault="kv1"} 6"#,
    );
    assert_has(&metrics, r#"kvkeep_request_retries_total{vault="kv1"} 6"#);

    metrics.observe_skipped_ticks(&kv1, 2);
    metrics.observe_skipped_ticks(&kv1, 2);
    metrics.observe_skipped_ticks(&kv1, 3);
    assert_has(&metrics, r#"kvkeep_skipped_ticks_total{vault="kv1"} 3"#);
}

#[test]
fn schedule_verify_and_notification_series() {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.set_next_run(&kv1, Some(at(1_700_003_600)));
    assert_has(
        &metrics,
        r#"kvkeep_next_run_timestamp_seconds{vault="kv1"} 1700003600"#,
    );
    metrics.set_next_run(&kv1, None);
    assert_no_series(&metrics, "kvkeep_next_run_timestamp_seconds");

    metrics.verify_finished(&kv1, at(1_700_000_100), true);
    assert_has(
        &metrics,
        r#"kvkeep_last_verify_timestamp_seconds{vault="kv1"} 1700000100"#,
    );
    assert_has(&metrics, r#"kvkeep_last_verify_success{vault="kv1"} 1"#);
    metrics.verify_finished(&kv1, at(1_700_000_200), false);
    assert_has(
        &metrics,
        r#"kvkeep_last_verify_timestamp_seconds{vault="kv1"} 1700000200"#,
    );
    assert_has(&metrics, r#"kvkeep_last_verify_success{vault="kv1"} 0"#);

    metrics.notification_failed(&kv1, "webhook");
    metrics.notification_failed(&kv1, "webhook");
    metrics.notification_failed(&kv1, "command");
    assert_has(
        &metrics,
        r#"kvkeep_notifications_failed_total{vault="kv1",notifier="webhook"} 2"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_notifications_failed_total{vault="kv1",notifier="command"} 1"#,
    );
}

#[test]
fn build_info_names_the_version() {
    let metrics = DaemonMetrics::new();
    let text = metrics.encode();
    assert!(text.contains("# TYPE kvkeep_build_info gauge\n"), "{text}");
    assert_has(
        &metrics,
        &format!(
            "kvkeep_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF: {text}"
    );
}

/// Every metric, with every family holding a series.
fn every_metric() -> DaemonMetrics {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.plan_ready(&plan("kv1", vec![unchanged(ObjectKind::Secrets, "s1")]));
    metrics.object_done(&kv1, ObjectKind::Keys, true);
    metrics.run_finished(&report("kv1", RunStatus::Completed, 100, 110));
    metrics.set_next_run(&kv1, Some(at(1_700_003_600)));
    metrics.verify_finished(&kv1, at(1_700_000_100), true);
    metrics.observe_skipped_ticks(&kv1, 1);
    metrics.observe_requests(
        &kv1,
        RequestCounters {
            throttled: 1,
            retries: 1,
        },
    );
    metrics.notification_failed(&kv1, "webhook");
    metrics.prune_finished(&kv1, &Ok(pruned("kv1", 3, 7, 4096, 1, false)));
    metrics.prune_finished(&kv1, &Err("the store refused".into()));
    metrics.backup_skipped(&kv1);
    metrics.vault_taken_over(&kv1);
    metrics.report_finished(Some(at(1_700_000_200)));
    metrics
}

/// What a prune of `vault_name` did: points forgotten, blobs and bytes deleted, deletes left.
fn pruned(
    vault_name: &str,
    points: usize,
    blobs: usize,
    bytes: u64,
    deferred: usize,
    interrupted: bool,
) -> PruneOutcome {
    let later = Deferred {
        blob: "objects/kv1/secrets/s1/1-r.age".into(),
        reason: "refused: the blob is under an immutability policy".into(),
    };
    PruneOutcome {
        plan: PrunePlan {
            vault: vault(vault_name),
            policy_empty: false,
            decision: RetentionDecision { points: Vec::new() },
            forget_manifests: Vec::new(),
            freed_blobs: 0,
            freed_bytes: bytes,
        },
        forgotten_points: points,
        deleted_manifests: points,
        swept_runs: 0,
        deleted_blobs: blobs,
        freed_bytes: bytes,
        postponed: vec![later; deferred],
        failed: Vec::new(),
        interrupted,
    }
}

#[test]
fn prunes_count_points_blobs_and_bytes_and_what_they_left_or_failed() {
    let metrics = DaemonMetrics::new();
    let kv1 = vault("kv1");
    metrics.prune_finished(&kv1, &Ok(pruned("kv1", 3, 7, 4096, 2, false)));
    metrics.prune_finished(&kv1, &Ok(pruned("kv1", 1, 2, 100, 0, true)));
    metrics.prune_finished(&kv1, &Err("vault kv1 is in use".into()));
    assert_has(&metrics, r#"kvkeep_pruned_points_total{vault="kv1"} 4"#);
    assert_has(&metrics, r#"kvkeep_pruned_blobs_total{vault="kv1"} 9"#);
    assert_has(&metrics, r#"kvkeep_pruned_bytes_total{vault="kv1"} 4196"#);
    assert_has(
        &metrics,
        r#"kvkeep_prune_deferred_deletes_total{vault="kv1"} 2"#,
    );
    // The stopped prune and the one that could not start.
    assert_has(&metrics, r#"kvkeep_prune_failures_total{vault="kv1"} 2"#);
}

#[test]
fn backups_held_by_another_instance_are_counted_apart_from_runs() {
    let metrics = DaemonMetrics::new();
    metrics.backup_skipped(&vault("kv1"));
    metrics.backup_skipped(&vault("kv1"));
    assert_has(
        &metrics,
        r#"kvkeep_backups_held_elsewhere_total{vault="kv1"} 2"#,
    );
    assert_no_series(&metrics, "kvkeep_runs_total{");
}

#[test]
fn takeovers_are_counted_per_vault() {
    let metrics = DaemonMetrics::new();
    metrics.vault_taken_over(&vault("kv1"));
    assert_has(&metrics, r#"kvkeep_vault_takeovers_total{vault="kv1"} 1"#);
    assert_no_series(&metrics, r#"kvkeep_vault_takeovers_total{vault="kv2"}"#);
}

#[test]
fn report_writes_set_their_time_and_failures_are_counted() {
    let metrics = DaemonMetrics::new();
    metrics.report_finished(Some(at(1_700_000_000)));
    metrics.report_finished(None);
    metrics.report_finished(Some(at(1_700_000_600)));
    assert_has(
        &metrics,
        "kvkeep_report_written_timestamp_seconds 1700000600",
    );
    assert_has(&metrics, "kvkeep_report_failures_total 1");
}

#[test]
fn the_readme_documents_every_metric_with_its_type() {
    let readme = include_str!("../../README.md");
    let text = every_metric().encode();
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(families.len(), 23, "{text}");
    for (name, kind) in families {
        // The TYPE line names a counter without the `_total` its samples carry.
        let name = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let row = format!("| `{name}` | {kind} |");
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}

#[test]
fn forget_vault_removes_every_series_of_that_vault_only() {
    let metrics = DaemonMetrics::new();
    for name in ["kv1", "kv2"] {
        let v = vault(name);
        metrics.plan_ready(&plan(name, vec![unchanged(ObjectKind::Secrets, "s1")]));
        for kind in ObjectKind::ALL {
            metrics.object_done(&v, kind, true);
            metrics.object_done(&v, kind, false);
        }
        metrics.run_finished(&report(name, RunStatus::Completed, 100, 110));
        metrics.run_finished(&report(name, RunStatus::Interrupted, 200, 210));
        metrics.set_next_run(&v, Some(at(1_700_003_600)));
        metrics.verify_finished(&v, at(1_700_000_100), true);
        metrics.observe_skipped_ticks(&v, 1);
        metrics.observe_requests(
            &v,
            RequestCounters {
                throttled: 1,
                retries: 1,
            },
        );
        metrics.notification_failed(&v, "webhook");
        metrics.prune_finished(&v, &Ok(pruned(name, 1, 1, 1, 1, false)));
        metrics.prune_finished(&v, &Err("failed".into()));
        metrics.backup_skipped(&v);
    }
    metrics.forget_vault(&vault("kv1"));
    assert_no_series(&metrics, r#"vault="kv1""#);
    let kv2 = samples(&metrics)
        .iter()
        .filter(|l| l.contains(r#"vault="kv2""#))
        .count();
    // 1 last success, 4 last statuses, 2 runs, 7 objects, 2 request counters, 15 histogram
    // lines, 1 upload, 1 next run, 2 verify, 1 skipped, 1 notification, 5 prune counters,
    // 1 held elsewhere.
    assert_eq!(kv2, 43, "kv2 keeps its series");

    // Series the vault gets again start from zero.
    metrics.observe_requests(
        &vault("kv1"),
        RequestCounters {
            throttled: 4,
            retries: 0,
        },
    );
    assert_has(
        &metrics,
        r#"kvkeep_throttled_requests_total{vault="kv1"} 4"#,
    );
}

#[test]
fn a_late_start_lands_in_its_delay_bucket_and_goes_with_its_vault() {
    let metrics = DaemonMetrics::new();
    metrics.backup_started(&vault("kv1"), std::time::Duration::from_millis(30));
    metrics.backup_started(&vault("kv1"), std::time::Duration::from_secs(2));
    assert_has(
        &metrics,
        r#"kvkeep_start_delay_seconds_count{vault="kv1"} 2"#,
    );
    // 30 ms first fits the 50 ms bucket; 2 s the 5 s one.
    assert_has(
        &metrics,
        r#"kvkeep_start_delay_seconds_bucket{le="0.05",vault="kv1"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_start_delay_seconds_bucket{le="1.0",vault="kv1"} 1"#,
    );
    assert_has(
        &metrics,
        r#"kvkeep_start_delay_seconds_bucket{le="5.0",vault="kv1"} 2"#,
    );
    metrics.forget_vault(&vault("kv1"));
    assert_no_series(&metrics, "kvkeep_start_delay_seconds_count{");
}
