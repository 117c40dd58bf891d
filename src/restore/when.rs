//! The `--at TIME` grammar of restore: an RFC 3339 instant, `now`, or a relative form such as
//! `2h ago` / `3d ago` / `1w 2d ago`, resolved against a `now` passed in (never the wall clock
//! here, so plans are reproducible in tests).

use chrono::DateTime;

/// Seconds per unit of the relative forms. Months and years are left out on purpose: their
/// length varies, and an operator restoring a vault should name such a point exactly.
const UNITS: [(&str, i64); 5] = [
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 604_800),
];

/// Resolves `text` to Unix seconds (UTC) relative to `now`.
///
/// Accepted: `now`; RFC 3339 (`2026-11-28T19:05:00Z`, any offset); `N{s|m|h|d|w} ago` with one
/// or more terms (`2h ago`, `1d12h ago`, `1d 12h ago`); a bare number of Unix seconds with a
/// leading `@` (`@1795892700`). Errors say what was expected.
pub fn parse_at(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(secs) = t.strip_prefix('@') {
        return secs
            .parse::<i64>()
            .map_err(|_| format!("time {text:?}: after '@' give Unix seconds, e.g. @1795892700"));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp());
    }
    if let Some(span) = t.strip_suffix("ago") {
        let secs = parse_span(span).map_err(|why| {
            format!("time {text:?}: {why}; write e.g. \"90m ago\", \"2h ago\", \"3d ago\"")
        })?;
        return now
            .checked_sub(secs)
            .ok_or_else(|| format!("time {text:?} is too far in the past"));
    }
    Err(format!(
        "time {text:?} is not understood: give an RFC 3339 time (2026-11-28T19:05:00Z), a relative one (\"2h ago\", \"3d ago\") or \"now\""
    ))
}

/// `1d 12h` → seconds. Every term is digits followed by a unit.
fn parse_span(span: &str) -> Result<i64, String> {
    let compact: String = span.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("no duration before \"ago\"".into());
    }
    let mut total: i64 = 0;
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number {:?} is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let per = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, per)| *per)
            .ok_or_else(|| format!("unit {unit:?} is not one of s, m, h, d, w"))?;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(per)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| "duration is too large".to_string())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_at;

    // 2026-11-28T19:05:00Z
    const NOW: i64 = 1_795_892_700;

    #[test]
    fn accepted_forms() {
        let cases: &[(&str, i64)] = &[
            ("now", NOW),
            ("2026-11-28T19:05:00Z", NOW),
            ("2026-11-28T20:05:00+01:00", NOW),
            ("2h ago", NOW - 7_200),
            ("3d ago", NOW - 3 * 86_400),
            ("90m ago", NOW - 5_400),
            ("1d 12h ago", NOW - 129_600),
            ("1w ago", NOW - 604_800),
            ("  45s ago ", NOW - 45),
            ("@1700000000", 1_700_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_at(text, NOW), Ok(*want), "{text}");
        }
    }

    #[test]
    fn refused_forms_say_what_to_write() {
        for text in [
            "yesterday",
            "2 hours ago",
            "ago",
            "2y ago",
            "h ago",
            "2026-13-01",
            "@x",
        ] {
            let err = parse_at(text, NOW).expect_err(text);
            assert!(err.contains(text.trim()), "{err}");
            assert!(
                err.contains("e.g.") || err.contains("RFC 3339"),
                "{text}: {err}"
            );
        }
    }
}
