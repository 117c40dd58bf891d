//! [`InMemoryStore`]: the fake blob store for tests and the demo, held in a map.
//!
//! Leases follow Azure's blob lease state machine (available → leased → expired or broken →
//! leased again), with expiry read from an injectable clock ([`InMemoryStore::with_clock`]) so
//! tests can let a lease run out without waiting.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::lease::{lock_key, HolderInfo, Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::{BlobMeta, BlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::clock::UnixClock;
use crate::model::{BlobKey, VaultName};

const NAME: &str = "in-memory store";

/// The lease state of one lock blob, as Azure keeps it.
#[derive(Debug, Clone)]
enum Slot {
    /// Held by `id` until `expires_at` (Unix seconds; `None` = infinite). Past that instant the
    /// lease is expired: anyone may acquire it, and `id` may still renew it until someone does.
    Leased { id: String, expires_at: Option<i64> },
    /// Ended by a break: anyone may acquire; `id` may release it but not renew it.
    Broken { id: String },
    /// Released (or never leased).
    Available,
}

#[derive(Debug, Clone)]
struct LeaseEntry {
    slot: Slot,
    /// What the last holder recorded; it stays after a release or break, as blob metadata does.
    holder: Option<HolderInfo>,
}

/// Blobs in a map, with the same write-once contract as the real stores.
///
/// A `std` mutex, not a tokio one: it is never held across an `.await`, and every critical
/// section is a map lookup or insert.
pub struct InMemoryStore {
    blobs: Mutex<BTreeMap<BlobKey, Bytes>>,
    leases: Mutex<HashMap<VaultName, LeaseEntry>>,
    clock: UnixClock,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").finish_non_exhaustive()
    }
}

impl Default for InMemoryStore {
    fn default() -> Self {
        InMemoryStore {
            blobs: Mutex::default(),
            leases: Mutex::default(),
            clock: Arc::new(crate::clock::now_unix),
        }
    }
}

