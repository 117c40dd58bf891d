//! The one place kvkeep reads the wall clock. Everything else takes "now" as an argument (or a
//! clock function built on this one), so tests can pin time. `clippy.toml` forbids the wall-clock
//! functions everywhere else; monotonic `Instant`s (rate limiting, backoff) are not wall clock.

use chrono::{DateTime, Utc};

/// Now, as Unix seconds (UTC).
pub fn now_unix() -> i64 {
    now().timestamp()
}

/// Now, as a UTC date-time.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn now() -> DateTime<Utc> {
    Utc::now()
}
