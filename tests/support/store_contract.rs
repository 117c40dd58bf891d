//! The blob-store contract: one suite of checks every [`BlobStore`] implementation must pass
//! (in-memory, local directory, Azure Blob Storage on Azurite with bearer and SAS auth).
//!
//! Each check works under its own key prefix, so the suite runs on a store that is empty, or
//! holds only what earlier checks wrote. A store that pages its listings should be built with a
//! small page size (see `AzureBlobStore::with_list_page_size`) so that [`list`] crosses pages.

use bytes::Bytes;
use futures::future::join_all;
use kvkeep::model::BlobKey;
use kvkeep::store::{BlobMeta, BlobStore, StoreErrorKind};

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
