//! A TOML or type error of the configuration file, told without the value that caused it.
//!
//! serde's messages quote the offending value (`invalid type: string "AGE-SECRET-KEY-1…",
//! expected a sequence`), and that value is often a secret pasted into the wrong key. So the
//! message is rebuilt from kvkeep's own words — what was expected, what kind of value was found —
//! and the key path is recovered from the document's spans, so the operator still learns which
//! key on which line to fix.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::{line_of, ConfigError};

/// The error `e`, raised while reading `text`, as a [`ConfigError`] that names the key and line
/// but never repeats a value.
pub(super) fn config_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    ConfigError {
        path: span
            .as_ref()
            .and_then(|s| key_path_at(text, s.start))
            .unwrap_or_default(),
        line: span.map(|s| line_of(text, s.start)),
        message: without_values(e.message()),
    }
}

/// serde's vocabulary, in TOML's.
const TOML_WORDS: [(&str, &str); 7] = [
    ("a sequence", "an array"),
    ("a map", "a table"),
    ("f64", "a number"),
    ("i64", "an integer"),
    ("a boolean", "true or false"),
    ("unit value", "nothing"),
    ("floating point", "a number"),
];

/// Rewrites a serde/toml message so it holds no value from the file.
fn without_values(message: &str) -> String {
    let m = message.trim();
    let invalid = m
        .strip_prefix("invalid type: ")
        .or_else(|| m.strip_prefix("invalid value: "));
    if let Some(rest) = invalid {
        // "{found}, expected {what}": the found part may hold the value (and even ", expected "
        // inside it), the last ", expected " is serde's own.
        let (found, expected) = rest
            .rsplit_once(", expected ")
            .unwrap_or((rest, "another type"));
        return format!(
            "wrong type: expected {}, found {}",
            toml_words(expected),
            kind_of(found)
        );
    }
    for prefix in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = m.strip_prefix(prefix) {
            if let Some((name, tail)) = rest.split_once('`') {
                let what = if prefix.contains("field") {
                    "field"
                } else {
                    "variant"
                };
                return format!("unknown {what} `{}`{tail}", safe_key(name));
            }
        }
    }
    redact_quoted(m)
}

fn toml_words(expected: &str) -> String {
    if expected.starts_with("struct ") {
        return "a table".to_string();
    }
    let mut out = expected.to_string();
    for (serde, toml) in TOML_WORDS {
        out = out.replace(serde, toml);
    }
    out
}

/// What kind of value serde found, from the start of its `Unexpected` rendering.
fn kind_of(found: &str) -> &'static str {
    const KINDS: [(&str, &str); 9] = [
        ("string", "a string"),
        ("integer", "an integer"),
        ("floating point", "a number"),
        ("boolean", "true or false"),
        ("sequence", "an array"),
        ("map", "a table"),
        ("character", "a string"),
        ("unit", "nothing"),
        ("option", "an optional value"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| found.starts_with(prefix))
        .map(|(_, kind)| *kind)
        .unwrap_or("another type")
}

/// A key as it may appear in a message: key names are short words; anything else (a private
/// key or SAS URL pasted on a line of its own becomes a key) is not repeated.
fn safe_key(key: &str) -> String {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        key.to_string()
    } else {
        "<key not shown>".to_string()
    }
}

/// Last line of defence for messages not rewritten above (syntax errors): a quoted stretch
/// longer than a key name is dropped.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let Some(len) = rest[open + 1..].find(quote) else {
            break;
        };
        let inner = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..open]);
        if inner.len() > 64 || (safe_key(inner) != inner && inner.len() > 16) {
            out.push_str("<value not shown>");
        } else {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The dotted key path (`vault[1].kinds[0]`) of the smallest key or value of `text` whose span
/// holds byte `at`; `None` when the text does not parse as TOML.
fn key_path_at(text: &str, at: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    walk_table(doc.get_ref(), "", at, &mut best);
    best.map(|(_, path)| path)
}

/// The best match so far: span length and path.
type Best = Option<(usize, String)>;

fn walk_table(table: &DeTable<'_>, prefix: &str, at: usize, best: &mut Best) {
    for (key, value) in table.iter() {
        let key_text = safe_key(key.get_ref());
        let path = if prefix.is_empty() {
            key_text
        } else {
            format!("{prefix}.{key_text}")
        };
        consider(key.span(), &path, at, best);
        consider(value.span(), &path, at, best);
        walk_value(value.get_ref(), &path, at, best);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, at: usize, best: &mut Best) {
    match value {
        DeValue::Table(table) => walk_table(table, path, at, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                consider(item.span(), &path, at, best);
                walk_value(item.get_ref(), &path, at, best);
            }
        }
        _ => {}
    }
}

/// Keeps `path` when its span holds `at` and is no longer than the best so far (children are
/// visited after their parent, so on a tie the deeper path wins).
fn consider(span: Range<usize>, path: &str, at: usize, best: &mut Best) {
    let holds = span.start <= at && at < span.end.max(span.start + 1);
    if holds && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_kinds_not_the_value() {
        let cases = [
            (
                "invalid type: string \"AGE-SECRET-KEY-1CANARY, expected x\", expected a sequence",
                "wrong type: expected an array, found a string",
            ),
            (
                "invalid type: integer `4242`, expected a string",
                "wrong type: expected a string, found an integer",
            ),
            (
                "invalid type: floating point `0.5`, expected i64",
                "wrong type: expected an integer, found a number",
            ),
            (
                "unknown field `colour`, expected one of `type`, `path`",
                "unknown field `colour`, expected one of `type`, `path`",
            ),
            (
                "unknown field `AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY`, expected one of `type`",
                "unknown field `<key not shown>`, expected one of `type`",
            ),
            ("missing field `name`", "missing field `name`"),
        ];
        for (serde, ours) in cases {
            assert_eq!(without_values(serde), ours);
        }
    }

    #[test]
    fn the_key_path_comes_from_the_span() {
        let text = "[store]\ntype = \"local\"\n\n[[vault]]\nname = \"a\"\n\n[[vault]]\nname = \"b\"\nkinds = [\"keys\", 7]\n";
        let at = |needle: &str| text.find(needle).expect(needle);
        assert_eq!(
            key_path_at(text, at("\"local\"")).as_deref(),
            Some("store.type")
        );
        assert_eq!(
            key_path_at(text, at("\"b\"")).as_deref(),
            Some("vault[1].name")
        );
        assert_eq!(
            key_path_at(text, at("7]")).as_deref(),
            Some("vault[1].kinds[1]")
        );
        assert_eq!(key_path_at("[store", 0), None);
    }
}
