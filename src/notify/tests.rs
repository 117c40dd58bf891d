//! Notifications against a tiny HTTP server on 127.0.0.1 that answers with scripted statuses and
//! records what it was sent, and against `/bin/sh` for commands. The token canary checks that a
//! URL never reaches a failure, a log line or a summary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::backup::{BackupStats, ObjectFailure};
use crate::index::RunStatus;
use crate::model::{ObjectKind, ObjectName, RunId};

const CANARY: &str = "CANARY-TOKEN-9f3";

// The scripted HTTP server is shared with the daemon's end-to-end tests.
#[path = "../../tests/support/http_sink.rs"]
mod http_sink;
use http_sink::Server;

/// A private file holding `text` (as a URL file must be).
fn url_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = crate::fsutil::create_private_file(&path).expect("create");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
    path
}

fn vault(name: &str) -> VaultName {
    VaultName::from_str(name).expect("vault name")
}

fn entry(target: NotifyTarget, on: &[NotifyOutcome], timeout_secs: u64) -> NotifyConfig {
    NotifyConfig {
        target,
        on: on.iter().copied().collect(),
        timeout: Duration::from_secs(timeout_secs),
        vaults: None,
    }
}

fn report(status: RunStatus) -> BackupReport {
    let failures: Vec<ObjectFailure> = (0..25)
        .map(|i| ObjectFailure {
            kind: ObjectKind::Secrets,
            name: ObjectName::from_str(&format!("db-password-{i}")).expect("name"),
            error_kind: "forbidden".into(),
            message: "the identity lacks the backup permission on secrets".into(),
        })
        .collect();
    BackupReport {
        vault: vault("kv1"),
        run: RunId::from_str("00000000000000ab").expect("run id"),
        status,
        started_at: 1_764_806_400,
        finished_at: 1_764_806_461,
        manifest: None,
        stats: BackupStats {
            captured_objects: 7,
            unchanged_objects: 3,
            deleted_objects: 1,
            skipped_objects: 2,
            failed_objects: 25,
            uploaded_bytes: 4_096,
            backup_calls: 32,
        },
        failures: if status == RunStatus::PartiallyFailed {
            failures
        } else {
            Vec::new()
        },
        error: (status == RunStatus::Failed).then(|| "the store cannot be reached".to_string()),
        held_elsewhere: None,
    }
}

fn notifier(configs: &[NotifyConfig]) -> Notifier {
    Notifier::new(configs, Notifier::http_client().expect("client"))
        .with_retry_base(Duration::from_millis(10))
        .with_host("test-host")
}

const FAILURES: [NotifyOutcome; 2] = [NotifyOutcome::Partial, NotifyOutcome::Failure];

