//! Certificates: the stored payload, the CertificateBundle/CertificateItem shapes of §5.4,
//! import (PFX or PEM), self-signed create with its completed CertificateOperation, the policy,
//! and `PATCH`. Every certificate version comes with a managed key and a managed secret of the
//! same name and version id.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::{Collection, Ctx};
use crate::error::KvError;

use super::body::{self, AttrsPatch};
use super::jwk::{self, Family, B64};
use super::keys::{self, KeyData, KeySpec};
use super::model::{
    canonical, new_version_id, object_id, put_tags_managed, Attrs, Object, Tags, Version,
};
use super::secrets::SecretData;
use super::store::{item_base, Payload, RenderCx};
use super::x509::{self, Bundle, SelfSignedSpec};
use super::Vault;

/// What a certificate version holds besides the common attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertData {
    /// The leaf certificate (DER).
    pub der: B64,
    /// Further chain certificates (DER), issuer order.
    #[serde(default)]
    pub chain: Vec<B64>,
    /// The managed secret's `contentType`.
    pub content_type: String,
    /// The certificate policy (without `id` and `attributes`, which are rendered).
    pub policy: Value,
    /// The CSR of a `create`, answered on `/pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<B64>,
}

impl Payload for CertData {
    const COLL: Collection = Collection::Certificates;

    fn bundle(obj: &Object<Self>, v: &Version<Self>, cx: &RenderCx) -> Map<String, Value> {
        let a = cx.authority;
        let mut m = Map::new();
        m.insert(
            "id".into(),
            json!(object_id(
                a,
                Collection::Certificates,
                &obj.name,
                Some(&v.id)
            )),
        );
        m.insert(
            "kid".into(),
            json!(object_id(a, Collection::Keys, &obj.name, Some(&v.id))),
        );
        m.insert(
            "sid".into(),
            json!(object_id(a, Collection::Secrets, &obj.name, Some(&v.id))),
        );
        m.insert("x5t".into(), json!(x509::thumbprint(&v.data.der.0)));
        m.insert("cer".into(), json!(base64_std(&v.data.der.0)));
        m.insert("contentType".into(), json!(v.data.content_type));
        m.insert("attributes".into(), v.attrs.to_json(&cx.recovery));
        m.insert(
            "policy".into(),
            policy_json(&obj.name, &v.data.policy, &v.attrs, a),
        );
        put_tags_managed(&mut m, &v.tags, false);
        m
    }

    fn item(
        obj: &Object<Self>,
        v: &Version<Self>,
        cx: &RenderCx,
        versioned: bool,
    ) -> Map<String, Value> {
        // Certificates are never managed, so `item_base` adds no `managed` flag.
        let mut m = item_base(obj, v, cx, "id", versioned);
        m.insert("x5t".into(), json!(x509::thumbprint(&v.data.der.0)));
        m
    }
}

