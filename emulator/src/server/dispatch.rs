//! The request pipeline. Control-plane paths go to `control.rs`; everything else is data plane:
//! body (bounded) → auth (§3.4: before any validation) → vault by `Host` → api-version → route →
//! counters → faults → throttle → vault → response. Each data-plane request is logged once,
//! with the status it got.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HOST};
use hyper::http::request::Parts;
use hyper::Request;
use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::error::KvError;

use super::auth::{self, Audience};
use super::control;
use super::faults::{FaultKind, Fired};
use super::listener::{Binding, ConnInfo};
use super::paging;
use super::response::{self, HttpResponse, Meta};
use super::routing::{self, Path, Query};
use super::state::{lock, State};
use super::stats::LogEntry;

/// Request bodies above this size are refused (413) instead of buffered.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Returned by the service to make hyper drop the connection without answering (the `reset`
/// fault, or a body that could not be read).
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the emulator")
    }
}

impl std::error::Error for ResetConnection {}

/// The hyper service function.
pub(crate) async fn handle(
    state: Arc<State>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<HttpResponse, ResetConnection> {
    let path = req.uri().path();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Ok(control::handle(&state, &conn, req).await);
    }
    let (parts, body) = req.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => (Bytes::new(), true),
        Err(_) => return Err(ResetConnection),
    };
    let mut entry = LogEntry {
        seq: 0,
        vault: None,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        op: None,
        status: 0,
        has_authorization: parts.headers.contains_key(hyper::header::AUTHORIZATION),
        caller: auth::caller(&parts.headers),
        body_length: if too_large {
            content_length(&parts).unwrap_or(MAX_BODY + 1)
        } else {
            body.len()
        },
        fault: None,
    };
    let outcome = data_plane(&state, &conn, &parts, body, too_large, &mut entry).await;
    entry.status = outcome.as_ref().map_or(0, |r| r.status().as_u16());
    state.stats.record(entry);
    outcome
}

fn content_length(parts: &Parts) -> Option<usize> {
    parts
        .headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Where a data-plane request is going.
struct Target {
    /// Lower-case vault name, when the host (or the loopback port) names one.
    vault: Option<String>,
    /// `host[:port]` as sent, without `:443`.
    authority: String,
    /// The port the client addressed; `None` = 443.
    port: Option<u16>,
}

fn target(conn: &ConnInfo, host: Option<&str>) -> Target {
    let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
        let vault = match &conn.binding {
            Binding::Vault(name) => Some(name.clone()),
            Binding::Shared => None,
        };
        return Target {
            vault,
            authority: format!("127.0.0.1:{}", conn.local_port),
            port: Some(conn.local_port),
        };
    };
    let (hostname, port) = split_host(host);
    let authority = match port {
        Some(443) => hostname.to_string(),
        _ => host.to_string(),
    };
    let vault = match &conn.binding {
        Binding::Vault(name) => Some(name.clone()),
        Binding::Shared => {
            let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
            hostname
                .strip_suffix(".vault.localhost")
                .filter(|label| !label.is_empty() && !label.contains('.'))
                .map(str::to_string)
        }
    };
    Target {
        vault,
        authority,
        port: port.filter(|p| *p != 443),
    }
}

/// `host:port` → (host, port); IPv6 literals keep their brackets.
fn split_host(host: &str) -> (&str, Option<u16>) {
    let split_at = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    match split_at {
        Some(i) => match host[i + 1..].parse::<u16>() {
            Ok(port) => (&host[..i], Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, KvError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| KvError::bad_parameter(format!("The request body is not valid JSON: {e}")))
}

fn fault_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Throttle => "throttle",
        FaultKind::Error500 => "error500",
        FaultKind::Error503 => "error503",
        FaultKind::Reset => "reset",
        FaultKind::ResetAfter => "resetAfter",
        FaultKind::Latency => "latency",
        FaultKind::EmptyPage => "emptyPage",
        FaultKind::ShortPage => "shortPage",
        FaultKind::ForeignNextLink => "foreignNextLink",
        FaultKind::Forbidden => "forbidden",
    }
}

