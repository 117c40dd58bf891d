//! The TLS accept loop: one task per listener, one task per connection, HTTP/1.1 with keep-alive
//! served by hyper over tokio-rustls, and graceful shutdown when the emulator stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::dispatch;
use super::state::State;

/// Which vault(s) a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The main listener: vaults are routed by the `Host` header.
    Shared,
    /// Loopback mode: this port is the vault with this (lower-case) name, whatever the `Host`.
    Vault(String),
}

/// Facts about the connection a request arrived on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local_port: u16,
    pub binding: Binding,
}

/// Starts the accept loop of `listener` in the background.
pub(crate) fn spawn(state: Arc<State>, listener: TcpListener, binding: Binding) {
    let Some(tracker) = state.tracker() else {
        return;
    };
    tokio::spawn(async move {
        let _tracker = tracker;
        accept_loop(state, listener, binding).await;
    });
}

async fn accept_loop(state: Arc<State>, listener: TcpListener, binding: Binding) {
    let acceptor = TlsAcceptor::from(state.tls.clone());
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut shutdown = state.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(tracker) = state.tracker() else { break };
                let conn = Arc::new(ConnInfo { peer, local_port, binding: binding.clone() });
                let state = state.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _tracker = tracker;
                    serve_connection(state, acceptor, tcp, conn).await;
                });
            }
        }
    }
    tracing::debug!(port = local_port, "listener stopped");
}

async fn serve_connection(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    conn: Arc<ConnInfo>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
            return;
        }
    };
    let mut shutdown = state.shutdown.clone();
    let service = {
        let state = state.clone();
        let conn = conn.clone();
        service_fn(move |req| dispatch::handle(state.clone(), conn.clone(), req))
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = result {
        // Includes the deliberate resets of the `reset` fault.
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
}
