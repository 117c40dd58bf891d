//! Table tests of the pure planner: every way an object is captured, left alone, skipped or seen
//! gone, and when a deep scan is due.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::backup::plan::{
    deep_scans_due, object_key, plan, ChangeReason, DeepScan, KnownObject, ObjectKey, PlanOptions,
    SkipReason, VersionFingerprint,
};
use crate::config::{PayloadMode, VaultConfig};
use crate::index::LastCapture;
use crate::model::{ObjectKind, ObjectName, ObjectVersion};
use crate::source::{ObjectSummary, Tags, VersionInfo};

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn v(s: &str) -> ObjectVersion {
    s.parse().expect("version")
}

fn n(s: &str) -> ObjectName {
    s.parse().expect("name")
}

fn vault() -> VaultConfig {
    VaultConfig {
        name: "kv1".parse().expect("vault"),
        url: "https://kv1.vault.azure.net".into(),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: ObjectKind::ALL.into_iter().collect(),
        include: Vec::new(),
        exclude: Vec::new(),
        skip_tags: BTreeMap::new(),
        payload: PayloadMode::Native,
        deep_scan_every: Duration::from_secs(7 * DAY as u64),
        jitter: std::time::Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: Default::default(),
        rpo: None,
    }
}

fn options(vault: &VaultConfig) -> PlanOptions {
    PlanOptions::from_vault(vault, NOW).expect("globs compile")
}

fn listed(kind: ObjectKind, name: &str, version: Option<&str>, updated: i64) -> ObjectSummary {
    ObjectSummary {
        name: n(name),
        kind,
        version: version.map(v),
        updated: Some(updated),
        enabled: true,
        tags: BTreeMap::new(),
        validity: Default::default(),
        managed: false,
        content_type: None,
    }
}

fn last(version: &str, updated: i64, deep_scan: Option<i64>) -> LastCapture {
    LastCapture {
        current_version: v(version),
        updated,
        captured_at: updated + 10,
        blob: "objects/kv1/secrets/x/20270115T080000Z-0123456789abcdef.age"
            .parse()
            .expect("key"),
        last_deep_scan: deep_scan,
    }
}

fn known(
    entries: &[(ObjectKind, &str, bool, Option<LastCapture>)],
) -> HashMap<ObjectKey, KnownObject> {
    entries
        .iter()
        .map(|(kind, name, deleted, last)| {
            (
                object_key(*kind, &n(name)),
                KnownObject {
                    kind: *kind,
                    name: n(name),
                    deleted: *deleted,
                    last: last.clone(),
                },
            )
        })
        .collect()
}

fn fp(version: &str, updated: i64, enabled: bool) -> VersionFingerprint {
    VersionFingerprint {
        version: v(version),
        updated: Some(updated),
        enabled,
    }
}

/// A version as the vault lists it.
fn vi(version: &str, updated: i64, enabled: bool) -> VersionInfo {
    VersionInfo {
        version: v(version),
        created: Some(1),
        updated: Some(updated),
        enabled,
        tags: Tags::new(),
        content_type: None,
    }
}

const S: ObjectKind = ObjectKind::Secrets;
const K: ObjectKind = ObjectKind::Keys;
const C: ObjectKind = ObjectKind::Certificates;

/// One row: the object as listed and as known → the expected classification.
#[derive(Debug)]
enum Expect {
    Changed(ChangeReason),
    Unchanged { deep_scanned: bool },
}

/// What a row describes, the object as listed, its last capture, the deep scan done, and the
/// expected outcome.
type Case = (
    &'static str,
    ObjectSummary,
    Option<LastCapture>,
    Option<DeepScan>,
    Expect,
);

