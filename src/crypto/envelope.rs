//! The envelope: the framed plaintext inside every sealed blob (magic, header length, JSON
//! header, payload), what a blob claims to hold ([`Label`]), what a reader expects
//! ([`Expected`]), and the checks between them. Pure: no I/O, no crypto beyond SHA-256.
//!
//! The byte layout is specified in the [module documentation](super).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CryptoError;
use crate::model::{ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

/// The envelope format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first 7 bytes of every envelope; the 8th byte is [`FORMAT_VERSION`].
pub const MAGIC_PREFIX: &[u8; 7] = b"KVKEEP\0";

/// Length of the fixed prefix: 8 bytes of magic and version plus the u32 header length.
pub const PREFIX_LEN: usize = 12;

/// Largest envelope header accepted (64 KiB). Generous: 500 versions of 64 characters need
/// about 35 KiB; anything larger is damage or a hostile blob and is refused before parsing.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Largest decompressed envelope (64 MiB), the decompression-bomb cap. Key Vault backup blobs
/// are far smaller (a few MiB for an object with 500 versions), and manifests of large vaults
/// stay well below it. Sealing refuses anything that would not open again under this cap.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024 * 1024;

/// What a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// One captured Key Vault object.
    Object,
    /// A run's manifest (the commit marker of a backup run).
    Manifest,
}

impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobType::Object => "object",
            BlobType::Manifest => "manifest",
        })
    }
}

/// How the payload was obtained, which decides how it can be restored (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadMode {
    /// The Key Vault backup blob (base64url-decoded): same subscription and geography only.
    Native,
    /// Values, attributes, tags and content type: restorable anywhere (secrets, certificates).
    Portable,
}

// The storage format has its own type so that a change to configuration never silently
// changes what is written into blobs.
impl From<crate::config::PayloadMode> for PayloadMode {
    fn from(mode: crate::config::PayloadMode) -> Self {
        match mode {
            crate::config::PayloadMode::Native => PayloadMode::Native,
            crate::config::PayloadMode::Portable => PayloadMode::Portable,
        }
    }
}

impl std::fmt::Display for PayloadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadMode::Native => "native",
            PayloadMode::Portable => "portable",
        })
    }
}

/// What a blob is about to hold, as given by the writer. [`super::Sealer::seal`] adds the
/// format version, payload length and hash to make the [`EnvelopeHeader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Object or manifest.
    pub blob: BlobType,
    /// The vault the content came from.
    pub vault: VaultName,
    /// The run that wrote the blob, when known.
    pub run: Option<RunId>,
    /// Object kind (objects only).
    pub kind: Option<ObjectKind>,
    /// Object name as the vault reports it (objects only).
    pub name: Option<ObjectName>,
    /// Every version the payload holds (objects only; at least one).
    pub versions: Vec<ObjectVersion>,
    /// The current version at capture time (objects only; one of `versions`).
    pub current_version: Option<ObjectVersion>,
    /// When the content was captured, Unix seconds (UTC).
    pub captured_at: i64,
    /// How the payload was obtained.
    pub mode: PayloadMode,
}

impl Label {
    /// A native capture of one object.
    pub fn object(
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
        versions: Vec<ObjectVersion>,
        current_version: ObjectVersion,
        captured_at: i64,
    ) -> Self {
        Label {
            blob: BlobType::Object,
            vault,
            run: None,
            kind: Some(kind),
            name: Some(name),
            versions,
            current_version: Some(current_version),
            captured_at,
            mode: PayloadMode::Native,
        }
    }

    /// A run's manifest.
    pub fn manifest(vault: VaultName, captured_at: i64) -> Self {
        Label {
            blob: BlobType::Manifest,
            vault,
            run: None,
            kind: None,
            name: None,
            versions: Vec::new(),
            current_version: None,
            captured_at,
            mode: PayloadMode::Native,
        }
    }

    /// Records the run that writes the blob.
    pub fn with_run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// Sets the payload mode.
    pub fn with_mode(mut self, mode: PayloadMode) -> Self {
        self.mode = mode;
        self
    }
}

