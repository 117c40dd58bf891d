//! The pure planner as tables: selection by `--only`, compatibility refusals, and the action
//! for every target state under every policy.

use std::collections::BTreeMap;

use super::{location, n, v, T1};
use crate::config::PayloadMode;
use crate::index::CaptureRecord;
use crate::model::ObjectKind;
use crate::restore::plan::{check_compatibility, decide, select};
use crate::restore::{Action, ConflictPolicy, ObjectRef, PlanError, TargetState, VaultLocation};

fn capture(kind: ObjectKind, name: &str, payload: PayloadMode) -> CaptureRecord {
    CaptureRecord {
        run: "0123456789abcdef".parse().expect("run"),
        committed: true,
        vault: v("kv1"),
        kind,
        name: n(name),
        blob: format!("objects/kv1/{kind}/{name}/20270115T080000Z-0123456789abcdef.age")
            .parse()
            .expect("key"),
        captured_at: T1,
        current_version: "0000000000000001".parse().expect("version"),
        updated: T1 - 5,
        plain_bytes: 10,
        stored_bytes: 100,
        sha256: "0".repeat(64),
        payload,
    }
}

fn set() -> Vec<CaptureRecord> {
    vec![
        capture(ObjectKind::Keys, "signing", PayloadMode::Native),
        capture(ObjectKind::Secrets, "Db-Password", PayloadMode::Native),
        capture(ObjectKind::Secrets, "api-token", PayloadMode::Native),
    ]
}

fn r(s: &str) -> ObjectRef {
    s.parse().expect("object ref")
}

#[test]
fn only_filters_case_insensitively_and_unknown_names_restore_nothing() {
    let got = select(&v("kv1"), T1, set(), &[r("secrets/db-password")]).expect("selected");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name.as_str(), "Db-Password");
    assert_eq!(select(&v("kv1"), T1, set(), &[]).expect("all").len(), 3);

    let err = select(
        &v("kv1"),
        T1,
        set(),
        &[
            r("secrets/db-password"),
            r("keys/nope"),
            r("certificates/signing"),
        ],
    )
    .expect_err("unknown names");
    let PlanError::UnknownObjects { missing, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(missing, &vec![r("keys/nope"), r("certificates/signing")]);
    let msg = err.to_string();
    assert!(msg.starts_with("nothing restored: keys/nope, certificates/signing did not exist in vault kv1 at 2027-01-15T08:00:00Z"), "{msg}");
    assert!(msg.contains("keys/signing"), "lists what existed: {msg}");

    let err = select(&v("kv1"), T1, Vec::new(), &[]).expect_err("empty");
    assert!(matches!(err, PlanError::NothingAt { .. }));
    assert!(err.to_string().contains("index rebuild"), "{err}");
}

#[test]
fn object_refs_parse_singular_and_plural_kinds() {
    assert_eq!(r("secret/x"), r("secrets/x"));
    for bad in ["x", "vaults/x", "secrets/"] {
        assert!(bad.parse::<ObjectRef>().is_err(), "{bad}");
    }
}

