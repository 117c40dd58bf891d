//! Recording runs and reading them back: round trips, the commit rule for change detection, and
//! the mistakes the index refuses.

use super::super::{Index, IndexError, RunStats, RunStatus, VerificationDepth, VerificationRecord};
use super::{blob, capture, name, run, state, vault, RunScript};
use crate::model::ObjectKind::{Keys, Secrets};

#[test]
fn a_capture_is_found_by_its_blob_and_committed_only_with_its_run() {
    let index = Index::open_in_memory().expect("index");
    let id = run(8);
    index
        .begin_run(&id, &vault("kv-prod"), 1000)
        .expect("begin");
    let c = capture("kv-prod", Secrets, "Db-Password", &["a1"], 1001);
    index.record_capture(&id, &c).expect("capture");

    let got = index
        .capture(&c.blob)
        .expect("query")
        .expect("capture present");
    assert_eq!(
        (got.run.clone(), got.name.as_str()),
        (id.clone(), "Db-Password")
    );
    assert!(!got.committed, "no manifest yet");

    let manifest = blob("manifests/kv-prod/1000-0000000000000008.age");
    index
        .finish_run(
            &id,
            RunStatus::Completed,
            &RunStats::default(),
            1010,
            Some(&manifest),
        )
        .expect("finish");
    assert!(
        index
            .capture(&c.blob)
            .expect("query")
            .expect("present")
            .committed
    );
    assert!(index
        .capture(&blob(
            "objects/kv-prod/secrets/other/1000-0000000000000008.age"
        ))
        .expect("query")
        .is_none());
}

#[test]
fn a_run_round_trips_with_its_captures_errors_and_stats() {
    let index = Index::open_in_memory().expect("index");
    let id = run(7);
    let kv = vault("kv-prod");
    // The object run 7 sees unchanged was captured by an earlier run.
    RunScript::committed(6, "kv-prod", 900)
        .capture(Keys, "signing", &["k9"])
        .play(&index);
    index.begin_run(&id, &kv, 1000).expect("begin");

    let running = index.run(&id).expect("query").expect("run present");
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.finished_at, None);
    assert!(!running.is_committed());

    let c = capture("kv-prod", Secrets, "Db-Password", &["a1", "a2"], 1001);
    index.record_capture(&id, &c).expect("capture");
    index
        .record_unchanged(
            &id,
            &state(Keys, "signing", "k9", 900),
            &blob("objects/kv-prod/keys/signing/900.age"),
            1002,
            false,
        )
        .expect("unchanged");
    index
        .record_object_error(
            &id,
            Keys,
            &name("managed-key"),
            "forbidden",
            "backup refused: the key is managed by a certificate",
            1003,
        )
        .expect("error");
    let stats = RunStats {
        captured_objects: 1,
        unchanged_objects: 1,
        deleted_objects: 0,
        failed_objects: 1,
        uploaded_bytes: 600,
    };
    let manifest = blob("manifests/kv-prod/1000-0000000000000007.age");
    index
        .finish_run(
            &id,
            RunStatus::PartiallyFailed,
            &stats,
            1010,
            Some(&manifest),
        )
        .expect("finish");

    let runs = index.list_runs(Some(&kv)).expect("runs");
    assert_eq!(runs.len(), 2, "run 7 and the earlier run 6");
    let r = &runs[0];
    assert_eq!(
        (r.run.clone(), r.vault.clone(), r.started_at, r.finished_at),
        (id.clone(), kv.clone(), 1000, Some(1010))
    );
    assert_eq!(r.status, RunStatus::PartiallyFailed);
    assert_eq!(r.stats, stats);
    assert_eq!(r.manifest.as_ref(), Some(&manifest));
    assert!(index
        .list_runs(Some(&vault("kv-other")))
        .expect("runs")
        .is_empty());

    let captures = index
        .list_captures(&kv, Secrets, &name("db-password"))
        .expect("captures");
    assert_eq!(captures.len(), 1);
    let got = &captures[0];
    assert_eq!(got.name.as_str(), "Db-Password", "display name kept");
    assert_eq!(got.blob, c.blob);
    assert_eq!(got.current_version.as_str(), "a2");
    assert_eq!(
        (got.plain_bytes, got.stored_bytes, &got.sha256),
        (1000, 600, &c.sha256)
    );
    assert!(got.committed);
    assert_eq!(
        index.capture_versions(&c.blob).expect("versions"),
        c.versions
    );

    let errors = index.object_errors(&id).expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (
            errors[0].kind,
            errors[0].name.as_str(),
            errors[0].error_kind.as_str()
        ),
        (Keys, "managed-key", "forbidden")
    );

    let objects = index.list_objects(Some(&kv)).expect("objects");
    let summary: Vec<(String, Option<i64>)> = objects
        .iter()
        .map(|o| (format!("{}/{}", o.kind, o.name), o.last_deep_scan))
        .collect();
    assert_eq!(
        summary,
        [
            ("keys/signing".to_string(), Some(900)),
            ("secrets/Db-Password".to_string(), Some(1001)),
        ]
    );
}

