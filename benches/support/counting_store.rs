//! A store decorator counting the requests that reach the store below it, by operation: the
//! benches' measure of what a job costs a remote store. Included with `#[path]`
//! (`benches/retention.rs`, `benches/sync.rs`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kvkeep::model::{BlobKey, VaultName};
use kvkeep::store::{
    BlobMeta, BlobStore, Lease, LeaseDuration, LeaseError, LeaseHolder, StoreError,
};

/// A store decorator counting the requests that reach the store below it, by operation.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: Arc<dyn BlobStore>,
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        CountingStore {
            inner,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    pub fn counters(&self) -> [(&'static str, &AtomicU64); 5] {
        [
            ("put", &self.puts),
            ("get", &self.gets),
            ("head", &self.heads),
            ("list", &self.lists),
            ("delete", &self.deletes),
        ]
    }

    pub fn reset(&self) {
        for (_, c) in self.counters() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl BlobStore for CountingStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put_new(key, bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key).await
    }

    // Leases are not what the benches count; they pass through uncounted.
    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        self.inner.acquire_lease(vault, holder, duration).await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.inner.renew_lease(lease).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        self.inner.release_lease(lease).await
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        self.inner.break_lease(vault).await
    }
}

impl CountingStore {
    /// The counts as `op n` pairs, those above zero, and their total.
    pub fn summary(&self) -> (String, u64) {
        let mut total = 0;
        let mut parts = Vec::new();
        for (op, c) in self.counters() {
            let n = c.load(Ordering::Relaxed);
            total += n;
            if n > 0 {
                parts.push(format!("{op} {n}"));
            }
        }
        (parts.join(", "), total)
    }
}
