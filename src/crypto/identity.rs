//! Identities (age X25519 private keys): loading identity files for restore, verification and
//! index rebuild, and generating new ones for `kvkeep keys generate`.
//!
//! Identities are the keys to every backup. They never reach a log or an error message: the
//! wrappers here print `[redacted]`, parse errors name a line number and never its content,
//! and only [`write_identity_file`] ever turns a secret back into text.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::CryptoError;
use crate::fsutil::{self, SecretFileError};

/// One age X25519 identity (private key). `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct Identity(pub(super) age::x25519::Identity);

impl Identity {
    /// A new random identity.
    pub fn generate() -> Self {
        Identity(age::x25519::Identity::generate())
    }

    /// Its recipient (public key), `age1…`: safe to print and to put in the configuration.
    pub fn recipient(&self) -> String {
        self.0.to_public().to_string()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity([redacted])")
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The identities a blob may be opened with (one file can hold several, e.g. an old and a new
/// key during rotation). `Debug` and `Display` print `[redacted]` and the count.
#[derive(Clone)]
pub struct Identities(Vec<Identity>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities([redacted; {}])", self.0.len())
    }
}

impl std::fmt::Display for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted] ({} identities)", self.0.len())
    }
}

impl From<Identity> for Identities {
    fn from(identity: Identity) -> Self {
        Identities(vec![identity])
    }
}

impl FromIterator<Identity> for Identities {
    fn from_iter<I: IntoIterator<Item = Identity>>(iter: I) -> Self {
        Identities(iter.into_iter().collect())
    }
}

impl Identities {
    /// Reads an age identity file: one `AGE-SECRET-KEY-1…` per line; blank lines and lines
    /// starting with `#` are ignored (the format `age-keygen` and `kvkeep keys generate`
    /// write).
    ///
    /// A file that group or others can access is refused, unread, with the `chmod 600` that
    /// fixes it: a key others could read must be treated as exposed, and fixing the mode takes
    /// seconds even in an emergency. The text is held in a buffer zeroed when dropped.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let text = fsutil::read_secret_file(path).map_err(|e| match e {
            SecretFileError::Loose { mode } => CryptoError::IdentityFileLoose {
                path: path.to_path_buf(),
                mode,
            },
            SecretFileError::Io(source) => CryptoError::IdentityFileRead {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Identities::parse(&text, path)
    }

    /// Parses identity-file text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Self, CryptoError> {
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parse_error = |reason| CryptoError::IdentityParse {
                path: source.to_path_buf(),
                line: n + 1,
                reason,
            };
            if line.starts_with("AGE-PLUGIN-") {
                return Err(parse_error(
                    "age plugin identities are not supported: use an X25519 identity (AGE-SECRET-KEY-1...)",
                ));
            }
            if line.starts_with("age1") {
                return Err(parse_error(
                    "this is a recipient (public key), not an identity: supply the private key file",
                ));
            }
            // The age error strings are safe, but the line is not: never include it.
            let identity = age::x25519::Identity::from_str(line).map_err(|_| {
                parse_error("not an age X25519 identity (expected AGE-SECRET-KEY-1 followed by 58 characters)")
            })?;
            identities.push(Identity(identity));
        }
        if identities.is_empty() {
            return Err(CryptoError::NoIdentities {
                path: source.to_path_buf(),
            });
        }
        Ok(Identities(identities))
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never true for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recipients (public keys) of these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.0.iter().map(Identity::recipient).collect()
    }

    pub(crate) fn iter_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| &i.0 as &dyn age::Identity)
    }
}

/// Writes `identity` to a new identity file at `path` with mode 0600 (whatever the umask),
/// headed by comments with the creation time (`created`, RFC 3339, passed in by the caller) and
/// the public key — the same layout as `age-keygen`, so the file also works with the `age`
/// tool — then fsyncs the file and its directory. Returns the recipient.
///
/// Refuses an existing file unless `force`: an identity file may be the only key to years of
/// backups. With `force` the new file is written beside it and renamed over it, so a crash
/// leaves either the old or the new file, never a half-written one.
pub fn write_identity_file(
    path: &Path,
    identity: &Identity,
    created: &str,
    force: bool,
) -> Result<String, CryptoError> {
    let recipient = identity.recipient();
    let secret = identity.0.to_string();
    let contents = Zeroizing::new(format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        secret.expose_secret()
    ));
    let write_err = |source| CryptoError::IdentityFileWrite {
        path: path.to_path_buf(),
        source,
    };
    if !force {
        // create_new makes the existence check and the creation one atomic step.
        let file = fsutil::create_private_file(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CryptoError::IdentityFileExists {
                    path: path.to_path_buf(),
                }
            } else {
                write_err(source)
            }
        })?;
        return write_and_sync(file, contents.as_bytes())
            .and_then(|()| fsutil::sync_dir(fsutil::parent_or_dot(path)))
            .map(|()| recipient)
            .map_err(|e| {
                // Do not leave an empty or partial identity file behind.
                let _ = fs::remove_file(path);
                write_err(e)
            });
    }
    let tmp = temp_path_beside(path);
    let result = fsutil::create_private_file(&tmp)
        .and_then(|file| write_and_sync(file, contents.as_bytes()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    // The new directory entry (or the rename over the old one) must reach the disk too: an
    // operator who sees "wrote identity" and fetches the recipient must not lose the key to a
    // power cut.
    fsutil::sync_dir(fsutil::parent_or_dot(path)).map_err(write_err)?;
    Ok(recipient)
}

fn write_and_sync(mut file: fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

fn temp_path_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "identity".into());
    let suffix: u64 = rand::random();
    path.with_file_name(format!(".{name}.{suffix:016x}.tmp"))
}