#[tokio::test]
async fn a_webhook_receives_the_summary_as_json() {
    let server = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hook", &format!("{}\n", server.url("/hook")));
    let n = notifier(&[entry(
        NotifyTarget::Webhook { url_file: file },
        &FAILURES,
        10,
    )]);

    let failures = n.run_finished(&report(RunStatus::PartiallyFailed)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("POST", "/hook")
    );
    assert!(seen[0].headers.contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("json body");
    assert_eq!(json["summary_format"], 1);
    assert_eq!(json["vault"], "kv1");
    assert_eq!(json["run_id"], "00000000000000ab");
    assert_eq!(json["status"], "partially_failed");
    assert_eq!(json["outcome"], "partial");
    assert_eq!(json["started_at"], "2025-12-04T00:00:00Z");
    assert_eq!(json["finished_at"], "2025-12-04T00:01:01Z");
    assert_eq!(
        json["counts"],
        serde_json::json!({
            "captured_objects": 7, "unchanged_objects": 3, "deleted_objects": 1,
            "skipped_objects": 2, "failed_objects": 25, "uploaded_bytes": 4096
        })
    );
    let listed = json["failures"].as_array().expect("failures");
    assert_eq!(listed.len(), MAX_LISTED_FAILURES);
    assert_eq!(json["failures_omitted"], 5);
    assert_eq!(
        listed[0],
        serde_json::json!({
            "kind": "secrets", "name": "db-password-0", "error_kind": "forbidden",
            "message": "the identity lacks the backup permission on secrets"
        })
    );
    assert_eq!(json["error"], serde_json::Value::Null);
    assert_eq!(json["host"], "test-host");
    assert_eq!(json["kvkeep_version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn only_entries_whose_outcomes_and_vaults_match_are_sent() {
    let server = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hook", &server.url("/hook"));
    let hook = |on: &[NotifyOutcome]| {
        entry(
            NotifyTarget::Webhook {
                url_file: file.clone(),
            },
            on,
            10,
        )
    };
    let mut other_vault = hook(&[NotifyOutcome::Failure]);
    other_vault.vaults = Some(BTreeSet::from([vault("kv-other")]));
    let n = notifier(&[hook(&[NotifyOutcome::Failure]), other_vault]);

    assert!(n
        .run_finished(&report(RunStatus::Completed))
        .await
        .is_empty());
    assert!(n
        .run_finished(&report(RunStatus::PartiallyFailed))
        .await
        .is_empty());
    assert!(
        server.seen().is_empty(),
        "success and partial are not in on = [failure]"
    );
    assert!(n
        .run_finished(&report(RunStatus::Interrupted))
        .await
        .is_empty());
    assert_eq!(
        server.seen().len(),
        1,
        "interrupted is a failure; kv1 is not kv-other"
    );
    let json: serde_json::Value = serde_json::from_slice(&server.seen()[0].body).expect("json");
    assert_eq!(json["outcome"], "failure");
    assert!(n.run_started(&vault("kv1")).await.is_empty());
    assert_eq!(
        server.seen().len(),
        1,
        "webhooks hear of finished runs only"
    );
}

#[tokio::test]
async fn a_webhook_is_retried_after_server_errors() {
    let server = Server::start(&[500, 503, 200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hook", &server.url("/hook"));
    let n = notifier(&[entry(
        NotifyTarget::Webhook { url_file: file },
        &FAILURES,
        10,
    )]);
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_receiver_asking_to_retry_later_than_the_timeout_is_not_hammered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start_with_headers(&[429, 200], Duration::ZERO, "retry-after: 3600\r\n").await;
    let file = url_file(dir.path(), "hook-429", &server.url("/hook"));
    let n = notifier(&[entry(
        NotifyTarget::Webhook { url_file: file },
        &FAILURES,
        10,
    )]);
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    // Without Retry-After the backoff would have tried again at once and been delivered.
    assert_eq!(server.seen().len(), 1);
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].error.contains("retry after 1h"),
        "{}",
        failures[0].error
    );
}

#[tokio::test]
async fn a_webhook_gives_up_after_three_retries_and_never_retries_a_client_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (statuses, requests, phrase) in [
        (vec![500], 4, "HTTP 500"),
        (vec![429], 4, "HTTP 429"),
        (vec![400], 1, "HTTP 400"),
        (vec![404], 1, "not retried"),
    ] {
        let server = Server::start(&statuses, Duration::ZERO).await;
        let file = url_file(
            dir.path(),
            &format!("hook-{}", statuses[0]),
            &server.url("/hook"),
        );
        let n = notifier(&[entry(
            NotifyTarget::Webhook { url_file: file },
            &FAILURES,
            10,
        )]);
        let failures = n.run_finished(&report(RunStatus::Failed)).await;
        assert_eq!(server.seen().len(), requests, "{statuses:?}");
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].notifier, "webhook[0]");
        assert!(failures[0].error.contains(phrase), "{}", failures[0].error);
        assert!(
            !failures[0].error.contains("/hook"),
            "{}",
            failures[0].error
        );
    }
}

#[tokio::test]
async fn a_slow_receiver_fails_at_its_timeout_without_holding_up_the_others() {
    let slow = Server::start(&[200], Duration::from_secs(30)).await;
    let fast = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let slow_file = url_file(dir.path(), "slow", &slow.url("/slow"));
    let fast_file = url_file(dir.path(), "fast", &fast.url("/fast"));
    let n = notifier(&[
        entry(
            NotifyTarget::Webhook {
                url_file: slow_file,
            },
            &FAILURES,
            1,
        ),
        entry(
            NotifyTarget::Ping {
                url_file: fast_file,
            },
            &FAILURES,
            10,
        ),
    ]);
    let started = std::time::Instant::now();
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].notifier, "webhook[0]");
    assert!(
        failures[0].error.contains("timed out after 1s"),
        "{}",
        failures[0].error
    );
    assert_eq!(fast.seen().len(), 1);
}

