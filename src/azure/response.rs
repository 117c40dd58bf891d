//! Reading Azure service answers the same way in every adapter: how long a throttled response asks
//! kvkeep to wait, and an error with its whole cause chain on one line.

use std::time::Duration;

use azure_core::http::headers::{Headers, RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};

/// The delay a throttled (429) or unavailable (503) response asks for: `x-ms-retry-after-ms` or
/// `retry-after-ms` in milliseconds, else `Retry-After` in delta seconds. The HTTP-date form of
/// `Retry-After` is ignored and left to the caller's backoff: neither Key Vault nor Blob Storage
/// has been seen sending it.
pub fn retry_after(headers: &Headers) -> Option<Duration> {
    for ms_header in [X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS] {
        if let Some(ms) = headers
            .get_optional_str(&ms_header)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
    }
    headers
        .get_optional_str(&RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// `error` and its causes as one line (`a: b: c`), skipping a cause whose text is already in the
/// line (SDK errors often repeat their source), scrubbed of SAS signatures and tokens because
/// HTTP client errors quote the full request URL.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    super::scrub_secrets(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::headers::HeaderName;

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), *v);
        }
        h
    }

    #[test]
    fn milliseconds_win_over_seconds_and_dates_are_ignored() {
        assert_eq!(
            retry_after(&headers(&[
                ("x-ms-retry-after-ms", "250"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "40")])),
            Some(Duration::from_millis(40))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 3 ")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2026 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(retry_after(&headers(&[])), None);
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn chains_are_one_line_without_repeats_or_signatures() {
        let e = Layer(
            "request failed: connection refused",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer(
                    "https://a.blob.core.windows.net/c/x?sv=2025&sig=SECRETSIG",
                    None,
                ))),
            ))),
        );
        let text = error_chain(&e);
        assert!(
            text.starts_with("request failed: connection refused: https://a.blob"),
            "{text}"
        );
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert!(!text.contains("SECRETSIG"), "{text}");
    }
}
