//! A store whose lock blobs live in another store (`[store] lock_container_url`): backups,
//! manifests and probes go to one container, the vaults' leases to another. A backup container
//! under a time-based retention policy or legal hold (WORM) refuses the metadata write that
//! records a lease's holder, and a lock blob that can never be changed is no lock; the lock
//! container carries no such policy and holds nothing a restore needs.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

use super::{BlobMeta, BlobStore, Lease, LeaseDuration, LeaseError, LeaseHolder, StoreError};
use crate::model::{BlobKey, VaultName};

/// Blobs in `data`, leases in `locks`.
#[derive(Debug)]
pub struct LocksElsewhere {
    data: Arc<dyn BlobStore>,
    locks: Arc<dyn BlobStore>,
}

impl LocksElsewhere {
    /// Every blob operation goes to `data`, every lease operation to `locks`.
    pub fn new(data: Arc<dyn BlobStore>, locks: Arc<dyn BlobStore>) -> Self {
        LocksElsewhere { data, locks }
    }
}

#[async_trait]
impl BlobStore for LocksElsewhere {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.data.put_new(key, bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        self.data.get(key).await
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        self.data.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        self.data.list(prefix).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.data.delete(key).await
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        self.locks.acquire_lease(vault, holder, duration).await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.locks.renew_lease(lease).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        self.locks.release_lease(lease).await
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        self.locks.break_lease(vault).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InMemoryStore;

    #[tokio::test]
    async fn blobs_go_to_the_data_store_and_leases_to_the_lock_store() {
        let data = Arc::new(InMemoryStore::new());
        let locks = Arc::new(InMemoryStore::new());
        let store = LocksElsewhere::new(data.clone(), locks.clone());
        let key: BlobKey = "manifests/kv1/20261128T190000Z-0123456789abcdef.age"
            .parse()
            .expect("key");
        store
            .put_new(&key, Bytes::from_static(b"manifest"))
            .await
            .expect("put");
        let vault: VaultName = "kv1".parse().expect("vault");
        let holder = LeaseHolder::new("host-a").expect("holder");
        let lease = store
            .acquire_lease(&vault, &holder, LeaseDuration::DEFAULT)
            .await
            .expect("lease");
        let keys = |listed: Vec<BlobMeta>| -> Vec<String> {
            listed.into_iter().map(|m| m.key.to_string()).collect()
        };
        assert_eq!(
            keys(data.list("").await.expect("list")),
            vec![key.to_string()]
        );
        assert_eq!(
            keys(locks.list("").await.expect("list")),
            vec!["locks/kv1".to_string()]
        );
        // What the store lists is the data store: the lock container stays out of sight.
        assert_eq!(
            keys(store.list("").await.expect("list")),
            vec![key.to_string()]
        );
        // Another holder is refused by the lock store, and a release frees it.
        let other = LeaseHolder::new("host-b").expect("holder");
        assert!(matches!(
            store
                .acquire_lease(&vault, &other, LeaseDuration::DEFAULT)
                .await,
            Err(LeaseError::Held { .. })
        ));
        store.renew_lease(&lease).await.expect("renew");
        store.release_lease(lease).await.expect("release");
        store
            .acquire_lease(&vault, &other, LeaseDuration::DEFAULT)
            .await
            .expect("free again");
        store.break_lease(&vault).await.expect("break");
    }
}