/// The JSON header of an envelope: what the payload is, and how to verify it. Field names are
/// the JSON keys (see the module documentation for the format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeHeader {
    /// Envelope format version; equals the version byte of the magic.
    pub format: u32,
    /// Object or manifest.
    pub blob: BlobType,
    /// Source vault.
    pub vault: VaultName,
    /// Writing run, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// Object kind (objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ObjectKind>,
    /// Object name (objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ObjectName>,
    /// Versions held (objects only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<ObjectVersion>,
    /// Current version at capture (objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<ObjectVersion>,
    /// Capture time, Unix seconds (UTC).
    pub captured_at: i64,
    /// Payload mode.
    pub mode: PayloadMode,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// SHA-256 of the payload, 64 lowercase hex characters.
    pub payload_sha256: String,
}

impl EnvelopeHeader {
    /// Builds the header for `payload`, checking the label's consistency.
    pub(crate) fn new(label: &Label, payload: &[u8]) -> Result<Self, CryptoError> {
        let header = EnvelopeHeader {
            format: FORMAT_VERSION,
            blob: label.blob,
            vault: label.vault.clone(),
            run: label.run.clone(),
            kind: label.kind,
            name: label.name.clone(),
            versions: label.versions.clone(),
            current_version: label.current_version.clone(),
            captured_at: label.captured_at,
            mode: label.mode,
            payload_len: payload.len() as u64,
            payload_sha256: sha256_hex(payload),
        };
        header.check_shape().map_err(CryptoError::InvalidLabel)?;
        Ok(header)
    }

    /// Checks that the fields fit the blob type, so a reader can rely on `kind`/`name` being
    /// present for objects. Used on both sides: a writer cannot produce a header a reader
    /// would refuse.
    fn check_shape(&self) -> Result<(), String> {
        match self.blob {
            BlobType::Object => {
                if self.kind.is_none() || self.name.is_none() {
                    return Err("an object blob needs a kind and a name".into());
                }
                if self.versions.is_empty() {
                    return Err("an object blob needs at least one version".into());
                }
                match &self.current_version {
                    Some(v) if self.versions.contains(v) => {}
                    Some(v) => {
                        return Err(format!(
                            "current version {v} is not among the versions held"
                        ))
                    }
                    None => return Err("an object blob needs a current version".into()),
                }
            }
            BlobType::Manifest => {
                if self.kind.is_some()
                    || self.name.is_some()
                    || !self.versions.is_empty()
                    || self.current_version.is_some()
                {
                    return Err("a manifest blob has no kind, name or versions".into());
                }
            }
        }
        if !is_sha256_hex(&self.payload_sha256) {
            return Err("payload_sha256 is not 64 lowercase hex characters".into());
        }
        Ok(())
    }
}

/// Lays out `magic | version | u32 BE header length | header JSON | payload`.
pub(crate) fn encode(header: &EnvelopeHeader, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let json = serde_json::to_vec(header)
        .map_err(|e| CryptoError::Seal(format!("cannot encode the envelope header: {e}")))?;
    if json.len() > MAX_HEADER_BYTES {
        return Err(CryptoError::InvalidLabel(format!(
            "the envelope header would be {} bytes, above the {MAX_HEADER_BYTES}-byte limit (too many versions?)",
            json.len()
        )));
    }
    let total = PREFIX_LEN + json.len() + payload.len();
    if total > MAX_ENVELOPE_BYTES {
        return Err(CryptoError::PayloadTooLarge {
            len: payload.len() as u64,
            limit: MAX_ENVELOPE_BYTES as u64,
        });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC_PREFIX);
    out.push(FORMAT_VERSION as u8);
    // The length is bounded by MAX_HEADER_BYTES above, so it fits in a u32.
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits and verifies an envelope; returns the header and the payload.
pub(crate) fn decode(mut plain: Vec<u8>) -> Result<(EnvelopeHeader, Vec<u8>), CryptoError> {
    if plain.len() < MAGIC_PREFIX.len() + 1 {
        return if MAGIC_PREFIX.starts_with(&plain) {
            Err(CryptoError::EnvelopeTruncated("it ends inside the magic"))
        } else {
            Err(CryptoError::BadMagic)
        };
    }
    if &plain[..MAGIC_PREFIX.len()] != MAGIC_PREFIX {
        return Err(CryptoError::BadMagic);
    }
    let version = u32::from(plain[MAGIC_PREFIX.len()]);
    if version != FORMAT_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if plain.len() < PREFIX_LEN {
        return Err(CryptoError::EnvelopeTruncated(
            "it ends inside the header length",
        ));
    }
    let declared = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]) as usize;
    if declared == 0 || declared > MAX_HEADER_BYTES {
        return Err(CryptoError::HeaderTooLarge {
            len: declared as u64,
            limit: MAX_HEADER_BYTES as u64,
        });
    }
    let body_start = PREFIX_LEN + declared;
    if plain.len() < body_start {
        return Err(CryptoError::EnvelopeTruncated("it ends inside the header"));
    }
    let header: EnvelopeHeader = serde_json::from_slice(&plain[PREFIX_LEN..body_start])
        .map_err(|e| CryptoError::InvalidHeader(e.to_string()))?;
    if header.format != version {
        return Err(CryptoError::InvalidHeader(format!(
            "format {} in the header differs from version {version} in the magic",
            header.format
        )));
    }
    header.check_shape().map_err(CryptoError::InvalidHeader)?;
    // Reuse the buffer for the payload instead of copying up to 64 MiB.
    let payload = plain.split_off(body_start);
    if payload.len() as u64 != header.payload_len {
        return Err(CryptoError::PayloadLengthMismatch {
            expected: header.payload_len,
            actual: payload.len() as u64,
        });
    }
    if sha256_hex(&payload) != header.payload_sha256 {
        return Err(CryptoError::PayloadHashMismatch);
    }
    Ok((header, payload))
}

