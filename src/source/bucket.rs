//! A token bucket on tokio's clock (so tests drive it with `tokio::time::pause`), with a pause
//! for "the service told us to wait" and post-charging for work whose cost is known only after
//! the fact (the pages of a listing).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest pause [`TokenBucket::pause_for`] takes, whatever a service asked for.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The deepest debt [`TokenBucket::charge`] runs into, in seconds of refill: a listing of a huge
/// vault charged after the fact must not hold the vault back for longer than this.
pub const MAX_DEBT_SECS: f64 = 10.0;

/// A wait for tokens ended because the cancellation token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// A token bucket: `rate` tokens per second, holding at most `capacity`.
///
/// The balance may go negative through [`TokenBucket::charge`]; later acquisitions then wait
/// until it has been paid back. A std mutex guards the state: it is held only for arithmetic,
/// never across an `.await`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A bucket allowing `budget` tokens per `window` on average. The burst capacity is one
    /// second's worth (at least one token), so that within any window of the service's length
    /// kvkeep never uses more than its budget plus one second of it — a bucket as deep as the
    /// whole window would allow twice the budget in one window (a full burst, then the refill).
    pub fn new(budget: f64, window: Duration) -> Self {
        let rate = budget.max(f64::MIN_POSITIVE) / window.as_secs_f64().max(1e-3);
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            state: Mutex::new(State {
                tokens: capacity,
                last: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Burst capacity in tokens.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, state: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.capacity);
        state.last = now;
    }

    /// Takes `weight` tokens now, or says how long to wait before trying again.
    fn try_take(&self, weight: f64) -> Result<(), Duration> {
        // A weight above the capacity could never be satisfied; it takes a full bucket instead.
        let weight = weight.min(self.capacity);
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(until) = state.paused_until {
            if until > now {
                return Err(until - now);
            }
            state.paused_until = None;
        }
        self.refill(&mut state, now);
        if state.tokens >= weight {
            state.tokens -= weight;
            Ok(())
        } else {
            let missing = weight - state.tokens;
            Err(Duration::from_secs_f64(missing / self.rate).max(Duration::from_micros(1)))
        }
    }

    /// Waits until `weight` tokens are available (and no pause is in force), then takes them.
    pub async fn acquire(&self, weight: f64) {
        while let Err(wait) = self.try_take(weight) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Like [`TokenBucket::acquire`], but gives up as soon as `cancel` fires. Tokens available
    /// at once are taken even after cancellation: only waiting is cut short, so work already
    /// under way is not torn apart.
    pub async fn acquire_or_cancel(
        &self,
        weight: f64,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        while let Err(wait) = self.try_take(weight) {
            tokio::select! {
                _ = cancel.cancelled() => return Err(Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        Ok(())
    }

    /// Takes `weight` tokens without waiting, possibly running into debt (at most
    /// [`MAX_DEBT_SECS`] of refill).
    pub fn charge(&self, weight: f64) {
        let now = Instant::now();
        let mut state = self.lock();
        self.refill(&mut state, now);
        state.tokens = (state.tokens - weight).max(-self.rate * MAX_DEBT_SECS);
    }

    /// Lets nothing through for `delay`, at most [`MAX_PAUSE`] (extends, never shortens, a
    /// pause in force).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay.min(MAX_PAUSE);
        let mut state = self.lock();
        if state.paused_until.is_none_or(|u| u < until) {
            state.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_one_second_then_paces() {
        // 100 per 10 s = 10/s, capacity 10.
        let bucket = TokenBucket::new(100.0, Duration::from_secs(10));
        assert_eq!(bucket.capacity(), 10.0);
        let start = Instant::now();
        for _ in 0..10 {
            bucket.acquire(1.0).await;
        }
        assert_eq!(Instant::now(), start, "the burst needs no waiting");
        bucket.acquire(1.0).await;
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_millis(102),
            "one token at 10/s takes 100 ms, waited {waited:?}"
        );
        for _ in 0..20 {
            bucket.acquire(1.0).await;
        }
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_millis(2100) && waited < Duration::from_millis(2110),
            "21 tokens beyond the burst take 2.1 s, waited {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn debt_and_pauses_delay_later_callers() {
        let bucket = TokenBucket::new(10.0, Duration::from_secs(1));
        let start = Instant::now();
        bucket.charge(30.0); // 10 in the bucket, 20 owed: 2 s to repay, 0.1 s for the next.
        bucket.acquire(1.0).await;
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_millis(2100) && waited < Duration::from_millis(2110),
            "{waited:?}"
        );

        bucket.pause_for(Duration::from_secs(5));
        bucket.pause_for(Duration::from_secs(1)); // never shortens
        let paused_at = Instant::now();
        bucket.acquire(1.0).await;
        assert!(Instant::now() - paused_at >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_capped_and_end_when_cancelled() {
        // A pause of an hour is cut to the cap; a debt of hours to ten seconds of refill.
        let bucket = TokenBucket::new(10.0, Duration::from_secs(1));
        bucket.pause_for(Duration::from_secs(3600));
        let start = Instant::now();
        bucket.acquire(1.0).await;
        assert_eq!(Instant::now() - start, MAX_PAUSE);
        bucket.charge(1_000_000.0);
        let start = Instant::now();
        bucket.acquire(1.0).await;
        let waited = Instant::now() - start;
        assert!(waited <= Duration::from_secs(11), "{waited:?}");

        // Cancelled while waiting 5,000 s for a token: the wait ends at once.
        let bucket = std::sync::Arc::new(TokenBucket::new(0.0002, Duration::from_secs(1)));
        bucket.charge(1.0);
        let cancel = CancellationToken::new();
        let waiter = {
            let (bucket, cancel) = (bucket.clone(), cancel.clone());
            tokio::spawn(async move {
                let r = bucket.acquire_or_cancel(1.0, &cancel).await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cancelled_at = Instant::now();
        cancel.cancel();
        let (r, ended_at) = waiter.await.expect("waiter");
        assert_eq!(r, Err(Cancelled));
        assert_eq!(
            ended_at, cancelled_at,
            "the wait ended when the token fired"
        );
        // Available tokens are still taken after cancellation.
        let full = TokenBucket::new(10.0, Duration::from_secs(1));
        assert_eq!(full.acquire_or_cancel(1.0, &cancel).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn weights_above_capacity_take_a_full_bucket() {
        let bucket = TokenBucket::new(2.0, Duration::from_secs(1));
        let start = Instant::now();
        bucket.acquire(16.0).await;
        assert_eq!(Instant::now(), start);
        bucket.acquire(16.0).await;
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(1000) && waited < Duration::from_millis(1010));
    }
}
