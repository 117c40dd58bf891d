//! Retention: which restore points of a vault to keep, and why (DESIGN.md §7).
//!
//! This part is the pure decision: [`decide`] takes the restore points, the objects seen
//! deleted, the vault's [`RetentionPolicy`], its time zone and "now", and returns a
//! [`RetentionDecision`] with a verdict and reasons for every point. Prune (plan → execute, in
//! an order that leaves every remaining restore point usable) is built on it later.

mod decide;
mod policy;
mod reason;

pub use decide::{decide, period_of, Deletion, PointDecision, RestorePoint, RetentionDecision};
pub use policy::{RetentionPolicy, DEFAULT_KEEP_DELETED_FOR, DEFAULT_MIN_RETENTION};
pub use reason::{short_duration, CalendarRule, Period, Reason};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
