//! The validity period (`nbf`/`exp`) of captures (schema 6): recorded with a capture, "unknown"
//! kept apart from "neither set", filled in for unchanged objects, and the report query over the
//! newest capture each restore point holds.

use super::super::{ExpiringObjectRecord, Index, NewCapture, RunStats, RunStatus};
use super::{blob, capture, name, run, state, vault, RunScript};
use crate::model::ObjectKind::{Certificates, Keys, Secrets};
use crate::model::{ObjectKind, Validity};

fn expiring(exp: i64) -> Validity {
    Validity {
        not_before: Some(exp - 1_000),
        expires: Some(exp),
    }
}

fn with_validity(c: NewCapture, validity: Option<Validity>) -> NewCapture {
    NewCapture { validity, ..c }
}

/// (kind, name, exp) of what `expiring_objects` lists.
fn listed(records: &[ExpiringObjectRecord]) -> Vec<(ObjectKind, &str, i64)> {
    records
        .iter()
        .map(|r| (r.kind, r.name.as_str(), r.expires_at))
        .collect()
}

#[test]
fn a_capture_keeps_its_period_and_unknown_stays_apart_from_none_set() {
    let index = Index::open_in_memory().expect("index");
    index.begin_run(&run(1), &vault("kv1"), 100).expect("begin");
    let cases = [
        ("both", Some(expiring(5_000))),
        (
            "only-exp",
            Some(Validity {
                not_before: None,
                expires: Some(5_000),
            }),
        ),
        ("none-set", Some(Validity::default())),
        ("unknown", None),
    ];
    for (object, validity) in cases {
        let c = with_validity(capture("kv1", Secrets, object, &["v1"], 101), validity);
        index.record_capture(&run(1), &c).expect("capture");
        assert_eq!(
            index.capture_validity(&c.blob).expect("read"),
            validity,
            "{object}"
        );
    }
    assert_eq!(
        index
            .capture_validity(&blob("objects/kv1/secrets/nothing/1.age"))
            .expect("read"),
        None
    );
    // The schema refuses a period on a capture that says it has none recorded.
    let err = index
        .lock()
        .execute(
            "UPDATE captures SET expires_at = 1, validity_known = 0 WHERE blob_key LIKE '%both%'",
            [],
        )
        .expect_err("unknown with a period");
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[test]
fn an_unchanged_sighting_fills_in_an_unknown_period_and_leaves_a_known_one() {
    let index = Index::open_in_memory().expect("index");
    let unknown = capture("kv1", Secrets, "old", &["v1"], 101);
    let known = with_validity(
        capture("kv1", Keys, "new", &["k1"], 101),
        Some(expiring(9_000)),
    );
    index.begin_run(&run(1), &vault("kv1"), 100).expect("begin");
    index.record_capture(&run(1), &unknown).expect("capture");
    index.record_capture(&run(1), &known).expect("capture");

    let listed_now = expiring(7_000);
    let filled = index
        .write(|w| {
            Ok((
                w.fill_unknown_validity(&unknown.blob, &listed_now)?,
                w.fill_unknown_validity(&known.blob, &listed_now)?,
            ))
        })
        .expect("fill");
    assert_eq!(filled, (true, false));
    assert_eq!(
        index.capture_validity(&unknown.blob).expect("read"),
        Some(listed_now)
    );
    assert_eq!(
        index.capture_validity(&known.blob).expect("read"),
        Some(expiring(9_000)),
        "a recorded period is what the blob's version had; it is not rewritten"
    );
}

#[test]
fn expiring_objects_are_the_newest_held_captures_inside_the_window_soonest_first() {
    let index = Index::open_in_memory().expect("index");
    let kv = vault("kv1");
    let play = |script: RunScript<'_>, validity: &[(&str, Option<Validity>)]| {
        let mut script = script;
        for c in &mut script.captures {
            if let Some((_, v)) = validity.iter().find(|(n, _)| c.object.name.as_str() == *n) {
                c.validity = *v;
            }
        }
        script.play(&index);
    };
    // Run 1 (committed): every object once; `renewed` expires soon here, `gone` too.
    play(
        RunScript::committed(1, "kv1", 100)
            .capture(Secrets, "renewed", &["r1"])
            .capture(Keys, "soon", &["k1"])
            .capture(Certificates, "expired", &["c1"])
            .capture(Secrets, "later", &["l1"])
            .capture(Secrets, "never", &["n1"])
            .capture(Secrets, "legacy", &["g1"])
            .capture(Secrets, "gone", &["x1"])
            .capture(Secrets, "edge", &["e1"]),
        &[
            ("renewed", Some(expiring(1_500))),
            ("soon", Some(expiring(1_800))),
            ("expired", Some(expiring(900))),
            ("later", Some(expiring(50_000))),
            ("never", Some(Validity::default())),
            ("legacy", None),
            ("gone", Some(expiring(1_200))),
            ("edge", Some(expiring(2_000))),
        ],
    );
    // Run 2 (committed): `renewed` got a new version with a later exp, `gone` was deleted.
    play(
        RunScript::committed(2, "kv1", 200)
            .capture(Secrets, "renewed", &["r1", "r2"])
            .delete(Secrets, "gone"),
        &[("renewed", Some(expiring(40_000)))],
    );
    // Run 3 never committed: its capture of `later` counts for nothing.
    play(
        RunScript {
            manifest: false,
            status: RunStatus::Interrupted,
            ..RunScript::committed(3, "kv1", 300).capture(Secrets, "later", &["l1", "l2"])
        },
        &[("later", Some(expiring(1_000)))],
    );
    // Another vault's objects are not this one's.
    play(
        RunScript::committed(4, "kv2", 100).capture(Secrets, "soon", &["o1"]),
        &[("soon", Some(expiring(1_000)))],
    );

    let records = index.expiring_objects(&kv, 2_000).expect("query");
    assert_eq!(
        listed(&records.expiring),
        [
            (Certificates, "expired", 900),
            (Keys, "soon", 1_800),
            // Inclusive: `exp` exactly at the end of the window is inside it.
            (Secrets, "edge", 2_000),
        ]
    );
    assert_eq!(records.expiring[0].validity, expiring(900));
    assert_eq!(records.unknown, 1, "legacy");

    // A wide window: `renewed` with the exp of its newest capture, `later` with its committed
    // one, and still not the deleted object or the one without `exp`.
    let wide = index.expiring_objects(&kv, 100_000).expect("query");
    assert_eq!(
        listed(&wide.expiring),
        [
            (Certificates, "expired", 900),
            (Keys, "soon", 1_800),
            (Secrets, "edge", 2_000),
            (Secrets, "renewed", 40_000),
            (Secrets, "later", 50_000),
        ]
    );
    assert!(index
        .expiring_objects(&vault("kv-none"), 100_000)
        .expect("query")
        .expiring
        .is_empty());
}

