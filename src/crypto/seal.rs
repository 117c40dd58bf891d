//! Sealing (envelope → zstd → age to every recipient) and opening (the reverse, with every
//! check). Both are synchronous CPU work: async callers run them in
//! `tokio::task::spawn_blocking`, never directly on the runtime.

use std::io::{Read, Write};
use std::str::FromStr;

use super::envelope::{self, BlobType, EnvelopeHeader, Expected, Label, MAX_ENVELOPE_BYTES};
use super::{CryptoError, Identities};
use crate::config::EncryptionConfig;

/// Every age file (binary, not armored) starts with this line.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Seals blobs to the configured recipients. Built once from the configuration and shared (it
/// is `Send + Sync`; wrap it in an `Arc`). It holds public keys only, which is all the backup
/// daemon ever needs (DESIGN §4).
///
/// Which recipients a blob is sealed to follows from what the blob *is*, the [`BlobType`] of
/// its [`Label`], which is also written into the sealed envelope: object blobs go to the
/// recovery recipients only, manifests to the recovery recipients and the catalog recipient.
/// No caller chooses a recipient set, so no caller can seal a backup to the catalog key, and a
/// reader checks the envelope's blob type against what it asked for.
#[derive(Clone)]
pub struct Sealer {
    recovery: Vec<age::x25519::Recipient>,
    catalog: Option<age::x25519::Recipient>,
    zstd_level: i32,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("recipients", &self.recipients())
            .field("catalog_recipient", &self.catalog_recipient())
            .field("zstd_level", &self.zstd_level)
            .finish()
    }
}

impl Sealer {
    /// Parses the recovery `recipients` (`age1…`) and checks the zstd level (1–22). No
    /// catalog recipient: add one with [`Sealer::with_catalog`].
    pub fn new<S: AsRef<str>>(recipients: &[S], zstd_level: i32) -> Result<Self, CryptoError> {
        if !(1..=22).contains(&zstd_level) {
            return Err(CryptoError::InvalidZstdLevel(zstd_level));
        }
        let recipients = recipients
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let r = r.as_ref().trim();
                age::x25519::Recipient::from_str(r).map_err(|_| CryptoError::InvalidRecipient {
                    index,
                    // A private key pasted by mistake must not be echoed in full.
                    shown: r.chars().take(12).collect(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if recipients.is_empty() {
            return Err(CryptoError::NoRecipients);
        }
        Ok(Sealer {
            recovery: recipients,
            catalog: None,
            zstd_level,
        })
    }

    /// Also seals manifests to `catalog` (`age1…`). Refused when it is one of the recovery
    /// recipients: object blobs are sealed to those, so the catalog identity would open every
    /// backup.
    pub fn with_catalog(mut self, catalog: &str) -> Result<Self, CryptoError> {
        let catalog = catalog.trim();
        let recipient = age::x25519::Recipient::from_str(catalog).map_err(|_| {
            CryptoError::InvalidCatalogRecipient {
                shown: catalog.chars().take(12).collect(),
            }
        })?;
        let text = recipient.to_string();
        if self.recovery.iter().any(|r| r.to_string() == text) {
            return Err(CryptoError::CatalogIsRecovery);
        }
        self.catalog = Some(recipient);
        Ok(self)
    }

    /// The sealer for a validated `[encryption]` section.
    pub fn from_config(config: &EncryptionConfig) -> Result<Self, CryptoError> {
        let sealer = Sealer::new(&config.recipients, config.zstd_level)?;
        match &config.catalog_recipient {
            Some(catalog) => sealer.with_catalog(catalog),
            None => Ok(sealer),
        }
    }

    /// The recovery recipients, as `age1…` strings.
    pub fn recipients(&self) -> Vec<String> {
        self.recovery.iter().map(|r| r.to_string()).collect()
    }

    /// The catalog recipient, if one is configured.
    pub fn catalog_recipient(&self) -> Option<String> {
        self.catalog.as_ref().map(|r| r.to_string())
    }

    /// The recipients a blob of type `blob` is sealed to: the recovery recipients, and for
    /// manifests the catalog recipient too. The one place that decides it.
    pub(crate) fn recipients_for(&self, blob: BlobType) -> Vec<&age::x25519::Recipient> {
        let catalog = match blob {
            BlobType::Manifest => self.catalog.as_ref(),
            // A backup is never readable with the catalog identity.
            BlobType::Object => None,
        };
        self.recovery.iter().chain(catalog).collect()
    }

    /// Seals `payload` (raw bytes: a native Key Vault backup blob is base64url-decoded first)
    /// under `label`: returns the age ciphertext to store. CPU-bound; see the module docs.
    pub fn seal(&self, label: &Label, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // Refuse an oversized payload before hashing it; encode() applies the exact limit.
        let most = MAX_ENVELOPE_BYTES - envelope::PREFIX_LEN;
        if payload.len() > most {
            return Err(CryptoError::PayloadTooLarge {
                len: payload.len() as u64,
                limit: MAX_ENVELOPE_BYTES as u64,
            });
        }
        let header = EnvelopeHeader::new(label, payload)?;
        let plain = envelope::encode(&header, payload)?;
        let compressed = zstd::bulk::compress(&plain, self.zstd_level)
            .map_err(|e| CryptoError::Seal(format!("zstd compression: {e}")))?;
        drop(plain);

        let recipients = self.recipients_for(header.blob);
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| *r as &dyn age::Recipient))
                .map_err(|e| CryptoError::Seal(format!("age: {e}")))?;
        // age adds ~200 bytes per recipient plus 16 bytes per 64 KiB chunk.
        let mut out = Vec::with_capacity(compressed.len() + 256 * recipients.len() + 1024);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|e| CryptoError::Seal(format!("age: {e}")))?;
        writer
            .write_all(&compressed)
            .map_err(|e| CryptoError::Seal(format!("age: {e}")))?;
        // Without finish() the last chunk is never written and the blob cannot be opened.
        writer
            .finish()
            .map_err(|e| CryptoError::Seal(format!("age: {e}")))?;
        Ok(out)
    }
}

