//! Restore tests: plan tables and executor scenarios on the fakes.
