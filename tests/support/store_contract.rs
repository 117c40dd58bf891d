//! The blob-store contract: one suite of checks every [`BlobStore`] implementation must pass
//! (in-memory, local directory, Azure Blob Storage on Azurite with bearer and SAS auth).
//!
//! Each check works under its own key prefix, so the suite runs on a store that is empty, or
//! holds only what earlier checks wrote. A store that pages its listings should be built with a
//! small page size (see `AzureBlobStore::with_list_page_size`) so that [`list`] crosses pages.

use bytes::Bytes;
use futures::future::join_all;
use kvkeep::model::{BlobKey, RunId, VaultName};
use kvkeep::store::{
    BlobMeta, BlobStore, Lease, LeaseDuration, LeaseError, LeaseHolder, LeaseWork, StoreErrorKind,
};

/// Keys written by the listing check: enough to span several pages of a small page size.
pub const LIST_KEYS: usize = 25;

/// Runs every check of the contract against `store`.
pub async fn run_contract(store: &dyn BlobStore) {
    round_trip(store).await;
    write_once(store).await;
    list(store).await;
    delete(store).await;
    missing(store).await;
    concurrent_put_new(store).await;
    run_lease_contract(store).await;
}

/// Runs the lease checks: each works on its own vault, so they share a store with the blob
/// checks and with each other.
pub async fn run_lease_contract(store: &dyn BlobStore) {
    lease_acquire_and_refuse(store).await;
    lease_restart_reacquires(store).await;
    lease_release_frees(store).await;
    lease_renew_keeps(store).await;
    lease_break_ends_at_once(store).await;
    lease_vaults_are_independent(store).await;
    lease_blobs_are_not_backups(store).await;
    lease_infinite(store).await;
    lease_unreleased_work_is_told(store).await;
}

fn vault(s: &str) -> VaultName {
    s.parse().expect("valid vault name")
}

fn holder(s: &str) -> LeaseHolder {
    LeaseHolder::new(s).expect("valid instance name")
}

async fn acquire(store: &dyn BlobStore, v: &VaultName, who: &str) -> Result<Lease, LeaseError> {
    store
        .acquire_lease(v, &holder(who), LeaseDuration::DEFAULT)
        .await
}

/// `who` is refused the vault, and told that `holder` has it.
async fn assert_held_by(store: &dyn BlobStore, v: &VaultName, who: &str, holder: &str) {
    let err = acquire(store, v, who)
        .await
        .expect_err("the vault is leased by another holder");
    let LeaseError::Held { vault, by, .. } = &err else {
        panic!("expected Held, got: {err}");
    };
    assert_eq!(vault, v);
    let by = by
        .as_ref()
        .unwrap_or_else(|| panic!("the holder is named: {err}"));
    assert_eq!(by.instance, holder, "{err}");
    assert_eq!(by.pid, Some(std::process::id()), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("vault {v} is locked"))
            && text.contains(&format!("kvkeep instance {holder} (pid ")),
        "{text}"
    );
}

fn assert_lost(result: Result<(), LeaseError>, what: &str) {
    match result {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("{what}: expected Lost, got {other:?}"),
    }
}

/// A fresh vault's lease is granted; a second holder is refused and told who holds it.
pub async fn lease_acquire_and_refuse(store: &dyn BlobStore) {
    let v = vault("lease-fresh");
    let lease = acquire(store, &v, "web-1").await.expect("fresh vault");
    assert_eq!(lease.vault(), &v);
    assert_eq!(lease.holder().instance(), "web-1");
    assert_eq!(lease.duration(), LeaseDuration::DEFAULT);
    assert_eq!(lease.key().as_str(), "locks/lease-fresh");
    assert_held_by(store, &v, "web-2", "web-1").await;
    store.release_lease(lease).await.expect("release");
}

/// The same instance (a restart: a new holder value with the same name, so the same lease id)
/// re-acquires at once while its old lease is still live, and the old lease value stays good.
pub async fn lease_restart_reacquires(store: &dyn BlobStore) {
    let v = vault("lease-restart");
    let before = acquire(store, &v, "web-1").await.expect("first life");
    let after = acquire(store, &v, "web-1")
        .await
        .expect("a restarted instance takes its lease back at once");
    assert_eq!(
        before.holder().lease_id(),
        after.holder().lease_id(),
        "the lease id is stable per instance"
    );
    store.renew_lease(&before).await.expect("same lease id");
    store.renew_lease(&after).await.expect("renew");
    assert_held_by(store, &v, "web-2", "web-1").await;
    store.release_lease(after).await.expect("release");
}

