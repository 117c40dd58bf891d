//! `index rebuild` through the real entry point on an on-disk index: multi-part (format 2)
//! manifests, format 1 manifests still read, a damaged part, the lock, cancellation and the
//! swap of the old file.

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{read_listed_manifest, v, Bed, HOUR, T1};
use crate::backup::manifest::{Manifest, MANIFEST_FORMAT, MANIFEST_FORMAT_V1};
use crate::crypto::Label;
use crate::index::{lock_vault, Index};
use crate::restore::rebuild::{rebuild, RebuildReport};
use crate::restore::RestoreError;
use crate::source::VaultSource;
use crate::store::{BlobStore, Corruption, FaultyStore, InMemoryStore};

async fn rebuild_into(
    store: Arc<dyn BlobStore>,
    bed: &Bed,
    path: &std::path::Path,
    cancel: CancellationToken,
) -> Result<RebuildReport, RestoreError> {
    rebuild(
        store,
        bed.identities.clone(),
        path,
        4,
        cancel,
        T1 + 9 * HOUR,
    )
    .await
}

/// Rebuilds `store` into a new index file: the report, the index, and the directory that
/// holds it (kept for as long as the index is used).
async fn rebuild_fresh(
    store: Arc<dyn BlobStore>,
    bed: &Bed,
) -> (RebuildReport, Index, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index.sqlite");
    let report = rebuild_into(store, bed, &path, CancellationToken::new())
        .await
        .expect("rebuild");
    (report, Index::open(&path).expect("rebuilt index"), dir)
}

/// The bed's store with every manifest rewritten as format 1 (one blob, no parts), each first
/// passed to `edit` with its place in the listing; the object blobs are copied as they are.
async fn as_format_1(bed: &Bed, edit: impl Fn(usize, &mut Manifest)) -> Arc<InMemoryStore> {
    let store = Arc::new(InMemoryStore::new());
    for meta in bed.store.list("objects/").await.expect("list") {
        let bytes = bed.store.get(&meta.key).await.expect("get");
        store.put_new(&meta.key, bytes).await.expect("copy");
    }
    for (i, meta) in bed
        .store
        .list("manifests/")
        .await
        .expect("list")
        .iter()
        .enumerate()
    {
        let mut whole = read_listed_manifest(bed, &meta.key).await;
        edit(i, &mut whole);
        let v1 = Manifest {
            format: MANIFEST_FORMAT_V1,
            ..whole
        };
        let label = Label::manifest(v1.vault.clone(), v1.finished_at).with_run(v1.run.clone());
        let sealed = bed
            .sealer
            .seal(&label, &v1.to_json().expect("json"))
            .expect("seal");
        store
            .put_new(&meta.key, Bytes::from(sealed))
            .await
            .expect("put");
    }
    store
}

/// Three runs (T1, T1 + 1h, T1 + 2h) of the restore bed, with changes in between.
async fn three_runs() -> Bed {
    let bed = Bed::new().await;
    bed.source.put(
        crate::model::ObjectKind::Secrets,
        &super::n("db-password"),
        crate::source::SeedObject::value("three"),
    );
    bed.backup_at(T1 + HOUR).await;
    bed.source
        .delete(crate::model::ObjectKind::Keys, &super::n("signing"))
        .await
        .expect("delete");
    bed.backup_at(T1 + 2 * HOUR).await;
    bed
}

fn assert_same_restore_sets(original: &Index, rebuilt: &Index) {
    for at in [T1 - 1, T1, T1 + HOUR, T1 + 2 * HOUR, T1 + 9 * HOUR] {
        assert_eq!(
            original.captures_as_of(&v("kv1"), at).expect("original"),
            rebuilt.captures_as_of(&v("kv1"), at).expect("rebuilt"),
            "at {at}"
        );
    }
}

#[tokio::test]
async fn multi_part_manifests_rebuild_to_the_same_restore_points() {
    let bed = three_runs().await;
    let parts = bed.store.list("manifest-parts/").await.expect("list");
    assert!(
        parts.len() >= 6,
        "every run spans several parts: {} parts",
        parts.len()
    );
    let heads = bed.store.list("manifests/").await.expect("list");
    assert_eq!(heads.len(), 3);
    let first = read_listed_manifest(&bed, &heads[0].key).await;
    assert_eq!(first.format, MANIFEST_FORMAT);
    assert_eq!(first.objects.len(), 4, "every part read back: {first:?}");

    let (report, rebuilt, _dir) = rebuild_fresh(bed.store.clone(), &bed).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.runs, 3);
    assert_same_restore_sets(&bed.index, &rebuilt);
    // The deletion at T1 + 2h survived the rebuild.
    assert!(rebuilt
        .captures_as_of(&v("kv1"), T1 + 2 * HOUR)
        .expect("set")
        .iter()
        .all(|c| c.name.as_str() != "signing"));
}