#[test]
fn each_object_is_captured_or_left_alone_for_the_right_reason() {
    let recent = Some(NOW - DAY);
    let stale = Some(NOW - 30 * DAY);
    let cases: Vec<Case> = vec![
        (
            "never captured",
            listed(S, "a", Some("v1"), 100),
            None,
            None,
            Expect::Changed(ChangeReason::New),
        ),
        (
            "same version and updated",
            listed(S, "a", Some("v1"), 100),
            Some(last("v1", 100, recent)),
            None,
            Expect::Unchanged {
                deep_scanned: false,
            },
        ),
        (
            "listing without versions (the real service), same updated",
            listed(S, "a", None, 100),
            Some(last("v1", 100, recent)),
            None,
            Expect::Unchanged {
                deep_scanned: false,
            },
        ),
        (
            "new current version",
            listed(S, "a", Some("v2"), 100),
            Some(last("v1", 100, recent)),
            None,
            Expect::Changed(ChangeReason::NewCurrentVersion {
                captured: v("v1"),
                listed: v("v2"),
            }),
        ),
        (
            "tag or attribute change moves updated",
            listed(K, "a", None, 200),
            Some(last("v1", 100, recent)),
            None,
            Expect::Changed(ChangeReason::UpdatedChanged {
                captured: 100,
                listed: Some(200),
            }),
        ),
        (
            "listing without updated cannot be trusted",
            ObjectSummary {
                updated: None,
                ..listed(S, "a", Some("v1"), 0)
            },
            Some(last("v1", 100, recent)),
            None,
            Expect::Changed(ChangeReason::UpdatedChanged {
                captured: 100,
                listed: None,
            }),
        ),
        (
            "deep scan due, versions equal",
            listed(C, "a", None, 100),
            Some(last("v2", 100, stale)),
            Some(DeepScan {
                listed: vec![vi("v1", 50, true), vi("v2", 100, true)],
                captured: vec![fp("v2", 100, true), fp("v1", 50, true)],
            }),
            Expect::Unchanged { deep_scanned: true },
        ),
        (
            "deep scan finds an older version disabled",
            listed(C, "a", None, 100),
            Some(last("v2", 100, stale)),
            Some(DeepScan {
                listed: vec![vi("v1", 150, false), vi("v2", 100, true)],
                captured: vec![fp("v1", 50, true), fp("v2", 100, true)],
            }),
            Expect::Changed(ChangeReason::DeepScanChanged {
                versions: vec![v("v1")],
            }),
        ),
        (
            "deep scan never done counts as due",
            listed(S, "a", None, 100),
            Some(last("v2", 100, None)),
            Some(DeepScan {
                listed: vec![vi("v2", 100, true), vi("v3", 90, true)],
                captured: vec![fp("v2", 100, true)],
            }),
            Expect::Changed(ChangeReason::DeepScanChanged {
                versions: vec![v("v3")],
            }),
        ),
        (
            "deep scan not due: a scan result is ignored",
            listed(S, "a", None, 100),
            Some(last("v2", 100, recent)),
            Some(DeepScan {
                listed: vec![vi("v3", 90, true)],
                captured: vec![fp("v2", 100, true)],
            }),
            Expect::Unchanged {
                deep_scanned: false,
            },
        ),
        (
            "deep scan due but listing versions failed",
            listed(S, "a", None, 100),
            Some(last("v2", 100, stale)),
            None,
            Expect::Unchanged {
                deep_scanned: false,
            },
        ),
    ];
    let vault = vault();
    let opts = options(&vault);
    for (what, object, last, scan, expect) in cases {
        let key = object_key(object.kind, &object.name);
        let known = known(&[(object.kind, object.name.as_str(), false, last)]);
        let listed_by_scan = scan.as_ref().map(|s| s.listed.clone());
        let scans: HashMap<_, _> = scan.into_iter().map(|s| (key.clone(), s)).collect();
        let p = plan(&opts, std::slice::from_ref(&object), &known, &scans);
        assert!(p.gone.is_empty() && p.skipped.is_empty(), "{what}: {p:?}");
        match expect {
            Expect::Changed(why) => {
                assert_eq!(p.changed.len(), 1, "{what}: {p:?}");
                // The capture of what a deep scan found reuses the scan's version list (the
                // versions are listed once); any other capture lists them itself.
                let reused = matches!(why, ChangeReason::DeepScanChanged { .. });
                assert_eq!(
                    p.changed[0].versions,
                    listed_by_scan.filter(|_| reused),
                    "{what}"
                );
                assert_eq!(p.changed[0].why, why, "{what}");
                assert!(p.unchanged.is_empty(), "{what}");
            }
            Expect::Unchanged { deep_scanned } => {
                assert!(p.changed.is_empty(), "{what}: {p:?}");
                assert_eq!(p.unchanged.len(), 1, "{what}");
                assert_eq!(p.unchanged[0].deep_scanned, deep_scanned, "{what}");
                assert_eq!(
                    p.unchanged[0].current_version,
                    p.unchanged[0].last.current_version
                );
            }
        }
    }
}

