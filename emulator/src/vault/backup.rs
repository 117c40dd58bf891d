//! Backup blobs (§8, §16): every version of an object, sealed so that only vaults of the same
//! geography and subscription can open it, and restored into the requesting vault with the
//! original version ids and timestamps.
//!
//! Blob layout, the real service's shape (§8.1): the `value` is base64url (no padding) of
//!
//! ```text
//! [tag length: u8][tag: "AzureKeyVaultSecretBackupV1.microsoft.com" | "AzureKeyVaultKeyBackupV1.microsoft.com"]
//! [JWE compact serialization, ASCII: header . encrypted key . iv . ciphertext . tag]
//! ```
//!
//! The JWE (RFC 7516) uses direct encryption with AES-256-GCM: header
//! `{"alg":"dir","enc":"A256GCM","kid":"<key id of the geography>","kvemu-kind":"secret|key|certificate","kvemu-format":2}`,
//! an empty encrypted-key segment, a 12-byte IV, and the 16-byte GCM tag; the associated data is
//! the ASCII of the encoded header, as RFC 7516 prescribes. The service wraps its content key with
//! RSA-OAEP instead; `dir` keeps the emulator honest about what it does. The plaintext is
//! `[JSON length: u32 big-endian][JSON payload][zero padding]`, padded to the service's sizes (a
//! small secret ~4 KB, a key ~10 KB once encoded), so stored-bytes figures measured against the
//! emulator mean something: the padding is encrypted like the rest, as incompressible as real
//! ciphertext.
//!
//! The kind sits in the authenticated header, so sending a key blob to `/certificates/restore`
//! (which shares the key tag, as on the real service) fails like any other tampering. The GCM key
//! is HMAC-SHA256(master key, geo || 0 || subscription): a blob from another geography fails to
//! decrypt, which the service reports as a corrupt blob too.

use aes_gcm::aead::{Aead, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::api::{Collection, Ctx, Reply};
use crate::error::KvError;

use super::body;
use super::certificates::CertData;
use super::keys::KeyData;
use super::model::{canonical, object_id, Object, Store};
use super::secrets::SecretData;
use super::store::{deleted_bundle, ok, Payload, RenderCx};
use super::Vault;

const SECRET_TAG: &[u8] = b"AzureKeyVaultSecretBackupV1.microsoft.com";
const KEY_TAG: &[u8] = b"AzureKeyVaultKeyBackupV1.microsoft.com";
/// The emulator's blob format (1 was a binary frame around AES-GCM, without the JWE shape).
const FORMAT: u8 = 2;
const NONCE_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;
/// Plaintext sizes that make the encoded blob as large as the service's: ~4 KB for a small
/// secret, ~10 KB for a key (§8.1). Larger objects are not padded.
const SECRET_PLAINTEXT_BYTES: usize = 2_150;
const KEY_PLAINTEXT_BYTES: usize = 5_600;

/// What a blob carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Contents {
    Secret {
        object: Object<SecretData>,
    },
    Key {
        object: Object<KeyData>,
    },
    Certificate {
        object: Object<CertData>,
        key: Option<Object<KeyData>>,
        secret: Option<Object<SecretData>>,
    },
}

fn kind_name(coll: Collection) -> &'static str {
    match coll {
        Collection::Secrets => "secret",
        Collection::Keys => "key",
        Collection::Certificates => "certificate",
    }
}

fn padded_size(coll: Collection) -> usize {
    match coll {
        Collection::Secrets => SECRET_PLAINTEXT_BYTES,
        Collection::Keys | Collection::Certificates => KEY_PLAINTEXT_BYTES,
    }
}

/// The JWE header of a blob of `coll` sealed with `key`. The `kid` names the geography's key
/// (a digest of it, shaped as a GUID like the service's), not the key itself.
fn jwe_header(key: &[u8; 32], coll: Collection) -> String {
    use sha2::Digest;
    let d = Sha256::digest(key);
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    let kid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    serde_json::json!({
        "alg": "dir",
        "enc": "A256GCM",
        "kid": kid,
        "kvemu-kind": kind_name(coll),
        "kvemu-format": FORMAT,
    })
    .to_string()
}

fn tag_of(coll: Collection) -> &'static [u8] {
    match coll {
        Collection::Secrets => SECRET_TAG,
        // Certificate backups carry the key marker on the real service (§16).
        Collection::Keys | Collection::Certificates => KEY_TAG,
    }
}