fn base64_std(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The policy as `GET .../policy` answers it.
pub fn policy_json(name: &str, policy: &Value, attrs: &Attrs, authority: &str) -> Value {
    let mut m = policy.as_object().cloned().unwrap_or_default();
    m.insert(
        "id".into(),
        json!(format!("https://{authority}/certificates/{name}/policy")),
    );
    m.insert(
        "attributes".into(),
        json!({"enabled": true, "created": attrs.created, "updated": attrs.updated}),
    );
    Value::Object(m)
}

/// Overlays the sub-objects of `given` on `base` (one level deep), like the service filling in
/// the parts of a policy a client left out.
fn overlay(base: &mut Map<String, Value>, given: &Map<String, Value>) {
    for (k, v) in given {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(g)) => {
                for (gk, gv) in g {
                    b.insert(gk.clone(), gv.clone());
                }
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The policy the service derives for an imported certificate.
fn derived_policy(
    bundle: &Bundle,
    info: &x509::CertInfo,
    content_type: &str,
) -> Map<String, Value> {
    let mut key_props = json!({"exportable": true, "kty": "RSA", "reuse_key": false});
    match bundle.key.family {
        Family::Rsa => key_props["key_size"] = json!(bundle.key.rsa_bits()),
        Family::Ec => {
            key_props["kty"] = json!("EC");
            key_props["crv"] = json!(bundle.key.crv);
        }
    }
    let months = ((info.not_after - info.not_before).max(0) / (30 * 86_400)).max(1);
    let mut x509_props = json!({"subject": info.subject, "validity_months": months});
    if !info.dns_names.is_empty() {
        x509_props["sans"] = json!({"dns_names": info.dns_names});
    }
    let p = json!({
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
        "issuer": {"name": "Unknown"},
    });
    p.as_object().cloned().unwrap_or_default()
}

fn content_type_of(policy: Option<&Map<String, Value>>) -> Result<Option<String>, KvError> {
    let ct = policy
        .and_then(|p| p.get("secret_props"))
        .and_then(|s| s.get("contentType"))
        .and_then(Value::as_str);
    match ct {
        None => Ok(None),
        Some(ct) if ct == x509::PKCS12 || ct == x509::PEM => Ok(Some(ct.to_string())),
        Some(other) => Err(KvError::bad_parameter(format!(
            "The content type '{other}' is not supported; use {} or {}.",
            x509::PKCS12,
            x509::PEM
        ))),
    }
}

/// Everything one certificate version is made of, ready to be written into the three stores.
#[derive(Debug, Clone)]
pub struct Install {
    /// Key and chain.
    pub bundle: Bundle,
    /// Secret content type.
    pub content_type: String,
    /// The managed secret's value (precomputed so seeding can reuse one).
    pub secret_value: String,
    /// Policy to store.
    pub policy: Value,
    /// `enabled` etc. from the request.
    pub attrs: AttrsPatch,
    /// Tags of the certificate version.
    pub tags: Option<Tags>,
    /// CSR of a create.
    pub csr: Option<Vec<u8>>,
    /// HSM flag of the managed key.
    pub hsm: bool,
}

impl Vault {
    /// Refuses a certificate name that is taken by a deleted certificate, or by a key or secret
    /// that does not belong to a certificate.
    fn check_cert_name(&self, key: &str, name: &str, now: i64) -> Result<(), KvError> {
        let t = self.timing(now);
        self.certs.check_creatable(key, name, &t)?;
        let foreign_key = self.keys.active.get(key).is_some_and(|o| !o.managed);
        let foreign_secret = self.secrets.active.get(key).is_some_and(|o| !o.managed);
        if foreign_key || foreign_secret {
            let what = if foreign_key { "key" } else { "secret" };
            return Err(KvError::new(
                409,
                "Conflict",
                format!("Certificate {name} cannot be created: a {what} with the same name exists and is not associated with a certificate."),
            ));
        }
        self.keys.check_creatable(key, name, &t)?;
        self.secrets.check_creatable(key, name, &t)?;
        Ok(())
    }

    /// Writes a certificate version with its managed key and secret (same version id).
    pub(super) fn install_certificate(
        &mut self,
        key: &str,
        name: &str,
        inst: Install,
        now: i64,
    ) -> Result<String, KvError> {
        let leaf = inst
            .bundle
            .chain
            .first()
            .ok_or_else(|| KvError::bad_parameter("The content holds no certificate."))?;
        let info = x509::info(leaf)?;
        let mut attrs = Attrs::new(now);
        attrs.nbf = Some(info.not_before);
        attrs.exp = Some(info.not_after);
        if let Some(enabled) = inst.attrs.enabled {
            attrs.enabled = enabled;
        }
        let id = new_version_id();
        let data = CertData {
            der: B64(leaf.clone()),
            chain: inst.bundle.chain.iter().skip(1).cloned().map(B64).collect(),
            content_type: inst.content_type.clone(),
            policy: inst.policy,
            operation: inst.csr.map(B64),
        };
        let family = inst.bundle.key.family;
        let key_data = KeyData {
            hsm: inst.hsm,
            key_ops: keys::default_ops(family),
            material: inst.bundle.key,
        };
        let secret_data = SecretData {
            value: inst.secret_value,
            content_type: Some(inst.content_type),
        };
        self.keys.add_version(
            key.to_string(),
            name,
            true,
            Version::new(&id, &attrs, None, key_data),
        );
        self.secrets.add_version(
            key.to_string(),
            name,
            true,
            Version::new(&id, &attrs, None, secret_data),
        );
        self.certs.add_version(
            key.to_string(),
            name,
            false,
            Version::new(&id, &attrs, inst.tags, data),
        );
        Ok(id)
    }

    /// `POST /certificates/{name}/import`.
    pub(super) fn import_certificate(
        &mut self,
        name: &str,
        raw: &Value,
        ctx: &Ctx,
    ) -> Result<Value, KvError> {
        let key = canonical(Collection::Certificates, name)?;
        let b = body::object(raw)?;
        let value = body::req_str(&b, "value")?;
        let pwd = body::opt_str(&b, "pwd")?;
        let given_policy = body::opt_obj(&b, "policy")?;
        let attrs = AttrsPatch::read(&b)?;
        let tags = body::tags(&b)?;
        let (bundle, detected) = x509::read_import(value, pwd)?;
        let content_type = content_type_of(given_policy)?.unwrap_or_else(|| detected.to_string());
        let leaf = bundle
            .chain
            .first()
            .ok_or_else(|| KvError::bad_parameter("The content holds no certificate."))?;
        let info = x509::info(leaf)?;
        let mut policy = derived_policy(&bundle, &info, &content_type);
        if let Some(given) = given_policy {
            overlay(&mut policy, given);
        }
        let hsm = kty_is_hsm(&policy);
        self.check_cert_name(&key, name, ctx.now)?;
        let secret_value = x509::secret_value(&bundle, &content_type)?;
        let inst = Install {
            bundle,
            content_type,
            secret_value,
            policy: Value::Object(policy),
            attrs,
            tags,
            csr: None,
            hsm,
        };
        self.install_certificate(&key, name, inst, ctx.now)?;
        self.cert_bundle(name, None, ctx)
    }

    /// `POST /certificates/{name}/create`: self-signed only; the certificate is made at once and
    /// the 202 carries the operation.
    pub(super) fn create_certificate(
        &mut self,
        name: &str,
        raw: &Value,
        ctx: &Ctx,
    ) -> Result<Value, KvError> {
        let key = canonical(Collection::Certificates, name)?;
        let b = body::object(raw)?;
        let given = body::opt_obj(&b, "policy")?.cloned().unwrap_or_default();
        let attrs = AttrsPatch::read(&b)?;
        let tags = body::tags(&b)?;
        let issuer = given
            .get("issuer")
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("Self");
        if !issuer.eq_ignore_ascii_case("Self") {
            return Err(KvError::bad_parameter(format!(
                "The issuer '{issuer}' is not supported by the emulator; only self-signed certificates (issuer 'Self') can be created."
            )));
        }
        let content_type =
            content_type_of(Some(&given))?.unwrap_or_else(|| x509::PKCS12.to_string());
        let (spec, hsm) = key_spec(&given)?;
        let x509_spec = self_signed_spec(name, &given)?;
        self.check_cert_name(&key, name, ctx.now)?;
        let material = keys::generate(&spec)?;
        let (der, csr) = x509::self_signed(&x509_spec, &material, ctx.now)?;
        let bundle = Bundle {
            key: material,
            chain: vec![der],
        };
        let mut policy = json!({
            "key_props": {"exportable": true, "kty": jwk::kty_label(bundle.key.family, hsm), "reuse_key": false},
            "secret_props": {"contentType": content_type},
            "x509_props": {"subject": x509_spec.subject, "validity_months": x509_spec.validity_months},
            "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}],
            "issuer": {"name": "Self"},
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        overlay(&mut policy, &given);
        match &spec {
            KeySpec::Rsa(bits) => policy["key_props"]["key_size"] = json!(bits),
            KeySpec::Ec(crv) => policy["key_props"]["crv"] = json!(crv),
        }
        let secret_value = x509::secret_value(&bundle, &content_type)?;
        let inst = Install {
            bundle,
            content_type,
            secret_value,
            policy: Value::Object(policy),
            attrs,
            tags,
            csr: Some(csr),
            hsm,
        };
        self.install_certificate(&key, name, inst, ctx.now)?;
        // The certificate already exists, but the 202 says "inProgress" as the service's does:
        // the Python SDK's poller never polls (and returns nothing) when the first answer is
        // already final. The first poll of `/pending` then reports completion.
        let mut op = self.certificate_operation(name, ctx)?;
        op["status"] = json!("inProgress");
        op["status_details"] = json!("Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.");
        if let Some(m) = op.as_object_mut() {
            m.remove("target");
        }
        Ok(op)
    }

    /// `GET /certificates/{name}/pending`.
    pub(super) fn certificate_operation(&self, name: &str, ctx: &Ctx) -> Result<Value, KvError> {
        let pending_missing = || {
            KvError::new(
                404,
                "PendingCertificateNotFound",
                format!("Pending certificate not found: {name}"),
            )
        };
        let obj = self.certs.live(name).map_err(|_| pending_missing())?;
        let v = obj.latest().ok_or_else(pending_missing)?;
        let csr = v.data.operation.as_ref().ok_or_else(pending_missing)?;
        let a = &ctx.authority;
        Ok(json!({
            "id": format!("https://{a}/certificates/{}/pending", obj.name),
            "issuer": {"name": "Self"},
            "csr": base64_std(&csr.0),
            "cancellation_requested": false,
            "status": "completed",
            "status_details": "",
            "target": object_id(a, Collection::Certificates, &obj.name, None),
            "request_id": v.id,
        }))
    }

    /// A certificate bundle by name and version.
    pub(super) fn cert_bundle(
        &self,
        name: &str,
        version: Option<&str>,
        ctx: &Ctx,
    ) -> Result<Value, KvError> {
        let (obj, v) = self.certs.live_version(name, version)?;
        Ok(Value::Object(CertData::bundle(
            obj,
            v,
            &self.render_cx(ctx),
        )))
    }

    /// `GET /certificates/{name}/policy`.
    pub(super) fn certificate_policy(&self, name: &str, ctx: &Ctx) -> Result<Value, KvError> {
        let (obj, v) = self.certs.live_version(name, None)?;
        Ok(policy_json(
            &obj.name,
            &v.data.policy,
            &v.attrs,
            &ctx.authority,
        ))
    }

    /// `PATCH /certificates/{name}/{version?}`: attributes, tags and policy; `enabled` carries
    /// over to the managed key and secret of the same version.
    pub(super) fn update_certificate(
        &mut self,
        name: &str,
        version: Option<&str>,
        raw: &Value,
        ctx: &Ctx,
    ) -> Result<Value, KvError> {
        let b = body::object(raw)?;
        let patch = AttrsPatch::read(&b)?;
        let tags = body::tags(&b)?;
        let policy = body::opt_obj(&b, "policy")?.cloned();
        let key = canonical(Collection::Certificates, name)?;
        let cx = self.render_cx(ctx);
        let (obj, v) = self
            .certs
            .update_version(name, version, &patch, tags, ctx.now, |v| {
                if let Some(p) = policy {
                    let mut current = v.data.policy.as_object().cloned().unwrap_or_default();
                    overlay(&mut current, &p);
                    current.remove("id");
                    current.remove("attributes");
                    v.data.policy = Value::Object(current);
                }
            })?;
        let body = Value::Object(CertData::bundle(obj, v, &cx));
        let (id, enabled) = (v.id.clone(), v.attrs.enabled);
        if let Some(kv) = self
            .keys
            .active
            .get_mut(&key)
            .and_then(|o| o.version_mut(Some(&id)))
        {
            kv.attrs.enabled = enabled;
            kv.attrs.updated = ctx.now;
        }
        if let Some(sv) = self
            .secrets
            .active
            .get_mut(&key)
            .and_then(|o| o.version_mut(Some(&id)))
        {
            sv.attrs.enabled = enabled;
            sv.attrs.updated = ctx.now;
        }
        Ok(body)
    }
}

fn kty_is_hsm(policy: &Map<String, Value>) -> bool {
    policy
        .get("key_props")
        .and_then(|k| k.get("kty"))
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("-HSM"))
}

/// The key a `create` asks for, from `key_props` (defaults: RSA 2048, EC P-256).
fn key_spec(policy: &Map<String, Value>) -> Result<(KeySpec, bool), KvError> {
    let mut props = policy
        .get("key_props")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !props.contains_key("kty") {
        props.insert("kty".into(), json!("RSA"));
    }
    // The policy names the curve `crv`; the create-key body reads it under the same name.
    keys::read_spec(&props)
}

fn self_signed_spec(name: &str, policy: &Map<String, Value>) -> Result<SelfSignedSpec, KvError> {
    let empty = Map::new();
    let x = body::opt_obj(policy, "x509_props")?.unwrap_or(&empty);
    let sans = body::opt_obj(x, "sans")?.unwrap_or(&empty);
    let months = body::opt_i64(x, "validity_months")?.unwrap_or(12);
    if !(1..=1200).contains(&months) {
        return Err(KvError::bad_parameter(
            "validity_months must be between 1 and 1200.",
        ));
    }
    Ok(SelfSignedSpec {
        subject: body::opt_str(x, "subject")?.map_or_else(|| format!("CN={name}"), str::to_string),
        dns_names: body::opt_str_list(sans, "dns_names")?.unwrap_or_default(),
        emails: body::opt_str_list(sans, "emails")?.unwrap_or_default(),
        validity_months: months as u32,
        ekus: body::opt_str_list(x, "ekus")?.unwrap_or_default(),
        key_usage: body::opt_str_list(x, "key_usage")?.unwrap_or_default(),
    })
}
