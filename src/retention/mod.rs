//! Retention: which restore points of a vault to keep, and why (DESIGN.md §7).
//!
//! This part is the pure decision: [`decide`] takes the restore points, the objects seen
//! deleted, the vault's [`RetentionPolicy`], its time zone and "now", and returns a
//! [`RetentionDecision`] with a verdict and reasons for every point. [`plan_prune`] reads a
//! vault's restore points from the index and adds what forgetting would free; [`prune_vault`]
//! carries a plan out, in an order that leaves every remaining restore point usable whenever
//! it stops.

mod decide;
mod plan;
mod policy;
mod prune;
mod reason;

pub use decide::{decide, period_of, Deletion, PointDecision, RestorePoint, RetentionDecision};
pub use plan::{plan_prune, PrunePlan};
pub use policy::{
    RetentionPolicy, DEFAULT_GRACE_PERIOD, DEFAULT_KEEP_DELETED_FOR, DEFAULT_MIN_RETENTION,
};
pub use prune::{
    prune_vault, Deferred, PruneObserver, PruneOutcome, PruneStep, DELETE_CONCURRENCY,
};
pub use reason::{short_duration, CalendarRule, Period, Reason};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
