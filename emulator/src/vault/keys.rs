//! Keys: the stored payload, the KeyBundle/KeyItem shapes of §5.3 (`kid` inside `key` for
//! bundles, at top level for items, public members only), create, import and the key flavour of
//! `PATCH`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::Collection;
use crate::error::KvError;

use super::body::{self, AttrsPatch};
use super::jwk::{self, Family, KeyMaterial};
use super::model::{
    canonical, new_version_id, object_id, put_tags_managed, Attrs, Object, Store, Tags, Version,
};
use super::store::{item_base, Payload, RenderCx, Timing};

/// The operations Key Vault knows for `key_ops`.
const KNOWN_OPS: [&str; 8] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

/// What a key version holds besides the common attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyData {
    /// Created or imported as an HSM key (`RSA-HSM`/`EC-HSM`); the emulator only records it.
    #[serde(default)]
    pub hsm: bool,
    /// `key_ops`.
    pub key_ops: Vec<String>,
    /// The private key.
    pub material: KeyMaterial,
}

impl KeyData {
    /// The `kty` the service reports.
    pub fn kty(&self) -> &'static str {
        jwk::kty_label(self.material.family, self.hsm)
    }

    /// Throttle weight of operations on this key (§9.1 / DESIGN §2).
    pub fn weight(&self) -> u32 {
        weight(self.material.rsa_bits(), self.hsm)
    }
}

/// Throttle weight of an operation on a key: 1 for EC (`rsa_bits` 0) and RSA-2048, 4 for
/// RSA-3072, 8 for RSA-4096 (sizes in between round up), doubled for HSM keys.
pub fn weight(rsa_bits: usize, hsm: bool) -> u32 {
    let base = match rsa_bits {
        b if b > 3072 => 8,
        b if b > 2048 => 4,
        _ => 1,
    };
    if hsm {
        base * 2
    } else {
        base
    }
}

/// Default `key_ops` of a new key: everything the key type can do.
pub fn default_ops(family: Family) -> Vec<String> {
    let ops: &[&str] = match family {
        Family::Rsa => &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ],
        Family::Ec => &["sign", "verify"],
    };
    ops.iter().map(|s| s.to_string()).collect()
}

impl Payload for KeyData {
    const COLL: Collection = Collection::Keys;

    fn bundle(obj: &Object<Self>, v: &Version<Self>, cx: &RenderCx) -> Map<String, Value> {
        let mut key = Map::new();
        key.insert(
            "kid".into(),
            json!(object_id(
                cx.authority,
                Collection::Keys,
                &obj.name,
                Some(&v.id)
            )),
        );
        key.insert("kty".into(), json!(v.data.kty()));
        key.insert("key_ops".into(), json!(v.data.key_ops));
        key.extend(v.data.material.public_members());
        let mut m = Map::new();
        m.insert("key".into(), Value::Object(key));
        m.insert("attributes".into(), v.attrs.to_json(&cx.recovery));
        put_tags_managed(&mut m, &v.tags, obj.managed);
        m
    }

    fn item(
        obj: &Object<Self>,
        v: &Version<Self>,
        cx: &RenderCx,
        versioned: bool,
    ) -> Map<String, Value> {
        item_base(obj, v, cx, "kid", versioned)
    }
}

fn read_ops(m: &Map<String, Value>) -> Result<Option<Vec<String>>, KvError> {
    let ops = body::opt_str_list(m, "key_ops")?;
    if let Some(ops) = &ops {
        if let Some(bad) = ops.iter().find(|o| !KNOWN_OPS.contains(&o.as_str())) {
            return Err(KvError::bad_parameter(format!(
                "The key operation '{bad}' is not valid."
            )));
        }
    }
    Ok(ops)
}

/// The new material `POST /keys/{name}/create` asks for, validated before any generation work.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// RSA with a modulus size.
    Rsa(usize),
    /// EC on a curve.
    Ec(String),
}

