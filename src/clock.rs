//! The one place kvkeep reads the wall clock. Everything else takes "now" as an argument (or a
//! clock function built on this one), so tests can pin time. `clippy.toml` forbids the wall-clock
//! functions everywhere else; monotonic `Instant`s (rate limiting, backoff) are not wall clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now" in Unix seconds, for code whose tests move time by hand (backup runs,
/// the in-memory store's lease expiry). Production passes [`now_unix`].
pub type UnixClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Now, as Unix seconds (UTC).
pub fn now_unix() -> i64 {
    now().timestamp()
}

/// Now, as a UTC date-time.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn now() -> DateTime<Utc> {
    Utc::now()
}
