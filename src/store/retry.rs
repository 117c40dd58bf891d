//! [`RetryStore`]: retries throttled and transient failures of any store with bounded,
//! jittered exponential backoff — the single retry layer of the store stack.
//!
//! Why here and not (also) in the Azure SDK pipeline: retries multiply when stacked (8 SDK
//! retries × 6 here would be 54 requests for one blob), and a write-once upload is not blindly
//! repeatable: if the first `PUT` reached the service but its response was lost, the retry is
//! answered `409 BlobAlreadyExists` for our own blob. Only a layer that knows an earlier attempt
//! may have landed can resolve that, which this one does: after a retryable failure, a
//! conflict is checked by reading the blob back — identical bytes mean the earlier attempt
//! succeeded. Likewise a `NotFound` on a retried delete means the earlier delete landed.
//!
//! Lease calls are retried the same way, which is safe for each of them: acquire proposes the
//! holder's own lease id, so a repeat after a lost answer finds the lease already ours and
//! succeeds; renew, release and break are idempotent. Refusals (`Held`) and losses (`Lost`) are
//! answers, never retried. Patience is the same as for blobs (about 15 s by default, plus what
//! the service asks for): a caller renewing a 60 s lease every 20 s still hears of a failure
//! before the lease runs out, and must in any case stop when no renew succeeded for a whole
//! lease duration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::lease::{Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::{BlobMeta, BlobStore, StoreError, StoreErrorKind};
use crate::model::{BlobKey, VaultName};

/// What [`RetryStore::run`] needs to know of an error: whether to retry and how long the
/// service asked to wait.
trait Retryable: std::fmt::Display {
    fn retryable(&self) -> bool;
    fn requested_delay(&self) -> Option<Duration>;
}

impl Retryable for StoreError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
    fn requested_delay(&self) -> Option<Duration> {
        self.retry_after()
    }
}

impl Retryable for LeaseError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
    fn requested_delay(&self) -> Option<Duration> {
        self.retry_after()
    }
}