#[test]
fn an_unchanged_run_makes_a_legacy_capture_known() {
    let index = Index::open_in_memory().expect("index");
    RunScript::committed(1, "kv1", 100)
        .capture(Secrets, "legacy", &["x"])
        .play(&index);
    let kv = vault("kv1");
    assert_eq!(index.expiring_objects(&kv, 10_000).expect("q").unknown, 1);

    // What the backup executor records for an object it finds unchanged.
    let earlier = capture("kv1", Secrets, "legacy", &["x"], 100);
    index
        .write(|w| {
            w.begin_run(&run(2), &kv, 200)?;
            w.record_unchanged(
                &run(2),
                &state(Secrets, "legacy", "x", 99),
                &earlier.blob,
                200,
                false,
            )?;
            w.fill_unknown_validity(&earlier.blob, &expiring(5_000))?;
            w.finish_run(
                &run(2),
                RunStatus::Completed,
                &RunStats::default(),
                205,
                Some(&blob("manifests/kv1/200-0000000000000002.age")),
            )
        })
        .expect("unchanged run");
    let records = index.expiring_objects(&kv, 10_000).expect("q");
    assert_eq!(records.unknown, 0);
    assert_eq!(listed(&records.expiring), [(Secrets, "legacy", 5_000)]);
    assert_eq!(records.expiring[0].name, name("legacy"));
}
