//! A scripted HTTP/1.1 server on 127.0.0.1 that records what it receives: the receiver of
//! webhooks and pings in the notification tests (`src/notify/tests.rs` includes this file) and
//! the daemon's end-to-end test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`...
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The header lines, lower-cased.
    pub headers: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A local HTTP server: answers the n-th request with `statuses[n]` (the last one repeated)
/// after `delay`, and records every request.
pub struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Listens on 127.0.0.1 at a port chosen by the system.
    pub async fn start(statuses: &[u16], delay: Duration) -> Server {
        Self::start_with_headers(statuses, delay, "").await
    }

    /// [`Server::start`], adding `headers` (`"name: value\r\n"` lines) to every answer.
    pub async fn start_with_headers(statuses: &[u16], delay: Duration, headers: &str) -> Server {
        let headers = headers.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let statuses = statuses.to_vec();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let Some(request) = read_request(&mut conn).await else {
                    continue;
                };
                let n = {
                    let mut log = log.lock().expect("lock");
                    log.push(request);
                    log.len() - 1
                };
                let status = statuses[n.min(statuses.len() - 1)];
                let delay_done = delay;
                let headers = headers.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay_done).await;
                    let answer = format!(
                        "HTTP/1.1 {status} Scripted\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Server { addr, seen }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    Some(Seen {
        method: first.next().unwrap_or_default().to_string(),
        target: first.next().unwrap_or_default().to_string(),
        headers: head.to_ascii_lowercase(),
        body: buf[head_end..].to_vec(),
    })
}
