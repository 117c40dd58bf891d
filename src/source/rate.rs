//! [`RateLimitedSource`]: wraps any [`VaultSource`] with kvkeep's share of Key Vault's throttle
//! budget (DESIGN §2, §5) and the retry of throttled and transient failures.
//!
//! - **Buckets.** One token bucket per vault (`vault_share` × 4,000 transactions per 10 s) and
//!   one per subscription shared by all its vaults (`subscription_share` × 5 × that). A call
//!   takes its weight from both. Vaults whose subscription is not configured share one
//!   "unknown subscription" bucket, the conservative choice.
//! - **Weights.** Secrets, certificates and listings weigh 1. Key operations weigh more for
//!   RSA-3072/4096 (4×/8×) and HSM keys (2×), but a listing does not say a key's type and
//!   asking costs a request per key. So key operations start at `key_weight` (default 1, the
//!   RSA-2048/EC case) and the weight *adapts*: each 429 on a key operation of a vault doubles
//!   that vault's key weight, up to `max_key_weight` (16 = RSA-4096 on an HSM), for the life of
//!   the limiter. Pages beyond the first of a listing are charged after the fact (25 items a
//!   page), since their number is known only then.
//! - **Throttling.** A `Throttled` answer pauses *that vault's* bucket for the service's
//!   `Retry-After`, or else for the backoff delay; other vaults, even of the same
//!   subscription, carry on. The call is then repeated.
//! - **Backoff.** Without a `Retry-After`: `base` × 1, 2, 4, 8, 16 … (base 1 s by default,
//!   configurable so tests run fast), minus up to `jitter` of it at random, for at most
//!   `max_attempts` attempts. `Transient` failures are retried only for idempotent operations
//!   (see [`SourceOp::is_idempotent`]); the SDK has already retried resets and 5xx briefly.
//! - **Counts.** Per vault, the limiter counts the throttled answers it saw and the retries it
//!   made ([`RateLimiter::counters`]), for the daemon's metrics: a vault that is throttled
//!   often needs a smaller `vault_share` or fewer neighbours.
//! - **Caps and cancellation.** Every wait is bounded: one backoff or service-requested delay
//!   by `max_delay` (60 s), a bucket pause by [`super::bucket::MAX_PAUSE`], a bucket's debt by
//!   [`super::bucket::MAX_DEBT_SECS`] of refill. And every wait ends at once when the limiter's
//!   cancellation token fires (Ctrl-C, SIGTERM): the call fails as
//!   [`SourceError::interrupted`] instead of being sent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio_util::sync::CancellationToken;

pub use super::bucket::TokenBucket;
use super::error::{SourceError, SourceErrorKind, SourceOp};
use super::{
    BackupBlob, DeletedInfo, ObjectProperties, ObjectSummary, RestoredObject, VaultSource,
    VersionInfo,
};
use crate::config::Limits;
use crate::model::{ObjectKind, ObjectName, VaultName};

/// Key Vault's per-vault budget for secrets and RSA-2048/EC software keys, per window.
pub const SERVICE_VAULT_BUDGET: f64 = 4000.0;
/// The window of that budget.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(10);
/// A subscription's budget is this many times a vault's.
pub const SERVICE_SUBSCRIPTION_MULTIPLIER: f64 = 5.0;
/// Items per page of a Key Vault listing.
const PAGE_SIZE: usize = 25;

/// Retry and backoff settings of [`RateLimitedSource`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffOptions {
    /// First backoff delay; doubled per attempt (1, 2, 4, 8, 16 × base).
    pub base: Duration,
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Fraction (0–1) of a delay that is randomly taken off, so vaults throttled together do
    /// not retry together.
    pub jitter: f64,
    /// Cap of one wait, a service-requested one included.
    pub max_delay: Duration,
}