/// Lock blobs (`locks/{vault}`, one per leased vault) sit in the store beside the backups; a
/// rebuild neither replays them nor reports them as incomplete runs or problems.
#[tokio::test]
async fn lock_blobs_are_no_runs_to_a_rebuild() {
    use crate::store::{LeaseDuration, LeaseHolder};
    let bed = three_runs().await;
    let holder = LeaseHolder::new("web-1").expect("holder");
    for vault in ["kv1", "kv-other"] {
        bed.store
            .acquire_lease(&v(vault), &holder, LeaseDuration::DEFAULT)
            .await
            .expect("lease");
    }
    assert_eq!(bed.store.list("locks/").await.expect("list").len(), 2);

    let (report, rebuilt, _dir) = rebuild_fresh(bed.store.clone(), &bed).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.incomplete.is_empty(), "{:?}", report.incomplete);
    assert_eq!((report.manifests, report.runs), (3, 3));
    assert_eq!(report.vaults, ["kv1"]);
    assert_same_restore_sets(&bed.index, &rebuilt);
}

#[tokio::test]
async fn a_damaged_part_leaves_its_run_out_and_names_the_part() {
    let bed = three_runs().await;
    let heads = bed.store.list("manifests/").await.expect("list");
    let last = heads.last().expect("a head").key.clone();
    let run_stem = last
        .as_str()
        .rsplit('/')
        .next()
        .expect("file")
        .trim_end_matches(".age")
        .to_string();
    let part = bed
        .store
        .list("manifest-parts/")
        .await
        .expect("list")
        .into_iter()
        .find(|m| m.key.as_str().contains(&run_stem))
        .expect("a part of the last run")
        .key;
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    faulty.corrupt_reads(&part, Corruption::FlipByte { offset: 40 });
    let (report, rebuilt, _dir) = rebuild_fresh(faulty, &bed).await;
    assert_eq!(report.runs, 2, "{report:?}");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains(part.as_str()) && report.problems[0].contains("left out"),
        "{:?}",
        report.problems
    );
    assert_eq!(rebuilt.list_runs(Some(&v("kv1"))).expect("runs").len(), 2);
}

#[tokio::test]
async fn format_1_manifests_still_rebuild() {
    let bed = three_runs().await;
    // The same store, with each run's manifest rewritten as format 1 (one blob, no parts).
    let store = as_format_1(&bed, |_, _| {}).await;
    let (report, rebuilt, _dir) = rebuild_fresh(store, &bed).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.runs, 3);
    assert_same_restore_sets(&bed.index, &rebuilt);
}

/// The validity periods the manifests record come back with a rebuild. A store whose first
/// manifest was written before kvkeep recorded them rebuilds with those captures unknown, except
/// where a later run found the object unchanged and recorded its period then.
#[tokio::test]
async fn validity_periods_rebuild_and_older_manifests_leave_them_unknown_until_seen_again() {
    let bed = three_runs().await;
    let objects = bed.store.list("objects/").await.expect("list");
    let heads = bed.store.list("manifests/").await.expect("list");
    let store = as_format_1(&bed, |i, manifest| {
        if i == 0 {
            // As kvkeep wrote it before it recorded `nbf`/`exp`.
            for o in &mut manifest.objects {
                o.validity = None;
            }
        }
    })
    .await;
    let (report, rebuilt, _dir) = rebuild_fresh(store, &bed).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // db-password got a new version before the second run: its first blob is in no later
    // manifest, so nothing tells its period. Every other blob's is as the backups recorded it.
    let first = read_listed_manifest(&bed, &heads[0].key).await;
    let replaced = first
        .objects
        .iter()
        .find(|o| o.name.as_str() == "db-password")
        .expect("db-password in the first run")
        .blob
        .clone();
    let mut known = 0;
    for meta in &objects {
        let original = bed.index.capture_validity(&meta.key).expect("original");
        let again = rebuilt.capture_validity(&meta.key).expect("rebuilt");
        if meta.key == replaced {
            assert!(original.is_some());
            assert_eq!(again, None, "{}", meta.key);
        } else {
            assert_eq!(again, original, "{}", meta.key);
            known += usize::from(again.is_some());
        }
    }
    assert_eq!(known, objects.len() - 1);
}

#[tokio::test]
async fn a_format_2_head_is_refused_by_a_format_1_reader() {
    let bed = Bed::new().await;
    let heads = bed.store.list("manifests/").await.expect("list");
    let bytes = bed.store.get(&heads[0].key).await.expect("get");
    let opened = crate::crypto::open(&bytes, &bed.identities).expect("open");
    // Format 1 readers parse with `Manifest::from_json`, which refuses any other format.
    let err = Manifest::from_json(&opened.payload).expect_err("a head is not format 1");
    assert!(err.contains("upgrade kvkeep"), "{err}");
}

#[tokio::test]
async fn rebuild_is_refused_while_a_backup_holds_a_vault_and_names_it() {
    let bed = Bed::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index.sqlite");
    let _held = lock_vault(&path, &v("kv1"), "kvkeep backup", T1).expect("lock");
    let err = rebuild_into(bed.store.clone(), &bed, &path, CancellationToken::new())
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())) && text.contains("kvkeep backup"),
        "{text}"
    );
    assert!(!path.exists(), "nothing was written");
}