#[test]
fn filters_skip_with_their_reason() {
    let mut vault = vault();
    vault.include = vec!["app-*".into(), "db-*".into()];
    vault.exclude = vec!["*-tmp".into()];
    vault.skip_tags = BTreeMap::from([("kvkeep".to_string(), "skip".to_string())]);
    let opts = options(&vault);
    let mut managed = listed(K, "app-cert", None, 1);
    managed.managed = true;
    let mut tagged = listed(S, "db-pass", None, 1);
    tagged.tags.insert("kvkeep".into(), "skip".into());
    let mut other_tag = listed(S, "db-user", None, 1);
    other_tag.tags.insert("kvkeep".into(), "keep".into());
    let listing = vec![
        managed,
        tagged,
        other_tag,
        listed(S, "other", None, 1),
        listed(S, "APP-Session-TMP", None, 1),
        listed(C, "App-Cert", None, 1),
    ];
    let p = plan(&opts, &listing, &HashMap::new(), &HashMap::new());
    let skipped: Vec<(ObjectKind, &str, SkipReason)> = p
        .skipped
        .iter()
        .map(|s| (s.kind, s.name.as_str(), s.why.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (K, "app-cert", SkipReason::Managed),
            (
                S,
                "APP-Session-TMP",
                SkipReason::Excluded {
                    glob: "*-tmp".into()
                }
            ),
            (
                S,
                "db-pass",
                SkipReason::Tagged {
                    key: "kvkeep".into(),
                    value: "skip".into()
                }
            ),
            (S, "other", SkipReason::NotIncluded),
        ]
    );
    let changed: Vec<&str> = p.changed.iter().map(|c| c.object.name.as_str()).collect();
    // Includes match case-insensitively, as Key Vault compares names.
    assert_eq!(changed, vec!["db-user", "App-Cert"]);
}

#[test]
fn only_known_live_objects_of_listed_kinds_are_gone() {
    let mut vault = vault();
    vault.kinds = BTreeSet::from([S, C]);
    let opts = options(&vault);
    let listing = vec![
        listed(S, "Still-Here", Some("v1"), 1),
        listed(K, "key-not-listed-kind", None, 1),
    ];
    let known = known(&[
        (S, "still-here", false, Some(last("v1", 1, Some(NOW)))),
        (S, "removed", false, Some(last("v1", 1, Some(NOW)))),
        (
            S,
            "already-recorded-gone",
            true,
            Some(last("v1", 1, Some(NOW))),
        ),
        (
            K,
            "key-of-unconfigured-kind",
            false,
            Some(last("v1", 1, Some(NOW))),
        ),
        (C, "cert-never-captured", false, None),
    ]);
    let p = plan(&opts, &listing, &known, &HashMap::new());
    let gone: Vec<(ObjectKind, &str)> = p.gone.iter().map(|g| (g.kind, g.name.as_str())).collect();
    assert_eq!(gone, vec![(S, "removed"), (C, "cert-never-captured")]);
    assert_eq!(p.unchanged.len(), 1, "matched case-insensitively: {p:?}");
    assert!(
        p.changed.is_empty(),
        "keys are not a configured kind: {p:?}"
    );
}

