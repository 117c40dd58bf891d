//! Scheduling: parsing backup schedules, computing when each vault is next due, deciding which
//! vaults to start ([`Agenda`], pure: "now" is always passed in) and the thin loop that starts
//! them ([`run_loop`]).

mod agenda;
mod fields;
#[cfg(test)]
mod loop_tests;
mod run_loop;
mod schedule;
#[cfg(test)]
mod tests;
mod timetable;

pub use agenda::{Agenda, AgendaEntry, MAX_SLEEP};
pub use run_loop::{run_loop, Jobs, LoopOptions, OnStart, OnWake, StartRun, WallClock};
pub use schedule::{Schedule, ScheduleError};
pub use timetable::{jitter_offset, next_due, Timetable};