#[tokio::test]
async fn a_command_gets_the_summary_on_stdin_and_the_outcome_in_its_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("summary.json");
    let script = format!(
        "cat > '{}' && printf '%s %s' \"$KVKEEP_VAULT\" \"$KVKEEP_OUTCOME\" > '{}.env'",
        out.display(),
        out.display()
    );
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    let n = notifier(&[entry(NotifyTarget::Command { argv }, &FAILURES, 10)]);
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("written")).expect("json");
    assert_eq!(json["vault"], "kv1");
    assert_eq!(json["status"], "failed");
    assert_eq!(json["error"], "the store cannot be reached");
    let env = std::fs::read_to_string(format!("{}.env", out.display())).expect("env");
    assert_eq!(env, "kv1 failure");
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_status_and_first_stderr_line() {
    let script = format!(
        "echo; echo 'pager refused: {}' >&2; echo second >&2; exit 3",
        "x".repeat(400)
    );
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    let n = notifier(&[
        entry(
            NotifyTarget::Webhook {
                url_file: "/nonexistent/hook".into(),
            },
            &[NotifyOutcome::Success],
            10,
        ),
        entry(NotifyTarget::Command { argv }, &FAILURES, 10),
    ]);
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].notifier, "command[1]");
    let error = &failures[0].error;
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("pager refused: xxx"), "{error}");
    assert!(!error.contains("second"), "only the first line: {error}");
    assert!(error.chars().count() < 300, "bounded: {error}");
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("finished");
    let script = format!("sleep 5; touch '{}'", marker.display());
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    let n = notifier(&[entry(NotifyTarget::Command { argv }, &FAILURES, 1)]);
    let started = std::time::Instant::now();
    let failures = n.run_finished(&report(RunStatus::Failed)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].error.contains("timed out after 1s"),
        "{}",
        failures[0].error
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!marker.exists(), "the command was not killed");
}

#[tokio::test]
async fn a_ping_hits_start_success_and_fail_paths() {
    let server = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hc", &server.url("/ping/0a1b2c?create=1"));
    let all = NotifyOutcome::ALL;
    let mut failures_only = entry(
        NotifyTarget::Ping {
            url_file: file.clone(),
        },
        &[NotifyOutcome::Failure],
        10,
    );
    failures_only.vaults = Some(BTreeSet::from([vault("kv-other")]));
    let n = notifier(&[
        entry(NotifyTarget::Ping { url_file: file }, &all, 10),
        failures_only,
    ]);

    assert!(n.run_started(&vault("kv1")).await.is_empty());
    for status in [
        RunStatus::Completed,
        RunStatus::PartiallyFailed,
        RunStatus::Failed,
    ] {
        assert!(n.run_finished(&report(status)).await.is_empty());
    }
    let targets: Vec<(String, String)> = server
        .seen()
        .into_iter()
        .map(|s| (s.method, s.target))
        .collect();
    let get = |t: &str| ("GET".to_string(), t.to_string());
    assert_eq!(
        targets,
        [
            get("/ping/0a1b2c/start?create=1"),
            get("/ping/0a1b2c?create=1"),
            get("/ping/0a1b2c/fail?create=1"),
            get("/ping/0a1b2c/fail?create=1"),
        ]
    );
}

#[tokio::test]
async fn a_ping_is_retried_once() {
    let server = Server::start(&[502], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hc", &server.url("/ping/0a1b2c"));
    let n = notifier(&[entry(
        NotifyTarget::Ping { url_file: file },
        &NotifyOutcome::ALL,
        10,
    )]);
    let failures = n.run_started(&vault("kv1")).await;
    assert_eq!(server.seen().len(), 2);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].notifier, "ping[0]");
}

