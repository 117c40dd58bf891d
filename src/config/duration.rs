//! Durations as operators write them (`7d`, `12h`, `90s`), parsed with bounds.
//!
//! Every duration kvkeep accepts, in the configuration or on the command line, has a maximum:
//! an unbounded one ends up added to an `Instant` or a timestamp somewhere and panics on
//! overflow (`--purge-wait 99999999999999d`). Messages never quote the text: the caller names
//! the key or flag, and a value pasted into the wrong key may be a secret.

use std::time::Duration;

/// Parses `text` as a duration between `min` and `max` inclusive.
pub fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    use humantime::DurationError as E;
    let hint = "write e.g. \"7d\", \"12h\" or \"90s\"";
    let parsed = humantime::parse_duration(text.trim()).map_err(|e| match e {
        E::NumberOverflow => format!("must be at most {}", show(max)),
        E::Empty => format!("is empty; {hint}"),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("not a duration (a number needs a unit); {hint}")
        }
        E::UnknownUnit { .. } => {
            format!("not a duration (unknown unit: use s, m, h, d or w); {hint}")
        }
        _ => format!("not a duration; {hint}"),
    })?;
    if parsed < min {
        return Err(format!("must be at least {}", show(min)));
    }
    if parsed > max {
        return Err(format!("must be at most {}", show(max)));
    }
    Ok(parsed)
}

/// `d` as the largest whole unit that divides it (`366d`, `1h`, `90s`).
fn show(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= per && secs.is_multiple_of(per) {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);
    const YEAR: Duration = Duration::from_secs(366 * 86_400);

    #[test]
    fn values_inside_the_bounds_parse() {
        for (text, secs) in [
            ("7d", 7 * 86_400),
            ("12h", 43_200),
            ("1h", 3_600),
            ("1y", 31_557_600),
        ] {
            assert_eq!(
                parse_duration_within(text, HOUR, YEAR),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn out_of_range_and_overflowing_values_are_errors_not_panics() {
        for (text, phrase) in [
            ("999999999999y", "at most 366d"),
            ("99999999999999d", "at most 366d"),
            ("99999999999999999999999s", "at most 366d"),
            ("400d", "at most 366d"),
            ("59m", "at least 1h"),
            ("often", "not a duration"),
            ("7 fortnights", "unknown unit"),
            ("7", "needs a unit"),
            ("", "empty"),
        ] {
            let err = parse_duration_within(text, HOUR, YEAR).expect_err(text);
            assert!(err.contains(phrase), "{text}: {err}");
            if text.len() >= 4 {
                assert!(!err.contains(text), "{text} echoed: {err}");
            }
        }
    }
}
