//! Tests of the backup pipeline: the planner's tables, the executor on the in-memory vault,
//! store and index, and the runner's vault leases.

mod execute;
mod plan;
mod runner;
mod sync;
mod takeover;
mod two_instances;
