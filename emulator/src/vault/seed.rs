//! Bulk seeding for tests and benchmarks. It must stay fast in a debug build (10,000 objects in
//! a few seconds), so nothing expensive happens per object: keys come from a small pool of
//! pre-generated EC P-256 keys and certificates reuse one pre-made self-signed template (with
//! its encoded PFX); only version ids and secret values are fresh.

use std::sync::OnceLock;

use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;

use crate::api::{Collection, SeedReport, SeedSpec};
use crate::error::KvError;

use super::body::{AttrsPatch, MAX_TAGS};
use super::certificates::Install;
use super::jwk::{self, KeyMaterial};
use super::keys::{self, KeyData};
use super::model::{canonical, new_version_id, Attrs, Tags, Version};
use super::secrets::SecretData;
use super::x509::{self, Bundle, SelfSignedSpec};
use super::Vault;

/// How many distinct keys seeded key versions cycle through.
const KEY_POOL: usize = 8;

/// The certificate every seeded certificate version reuses.
#[derive(Debug, Clone)]
struct Template {
    bundle: Bundle,
    secret_value: String,
    policy: serde_json::Value,
}

fn key_pool() -> Result<&'static [KeyMaterial], KvError> {
    static POOL: OnceLock<Result<Vec<KeyMaterial>, KvError>> = OnceLock::new();
    POOL.get_or_init(|| (0..KEY_POOL).map(|_| jwk::generate_ec("P-256")).collect())
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

fn template() -> Result<&'static Template, KvError> {
    static TEMPLATE: OnceLock<Result<Template, KvError>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let key = jwk::generate_ec("P-256")?;
            let spec = SelfSignedSpec {
                subject: "CN=kvkeep-seed".into(),
                dns_names: vec!["seed.vault.localhost".into()],
                validity_months: 120,
                ..SelfSignedSpec::default()
            };
            // A fixed start keeps the template identical whatever the vault clock says.
            let (der, _csr) = x509::self_signed(&spec, &key, 1_700_000_000)?;
            let bundle = Bundle { key, chain: vec![der] };
            let secret_value = x509::secret_value(&bundle, x509::PKCS12)?;
            let policy = json!({
                "key_props": {"exportable": true, "kty": "EC", "crv": "P-256", "reuse_key": false},
                "secret_props": {"contentType": x509::PKCS12},
                "x509_props": {"subject": "CN=kvkeep-seed", "validity_months": 120},
                "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}],
                "issuer": {"name": "Self"},
            });
            Ok(Template { bundle, secret_value, policy })
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Vault {
    /// See [`Vault::seed`].
    pub(super) fn seed_objects(
        &mut self,
        spec: &SeedSpec,
        now: i64,
    ) -> Result<SeedReport, KvError> {
        if spec.versions == 0 {
            return Err(KvError::bad_parameter("versions must be at least 1"));
        }
        if spec.tags.len() > MAX_TAGS {
            return Err(KvError::bad_parameter(format!(
                "at most {MAX_TAGS} tags are allowed"
            )));
        }
        // Validate every name and refuse taken ones before creating anything, so a failed seed
        // leaves the vault untouched.
        let mut names = Vec::with_capacity(spec.count);
        for i in 0..spec.count {
            let name = format!("{}{i:05}", spec.prefix);
            let key = canonical(spec.kind, &name)?;
            if self.name_taken(spec.kind, &key) {
                return Err(KvError::new(
                    409,
                    "Conflict",
                    format!("seed: the name {name} is already in use"),
                ));
            }
            names.push((key, name));
        }
        let tags: Option<Tags> = (!spec.tags.is_empty()).then(|| spec.tags.clone());
        let mut rng = rand::thread_rng();
        for (i, (key, name)) in names.into_iter().enumerate() {
            for v in 0..spec.versions {
                // Older versions get earlier timestamps so `created` grows with each version.
                let created = now - (spec.versions - 1 - v) as i64;
                let attrs = Attrs::new(created);
                match spec.kind {
                    Collection::Secrets => {
                        let value = Alphanumeric.sample_string(&mut rng, spec.value_bytes);
                        let data = SecretData {
                            value,
                            content_type: None,
                        };
                        self.secrets.add_version(
                            key.clone(),
                            &name,
                            false,
                            Version::new(&new_version_id(), &attrs, tags.clone(), data),
                        );
                    }
                    Collection::Keys => {
                        let pool = key_pool()?;
                        let material = pool[(i * spec.versions + v) % pool.len()].clone();
                        let data = KeyData {
                            hsm: false,
                            key_ops: keys::default_ops(material.family),
                            material,
                        };
                        self.keys.add_version(
                            key.clone(),
                            &name,
                            false,
                            Version::new(&new_version_id(), &attrs, tags.clone(), data),
                        );
                    }
                    Collection::Certificates => {
                        let t = template()?;
                        let inst = Install {
                            bundle: t.bundle.clone(),
                            content_type: x509::PKCS12.to_string(),
                            secret_value: t.secret_value.clone(),
                            policy: t.policy.clone(),
                            attrs: AttrsPatch::default(),
                            tags: tags.clone(),
                            csr: None,
                            hsm: false,
                        };
                        self.install_certificate(&key, &name, inst, created)?;
                    }
                }
            }
        }
        Ok(SeedReport {
            objects: spec.count,
            versions: spec.count * spec.versions,
        })
    }

    fn name_taken(&self, kind: Collection, key: &str) -> bool {
        match kind {
            Collection::Secrets => self.secrets.holds(key),
            Collection::Keys => self.keys.holds(key),
            // A certificate also takes the names of its key and secret.
            Collection::Certificates => {
                self.certs.holds(key) || self.keys.holds(key) || self.secrets.holds(key)
            }
        }
    }
}
