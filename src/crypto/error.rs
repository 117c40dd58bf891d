//! The one error type of the crypto layer.
//!
//! Rules for every variant, so that callers and operators can rely on them:
//! - the message is lowercase, without a trailing period, and says what to do next;
//! - no variant ever carries secret material: identities are referred to by file and line
//!   number, never by content, and payload bytes never appear (a canary test checks this);
//! - each way a blob can be unreadable has its own variant, so restore and verification can
//!   report *why* (wrong key vs. damaged blob vs. mislabelled blob) without parsing strings.

use std::path::PathBuf;

/// Everything that can go wrong while sealing, opening or handling keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Sealing needs at least one recipient.
    #[error("no age recipients configured: add at least one age1... public key to [encryption] recipients (`kvkeep keys generate` makes one)")]
    NoRecipients,

    /// A configured recipient is not an X25519 age recipient.
    #[error("encryption recipient #{index} ({shown}...) is not an age X25519 recipient: expected age1 followed by 58 characters")]
    InvalidRecipient {
        /// Position in the configured list (0-based).
        index: usize,
        /// The first characters of the value, enough to find it in the configuration.
        shown: String,
    },

    /// The configured catalog recipient is not an X25519 age recipient.
    #[error("the catalog recipient ({shown}...) is not an age X25519 recipient: expected age1 followed by 58 characters (`kvkeep keys generate --catalog` prints one)")]
    InvalidCatalogRecipient {
        /// The first characters of the value, enough to find it in the configuration.
        shown: String,
    },

    /// The catalog recipient is also a recovery recipient: its identity, which sits on daemon
    /// hosts, would open every backup.
    #[error("the catalog recipient is also one of the recovery recipients: object blobs are sealed to every recovery recipient, so the catalog identity (kept on daemon hosts) would open every backup; make a separate key with `kvkeep keys generate --catalog`")]
    CatalogIsRecovery,

    /// Only catalog identities were supplied where object blobs must be opened.
    #[error("this is the catalog identity: it opens manifests only; {what} needs a recovery identity (the offline key whose recipient is in [encryption] recipients)")]
    CatalogIdentityOnly {
        /// What needed a recovery identity (`restore`, `verify --deep`, ...).
        what: &'static str,
    },

    /// The catalog identity file holds no identity for the configured catalog recipient.
    #[error("the catalog identity file {} holds the key of {}, not of the configured catalog_recipient {expected}: the manifests this daemon writes would not open with it; put the file `kvkeep keys generate --catalog` wrote for that recipient there, or set catalog_recipient to the public key it printed", .path.display(), .found.join(", "))]
    CatalogIdentityMismatch {
        /// The file.
        path: PathBuf,
        /// The recipients of the identities in it (public keys, safe to show).
        found: Vec<String>,
        /// The configured catalog recipient.
        expected: String,
    },

    /// The catalog identity file holds a recovery identity.
    #[error("the catalog identity file {} holds a recovery identity (its public key is in [encryption] recipients): a daemon host must never hold a key that opens backups; take that key offline and give daemon hosts a catalog key from `kvkeep keys generate --catalog`", .path.display())]
    CatalogFileHoldsRecovery {
        /// The file.
        path: PathBuf,
    },

    /// The zstd level is outside 1..=22.
    #[error("zstd level {0} is out of range: use 1 to 22")]
    InvalidZstdLevel(i32),

    /// The payload is too large to be sealed into a blob that can be opened again.
    #[error("payload of {len} bytes is too large to seal: a blob's envelope (header and payload) is limited to {limit} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: u64,
        /// The envelope limit, [`super::MAX_ENVELOPE_BYTES`].
        limit: u64,
    },

    /// The label to seal is inconsistent (for example an object label without versions).
    #[error("invalid blob label: {0}")]
    InvalidLabel(String),

    /// zstd or age failed while sealing (an internal fault, not a property of the input).
    #[error("sealing failed: {0}")]
    Seal(String),

    /// The blob does not start like an age file at all.
    #[error("not an age-encrypted blob: the data does not start with the age header; was a file other than a kvkeep blob put in the store?")]
    NotAgeFile,

    /// The age header is malformed or its MAC does not verify.
    #[error("the blob's age header is damaged: {0}; restore this object from another capture")]
    AgeHeaderDamaged(&'static str),

    /// None of the identities unwraps the blob's file key.
    #[error("none of the {identities} supplied identit{plural} can open this blob: it was sealed to other recipients (use the identity of a recipient configured when it was written), or its age header is damaged", plural = if *.identities == 1 { "y" } else { "ies" })]
    NoMatchingIdentity {
        /// How many identities were tried.
        identities: usize,
    },

    /// The ciphertext ends early.
    #[error("the blob is truncated: the encrypted stream ends early; the upload was cut short or the file was damaged, restore from another capture")]
    Truncated,

    /// The encrypted stream fails authentication.
    #[error("the blob is corrupted: the encrypted stream fails authentication (damaged or truncated); restore from another capture")]
    Corrupted,

    /// The age-authenticated content is not valid zstd (it was not written by kvkeep's sealer).
    #[error(
        "the decrypted content is not valid zstd data: {0}; the blob was not written by kvkeep"
    )]
    Decompress(String),

    /// Decompression would exceed the size limit (a decompression bomb or a foreign blob).
    #[error("the blob decompresses to more than {limit} bytes, the most kvkeep ever writes: refusing it")]
    DecompressedTooLarge {
        /// The limit in bytes.
        limit: u64,
    },

    /// A zstd frame asks for a larger window than any kvkeep writer uses (a hostile blob).
    #[error("the blob's zstd data asks for a decompression window larger than {} MiB, more than kvkeep ever writes: refusing it rather than allocating that memory; the blob was not written by kvkeep, restore from another capture", .limit >> 20)]
    WindowTooLarge {
        /// The largest window accepted, in bytes.
        limit: u64,
    },

    /// The decrypted content does not start with the kvkeep envelope magic.
    #[error("the decrypted content does not start with the kvkeep envelope magic: it is not a kvkeep blob")]
    BadMagic,

    /// The envelope uses a format version this build does not know.
    #[error("the blob uses envelope format version {found}; this kvkeep reads version {supported}: upgrade kvkeep to open it")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The declared envelope header length is zero or above the limit.
    #[error("the envelope header declares {len} bytes, outside 1..={limit}: the blob is damaged or not a kvkeep blob")]
    HeaderTooLarge {
        /// The declared length.
        len: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The decrypted content ends inside the envelope framing.
    #[error("the envelope is truncated: {0}")]
    EnvelopeTruncated(&'static str),

    /// The envelope header is not the expected JSON or is inconsistent.
    #[error("the envelope header is invalid: {0}")]
    InvalidHeader(String),

    /// The payload length differs from the header's claim.
    #[error("the payload is {actual} bytes but the envelope header says {expected}: the blob is damaged")]
    PayloadLengthMismatch {
        /// Length recorded at seal time.
        expected: u64,
        /// Length found.
        actual: u64,
    },

    /// The payload's SHA-256 differs from the header's claim.
    #[error("the payload's sha-256 does not match the envelope header: the blob is damaged")]
    PayloadHashMismatch,

    /// The blob is intact but holds something other than what the caller expected.
    #[error("the blob holds something other than expected (swapped or misfiled blob?): {}", .differences.join("; "))]
    Mismatch {
        /// One entry per differing field, `field is X, expected Y`.
        differences: Vec<String>,
    },

    /// An identity file cannot be read.
    #[error("cannot read identity file {}: {source}", .path.display())]
    IdentityFileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// An identity file that group or others can access: refused unread.
    #[error("{}", crate::fsutil::loose_file_message("identity file", .path, *.mode))]
    IdentityFileLoose {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A line of an identity file is not an X25519 identity. The line's content is never shown.
    #[error("identity file {} line {line}: {reason}", .path.display())]
    IdentityParse {
        /// The file (or a description of the source).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, without the content.
        reason: &'static str,
    },

    /// An identity file holds no identity.
    #[error("identity file {} holds no AGE-SECRET-KEY-1... line: create one with `kvkeep keys generate`", .path.display())]
    NoIdentities {
        /// The file.
        path: PathBuf,
    },

    /// `keys generate` would overwrite an existing file.
    #[error("{} already exists: refusing to overwrite an identity file (it may be the only key to existing backups); choose another --out or pass --force", .path.display())]
    IdentityFileExists {
        /// The file.
        path: PathBuf,
    },

    /// Writing an identity file failed.
    #[error("cannot write identity file {}: {source}", .path.display())]
    IdentityFileWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
