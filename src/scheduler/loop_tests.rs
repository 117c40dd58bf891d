//! The agenda's rules (catch-up once, no overlap, bounded sleep) as pure table-free tests, and
//! the loop under tokio's paused clock with a fake wall clock that moves with it (and can jump,
//! as after a suspend or an NTP step).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{run_loop, Agenda, LoopOptions, Schedule, StartRun, Timetable, WallClock, MAX_SLEEP};
use crate::model::VaultName;

fn v(s: &str) -> VaultName {
    s.parse().expect("vault")
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, h, m, s)
        .single()
        .expect("time")
}

fn table(expr: &str) -> Timetable {
    Timetable::new(
        Schedule::parse(expr, "UTC").expect("schedule"),
        Duration::ZERO,
    )
}

#[test]
fn a_tick_missed_while_down_runs_once_at_start_and_an_up_to_date_vault_waits() {
    let now = at(10, 30, 0);
    let mut agenda = Agenda::new(
        [
            // Hourly; newest run at 07:00, so 08:00, 09:00 and 10:00 were missed: one run.
            (v("missed"), table("0 * * * *"), Some(at(7, 0, 5))),
            // Ran after the 10:00 tick: nothing missed.
            (v("current"), table("0 * * * *"), Some(at(10, 0, 5))),
            // Never backed up: due at once.
            (v("never"), table("0 * * * *"), None),
        ],
        now,
    );
    assert_eq!(agenda.take_due(now), vec![v("missed"), v("never")]);
    for name in ["missed", "never"] {
        agenda.finished(&v(name));
    }
    // Caught up once, not once per missed tick: the next is the 11:00 tick for everyone.
    assert!(agenda.take_due(at(10, 59, 59)).is_empty());
    for name in ["missed", "current", "never"] {
        assert_eq!(agenda.next_of(&v(name)), Some(at(11, 0, 0)), "{name}");
    }
}

#[test]
fn a_vault_still_running_is_not_started_again_and_its_tick_counts_as_skipped() {
    let now = at(10, 0, 0);
    let mut agenda = Agenda::new([(v("kv1"), table("*/5 * * * *"), Some(now))], now);
    assert_eq!(agenda.take_due(at(10, 5, 0)), vec![v("kv1")]);
    assert!(agenda.take_due(at(10, 10, 0)).is_empty());
    assert!(agenda.take_due(at(10, 15, 0)).is_empty());
    assert_eq!(agenda.skipped(&v("kv1")), 2);
    agenda.finished(&v("kv1"));
    assert_eq!(agenda.take_due(at(10, 20, 0)), vec![v("kv1")]);
}

#[test]
fn the_loop_never_sleeps_longer_than_a_minute() {
    let now = at(10, 0, 0);
    let agenda = Agenda::new([(v("yearly"), table("@yearly"), Some(now))], now);
    assert_eq!(agenda.sleep_for(now), MAX_SLEEP);
    assert_eq!(Agenda::<VaultName>::default().sleep_for(now), MAX_SLEEP);
    let soon = Agenda::new([(v("often"), table("@every 2s"), Some(now))], now);
    assert_eq!(soon.sleep_for(now), Duration::from_secs(2));
}

/// Each run's vault and wall-clock start.
type Starts = Vec<(VaultName, DateTime<Utc>)>;

/// A wall clock that starts at `start` and moves with tokio's (paused) clock, plus `jump`.
fn fake_clock(start: DateTime<Utc>, jump: Arc<AtomicI64>) -> WallClock {
    let origin = tokio::time::Instant::now();
    Arc::new(move || {
        let elapsed = chrono::TimeDelta::from_std(origin.elapsed()).unwrap_or_default();
        start + elapsed + chrono::TimeDelta::seconds(jump.load(Ordering::SeqCst))
    })
}

#[tokio::test(start_paused = true)]
async fn runs_follow_the_schedule_without_overlap_and_within_the_parallel_bound() {
    let start = at(10, 0, 0);
    let clock = fake_clock(start, Arc::new(AtomicI64::new(0)));
    let agenda = Agenda::new(
        [
            (v("slow"), table("@every 2s"), Some(start)),
            (v("fast"), table("@every 2s"), Some(start)),
        ],
        start,
    );
    let starts: Arc<Mutex<Starts>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let start_run: StartRun = {
        let (starts, in_flight, most, clock) = (
            starts.clone(),
            in_flight.clone(),
            most.clone(),
            clock.clone(),
        );
        Arc::new(move |vault: VaultName| {
            let (starts, in_flight, most, clock) = (
                starts.clone(),
                in_flight.clone(),
                most.clone(),
                clock.clone(),
            );
            async move {
                starts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((vault.clone(), clock()));
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // The slow vault's run outlasts two of its ticks.
                let length = if vault.as_str() == "slow" { 5 } else { 1 };
                tokio::time::sleep(Duration::from_secs(length)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            .boxed()
        })
    };
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        stopper.cancel();
    });
    let agenda = run_loop(agenda, clock, start_run, LoopOptions::new(1), cancel).await;

    let starts = starts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let of = |name: &str| -> Vec<DateTime<Utc>> {
        starts
            .iter()
            .filter(|(v, _)| v.as_str() == name)
            .map(|(_, t)| *t)
            .collect()
    };
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "max_parallel_vaults = 1 holds"
    );
    let slow = of("slow");
    assert!(slow.len() >= 3, "{starts:?}");
    for pair in slow.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::TimeDelta::seconds(5),
            "a run of the slow vault never starts before its previous one ended: {slow:?}"
        );
    }
    assert!(agenda.skipped(&v("slow")) > 0);
    assert!(of("fast").len() > slow.len(), "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_is_noticed_within_a_minute() {
    // Daily at midnight; it is just past midnight, so the next run is a day away.
    let start = at(0, 0, 10);
    let jump = Arc::new(AtomicI64::new(0));
    let clock = fake_clock(start, jump.clone());
    let agenda = Agenda::new([(v("daily"), table("0 0 * * *"), Some(start))], start);
    let started = Arc::new(Mutex::new(None::<tokio::time::Instant>));
    let start_run: StartRun = {
        let started = started.clone();
        Arc::new(move |_| {
            let started = started.clone();
            async move {
                *started.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(tokio::time::Instant::now());
            }
            .boxed()
        })
    };
    let cancel = CancellationToken::new();
    let origin = tokio::time::Instant::now();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The machine wakes from a suspend: the wall clock is now 30 s before the next run.
        jump.store(24 * 3600 - 60, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(600)).await;
        stopper.cancel();
    });
    run_loop(agenda, clock, start_run, LoopOptions::new(4), cancel).await;
    let ran = started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the run started after the jump");
    // Paused time: this is the loop's logic, not a timing measurement. A loop that slept
    // until the fire time it computed before the jump would start a day later.
    assert!(
        ran - origin <= Duration::from_secs(10 + 60 + 30 + 1),
        "{:?}",
        ran - origin
    );
}

