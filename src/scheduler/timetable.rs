//! When a vault is due: its schedule shifted by a jitter offset that is stable per vault.
//!
//! The offset comes from a hash of the vault's name, not from a random draw, so a restart (or a
//! second daemon sharing the store) computes the same fire times: a random offset drawn at start
//! would move every vault's run each time the daemon restarts, and could run a vault twice in
//! one period. A fire time is the schedule's time plus the offset; the offset is never negative
//! and always below the configured bound, so a run never starts before its schedule says.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::Schedule;
use crate::config::VaultConfig;
use crate::model::VaultName;

/// The first fire time of `schedule` strictly after `now` (no jitter).
pub fn next_due(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_after(now)
}

/// The jitter offset of `vault` under `bound`: in whole seconds, at least zero and less than
/// `bound` (zero when `bound` is under a second). SHA-256 rather than the standard library's
/// hasher, whose output may change between Rust releases and would then reshuffle every vault.
pub fn jitter_offset(vault: &VaultName, bound: Duration) -> Duration {
    let secs = bound.as_secs();
    if secs == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::new()
        .chain_update(b"kvkeep jitter\0")
        .chain_update(vault.as_str().as_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    Duration::from_secs(u64::from_be_bytes(head) % secs)
}

/// A vault's schedule with its jitter offset applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    schedule: Schedule,
    offset: TimeDelta,
}

impl Timetable {
    /// `schedule` shifted later by `offset`.
    pub fn new(schedule: Schedule, offset: Duration) -> Self {
        // Offsets are bounded by the configuration (at most a day), so this never saturates.
        let offset = TimeDelta::from_std(offset).unwrap_or(TimeDelta::MAX);
        Timetable { schedule, offset }
    }

    /// The backup timetable of a configured vault, or `None` when it has no schedule (on demand
    /// only). A paused vault still has one: pausing is the caller's decision to act on.
    pub fn for_vault(vault: &VaultConfig) -> Option<Self> {
        let schedule = vault.schedule.clone()?;
        Some(Timetable::new(
            schedule,
            jitter_offset(&vault.name, vault.jitter),
        ))
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The jitter offset added to every fire time.
    pub fn offset(&self) -> Duration {
        self.offset.to_std().unwrap_or_default()
    }

    /// The first fire time (offset applied) strictly after `now`.
    pub fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let base = now.checked_sub_signed(self.offset)?;
        self.schedule
            .next_after(base)?
            .checked_add_signed(self.offset)
    }

    /// The last fire time (offset applied) at or before `now`: a daemon that finds no committed
    /// run since then has missed it.
    pub fn previous_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let base = now.checked_sub_signed(self.offset)?;
        self.schedule
            .previous_at_or_before(base)?
            .checked_add_signed(self.offset)
    }

    /// The next `count` fire times after `now`, strictly increasing.
    pub fn upcoming(&self, now: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = Vec::with_capacity(count.min(1_000));
        let mut after = now;
        while out.len() < count {
            let Some(next) = self.next_due(after) else {
                break;
            };
            out.push(next);
            after = next;
        }
        out
    }
}