#[test]
fn compatibility_refuses_known_differences_and_warns_on_unknowns() {
    let with = |geo: Option<&str>, sub: Option<&str>| VaultLocation {
        subscription: sub.map(str::to_string),
        ..location("kv-dr", geo)
    };
    let src = location("kv1", Some("europe"));
    let natives = set();
    let portable = vec![capture(ObjectKind::Secrets, "p", PayloadMode::Portable)];
    struct Case {
        target: VaultLocation,
        selected: Vec<CaptureRecord>,
        refused: Option<&'static str>,
        warnings: usize,
    }
    let cases = [
        Case {
            target: with(Some("europe"), Some("sub-1")),
            selected: natives.clone(),
            refused: None,
            warnings: 0,
        },
        Case {
            target: with(Some("Europe"), Some("SUB-1")),
            selected: natives.clone(),
            refused: None,
            warnings: 0,
        },
        Case {
            target: with(Some("unitedstates"), Some("sub-1")),
            selected: natives.clone(),
            refused: Some("geography"),
            warnings: 0,
        },
        Case {
            target: with(Some("europe"), Some("sub-2")),
            selected: natives.clone(),
            refused: Some("subscription"),
            warnings: 0,
        },
        Case {
            target: with(None, Some("sub-1")),
            selected: natives.clone(),
            refused: None,
            warnings: 1,
        },
        Case {
            target: with(Some("unitedstates"), Some("sub-2")),
            selected: portable,
            refused: None,
            warnings: 0,
        },
        // Named like the source but at another host (an unconfigured `--to-vault` URL is
        // named after its first label): checked like any other vault.
        Case {
            target: VaultLocation {
                url: "https://kv1.vault.example.org".into(),
                ..with(Some("unitedstates"), Some("sub-1"))
            },
            selected: natives.clone(),
            refused: Some("geography"),
            warnings: 0,
        },
        // Back into the source vault: always compatible.
        Case {
            target: src.clone(),
            selected: natives,
            refused: None,
            warnings: 0,
        },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        match (
            check_compatibility(&src, &case.target, &case.selected),
            case.refused,
        ) {
            (Ok(w), None) => assert_eq!(w.len(), case.warnings, "case {i}: {w:?}"),
            (Err(e), Some(word)) => {
                let msg = e.to_string();
                assert!(msg.contains(word), "case {i}: {msg}");
                assert!(msg.contains("refused before anything was written"), "{msg}");
                assert!(
                    msg.contains("same subscription and geography"),
                    "says what to do: {msg}"
                );
            }
            (got, want) => panic!("case {i}: got {got:?}, want refusal {want:?}"),
        }
    }
}

#[test]
fn actions_for_every_state_and_policy() {
    use ConflictPolicy::*;
    let deleted = TargetState::SoftDeleted {
        scheduled_purge: Some(T1 + 90 * 86_400),
    };
    let cases: &[(TargetState, ConflictPolicy, &str)] = &[
        (TargetState::Absent, Skip, "restore"),
        (TargetState::Absent, Fail, "restore"),
        (TargetState::Absent, RecoverThenSkip, "restore"),
        (TargetState::Absent, PurgeThenRestore, "restore"),
        (TargetState::Active, Skip, "skip"),
        (TargetState::Active, Fail, "fail"),
        (TargetState::Active, RecoverThenSkip, "skip"),
        (TargetState::Active, PurgeThenRestore, "skip"),
        (deleted, Skip, "skip"),
        (deleted, Fail, "fail"),
        (deleted, RecoverThenSkip, "recover"),
        (deleted, PurgeThenRestore, "purge+restore"),
    ];
    for (state, policy, want) in cases {
        let states = BTreeMap::from([((ObjectKind::Secrets, "db-password".to_string()), *state)]);
        let plan = decide(
            location("kv1", Some("europe")),
            location("kv-dr", Some("europe")),
            T1,
            *policy,
            false,
            set(),
            &states,
            Vec::new(),
        );
        let o = plan
            .objects
            .iter()
            .find(|o| o.name.as_str() == "Db-Password")
            .expect("planned");
        assert_eq!(o.action.word(), *want, "{state:?} under {policy}");
        assert_eq!(o.target_state, *state);
        // Names missing from the survey are absent.
        assert!(plan
            .objects
            .iter()
            .filter(|o| o.name.as_str() != "Db-Password")
            .all(|o| o.action == Action::Restore));
        if let Action::Skip { reason } | Action::Fail { reason } = &o.action {
            assert!(
                reason.contains("secret Db-Password") && reason.contains("kv-dr"),
                "{reason}"
            );
        }
    }
}

#[test]
fn portable_captures_are_reported_not_attempted() {
    let plan = decide(
        location("kv1", None),
        location("kv1", None),
        T1,
        ConflictPolicy::Skip,
        false,
        vec![capture(ObjectKind::Secrets, "p", PayloadMode::Portable)],
        &BTreeMap::new(),
        Vec::new(),
    );
    assert_eq!(plan.objects[0].action.word(), "fail");
    assert_eq!(plan.stats().fail_objects, 1);
}