#[test]
fn change_detection_compares_against_the_newest_committed_capture_only() {
    let index = Index::open_in_memory().expect("index");
    let kv = vault("kv-prod");
    RunScript::committed(1, "kv-prod", 100)
        .capture(Secrets, "api", &["v1"])
        .play(&index);
    // A later run captured v2 but died before its manifest: the blob is not vouched for, so the
    // next run must capture v2 again.
    RunScript {
        manifest: false,
        status: RunStatus::Interrupted,
        ..RunScript::committed(2, "kv-prod", 200).capture(Secrets, "api", &["v1", "v2"])
    }
    .play(&index);

    // What planning reads: the committed state of every object, found by canonical name.
    let last_of = |kind, n: &str| {
        index
            .committed_objects(&kv)
            .expect("query")
            .into_iter()
            .find(|o| o.kind == kind && o.name.canonical() == name(n).canonical())
            .and_then(|o| o.last)
    };
    let last = last_of(Secrets, "API").expect("captured before");
    assert_eq!(last.current_version.as_str(), "v1");
    assert_eq!((last.captured_at, last.updated), (100, 99));
    assert_eq!(last.blob, blob("objects/kv-prod/secrets/api/100.age"));
    assert_eq!(last_of(Keys, "api"), None);

    // An unchanged sighting with a deep scan moves only the deep-scan time.
    let id = run(3);
    index.begin_run(&id, &kv, 300).expect("begin");
    index
        .record_unchanged(
            &id,
            &state(Secrets, "api", "v2", 199),
            &blob("objects/kv-prod/secrets/api/100.age"),
            301,
            true,
        )
        .expect("unchanged");
    let last = last_of(Secrets, "api").expect("captured before");
    assert_eq!(last.captured_at, 100);
    assert_eq!(last.last_deep_scan, Some(301));
}

