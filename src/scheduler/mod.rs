//! Scheduling: parsing backup schedules and computing when each vault is next due. Pure: "now" is
//! always passed in.

mod schedule;

pub use schedule::{Schedule, ScheduleError};
