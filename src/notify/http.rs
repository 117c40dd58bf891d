//! Webhooks and pings: reading the URL from its file, checking it, and sending with retries.
//!
//! The URL carries the token that authorises the call, so it is treated as a secret from the
//! file to the socket: it is read only when sending (through [`fsutil::read_secret_file`], which
//! refuses a file others can read), and no message built here contains it. reqwest's errors
//! quote the URL, so they are stripped of it ([`reqwest::Error::without_url`]) and then searched
//! for what is left of it, in case a lower layer repeats a part.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use url::{Host, Url};

use crate::fsutil::{self, SecretFileError};

/// Reads the URL held in `path` and checks it: https, or http to a loopback address (a local
/// relay or a test server; anywhere else plain http would hand the token to the network).
pub(super) fn read_url(path: &Path) -> Result<Url, String> {
    let text = fsutil::read_secret_file(path).map_err(|e| match e {
        // The path is not shown: a URL pasted into url_file would otherwise be printed back.
        SecretFileError::Io(e) => format!(
            "cannot read url_file: {e}; check the path and that kvkeep's user may read it (the path is not shown: it may be a URL pasted into the wrong key)"
        ),
        SecretFileError::Loose { mode } => fsutil::loose_file_message("url file", path, mode),
    })?;
    parse_url(&text)
}

/// Checks the content of a URL file. Never quotes it.
pub(super) fn parse_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("url_file is empty: it must hold the URL".into());
    }
    if text.contains(char::is_whitespace) {
        return Err("url_file must hold one URL and nothing else".into());
    }
    // url's messages name the problem ("invalid port number"), not the input.
    let url = Url::parse(text).map_err(|e| format!("url_file does not hold a URL ({e})"))?;
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("the URL in url_file must use https: it carries a token (plain http is allowed only to localhost, 127.0.0.0/8 or ::1)".into()),
        _ => Err("the URL in url_file must be an https URL with a host".into()),
    }
}

/// `base` with one more path segment (`/start`, `/fail`), its query kept.
pub(super) fn with_segment(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    // An http(s) URL with a host always has path segments; `parse_url` admits no other.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(segment);
    }
    url
}

/// What one attempt came to.
enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// Worth another try: nothing was sent (connect error) or the server asked for patience
    /// (5xx, 429), possibly saying how long to wait (`Retry-After`, in seconds).
    Retry(String, Option<Duration>),
    /// Another try would fail the same way (4xx, a malformed request).
    Fail(String),
}

/// How one HTTP notification is retried.
pub(super) struct Delivery<'a> {
    /// The URL, only for scrubbing messages.
    pub url: &'a Url,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub retry_base: Duration,
    /// The entry's timeout, retries included.
    pub timeout: Duration,
}

impl Delivery<'_> {
    /// Sends the request `make` builds, retrying as [`Attempt`] says until the timeout. The
    /// error never contains the URL.
    pub async fn send(&self, make: impl Fn() -> reqwest::RequestBuilder) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let attempts = self.retries + 1;
        let mut backoff = self.retry_base;
        for n in 1..=attempts {
            let outcome = match tokio::time::timeout_at(deadline, make().send()).await {
                Err(_) => {
                    return Err(format!(
                        "timed out after {} (attempt {n} of {attempts})",
                        humantime::format_duration(self.timeout)
                    ))
                }
                Ok(Ok(response)) => classify(response.status(), retry_after(&response)),
                // Only a failed connection is certainly not delivered; anything later may have
                // reached the receiver, and a second POST would notify twice.
                Ok(Err(e)) if e.is_connect() => Attempt::Retry(self.describe(e), None),
                Ok(Err(e)) => Attempt::Fail(self.describe(e)),
            };
            match outcome {
                Attempt::Delivered => return Ok(()),
                Attempt::Fail(why) => return Err(why),
                Attempt::Retry(why, _) if n == attempts => {
                    return Err(format!("{why} (gave up after {attempts} attempts)"))
                }
                Attempt::Retry(why, asked) => {
                    // A receiver that says when to come back is heeded rather than hammered.
                    let delay = asked.map_or(backoff, |asked| asked.max(backoff));
                    if Instant::now() + delay >= deadline {
                        return Err(format!(
                            "{why} (attempt {n} of {attempts}; the timeout of {} leaves no time for another)",
                            humantime::format_duration(self.timeout)
                        ));
                    }
                    tokio::time::sleep(delay).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
        // The loop returns on its last attempt.
        Err("no attempt was made".into())
    }

    /// `e` and its causes, without the URL.
    fn describe(&self, e: reqwest::Error) -> String {
        let e = e.without_url();
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        scrub(&message, self.url)
    }
}

/// The `Retry-After` of `response` when it is a number of seconds (the HTTP-date form is rare
/// from webhook receivers, and the backoff serves then).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn classify(status: reqwest::StatusCode, retry_after: Option<Duration>) -> Attempt {
    if status.is_success() {
        Attempt::Delivered
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let why = match retry_after {
            Some(after) => format!(
                "the receiver answered HTTP {status}, asking to retry after {}",
                humantime::format_duration(after)
            ),
            None => format!("the receiver answered HTTP {status}"),
        };
        Attempt::Retry(why, retry_after)
    } else {
        Attempt::Fail(format!(
            "the receiver answered HTTP {status} (not retried; check the URL in url_file and what the receiver expects)"
        ))
    }
}

/// `message` with every trace of `url` replaced: the whole URL, its path and query, and each
/// long path segment and query value on its own — that is where tokens live, and a lower layer
/// might quote one piece without the rest.
pub(super) fn scrub(message: &str, url: &Url) -> String {
    let mut parts: Vec<String> = vec![url.as_str().to_string(), url.path().to_string()];
    parts.extend(url.query().map(str::to_string));
    parts.extend(
        url.path_segments()
            .into_iter()
            .flatten()
            .map(str::to_string),
    );
    parts.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    // Longest first, so a piece is not half-replaced by a shorter one inside it.
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = message.to_string();
    for part in parts.iter().filter(|p| p.len() >= 8) {
        out = out.replace(part.as_str(), "[redacted]");
    }
    out
}
