//! The one place kvkeep reads the wall clock. Everything else takes "now" as an argument (or a
//! clock function built on this one), so tests can pin time.

/// Now, as Unix seconds (UTC).
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
