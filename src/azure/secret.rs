//! Secrets that must never reach a log: a wrapper whose `Debug` and `Display` print
//! `[redacted]` and that zeroes its value when dropped, the one way kvkeep reads a secret from a
//! file, and a scrubber for SDK error text that may quote a SAS URL.

use std::fmt;
use std::path::Path;

use zeroize::Zeroize;

use super::AzureSetupError;
use crate::fsutil::{self, SecretFileError};

/// A secret value (client secret, bearer token, SAS URL). Formatting it prints `[redacted]`;
/// the value is only reachable through [`Redacted::expose`], which makes every use greppable.
/// The value is zeroed in memory when the wrapper is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T: Zeroize>(T);

impl<T: Zeroize> Redacted<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// The secret itself, for the one place that must send it somewhere.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret, handing the duty to erase it to the caller (typically a type of the
    /// Azure SDK that keeps it for the process's lifetime).
    pub fn into_inner(mut self) -> T
    where
        T: Default,
    {
        std::mem::take(&mut self.0)
    }
}

impl<T: Zeroize> Drop for Redacted<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret from a file (systemd's `LoadCredential=` puts them in
/// `$CREDENTIALS_DIRECTORY`), trimming surrounding whitespace and the trailing newline editors
/// add. An empty file is an error: sending an empty secret only yields a confusing 401 later.
/// A file group or others can access is refused unread, with the `chmod 600` that fixes it.
pub fn read_secret_file(
    what: &'static str,
    path: &Path,
) -> Result<Redacted<String>, AzureSetupError> {
    let text = fsutil::read_secret_file(path).map_err(|e| match e {
        SecretFileError::Loose { mode } => AzureSetupError::LooseFile {
            what,
            path: path.to_path_buf(),
            mode,
        },
        SecretFileError::Io(source) => AzureSetupError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        },
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

    /// Writes `text` to `path` with mode 0600, as an operator following the runbook would.
    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_others_may_read_are_refused_with_the_fix_and_never_their_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client-secret");
        let canary = "canary-Zq8xW2-client-secret";
        write_private(&path, canary);
        for loose in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = read_secret_file("client secret file", &path).expect_err("loose");
            let text = format!("{err} {err:?}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "mode {loose:04o}: {text}"
            );
            assert!(text.contains("client secret file"), "{text}");
            assert!(!text.contains(canary), "{text}");
        }
    }

    #[test]
    fn secret_files_are_trimmed_and_empty_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private(&path, "  s3cret\n");
        let secret = read_secret_file("client secret file", &path).expect("read");
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "[redacted]");

        write_private(&path, "\n");
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
