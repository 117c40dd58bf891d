//! Reading request bodies: typed field access that turns every malformed input into a 400
//! BadParameter instead of a panic, plus the shared `attributes` and `tags` rules of §5.7.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::KvError;

use super::model::{Attrs, Tags};

/// The service's limit on tags per object.
pub const MAX_TAGS: usize = 15;

/// The body as a JSON object; a missing body (`Null`) reads as an empty object so operations
/// whose fields are all optional accept a bare POST. Borrowed, not copied: a body can be 1 MiB.
pub fn object(body: &Value) -> Result<Cow<'_, Map<String, Value>>, KvError> {
    match body {
        Value::Null => Ok(Cow::Owned(Map::new())),
        Value::Object(m) => Ok(Cow::Borrowed(m)),
        _ => Err(KvError::bad_parameter(
            "The request body must be a JSON object.",
        )),
    }
}

/// An optional string field (`null` counts as absent).
pub fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, KvError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(type_error(key, "a string")),
    }
}

/// A required string field.
pub fn req_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, KvError> {
    opt_str(m, key)?
        .ok_or_else(|| KvError::bad_parameter(format!("The parameter '{key}' is required.")))
}

/// An optional boolean field.
pub fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, KvError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(type_error(key, "a boolean")),
    }
}

/// An optional integer field.
pub fn opt_i64(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, KvError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| type_error(key, "an integer")),
    }
}

/// An optional nested object.
pub fn opt_obj<'a>(
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, KvError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(type_error(key, "an object")),
    }
}

/// An optional array of strings.
pub fn opt_str_list(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, KvError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(key, "an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(type_error(key, "an array of strings")),
    }
}

fn type_error(key: &str, what: &str) -> KvError {
    KvError::bad_parameter(format!("The parameter '{key}' must be {what}."))
}

/// The `tags` field: an object of string values, at most [`MAX_TAGS`] entries.
pub fn tags(m: &Map<String, Value>) -> Result<Option<Tags>, KvError> {
    let Some(raw) = opt_obj(m, "tags")? else {
        return Ok(None);
    };
    if raw.len() > MAX_TAGS {
        return Err(KvError::bad_parameter(format!(
            "Too many tags: {} (at most {MAX_TAGS} are allowed).",
            raw.len()
        )));
    }
    let mut out = Tags::new();
    for (k, v) in raw {
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            _ => return Err(type_error(&format!("tags.{k}"), "a string")),
        };
        out.insert(k.clone(), value);
    }
    Ok(Some(out))
}

/// The writable part of `attributes` (`enabled`, `nbf`, `exp`), each `None` when not sent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AttrsPatch {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `exp`.
    pub exp: Option<i64>,
}

impl AttrsPatch {
    /// Reads `attributes` from a body.
    pub fn read(m: &Map<String, Value>) -> Result<Self, KvError> {
        let Some(a) = opt_obj(m, "attributes")? else {
            return Ok(AttrsPatch::default());
        };
        Ok(AttrsPatch {
            enabled: opt_bool(a, "enabled")?,
            nbf: opt_i64(a, "nbf")?,
            exp: opt_i64(a, "exp")?,
        })
    }

    /// Applies the patch, refusing `nbf` after `exp`.
    pub fn apply(&self, attrs: &mut Attrs) -> Result<(), KvError> {
        let mut next = attrs.clone();
        if let Some(e) = self.enabled {
            next.enabled = e;
        }
        if self.nbf.is_some() {
            next.nbf = self.nbf;
        }
        if self.exp.is_some() {
            next.exp = self.exp;
        }
        if let (Some(nbf), Some(exp)) = (next.nbf, next.exp) {
            if nbf > exp {
                return Err(KvError::bad_parameter(
                    "The 'nbf' attribute must not be later than the 'exp' attribute.",
                ));
            }
        }
        *attrs = next;
        Ok(())
    }
}
