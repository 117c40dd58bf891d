//! The state of one emulated vault: secrets, keys and certificates with all their versions,
//! soft delete, and backup/restore blobs. Pure data; no I/O, no clock (time comes in [`Ctx`]).
//!
//! Layout: [`model`] (stored shapes, name rules, recovery levels), [`store`] (lookups, paging,
//! soft-delete bookkeeping common to the collections), [`secrets`], [`keys`] + [`jwk`] (key
//! material), [`certificates`] + [`x509`] (PFX/PEM, self-signed), [`lifecycle`] (delete,
//! recover, purge), [`backup`] (blobs), [`seed`] (bulk creation), [`body`] (request bodies).

use serde::{Deserialize, Serialize};

use crate::api::{Collection, Ctx, ObjectCounts, Op, Reply, SeedReport, SeedSpec};
use crate::error::KvError;

/// Runs `$body` with `$s` bound to the store of `$coll` (each arm is monomorphised separately,
/// which a closure over differently typed stores could not be).
macro_rules! with_store {
    ($self:ident, $coll:expr, $s:ident => $body:expr) => {
        match $coll {
            Collection::Secrets => {
                let $s = &$self.secrets;
                $body
            }
            Collection::Keys => {
                let $s = &$self.keys;
                $body
            }
            Collection::Certificates => {
                let $s = &$self.certs;
                $body
            }
        }
    };
}

pub mod backup;
pub mod body;
pub mod certificates;
pub mod jwk;
pub mod keys;
pub mod lifecycle;
pub mod model;
pub mod secrets;
pub mod seed;
pub mod store;
pub mod x509;

#[cfg(test)]
mod tests;

use certificates::CertData;
use keys::KeyData;
use model::{Recovery, Store};
use secrets::SecretData;
use store::{ok, Payload, RenderCx, Timing};

/// Per-vault settings, changeable through the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultSettings {
    /// Vault name (the first DNS label of its host).
    pub name: String,
    /// Azure geography; backup blobs restore only within the same geography and subscription.
    #[serde(default = "default_geo")]
    pub geo: String,
    /// Subscription id.
    #[serde(default = "default_subscription")]
    pub subscription: String,
    /// Region reported in `x-ms-keyvault-region` and messages.
    #[serde(default = "default_region")]
    pub region: String,
    /// Soft-delete retention in days (7–90); `None` = legacy vault without soft delete (`Purgeable`).
    #[serde(default = "default_days")]
    pub recoverable_days: Option<u32>,
    /// Purge protection: purge answers 403.
    #[serde(default)]
    pub purge_protection: bool,
    /// Seconds after a delete during which the name answers 409 ObjectIsBeingDeleted and the
    /// deleted object is not yet visible (0 = synchronous, the default).
    #[serde(default)]
    pub delete_lag_secs: u32,
    /// Seconds after a purge during which restore/create of the name answers 409 (0 = none).
    #[serde(default)]
    pub purge_lag_secs: u32,
}

fn default_geo() -> String {
    "europe".into()
}
fn default_subscription() -> String {
    "00000000-0000-0000-0000-000000000001".into()
}
fn default_region() -> String {
    "westeurope".into()
}
fn default_days() -> Option<u32> {
    Some(90)
}

impl VaultSettings {
    /// Settings with defaults for everything but the name.
    pub fn named(name: impl Into<String>) -> Self {
        VaultSettings {
            name: name.into(),
            geo: default_geo(),
            subscription: default_subscription(),
            region: default_region(),
            recoverable_days: default_days(),
            purge_protection: false,
            delete_lag_secs: 0,
            purge_lag_secs: 0,
        }
    }
}

/// One vault.
#[derive(Debug)]
pub struct Vault {
    settings: VaultSettings,
    backup_master_key: [u8; 32],
    secrets: Store<SecretData>,
    keys: Store<KeyData>,
    certs: Store<CertData>,
    /// Earliest scheduled purge date of any soft-deleted object (lazy expiry is skipped until
    /// the clock reaches it).
    next_expiry: Option<i64>,
}

impl Vault {
    /// An empty vault. `backup_master_key` is the emulator-wide secret from which the backup blob
    /// key of each (geography, subscription) pair is derived.
    pub fn new(settings: VaultSettings, backup_master_key: [u8; 32]) -> Self {
        Vault {
            settings,
            backup_master_key,
            secrets: Store::default(),
            keys: Store::default(),
            certs: Store::default(),
            next_expiry: None,
        }
    }

    /// Current settings.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    /// Mutable settings (control plane).
    pub fn settings_mut(&mut self) -> &mut VaultSettings {
        &mut self.settings
    }

