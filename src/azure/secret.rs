//! Secrets that must never reach a log: a wrapper whose `Debug` and `Display` print
//! `[redacted]`, the one way kvkeep reads a secret from a file, and a scrubber for SDK error text
//! that may quote a SAS URL.

use std::fmt;
use std::path::Path;

use super::AzureSetupError;

/// A secret value (client secret, bearer token, SAS URL). Formatting it prints `[redacted]`;
/// the value is only reachable through [`Redacted::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// The secret itself, for the one place that must send it somewhere.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret from a file (systemd's `LoadCredential=` puts them in
/// `$CREDENTIALS_DIRECTORY`), trimming surrounding whitespace and the trailing newline editors
/// add. An empty file is an error: sending an empty secret only yields a confusing 401 later.
pub fn read_secret_file(
    what: &'static str,
    path: &Path,
) -> Result<Redacted<String>, AzureSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| AzureSetupError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AzureSetupError::BadFile {
            what,
            path: path.to_path_buf(),
            reason: "the file is empty".to_string(),
        });
    }
    Ok(Redacted::new(trimmed.to_string()))
}

/// Replaces the values of query parameters that carry a secret (`sig`, the SAS signature, and
/// token-like parameters) with `[redacted]`. Applied to every SDK or transport error text before
/// it becomes part of a kvkeep error: reqwest quotes the full request URL — SAS included — in
/// its error messages.
pub fn scrub_secrets(text: &str) -> String {
    const SECRET_PARAMS: [&str; 4] = ["sig=", "signature=", "access_token=", "token="];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for param in SECRET_PARAMS {
            if let Some(tail) = strip_prefix_ignore_case(rest, param) {
                // Only a query parameter: the name must start the text or follow `?`, `&`, `;`
                // or whitespace, so that e.g. `designsig=` is left alone.
                let at_boundary = out.chars().last().is_none_or(|c| {
                    matches!(c, '?' | '&' | ';' | ' ' | '\t' | '\n' | '(' | '"' | '\'')
                });
                if at_boundary {
                    out.push_str(&rest[..param.len()]);
                    out.push_str("[redacted]");
                    let end = tail
                        .find(|c: char| {
                            c == '&' || c == '#' || c.is_whitespace() || "()\"'<>,".contains(c)
                        })
                        .unwrap_or(tail.len());
                    rest = &tail[end..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_formats_its_value() {
        let secret = Redacted::new("hunter2".to_string());
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn sas_signatures_are_scrubbed_from_error_text() {
        let text = "error sending request for url (https://a.blob.core.windows.net/c/x?sv=2025-11-05&sp=rw&sig=abc%2Bdef%3D&se=2026) caused by: Sig=XYZ";
        let scrubbed = scrub_secrets(text);
        assert!(!scrubbed.contains("abc%2Bdef"), "{scrubbed}");
        assert!(!scrubbed.contains("XYZ"), "{scrubbed}");
        assert!(scrubbed.contains("sig=[redacted]&se=2026"), "{scrubbed}");
        assert!(scrubbed.contains("sv=2025-11-05"), "{scrubbed}");
        // Look-alikes in ordinary words are left alone.
        assert_eq!(scrub_secrets("designsig=1 ok"), "designsig=1 ok");
    }

    #[test]
    fn secret_files_are_trimmed_and_empty_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "  s3cret\n").expect("write");
        let secret = read_secret_file("client secret file", &path).expect("read");
        assert_eq!(secret.expose(), "s3cret");

        std::fs::write(&path, "\n").expect("write");
        let err = read_secret_file("client secret file", &path).expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");

        let missing = dir.path().join("missing");
        let err = read_secret_file("client secret file", &missing).expect_err("missing");
        let text = err.to_string();
        assert!(
            text.contains("cannot read client secret file") && text.contains("missing"),
            "{text}"
        );
    }
}
