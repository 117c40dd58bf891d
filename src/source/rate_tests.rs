//! Tests of [`super::RateLimitedSource`] on tokio's paused clock: every duration asserted is
//! virtual, so the tests are exact and never wait.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::source::{FailureRule, InMemoryVaultSource, SeedObject};

fn name(s: &str) -> ObjectName {
    s.parse().expect("object name")
}

fn fake(vault: &str) -> InMemoryVaultSource {
    let source = InMemoryVaultSource::new(vault.parse().expect("vault name"), 1_700_000_000);
    source.put(ObjectKind::Secrets, &name("s1"), SeedObject::value("v"));
    source.put(ObjectKind::Keys, &name("k1"), SeedObject::value("k"));
    source
}

/// 10 tokens per second per vault, 1,000 per second per subscription; backoff base 1 s, no
/// jitter, so delays are exact.
fn options() -> RateLimitOptions {
    RateLimitOptions {
        vault_share: 1.0,
        subscription_share: 1.0,
        vault_budget: 10.0,
        window: Duration::from_secs(1),
        subscription_multiplier: 100.0,
        key_weight: 1,
        max_key_weight: 16,
        backoff: BackoffOptions {
            base: Duration::from_secs(1),
            max_attempts: 6,
            jitter: 0.0,
            max_delay: Duration::from_secs(60),
        },
    }
}

fn elapsed(start: Instant) -> Duration {
    Instant::now() - start
}

#[test]
fn buckets_follow_the_configured_shares() {
    let limits = Limits {
        vault_share: 0.1,
        subscription_share: 0.2,
        concurrency: 4,
    };
    let options = RateLimitOptions::from_limits(&limits);
    assert_eq!(options.vault_tokens(), 400.0);
    assert_eq!(options.subscription_tokens(), 4000.0);
    let limiter = RateLimiter::new(options);
    let source = limiter.wrap(fake("kv1"), Some("sub"));
    assert_eq!(source.vault.bucket.rate(), 40.0);
    assert_eq!(source.subscription.rate(), 400.0);
    assert_eq!(
        BackoffOptions::default().delay(1),
        Duration::from_secs(1),
        "first backoff"
    );
    assert_eq!(BackoffOptions::default().delay(5), Duration::from_secs(16));
}

#[tokio::test(start_paused = true)]
async fn calls_are_paced_by_the_vault_budget() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), None);
    let start = Instant::now();
    for _ in 0..30 {
        source
            .get_properties(ObjectKind::Secrets, &name("s1"))
            .await
            .expect("get");
    }
    // 10 from the burst, 20 more at 10/s.
    let waited = elapsed(start);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2010),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_vault_pauses_only_itself() {
    let limiter = RateLimiter::new(options());
    let slow = Arc::new(limiter.wrap(fake("kv1"), Some("sub")));
    let other = limiter.wrap(fake("kv2"), Some("sub"));
    slow.inner().fail(
        FailureRule::new(
            SourceOp::Backup,
            ObjectKind::Secrets,
            "s1",
            SourceErrorKind::Throttled,
        )
        .times(1)
        .retry_after(Duration::from_secs(5)),
    );
    let start = Instant::now();
    let task = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.backup(ObjectKind::Secrets, &name("s1")).await })
    };
    // Let the throttled call reach its pause.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;

    other
        .backup(ObjectKind::Secrets, &name("s1"))
        .await
        .expect("the other vault is not held back");
    assert!(elapsed(start) < Duration::from_secs(1));

    slow.get_properties(ObjectKind::Secrets, &name("s1"))
        .await
        .expect("get");
    assert!(
        elapsed(start) >= Duration::from_secs(5),
        "every call to the throttled vault waits out the Retry-After "
    );
    task.await
        .expect("task")
        .expect("the throttled backup succeeds when retried");
    assert_eq!(slow.inner().calls(SourceOp::Backup, ObjectKind::Secrets), 2);
}

