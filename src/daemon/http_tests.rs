//! Tests of the HTTP endpoint through a real socket and a real HTTP client: the status codes,
//! bodies and headers a probe or a Prometheus scraper gets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures::FutureExt;
use tokio::task::JoinHandle;

use super::*;
use crate::backup::{BackupReport, BackupStats};
use crate::index::RunStatus;
use crate::model::RunId;

/// A readiness check that passes while `ready` is set.
fn readiness(ready: Arc<AtomicBool>) -> ReadinessCheck {
    Arc::new(move || {
        let ready = ready.load(Ordering::SeqCst);
        async move {
            if ready {
                Ok(())
            } else {
                Err("store unreachable: probe write to the container failed".to_string())
            }
        }
        .boxed()
    })
}

struct Server {
    base: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(state: HttpState) -> Server {
    let listener = bind("127.0.0.1:0")
        .await
        .expect("bind")
        .expect("a listener");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, cancel.clone()));
    Server { base, cancel, task }
}

fn state(bound: Duration, ready: Arc<AtomicBool>) -> HttpState {
    HttpState {
        health: Arc::new(Heartbeat::new(bound)),
        readiness: readiness(ready),
        metrics: Arc::new(DaemonMetrics::new()),
        report_path: Arc::new(|| None),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn get(url: &str) -> (u16, String) {
    get_with(&client(), url).await
}

async fn get_with(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn healthz_turns_503_when_the_loop_stops_beating() {
    // Long enough for a loopback request on a busy machine, short enough to wait out.
    let bound = Duration::from_millis(250);
    let state = state(bound, Arc::new(AtomicBool::new(true)));
    let health = state.health.clone();
    let server = start(state).await;
    let url = format!("{}/healthz", server.base);
    // The client is built before the beat: building it is slower than the request.
    let client = client();
    health.beat();
    assert_eq!(get_with(&client, &url).await, (200, "ok".to_string()));

    tokio::time::sleep(bound + Duration::from_millis(50)).await;
    let (status, body) = get_with(&client, &url).await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("the scheduler loop has not woken for ")
            && body.ends_with("(bound 250 ms)"),
        "{body}"
    );
    assert!(!body.contains('\n'), "one line: {body:?}");

    health.beat();
    assert_eq!(get_with(&client, &url).await, (200, "ok".to_string()));
    server.cancel.cancel();
}

#[tokio::test]
async fn readyz_reports_the_check_and_its_reason() {
    let ready = Arc::new(AtomicBool::new(true));
    let server = start(state(Duration::from_secs(60), ready.clone())).await;
    let url = format!("{}/readyz", server.base);
    assert_eq!(get(&url).await, (200, "ready".to_string()));

    ready.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&url).await,
        (
            503,
            "store unreachable: probe write to the container failed".to_string()
        )
    );
    server.cancel.cancel();
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let state = state(Duration::from_secs(60), Arc::new(AtomicBool::new(true)));
    state.metrics.run_finished(&BackupReport {
        vault: "kv1".parse().expect("vault"),
        run: RunId::random(),
        status: RunStatus::Completed,
        started_at: 100,
        finished_at: 110,
        manifest: None,
        stats: BackupStats::default(),
        failures: Vec::new(),
        error: None,
        held_elsewhere: None,
    });
    let server = start(state).await;
    let response = client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = response.text().await.expect("body");
    assert!(
        body.lines()
            .any(|l| l == r#"kvkeep_runs_total{vault="kv1",status="completed"} 1"#),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    server.cancel.cancel();
}

#[tokio::test]
async fn report_serves_the_file_says_when_there_is_none_and_follows_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.html");
    // What `[report] html_path` is in the configuration of the moment: a reload changes it.
    let configured: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let mut state = state(Duration::from_secs(60), Arc::new(AtomicBool::new(true)));
    state.report_path = {
        let configured = configured.clone();
        Arc::new(move || configured.lock().expect("lock").clone())
    };
    let server = start(state).await;
    let url = format!("{}/report", server.base);

    let (status, body) = get(&url).await;
    assert_eq!(status, 404);
    assert!(body.contains("set [report] html_path"), "{body}");

    *configured.lock().expect("lock") = Some(file.clone());
    let (status, body) = get(&url).await;
    assert_eq!(status, 503);
    assert!(body.contains("not been written yet"), "{body}");

    let page = "<!doctype html><title>kvkeep report</title><h2>kv-prod</h2>";
    std::fs::write(&file, page).expect("write");
    let response = client().get(&url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    let csp = header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(response.text().await.expect("body"), page);

    // Rewritten in place: the next request gets the new page.
    std::fs::write(&file, "<!doctype html><h2>kv-next</h2>").expect("write");
    assert_eq!(
        get(&url).await,
        (200, "<!doctype html><h2>kv-next</h2>".to_string())
    );
    server.cancel.cancel();
}

#[tokio::test]
async fn other_paths_are_404() {
    let server = start(state(
        Duration::from_secs(60),
        Arc::new(AtomicBool::new(true)),
    ))
    .await;
    let (status, _) = get(&format!("{}/nope", server.base)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{}/metrics/extra", server.base)).await;
    assert_eq!(status, 404);
    server.cancel.cancel();
}

#[tokio::test]
async fn cancel_stops_the_server_even_with_a_connection_kept_alive() {
    let server = start(state(
        Duration::from_secs(60),
        Arc::new(AtomicBool::new(true)),
    ))
    .await;
    // One client, so its connection stays open (keep-alive) after the answer.
    let client = client();
    let url = format!("{}/healthz", server.base);
    let response = client.get(&url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("body");

    server.cancel.cancel();
    // Well under the drain deadline: an idle connection does not hold the stop up.
    tokio::time::timeout(DRAIN_TIMEOUT / 2, server.task)
        .await
        .expect("serve returns once cancelled")
        .expect("serve does not panic");
    assert!(
        client.get(&url).send().await.is_err(),
        "nothing answers after the stop"
    );
}

#[tokio::test]
async fn bind_turns_off_parses_and_names_the_address_in_errors() {
    assert!(bind("").await.expect("empty is off").is_none());

    let err = bind("localhost").await.expect_err("no port");
    assert!(
        err.starts_with("invalid [daemon] listen address \"localhost\""),
        "{err}"
    );

    let taken = bind("127.0.0.1:0")
        .await
        .expect("bind")
        .expect("a listener");
    let address = taken.local_addr().expect("address");
    let err = bind(&address.to_string())
        .await
        .expect_err("the port is taken");
    assert_eq!(
        err,
        format!(
            "cannot listen on {address}: address in use; set [daemon] listen to another address \
             or \"\" to turn the endpoint off"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_readiness_check_that_hangs_is_a_503_with_a_reason() {
    let mut state = state(Duration::from_secs(60), Arc::new(AtomicBool::new(true)));
    state.readiness = Arc::new(|| futures::future::pending().boxed());
    // The handler alone, on the paused clock: the timeout passes without waiting for real.
    let response = readyz(State(state)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("body");
    assert_eq!(
        &body[..],
        b"the readiness check did not answer within 10 s".as_slice()
    );
}