/// The blob key of a (geography, subscription) pair.
pub fn blob_key(master: &[u8; 32], geo: &str, subscription: &str) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(master) {
        Ok(m) => m,
        // HMAC accepts keys of any length, so this arm is unreachable; an all-zero key keeps
        // the function total without a panic path.
        Err(_) => return [0; 32],
    };
    mac.update(geo.as_bytes());
    mac.update(&[0]);
    mac.update(subscription.as_bytes());
    mac.finalize().into_bytes().into()
}

fn seal(key: &[u8; 32], coll: Collection, payload: &[u8]) -> Result<String, KvError> {
    let encrypt_failed = || KvError::new(500, "InternalError", "backup encryption failed");
    let json_len = u32::try_from(payload.len()).map_err(|_| encrypt_failed())?;
    let mut plaintext = Vec::with_capacity(4 + payload.len().max(padded_size(coll)));
    plaintext.extend_from_slice(&json_len.to_be_bytes());
    plaintext.extend_from_slice(payload);
    if plaintext.len() < padded_size(coll) {
        plaintext.resize(padded_size(coll), 0);
    }
    let header = URL_SAFE_NO_PAD.encode(jwe_header(key, coll));
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut sealed = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            AeadPayload {
                msg: &plaintext,
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| encrypt_failed())?;
    let gcm_tag = sealed.split_off(sealed.len().saturating_sub(GCM_TAG_LEN));
    let jwe = format!(
        "{header}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(&sealed),
        URL_SAFE_NO_PAD.encode(&gcm_tag)
    );
    let tag = tag_of(coll);
    let mut blob = Vec::with_capacity(1 + tag.len() + jwe.len());
    blob.push(tag.len() as u8);
    blob.extend_from_slice(tag);
    blob.extend_from_slice(jwe.as_bytes());
    Ok(URL_SAFE_NO_PAD.encode(blob))
}

/// Opens a blob meant for `coll`; every failure is the service's 400 "Malformed backup blob".
fn open(key: &[u8; 32], coll: Collection, value: &str) -> Result<Vec<u8>, KvError> {
    let malformed = KvError::malformed_backup;
    let blob = super::jwk::decode_b64url(value.trim()).ok_or_else(malformed)?;
    let tag = tag_of(coll);
    let jwe = blob
        .strip_prefix(&[tag.len() as u8][..])
        .and_then(|rest| rest.strip_prefix(tag))
        .ok_or_else(malformed)?;
    let jwe = std::str::from_utf8(jwe).map_err(|_| malformed())?;
    let segments: Vec<&str> = jwe.split('.').collect();
    let [header, encrypted_key, iv, ciphertext, gcm_tag] = segments[..] else {
        return Err(malformed());
    };
    // The header must be exactly the one this vault's key and this collection produce: that
    // checks the algorithm, the kind and the format before any decryption.
    if header != URL_SAFE_NO_PAD.encode(jwe_header(key, coll)) || !encrypted_key.is_empty() {
        return Err(malformed());
    }
    // The strict decoder refuses non-canonical trailing bits, so every change to a segment
    // changes the bytes the GCM tag authenticates.
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed());
    let (iv, mut sealed, gcm_tag) = (decode(iv)?, decode(ciphertext)?, decode(gcm_tag)?);
    if iv.len() != NONCE_LEN || gcm_tag.len() != GCM_TAG_LEN {
        return Err(malformed());
    }
    sealed.extend_from_slice(&gcm_tag);
    let plaintext = Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(&iv),
            AeadPayload {
                msg: &sealed,
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| malformed())?;
    let (len, rest) = plaintext.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| malformed())?;
    rest.get(..len).map(<[u8]>::to_vec).ok_or_else(malformed)
}

impl Vault {
    fn own_blob_key(&self) -> [u8; 32] {
        blob_key(
            &self.backup_master_key,
            &self.settings.geo,
            &self.settings.subscription,
        )
    }

