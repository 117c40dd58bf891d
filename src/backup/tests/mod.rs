//! Tests of the backup pipeline: the planner's tables, and the executor on the in-memory vault,
//! store and index.

mod execute;
mod plan;
