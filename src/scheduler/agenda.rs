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
//!   that tick while the daemon was down, and is due at once (once).

use std::collections::BTreeMap;
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
}

/// The scheduling state of every scheduled vault.
#[derive(Debug, Clone, Default)]
pub struct Agenda {
    slots: BTreeMap<VaultName, Slot>,
}

impl Agenda {
    /// The agenda at `now` for `vaults`, each with the time of its newest committed run (`None`
    /// when it has none): a vault that missed its previous fire time is due at once.
    pub fn new(
        vaults: impl IntoIterator<Item = (VaultName, Timetable, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Self {
        let slots = vaults
            .into_iter()
            .map(|(name, timetable, newest)| {
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
                let slot = Slot {
                    timetable,
                    next,
                    running: false,
                    skipped: 0,
                };
                (name, slot)
            })
            .collect();
        Agenda { slots }
    }

    /// The vaults to start now, in name order. Each due vault's next fire time moves past
    /// `now`; a due vault whose run is still going is not returned, and its skipped ticks grow.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<VaultName> {
        let mut due = Vec::new();
        for (name, slot) in &mut self.slots {
            if slot.next.is_none_or(|at| at > now) {
                continue;
            }
            slot.next = slot.timetable.next_due(now);
            if slot.running {
                slot.skipped += 1;
                tracing::warn!(vault = %name, skipped = slot.skipped,
                    "tick skipped: the vault's previous run is still going");
            } else {
                slot.running = true;
                due.push(name.clone());
            }
        }
        due
    }

    /// Records that `vault`'s run ended: it can be started again at its next tick.
    pub fn finished(&mut self, vault: &VaultName) {
        if let Some(slot) = self.slots.get_mut(vault) {
            slot.running = false;
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
    pub fn next_of(&self, vault: &VaultName) -> Option<DateTime<Utc>> {
        self.slots.get(vault).and_then(|s| s.next)
    }

    /// The vault due first and when, if any is scheduled.
    pub fn next_due_overall(&self) -> Option<(&VaultName, DateTime<Utc>)> {
        self.slots
            .iter()
            .filter_map(|(name, slot)| slot.next.map(|at| (name, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// How many vaults are scheduled.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no vault is scheduled.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ticks of `vault` skipped because its run was still going.
    pub fn skipped(&self, vault: &VaultName) -> u64 {
        self.slots.get(vault).map_or(0, |s| s.skipped)
    }
}