#[tokio::test(start_paused = true)]
async fn throttling_without_retry_after_backs_off_exponentially() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), None);
    // A rule naming no object matches any listing.
    source.inner().fail(FailureRule {
        op: Some(SourceOp::List),
        kind: Some(ObjectKind::Secrets),
        name: None,
        error: SourceErrorKind::Throttled,
        retry_after: None,
        times: Some(4),
    });
    let start = Instant::now();
    let listed = source.list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(listed.len(), 1);
    let waited = elapsed(start);
    // 1 + 2 + 4 + 8 s of backoff.
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_millis(15_010),
        "{waited:?}"
    );
    assert_eq!(source.inner().calls(SourceOp::List, ObjectKind::Secrets), 5);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_then_answered_call_counts_one_throttle_and_one_retry() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), Some("sub"));
    let _other = limiter.wrap(fake("kv2"), Some("sub"));
    source.inner().fail(
        FailureRule::new(
            SourceOp::Backup,
            ObjectKind::Secrets,
            "s1",
            SourceErrorKind::Throttled,
        )
        .times(1)
        .retry_after(Duration::from_secs(1)),
    );
    source
        .backup(ObjectKind::Secrets, &name("s1"))
        .await
        .expect("the retry succeeds");
    let kv1 = "kv1".parse().expect("vault name");
    assert_eq!(
        limiter.counters(&kv1),
        RequestCounters {
            throttled: 1,
            retries: 1
        }
    );
    let kv2 = "kv2".parse().expect("vault name");
    assert_eq!(
        limiter.counters(&kv2),
        RequestCounters::default(),
        "another vault's counts are its own"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_count_retries_but_not_throttles() {
    let mut opts = options();
    opts.backoff.max_attempts = 3;
    let limiter = RateLimiter::new(opts);
    let source = limiter.wrap(fake("kv1"), None);
    source.inner().fail(FailureRule::new(
        SourceOp::Backup,
        ObjectKind::Secrets,
        "s1",
        SourceErrorKind::Transient,
    ));
    source
        .backup(ObjectKind::Secrets, &name("s1"))
        .await
        .expect_err("fails for good");
    let kv1 = "kv1".parse().expect("vault name");
    // Three attempts: two retries; the last failure is not retried.
    assert_eq!(
        limiter.counters(&kv1),
        RequestCounters {
            throttled: 0,
            retries: 2
        }
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded() {
    let mut opts = options();
    opts.backoff.max_attempts = 3;
    let limiter = RateLimiter::new(opts);
    let source = limiter.wrap(fake("kv1"), None);
    source.inner().fail(FailureRule::new(
        SourceOp::Backup,
        ObjectKind::Secrets,
        "s1",
        SourceErrorKind::Transient,
    ));
    let err = source
        .backup(ObjectKind::Secrets, &name("s1"))
        .await
        .expect_err("fails for good");
    assert_eq!(err.kind(), SourceErrorKind::Transient);
    assert_eq!(err.name(), Some("s1"));
    assert_eq!(
        source.inner().calls(SourceOp::Backup, ObjectKind::Secrets),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_and_unsafe_repeats_are_not_retried() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), None);
    source.inner().fail(FailureRule::new(
        SourceOp::Backup,
        ObjectKind::Secrets,
        "s1",
        SourceErrorKind::Forbidden,
    ));
    source.inner().fail(FailureRule::new(
        SourceOp::Delete,
        ObjectKind::Secrets,
        "s1",
        SourceErrorKind::Transient,
    ));
    let start = Instant::now();
    let err = source
        .backup(ObjectKind::Secrets, &name("s1"))
        .await
        .expect_err("forbidden");
    assert_eq!(err.kind(), SourceErrorKind::Forbidden);
    let err = source
        .delete(ObjectKind::Secrets, &name("s1"))
        .await
        .expect_err("a delete whose outcome is unknown is not repeated");
    assert_eq!(err.kind(), SourceErrorKind::Transient);
    assert_eq!(
        source.inner().calls(SourceOp::Backup, ObjectKind::Secrets),
        1
    );
    assert_eq!(
        source.inner().calls(SourceOp::Delete, ObjectKind::Secrets),
        1
    );
    assert_eq!(Instant::now(), start, "no backoff for what is not retried");
}

#[tokio::test(start_paused = true)]
async fn throttled_key_operations_raise_the_key_weight() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), None);
    let vault: VaultName = "kv1".parse().expect("vault");
    source.inner().fail(
        FailureRule::new(
            SourceOp::Backup,
            ObjectKind::Keys,
            "k1",
            SourceErrorKind::Throttled,
        )
        .times(2)
        .retry_after(Duration::from_millis(10)),
    );
    assert_eq!(limiter.key_weight(&vault), 1);
    source
        .backup(ObjectKind::Keys, &name("k1"))
        .await
        .expect("backup after two 429s");
    assert_eq!(limiter.key_weight(&vault), 4);

    // Weight 4 at 10 tokens/s: ten backups need 40 tokens.
    let start = Instant::now();
    for _ in 0..10 {
        source
            .backup(ObjectKind::Keys, &name("k1"))
            .await
            .expect("backup");
    }
    assert!(
        elapsed(start) >= Duration::from_secs(3),
        "{:?}",
        elapsed(start)
    );
}

