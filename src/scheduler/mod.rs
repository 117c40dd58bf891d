//! Scheduling: parsing backup schedules and computing when each vault is next due. Pure: "now" is
//! always passed in.

mod fields;
mod schedule;
#[cfg(test)]
mod tests;
mod timetable;

pub use schedule::{Schedule, ScheduleError};
pub use timetable::{jitter_offset, next_due, Timetable};