    /// `POST /{coll}/{name}/backup`.
    pub(super) fn backup(&self, coll: Collection, name: &str) -> Result<Reply, KvError> {
        let key = canonical(coll, name)?;
        let contents = match coll {
            Collection::Secrets => Contents::Secret {
                object: backup_object(&self.secrets, name)?,
            },
            Collection::Keys => Contents::Key {
                object: backup_object(&self.keys, name)?,
            },
            Collection::Certificates => Contents::Certificate {
                object: backup_object(&self.certs, name)?,
                key: self.keys.active.get(&key).filter(|o| o.managed).cloned(),
                secret: self.secrets.active.get(&key).filter(|o| o.managed).cloned(),
            },
        };
        let plaintext = serde_json::to_vec(&contents).map_err(|e| {
            KvError::new(500, "InternalError", format!("backup encoding failed: {e}"))
        })?;
        let value = seal(&self.own_blob_key(), coll, &plaintext)?;
        Ok(ok(serde_json::json!({ "value": value })))
    }

    /// `POST /{coll}/restore`.
    pub(super) fn restore(
        &mut self,
        coll: Collection,
        raw: &Value,
        ctx: &Ctx,
    ) -> Result<Reply, KvError> {
        let b = body::object(raw)?;
        let value = body::req_str(&b, "value")?;
        let plaintext = open(&self.own_blob_key(), coll, value)?;
        let contents: Contents =
            serde_json::from_slice(&plaintext).map_err(|_| KvError::malformed_backup())?;
        let cx = self.render_cx(ctx);
        let body = match contents {
            Contents::Secret { object } if coll == Collection::Secrets => {
                let key = self.restorable(&object, ctx)?;
                let obj = insert(&mut self.secrets, key, object);
                restored_bundle(obj, &cx)?
            }
            Contents::Key { object } if coll == Collection::Keys => {
                let key = self.restorable(&object, ctx)?;
                let obj = insert(&mut self.keys, key, object);
                restored_bundle(obj, &cx)?
            }
            Contents::Certificate {
                object,
                key: managed_key,
                secret,
            } if coll == Collection::Certificates => {
                let key = self.restorable(&object, ctx)?;
                if let Some(k) = managed_key {
                    insert(&mut self.keys, key.clone(), k);
                }
                if let Some(s) = secret {
                    insert(&mut self.secrets, key.clone(), s);
                }
                let obj = insert(&mut self.certs, key, object);
                restored_bundle(obj, &cx)?
            }
            _ => return Err(KvError::malformed_backup()),
        };
        Ok(ok(body))
    }

    /// The canonical key under which `object` can be restored, or the 409 the service sends
    /// when the name is live, soft-deleted or purged moments ago. A certificate also needs the
    /// names of its key and secret free.
    fn restorable<P: Payload>(&self, object: &Object<P>, ctx: &Ctx) -> Result<String, KvError> {
        let key = canonical(P::COLL, &object.name).map_err(|_| KvError::malformed_backup())?;
        let t = self.timing(ctx.now);
        let taken =
            |c: Collection| with_store!(self, c, s => s.holds(&key) || s.in_purge_lag(&key, &t));
        let conflict = taken(P::COLL)
            || (P::COLL == Collection::Certificates
                && (taken(Collection::Keys) || taken(Collection::Secrets)));
        if conflict {
            let latest = object.latest().map(|v| v.id.as_str());
            return Err(KvError::restore_conflict(
                P::COLL,
                &object_id(&ctx.authority, P::COLL, &object.name, latest),
            ));
        }
        Ok(key)
    }
}

/// The live object to back up: 404 when absent (also when only soft-deleted), 403 when it
/// belongs to a certificate.
fn backup_object<P: Payload>(store: &Store<P>, name: &str) -> Result<Object<P>, KvError> {
    let obj = store.live(name)?;
    if obj.managed {
        return Err(KvError::managed_backup(P::COLL));
    }
    Ok(obj.clone())
}

fn insert<P: Payload>(store: &mut Store<P>, key: String, mut object: Object<P>) -> &Object<P> {
    use std::collections::btree_map::Entry;
    object.deletion = None;
    store.purged_at.remove(&key);
    match store.active.entry(key) {
        Entry::Occupied(mut e) => {
            e.insert(object);
            e.into_mut()
        }
        Entry::Vacant(e) => e.insert(object),
    }
}

/// The restore answer: the latest version's bundle, without a secret value (§16) — the deleted
/// bundle of an object that is not deleted.
fn restored_bundle<P: Payload>(obj: &Object<P>, cx: &RenderCx) -> Result<Value, KvError> {
    deleted_bundle(obj, cx).map_err(|_| KvError::malformed_backup())
}