#[test]
fn a_reload_keeps_what_the_agenda_knows_of_the_vaults_it_still_has() {
    let now = at(10, 0, 0);
    let mut agenda = Agenda::new(
        [
            (v("kept"), table("*/5 * * * *"), Some(now)),
            (v("retimed"), table("*/5 * * * *"), Some(now)),
            (v("removed"), table("*/5 * * * *"), Some(now)),
        ],
        now,
    );
    // All three are running their 10:05 runs when the configuration is reloaded.
    assert_eq!(agenda.take_due(at(10, 5, 0)).len(), 3);
    assert!(agenda.take_due(at(10, 10, 0)).is_empty());
    agenda.reconfigure(
        [
            (v("kept"), table("*/5 * * * *"), Some(now)),
            (v("retimed"), table("*/7 * * * *"), Some(now)),
            // Never backed up: due at once, as at start.
            (v("added"), table("*/5 * * * *"), None),
        ],
        at(10, 11, 0),
    );
    assert_eq!(agenda.len(), 3, "the removed vault is no longer scheduled");
    assert_eq!(agenda.next_of(&v("kept")), Some(at(10, 15, 0)));
    assert_eq!(agenda.next_of(&v("retimed")), Some(at(10, 14, 0)));
    assert_eq!(agenda.skipped(&v("kept")), 1, "the skipped count survives");
    // Runs in flight are still in flight: no vault is started twice.
    assert_eq!(agenda.take_due(at(10, 15, 0)), vec![v("added")]);
    assert_eq!(agenda.skipped(&v("kept")), 2);
    for name in ["kept", "retimed", "removed", "added"] {
        agenda.finished(&v(name));
    }
    assert_eq!(agenda.take_due(at(10, 20, 0)), vec![v("added"), v("kept")]);
    assert_eq!(agenda.next_of(&v("removed")), None);
}

#[test]
fn a_vault_removed_and_added_back_while_its_run_goes_on_is_not_started_twice() {
    let now = at(10, 0, 0);
    let mut agenda = Agenda::new([(v("kv1"), table("@every 2s"), None)], now);
    assert_eq!(agenda.take_due(now), vec![v("kv1")]);
    agenda.reconfigure(Vec::new(), at(10, 0, 1));
    assert!(agenda.is_empty());
    agenda.reconfigure([(v("kv1"), table("@every 2s"), None)], at(10, 0, 2));
    assert!(
        agenda.take_due(at(10, 0, 10)).is_empty(),
        "its run is still going"
    );
    agenda.finished(&v("kv1"));
    assert_eq!(agenda.take_due(at(10, 0, 12)), vec![v("kv1")]);
}

#[tokio::test(start_paused = true)]
async fn the_loop_applies_a_new_job_list_while_it_runs() {
    let start = at(10, 0, 0);
    let clock = fake_clock(start, Arc::new(AtomicI64::new(0)));
    let agenda = Agenda::new([(v("old"), table("@every 2s"), Some(start))], start);
    let starts: Arc<Mutex<Vec<VaultName>>> = Arc::default();
    let start_run: StartRun = {
        let starts = starts.clone();
        Arc::new(move |vault: VaultName| {
            let starts = starts.clone();
            async move {
                starts.lock().unwrap_or_else(|p| p.into_inner()).push(vault);
            }
            .boxed()
        })
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut options = LoopOptions::new(2);
    options.updates = Some(rx);
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(vec![(v("new"), table("@every 2s"), Some(start))])
            .expect("loop running");
        tokio::time::sleep(Duration::from_secs(5)).await;
        stopper.cancel();
    });
    let agenda = run_loop(agenda, clock, start_run, options, cancel).await;
    let starts = starts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (old, new): (Vec<_>, Vec<_>) = starts.iter().partition(|v| v.as_str() == "old");
    // Before the update only "old" ran (at 2 s and 4 s); after it only "new" (at 6 s, 8 s...).
    assert_eq!(old.len(), 2, "{starts:?}");
    assert!(new.len() >= 2, "{starts:?}");
    assert_eq!(agenda.jobs().cloned().collect::<Vec<_>>(), vec![v("new")]);
}
