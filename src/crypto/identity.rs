//! Identities (age X25519 private keys): loading identity files for restore, verification and
//! index rebuild, and generating new ones for `kvkeep keys generate`.
//!
//! Each identity has a [`KeyRole`]. A *recovery* identity (its recipient is in `[encryption]
//! recipients`) opens every blob and stays offline. A *catalog* identity (its recipient is
//! `[encryption] catalog_recipient`) lives on daemon hosts and opens manifests only: object blobs
//! are never sealed to it (see [`super::Sealer`]). The role is known from a comment line that
//! `kvkeep keys generate` writes above the key ([`ROLE_COMMENT`]), or from the configuration
//! (an identity whose recipient is the configured catalog recipient), so a command that needs
//! object blobs can refuse a catalog identity up front with a message saying so, rather than
//! failing later on the first blob with "sealed to other recipients".
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

/// The comment line, above an identity in its file, that names the identity's role:
/// `# kvkeep key role: catalog` or `# kvkeep key role: recovery`. A comment keeps the file
/// usable by the stock `age` tool.
pub const ROLE_COMMENT: &str = "# kvkeep key role:";

/// What an identity is for (README "Key roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Its recipient is in `[encryption] recipients`: every blob is sealed to it, so it opens
    /// everything. Kept offline; only restore, deep verify, drills and rebuild need it. An
    /// identity whose file names no role is taken to be one (identity files made before the
    /// catalog key existed are all recovery identities).
    Recovery,
    /// Its recipient is `[encryption] catalog_recipient`: manifests are sealed to it, object
    /// blobs never. Lives on daemon hosts; opens the metadata of backups, never a backup.
    Catalog,
}

impl KeyRole {
    /// The word written after [`ROLE_COMMENT`] and shown by `kvkeep doctor`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Recovery => "recovery",
            KeyRole::Catalog => "catalog",
        }
    }
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One age X25519 identity (private key) and its role. `Debug` and `Display` print
/// `[redacted]`.
#[derive(Clone)]
pub struct Identity {
    pub(super) key: age::x25519::Identity,
    role: KeyRole,
}

impl Identity {
    /// A new random recovery identity.
    pub fn generate() -> Self {
        Identity::generate_with_role(KeyRole::Recovery)
    }

    /// A new random identity for `role`.
    pub fn generate_with_role(role: KeyRole) -> Self {
        Identity {
            key: age::x25519::Identity::generate(),
            role,
        }
    }

    /// Its recipient (public key), `age1…`: safe to print and to put in the configuration.
    pub fn recipient(&self) -> String {
        self.key.to_public().to_string()
    }

    /// What it is for.
    pub fn role(&self) -> KeyRole {
        self.role
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity([redacted], {})", self.role)
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

    /// Parses identity-file text; `source` names it in errors. A [`ROLE_COMMENT`] line gives
    /// the role of the identity that follows it; identities without one are recovery
    /// identities.
    pub fn parse(text: &str, source: &Path) -> Result<Self, CryptoError> {
        let mut identities = Vec::new();
        let mut next_role = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(word) = line.strip_prefix(ROLE_COMMENT) {
                next_role = match word.trim() {
                    "catalog" => Some(KeyRole::Catalog),
                    "recovery" => Some(KeyRole::Recovery),
                    // A role this build does not know must not be guessed: an identity taken
                    // for a recovery key when it is not would only fail later, less clearly.
                    _ => {
                        return Err(CryptoError::IdentityParse {
                            path: source.to_path_buf(),
                            line: n + 1,
                            reason: "unknown key role: expected `# kvkeep key role: catalog` or `# kvkeep key role: recovery`",
                        })
                    }
                };
                continue;
            }
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
            identities.push(Identity {
                key: identity,
                role: next_role.take().unwrap_or(KeyRole::Recovery),
            });
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

    /// The role of each identity, in file order.
    pub fn roles(&self) -> Vec<KeyRole> {
        self.0.iter().map(Identity::role).collect()
    }

    /// Marks the identity whose recipient is `catalog_recipient` (the configured one) as a
    /// catalog identity, whatever its file says: an identity made with `age-keygen` and
    /// configured as the catalog key opens no object blob either.
    pub fn with_catalog_recipient(mut self, catalog_recipient: Option<&str>) -> Self {
        if let Some(catalog) = catalog_recipient {
            for identity in &mut self.0 {
                if identity.recipient() == catalog {
                    identity.role = KeyRole::Catalog;
                }
            }
        }
        self
    }

    /// Whether any identity may open object blobs (is a recovery identity).
    pub fn opens_objects(&self) -> bool {
        self.0.iter().any(|i| i.role == KeyRole::Recovery)
    }

    /// Refuses identities that can only open manifests, before `what` (restore, deep verify)
    /// starts and fails on its first object blob.
    pub fn require_recovery(&self, what: &'static str) -> Result<(), CryptoError> {
        if self.opens_objects() {
            Ok(())
        } else {
            Err(CryptoError::CatalogIdentityOnly { what })
        }
    }

    pub(crate) fn iter_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| &i.key as &dyn age::Identity)
    }
}

/// Loads the catalog identity file named by `[encryption] catalog_identity_file`, if any: the
/// key a daemon opens other instances' manifests with. Read with the private-file checks of
/// [`Identities::from_file`]; every identity in it is a catalog identity.
///
/// Refused when no identity in the file has the configured `catalog_recipient` (the manifests
/// this daemon writes would not open with it), and when one has a recovery recipient: a
/// recovery key on a daemon host would open every backup. Several catalog identities in one
/// file are fine: after a rotation the old one keeps the older manifests readable.
pub fn load_catalog_identity(
    config: &crate::config::EncryptionConfig,
) -> Result<Option<Identities>, CryptoError> {
    let Some(path) = &config.catalog_identity_file else {
        return Ok(None);
    };
    let loaded = Identities::from_file(path)?;
    let found = loaded.recipients();
    if found.iter().any(|r| config.recipients.contains(r)) {
        return Err(CryptoError::CatalogFileHoldsRecovery { path: path.clone() });
    }
    if let Some(expected) = &config.catalog_recipient {
        if !found.contains(expected) {
            return Err(CryptoError::CatalogIdentityMismatch {
                path: path.clone(),
                found,
                expected: expected.clone(),
            });
        }
    }
    Ok(Some(Identities(
        loaded
            .0
            .into_iter()
            .map(|i| Identity {
                role: KeyRole::Catalog,
                ..i
            })
            .collect(),
    )))
}

/// Writes `identity` to a new identity file at `path` with mode 0600 (whatever the umask),
/// headed by comments with the creation time (`created`, RFC 3339, passed in by the caller),
/// the public key and the key's role ([`ROLE_COMMENT`]) — the layout of `age-keygen` plus one
/// comment, so the file also works with the `age` tool — then fsyncs the file and its
/// directory. Returns the recipient.
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
    let secret = identity.key.to_string();
    let contents = Zeroizing::new(format!(
        "# created: {created}\n# public key: {recipient}\n{ROLE_COMMENT} {}\n{}\n",
        identity.role,
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