async fn data_plane(
    state: &State,
    conn: &ConnInfo,
    parts: &Parts,
    body: Bytes,
    too_large: bool,
    log: &mut LogEntry,
) -> Result<HttpResponse, ResetConnection> {
    let mut meta = Meta::new(&parts.headers, conn.peer.ip());
    let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok());
    let target = target(conn, host);
    log.vault = target.vault.clone();
    // Routed before auth so the log names the operation of unauthenticated requests too; the
    // errors are answered only after auth and the api-version check.
    let routed = Path::parse(parts.uri.path()).map(|path| {
        let op = routing::route(&parts.method, &path);
        (path, op)
    });
    if let Ok((_, Ok(op))) = &routed {
        log.op = Some(op.name());
    }
    let vault = target.vault.as_deref().and_then(|name| state.vault(name));
    let mut subscription = String::new();
    if let Some(vault) = &vault {
        let guard = lock(&vault.vault);
        meta.region = guard.settings().region.clone();
        subscription = guard.settings().subscription.clone();
    }
    let fail = |err: KvError| Ok(response::error(&err, &meta));

    let audience = Audience {
        authority: &target.authority,
        port: target.port,
        loopback: state.loopback,
    };
    if let Some(challenge) = auth::check(&state.auth, &parts.headers, &audience, &meta) {
        return Ok(challenge);
    }
    if too_large {
        return fail(KvError::new(
            413,
            "RequestEntityTooLarge",
            format!("The request body exceeds the limit of {MAX_BODY} bytes."),
        ));
    }
    let (Some(vault), Some(vault_name)) = (vault, target.vault.as_deref()) else {
        return fail(KvError::new(
            404,
            "VaultNotFound",
            format!(
                "No vault is served at {}: vault hosts are NAME.vault.localhost, and vaults are created with POST /_emulator/vaults.",
                target.authority
            ),
        ));
    };
    let query = match Query::parse(parts.uri.query()) {
        Ok(q) => q,
        Err(e) => return fail(e),
    };
    let api_version = match query.check_api_version() {
        Ok(v) => v.to_string(),
        Err(e) => return fail(e),
    };
    let (path, mut op) = match routed {
        Ok((path, Ok(op))) => (path, op),
        Err(e) | Ok((_, Err(e))) => return fail(e),
    };
    let op_name = op.name();
    state.stats.count(vault_name, &op_name);

    let mut maxresults_sent = None;
    let mut position = None;
    let is_list = routing::paging_slot(&mut op).is_some();
    if let Some((after, limit)) = routing::paging_slot(&mut op) {
        match query.page_size() {
            Ok(n) => *limit = n,
            Err(e) => return fail(e),
        }
        maxresults_sent = query.maxresults.is_some().then_some(*limit);
        if let Some(token) = &query.skiptoken {
            match paging::decode(token) {
                Ok(marker) => *after = marker,
                Err(e) => return fail(e),
            }
        }
        position = after.clone();
    }
    if let Some(slot) = routing::out_content_type_slot(&mut op) {
        slot.clone_from(&query.out_content_type);
    }
    if let Some(slot) = routing::body_slot(&mut op) {
        match parse_body(&body) {
            Ok(value) => *slot = value,
            Err(e) => return fail(e),
        }
    }

    let mut fired = lock(&state.faults).fire(vault_name, &op_name, is_list, false);
    if let Some(fault) = &fired {
        log.fault = Some(fault_name(fault.kind).to_string());
        state.stats.count_faulted(vault_name);
        if fault.kind == FaultKind::Latency {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
            // "Sleep, then serve": serving may itself meet another fault.
            fired = lock(&state.faults).fire(vault_name, &op_name, is_list, true);
            if let (Some(next), Some(name)) = (&fired, &mut log.fault) {
                name.push('+');
                name.push_str(fault_name(next.kind));
            }
        }
    }
    if let Some(fault) = &fired {
        if let Some(response) = answer_fault(fault, &meta, vault_name, &op_name)? {
            return Ok(response);
        }
    }
    // A `foreignNextLink` fault names another host in the link; the rest stays as it is.
    let link_authority = fired
        .as_ref()
        .filter(|f| f.kind == FaultKind::ForeignNextLink)
        .and_then(|f| f.next_link_host.clone());
    let page_link = |marker: Option<&str>| {
        paging::next_link(
            link_authority.as_deref().unwrap_or(&target.authority),
            &path.canonical(),
            &api_version,
            &paging::encode(marker),
            maxresults_sent,
        )
    };
    if fired
        .as_ref()
        .is_some_and(|f| f.kind == FaultKind::EmptyPage)
    {
        // Resume exactly where this request stood: nothing is skipped, nothing repeated.
        let body = json!({ "value": [], "nextLink": page_link(position.as_deref()) });
        return Ok(response::json(200, &body, &meta));
    }

    let weight = lock(&vault.vault).throttle_weight(&op);
    let throttle_headers = {
        let mut throttle = lock(&state.throttle);
        if throttle.admit(vault_name, &subscription, weight, Instant::now()) {
            None
        } else {
            let s = throttle.settings();
            Some((s.retry_after_seconds, s.retry_after_ms))
        }
    };
    if let Some((seconds, millis)) = throttle_headers {
        state.stats.count_throttled(vault_name);
        let response = response::error(&KvError::throttled(), &meta);
        return Ok(response::with_retry_after(response, seconds, millis));
    }

    if let Some(fault) = fired.as_ref().filter(|f| f.kind == FaultKind::ShortPage) {
        if let Some((_, limit)) = routing::paging_slot(&mut op) {
            *limit = (*limit).min(fault.page_size.max(1));
        }
    }
    let ctx = Ctx {
        authority: target.authority.clone(),
        now: state.now(),
    };
    // A bug in one vault operation answers 500 instead of killing the connection task; the
    // poisoned lock is recovered by `lock`.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| lock(&vault.vault).apply(&op, &ctx)));
    let response = match result {
        Ok(Ok(Reply::Json { status, body })) => response::json(status, &body, &meta),
        Ok(Ok(Reply::NoContent)) => response::no_content(&meta),
        Ok(Ok(Reply::Page { items, next })) => {
            let link = match (next.as_deref(), &link_authority) {
                (Some(m), _) => Some(page_link(Some(m))),
                // A last page gets a foreign link too, one that would repeat the page.
                (None, Some(_)) => Some(page_link(position.as_deref())),
                (None, None) => None,
            };
            response::json(200, &json!({ "value": items, "nextLink": link }), &meta)
        }
        Ok(Err(e)) => response::error(&e, &meta),
        Err(_) => {
            tracing::error!(vault = vault_name, op = %op_name, "vault operation panicked");
            response::error(
                &KvError::new(
                    500,
                    "InternalServerError",
                    format!("{op_name} failed inside the emulator"),
                ),
                &meta,
            )
        }
    };
    if fired
        .as_ref()
        .is_some_and(|f| f.kind == FaultKind::ResetAfter)
    {
        // The operation took effect; only its answer is lost.
        return Err(ResetConnection);
    }
    Ok(response)
}