#[test]
fn a_repeat_run_with_nothing_changed_plans_nothing() {
    let vault = vault();
    let opts = options(&vault);
    let listing: Vec<ObjectSummary> = (0..60)
        .map(|i| {
            listed(
                ObjectKind::ALL[i % 3],
                &format!("obj-{i}"),
                None,
                1000 + i as i64,
            )
        })
        .collect();
    let known_entries: Vec<(ObjectKind, String, bool, Option<LastCapture>)> = listing
        .iter()
        .map(|o| {
            (
                o.kind,
                o.name.to_string(),
                false,
                Some(last("v1", o.updated.unwrap_or_default(), Some(NOW - 60))),
            )
        })
        .collect();
    let borrowed: Vec<(ObjectKind, &str, bool, Option<LastCapture>)> = known_entries
        .iter()
        .map(|(k, n, d, l)| (*k, n.as_str(), *d, l.clone()))
        .collect();
    let known = known(&borrowed);
    assert!(deep_scans_due(&opts, &listing, &known).is_empty());
    let p = plan(&opts, &listing, &known, &HashMap::new());
    assert!(p.is_quiet(), "{p:?}");
    assert_eq!(p.unchanged.len(), 60);
}

#[test]
fn deep_scans_are_due_only_for_quiet_objects_past_the_period() {
    let vault = vault();
    let opts = options(&vault);
    let mut managed = listed(K, "managed", None, 1);
    managed.managed = true;
    let listing = vec![
        listed(S, "due", None, 1),
        listed(S, "exactly-due", None, 1),
        listed(S, "recent", None, 1),
        listed(S, "changed", None, 2),
        listed(S, "new", None, 1),
        managed,
    ];
    let week = 7 * DAY;
    let known = known(&[
        (S, "due", false, Some(last("v1", 1, Some(NOW - week - 1)))),
        (
            S,
            "exactly-due",
            false,
            Some(last("v1", 1, Some(NOW - week))),
        ),
        (
            S,
            "recent",
            false,
            Some(last("v1", 1, Some(NOW - week + 1))),
        ),
        (S, "changed", false, Some(last("v1", 1, None))),
        (K, "managed", false, Some(last("v1", 1, None))),
    ]);
    let due: Vec<String> = deep_scans_due(&opts, &listing, &known)
        .into_iter()
        .map(|(_, n)| n.to_string())
        .collect();
    assert_eq!(due, vec!["due", "exactly-due"]);
}

#[test]
fn plans_print_as_json_with_reasons() {
    let vault = vault();
    let opts = options(&vault);
    let listing = vec![listed(S, "a", Some("v2"), 5)];
    let known = known(&[(S, "a", false, Some(last("v1", 5, Some(NOW))))]);
    let p = plan(&opts, &listing, &known, &HashMap::new());
    let json = serde_json::to_value(&p).expect("serialises");
    assert_eq!(json["changed"][0]["why"]["reason"], "new_current_version");
    assert_eq!(json["changed"][0]["name"], "a");
    assert_eq!(json["changed"][0]["kind"], "secrets");
}

#[test]
fn an_object_listed_again_after_a_committed_deletion_is_captured() {
    let vault = vault();
    let opts = options(&vault);
    let listing = vec![listed(S, "back", Some("v1"), 1)];
    let known = known(&[(S, "back", true, Some(last("v1", 1, Some(NOW))))]);
    let p = plan(&opts, &listing, &known, &HashMap::new());
    assert_eq!(p.changed.len(), 1, "{p:?}");
    assert_eq!(p.changed[0].why, ChangeReason::Reappeared);
    assert!(p.gone.is_empty() && p.unchanged.is_empty());
}