/// An opened, verified blob.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The verified envelope header.
    pub header: EnvelopeHeader,
    /// The payload, whose length and SHA-256 match the header.
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Opened {
    // A portable payload holds secret values: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("payload", &format_args!("[{} bytes]", self.payload.len()))
            .finish()
    }
}

/// Decrypts, decompresses and verifies a blob: age authentication, the size cap, the envelope
/// framing, and the payload's length and SHA-256. CPU-bound; see the module docs.
///
/// This proves the blob is intact and was sealed to one of `identities`' public keys. It does
/// not check what the blob *claims* to be against what the caller asked for: restore uses
/// [`open_expecting`].
pub fn open(ciphertext: &[u8], identities: &Identities) -> Result<Opened, CryptoError> {
    let compressed = decrypt(ciphertext, identities)?;
    let plain = decompress_capped(&compressed)?;
    drop(compressed);
    let (header, payload) = envelope::decode(plain)?;
    Ok(Opened { header, payload })
}

/// Like [`open`], then refuses a blob whose header does not match `expected` (a blob stored
/// under another object's name, vault or run), naming every field that differs.
///
/// An object blob that none of `identities` opens, when they are all catalog identities, is
/// reported as [`CryptoError::CatalogIdentityOnly`]: the wrong kind of key, not a wrong key.
pub fn open_expecting(
    ciphertext: &[u8],
    identities: &Identities,
    expected: &Expected,
) -> Result<Opened, CryptoError> {
    let opened = open(ciphertext, identities).map_err(|e| match e {
        CryptoError::NoMatchingIdentity { .. }
            if expected.blob == BlobType::Object && !identities.opens_objects() =>
        {
            CryptoError::CatalogIdentityOnly {
                what: "opening a backup",
            }
        }
        other => other,
    })?;
    let differences = expected.differences(&opened.header);
    if differences.is_empty() {
        Ok(opened)
    } else {
        Err(CryptoError::Mismatch { differences })
    }
}