/// After a release, another holder acquires at once; releasing again is no error.
pub async fn lease_release_frees(store: &dyn BlobStore) {
    let v = vault("lease-release");
    let a = acquire(store, &v, "web-1").await.expect("acquire");
    store.release_lease(a.clone()).await.expect("release");
    let b = acquire(store, &v, "web-2")
        .await
        .expect("free after the release");
    assert_held_by(store, &v, "web-1", "web-2").await;
    // The first holder's lease is gone: renewing it fails, releasing it again does nothing (and
    // certainly does not end web-2's lease).
    assert_lost(store.renew_lease(&a).await, "renew after release");
    store
        .release_lease(a)
        .await
        .expect("a second release is no error");
    assert_held_by(store, &v, "web-1", "web-2").await;
    store.release_lease(b).await.expect("release");
}

/// Renewing keeps the lease (others stay refused), as often as needed.
pub async fn lease_renew_keeps(store: &dyn BlobStore) {
    let v = vault("lease-renew");
    let lease = acquire(store, &v, "web-1").await.expect("acquire");
    for _ in 0..3 {
        store.renew_lease(&lease).await.expect("renew");
        assert_held_by(store, &v, "web-2", "web-1").await;
    }
    store.release_lease(lease).await.expect("release");
}

/// A break ends the lease at once: the old holder's renew fails with Lost, a new holder
/// acquires, and the old holder then can neither renew nor take it back.
pub async fn lease_break_ends_at_once(store: &dyn BlobStore) {
    let v = vault("lease-break");
    let old = acquire(store, &v, "web-1").await.expect("acquire");
    store.break_lease(&v).await.expect("break");
    assert_lost(store.renew_lease(&old).await, "renew after a break");
    let new = acquire(store, &v, "web-2")
        .await
        .expect("a broken lease is free at once");
    assert_lost(
        store.renew_lease(&old).await,
        "renew after another holder acquired",
    );
    assert_held_by(store, &v, "web-1", "web-2").await;
    store
        .release_lease(old)
        .await
        .expect("releasing a lost lease is no error");
    store
        .renew_lease(&new)
        .await
        .expect("the new holder keeps it");
    store.release_lease(new).await.expect("release");
    // Breaking a vault with no lease, or with no lock blob at all, is no error.
    store.break_lease(&v).await.expect("break without a lease");
    store
        .break_lease(&vault("lease-never-locked"))
        .await
        .expect("break without a lock blob");
}

/// Leases on two vaults are independent.
pub async fn lease_vaults_are_independent(store: &dyn BlobStore) {
    let (one, two) = (vault("lease-one"), vault("lease-two"));
    let a = acquire(store, &one, "web-1").await.expect("vault one");
    let b = acquire(store, &two, "web-2")
        .await
        .expect("vault two, held by another instance");
    assert_held_by(store, &one, "web-2", "web-1").await;
    assert_held_by(store, &two, "web-1", "web-2").await;
    store.break_lease(&one).await.expect("break one");
    store.renew_lease(&b).await.expect("two is untouched");
    assert_lost(store.renew_lease(&a).await, "renew of the broken one");
    store.release_lease(b).await.expect("release");
}

/// Acquiring writes nothing but the lock blob, and that only under `locks/`, where nothing that
/// looks for backups (`manifests/`, `manifest-parts/`, `objects/`) lists.
pub async fn lease_blobs_are_not_backups(store: &dyn BlobStore) {
    let keys = |listed: Vec<BlobMeta>| -> Vec<String> {
        listed.into_iter().map(|m| m.key.to_string()).collect()
    };
    let before = keys(store.list("").await.expect("list everything"));
    let v = vault("lease-listed");
    let lease = acquire(store, &v, "web-1").await.expect("acquire");
    store.renew_lease(&lease).await.expect("renew");
    let after = keys(store.list("").await.expect("list everything"));
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new, ["locks/lease-listed"], "the only blob a lease adds");
    assert_eq!(after.len(), before.len() + 1, "nothing else changed");
    store.release_lease(lease).await.expect("release");
    assert!(
        keys(store.list("locks/").await.expect("list locks/"))
            .contains(&"locks/lease-listed".to_string()),
        "the lock blob stays after a release, for the next acquire"
    );
}

/// An infinite lease is granted and held until broken.
pub async fn lease_infinite(store: &dyn BlobStore) {
    let v = vault("lease-infinite");
    let lease = store
        .acquire_lease(&v, &holder("web-1"), LeaseDuration::Infinite)
        .await
        .expect("infinite lease");
    store.renew_lease(&lease).await.expect("renew");
    assert_held_by(store, &v, "web-2", "web-1").await;
    store.break_lease(&v).await.expect("break");
    let next = acquire(store, &v, "web-2").await.expect("free once broken");
    store.release_lease(next).await.expect("release");
}

