//! The retry policy installed in the Key Vault SDK clients.
//!
//! Split of responsibilities: the SDK retries, a few times and quickly, only what is certainly
//! the network's or a server instance's fault — connection failures and resets, 408, 500, 502,
//! 503 and 504 — because those are cheapest to repeat right where they happen (a pager resumes
//! at the failed page instead of starting the listing over). **429 is never retried by the
//! SDK**: it is surfaced as [`super::SourceErrorKind::Throttled`] so kvkeep's
//! [`super::RateLimitedSource`] pauses that vault's bucket and keeps its budget honest; the
//! SDK's default policy would sleep inside the call, invisible to the limiter, and retry 8 times.

use azure_core::http::headers::{RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::StatusCode;
use azure_core::time::Duration;
use rand::Rng;

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
}

impl SdkRetryPolicy {
    pub(crate) fn new(options: SdkRetryOptions) -> Self {
        SdkRetryPolicy {
            options,
            headers: RetryHeaders {
                retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER],
            },
        }
    }
}

fn to_sdk(d: std::time::Duration) -> Duration {
    Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_left_to_kvkeep() {
        let policy = SdkRetryPolicy::new(SdkRetryOptions::default());
        assert!(!policy
            .retry_status_codes()
            .contains(&StatusCode::TooManyRequests));
        assert!(policy
            .retry_status_codes()
            .contains(&StatusCode::ServiceUnavailable));
    }

    #[test]
    fn delays_double_and_stop_at_the_bound() {
        let policy = SdkRetryPolicy::new(SdkRetryOptions::default());
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