#[tokio::test]
async fn url_files_are_checked_when_sending() {
    let server = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let loose = url_file(dir.path(), "loose", &server.url("/hook"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let cases = [
        (loose, "chmod 600"),
        (dir.path().join("missing"), "cannot read url_file"),
        (url_file(dir.path(), "empty", "\n"), "empty"),
        (
            url_file(
                dir.path(),
                "plain",
                "http://hooks.example.com/CANARY-TOKEN-9f3",
            ),
            "must use https",
        ),
        (
            url_file(dir.path(), "garbage", "CANARY-TOKEN-9f3"),
            "does not hold a URL",
        ),
        (
            url_file(
                dir.path(),
                "two",
                "https://a.example/x\nhttps://b.example/CANARY-TOKEN-9f3",
            ),
            "one URL",
        ),
        (
            url_file(dir.path(), "ftp", "ftp://files.example/CANARY-TOKEN-9f3"),
            "https URL",
        ),
    ];
    for (file, phrase) in cases {
        let n = notifier(&[entry(
            NotifyTarget::Webhook {
                url_file: file.clone(),
            },
            &FAILURES,
            10,
        )]);
        let failures = n.run_finished(&report(RunStatus::Failed)).await;
        assert_eq!(failures.len(), 1, "{}", file.display());
        assert!(
            failures[0].error.contains(phrase),
            "{phrase}: {}",
            failures[0].error
        );
        assert!(!failures[0].error.contains(CANARY), "{}", failures[0].error);
    }
    assert!(
        server.seen().is_empty(),
        "nothing is sent to a URL from a loose file"
    );
}

#[test]
fn only_loopback_hosts_may_use_plain_http() {
    for ok in [
        "https://hooks.example.com/x",
        "http://127.0.0.1:8080/x",
        "http://127.8.9.10/x",
        "http://[::1]:9/x",
        "http://LOCALHOST/x",
    ] {
        assert!(http::parse_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://10.0.0.1/x",
        "http://localhost.example.com/x",
        "http://[::2]/x",
        "file:///etc/hook",
    ] {
        assert!(http::parse_url(bad).is_err(), "{bad}");
    }
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The token in a URL file reaches neither a failure, a log line at any level, nor a summary —
/// whether the receiver refuses, cannot be reached, or does not answer in time.
#[tokio::test]
async fn the_token_in_a_url_never_reaches_failures_logs_or_summaries() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let refusing = Server::start(&[400], Duration::ZERO).await;
    let failing = Server::start(&[500], Duration::ZERO).await;
    let silent = Server::start(&[200], Duration::from_secs(30)).await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let summary_sink = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_url = |base: String| format!("{base}/hook/{CANARY}?token={CANARY}");
    let files = [
        url_file(dir.path(), "refusing", &token_url(refusing.url(""))),
        url_file(dir.path(), "failing", &token_url(failing.url(""))),
        url_file(dir.path(), "silent", &token_url(silent.url(""))),
        url_file(dir.path(), "closed", &token_url(format!("http://{closed}"))),
    ];
    let mut configs: Vec<NotifyConfig> = files
        .iter()
        .map(|f| {
            entry(
                NotifyTarget::Webhook {
                    url_file: f.clone(),
                },
                &FAILURES,
                2,
            )
        })
        .collect();
    configs.extend(files.iter().map(|f| {
        entry(
            NotifyTarget::Ping {
                url_file: f.clone(),
            },
            &FAILURES,
            2,
        )
    }));
    let out = summary_sink.path().join("summary.json");
    configs.push(entry(
        NotifyTarget::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("cat > '{}'; exit 1", out.display()),
            ],
        },
        &FAILURES,
        10,
    ));
    let n = notifier(&configs);

    let mut failures = n.run_started(&vault("kv1")).await;
    failures.extend(n.run_finished(&report(RunStatus::PartiallyFailed)).await);
    assert_eq!(failures.len(), configs.len(), "{failures:#?}");
    assert!(
        refusing.seen().iter().all(|s| s.target.contains(CANARY)),
        "the token was sent"
    );
    for f in &failures {
        assert!(
            !f.error.contains(CANARY) && !f.error.contains("/hook"),
            "{f:?}"
        );
    }
    for s in refusing.seen().iter().chain(&failing.seen()) {
        assert!(
            !String::from_utf8_lossy(&s.body).contains(CANARY),
            "in a summary"
        );
    }
    let summary = std::fs::read_to_string(&out).expect("summary");
    assert!(!summary.contains(CANARY), "{summary}");
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("lock")).to_string();
    assert!(
        logs.contains("notification failed"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains("webhook[0]") && logs.contains("ping[7]"),
        "{logs}"
    );
    assert!(!logs.contains(CANARY), "{logs}");
}

/// The daemon runs notifications on its own tasks: the notifier and its futures must be `Send`.
#[tokio::test]
async fn notifications_can_run_on_a_spawned_task() {
    let server = Server::start(&[200], Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = url_file(dir.path(), "hook", &server.url("/hook"));
    let n = Arc::new(notifier(&[entry(
        NotifyTarget::Webhook { url_file: file },
        &FAILURES,
        10,
    )]));
    let task = tokio::spawn({
        let n = n.clone();
        async move { n.run_finished(&report(RunStatus::Failed)).await }
    });
    assert!(task.await.expect("joined").is_empty());
    assert_eq!(server.seen().len(), 1);
    assert_eq!(n.names().collect::<Vec<_>>(), ["webhook[0]"]);
}