/// A holder whose lease ends without a release (broken here; expired, or its process dead on
/// the local store, likewise) leaves its record behind: the next holder's lease names it, with
/// the run it was working on. After a release the next holder finds nothing unfinished.
pub async fn lease_unreleased_work_is_told(store: &dyn BlobStore) {
    let v = vault("lease-abandoned");
    let run: RunId = "0123456789abcdef".parse().expect("run id");
    let backup = LeaseWork::Backup { run: run.clone() };
    let first = store
        .acquire_lease(
            &v,
            &holder("web-1").for_work(backup.clone()),
            LeaseDuration::DEFAULT,
        )
        .await
        .expect("fresh vault");
    assert_eq!(first.abandoned(), None, "nobody held the vault before");
    // web-1 stops mid-run: its lease is broken, never released.
    store.break_lease(&v).await.expect("break");
    let second = store
        .acquire_lease(
            &v,
            &holder("web-2").for_work(LeaseWork::Prune),
            LeaseDuration::DEFAULT,
        )
        .await
        .expect("free once broken");
    let left = second
        .abandoned()
        .unwrap_or_else(|| panic!("web-1 never released: {second:?}"));
    assert_eq!(left.instance, "web-1");
    assert_eq!(left.pid, Some(std::process::id()));
    assert_eq!(left.work, Some(backup));
    assert_held_by(store, &v, "web-3", "web-2").await;
    store.release_lease(second).await.expect("release");
    let third = acquire(store, &v, "web-3")
        .await
        .expect("free once released");
    assert_eq!(
        third.abandoned(),
        None,
        "web-2 released the lease: it finished what it was doing"
    );
    store.release_lease(third).await.expect("release");
}

fn key(s: &str) -> BlobKey {
    s.parse().expect("valid blob key")
}

/// Deterministic, non-repeating-looking content of `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// What is written comes back byte for byte — empty, small, and larger than one upload block
/// (the Azure crate splits uploads at 4 MiB) — and `head` reports the sizes.
pub async fn round_trip(store: &dyn BlobStore) {
    let cases = [
        ("roundtrip/empty.age", Bytes::new()),
        (
            "roundtrip/small.age",
            Bytes::from_static(b"age-encryption.org/v1 small"),
        ),
        (
            "roundtrip/nested/deeper/five-mib.age",
            pattern(5 * 1024 * 1024, 7),
        ),
    ];
    for (name, body) in &cases {
        store
            .put_new(&key(name), body.clone())
            .await
            .unwrap_or_else(|e| panic!("put_new {name}: {e}"));
    }
    for (name, body) in &cases {
        let got = store
            .get(&key(name))
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert_eq!(got.len(), body.len(), "{name}: length");
        assert!(
            got == *body,
            "{name}: content differs from what was written"
        );
        let meta = store
            .head(&key(name))
            .await
            .unwrap_or_else(|e| panic!("head {name}: {e}"));
        assert_eq!(
            meta,
            BlobMeta {
                key: key(name),
                size_bytes: body.len() as u64
            }
        );
    }
}

/// A second `put_new` of a key is refused, names the key, and leaves the first content.
pub async fn write_once(store: &dyn BlobStore) {
    let k = key("writeonce/blob.age");
    store
        .put_new(&k, Bytes::from_static(b"first"))
        .await
        .expect("first put_new");
    for second in [&b"second, different"[..], b"first", b""] {
        let err = store
            .put_new(&k, Bytes::copy_from_slice(second))
            .await
            .expect_err("a second put_new of the same key must be refused");
        assert_eq!(err.kind(), StoreErrorKind::AlreadyExists, "{err}");
        assert!(
            err.to_string().contains("writeonce/blob.age"),
            "names the key: {err}"
        );
    }
    assert_eq!(store.get(&k).await.expect("get").as_ref(), b"first");

    // Over the 4 MiB block size the Azure crate stages blocks and commits them; the write-once
    // condition must hold on that path too.
    let big = key("writeonce/big.age");
    let first = pattern(4 * 1024 * 1024 + 1, 1);
    store
        .put_new(&big, first.clone())
        .await
        .expect("first big put_new");
    let err = store
        .put_new(&big, pattern(4 * 1024 * 1024 + 1, 2))
        .await
        .expect_err("a second big put_new must be refused");
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists, "{err}");
    assert!(
        store.get(&big).await.expect("get big") == first,
        "big content unchanged"
    );
}

