//! A vault lease held for the length of one run: acquired, renewed in the background, and
//! released at the end — the discipline [`super::lease`] asks of every caller, in one place, so
//! that backup and prune (from the daemon or the command line) keep it the same way.
//!
//! A lease has no fencing: the store does not refuse the writes of an instance whose lease ran
//! out. What keeps two instances apart is that each one stops working on a vault as soon as it
//! may no longer hold it: when a renew says the lease is [lost](LeaseError::Lost), and when no
//! renew has succeeded for a whole lease duration (by then the lease may have expired and
//! another instance may have taken it). Either way the renew task cancels the run's token and
//! records why; the run checks [`LeaseWatch::lost`] before it commits (a backup's manifest), so
//! a run that lost its lease never makes a restore point.
//!
//! Release must be awaited, and `Drop` cannot await: [`HeldLease::release`] consumes the lease,
//! and callers hold it in a scope that ends with that call on every path. A lease that is
//! dropped without release (a panic) stops renewing and expires by itself within its duration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease::{Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::BlobStore;
use crate::model::VaultName;

/// How a held lease is kept: its duration, how often it is renewed, and how long renewals may
/// fail before the holder gives the vault up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// The lease taken.
    pub duration: LeaseDuration,
    /// Time between renewals (a third of the duration).
    pub renew_every: Duration,
    /// With no successful renew for this long the lease counts as lost (the duration).
    pub give_up_after: Duration,
}

impl LeaseTiming {
    /// Renewed every third of `duration`, given up after a whole `duration` without a renew. An
    /// infinite lease is never renewed and never given up.
    pub fn for_duration(duration: LeaseDuration) -> Self {
        // Infinite: a renew "interval" of a day keeps the loop idle; it is never lost by time.
        let forever = Duration::from_secs(86_400 * 365);
        LeaseTiming {
            duration,
            renew_every: duration.renew_interval().unwrap_or(forever),
            give_up_after: duration.as_duration().unwrap_or(forever),
        }
    }
}

impl Default for LeaseTiming {
    /// 60 s, renewed every 20 s.
    fn default() -> Self {
        LeaseTiming::for_duration(LeaseDuration::DEFAULT)
    }
}

/// Whether a held lease is still ours, for the work it protects. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LeaseWatch {
    lost: Arc<Mutex<Option<String>>>,
}

impl LeaseWatch {
    /// Why the lease was lost, once it was; `None` while it is held.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the loss (the first reason wins: it is the cause, later ones are consequences).
    fn lose(&self, reason: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if lost.is_none() {
            *lost = Some(reason);
        }
    }
}

/// A vault lease held by this process, renewed in the background until released.
#[derive(Debug)]
pub struct HeldLease {
    store: Arc<dyn BlobStore>,
    lease: Lease,
    watch: LeaseWatch,
    stop: CancellationToken,
    renewer: JoinHandle<()>,
}

impl HeldLease {
    /// Acquires `vault`'s lease for `holder` and starts renewing it. When the lease is lost,
    /// `on_loss` is cancelled (pass the run's token, or a child of it) and [`Self::watch`] says
    /// why. Refused with [`LeaseError::Held`] while another instance holds the vault.
    pub async fn acquire(
        store: Arc<dyn BlobStore>,
        vault: &VaultName,
        holder: &LeaseHolder,
        timing: LeaseTiming,
        on_loss: CancellationToken,
    ) -> Result<HeldLease, LeaseError> {
        let lease = store.acquire_lease(vault, holder, timing.duration).await?;
        let watch = LeaseWatch::default();
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            store.clone(),
            lease.clone(),
            timing,
            watch.clone(),
            stop.clone(),
            on_loss,
        ));
        Ok(HeldLease {
            store,
            lease,
            watch,
            stop,
            renewer,
        })
    }

    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the lease is still ours.
    pub fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// Stops renewing and releases the lease, so that another instance may take the vault at
    /// once rather than after the lease expires. Returns why the lease was lost meanwhile, if it
    /// was; a release that fails is logged (the lease then expires by itself).
    pub async fn release(mut self) -> Option<String> {
        self.stop.cancel();
        // The renew task ends at its next await point; a renew in flight is abandoned.
        (&mut self.renewer).await.ok();
        let vault = self.lease.vault().clone();
        if let Err(e) = self.store.release_lease(self.lease.clone()).await {
            tracing::warn!(vault = %vault, error = %e,
                "releasing the vault lease failed; it expires by itself within its duration");
        }
        self.watch.lost()
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Released or not, a lease nobody holds any more must not be renewed for ever.
        self.stop.cancel();
    }
}