/// How persistently [`RetryStore`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub initial_delay: Duration,
    /// Cap of one delay (also of a service-requested `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryOptions {
    /// 6 attempts, 0.5 s doubling to at most 30 s: about 15 s of patience (plus what the service
    /// asks for) before an error reaches the backup run, which then records the object as failed.
    fn default() -> Self {
        RetryOptions {
            max_attempts: 6,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryOptions {
    /// The delay before retry number `retry` (0-based) with `jitter` in `[0, 1)`: "equal
    /// jitter" — half the exponential delay fixed, half random — so clients that failed together
    /// do not retry together, yet never retry immediately. A `Retry-After` from the service is
    /// a floor.
    pub fn delay(&self, retry: u32, jitter: f64, requested: Option<Duration>) -> Duration {
        let exp = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_delay);
        let jittered = exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        match requested {
            Some(r) => jittered.max(r.min(self.max_delay)),
            None => jittered,
        }
    }
}

/// Wraps a store and retries its [`StoreErrorKind::is_retryable`] failures.
#[derive(Debug, Clone)]
pub struct RetryStore {
    inner: Arc<dyn BlobStore>,
    options: RetryOptions,
    cancel: CancellationToken,
}

impl RetryStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>, options: RetryOptions) -> Self {
        RetryStore {
            inner,
            options,
            cancel: CancellationToken::new(),
        }
    }

    /// Ends the waits between retries as soon as `cancel` fires (Ctrl-C, SIGTERM): the last
    /// failure is returned instead of being retried.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs `op` until it succeeds, fails for good, or attempts run out. `settle` sees the
    /// error of an attempt that followed a retryable failure and may turn it into success.
    async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut retry = 0;
        let mut after_failure = false;
        loop {
            match op(after_failure).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && retry + 1 < self.options.max_attempts => {
                    let delay =
                        self.options
                            .delay(retry, rand::random::<f64>(), e.requested_delay());
                    tracing::debug!(error = %e, retry = retry + 1, delay_ms = delay.as_millis() as u64, "retrying store operation");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(e),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    retry += 1;
                    after_failure = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl BlobStore for RetryStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.run(|after_failure| {
            let bytes = bytes.clone();
            async move {
                match self.inner.put_new(key, bytes.clone()).await {
                    Err(e) if after_failure && e.kind() == StoreErrorKind::AlreadyExists => {
                        // Did our own earlier attempt land? Same bytes: yes, done. Anything
                        // else (including a failed read) keeps the conflict.
                        match self.inner.get(key).await {
                            Ok(stored) if stored == bytes => Ok(()),
                            _ => Err(e),
                        }
                    }
                    other => other,
                }
            }
        })
        .await
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        self.run(|_| self.inner.get(key)).await
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        self.run(|_| self.inner.head(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        self.run(|_| self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.run(|after_failure| async move {
            match self.inner.delete(key).await {
                // The earlier attempt deleted it and only its answer was lost.
                Err(e) if after_failure && e.kind() == StoreErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
        .await
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        self.run(|_| self.inner.acquire_lease(vault, holder, duration))
            .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.run(|_| self.inner.renew_lease(lease)).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        self.run(|_| self.inner.release_lease(lease.clone())).await
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        self.run(|_| self.inner.break_lease(vault)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FaultyStore, InMemoryStore, StoreOp};

    fn key(s: &str) -> BlobKey {
        s.parse().expect("valid key")
    }

    fn stack(attempts: u32) -> (Arc<FaultyStore>, RetryStore) {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemoryStore::new())));
        let retry = RetryStore::new(
            faulty.clone(),
            RetryOptions {
                max_attempts: attempts,
                ..RetryOptions::default()
            },
        );
        (faulty, retry)
    }

    #[test]
    fn delays_double_are_capped_and_honour_retry_after() {
        let o = RetryOptions {
            max_attempts: 6,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        assert_eq!(o.delay(0, 0.0, None), Duration::from_millis(500));
        assert_eq!(o.delay(0, 0.999_999, None).as_millis(), 999);
        assert_eq!(o.delay(2, 1.0, None), Duration::from_secs(4));
        assert_eq!(o.delay(10, 1.0, None), Duration::from_secs(10));
        assert_eq!(o.delay(60, 0.0, None), Duration::from_secs(5));
        assert_eq!(
            o.delay(0, 0.0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            o.delay(0, 0.0, Some(Duration::from_secs(700))),
            Duration::from_secs(10)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_an_hour_long_wait_at_once() {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemoryStore::new())));
        let cancel = CancellationToken::new();
        let retry = Arc::new(
            RetryStore::new(
                faulty.clone(),
                RetryOptions {
                    max_attempts: 6,
                    initial_delay: Duration::from_secs(7200),
                    max_delay: Duration::from_secs(7200),
                },
            )
            .with_cancel(cancel.clone()),
        );
        faulty.fail_next(StoreOp::Get, 100, StoreErrorKind::Transient);
        let task = {
            let retry = retry.clone();
            tokio::spawn(async move {
                let r = retry.get(&key("a")).await;
                (r, tokio::time::Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cancelled_at = tokio::time::Instant::now();
        cancel.cancel();
        let (r, ended_at) = task.await.expect("task");
        assert_eq!(
            r.expect_err("the failure is returned").kind(),
            StoreErrorKind::Transient
        );
        assert_eq!(
            ended_at, cancelled_at,
            "the wait ended when the token fired"
        );
        assert_eq!(
            faulty.calls(StoreOp::Get),
            1,
            "nothing sent after the cancellation"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_and_throttled_failures_are_retried_until_success() {
        let (faulty, retry) = stack(4);
        faulty.fail_next(StoreOp::Put, 2, StoreErrorKind::Throttled);
        faulty.fail_next(StoreOp::Get, 3, StoreErrorKind::Transient);
        retry
            .put_new(&key("a"), Bytes::from_static(b"x"))
            .await
            .expect("put after 2 throttles");
        assert_eq!(faulty.calls(StoreOp::Put), 3);
        assert_eq!(
            retry
                .get(&key("a"))
                .await
                .expect("get after 3 failures")
                .as_ref(),
            b"x"
        );
        assert_eq!(faulty.calls(StoreOp::Get), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let (faulty, retry) = stack(3);
        faulty.fail_next(StoreOp::List, 10, StoreErrorKind::Transient);
        let err = retry
            .list("")
            .await
            .expect_err("still failing after 3 attempts");
        assert_eq!(err.kind(), StoreErrorKind::Transient);
        assert_eq!(faulty.calls(StoreOp::List), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_and_conflicts_are_not_retried() {
        let (faulty, retry) = stack(5);
        for kind in [
            StoreErrorKind::Forbidden,
            StoreErrorKind::Permanent,
            StoreErrorKind::NotFound,
        ] {
            faulty.fail_next(StoreOp::Head, 1, kind);
            let before = faulty.calls(StoreOp::Head);
            let err = retry.head(&key("a")).await.expect_err("fails");
            assert_eq!(err.kind(), kind);
            assert_eq!(
                faulty.calls(StoreOp::Head),
                before + 1,
                "{kind:?} is not retried"
            );
        }
        retry
            .put_new(&key("a"), Bytes::from_static(b"one"))
            .await
            .expect("put");
        let err = retry
            .put_new(&key("a"), Bytes::from_static(b"one"))
            .await
            .expect_err("conflict");
        assert_eq!(
            err.kind(),
            StoreErrorKind::AlreadyExists,
            "a first-attempt conflict is genuine even with equal bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_response_to_a_put_is_recognised_by_its_content() {
        let (faulty, retry) = stack(3);
        // The write lands but its answer is lost; the retry then meets our own blob.
        faulty.lose_next_responses(StoreOp::Put, 1);
        retry
            .put_new(&key("a"), Bytes::from_static(b"ours"))
            .await
            .expect("own blob recognised");
        assert_eq!(faulty.calls(StoreOp::Put), 2);

        // Same situation, but someone else's content is there: still a conflict.
        faulty.lose_next_responses(StoreOp::Put, 1);
        retry
            .put_new(&key("b"), Bytes::from_static(b"ours"))
            .await
            .expect("first write");
        faulty.lose_next_responses(StoreOp::Put, 1);
        let err = retry
            .put_new(&key("b"), Bytes::from_static(b"theirs"))
            .await
            .expect_err("conflict");
        assert_eq!(err.kind(), StoreErrorKind::AlreadyExists);
        assert_eq!(retry.get(&key("b")).await.expect("get").as_ref(), b"ours");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_response_to_a_delete_counts_as_deleted() {
        let (faulty, retry) = stack(3);
        retry
            .put_new(&key("a"), Bytes::from_static(b"x"))
            .await
            .expect("put");
        faulty.lose_next_responses(StoreOp::Delete, 1);
        retry.delete(&key("a")).await.expect("delete recognised");
        let err = retry
            .delete(&key("a"))
            .await
            .expect_err("a first-attempt NotFound stays");
        assert_eq!(err.kind(), StoreErrorKind::NotFound);
    }

    fn lease_parts() -> (crate::model::VaultName, LeaseHolder, LeaseHolder) {
        (
            "kv1".parse().expect("vault"),
            LeaseHolder::new("web-1").expect("holder"),
            LeaseHolder::new("web-2").expect("holder"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn lease_calls_are_retried_and_a_lost_answer_to_an_acquire_is_harmless() {
        let (faulty, retry) = stack(4);
        let (v, a, b) = lease_parts();
        // The acquire lands but its answer is lost: the retry finds the lease already ours.
        faulty.lose_next_responses(StoreOp::AcquireLease, 1);
        let lease = retry
            .acquire_lease(&v, &a, LeaseDuration::DEFAULT)
            .await
            .expect("own lease recognised");
        assert_eq!(faulty.calls(StoreOp::AcquireLease), 2);

        faulty.fail_next(StoreOp::RenewLease, 2, StoreErrorKind::Throttled);
        retry
            .renew_lease(&lease)
            .await
            .expect("renew after throttling");
        assert_eq!(faulty.calls(StoreOp::RenewLease), 3);

        // A refusal is an answer, not a failure: asked once.
        let err = retry
            .acquire_lease(&v, &b, LeaseDuration::DEFAULT)
            .await
            .expect_err("held");
        assert!(matches!(err, LeaseError::Held { .. }), "{err}");
        assert_eq!(faulty.calls(StoreOp::AcquireLease), 3);

        // Release and break are idempotent, so a lost answer is retried into success.
        faulty.lose_next_responses(StoreOp::ReleaseLease, 1);
        retry.release_lease(lease.clone()).await.expect("release");
        assert_eq!(faulty.calls(StoreOp::ReleaseLease), 2);
        let lease = retry
            .acquire_lease(&v, &b, LeaseDuration::DEFAULT)
            .await
            .expect("free after the release");
        faulty.lose_next_responses(StoreOp::BreakLease, 1);
        retry.break_lease(&v).await.expect("break");
        assert_eq!(faulty.calls(StoreOp::BreakLease), 2);

        // Lost is an answer too.
        let err = retry.renew_lease(&lease).await.expect_err("broken");
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
        assert_eq!(faulty.calls(StoreOp::RenewLease), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn lease_retries_are_bounded() {
        let (faulty, retry) = stack(3);
        let (v, a, _) = lease_parts();
        faulty.fail_next(StoreOp::AcquireLease, 10, StoreErrorKind::Transient);
        let err = retry
            .acquire_lease(&v, &a, LeaseDuration::DEFAULT)
            .await
            .expect_err("still failing");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(faulty.calls(StoreOp::AcquireLease), 3);
    }
}