impl Default for BackoffOptions {
    fn default() -> Self {
        BackoffOptions {
            base: Duration::from_secs(1),
            max_attempts: 6,
            jitter: 0.25,
            max_delay: Duration::from_secs(60),
        }
    }
}

impl BackoffOptions {
    /// The delay after failed attempt number `attempt` (1-based), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31)))
            .min(self.max_delay)
    }

    fn jittered(&self, attempt: u32) -> Duration {
        let cut = rand::thread_rng().gen_range(0.0..=self.jitter.clamp(0.0, 1.0));
        self.delay(attempt).mul_f64(1.0 - cut)
    }
}

/// Settings of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitOptions {
    /// Fraction (0–1] of a vault's budget kvkeep may use.
    pub vault_share: f64,
    /// Fraction (0–1] of a subscription's budget kvkeep may use.
    pub subscription_share: f64,
    /// The service's per-vault budget per `window` (4,000).
    pub vault_budget: f64,
    /// The service's window (10 s).
    pub window: Duration,
    /// Subscription budget ÷ vault budget (5).
    pub subscription_multiplier: f64,
    /// Initial weight of a key operation.
    pub key_weight: u32,
    /// Largest weight a key operation adapts to.
    pub max_key_weight: u32,
    /// Retry and backoff.
    pub backoff: BackoffOptions,
}

impl RateLimitOptions {
    /// The service limits scaled by the configured shares.
    pub fn from_limits(limits: &Limits) -> Self {
        RateLimitOptions {
            vault_share: limits.vault_share,
            subscription_share: limits.subscription_share,
            vault_budget: SERVICE_VAULT_BUDGET,
            window: SERVICE_WINDOW,
            subscription_multiplier: SERVICE_SUBSCRIPTION_MULTIPLIER,
            key_weight: 1,
            max_key_weight: 16,
            backoff: BackoffOptions::default(),
        }
    }

    fn vault_tokens(&self) -> f64 {
        self.vault_share * self.vault_budget
    }

    fn subscription_tokens(&self) -> f64 {
        self.subscription_share * self.subscription_multiplier * self.vault_budget
    }
}

/// The budget of one vault.
#[derive(Debug)]
struct VaultBudget {
    bucket: TokenBucket,
    key_weight: AtomicU32,
    /// Throttled (429) answers seen, the last attempt's included.
    throttled: AtomicU64,
    /// Calls repeated after a throttled or transient failure.
    retries: AtomicU64,
}

/// What the limiter saw of one vault's requests since it was created: running totals, so a
/// reader turns them into Prometheus counters by taking differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounters {
    /// Throttled (429) answers from the vault.
    pub throttled: u64,
    /// Calls repeated after a throttled or transient failure.
    pub retries: u64,
}

/// The shared registry of buckets: one limiter per daemon, handing out [`RateLimitedSource`]s
/// so that every source of a vault, and every vault of a subscription, draws on the same budget.
#[derive(Debug)]
pub struct RateLimiter {
    options: RateLimitOptions,
    cancel: CancellationToken,
    vaults: Mutex<HashMap<VaultName, Arc<VaultBudget>>>,
    subscriptions: Mutex<HashMap<String, Arc<TokenBucket>>>,
}

impl RateLimiter {
    /// A limiter with no buckets yet, whose waits only end when they are over.
    pub fn new(options: RateLimitOptions) -> Arc<Self> {
        Self::with_cancel(options, CancellationToken::new())
    }

