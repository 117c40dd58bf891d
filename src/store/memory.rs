//! [`InMemoryStore`]: the fake blob store for tests and the demo, held in a map.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobMeta, BlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::model::BlobKey;

const NAME: &str = "in-memory store";

/// Blobs in a map, with the same write-once contract as the real stores.
///
/// A `std` mutex, not a tokio one: it is never held across an `.await`, and every critical
/// section is a map lookup or insert.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    blobs: Mutex<BTreeMap<BlobKey, Bytes>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn blobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<BlobKey, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
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
}
