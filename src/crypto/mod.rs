//! The sealing pipeline: how every blob kvkeep stores is built and how it is opened again.
//!
//! ```text
//! seal:  payload ─▶ envelope (magic, header, payload) ─▶ zstd ─▶ age to every recipient
//! open:  age (identities) ─▶ zstd (≤ 64 MiB) ─▶ envelope checks ─▶ header + payload
//! ```
//!
//! The backup daemon holds a [`Sealer`], built once from `[encryption]`: recipients (public
//! keys) and the zstd level. It can write blobs but never read them. Restore, deep verification
//! and index rebuild load [`Identities`] (private keys) from a file supplied only to them.
//!
//! Two key roles ([`KeyRole`]): every blob is sealed to the *recovery* recipients, whose
//! identities stay offline; manifests are also sealed to the optional *catalog* recipient,
//! whose identity daemon hosts hold to read what other instances wrote. The sealer derives the
//! recipient set from the blob type it writes into the envelope, so an object blob cannot be
//! sealed to the catalog key by mistake.
//!
//! Sealing and opening are synchronous CPU work (zstd and ChaCha20-Poly1305 over up to 64 MiB):
//! async code calls them inside `tokio::task::spawn_blocking`, never directly on a runtime
//! thread, where they would stall every other task on it.
//!
//! # Storage format: sealed blobs (format version 1)
//!
//! Every blob (object captures and run manifests) is a binary (not armored) [age] v1 file,
//! encrypted to all X25519 recovery recipients configured when it was written; manifest blobs
//! (heads and parts) also to the catalog recipient when one was configured, object blobs never. Any one matching identity
//! opens it, with `kvkeep` or with the stock `age -d -i identity.txt` tool.
//!
//! The age plaintext is a single [zstd] stream (one or more frames, level configurable 1–22).
//! Its decompressed content, the *envelope*, is at most 64 MiB (`MAX_ENVELOPE_BYTES`):
//! readers stop decompressing beyond that and refuse the blob, and writers refuse to seal a
//! payload that would exceed it. Readers also refuse a frame whose window exceeds 2^27 bytes
//! (`MAX_WINDOW_LOG`, the window of zstd level 22) before allocating it.
//!
//! The envelope is:
//!
//! | offset   | size | content                                                          |
//! |----------|------|------------------------------------------------------------------|
//! | 0        | 7    | magic `4B 56 4B 45 45 50 00` (`"KVKEEP\0"`)                       |
//! | 7        | 1    | format version, `01`                                             |
//! | 8        | 4    | header length *H*, unsigned 32-bit big-endian, 1 ≤ *H* ≤ 65,536   |
//! | 12       | *H*  | header: one UTF-8 JSON object (below)                            |
//! | 12 + *H* | rest | payload: raw bytes, exactly `payload_len` of them                |
//!
//! Header fields (JSON keys):
//!
//! | key               | type             | meaning                                               |
//! |-------------------|------------------|-------------------------------------------------------|
//! | `format`          | integer          | `1`; must equal the version byte                      |
//! | `blob`            | `"object"` \| `"manifest"` | what the payload is                         |
//! | `vault`           | string           | source vault name, lower case                         |
//! | `run`             | string, optional | 16-hex-digit id of the writing run                    |
//! | `kind`            | string           | objects only: `keys`, `secrets` or `certificates`     |
//! | `name`            | string           | objects only: object name as the vault reports it     |
//! | `versions`        | array of strings | objects only: every version the payload holds (≥ 1)   |
//! | `current_version` | string           | objects only: current version at capture, in `versions` |
//! | `captured_at`     | integer          | capture time, Unix seconds UTC                        |
//! | `mode`            | `"native"` \| `"portable"` | `native`: the Key Vault backup blob, base64url-decoded; `portable`: values and attributes (DESIGN §5) |
//! | `payload_len`     | integer          | payload length in bytes                               |
//! | `payload_sha256`  | string           | SHA-256 of the payload, 64 lowercase hex digits       |
//!
//! Optional and object-only keys are omitted when absent; manifests carry none of `kind`,
//! `name`, `versions`, `current_version`. Readers ignore unknown keys, so fields may be added
//! within version 1 only when old readers can safely ignore them; any other change bumps the
//! version byte, and a reader refuses versions it does not know.
//!
//! A reader accepts a blob only when, in this order: age authenticates it with one of its
//! identities; it decompresses to at most 64 MiB with a zstd window of at most 128 MiB; the
//! magic and version match; *H* is within bounds; the header parses and its fields fit its
//! `blob` type; the payload is `payload_len` bytes with the recorded SHA-256; and, on restore,
//! `blob`, `vault`, `kind`, `name` (compared case-insensitively) and whatever else the manifest
//! recorded (run, current version, capture time) match the blob's place in the store.
//!
//! What this protects against: age makes blobs confidential and tamper-evident against anyone
//! without a recipient's identity. The header makes a blob self-describing and detects blobs
//! copied, renamed or mixed up under another object's key. It does not authenticate the
//! *writer*: anyone who knows the (public) recipients can seal a blob, so store write access
//! must be protected by the store's own access control.
//!
//! [age]: https://age-encryption.org/v1
//! [zstd]: https://www.rfc-editor.org/rfc/rfc8878

mod envelope;
mod error;
mod identity;
mod seal;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod tests;

pub(crate) use envelope::{is_sha256_hex, sha256_hex};
pub use envelope::{
    BlobType, EnvelopeHeader, Expected, Label, PayloadMode, FORMAT_VERSION, MAX_ENVELOPE_BYTES,
    MAX_HEADER_BYTES,
};
pub use error::CryptoError;
pub use identity::{
    load_catalog_identity, write_identity_file, Identities, Identity, KeyRole, ROLE_COMMENT,
};
pub use seal::{open, open_expecting, Opened, Sealer, MAX_WINDOW_LOG};