    /// A limiter whose waits (for tokens, throttle pauses, backoff) end as soon as `cancel`
    /// fires; the call then fails with [`SourceError::interrupted`].
    pub fn with_cancel(options: RateLimitOptions, cancel: CancellationToken) -> Arc<Self> {
        Arc::new(RateLimiter {
            options,
            cancel,
            vaults: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn options(&self) -> &RateLimitOptions {
        &self.options
    }

    /// Wraps `source`, drawing on its vault's bucket and on `subscription`'s (vaults of an
    /// unknown subscription share one bucket).
    pub fn wrap<S: VaultSource>(
        self: &Arc<Self>,
        source: S,
        subscription: Option<&str>,
    ) -> RateLimitedSource<S> {
        let vault = {
            let mut vaults = self.vaults.lock().unwrap_or_else(|p| p.into_inner());
            vaults
                .entry(source.vault().clone())
                .or_insert_with(|| {
                    Arc::new(VaultBudget {
                        bucket: TokenBucket::new(self.options.vault_tokens(), self.options.window),
                        key_weight: AtomicU32::new(self.options.key_weight.max(1)),
                        throttled: AtomicU64::new(0),
                        retries: AtomicU64::new(0),
                    })
                })
                .clone()
        };
        let subscription = {
            let key = subscription.unwrap_or("").to_ascii_lowercase();
            let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            subs.entry(key)
                .or_insert_with(|| {
                    Arc::new(TokenBucket::new(
                        self.options.subscription_tokens(),
                        self.options.window,
                    ))
                })
                .clone()
        };
        RateLimitedSource {
            inner: source,
            vault,
            subscription,
            options: self.options,
            cancel: self.cancel.clone(),
        }
    }

    /// The token that cuts this limiter's waits short.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The current weight of key operations in `vault` (after adaptation to 429s).
    pub fn key_weight(&self, vault: &VaultName) -> u32 {
        self.vaults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vault)
            .map_or(self.options.key_weight, |v| {
                v.key_weight.load(Ordering::Relaxed)
            })
    }

    /// The throttled answers and retries of `vault` so far (zero for a vault never wrapped).
    pub fn counters(&self, vault: &VaultName) -> RequestCounters {
        self.vaults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vault)
            .map_or(RequestCounters::default(), |v| RequestCounters {
                throttled: v.throttled.load(Ordering::Relaxed),
                retries: v.retries.load(Ordering::Relaxed),
            })
    }
}

/// A [`VaultSource`] that waits for its vault's and subscription's budget before each call and
/// retries throttled and transient failures (see the module docs).
#[derive(Debug)]
pub struct RateLimitedSource<S> {
    inner: S,
    vault: Arc<VaultBudget>,
    subscription: Arc<TokenBucket>,
    options: RateLimitOptions,
    cancel: CancellationToken,
}

impl<S: VaultSource> RateLimitedSource<S> {
    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn weight(&self, op: SourceOp, kind: ObjectKind) -> f64 {
        if is_key_operation(op, kind) {
            f64::from(self.vault.key_weight.load(Ordering::Relaxed))
        } else {
            1.0
        }
    }

    /// Charges the pages beyond the first of a listing of `items` items.
    fn charge_pages(&self, items: usize) {
        let extra = items.div_ceil(PAGE_SIZE).saturating_sub(1) as f64;
        if extra > 0.0 {
            self.vault.bucket.charge(extra);
            self.subscription.charge(extra);
        }
    }

