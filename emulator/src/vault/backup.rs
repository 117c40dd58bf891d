//! Backup blobs (§8, §16): every version of an object, sealed so that only vaults of the same
//! geography and subscription can open it, and restored into the requesting vault with the
//! original version ids and timestamps.
//!
//! Blob layout (then base64url without padding):
//!
//! ```text
//! [tag length: u8][tag: "AzureKeyVaultSecretBackupV1.microsoft.com" | "AzureKeyVaultKeyBackupV1.microsoft.com"]
//! [format: u8 = 1][kind: u8 = 1 secret | 2 key | 3 certificate]
//! [nonce: 12 bytes][AES-256-GCM ciphertext of the JSON payload, 16-byte tag]
//! ```
//!
//! The framing before the nonce is the GCM associated data, so flipping the kind byte (to send
//! a key blob to `/certificates/restore`, which shares the key tag as on the real service) fails
//! authentication like any other tampering. The GCM key is HMAC-SHA256(master key, geo || 0 ||
//! subscription): a blob from another geography fails to decrypt, which the service reports as
//! a corrupt blob too.

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
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;

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

fn kind_byte(coll: Collection) -> u8 {
    match coll {
        Collection::Secrets => 1,
        Collection::Keys => 2,
        Collection::Certificates => 3,
    }
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

fn seal(key: &[u8; 32], coll: Collection, plaintext: &[u8]) -> Result<String, KvError> {
    let tag = tag_of(coll);
    let mut blob = Vec::with_capacity(plaintext.len() + tag.len() + 64);
    blob.push(tag.len() as u8);
    blob.extend_from_slice(tag);
    blob.push(FORMAT);
    blob.push(kind_byte(coll));
    let aad_len = blob.len();
    let nonce: [u8; NONCE_LEN] = rand::random();
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            AeadPayload {
                msg: plaintext,
                aad: &blob[..aad_len],
            },
        )
        .map_err(|_| KvError::new(500, "InternalError", "backup encryption failed"))?;
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(blob))
}

/// Opens a blob meant for `coll`; every failure is the service's 400 "Malformed backup blob".
fn open(key: &[u8; 32], coll: Collection, value: &str) -> Result<Vec<u8>, KvError> {
    let blob = super::jwk::decode_b64url(value.trim()).ok_or_else(KvError::malformed_backup)?;
    let tag = tag_of(coll);
    let aad_len = 1 + tag.len() + 2;
    if blob.len() < aad_len + NONCE_LEN + 16
        || usize::from(blob[0]) != tag.len()
        || &blob[1..=tag.len()] != tag
        || blob[1 + tag.len()] != FORMAT
        || blob[2 + tag.len()] != kind_byte(coll)
    {
        return Err(KvError::malformed_backup());
    }
    let (aad, rest) = blob.split_at(aad_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), AeadPayload { msg: sealed, aad })
        .map_err(|_| KvError::malformed_backup())
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