impl InMemoryStore {
    /// An empty store whose leases expire by the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leases expire by `clock` (Unix seconds) instead of the wall clock: a test moves it past
    /// a lease's duration to make the lease expire.
    pub fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    fn blobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<BlobKey, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<VaultName, LeaseEntry>> {
        // As for blobs: every update replaces one entry whole.
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost(vault: &VaultName, detail: &str) -> LeaseError {
        LeaseError::Lost {
            vault: vault.clone(),
            store: NAME.to_string(),
            detail: detail.to_string(),
        }
    }

    fn not_found(op: StoreOp, key: &BlobKey) -> StoreError {
        StoreError::new(StoreErrorKind::NotFound, op, key.as_str(), NAME, "")
    }
}

#[async_trait]
impl BlobStore for InMemoryStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let mut blobs = self.blobs();
        if blobs.contains_key(key) {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                StoreOp::Put,
                key.as_str(),
                NAME,
                "",
            ));
        }
        blobs.insert(key.clone(), bytes);
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        self.blobs()
            .get(key)
            .cloned()
            .ok_or_else(|| Self::not_found(StoreOp::Get, key))
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        let size = self
            .blobs()
            .get(key)
            .map(|b| b.len() as u64)
            .ok_or_else(|| Self::not_found(StoreOp::Head, key))?;
        Ok(BlobMeta {
            key: key.clone(),
            size_bytes: size,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        Ok(self
            .blobs()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, v)| BlobMeta {
                key: k.clone(),
                size_bytes: v.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.blobs()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| Self::not_found(StoreOp::Delete, key))
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        let now = (self.clock)();
        // The lock blob exists from the first acquire on, empty, as on Azure.
        self.blobs().entry(lock_key(vault)).or_default();
        let mut leases = self.leases();
        let entry = leases.entry(vault.clone()).or_insert(LeaseEntry {
            slot: Slot::Available,
            holder: None,
        });
        if let Slot::Leased { id, expires_at } = &entry.slot {
            let live = expires_at.is_none_or(|t| now < t);
            if live && id != holder.lease_id() {
                return Err(LeaseError::Held {
                    vault: vault.clone(),
                    store: NAME.to_string(),
                    by: entry.holder.clone(),
                });
            }
        }
        // Only a release says the previous holder finished; an expired, broken or (same id)
        // still running lease means it stopped, or restarted, in the middle of its work.
        let abandoned = match entry.slot {
            Slot::Available => None,
            Slot::Leased { .. } | Slot::Broken { .. } => entry.holder.clone(),
        };
        entry.slot = Slot::Leased {
            id: holder.lease_id().to_string(),
            expires_at: duration.expiry_from(now),
        };
        entry.holder = Some(holder.info_at(now));
        Ok(Lease::new(vault.clone(), holder.clone(), duration, now).after_abandoned(abandoned))
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        let now = (self.clock)();
        let mut leases = self.leases();
        let ours = lease.holder().lease_id();
        match leases.get_mut(lease.vault()).map(|e| &mut e.slot) {
            // Ours, live or expired: an expired lease nobody took since is renewed, as Azure does.
            Some(Slot::Leased { id, expires_at }) if id == ours => {
                *expires_at = lease.duration().expiry_from(now);
                Ok(())
            }
            Some(Slot::Leased { .. }) => Err(Self::lost(
                lease.vault(),
                "another holder acquired it after it expired or was broken",
            )),
            Some(Slot::Broken { .. }) => Err(Self::lost(lease.vault(), "it was broken")),
            Some(Slot::Available) | None => Err(Self::lost(
                lease.vault(),
                "it was released, or never acquired here",
            )),
        }
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        let mut leases = self.leases();
        let ours = lease.holder().lease_id();
        if let Some(entry) = leases.get_mut(lease.vault()) {
            match &entry.slot {
                Slot::Leased { id, .. } | Slot::Broken { id } if id == ours => {
                    entry.slot = Slot::Available;
                }
                // Not ours any more: nothing to release.
                _ => {}
            }
        }
        Ok(())
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        let mut leases = self.leases();
        if let Some(entry) = leases.get_mut(vault) {
            if let Slot::Leased { id, .. } = &entry.slot {
                entry.slot = Slot::Broken { id: id.clone() };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn vault(s: &str) -> VaultName {
        s.parse().expect("vault")
    }

    fn holder(s: &str) -> LeaseHolder {
        LeaseHolder::new(s).expect("holder")
    }

    /// A store whose clock the test sets by hand.
    fn store_at(start: i64) -> (InMemoryStore, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start));
        let clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        (InMemoryStore::new().with_clock(clock), now)
    }

    #[tokio::test]
    async fn a_lease_expires_after_its_duration_unless_renewed() {
        let (store, now) = store_at(1_000);
        let v = vault("kv1");
        let a = store
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::Seconds(15))
            .await
            .expect("acquire");
        now.store(1_014, Ordering::SeqCst);
        let err = store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect_err("still live one second before its end");
        assert!(matches!(err, LeaseError::Held { .. }), "{err}");

        // A renew at 1014 moves the end to 1029.
        store.renew_lease(&a).await.expect("renew");
        now.store(1_028, Ordering::SeqCst);
        store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect_err("renewed");

        // Expired: anyone may take it, and the old holder has lost it.
        now.store(1_029, Ordering::SeqCst);
        let taken = store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect("expired leases are free");
        // The lease ran out without a release: the new holder is told whose work that was.
        let left = taken.abandoned().expect("web-1 never released");
        assert_eq!(
            (left.instance.as_str(), left.acquired_at),
            ("web-1", Some(1_000))
        );
        let err = store.renew_lease(&a).await.expect_err("taken");
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_expired_lease_nobody_took_can_still_be_renewed_as_on_azure() {
        let (store, now) = store_at(0);
        let v = vault("kv1");
        let a = store
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::Seconds(15))
            .await
            .expect("acquire");
        now.store(100, Ordering::SeqCst);
        store
            .renew_lease(&a)
            .await
            .expect("nobody took it meanwhile");
        now.store(114, Ordering::SeqCst);
        store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect_err("live again until 115");
    }

    #[tokio::test]
    async fn an_infinite_lease_never_expires() {
        let (store, now) = store_at(0);
        let v = vault("kv1");
        store
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::Infinite)
            .await
            .expect("acquire");
        now.store(i64::MAX / 2, Ordering::SeqCst);
        store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect_err("held for ever");
        store.break_lease(&v).await.expect("break");
        store
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect("free once broken");
    }
}