#[test]
fn plan_json_shape_is_stable() {
    let plan = decide(
        location("kv1", Some("europe")),
        location("kv-dr", Some("europe")),
        T1,
        ConflictPolicy::Skip,
        false,
        vec![capture(ObjectKind::Keys, "signing", PayloadMode::Native)],
        &BTreeMap::new(),
        Vec::new(),
    );
    let json = serde_json::to_value(&plan).expect("json");
    let o = &json["objects"][0];
    assert_eq!(o["kind"], "keys");
    assert_eq!(o["name"], "signing");
    assert_eq!(o["action"], "restore");
    assert_eq!(o["target_state"]["state"], "absent");
    assert_eq!(o["payload"], "native");
    assert_eq!(json["policy"], "skip");
    assert_eq!(json["at"], T1);
}

#[test]
fn purge_then_restore_purges_only_when_the_restore_is_known_to_be_accepted() {
    let deleted = TargetState::SoftDeleted {
        scheduled_purge: None,
    };
    let src = location("kv1", Some("europe"));
    let target = |name: &str, geo: Option<&str>, sub: Option<&str>| VaultLocation {
        subscription: sub.map(str::to_string),
        ..location(name, geo)
    };
    let lookalike = VaultLocation {
        url: "https://kv1.vault.example.org".into(),
        ..target("kv1", None, Some("sub-1"))
    };
    // (target, kind, --assume-compatible, planned action, words the reason must hold)
    let cases: Vec<(VaultLocation, ObjectKind, bool, &str, &[&str])> = vec![
        (
            target("kv-dr", Some("Europe"), Some("SUB-1")),
            ObjectKind::Secrets,
            false,
            "purge+restore",
            &[],
        ),
        (
            target("kv-dr", None, Some("sub-1")),
            ObjectKind::Secrets,
            false,
            "fail",
            &[
                "left alone",
                "geography",
                "not known",
                "--assume-compatible",
                "recover-then-skip",
            ],
        ),
        (
            target("kv-dr", Some("europe"), None),
            ObjectKind::Secrets,
            false,
            "fail",
            &["subscription"],
        ),
        (
            target("kv-dr", None, None),
            ObjectKind::Secrets,
            true,
            "purge+restore",
            &[],
        ),
        (
            target("kv-dr", Some("unitedstates"), Some("sub-1")),
            ObjectKind::Secrets,
            false,
            "fail",
            &["differ", "europe vs unitedstates"],
        ),
        // An HSM key restores only into a premium vault, and kvkeep is never told the tier.
        (
            target("kv-dr", Some("europe"), Some("sub-1")),
            ObjectKind::Keys,
            false,
            "fail",
            &["pricing tier", "--assume-compatible"],
        ),
        (
            target("kv-dr", Some("europe"), Some("sub-1")),
            ObjectKind::Keys,
            true,
            "purge+restore",
            &[],
        ),
        // Same name, another host: not the source vault, so not known to be compatible.
        (
            lookalike,
            ObjectKind::Secrets,
            false,
            "fail",
            &["geography"],
        ),
        // Back into the source vault itself (same URL): nothing can differ.
        (
            location("kv1", None),
            ObjectKind::Keys,
            false,
            "purge+restore",
            &[],
        ),
    ];
    for (i, (target, kind, assume, want, words)) in cases.into_iter().enumerate() {
        let name = if kind == ObjectKind::Keys {
            "signing"
        } else {
            "db-password"
        };
        let states = BTreeMap::from([((kind, name.to_string()), deleted)]);
        let plan = decide(
            src.clone(),
            target,
            T1,
            ConflictPolicy::PurgeThenRestore,
            assume,
            set(),
            &states,
            Vec::new(),
        );
        let o = plan
            .objects
            .iter()
            .find(|o| o.name.canonical() == name)
            .expect("planned");
        assert_eq!(o.action.word(), want, "case {i}: {:?}", o.action);
        if let Action::Fail { reason } = &o.action {
            for w in words {
                assert!(reason.contains(w), "case {i}: {w:?} missing from {reason}");
            }
        }
        // Only the soft-deleted name is affected; the free names are restored.
        assert!(plan
            .objects
            .iter()
            .filter(|o| o.name.canonical() != name)
            .all(|o| o.action == Action::Restore));
    }
}