/// `list` returns exactly the keys under a prefix, with sizes, sorted, across pages.
pub async fn list(store: &dyn BlobStore) {
    let mut expected = Vec::new();
    for i in 0..LIST_KEYS {
        // Two directories and varied depths, so directory-walking backends are exercised too.
        let name = if i % 2 == 0 {
            format!("listing/even/{i:03}.age")
        } else {
            format!("listing/odd/deep/{i:03}.age")
        };
        let body = pattern(i, i as u8);
        store
            .put_new(&key(&name), body)
            .await
            .expect("put_new for listing");
        expected.push(BlobMeta {
            key: key(&name),
            size_bytes: i as u64,
        });
    }
    // A sibling that shares the string prefix "listing" but not "listing/".
    store
        .put_new(&key("listingx/other.age"), Bytes::from_static(b"x"))
        .await
        .expect("put_new sibling");
    expected.sort();

    let all = store.list("listing/").await.expect("list listing/");
    assert_eq!(
        all, expected,
        "list must return every key under the prefix, sorted"
    );

    let even: Vec<_> = expected
        .iter()
        .filter(|m| m.key.as_str().starts_with("listing/even/"))
        .cloned()
        .collect();
    assert_eq!(store.list("listing/even/").await.expect("list even"), even);

    // A prefix is a string prefix, not a directory: "listing/odd/deep/00" matches 001, 003 …
    let partial = store
        .list("listing/odd/deep/00")
        .await
        .expect("list partial");
    let want: Vec<_> = expected
        .iter()
        .filter(|m| m.key.as_str().starts_with("listing/odd/deep/00"))
        .cloned()
        .collect();
    assert_eq!(partial, want);
    assert_eq!(partial.len(), 5);

    let with_sibling = store.list("listing").await.expect("list listing");
    assert_eq!(with_sibling.len(), LIST_KEYS + 1);

    assert_eq!(
        store.list("nothing-here/").await.expect("empty list"),
        Vec::new()
    );
    let everything = store.list("").await.expect("list everything");
    assert!(
        everything.len() > LIST_KEYS,
        "the empty prefix lists the whole store"
    );
}

/// After `delete`, the blob is gone for `get`, `head` and `list`; deleting again is NotFound.
pub async fn delete(store: &dyn BlobStore) {
    let k = key("delete/blob.age");
    store
        .put_new(&k, Bytes::from_static(b"doomed"))
        .await
        .expect("put_new");
    store.delete(&k).await.expect("delete");
    let err = store.get(&k).await.expect_err("get after delete");
    assert_eq!(err.kind(), StoreErrorKind::NotFound, "{err}");
    assert_eq!(
        store.head(&k).await.expect_err("head after delete").kind(),
        StoreErrorKind::NotFound
    );
    assert_eq!(store.list("delete/").await.expect("list"), Vec::new());
    let err = store.delete(&k).await.expect_err("second delete");
    assert_eq!(err.kind(), StoreErrorKind::NotFound, "{err}");
    // The name is free again for a new blob (prune, then a fresh backup under the same name).
    store
        .put_new(&k, Bytes::from_static(b"reborn"))
        .await
        .expect("put_new after delete");
    assert_eq!(store.get(&k).await.expect("get").as_ref(), b"reborn");
}

/// Reading a key that was never written is NotFound and says which key.
pub async fn missing(store: &dyn BlobStore) {
    let k = key("missing/never-written.age");
    let err = store.get(&k).await.expect_err("get of a missing key");
    assert_eq!(err.kind(), StoreErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("missing/never-written.age"),
        "{err}"
    );
    assert_eq!(
        store.head(&k).await.expect_err("head").kind(),
        StoreErrorKind::NotFound
    );
}

/// Of concurrent `put_new`s of one key, exactly one wins and its content is what is stored.
pub async fn concurrent_put_new(store: &dyn BlobStore) {
    const WRITERS: u8 = 8;
    let k = key("race/blob.age");
    let bodies: Vec<Bytes> = (0..WRITERS)
        .map(|i| pattern(1024 + usize::from(i), i))
        .collect();
    let results = join_all(bodies.iter().map(|b| store.put_new(&k, b.clone()))).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind(),
                StoreErrorKind::AlreadyExists,
                "losers see AlreadyExists: {e}"
            );
        }
    }
    let stored = store.get(&k).await.expect("get the winner");
    assert!(
        stored == bodies[winners[0]],
        "the stored content is the winner's"
    );
}
