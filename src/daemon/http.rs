//! The daemon's HTTP endpoint (DESIGN §8), on loopback by default (`[daemon] listen`):
//!
//! - `GET /healthz`: 200 `ok` while the scheduler loop keeps waking up ([`Heartbeat`]); 503
//!   with the reason when it has not for longer than its bound. A liveness probe: restarting
//!   the process is the cure for a stuck loop.
//! - `GET /readyz`: 200 `ready` when the injected check (the cheap part of `kvkeep doctor`:
//!   index and store) passes, 503 with its reason otherwise. A readiness probe: the process is
//!   fine, its surroundings are not.
//! - `GET /metrics`: the [`DaemonMetrics`] as OpenMetrics text.
//! - `GET /report`: the HTML report the daemon writes to `[report] html_path`; 404 saying so
//!   when no path is configured, 503 until the first one is written.
//!
//! Anything else is 404. The server stops when the daemon's cancellation token fires.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::DaemonMetrics;

/// The content type of the OpenMetrics text format, which `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long `/readyz` waits for its check: a probe that hangs is itself a failure, and the
/// caller's own timeout would report it with no reason.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for open connections (a scrape in flight) before the server gives
/// them up; well within systemd's stop timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The scheduler loop's sign of life: [`Heartbeat::beat`] at every wake-up of the loop,
/// [`Heartbeat::check`] by `/healthz`.
#[derive(Debug)]
pub struct Heartbeat {
    /// A monotonic instant (tokio's, so paused-clock tests can move it): a wall-clock step
    /// must not make a live loop look dead. A std mutex, held for a load or a store only.
    last: Mutex<Instant>,
    bound: Duration,
}

impl Heartbeat {
    /// A heartbeat that beats now and turns stale `bound` after its last beat. The loop wakes
    /// at least every [`crate::scheduler::MAX_SLEEP`] (or the watchdog's half interval), so a
    /// bound of a few times that tells a stuck loop from a sleeping one.
    pub fn new(bound: Duration) -> Self {
        Heartbeat {
            last: Mutex::new(Instant::now()),
            bound,
        }
    }

    /// The loop is alive: called at each of its wake-ups.
    pub fn beat(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// `Ok` while the last beat is within the bound; otherwise why not, in one line.
    pub fn check(&self) -> Result<(), String> {
        let since = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if since <= self.bound {
            Ok(())
        } else {
            Err(format!(
                "the scheduler loop has not woken for {} ms (bound {} ms)",
                since.as_millis(),
                self.bound.as_millis()
            ))
        }
    }
}

/// The check behind `/readyz`: `Ok` when ready, else the reason.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Where `/report` reads the HTML report: `[report] html_path` of the configuration in force
/// (a reload may set, move or remove it), `None` when there is none.
pub type ReportPath = Arc<dyn Fn() -> Option<PathBuf> + Send + Sync>;

/// What `/report` answers with besides the page: no script, no fetch, styles inline only. The
/// page needs nothing else, and a browser that enforces this keeps any markup that slipped in
/// from doing anything.
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// What the endpoint serves from.
#[derive(Clone)]
pub struct HttpState {
    /// The scheduler loop's heartbeat (`/healthz`).
    pub health: Arc<Heartbeat>,
    /// The readiness check (`/readyz`).
    pub readiness: ReadinessCheck,
    /// The metrics (`/metrics`).
    pub metrics: Arc<DaemonMetrics>,
    /// The HTML report's file (`/report`).
    pub report_path: ReportPath,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("health", &self.health)
            .field("readiness", &"<check>")
            .finish_non_exhaustive()
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.health.check() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, (state.readiness)()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the readiness check did not answer within {} s",
                READY_TIMEOUT.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn report(State(state): State<HttpState>) -> Response {
    let Some(path) = (state.report_path)() else {
        return (
            StatusCode::NOT_FOUND,
            "no report: set [report] html_path in the configuration and reload (SIGHUP)",
        )
            .into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(page) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_SECURITY_POLICY, REPORT_CSP),
            ],
            page,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the report has not been written yet: the daemon writes it at start and after each run",
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the report at {}: {e}", path.display()),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The endpoint's routes.
fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/report", get(report))
        .fallback(not_found)
        .with_state(state)
}

/// Serves the endpoint on `listener` until `cancel` fires, then lets open requests finish for
/// a few seconds and returns. A server failure is logged, not returned: the backups go on
/// without their endpoint.
pub async fn serve(listener: TcpListener, state: HttpState, cancel: CancellationToken) {
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(address = %address, "http endpoint listening");
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .into_future();
    // A client that holds its connection open must not hold up the daemon's stop.
    let drain_deadline = async {
        cancel.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(address = %address, error = %e, "http endpoint failed");
            }
        }
        () = drain_deadline => {
            tracing::warn!(address = %address, "http endpoint stopped with connections still open");
        }
    }
    tracing::info!(address = %address, "http endpoint stopped");
}

/// The listener for `[daemon] listen`: `None` for `""` (the endpoint turned off), otherwise a
/// socket bound to the address, or an error naming it and what to do.
pub async fn bind(listen: &str) -> Result<Option<TcpListener>, String> {
    if listen.is_empty() {
        return Ok(None);
    }
    let address: SocketAddr = listen.parse().map_err(|_| {
        format!(
            "invalid [daemon] listen address {listen:?}: expected an IP address and port such as \
             127.0.0.1:9464, or \"\" to turn the endpoint off"
        )
    })?;
    TcpListener::bind(address).await.map(Some).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address in use".to_string(),
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this host has that address".to_string()
            }
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!(
            "cannot listen on {address}: {reason}; set [daemon] listen to another address or \"\" \
             to turn the endpoint off"
        )
    })
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