/// The response of a fault that answers on its own (`None`: serve the request after all).
fn answer_fault(
    fault: &Fired,
    meta: &Meta,
    vault: &str,
    op: &str,
) -> Result<Option<HttpResponse>, ResetConnection> {
    let retry = |response| {
        response::with_retry_after(response, fault.retry_after_seconds, fault.retry_after_ms)
    };
    let response = match fault.kind {
        FaultKind::Throttle => retry(response::error(&KvError::throttled(), meta)),
        FaultKind::Error500 => response::error(
            &KvError::new(
                500,
                "InternalServerError",
                "An unexpected error occurred (injected fault).",
            ),
            meta,
        ),
        FaultKind::Error503 => retry(response::error(
            &KvError::new(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable (injected fault).",
            ),
            meta,
        )),
        FaultKind::Forbidden => response::error(&KvError::forbidden_by_policy(vault, op), meta),
        FaultKind::Reset => return Err(ResetConnection),
        FaultKind::Latency
        | FaultKind::EmptyPage
        | FaultKind::ShortPage
        | FaultKind::ForeignNextLink
        | FaultKind::ResetAfter => return Ok(None),
    };
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(binding: Binding) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local_port: 8443,
            binding,
        }
    }

    #[test]
    fn hosts_route_to_vaults() {
        let t = target(&conn(Binding::Shared), Some("KV1.Vault.Localhost:8443"));
        assert_eq!(t.vault.as_deref(), Some("kv1"));
        assert_eq!(t.authority, "KV1.Vault.Localhost:8443");
        assert_eq!(t.port, Some(8443));
        let t = target(&conn(Binding::Shared), Some("kv1.vault.localhost:443"));
        assert_eq!(t.authority, "kv1.vault.localhost");
        assert_eq!(t.port, None);
        for host in [
            "vault.localhost:1",
            "a.b.vault.localhost:1",
            "127.0.0.1:1",
            "[::1]:1",
        ] {
            assert_eq!(
                target(&conn(Binding::Shared), Some(host)).vault,
                None,
                "{host}"
            );
        }
        let t = target(&conn(Binding::Vault("kv2".into())), Some("127.0.0.1:9000"));
        assert_eq!(t.vault.as_deref(), Some("kv2"));
        assert_eq!(t.authority, "127.0.0.1:9000");
        assert_eq!(split_host("[::1]:77"), ("[::1]", Some(77)));
    }

    #[test]
    fn empty_bodies_are_null_and_bad_json_is_400() {
        assert_eq!(parse_body(&Bytes::from_static(b"  ")).unwrap(), Value::Null);
        assert_eq!(
            parse_body(&Bytes::from_static(b"{x")).unwrap_err().status,
            400
        );
    }
}
