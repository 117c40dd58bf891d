//! [`FaultyStore`]: fault injection around any store, for tests of what kvkeep does when the
//! store misbehaves — refused or throttled requests, answers lost after the work was done, and
//! blobs that come back damaged (damage tests of restore and verify). Lease calls pass through
//! and take the same injected failures (`StoreOp::RenewLease` …); a lost lease is made for real
//! with `break_lease`, which every store supports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::lease::{Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::{lock_key, BlobMeta, BlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::model::{BlobKey, VaultName};

const NAME: &str = "faulty store";

/// How [`FaultyStore`] damages what `get` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// XOR one byte (at `offset`, or the last byte when the blob is shorter) with `0xff`.
    FlipByte {
        /// Position of the byte.
        offset: usize,
    },
    /// Keep only the first `len` bytes.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
    /// Return these bytes instead (e.g. another blob's content: a swapped blob).
    Replace(Bytes),
}

impl Corruption {
    fn apply(&self, data: Bytes) -> Bytes {
        match self {
            Corruption::FlipByte { offset } => {
                if data.is_empty() {
                    return data;
                }
                let mut v = data.to_vec();
                let at = (*offset).min(v.len() - 1);
                v[at] ^= 0xff;
                Bytes::from(v)
            }
            Corruption::Truncate { len } => data.slice(..(*len).min(data.len())),
            Corruption::Replace(other) => other.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    /// Per operation: the next N calls fail with this kind, without reaching the inner store.
    fail: HashMap<StoreOp, (usize, StoreErrorKind)>,
    /// Per operation: the next N calls reach the inner store, then report `Transient` anyway.
    lose: HashMap<StoreOp, usize>,
    /// Reads of these keys come back damaged, until cleared.
    corrupt: HashMap<BlobKey, Corruption>,
    /// Deletes of these keys are refused as immutable (a WORM policy or legal hold), until
    /// cleared.
    immutable: std::collections::HashSet<BlobKey>,
    /// Calls seen per operation (injected failures included).
    calls: HashMap<StoreOp, usize>,
}

/// Wraps a store and misbehaves on request. All settings are shared through `&self`, so a test
/// can arm a fault while the code under test holds the store.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn BlobStore>,
    // A std mutex: never held across an await.
    faults: Mutex<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        FaultyStore {
            inner,
            faults: Mutex::new(Faults::default()),
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` calls of `op` fail with `kind` and do nothing.
    pub fn fail_next(&self, op: StoreOp, n: usize, kind: StoreErrorKind) {
        self.faults().fail.insert(op, (n, kind));
    }

    /// The next `n` calls of `op` are carried out by the inner store, but report a transient
    /// failure — a response lost on the way back.
    pub fn lose_next_responses(&self, op: StoreOp, n: usize) {
        self.faults().lose.insert(op, n);
    }

    /// Every `get` of `key` returns its content damaged by `corruption`, until cleared.
    pub fn corrupt_reads(&self, key: &BlobKey, corruption: Corruption) {
        self.faults().corrupt.insert(key.clone(), corruption);
    }

    /// Every `delete` of `key` is refused with [`StoreErrorKind::Immutable`], as Azure refuses
    /// to delete a blob under an immutability policy or legal hold, until cleared.
    pub fn make_immutable(&self, key: &BlobKey) {
        self.faults().immutable.insert(key.clone());
    }

    /// Disarms every fault (call counts are kept).
    pub fn clear_faults(&self) {
        let mut f = self.faults();
        f.fail.clear();
        f.lose.clear();
        f.corrupt.clear();
        f.immutable.clear();
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: StoreOp) -> usize {
        self.faults().calls.get(&op).copied().unwrap_or(0)
    }

    /// Counts the call; `Err` if an injected failure is due, else whether to lose the answer.
    fn enter(&self, op: StoreOp, key: &str) -> Result<bool, StoreError> {
        let mut f = self.faults();
        *f.calls.entry(op).or_default() += 1;
        if let Some((n, kind)) = f.fail.get_mut(&op) {
            if *n > 0 {
                *n -= 1;
                let kind = *kind;
                return Err(StoreError::new(kind, op, key, NAME, "injected fault"));
            }
        }
        if let Some(n) = f.lose.get_mut(&op) {
            if *n > 0 {
                *n -= 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn exit<T, E: From<StoreError>>(
        op: StoreOp,
        key: &str,
        lose: bool,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if lose {
            Err(StoreError::new(
                StoreErrorKind::Transient,
                op,
                key,
                NAME,
                "injected fault: the response was lost after the operation ran",
            )
            .into())
        } else {
            result
        }
    }
}

#[async_trait]
impl BlobStore for FaultyStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let lose = self.enter(StoreOp::Put, key.as_str())?;
        let r = self.inner.put_new(key, bytes).await;
        Self::exit(StoreOp::Put, key.as_str(), lose, r)
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        let lose = self.enter(StoreOp::Get, key.as_str())?;
        let r = self.inner.get(key).await;
        let corruption = self.faults().corrupt.get(key).cloned();
        let r = match corruption {
            Some(c) => r.map(|data| c.apply(data)),
            None => r,
        };
        Self::exit(StoreOp::Get, key.as_str(), lose, r)
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        let lose = self.enter(StoreOp::Head, key.as_str())?;
        let r = self.inner.head(key).await;
        Self::exit(StoreOp::Head, key.as_str(), lose, r)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        let lose = self.enter(StoreOp::List, prefix)?;
        let r = self.inner.list(prefix).await;
        Self::exit(StoreOp::List, prefix, lose, r)
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let lose = self.enter(StoreOp::Delete, key.as_str())?;
        if self.faults().immutable.contains(key) {
            return Err(StoreError::new(
                StoreErrorKind::Immutable,
                StoreOp::Delete,
                key.as_str(),
                NAME,
                "injected fault: the service answered 409 BlobImmutableDueToPolicy",
            ));
        }
        let r = self.inner.delete(key).await;
        Self::exit(StoreOp::Delete, key.as_str(), lose, r)
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        let (op, key) = (StoreOp::AcquireLease, lock_key(vault));
        let lose = self.enter(op, key.as_str())?;
        let r = self.inner.acquire_lease(vault, holder, duration).await;
        Self::exit(op, key.as_str(), lose, r)
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        let (op, key) = (StoreOp::RenewLease, lease.key());
        let lose = self.enter(op, key.as_str())?;
        let r = self.inner.renew_lease(lease).await;
        Self::exit(op, key.as_str(), lose, r)
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        let (op, key) = (StoreOp::ReleaseLease, lease.key());
        let lose = self.enter(op, key.as_str())?;
        let r = self.inner.release_lease(lease).await;
        Self::exit(op, key.as_str(), lose, r)
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        let (op, key) = (StoreOp::BreakLease, lock_key(vault));
        let lose = self.enter(op, key.as_str())?;
        let r = self.inner.break_lease(vault).await;
        Self::exit(op, key.as_str(), lose, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InMemoryStore;

    fn key(s: &str) -> BlobKey {
        s.parse().expect("valid key")
    }

    #[tokio::test]
    async fn injected_failures_hit_only_the_armed_operation_and_count() {
        let store = FaultyStore::new(Arc::new(InMemoryStore::new()));
        store.fail_next(StoreOp::Put, 2, StoreErrorKind::Forbidden);
        for _ in 0..2 {
            let err = store
                .put_new(&key("a"), Bytes::from_static(b"x"))
                .await
                .expect_err("armed");
            assert_eq!(err.kind(), StoreErrorKind::Forbidden);
            assert!(err.to_string().contains("blob a"), "{err}");
        }
        assert_eq!(
            store.list("").await.expect("list").len(),
            0,
            "failed puts wrote nothing"
        );
        store
            .put_new(&key("a"), Bytes::from_static(b"x"))
            .await
            .expect("disarmed after 2");
        assert_eq!(store.calls(StoreOp::Put), 3);
        assert_eq!(store.calls(StoreOp::List), 1);
    }

    #[tokio::test]
    async fn lost_responses_still_run_the_operation() {
        let store = FaultyStore::new(Arc::new(InMemoryStore::new()));
        store.lose_next_responses(StoreOp::Put, 1);
        let err = store
            .put_new(&key("a"), Bytes::from_static(b"x"))
            .await
            .expect_err("lost");
        assert_eq!(err.kind(), StoreErrorKind::Transient);
        assert_eq!(store.get(&key("a")).await.expect("landed").as_ref(), b"x");
    }

    #[tokio::test]
    async fn reads_come_back_damaged_until_cleared() {
        let store = FaultyStore::new(Arc::new(InMemoryStore::new()));
        store
            .put_new(&key("a"), Bytes::from_static(b"hello"))
            .await
            .expect("put");
        let cases = [
            (Corruption::FlipByte { offset: 1 }, b"h\x9allo".to_vec()),
            (Corruption::FlipByte { offset: 99 }, b"hell\x90".to_vec()),
            (Corruption::Truncate { len: 2 }, b"he".to_vec()),
            (Corruption::Truncate { len: 99 }, b"hello".to_vec()),
            (
                Corruption::Replace(Bytes::from_static(b"other")),
                b"other".to_vec(),
            ),
        ];
        for (corruption, want) in cases {
            store.corrupt_reads(&key("a"), corruption.clone());
            assert_eq!(
                store.get(&key("a")).await.expect("get").to_vec(),
                want,
                "{corruption:?}"
            );
        }
        store.clear_faults();
        assert_eq!(store.get(&key("a")).await.expect("get").as_ref(), b"hello");
    }
}
