//! Which vaults are due, decided purely: the daemon's scheduling state, moved forward by the
//! time it is given and by the runs it is told about. The loop around it ([`super::run_loop`])
//! only sleeps, reads the clock and starts runs.
//!
//! Rules (DESIGN §8; classic cron semantics for missed and overlapping ticks):
//! - a vault is due when its next fire time is at or before now; its next fire time then moves
//!   to the first one after now, so however many ticks passed (a suspend, a long run, a
//!   stopped daemon) the vault runs once, not once per missed tick;
//! - a vault whose run is still going is never started again: its tick is counted as skipped;
//! - at start, a vault whose newest committed run is older than its previous fire time missed
//!   that tick while the daemon was down, and is due at once (once);
//! - a new configuration (SIGHUP) keeps what the agenda knows of the jobs it still has: a run in
//!   flight is never started twice, a removed job's run finishes but is not scheduled again.
//!
//! A job is a vault's backup in most places; the agenda is generic over its key so the daemon can
//! schedule a vault's quick verification beside its backup.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Timetable;
use crate::model::VaultName;

/// The longest the loop sleeps without reading the wall clock again: a suspend or an NTP step
/// is noticed within this, not at a fire time computed before it.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Slot {
    timetable: Timetable,
    next: Option<DateTime<Utc>>,
    running: bool,
    skipped: u64,
    /// Removed from the configuration while its run was going: kept only so that the run is
    /// not started again if the job comes back before it ends, and dropped when it ends.
    retired: bool,
}

impl Slot {
    /// A job first seen at `now` whose newest committed run started at `newest`: due at once
    /// when it missed its previous fire time.
    fn new(timetable: Timetable, newest: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let missed = match (timetable.previous_due(now), newest) {
            (Some(previous), Some(newest)) => newest < previous,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if missed {
            Some(now)
        } else {
            timetable.next_due(now)
        };
        Slot {
            timetable,
            next,
            running: false,
            skipped: 0,
            retired: false,
        }
    }
}

/// One job of the agenda: its key, its timetable and when it last ran (`None`: never).
pub type AgendaEntry<K> = (K, Timetable, Option<DateTime<Utc>>);

/// The scheduling state of every scheduled job (by default, a vault's backup).
#[derive(Debug, Clone)]
pub struct Agenda<K = VaultName> {
    slots: BTreeMap<K, Slot>,
}

impl<K> Default for Agenda<K> {
    fn default() -> Self {
        Agenda {
            slots: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone + Display> Agenda<K> {
    /// The agenda at `now` for `jobs`, each with the time of its newest committed run (`None`
    /// when it has none): a job that missed its previous fire time is due at once.
    pub fn new(jobs: impl IntoIterator<Item = AgendaEntry<K>>, now: DateTime<Utc>) -> Self {
        let slots = jobs
            .into_iter()
            .map(|(key, timetable, newest)| (key, Slot::new(timetable, newest, now)))
            .collect();
        Agenda { slots }
    }

    /// Replaces the jobs with `jobs` (a reloaded configuration) at `now`. A job kept with the
    /// same timetable keeps its next fire time; one whose timetable changed keeps its running
    /// state and skipped count and is next due at the new timetable's next fire time; a new job
    /// is treated as at start (due at once when it missed its previous fire time). A removed
    /// job is not scheduled any more; if its run is going, that run is left to finish.
    pub fn reconfigure(
        &mut self,
        jobs: impl IntoIterator<Item = AgendaEntry<K>>,
        now: DateTime<Utc>,
    ) {
        let mut old = std::mem::take(&mut self.slots);
        for (key, timetable, newest) in jobs {
            let slot = match old.remove(&key) {
                Some(slot) if !slot.retired && slot.timetable == timetable => slot,
                Some(slot) => Slot {
                    next: timetable.next_due(now),
                    timetable,
                    running: slot.running,
                    skipped: slot.skipped,
                    retired: false,
                },
                None => Slot::new(timetable, newest, now),
            };
            self.slots.insert(key, slot);
        }
        for (key, mut slot) in old {
            if slot.running {
                slot.retired = true;
                slot.next = None;
                self.slots.insert(key, slot);
            }
        }
    }

    /// The vaults to start now, in name order. Each due vault's next fire time moves past
    /// `now`; a due vault whose run is still going is not returned, and its skipped ticks grow.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<K> {
        self.take_due_with_times(now)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// [`Agenda::take_due`], with the fire time each job was due at (what its start is late
    /// against).
    pub fn take_due_with_times(&mut self, now: DateTime<Utc>) -> Vec<(K, DateTime<Utc>)> {
        let mut due = Vec::new();
        for (name, slot) in &mut self.slots {
            let Some(at) = slot.next.filter(|at| *at <= now) else {
                continue;
            };
            slot.next = slot.timetable.next_due(now);
            if slot.running {
                slot.skipped += 1;
                tracing::warn!(vault = %name, skipped = slot.skipped,
                    "tick skipped: the vault's previous run is still going");
            } else {
                slot.running = true;
                due.push((name.clone(), at));
            }
        }
        due
    }

    /// Records that `vault`'s run ended: it can be started again at its next tick.
    pub fn finished(&mut self, vault: &K) {
        if let Some(slot) = self.slots.get_mut(vault) {
            slot.running = false;
            if slot.retired {
                self.slots.remove(vault);
            }
        }
    }

    /// How long to sleep from `now`: until the earliest fire time, at most [`MAX_SLEEP`].
    pub fn sleep_for(&self, now: DateTime<Utc>) -> Duration {
        self.slots
            .values()
            .filter_map(|s| s.next)
            .min()
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// The next fire time of `vault`, if it has one.
    pub fn next_of(&self, vault: &K) -> Option<DateTime<Utc>> {
        self.slots.get(vault).and_then(|s| s.next)
    }

    /// The vault due first and when, if any is scheduled.
    pub fn next_due_overall(&self) -> Option<(&K, DateTime<Utc>)> {
        self.slots
            .iter()
            .filter_map(|(name, slot)| slot.next.map(|at| (name, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// How many jobs are scheduled.
    pub fn len(&self) -> usize {
        self.slots.values().filter(|s| !s.retired).count()
    }

    /// Whether no job is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheduled jobs, in key order.
    pub fn jobs(&self) -> impl Iterator<Item = &K> {
        self.slots
            .iter()
            .filter(|(_, s)| !s.retired)
            .map(|(key, _)| key)
    }

    /// Ticks of `vault` skipped because its run was still going.
    pub fn skipped(&self, vault: &K) -> u64 {
        self.slots.get(vault).map_or(0, |s| s.skipped)
    }
}
