//! The retry policy installed in the Key Vault SDK clients.
//!
//! Split of responsibilities: the SDK retries, a few times and quickly, only what is certainly
//! the network's or a server instance's fault — connection failures and resets, 408, 500, 502,
//! 503 and 504 — because those are cheapest to repeat right where they happen (a pager resumes
//! at the failed page instead of starting the listing over). **429 is never retried by the
//! SDK**: it is surfaced as [`super::SourceErrorKind::Throttled`] so kvkeep's
//! [`super::RateLimitedSource`] pauses that vault's bucket and keeps its budget honest; the
//! SDK's default policy would sleep inside the call, invisible to the limiter, and retry 8 times.
//!
//! **Only idempotent requests are ever re-sent** ([`NoResendPolicy`]): a restore, purge,
//! recover or delete whose answer was lost (connection reset, timeout, 5xx) may have taken
//! effect, and sending it again would answer `409`/`404` for kvkeep's own success. Such a
//! failure is returned at once instead, and the restore executor checks the vault's state.
//!
//! **Every wait is capped and cancellable**: one delay is at most `max_delay` (2 s), a
//! `Retry-After` of a 503 included (longer waits are the rate limiter's, which caps them too);
//! when the cancellation token fires the wait ends and nothing more is sent.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::http::policies::{
    Policy, PolicyResult, RetryHeaders, RetryPolicy, RetryPolicyCount,
};
use azure_core::http::{Context, Method, Request, StatusCode};
use azure_core::time::Duration;
use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Statuses the SDK may repeat on its own. 429 is deliberately absent (see the module docs).
const SDK_RETRY_STATUSES: &[StatusCode] = &[
    StatusCode::RequestTimeout,
    StatusCode::InternalServerError,
    StatusCode::BadGateway,
    StatusCode::ServiceUnavailable,
    StatusCode::GatewayTimeout,
];

/// Settings of the SDK-level retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkRetryOptions {
    /// Retries after the first attempt (0 disables SDK retries).
    pub max_retries: u32,
    /// First delay; doubled per retry, with up to 50 % jitter added.
    pub initial_delay: std::time::Duration,
    /// Longest single delay (a `Retry-After` on a 503 may still ask for more).
    pub max_delay: std::time::Duration,
    /// No retry starts after this long since the first attempt.
    pub max_elapsed: std::time::Duration,
}

impl Default for SdkRetryOptions {
    /// Three quick retries (≈ 0.2, 0.4, 0.8 s): enough to ride out a reset connection or a
    /// restarted front end; anything longer is the rate limiter's business.
    fn default() -> Self {
        SdkRetryOptions {
            max_retries: 3,
            initial_delay: std::time::Duration::from_millis(200),
            max_delay: std::time::Duration::from_secs(2),
            max_elapsed: std::time::Duration::from_secs(20),
        }
    }
}

/// The policy object handed to `RetryOptions::custom`.
#[derive(Debug)]
pub(crate) struct SdkRetryPolicy {
    options: SdkRetryOptions,
    headers: RetryHeaders,
    cancel: CancellationToken,
}

impl SdkRetryPolicy {
    pub(crate) fn new(options: SdkRetryOptions, cancel: CancellationToken) -> Self {
        SdkRetryPolicy {
            options,
            headers: RetryHeaders {
                retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER],
            },
            cancel,
        }
    }

    /// How long the SDK waits before retry `retry_count`: the backoff, or the service's
    /// `Retry-After` when longer, never more than `max_delay`.
    fn delay(&self, retry_count: u32, retry_after: Option<Duration>) -> std::time::Duration {
        let backoff = self.sleep_duration(retry_count);
        let wanted = retry_after.map_or(backoff, |r| r.max(backoff));
        let wanted = std::time::Duration::try_from(wanted).unwrap_or_default();
        wanted.min(self.options.max_delay)
    }
}

/// Why a request was not sent (again): the marker [`super::translate`] recognises.
#[derive(Debug)]
pub(crate) enum NotSent {
    /// The cancellation token fired.
    Interrupted,
    /// A non-idempotent request lost its answer; whether it took effect is unknown.
    AnswerLost(String),
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSent::Interrupted => f.write_str("interrupted: kvkeep was asked to stop"),
            NotSent::AnswerLost(cause) => write!(
                f,
                "the answer was lost ({cause}), so whether key vault carried it out is unknown; it was not sent again"
            ),
        }
    }
}

impl std::error::Error for NotSent {}

/// Whether repeating `request` is harmless: reads, and the backup call (a `POST` that changes
/// nothing). Restore, recover, purge, delete and every write are not.
fn is_idempotent(request: &Request) -> bool {
    match request.method() {
        Method::Get | Method::Head => true,
        Method::Post => request
            .url()
            .path()
            .trim_end_matches('/')
            .ends_with("/backup"),
        _ => false,
    }
}

/// A per-try policy that keeps the SDK's retry from re-sending what must not be re-sent, and
/// from re-sending anything once the cancellation token has fired (see the module docs).
#[derive(Debug)]
pub(crate) struct NoResendPolicy {
    cancel: CancellationToken,
}