#[tokio::test(start_paused = true)]
async fn the_subscription_budget_is_shared_by_its_vaults() {
    let mut opts = options();
    // Vaults 10/s each, subscription 10/s in all.
    opts.subscription_multiplier = 1.0;
    let limiter = RateLimiter::new(opts);
    let a = limiter.wrap(fake("kv1"), Some("sub"));
    let b = limiter.wrap(fake("kv2"), Some("SUB"));
    let start = Instant::now();
    for _ in 0..10 {
        a.get_properties(ObjectKind::Secrets, &name("s1"))
            .await
            .expect("a");
        b.get_properties(ObjectKind::Secrets, &name("s1"))
            .await
            .expect("b");
    }
    // 20 calls against one subscription bucket of 10/s with a burst of 10.
    let waited = elapsed(start);
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");

    // A vault of another subscription is not held back.
    let c = limiter.wrap(fake("kv3"), Some("other"));
    let before = Instant::now();
    c.get_properties(ObjectKind::Secrets, &name("s1"))
        .await
        .expect("c");
    assert_eq!(Instant::now(), before);
}

#[tokio::test(start_paused = true)]
async fn listing_pages_are_charged_after_the_fact() {
    let limiter = RateLimiter::new(options());
    let source = limiter.wrap(fake("kv1"), None);
    for i in 0..99 {
        source.inner().put(
            ObjectKind::Secrets,
            &name(&format!("x{i}")),
            SeedObject::value("v"),
        );
    }
    let start = Instant::now();
    assert_eq!(
        source.list(ObjectKind::Secrets).await.expect("list").len(),
        100
    );
    // 4 pages: 1 token before, 3 after; the bucket (10) now holds 6.
    for _ in 0..6 {
        source
            .get_properties(ObjectKind::Secrets, &name("s1"))
            .await
            .expect("get");
    }
    assert_eq!(Instant::now(), start);
    source
        .get_properties(ObjectKind::Secrets, &name("s1"))
        .await
        .expect("get");
    assert!(elapsed(start) >= Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_retry_after_is_capped_and_cancellation_ends_the_wait() {
    let cancel = tokio_util::sync::CancellationToken::new();
    let limiter = RateLimiter::with_cancel(options(), cancel.clone());
    let source = Arc::new(limiter.wrap(fake("kv1"), None));
    let throttled = |times| FailureRule {
        op: Some(SourceOp::List),
        kind: Some(ObjectKind::Secrets),
        name: None,
        error: SourceErrorKind::Throttled,
        retry_after: Some(Duration::from_secs(3600)),
        times,
    };
    // The service asks for an hour; kvkeep waits its cap of a minute, then goes on.
    source.inner().fail(throttled(Some(1)));
    let start = Instant::now();
    source.list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(elapsed(start), Duration::from_secs(60));

    // Throttled for good: Ctrl-C during the pause ends the call at once, with nothing resent.
    source.inner().fail(throttled(None));
    let calls_before = source.inner().calls(SourceOp::List, ObjectKind::Secrets);
    let task = {
        let source = source.clone();
        tokio::spawn(async move {
            let r = source.list(ObjectKind::Secrets).await;
            (r, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let (r, ended_at) = task.await.expect("task");
    let err = r.expect_err("interrupted");
    assert!(err.is_interrupted(), "{err}");
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(ended_at, cancelled_at);
    assert_eq!(
        source.inner().calls(SourceOp::List, ObjectKind::Secrets),
        calls_before + 1,
        "one throttled call, none after the cancellation"
    );
}