#[tokio::test]
async fn an_interrupted_or_failed_rebuild_leaves_the_old_index_as_it_was() {
    let bed = three_runs().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index.sqlite");
    rebuild_into(bed.store.clone(), &bed, &path, CancellationToken::new())
        .await
        .expect("first rebuild");
    let before = std::fs::read(&path).expect("index bytes");

    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = rebuild_into(bed.store.clone(), &bed, &path, cancel)
        .await
        .expect_err("interrupted");
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(std::fs::read(&path).expect("index bytes"), before);
    assert!(!dir.path().join("index.sqlite.rebuild").exists());

    // The old index's write-ahead log must go before the swap: SQLite would replay it into
    // the new file. (A stand-in: any file there is the old index's.)
    let old_wal = dir.path().join("index.sqlite-wal");
    std::fs::write(&old_wal, b"the old index's log").expect("old wal");
    // A second rebuild replaces the file: the old one's runs are all there again.
    let report = rebuild_into(bed.store.clone(), &bed, &path, CancellationToken::new())
        .await
        .expect("again");
    assert_eq!(report.runs, 3);
    assert!(
        !old_wal.exists(),
        "the old index's -wal file survived the swap"
    );
    assert_eq!(
        Index::open(&path)
            .expect("index")
            .list_runs(Some(&v("kv1")))
            .expect("runs")
            .len(),
        3
    );
}

#[tokio::test]
async fn a_pruned_first_manifest_leaves_the_later_restore_points_complete() {
    // Runs 2 and 3 refer to blobs run 1 wrote (objects unchanged since). Once run 1's manifest
    // is gone, a rebuild must still give runs 2 and 3 every object they held.
    let bed = three_runs().await;
    let heads = bed.store.list("manifests/").await.expect("list");
    let first = heads[0].key.clone();
    let stem = first
        .as_str()
        .rsplit('/')
        .next()
        .expect("file")
        .trim_end_matches(".age")
        .to_string();
    bed.store.delete(&first).await.expect("delete head");
    for part in bed.store.list("manifest-parts/").await.expect("list") {
        if part.key.as_str().contains(&stem) {
            bed.store.delete(&part.key).await.expect("delete part");
        }
    }

    let (report, rebuilt, _dir) = rebuild_fresh(bed.store.clone(), &bed).await;
    assert_eq!(report.runs, 2, "{report:?}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Run 2 meets the orphaned entries first and records their captures; run 3 finds them.
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(
        report
            .notes
            .iter()
            .all(|n| n.contains("recorded from the entries")),
        "{:?}",
        report.notes
    );
    for at in [T1 + HOUR, T1 + 2 * HOUR, T1 + 9 * HOUR] {
        let original = bed.index.captures_as_of(&v("kv1"), at).expect("original");
        assert!(
            original.iter().any(|c| c.captured_at < T1 + HOUR),
            "the point at {at} holds blobs of the first run"
        );
        assert_eq!(
            rebuilt.captures_as_of(&v("kv1"), at).expect("rebuilt"),
            original,
            "at {at}"
        );
    }
    assert!(rebuilt
        .captures_as_of(&v("kv1"), T1)
        .expect("set")
        .is_empty());
    // The first run's blobs that later points refer to are held, so no prune would take them.
    // Its capture of db-password, replaced at T1 + 1h, is referred to by no manifest left: it
    // is reported like the blobs of a run that never committed, which is what it now is.
    assert!(rebuilt.unheld_blobs(&v("kv1")).expect("unheld").is_empty());
    assert_eq!(report.incomplete.len(), 1, "{:?}", report.incomplete);
    assert!(stem.ends_with(&report.incomplete[0].run));
    assert_eq!(report.incomplete[0].blobs, 1);
}

/// Runs recorded to the same second (a fast schedule, several runs of a quiet vault) are
/// replayed in the order they ran: each one's unchanged entries refer to the blobs of the run
/// before it, whose manifest names it as `previous`, so their random run ids do not decide.
#[tokio::test]
async fn runs_of_one_second_rebuild_in_the_order_they_ran() {
    let bed = Bed::new().await;
    for round in 0..6 {
        bed.source.put(
            crate::model::ObjectKind::Secrets,
            &super::n(&format!("added-{round}")),
            crate::source::SeedObject::value("new"),
        );
        bed.backup_at(T1 + HOUR).await;
    }
    let heads = bed.store.list("manifests/").await.expect("list");
    assert_eq!(heads.len(), 7);

    let (report, rebuilt, _dir) = rebuild_fresh(bed.store.clone(), &bed).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_same_restore_sets(&bed.index, &rebuilt);
    // The newest restore point of that second holds every object, as the original does.
    let newest = |index: &Index| {
        let points = index.restore_points(&v("kv1")).expect("points");
        let last = points.last().expect("a point").run.clone();
        index.restore_point_contents(&last).expect("contents").len()
    };
    assert_eq!(newest(&rebuilt), newest(&bed.index));
}