/// Reads `kty`, `key_size`, `crv` and `public_exponent` of a create body.
pub fn read_spec(m: &Map<String, Value>) -> Result<(KeySpec, bool), KvError> {
    let (family, hsm) = jwk::parse_kty(body::req_str(m, "kty")?)?;
    let spec = match family {
        Family::Rsa => {
            let size = body::opt_i64(m, "key_size")?.unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&size) {
                return Err(KvError::bad_parameter(format!(
                    "The key size {size} is not supported; use 2048, 3072 or 4096."
                )));
            }
            if let Some(e) = body::opt_i64(m, "public_exponent")? {
                if e != 65537 {
                    return Err(KvError::bad_parameter(
                        "Only the public exponent 65537 is supported.",
                    ));
                }
            }
            KeySpec::Rsa(size as usize)
        }
        Family::Ec => {
            let crv = body::opt_str(m, "crv")?.unwrap_or("P-256");
            if !jwk::CURVES.contains(&crv) {
                return Err(KvError::bad_parameter(format!(
                    "The curve '{crv}' is not supported; use one of P-256, P-384, P-521, P-256K."
                )));
            }
            KeySpec::Ec(crv.to_string())
        }
    };
    Ok((spec, hsm))
}

/// Generates material for a spec.
pub fn generate(spec: &KeySpec) -> Result<KeyMaterial, KvError> {
    match spec {
        KeySpec::Rsa(bits) => jwk::generate_rsa(*bits),
        KeySpec::Ec(crv) => jwk::generate_ec(crv),
    }
}

/// `POST /keys/{name}/create`.
pub fn create(
    store: &mut Store<KeyData>,
    name: &str,
    raw: &Value,
    t: &Timing,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    let key = canonical(Collection::Keys, name)?;
    let b = body::object(raw)?;
    let (spec, hsm) = read_spec(&b)?;
    let ops = read_ops(&b)?;
    let (attrs, tags) = read_common(&b, t.now)?;
    store.check_creatable(&key, name, t)?;
    store.check_not_managed(&key, "create")?;
    let material = generate(&spec)?;
    let key_ops = ops.unwrap_or_else(|| default_ops(material.family));
    let data = KeyData {
        hsm,
        key_ops,
        material,
    };
    Ok(push(store, key, name, attrs, tags, data, cx))
}

/// `PUT /keys/{name}`: import a JWK with private members.
pub fn import(
    store: &mut Store<KeyData>,
    name: &str,
    raw: &Value,
    t: &Timing,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    let key = canonical(Collection::Keys, name)?;
    let b = body::object(raw)?;
    let jwk_body = body::opt_obj(&b, "key")?
        .ok_or_else(|| KvError::bad_parameter("The parameter 'key' is required."))?;
    let (material, hsm_kty) = jwk::from_jwk(jwk_body)?;
    let hsm = hsm_kty || body::opt_bool(&b, "Hsm")?.unwrap_or(false);
    let ops = read_ops(jwk_body)?;
    let (attrs, tags) = read_common(&b, t.now)?;
    store.check_creatable(&key, name, t)?;
    store.check_not_managed(&key, "import")?;
    let key_ops = ops.unwrap_or_else(|| default_ops(material.family));
    let data = KeyData {
        hsm,
        key_ops,
        material,
    };
    Ok(push(store, key, name, attrs, tags, data, cx))
}

fn read_common(b: &Map<String, Value>, now: i64) -> Result<(Attrs, Option<Tags>), KvError> {
    let mut attrs = Attrs::new(now);
    AttrsPatch::read(b)?.apply(&mut attrs)?;
    Ok((attrs, body::tags(b)?))
}

fn push(
    store: &mut Store<KeyData>,
    key: String,
    name: &str,
    attrs: Attrs,
    tags: Option<Tags>,
    data: KeyData,
    cx: &RenderCx,
) -> Value {
    let version = Version {
        id: new_version_id(),
        attrs,
        tags,
        data,
    };
    let obj = store.add_version(key, name, false, version);
    match obj.latest() {
        Some(v) => Value::Object(KeyData::bundle(obj, v, cx)),
        None => Value::Null,
    }
}

/// `PATCH /keys/{name}/{version?}`: attributes, tags, key_ops.
pub fn update(
    store: &mut Store<KeyData>,
    name: &str,
    version: Option<&str>,
    raw: &Value,
    now: i64,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    let b = body::object(raw)?;
    let patch = AttrsPatch::read(&b)?;
    let tags = body::tags(&b)?;
    let ops = read_ops(&b)?;
    let (obj, v) = store.update_version(name, version, &patch, tags, now, |v| {
        if let Some(ops) = ops {
            v.data.key_ops = ops;
        }
    })?;
    Ok(Value::Object(KeyData::bundle(obj, v, cx)))
}