#[test]
fn versions_are_listed_across_captures_with_the_newest_blob_holding_each() {
    let index = Index::open_in_memory().expect("index");
    RunScript::committed(1, "kv-prod", 100)
        .capture(Keys, "signing", &["a"])
        .play(&index);
    RunScript::committed(2, "kv-prod", 200)
        .capture(Keys, "signing", &["a", "b"])
        .play(&index);
    let versions = index
        .list_versions(&vault("kv-prod"), Keys, &name("signing"))
        .expect("versions");
    let summary: Vec<(&str, i64, i64, String)> = versions
        .iter()
        .map(|v| {
            (
                v.version.as_str(),
                v.first_captured_at,
                v.last_captured_at,
                v.newest_blob.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", 100, 200, "objects/kv-prod/keys/signing/200.age".into()),
            ("b", 200, 200, "objects/kv-prod/keys/signing/200.age".into()),
        ]
    );
}

#[test]
fn deletions_mark_the_object_until_it_is_seen_again() {
    let index = Index::open_in_memory().expect("index");
    let kv = vault("kv-prod");
    RunScript::committed(1, "kv-prod", 100)
        .capture(Secrets, "old", &["v1"])
        .play(&index);
    RunScript::committed(2, "kv-prod", 200)
        .delete(Secrets, "old")
        .play(&index);
    let deleted_at = |index: &Index| index.list_objects(Some(&kv)).expect("objects")[0].deleted_at;
    assert_eq!(deleted_at(&index), Some(200));
    RunScript::committed(3, "kv-prod", 300)
        .capture(Secrets, "old", &["v2"])
        .play(&index);
    assert_eq!(deleted_at(&index), None);
}

#[test]
fn a_sighting_older_than_the_last_one_does_not_roll_the_object_back() {
    // A rebuild may replay manifests in any order.
    let index = Index::open_in_memory().expect("index");
    RunScript::committed(2, "kv-prod", 200)
        .capture(Secrets, "api", &["v1", "v2"])
        .play(&index);
    RunScript::committed(1, "kv-prod", 100)
        .capture(Secrets, "api", &["v1"])
        .play(&index);
    let objects = index.list_objects(None).expect("objects");
    let o = &objects[0];
    assert_eq!(
        (o.first_seen, o.last_seen, o.current_version.as_str()),
        (100, 200, "v2")
    );
}

#[test]
fn a_failed_batch_records_nothing() {
    let index = Index::open_in_memory().expect("index");
    let id = run(1);
    let result = index.write(|w| {
        w.begin_run(&id, &vault("kv-prod"), 100)?;
        w.record_capture(&id, &capture("kv-prod", Secrets, "a", &["v1"], 101))?;
        // The same blob key twice violates the write-once contract.
        w.record_capture(&id, &capture("kv-prod", Secrets, "a", &["v1"], 101))
    });
    assert!(result.is_err());
    assert!(index.list_runs(None).expect("runs").is_empty());
    assert!(index.list_objects(None).expect("objects").is_empty());
}

#[test]
fn mistakes_are_refused_with_the_run_or_object_named() {
    let index = Index::open_in_memory().expect("index");
    let kv = vault("kv-prod");
    let id = run(1);
    let unknown = run(99);

    let err = index
        .record_capture(&unknown, &capture("kv-prod", Secrets, "a", &["v1"], 1))
        .expect_err("unknown run");
    assert!(matches!(err, IndexError::UnknownRun { .. }), "{err:?}");
    assert!(err.to_string().contains(unknown.as_str()), "{err}");

    index.begin_run(&id, &kv, 100).expect("begin");
    let err = index.begin_run(&id, &kv, 100).expect_err("duplicate");
    assert!(matches!(err, IndexError::DuplicateRun { .. }), "{err:?}");

    let mut bad = capture("kv-prod", Secrets, "a", &["v1"], 101);
    bad.sha256 = "XYZ".into();
    let err = index.record_capture(&id, &bad).expect_err("bad sha");
    assert!(matches!(err, IndexError::InvalidInput(_)), "{err:?}");

    let err = index
        .record_deleted(&id, Keys, &name("never-seen"), 102)
        .expect_err("unknown object");
    assert!(err.to_string().contains("keys/never-seen"), "{err}");

    let err = index
        .finish_run(&id, RunStatus::Running, &RunStats::default(), 103, None)
        .expect_err("running is not final");
    assert!(matches!(err, IndexError::InvalidInput(_)), "{err:?}");

    index
        .finish_run(&id, RunStatus::Failed, &RunStats::default(), 104, None)
        .expect("finish");
    let err = index
        .record_capture(&id, &capture("kv-prod", Secrets, "a", &["v1"], 105))
        .expect_err("finished run");
    assert!(matches!(err, IndexError::RunFinished { .. }), "{err:?}");
    let err = index
        .finish_run(&id, RunStatus::Completed, &RunStats::default(), 106, None)
        .expect_err("finished twice");
    assert!(matches!(err, IndexError::RunFinished { .. }), "{err:?}");
}

#[test]
fn runs_left_running_by_a_dead_daemon_are_marked_interrupted() {
    let index = Index::open_in_memory().expect("index");
    index
        .begin_run(&run(1), &vault("kv-a"), 100)
        .expect("begin");
    index.begin_run(&run(3), &vault("kv-c"), 90).expect("begin");
    RunScript::committed(2, "kv-b", 50).play(&index);
    let interrupted = index
        .interrupt_unfinished_runs(Some(&vault("kv-a")), 500)
        .expect("interrupt");
    assert_eq!(interrupted, 1);
    let still = index.run(&run(3)).expect("query").expect("present");
    assert_eq!(
        still.status,
        RunStatus::Running,
        "another vault's run untouched"
    );
    assert_eq!(index.interrupt_unfinished_runs(None, 600).expect("all"), 1);
    let r = index.run(&run(1)).expect("query").expect("present");
    assert_eq!(
        (r.status, r.finished_at, r.manifest),
        (RunStatus::Interrupted, Some(500), None)
    );
    let other = index.run(&run(2)).expect("query").expect("present");
    assert_eq!(other.status, RunStatus::Completed);
    let listed: Vec<String> = index
        .list_runs(None)
        .expect("runs")
        .iter()
        .map(|r| r.run.to_string())
        .collect();
    assert_eq!(
        listed,
        [run(1), run(3), run(2)].map(|r| r.to_string()),
        "newest first"
    );
}

#[test]
fn the_latest_verification_is_found_per_depth() {
    let index = Index::open_in_memory().expect("index");
    let kv = vault("kv-prod");
    for (at, depth, ok) in [
        (100, VerificationDepth::Deep, false),
        (200, VerificationDepth::Quick, true),
    ] {
        index
            .record_verification(&VerificationRecord {
                vault: kv.clone(),
                at,
                depth,
                ok,
                detail: format!("checked at {at}"),
            })
            .expect("record");
    }
    let any = index
        .last_verification(&kv, None)
        .expect("query")
        .expect("present");
    assert_eq!(
        (any.at, any.depth, any.ok),
        (200, VerificationDepth::Quick, true)
    );
    let deep = index
        .last_verification(&kv, Some(VerificationDepth::Deep))
        .expect("query")
        .expect("present");
    assert_eq!((deep.at, deep.ok), (100, false));
    assert_eq!(
        index
            .last_verification(&kv, Some(VerificationDepth::Drill))
            .expect("query"),
        None
    );
}

#[test]
fn the_index_can_be_shared_between_threads() {
    // Async callers keep it in an Arc and use it from spawn_blocking.
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Index>();
    let index = std::sync::Arc::new(Index::open_in_memory().expect("index"));
    let handles: Vec<_> = (0..4u64)
        .map(|n| {
            let index = std::sync::Arc::clone(&index);
            std::thread::spawn(move || {
                RunScript::committed(n + 1, "kv-prod", 100 + n as i64)
                    .capture(Secrets, &format!("s{n}"), &["v1"])
                    .play(&index)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    assert_eq!(index.list_runs(None).expect("runs").len(), 4);
}