/// age layer: ciphertext → zstd bytes. The plaintext is never longer than the ciphertext, so
/// reading it all is bounded by the input already in memory.
fn decrypt(ciphertext: &[u8], identities: &Identities) -> Result<Vec<u8>, CryptoError> {
    if !ciphertext.starts_with(AGE_MAGIC) {
        // A prefix of the magic is a blob cut off in its first bytes, not a foreign file.
        return Err(if AGE_MAGIC.starts_with(ciphertext) {
            CryptoError::Truncated
        } else {
            CryptoError::NotAgeFile
        });
    }
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(map_decrypt_error)?;
    let mut reader = decryptor
        .decrypt(identities.iter_age())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => CryptoError::NoMatchingIdentity {
                identities: identities.len(),
            },
            other => map_decrypt_error(other),
        })?;
    let mut out = Vec::with_capacity(ciphertext.len());
    reader.read_to_end(&mut out).map_err(map_stream_error)?;
    Ok(out)
}

fn map_decrypt_error(e: age::DecryptError) -> CryptoError {
    match e {
        age::DecryptError::InvalidHeader => {
            CryptoError::AgeHeaderDamaged("its recipient stanzas cannot be parsed")
        }
        age::DecryptError::InvalidMac => {
            CryptoError::AgeHeaderDamaged("its authentication code does not verify")
        }
        age::DecryptError::UnknownFormat => {
            CryptoError::AgeHeaderDamaged("it names an unknown age format version")
        }
        age::DecryptError::Io(io) => map_stream_error(io),
        age::DecryptError::NoMatchingKeys => CryptoError::NoMatchingIdentity { identities: 0 },
        // DecryptionFailed, KeyDecryptionFailed, ExcessiveWork (scrypt) and future variants:
        // the file key could not be recovered from an otherwise parseable header.
        _ => CryptoError::AgeHeaderDamaged("its file key cannot be unwrapped"),
    }
}

fn map_stream_error(e: std::io::Error) -> CryptoError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CryptoError::Truncated,
        _ => CryptoError::Corrupted,
    }
}

/// The largest zstd window a reader accepts: 2^27 bytes (128 MiB). zstd's level 22 uses this
/// window when it compresses a stream, so blobs written at any level open; a frame that asks
/// for more is refused before the decoder allocates the window. Together with the output cap
/// this bounds what opening any blob can cost in memory.
pub const MAX_WINDOW_LOG: u32 = 27;

/// zstd layer with the decompression-bomb caps: a window of at most 2^[`MAX_WINDOW_LOG`] bytes,
/// and at most one byte read past [`MAX_ENVELOPE_BYTES`] of output, so a hostile blob costs at
/// most those two amounts of memory.
fn decompress_capped(compressed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|e| CryptoError::Decompress(e.to_string()))?;
    // Set explicitly rather than trusting the library default, which may change.
    decoder
        .window_log_max(MAX_WINDOW_LOG)
        .map_err(|e| CryptoError::Decompress(e.to_string()))?;
    let mut out = Vec::new();
    decoder
        .take(MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            if is_window_too_large(&e) {
                CryptoError::WindowTooLarge {
                    limit: 1 << MAX_WINDOW_LOG,
                }
            } else {
                CryptoError::Decompress(e.to_string())
            }
        })?;
    if out.len() > MAX_ENVELOPE_BYTES {
        return Err(CryptoError::DecompressedTooLarge {
            limit: MAX_ENVELOPE_BYTES as u64,
        });
    }
    Ok(out)
}

/// Whether zstd refused a frame because its window exceeds `window_log_max`
/// (`ZSTD_error_frameParameter_windowTooLarge`). The zstd crate reports decoder errors as
/// `io::Error`s carrying zstd's own error name, so that name is compared.
fn is_window_too_large(e: &std::io::Error) -> bool {
    let code = zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge;
    e.to_string() == zstd::zstd_safe::get_error_name((code as usize).wrapping_neg())
}