    /// Applies one data-plane operation.
    pub fn apply(&mut self, op: &Op, ctx: &Ctx) -> Result<Reply, KvError> {
        self.expire(ctx.now);
        let t = self.timing(ctx.now);
        let cx = self.render_cx(ctx);
        match op {
            Op::List { coll, after, limit } => {
                Ok(with_store!(self, *coll, s => s.list(after.as_deref(), *limit, &cx)))
            }
            Op::ListVersions {
                coll,
                name,
                after,
                limit,
            } => {
                with_store!(self, *coll, s => s.list_versions(name, after.as_deref(), *limit, &cx))
            }
            Op::ListDeleted { coll, after, limit } => {
                Ok(with_store!(self, *coll, s => s.list_deleted(after.as_deref(), *limit, &cx, &t)))
            }
            Op::Get {
                coll,
                name,
                version,
                out_content_type,
            } => {
                let version = version.as_deref();
                let body = match coll {
                    Collection::Secrets => secrets::get(
                        &self.secrets,
                        name,
                        version,
                        out_content_type.as_deref(),
                        &cx,
                    )?,
                    Collection::Keys => {
                        let (obj, v) = self.keys.live_version(name, version)?;
                        serde_json::Value::Object(KeyData::bundle(obj, v, &cx))
                    }
                    Collection::Certificates => self.cert_bundle(name, version, ctx)?,
                };
                Ok(ok(body))
            }
            Op::GetDeleted { coll, name } => self.get_deleted(*coll, name, ctx),
            Op::GetCertificatePolicy { name } => Ok(ok(self.certificate_policy(name, ctx)?)),
            Op::GetCertificateOperation { name } => Ok(ok(self.certificate_operation(name, ctx)?)),
            Op::SetSecret { name, body } => {
                Ok(ok(secrets::set(&mut self.secrets, name, body, &t, &cx)?))
            }
            Op::CreateKey { name, body } => {
                Ok(ok(keys::create(&mut self.keys, name, body, &t, &cx)?))
            }
            Op::ImportKey { name, body } => {
                Ok(ok(keys::import(&mut self.keys, name, body, &t, &cx)?))
            }
            Op::ImportCertificate { name, body } => {
                Ok(ok(self.import_certificate(name, body, ctx)?))
            }
            Op::CreateCertificate { name, body } => Ok(Reply::Json {
                status: 202,
                body: self.create_certificate(name, body, ctx)?,
            }),
            Op::Update {
                coll,
                name,
                version,
                body,
            } => {
                let version = version.as_deref();
                let body = match coll {
                    Collection::Secrets => {
                        secrets::update(&mut self.secrets, name, version, body, ctx.now, &cx)?
                    }
                    Collection::Keys => {
                        keys::update(&mut self.keys, name, version, body, ctx.now, &cx)?
                    }
                    Collection::Certificates => {
                        self.update_certificate(name, version, body, ctx)?
                    }
                };
                Ok(ok(body))
            }
            Op::Delete { coll, name } => self.delete(*coll, name, ctx),
            Op::Purge { coll, name } => self.purge(*coll, name, ctx),
            Op::Recover { coll, name } => self.recover(*coll, name, ctx),
            Op::Backup { coll, name } => self.backup(*coll, name),
            Op::Restore { coll, body } => self.restore(*coll, body, ctx),
        }
    }

    /// The operation's weight against the vault's throttle budget (1 for secrets and RSA-2048/EC
    /// keys, 4 for RSA-3072, 8 for RSA-4096, doubled for HSM keys).
    pub fn throttle_weight(&self, op: &Op) -> u32 {
        let by_name = |name: &str| {
            self.keys
                .live(name)
                .ok()
                .and_then(|o| o.latest())
                .map_or(1, |v| v.data.weight())
        };
        match op {
            Op::CreateKey { body, .. } => {
                match body::object(body).and_then(|b| keys::read_spec(&b)) {
                    Ok((keys::KeySpec::Rsa(bits), hsm)) => keys::weight(bits, hsm),
                    Ok((keys::KeySpec::Ec(_), hsm)) => keys::weight(0, hsm),
                    Err(_) => 1,
                }
            }
            Op::ImportKey { body, .. } => {
                let jwk = body.get("key");
                let hsm = body
                    .get("Hsm")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false)
                    || jwk
                        .and_then(|k| k.get("kty"))
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|k| k.ends_with("-HSM"));
                let bits = jwk
                    .and_then(|k| k.get("n"))
                    .and_then(serde_json::Value::as_str)
                    .and_then(jwk::decode_b64url)
                    .map_or(0, |n| n.len() * 8);
                keys::weight(bits, hsm)
            }
            Op::Get {
                coll: Collection::Keys,
                name,
                ..
            }
            | Op::Update {
                coll: Collection::Keys,
                name,
                ..
            }
            | Op::Delete {
                coll: Collection::Keys,
                name,
            }
            | Op::Backup {
                coll: Collection::Keys,
                name,
            } => by_name(name),
            _ => 1,
        }
    }

    /// Bulk seeding for tests and benchmarks.
    pub fn seed(&mut self, spec: &SeedSpec, now: i64) -> Result<SeedReport, KvError> {
        self.expire(now);
        self.seed_objects(spec, now)
    }

    /// What the vault holds now.
    pub fn counts(&self) -> ObjectCounts {
        let (secrets, deleted_secrets) = self.secrets.counts();
        let (keys, deleted_keys) = self.keys.counts();
        let (certificates, deleted_certs) = self.certs.counts();
        ObjectCounts {
            secrets,
            keys,
            certificates,
            deleted: deleted_secrets + deleted_keys + deleted_certs,
        }
    }

    /// The lag windows and retention in force at `now`.
    fn timing(&self, now: i64) -> Timing {
        Timing {
            now,
            delete_lag: i64::from(self.settings.delete_lag_secs),
            purge_lag: i64::from(self.settings.purge_lag_secs),
            retention_days: self.settings.recoverable_days,
        }
    }

    /// Rendering context of a request.
    fn render_cx<'a>(&self, ctx: &'a Ctx) -> RenderCx<'a> {
        RenderCx {
            authority: &ctx.authority,
            recovery: Recovery::of(&self.settings),
        }
    }
}