/// The renew loop: every `renew_every`, sooner after a failure, until `stop`; on a lost lease,
/// or no success for `give_up_after`, records why and cancels `on_loss`.
async fn renew(
    store: Arc<dyn BlobStore>,
    lease: Lease,
    timing: LeaseTiming,
    watch: LeaseWatch,
    stop: CancellationToken,
    on_loss: CancellationToken,
) {
    let vault = lease.vault().clone();
    let mut last_ok = Instant::now();
    let mut next = last_ok + timing.renew_every;
    let lose = |reason: String| {
        tracing::error!(vault = %vault, reason = %reason,
            "vault lease lost: stopping the run on this vault before it commits anything");
        watch.lose(reason);
        on_loss.cancel();
    };
    loop {
        let deadline = last_ok + timing.give_up_after;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next.min(deadline)) => {}
        }
        let attempt = Instant::now();
        if attempt >= deadline {
            return lose(format!(
                "the lease on vault {vault} was lost: no renew succeeded for {} s, so another kvkeep instance may hold it now",
                timing.give_up_after.as_secs()
            ));
        }
        let renewed = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline, store.renew_lease(&lease)) => r,
        };
        match renewed {
            Ok(Ok(())) => {
                // From when the request was sent: the service extended the lease no earlier.
                last_ok = attempt;
                next = attempt + timing.renew_every;
            }
            Ok(Err(e @ LeaseError::Lost { .. })) => return lose(e.to_string()),
            Ok(Err(e)) => {
                // Throttled, unreachable …: try again sooner, while the lease still runs.
                let retry = e
                    .retry_after()
                    .unwrap_or(timing.renew_every / 4)
                    .min(timing.renew_every);
                tracing::warn!(vault = %vault, error = %e, retry_in_ms = retry.as_millis() as u64,
                    "renewing the vault lease failed; trying again");
                next = Instant::now() + retry;
            }
            // The deadline passed during the request: the next round says so.
            Err(_) => next = deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::store::{FaultyStore, InMemoryStore, StoreErrorKind, StoreOp};

    fn vault() -> VaultName {
        "kv1".parse().expect("vault")
    }

    fn fast() -> LeaseTiming {
        LeaseTiming {
            duration: LeaseDuration::DEFAULT,
            renew_every: Duration::from_millis(20),
            give_up_after: Duration::from_millis(500),
        }
    }

    fn holder(name: &str) -> LeaseHolder {
        LeaseHolder::new(name).expect("holder")
    }

    /// An in-memory store whose lease clock the test moves, behind fault injection.
    fn stores() -> (Arc<InMemoryStore>, Arc<FaultyStore>, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_000));
        let clock_now = now.clone();
        let inner = Arc::new(
            InMemoryStore::new().with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst))),
        );
        let faulty = Arc::new(FaultyStore::new(inner.clone()));
        (inner, faulty, now)
    }

    #[tokio::test]
    async fn renewals_keep_the_lease_past_its_duration_and_release_frees_the_vault() {
        let (inner, faulty, now) = stores();
        let run = CancellationToken::new();
        let held = HeldLease::acquire(faulty.clone(), &vault(), &holder("a"), fast(), run.clone())
            .await
            .expect("acquired");
        for _ in 0..5 {
            // After each renewal the store's clock moves 50 s: 250 s in all, so without the
            // renewals the 60 s lease would have ended long ago.
            let before = faulty.calls(StoreOp::RenewLease);
            tokio::time::timeout(Duration::from_secs(5), async {
                while faulty.calls(StoreOp::RenewLease) == before {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("renewed");
            now.fetch_add(50, Ordering::SeqCst);
        }
        assert!(faulty.calls(StoreOp::RenewLease) >= 3);
        let refused = inner
            .acquire_lease(&vault(), &holder("b"), LeaseDuration::DEFAULT)
            .await
            .expect_err("still held by a");
        assert!(refused.to_string().contains("instance a"), "{refused}");
        assert!(!run.is_cancelled());
        assert_eq!(held.release().await, None, "never lost");
        inner
            .acquire_lease(&vault(), &holder("b"), LeaseDuration::DEFAULT)
            .await
            .expect("released: b takes it at once");
    }

    #[tokio::test]
    async fn a_broken_lease_cancels_the_run_and_says_why() {
        let (inner, faulty, _) = stores();
        let run = CancellationToken::new();
        let held = HeldLease::acquire(faulty, &vault(), &holder("a"), fast(), run.clone())
            .await
            .expect("acquired");
        inner.break_lease(&vault()).await.expect("broken");
        tokio::time::timeout(Duration::from_secs(5), run.cancelled())
            .await
            .expect("the run is cancelled");
        let why = held.watch().lost().expect("lost");
        assert!(
            why.contains("lease on vault kv1") && why.contains("lost"),
            "{why}"
        );
        assert_eq!(held.release().await, Some(why));
    }

    #[tokio::test]
    async fn renewals_failing_for_a_whole_duration_count_as_lost() {
        let (_, faulty, _) = stores();
        faulty.fail_next(StoreOp::RenewLease, 1_000, StoreErrorKind::Transient);
        let run = CancellationToken::new();
        let held = HeldLease::acquire(faulty.clone(), &vault(), &holder("a"), fast(), run.clone())
            .await
            .expect("acquired");
        tokio::time::timeout(Duration::from_secs(5), run.cancelled())
            .await
            .expect("the run is cancelled");
        assert!(
            faulty.calls(StoreOp::RenewLease) >= 2,
            "retried before giving up"
        );
        let why = held.watch().lost().expect("lost");
        assert!(why.contains("no renew succeeded for"), "{why}");
        held.release().await;
    }

    #[tokio::test]
    async fn a_few_failed_renewals_within_the_duration_are_survived() {
        let (_, faulty, _) = stores();
        faulty.fail_next(StoreOp::RenewLease, 1, StoreErrorKind::Throttled);
        let run = CancellationToken::new();
        let held = HeldLease::acquire(faulty.clone(), &vault(), &holder("a"), fast(), run.clone())
            .await
            .expect("acquired");
        tokio::time::timeout(Duration::from_secs(5), async {
            while faulty.calls(StoreOp::RenewLease) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("renewed after the failure");
        assert!(!run.is_cancelled());
        assert_eq!(held.release().await, None);
    }
}