/// What a reader expects a blob to hold. `None` fields are not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Object or manifest.
    pub blob: BlobType,
    /// The vault the blob must come from.
    pub vault: VaultName,
    /// The object kind (objects).
    pub kind: Option<ObjectKind>,
    /// The object name (objects); compared case-insensitively, as Key Vault does.
    pub name: Option<ObjectName>,
    /// The writing run.
    pub run: Option<RunId>,
    /// The current version at capture.
    pub current_version: Option<ObjectVersion>,
    /// The capture time, Unix seconds.
    pub captured_at: Option<i64>,
}

impl Expected {
    /// Expect a capture of `kind/name` from `vault`.
    pub fn object(vault: VaultName, kind: ObjectKind, name: ObjectName) -> Self {
        Expected {
            blob: BlobType::Object,
            vault,
            kind: Some(kind),
            name: Some(name),
            run: None,
            current_version: None,
            captured_at: None,
        }
    }

    /// Expect a manifest of `vault`.
    pub fn manifest(vault: VaultName) -> Self {
        Expected {
            blob: BlobType::Manifest,
            vault,
            kind: None,
            name: None,
            run: None,
            current_version: None,
            captured_at: None,
        }
    }

    /// Also expect the writing run.
    pub fn with_run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// Also expect the current version (as recorded in the manifest or index).
    pub fn with_current_version(mut self, version: ObjectVersion) -> Self {
        self.current_version = Some(version);
        self
    }

    /// Also expect the capture time.
    pub fn with_captured_at(mut self, captured_at: i64) -> Self {
        self.captured_at = Some(captured_at);
        self
    }

    /// Every field of `header` that differs from the expectation, as `field is X, expected Y`.
    pub fn differences(&self, header: &EnvelopeHeader) -> Vec<String> {
        fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref()
                .map_or_else(|| "absent".to_string(), |v| v.to_string())
        }
        let mut out = Vec::new();
        if header.blob != self.blob {
            out.push(format!(
                "blob type is {}, expected {}",
                header.blob, self.blob
            ));
        }
        if header.vault != self.vault {
            out.push(format!(
                "vault is {}, expected {}",
                header.vault, self.vault
            ));
        }
        if self.kind.is_some() && header.kind != self.kind {
            out.push(format!(
                "kind is {}, expected {}",
                show(&header.kind),
                show(&self.kind)
            ));
        }
        if let Some(want) = &self.name {
            let same = header
                .name
                .as_ref()
                .is_some_and(|n| n.canonical() == want.canonical());
            if !same {
                out.push(format!("name is {}, expected {want}", show(&header.name)));
            }
        }
        if self.run.is_some() && header.run != self.run {
            out.push(format!(
                "run is {}, expected {}",
                show(&header.run),
                show(&self.run)
            ));
        }
        if self.current_version.is_some() && header.current_version != self.current_version {
            out.push(format!(
                "current version is {}, expected {}",
                show(&header.current_version),
                show(&self.current_version)
            ));
        }
        if let Some(want) = self.captured_at {
            if header.captured_at != want {
                out.push(format!(
                    "capture time is {}, expected {want}",
                    header.captured_at
                ));
            }
        }
        out
    }
}

/// Whether `s` has the form [`sha256_hex`] produces: 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex SHA-256: payload hashes in envelopes, and the ciphertext hashes that
/// manifests and the index record for every blob.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}
