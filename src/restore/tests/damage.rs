//! Damage: truncated, corrupted, swapped and missing blobs, a blob whose envelope names another
//! object, a wrong identity. The damaged object fails with a clear reason; the others restore.

use std::sync::Arc;

use super::{empty_vault, n, outcome_of, Bed, T1};
use crate::crypto::{Identities, Identity};
use crate::model::ObjectKind;
use crate::restore::{ConflictPolicy, Outcome, Overall};
use crate::source::VaultSource;
use crate::store::{BlobStore, Corruption, FaultyStore};

async fn blob_of(bed: &Bed, kind: ObjectKind, name: &str) -> crate::model::BlobKey {
    bed.index
        .list_captures(&super::v("kv1"), kind, &n(name))
        .expect("captures")
        .remove(0)
        .blob
}

fn failed_reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn each_damaged_blob_fails_alone_with_a_clear_reason() {
    let bed = Bed::new().await;
    let victim = blob_of(&bed, ObjectKind::Secrets, "db-password").await;
    let other = blob_of(&bed, ObjectKind::Secrets, "api-token").await;
    let other_bytes = bed.store.get(&other).await.expect("other");
    let cases: Vec<(&str, Option<Corruption>, &str)> = vec![
        (
            "truncated",
            Some(Corruption::Truncate { len: 40 }),
            "damaged",
        ),
        (
            "corrupted",
            Some(Corruption::FlipByte { offset: 200 }),
            "damaged",
        ),
        ("swapped", Some(Corruption::Replace(other_bytes)), "damaged"),
        ("missing", None, "missing from the store"),
    ];
    for (what, corruption, want) in cases {
        let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
        let store: Arc<dyn BlobStore> = match corruption {
            Some(c) => {
                faulty.corrupt_reads(&victim, c);
                faulty
            }
            None => {
                let copy = Arc::new(crate::store::InMemoryStore::new());
                for meta in bed.store.list("").await.expect("list") {
                    if meta.key != victim {
                        let b = bed.store.get(&meta.key).await.expect("get");
                        copy.put_new(&meta.key, b).await.expect("copy");
                    }
                }
                copy
            }
        };
        let target = empty_vault("kv-dr");
        let plan = bed
            .plan(target.as_ref(), T1, Vec::new(), ConflictPolicy::Skip)
            .await;
        let report = bed.restorer(target.clone(), store).execute(&plan).await;
        let reason = failed_reason(outcome_of(&report, ObjectKind::Secrets, "db-password"));
        assert!(reason.contains(want), "{what}: {reason}");
        assert!(reason.contains("secret db-password"), "{what}: {reason}");
        assert_eq!(report.stats.restored_objects, 3, "{what}: {report:?}");
        assert_eq!(report.overall(), Overall::Partial);
    }
}

#[tokio::test]
async fn a_blob_recorded_under_another_name_is_refused_by_its_envelope() {
    let bed = Bed::new().await;
    let target = empty_vault("kv-dr");
    let mut plan = bed
        .plan(target.as_ref(), T1, Vec::new(), ConflictPolicy::Skip)
        .await;
    // A tampered index: db-password's entry points at api-token's blob, with that blob's size and
    // checksum, so only the envelope can tell.
    let token = plan
        .objects
        .iter()
        .find(|o| o.name.as_str() == "api-token")
        .expect("api-token")
        .clone();
    let entry = plan
        .objects
        .iter_mut()
        .find(|o| o.name.as_str() == "db-password")
        .expect("db-password");
    entry.blob = token.blob.clone();
    entry.stored_bytes = token.stored_bytes;
    entry.sha256 = token.sha256.clone();
    let report = bed
        .restorer(target.clone(), bed.store.clone())
        .execute(&plan)
        .await;
    let reason = failed_reason(outcome_of(&report, ObjectKind::Secrets, "db-password"));
    assert!(reason.contains("belongs to another object"), "{reason}");
    assert!(reason.contains("name is api-token"), "{reason}");
    assert_eq!(report.stats.restored_objects, 3);
    assert!(target
        .get_properties(ObjectKind::Secrets, &n("db-password"))
        .await
        .is_err());
}

#[tokio::test]
async fn a_wrong_identity_fails_every_object_without_panicking() {
    let bed = Bed::new().await;
    let target = empty_vault("kv-dr");
    let plan = bed
        .plan(target.as_ref(), T1, Vec::new(), ConflictPolicy::Skip)
        .await;
    let mut restorer = bed.restorer(target.clone(), bed.store.clone());
    restorer.identities = Arc::new(Identities::from(Identity::generate()));
    let report = restorer.execute(&plan).await;
    assert_eq!(report.stats.failed_objects, 4);
    assert_eq!(report.overall(), Overall::Failed);
    for o in &report.objects {
        assert!(
            failed_reason(&o.outcome).contains("cannot be opened with the given identity"),
            "{o:?}"
        );
    }
    assert_eq!(
        target.calls_of(crate::source::SourceOp::Restore),
        0,
        "nothing written"
    );
}