    async fn run<T, F, Fut>(
        &self,
        op: SourceOp,
        kind: ObjectKind,
        name: Option<&ObjectName>,
        call: F,
    ) -> Result<T, SourceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        let backoff = &self.options.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let weight = self.weight(op, kind);
            let interrupted = || {
                SourceError::interrupted(op, self.inner.vault(), kind, name.map(ObjectName::as_str))
            };
            if self
                .vault
                .bucket
                .acquire_or_cancel(weight, &self.cancel)
                .await
                .is_err()
                || self
                    .subscription
                    .acquire_or_cancel(weight, &self.cancel)
                    .await
                    .is_err()
            {
                return Err(interrupted());
            }
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if error.kind() == SourceErrorKind::Throttled {
                self.vault.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let retryable = match error.kind() {
                SourceErrorKind::Throttled => true,
                SourceErrorKind::Transient => op.is_idempotent(),
                _ => false,
            };
            if !retryable || attempt >= backoff.max_attempts.max(1) {
                return Err(error);
            }
            // Counted when decided, not after the wait: a retry cut short by cancellation was
            // still one the vault's answers called for.
            self.vault.retries.fetch_add(1, Ordering::Relaxed);
            let delay = error
                .retry_after()
                .unwrap_or_else(|| backoff.jittered(attempt))
                .min(backoff.max_delay);
            let vault = self.inner.vault();
            let name = name.map(ObjectName::as_str).unwrap_or("");
            if error.kind() == SourceErrorKind::Throttled {
                if is_key_operation(op, kind) {
                    let max = self.options.max_key_weight.max(1);
                    let _ = self.vault.key_weight.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |w| (w < max).then(|| (w * 2).min(max)),
                    );
                }
                // Pausing the bucket (not just this call) holds back every call to this vault,
                // and only this vault: a throttled vault slows only itself.
                self.vault.bucket.pause_for(delay);
                tracing::warn!(vault = %vault, kind = %kind, name, op = %op, attempt,
                    delay_ms = delay.as_millis() as u64, "key vault throttled kvkeep; pausing this vault");
            } else {
                tracing::debug!(vault = %vault, kind = %kind, name, op = %op, attempt,
                    delay_ms = delay.as_millis() as u64, error = %error, "retrying after a transient failure");
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(interrupted()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Whether a call weighs the vault's adaptive key weight: key operations other than listings
/// (see the module docs).
fn is_key_operation(op: SourceOp, kind: ObjectKind) -> bool {
    kind == ObjectKind::Keys
        && !matches!(
            op,
            SourceOp::List | SourceOp::ListVersions | SourceOp::ListDeleted
        )
}

#[async_trait]
impl<S: VaultSource> VaultSource for RateLimitedSource<S> {
    fn vault(&self) -> &VaultName {
        self.inner.vault()
    }

    async fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectSummary>, SourceError> {
        let items = self
            .run(SourceOp::List, kind, None, || self.inner.list(kind))
            .await?;
        self.charge_pages(items.len());
        Ok(items)
    }

    async fn list_versions(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionInfo>, SourceError> {
        let items = self
            .run(SourceOp::ListVersions, kind, Some(name), || {
                self.inner.list_versions(kind, name)
            })
            .await?;
        self.charge_pages(items.len());
        Ok(items)
    }

    async fn backup(&self, kind: ObjectKind, name: &ObjectName) -> Result<BackupBlob, SourceError> {
        self.run(SourceOp::Backup, kind, Some(name), || {
            self.inner.backup(kind, name)
        })
        .await
    }

    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError> {
        self.run(SourceOp::Restore, kind, None, || {
            self.inner.restore(kind, blob)
        })
        .await
    }

    async fn list_deleted(&self, kind: ObjectKind) -> Result<Vec<DeletedInfo>, SourceError> {
        let items = self
            .run(SourceOp::ListDeleted, kind, None, || {
                self.inner.list_deleted(kind)
            })
            .await?;
        self.charge_pages(items.len());
        Ok(items)
    }

    async fn get_deleted(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<DeletedInfo>, SourceError> {
        self.run(SourceOp::GetDeleted, kind, Some(name), || {
            self.inner.get_deleted(kind, name)
        })
        .await
    }

    async fn recover(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.run(SourceOp::Recover, kind, Some(name), || {
            self.inner.recover(kind, name)
        })
        .await
    }

    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.run(SourceOp::Purge, kind, Some(name), || {
            self.inner.purge(kind, name)
        })
        .await
    }

    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        self.run(SourceOp::Delete, kind, Some(name), || {
            self.inner.delete(kind, name)
        })
        .await
    }

    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError> {
        self.run(SourceOp::GetProperties, kind, Some(name), || {
            self.inner.get_properties(kind, name)
        })
        .await
    }
}

#[cfg(test)]
#[path = "rate_tests.rs"]
mod tests;
