//! Secrets: versions, case-insensitive names, paging, limits, disabled versions.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;

#[test]
fn set_and_get_latest_and_specific_versions() {
    let mut v = vault();
    let first = set_secret(&mut v, "db-Password", "one");
    let second = set_secret(&mut v, "db-Password", "two");
    assert_id(&first["id"], "secrets", "db-Password", true);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["value"], "one");
    let attrs = &first["attributes"];
    assert_eq!(attrs["enabled"], true);
    assert_eq!(attrs["created"], NOW);
    assert_eq!(attrs["updated"], NOW);
    assert_eq!(attrs["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(attrs["recoverableDays"], 90);
    assert!(first.get("tags").is_none() && first.get("managed").is_none());

    let latest = ok(&mut v, get(Collection::Secrets, "db-password", None));
    assert_eq!(latest["value"], "two");
    let old = version_of(&first["id"]);
    let specific = ok(&mut v, get(Collection::Secrets, "DB-PASSWORD", Some(&old)));
    assert_eq!(specific["value"], "one");
    // The name is echoed as first created, whatever case the request used.
    assert_id(&specific["id"], "secrets", "db-Password", true);
}

#[test]
fn missing_secret_and_version_are_404_with_service_wording() {
    let mut v = vault();
    let e = err(&mut v, get(Collection::Secrets, "nope", None));
    assert_eq!((e.status, e.code.as_str()), (404, "SecretNotFound"));
    assert!(e
        .message
        .starts_with("A secret with (name/id) nope was not found"));
    set_secret(&mut v, "s", "x");
    let e = err(
        &mut v,
        get(
            Collection::Secrets,
            "s",
            Some("0123456789abcdef0123456789abcdef"),
        ),
    );
    assert_eq!(e.status, 404);
    assert!(e.message.contains("s/0123456789abcdef0123456789abcdef"));
}

#[test]
fn invalid_names_and_bodies_are_400() {
    let mut v = vault();
    for name in ["bad_name", "", &"a".repeat(128), "dot.ted"] {
        let e = err(
            &mut v,
            Op::SetSecret {
                name: name.to_string(),
                body: json!({"value": "x"}),
            },
        );
        assert_eq!((e.status, e.code.as_str()), (400, "BadParameter"), "{name}");
    }
    let cases = [
        json!({}),
        json!({"value": 5}),
        json!({"value": "x".repeat(25 * 1024 + 1)}),
        json!({"value": "x", "tags": (0..16).map(|i| (format!("t{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
        json!({"value": "x", "attributes": {"nbf": 10, "exp": 5}}),
        json!({"value": "x", "attributes": {"enabled": "yes"}}),
        json!([1, 2]),
    ];
    for body in cases {
        let e = err(
            &mut v,
            Op::SetSecret {
                name: "ok".into(),
                body: body.clone(),
            },
        );
        assert_eq!(e.status, 400, "{body}");
    }
    // The limits themselves are accepted.
    let tags: serde_json::Map<_, _> = (0..15).map(|i| (format!("t{i}"), json!("v"))).collect();
    ok(
        &mut v,
        Op::SetSecret {
            name: "ok".into(),
            body: json!({"value": "x".repeat(25 * 1024), "tags": tags}),
        },
    );
    assert_eq!(v.counts().secrets, 1);
}

#[test]
fn disabled_version_get_is_403_but_update_and_list_work() {
    let mut v = vault();
    let s = ok(
        &mut v,
        Op::SetSecret {
            name: "off".into(),
            body: json!({"value": "v", "contentType": "text/plain", "attributes": {"enabled": false}, "tags": {"a": "b"}}),
        },
    );
    let e = err(&mut v, get(Collection::Secrets, "off", None));
    assert_eq!(
        (e.status, e.code.as_str(), e.inner.as_deref()),
        (403, "Forbidden", Some("SecretDisabled"))
    );
    assert_eq!(
        e.message,
        "Operation get is not allowed on a disabled secret."
    );
    let (items, _) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!(items[0]["attributes"]["enabled"], false);
    assert_eq!(items[0]["contentType"], "text/plain");
    assert_eq!(items[0]["tags"], json!({"a": "b"}));
    assert!(items[0].get("value").is_none());

    let updated = ok_at(
        &mut v,
        Op::Update {
            coll: Collection::Secrets,
            name: "OFF".into(),
            version: Some(version_of(&s["id"])),
            body: json!({"attributes": {"enabled": true}, "tags": {"c": "d"}, "contentType": "application/json"}),
        },
        NOW + 5,
    );
    assert!(updated.get("value").is_none());
    assert_eq!(updated["tags"], json!({"c": "d"}));
    assert_eq!(updated["contentType"], "application/json");
    assert_eq!(updated["attributes"]["updated"], NOW + 5);
    assert_eq!(updated["attributes"]["created"], NOW);
    assert_eq!(
        ok(&mut v, get(Collection::Secrets, "off", None))["value"],
        "v"
    );
}

/// `nbf` and `exp` are accepted on create and update and come back in list items (where
/// kvkeep reads them for its expiry report), as integers; an update replaces them in place,
/// without a new version, and moves `updated`.
#[test]
fn nbf_and_exp_are_listed_and_updated_in_place() {
    let mut v = vault();
    ok(
        &mut v,
        Op::SetSecret {
            name: "cert-pass".into(),
            body: json!({"value": "v", "attributes": {"nbf": NOW - 10, "exp": NOW + 100}}),
        },
    );
    set_secret(&mut v, "plain", "v");
    let (items, _) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!(items[0]["attributes"]["nbf"], NOW - 10);
    assert_eq!(items[0]["attributes"]["exp"], NOW + 100);
    // Unset attributes are left out, as the service leaves them out.
    assert!(items[1]["attributes"].get("exp").is_none());
    assert!(items[1]["attributes"].get("nbf").is_none());

    ok_at(
        &mut v,
        Op::Update {
            coll: Collection::Secrets,
            name: "cert-pass".into(),
            version: None,
            body: json!({"attributes": {"exp": NOW + 500}}),
        },
        NOW + 7,
    );
    let (items, _) = page(&mut v, list(Collection::Secrets, None, 25));
    let attrs = &items[0]["attributes"];
    assert_eq!(
        (&attrs["nbf"], &attrs["exp"], &attrs["updated"]),
        (&json!(NOW - 10), &json!(NOW + 500), &json!(NOW + 7))
    );
    let (versions, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "cert-pass".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(versions.len(), 1, "an attribute update makes no version");

    // Keys carry them the same way.
    ok(
        &mut v,
        Op::CreateKey {
            name: "k".into(),
            body: json!({"kty": "EC", "attributes": {"exp": NOW + 300}}),
        },
    );
    let (keys, _) = page(&mut v, list(Collection::Keys, None, 25));
    assert_eq!(keys[0]["attributes"]["exp"], NOW + 300);
}

#[test]
fn update_of_missing_secret_is_404() {
    let mut v = vault();
    let e = err(
        &mut v,
        Op::Update {
            coll: Collection::Secrets,
            name: "x".into(),
            version: None,
            body: json!({}),
        },
    );
    assert_eq!(e.status, 404);
}

fn names_of(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i["id"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn paging_60_secrets_by_25_gives_3_pages_sorted_case_insensitively() {
    let mut v = vault();
    for i in 0..60 {
        // Mixed case must not disturb the order.
        let name = if i % 2 == 0 {
            format!("Sec{i:03}")
        } else {
            format!("sec{i:03}")
        };
        set_secret(&mut v, &name, "x");
    }
    let mut all = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (items, next) = page(&mut v, list(Collection::Secrets, after.clone(), 25));
        pages += 1;
        assert!(items.len() <= 25);
        for i in &items {
            assert_id(
                &i["id"],
                "secrets",
                i["id"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or(""),
                false,
            );
            assert!(i.get("value").is_none());
        }
        all.extend(names_of(&items));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 60);
    let lower: Vec<String> = all.iter().map(|n| n.to_ascii_lowercase()).collect();
    let mut sorted = lower.clone();
    sorted.sort();
    assert_eq!(lower, sorted);
    assert_eq!(lower.iter().collect::<BTreeSet<_>>().len(), 60);
}

#[test]
fn paging_is_stable_when_objects_are_created_and_deleted_between_pages() {
    let mut v = vault();
    for i in 0..60 {
        set_secret(&mut v, &format!("s{i:03}"), "x");
    }
    let (first, next) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!(first.len(), 25);
    // A new name sorting before the marker, one after it, and a deleted name already seen.
    set_secret(&mut v, "a-new-first", "x");
    set_secret(&mut v, "s0305", "x");
    ok(
        &mut v,
        Op::Delete {
            coll: Collection::Secrets,
            name: "s001".into(),
        },
    );
    let mut seen = names_of(&first);
    let mut after = next;
    while let Some(marker) = after {
        let (items, next) = page(&mut v, list(Collection::Secrets, Some(marker), 25));
        seen.extend(names_of(&items));
        after = next;
    }
    let expected: Vec<String> = (0..60)
        .map(|i| format!("s{i:03}"))
        .chain(std::iter::once("s0305".to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        seen, expected,
        "no duplicates, no misses, the later insert included"
    );
}

#[test]
fn last_full_page_has_no_next_and_exact_fit_is_not_followed_by_empty_page() {
    let mut v = vault();
    for i in 0..25 {
        set_secret(&mut v, &format!("s{i:02}"), "x");
    }
    let (items, next) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!((items.len(), next), (25, None));
    let (items, next) = page(&mut v, list(Collection::Secrets, None, 24));
    assert_eq!(items.len(), 24);
    assert_eq!(next.as_deref(), Some("s23"));
}

#[test]
fn versions_list_is_versioned_sorted_and_pages() {
    let mut v = vault();
    let mut ids = Vec::new();
    for i in 0..7 {
        let b = ok_at(
            &mut v,
            Op::SetSecret {
                name: "multi".into(),
                body: json!({"value": format!("{i}")}),
            },
            NOW + i,
        );
        ids.push(b["id"].as_str().unwrap_or_default().to_string());
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (items, next) = page(
            &mut v,
            Op::ListVersions {
                coll: Collection::Secrets,
                name: "MULTI".into(),
                after,
                limit: 3,
            },
        );
        for i in &items {
            assert_id(&i["id"], "secrets", "multi", true);
            seen.push(i["id"].as_str().unwrap_or_default().to_string());
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ids, "versions sorted by created");
    // Unknown names answer an empty page (§16), not 404.
    let (items, next) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "ghost".into(),
            after: None,
            limit: 25,
        },
    );
    assert!(items.is_empty() && next.is_none());
    let e = err(
        &mut v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "multi".into(),
            after: Some("garbage".into()),
            limit: 25,
        },
    );
    assert_eq!(e.status, 400);
}

#[test]
fn versions_created_in_the_same_second_keep_creation_order_for_latest() {
    let mut v = vault();
    for i in 0..5 {
        set_secret(&mut v, "same", &format!("v{i}"));
    }
    assert_eq!(
        ok(&mut v, get(Collection::Secrets, "same", None))["value"],
        "v4"
    );
    let (items, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "same".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(items.len(), 5);
}