impl NoResendPolicy {
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        NoResendPolicy { cancel }
    }
}

#[async_trait]
impl Policy for NoResendPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let retry = ctx.value::<RetryPolicyCount>().map_or(0, |c| **c);
        if retry > 0 && self.cancel.is_cancelled() {
            return Err(azure_core::Error::new(
                ErrorKind::Other,
                NotSent::Interrupted,
            ));
        }
        let result = next[0].send(ctx, request, &next[1..]).await;
        if is_idempotent(request) {
            return result;
        }
        match result {
            // Errors other than these are not retried by the SDK anyway.
            Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::Connection) => {
                let cause = crate::azure::error_chain(&e);
                Err(azure_core::Error::new(
                    ErrorKind::Other,
                    NotSent::AnswerLost(cause),
                ))
            }
            Ok(response) if SDK_RETRY_STATUSES.contains(&response.status()) => {
                // Returned as an error, the status is final for the SDK: not re-sent.
                let status = response.status();
                let raw = response.try_into_raw_response().await?;
                Err(ErrorKind::HttpResponse {
                    status,
                    error_code: None,
                    raw_response: Some(Box::new(raw)),
                }
                .into_error())
            }
            other => other,
        }
    }
}

fn to_sdk(d: std::time::Duration) -> Duration {
    Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl RetryPolicy for SdkRetryPolicy {
    fn is_expired(&self, duration_since_start: Duration, retry_count: u32) -> bool {
        retry_count >= self.options.max_retries
            || duration_since_start >= to_sdk(self.options.max_elapsed)
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        SDK_RETRY_STATUSES
    }

    fn sleep_duration(&self, retry_count: u32) -> Duration {
        let base = self
            .options
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry_count.saturating_sub(1)));
        let jitter = base.mul_f64(rand::thread_rng().gen_range(0.0..0.5));
        to_sdk((base + jitter).min(self.options.max_delay))
    }

    /// The SDK's own wait takes a `Retry-After` as is (an hour, if a 503 says so) and cannot be
    /// interrupted; this one is capped and ends when the token fires ([`NoResendPolicy`] then
    /// stops the retry from being sent).
    async fn wait(&self, retry_count: u32, retry_after: Option<Duration>) {
        let delay = self.delay(retry_count, retry_after);
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SdkRetryPolicy {
        SdkRetryPolicy::new(SdkRetryOptions::default(), CancellationToken::new())
    }

    #[test]
    fn only_reads_and_backups_are_repeatable() {
        let url = |p: &str| {
            azure_core::http::Url::parse(&format!("https://kv1.vault.azure.net{p}")).expect("url")
        };
        let cases = [
            (Method::Get, "/secrets/db/versions", true),
            (Method::Post, "/secrets/db/backup", true),
            (Method::Post, "/secrets/restore", false),
            (Method::Post, "/deletedsecrets/db/recover", false),
            (Method::Delete, "/deletedsecrets/db", false),
            (Method::Delete, "/secrets/db", false),
            (Method::Put, "/secrets/db", false),
        ];
        for (method, path, want) in cases {
            let request = Request::new(url(path), method);
            assert_eq!(is_idempotent(&request), want, "{method:?} {path}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_long_retry_after_is_capped_and_cancellable() {
        let cancel = CancellationToken::new();
        let policy = SdkRetryPolicy::new(SdkRetryOptions::default(), cancel.clone());
        let start = tokio::time::Instant::now();
        policy.wait(1, Some(Duration::hours(1))).await;
        assert_eq!(
            tokio::time::Instant::now() - start,
            SdkRetryOptions::default().max_delay
        );
        let options = SdkRetryOptions {
            max_delay: std::time::Duration::from_secs(7200),
            ..SdkRetryOptions::default()
        };
        let policy = Arc::new(SdkRetryPolicy::new(options, cancel.clone()));
        let task = {
            let policy = policy.clone();
            tokio::spawn(async move {
                policy.wait(1, Some(Duration::hours(1))).await;
                tokio::time::Instant::now()
            })
        };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let cancelled_at = tokio::time::Instant::now();
        cancel.cancel();
        assert_eq!(task.await.expect("task"), cancelled_at);
    }

    #[test]
    fn throttling_is_left_to_kvkeep() {
        let policy = policy();
        assert!(!policy
            .retry_status_codes()
            .contains(&StatusCode::TooManyRequests));
        assert!(policy
            .retry_status_codes()
            .contains(&StatusCode::ServiceUnavailable));
    }

    #[test]
    fn delays_double_and_stop_at_the_bound() {
        let policy = policy();
        let first = policy.sleep_duration(1);
        assert!(first >= Duration::milliseconds(200) && first <= Duration::milliseconds(300));
        let second = policy.sleep_duration(2);
        assert!(second >= Duration::milliseconds(400) && second <= Duration::milliseconds(600));
        assert!(policy.sleep_duration(20) <= Duration::seconds(2));
        assert!(!policy.is_expired(Duration::ZERO, 2));
        assert!(policy.is_expired(Duration::ZERO, 3));
        assert!(policy.is_expired(Duration::seconds(21), 0));
    }
}
