//! The restore drill's tag check: a backup records each capture's tags, a drill whose restored
//! copy carries other tags than the record reports the object, and captures recorded before tags
//! were (rebuilt from manifests without `tags`) are drilled without the check, saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{empty_vault, location, n, v, Bed, HOUR, T1};
use crate::backup::Manifest;
use crate::index::{Index, VerificationDepth};
use crate::model::{BlobKey, ObjectKind};
use crate::restore::rebuild::{replay, RebuildReport};
use crate::restore::verify::{drill, VerifyReport};
use crate::store::BlobStore;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The bed's vault after a second backup in which `secrets/api-token` carries `env=prod`.
async fn tagged_bed() -> Bed {
    let bed = Bed::new().await;
    bed.source.update(
        ObjectKind::Secrets,
        &n("api-token"),
        true,
        tags(&[("env", "prod")]),
    );
    bed.backup_at(T1 + HOUR).await;
    bed
}

/// Every manifest in the bed's store, opened, oldest run first.
async fn manifests(bed: &Bed) -> Vec<(BlobKey, Manifest)> {
    let mut out = Vec::new();
    for meta in bed.store.list("manifests/").await.expect("list") {
        let manifest = super::read_listed_manifest(bed, &meta.key).await;
        out.push((meta.key, manifest));
    }
    out.sort_by_key(|(_, m)| m.started_at);
    out
}

/// A fresh index rebuilt from `manifests`, as `kvkeep index rebuild` does.
fn rebuilt(manifests: &[(BlobKey, Manifest)]) -> Arc<Index> {
    let index = Index::open_in_memory().expect("index");
    let mut report = RebuildReport::default();
    replay(&index, manifests, &mut report).expect("replay");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    Arc::new(index)
}

/// Drills the bed's latest point, as recorded in `index`, into an empty scratch vault.
async fn drill_with(bed: &Bed, index: Arc<Index>) -> VerifyReport {
    let scratch = empty_vault("kv-scratch");
    let report = drill(
        index,
        &bed.restorer(scratch.clone(), bed.store.clone() as Arc<dyn BlobStore>),
        location("kv1", Some("europe")),
        location("kv-scratch", Some("europe")),
        T1 + 2 * HOUR,
    )
    .await
    .expect("drill");
    assert_eq!(report.drilled_objects, 4, "{report:?}");
    report
}

#[tokio::test]
async fn backup_records_tags_and_rebuild_carries_them_so_a_faithful_restore_drills_clean() {
    let bed = tagged_bed().await;
    let latest = |index: &Index| {
        index
            .list_captures(&v("kv1"), ObjectKind::Secrets, &n("api-token"))
            .expect("captures")
            .into_iter()
            .max_by_key(|c| c.captured_at)
            .expect("a capture")
            .blob
    };
    let blob = latest(&bed.index);
    assert_eq!(
        bed.index.capture_tags(&blob).expect("tags"),
        Some(tags(&[("env", "prod")]))
    );
    // An object without tags records an empty map: known to have none, not unknown.
    let signing = bed
        .index
        .list_captures(&v("kv1"), ObjectKind::Keys, &n("signing"))
        .expect("captures")
        .remove(0)
        .blob;
    assert_eq!(
        bed.index.capture_tags(&signing).expect("tags"),
        Some(BTreeMap::new())
    );
    let index = rebuilt(&manifests(&bed).await);
    assert_eq!(
        index.capture_tags(&latest(&index)).expect("tags"),
        Some(tags(&[("env", "prod")])),
        "rebuild carries the tags from the manifest"
    );

    let report = drill_with(&bed, bed.index.clone()).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.tags_unchecked_objects, 0);
}

#[tokio::test]
async fn a_restored_tag_that_differs_from_the_record_is_a_drill_problem() {
    let bed = tagged_bed().await;
    // The store's record says `env=staging` and a `team` tag; the blob restores `env=prod`.
    let mut edited = manifests(&bed).await;
    for (_, m) in &mut edited {
        for o in &mut m.objects {
            if o.name.canonical() == "api-token" {
                o.tags = Some(tags(&[("env", "staging"), ("team", "payments")]));
            }
        }
    }
    let index = rebuilt(&edited);
    let report = drill_with(&bed, index.clone()).await;
    assert!(!report.ok());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.object, "secrets/api-token");
    assert!(
        problem
            .reason
            .contains(r#"tag "env" is "prod", the backup recorded "staging""#),
        "{}",
        problem.reason
    );
    assert!(
        problem
            .reason
            .contains(r#"tag "team" is missing, the backup recorded "payments""#),
        "{}",
        problem.reason
    );
    let recorded = index
        .last_verification(&v("kv1"), Some(VerificationDepth::Drill))
        .expect("read")
        .expect("recorded");
    assert!(!recorded.ok);
    assert!(recorded.detail.contains("api-token"), "{}", recorded.detail);
}

#[tokio::test]
async fn captures_without_recorded_tags_are_drilled_without_the_tag_check_and_say_so() {
    let bed = tagged_bed().await;
    // Manifests as kvkeep wrote them before it recorded tags: no `tags` key at all.
    let mut old = Vec::new();
    for (key, m) in manifests(&bed).await {
        let mut json: serde_json::Value =
            serde_json::from_slice(&m.to_json().expect("json")).expect("value");
        // As format 1 was written before kvkeep recorded tags.
        json["format"] = serde_json::json!(1);
        for o in json["objects"].as_array_mut().expect("objects") {
            o.as_object_mut().expect("object").remove("tags");
        }
        let bytes = serde_json::to_vec(&json).expect("bytes");
        old.push((
            key,
            Manifest::from_json(&bytes).expect("old manifest parses"),
        ));
    }
    let index = rebuilt(&old);
    let report = drill_with(&bed, index.clone()).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.tags_unchecked_objects, 4);
    let recorded = index
        .last_verification(&v("kv1"), Some(VerificationDepth::Drill))
        .expect("read")
        .expect("recorded");
    assert!(recorded.ok);
    assert!(
        recorded
            .detail
            .contains("tags not compared for 4 object(s) captured before kvkeep recorded tags"),
        "{}",
        recorded.detail
    );
}
