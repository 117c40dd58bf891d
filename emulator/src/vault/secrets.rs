//! Secrets: the stored payload, the SecretBundle/SecretItem shapes of §5.2, `PUT /secrets/{name}`
//! and the secret flavour of `PATCH`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::Collection;
use crate::error::KvError;

use super::body::{self, AttrsPatch};
use super::model::{
    canonical, new_version_id, object_id, put_tags_managed, Attrs, Object, Store, Version,
};
use super::store::{item_base, Payload, RenderCx, Timing};
use super::x509;

/// The service's limit on a secret value (25 KiB).
pub const MAX_SECRET_BYTES: usize = 25 * 1024;

/// What a secret version holds besides the common attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretData {
    /// The value.
    pub value: String,
    /// `contentType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl Payload for SecretData {
    const COLL: Collection = Collection::Secrets;

    fn bundle(obj: &Object<Self>, v: &Version<Self>, cx: &RenderCx) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("value".into(), json!(v.data.value));
        m.insert(
            "id".into(),
            json!(object_id(
                cx.authority,
                Collection::Secrets,
                &obj.name,
                Some(&v.id)
            )),
        );
        if let Some(ct) = &v.data.content_type {
            m.insert("contentType".into(), json!(ct));
        }
        m.insert("attributes".into(), v.attrs.to_json(&cx.recovery));
        put_tags_managed(&mut m, &v.tags, obj.managed);
        if obj.managed {
            // A certificate's secret points at the key of the same name and version.
            m.insert(
                "kid".into(),
                json!(object_id(
                    cx.authority,
                    Collection::Keys,
                    &obj.name,
                    Some(&v.id)
                )),
            );
        }
        m
    }

    fn item(
        obj: &Object<Self>,
        v: &Version<Self>,
        cx: &RenderCx,
        versioned: bool,
    ) -> Map<String, Value> {
        let mut m = item_base(obj, v, cx, "id", versioned);
        if let Some(ct) = &v.data.content_type {
            m.insert("contentType".into(), json!(ct));
        }
        m
    }
}

/// `PUT /secrets/{name}`: a new version; returns the bundle (with value).
pub fn set(
    store: &mut Store<SecretData>,
    name: &str,
    raw: &Value,
    t: &Timing,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    let key = canonical(Collection::Secrets, name)?;
    let b = body::object(raw)?;
    let value = body::req_str(&b, "value")?;
    if value.len() > MAX_SECRET_BYTES {
        return Err(KvError::bad_parameter(format!(
            "The secret value is too large: {} bytes (at most {MAX_SECRET_BYTES} are allowed).",
            value.len()
        )));
    }
    let content_type = body::opt_str(&b, "contentType")?.map(str::to_string);
    let tags = body::tags(&b)?;
    let mut attrs = Attrs::new(t.now);
    AttrsPatch::read(&b)?.apply(&mut attrs)?;
    store.check_creatable(&key, name, t)?;
    store.check_not_managed(&key, "set")?;
    let version = Version {
        id: new_version_id(),
        attrs,
        tags,
        data: SecretData {
            value: value.to_string(),
            content_type,
        },
    };
    let obj = store.add_version(key, name, false, version);
    let v = obj
        .latest()
        .ok_or_else(|| KvError::not_found(Collection::Secrets, name))?;
    Ok(Value::Object(SecretData::bundle(obj, v, cx)))
}

/// `GET /secrets/{name}/{version?}`: a disabled version answers 403 (§16). `out_content_type`
/// (`outContentType`, §4.1 S3) converts the value of a certificate-managed secret between PEM and
/// PKCS#12; see [`out_format`] for what is accepted.
pub fn get(
    store: &Store<SecretData>,
    name: &str,
    version: Option<&str>,
    out_content_type: Option<&str>,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    // A malformed parameter is refused before the lookup, like api-version and maxresults.
    let wanted = out_content_type.map(out_format).transpose()?;
    let (obj, v) = store.live_version(name, version)?;
    if !v.attrs.enabled {
        return Err(KvError::disabled(Collection::Secrets));
    }
    let mut m = SecretData::bundle(obj, v, cx);
    // Only a certificate's secret has a defined format to convert; an ordinary secret is
    // answered as stored (the service documents the parameter for certificate content only).
    if let (Some(wanted), true) = (wanted, obj.managed) {
        let value = x509::convert_secret_value(&v.data.value, wanted)?;
        m.insert("value".into(), json!(value));
        m.insert("contentType".into(), json!(wanted));
    }
    Ok(Value::Object(m))
}

/// Reads an `outContentType`: `application/x-pem-file` or `application/x-pkcs12`, compared
/// case-insensitively because media types are. Anything else is 400 BadParameter (the service
/// documents that an unsupported format is rejected).
pub fn out_format(raw: &str) -> Result<&'static str, KvError> {
    [x509::PEM, x509::PKCS12]
        .into_iter()
        .find(|known| raw.trim().eq_ignore_ascii_case(known))
        .ok_or_else(|| {
            KvError::bad_parameter(format!(
                "The value '{raw}' of the 'outContentType' query parameter is not supported. Supported values: {}, {}.",
                x509::PEM,
                x509::PKCS12
            ))
        })
}

/// `PATCH /secrets/{name}/{version?}`: attributes, tags, contentType; the answer has no value.
pub fn update(
    store: &mut Store<SecretData>,
    name: &str,
    version: Option<&str>,
    raw: &Value,
    now: i64,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    let b = body::object(raw)?;
    let patch = AttrsPatch::read(&b)?;
    let tags = body::tags(&b)?;
    let content_type = body::opt_str(&b, "contentType")?.map(str::to_string);
    let (obj, v) = store.update_version(name, version, &patch, tags, now, |v| {
        if content_type.is_some() {
            v.data.content_type = content_type;
        }
    })?;
    let mut m = SecretData::bundle(obj, v, cx);
    m.remove("value");
    Ok(Value::Object(m))
}
