//! Bulk seeding.

use serde_json::json;

use super::*;
use crate::api::{SeedReport, SeedSpec};

fn spec(kind: Collection, prefix: &str, count: usize, versions: usize) -> SeedSpec {
    SeedSpec::new(kind, prefix, count, versions)
}

#[test]
fn seeding_ten_thousand_secrets() {
    let mut v = vault();
    let report = v.seed(&spec(Collection::Secrets, "bulk-", 10_000, 1), NOW);
    assert_eq!(
        report,
        Ok(SeedReport {
            objects: 10_000,
            versions: 10_000
        })
    );
    assert_eq!(v.counts().secrets, 10_000);
    let s = ok(&mut v, get(Collection::Secrets, "bulk-09999", None));
    assert_eq!(s["value"].as_str().map(str::len), Some(32));
    let (items, next) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!(items.len(), 25);
    assert_eq!(next.as_deref(), Some("bulk-00024"));
}

#[test]
fn seeded_versions_have_distinct_ids_and_increasing_timestamps_and_tags() {
    let mut v = vault();
    let mut s = spec(Collection::Secrets, "v", 3, 4);
    s.tags.insert("team".into(), "a".into());
    s.value_bytes = 100;
    assert_eq!(
        v.seed(&s, NOW),
        Ok(SeedReport {
            objects: 3,
            versions: 12
        })
    );
    let (items, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "v00001".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(items.len(), 4);
    let created: Vec<i64> = items
        .iter()
        .filter_map(|i| i["attributes"]["created"].as_i64())
        .collect();
    assert_eq!(created, vec![NOW - 3, NOW - 2, NOW - 1, NOW]);
    let ids: std::collections::BTreeSet<_> = items.iter().map(|i| i["id"].to_string()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(items[0]["tags"], json!({"team": "a"}));
    let latest = ok(&mut v, get(Collection::Secrets, "v00001", None));
    assert_eq!(latest["value"].as_str().map(str::len), Some(100));
    assert_eq!(latest["attributes"]["created"], NOW);
}

#[test]
fn seeding_keys_and_certificates() {
    let mut v = vault();
    assert!(v.seed(&spec(Collection::Keys, "k", 50, 2), NOW).is_ok());
    assert_eq!(v.counts().keys, 50);
    let k = ok(&mut v, get(Collection::Keys, "k00049", None));
    assert_eq!(
        (k["key"]["kty"].as_str(), k["key"]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );

    assert_eq!(
        v.seed(&spec(Collection::Certificates, "c", 20, 2), NOW),
        Ok(SeedReport {
            objects: 20,
            versions: 40
        })
    );
    let c = v.counts();
    assert_eq!((c.certificates, c.keys, c.secrets), (20, 70, 20));
    let cert = ok(&mut v, get(Collection::Certificates, "c00007", None));
    let secret = ok(&mut v, get(Collection::Secrets, "c00007", None));
    assert_eq!(secret["managed"], true);
    assert_eq!(version_of(&secret["id"]), version_of(&cert["id"]));
    // Seeded certificates back up and restore like any other.
    let blob = ok(
        &mut v,
        Op::Backup {
            coll: Collection::Certificates,
            name: "c00007".into(),
        },
    );
    assert!(blob["value"].as_str().is_some_and(|b| !b.is_empty()));
}

#[test]
fn seeding_refuses_taken_names_and_bad_specs_without_side_effects() {
    let mut v = vault();
    set_secret(&mut v, "x00002", "taken");
    assert_eq!(
        v.seed(&spec(Collection::Secrets, "x", 5, 1), NOW)
            .map_err(|e| e.status),
        Err(409)
    );
    assert_eq!(v.counts().secrets, 1);
    assert_eq!(
        v.seed(&spec(Collection::Secrets, "bad_", 1, 1), NOW)
            .map_err(|e| e.status),
        Err(400)
    );
    assert_eq!(
        v.seed(&spec(Collection::Secrets, "y", 1, 0), NOW)
            .map_err(|e| e.status),
        Err(400)
    );
    assert_eq!(v.counts().secrets, 1);
}
