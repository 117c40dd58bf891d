//! What the daemon schedules: per vault, its backup and its quick verification, each on its own
//! timetable, with when each last ran (from the index) so a tick missed while the daemon was
//! down is caught up once at start.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::index::{Index, RunStatus, VerificationDepth};
use crate::model::VaultName;
use crate::scheduler::{jitter_offset, Jobs, Timetable};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    /// `kvkeep backup` of the vault.
    Backup,
    /// `kvkeep verify` without an identity: every blob the index references is in the store,
    /// with its size. The daemon holds no identity, so deep verification and drills stay with
    /// operators.
    Verify,
}

/// One scheduled job: a task on a vault.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Job {
    /// The vault.
    pub vault: VaultName,
    /// The task.
    pub task: Task,
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Task::Backup => write!(f, "{}", self.vault),
            Task::Verify => write!(f, "{} (quick verify)", self.vault),
        }
    }
}

/// When `vault` last committed a run (its start), from the index.
fn newest_committed(index: &Index, vault: &VaultName) -> Option<DateTime<Utc>> {
    let runs = index
        .list_runs(Some(vault))
        .map_err(|e| tracing::warn!(vault = %vault, error = %e, "cannot read the vault's runs; treating it as never backed up"))
        .ok()?;
    runs.into_iter()
        .find(|r| r.is_committed())
        .and_then(|r| DateTime::from_timestamp(r.started_at, 0))
}

/// When `vault` last completed a run (its end): its last success, for the metrics.
pub(super) fn newest_completed(index: &Index, vault: &VaultName) -> Option<DateTime<Utc>> {
    let runs = index.list_runs(Some(vault)).ok()?;
    runs.into_iter()
        .find(|r| r.status == RunStatus::Completed)
        .and_then(|r| r.finished_at)
        .and_then(|at| DateTime::from_timestamp(at, 0))
}

/// When `vault` was last verified (at any depth: a deep verification covers a quick one).
fn newest_verification(index: &Index, vault: &VaultName) -> Option<DateTime<Utc>> {
    let last = index
        .last_verification(vault, None::<VerificationDepth>)
        .map_err(|e| tracing::warn!(vault = %vault, error = %e, "cannot read the vault's verifications; treating it as never verified"))
        .ok()??;
    DateTime::from_timestamp(last.at, 0)
}

/// The jobs of `config`: every vault that is not paused gets its backup (when it has a
/// schedule) and its quick verification (unless `verify_schedule = ""`).
pub fn jobs_of(config: &Config, index: &Index) -> Jobs<Job> {
    let mut jobs = Vec::new();
    for vault in &config.vaults {
        if vault.paused {
            tracing::info!(vault = %vault.name, "paused: not scheduled");
            continue;
        }
        let job = |task| Job {
            vault: vault.name.clone(),
            task,
        };
        if let Some(timetable) = Timetable::for_vault(vault) {
            jobs.push((
                job(Task::Backup),
                timetable,
                newest_committed(index, &vault.name),
            ));
        }
        if let Some(schedule) = &vault.verify_schedule {
            // The backup's jitter spreads verifications too: same offset, so a vault's
            // verification and backup do not start on the same second across a fleet.
            let offset = jitter_offset(&vault.name, vault.jitter);
            jobs.push((
                job(Task::Verify),
                Timetable::new(schedule.clone(), offset),
                newest_verification(index, &vault.name),
            ));
        }
    }
    jobs
}
