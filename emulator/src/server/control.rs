//! The control plane under `/_emulator/` (README table): vault lifecycle and settings, seeding,
//! the clock shift, throttle, faults, counters, the request log, auth modes, and reset. Plain
//! JSON, camelCase, no authentication, served on every listener whatever the host.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{ObjectCounts, SeedSpec};
use crate::error::KvError;
use crate::vault::VaultSettings;

use super::auth::AuthSettings;
use super::faults::FaultSpec;
use super::listener::ConnInfo;
use super::response::{self, HttpResponse, Meta};
use super::state::{lock, State};
use super::throttle::ThrottleSettings;

/// Control-plane bodies are small, but a seed spec may carry many tags.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

/// One vault in `GET /_emulator/vaults`: its settings, flattened, plus `url` and `counts`.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultInfo {
    /// The vault's settings.
    pub settings: VaultSettings,
    /// The URL clients use.
    pub url: String,
    /// What it holds.
    pub counts: ObjectCounts,
}

// By hand rather than `#[serde(flatten)]`: `VaultSettings` denies unknown fields, which serde
// cannot combine with flattening.
impl Serialize for VaultInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.settings).map_err(serde::ser::Error::custom)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("url".into(), Value::String(self.url.clone()));
            let counts = serde_json::to_value(&self.counts).map_err(serde::ser::Error::custom)?;
            object.insert("counts".into(), counts);
        }
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VaultInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = Value::deserialize(deserializer)?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| D::Error::custom("a vault must be a JSON object"))?;
        let url = match object.remove("url") {
            Some(Value::String(url)) => url,
            _ => return Err(D::Error::custom("missing url")),
        };
        let counts = object
            .remove("counts")
            .map(serde_json::from_value)
            .transpose()
            .map_err(D::Error::custom)?
            .unwrap_or_default();
        let settings = serde_json::from_value(value).map_err(D::Error::custom)?;
        Ok(VaultInfo {
            settings,
            url,
            counts,
        })
    }
}

/// `GET /_emulator/time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeInfo {
    /// The vaults' clock, Unix seconds.
    pub now: i64,
    /// Seconds added to the wall clock.
    pub shift_seconds: i64,
}

/// Checks and normalises vault settings (lower-case DNS label, retention 7–90 days).
pub(crate) fn validate_settings(mut settings: VaultSettings) -> Result<VaultSettings, KvError> {
    settings.name = settings.name.to_ascii_lowercase();
    let name = &settings.name;
    if name.is_empty()
        || name.len() > 63
        || name.starts_with('-')
        || name.ends_with('-')
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(KvError::bad_parameter(format!(
            "invalid vault name '{name}': use 1-63 letters, digits and inner hyphens (it becomes a DNS label)"
        )));
    }
    if let Some(days) = settings.recoverable_days {
        if !(7..=90).contains(&days) {
            return Err(KvError::bad_parameter(format!(
                "recoverableDays must be between 7 and 90 (or null for no soft delete), not {days}"
            )));
        }
    }
    for (field, value) in [
        ("geo", &settings.geo),
        ("subscription", &settings.subscription),
        ("region", &settings.region),
    ] {
        // These end up in response headers and messages: printable ASCII only.
        if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(KvError::bad_parameter(format!(
                "{field} must be a non-empty printable ASCII string"
            )));
        }
    }
    Ok(settings)
}

/// Answers one control-plane request.
pub(crate) async fn handle(
    state: &Arc<State>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> HttpResponse {
    let meta = Meta::new(req.headers(), conn.peer.ip());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let err = KvError::bad_parameter("the request body could not be read or is too large");
            return response::error(&err, &meta);
        }
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let result = route(state, &method, &segments, &query, &body).await;
    match result {
        Ok(Some((status, value))) => response::json(status, &value, &meta),
        Ok(None) => response::no_content(&meta),
        Err(e) => response::error(&e, &meta),
    }
}

type Answer = Result<Option<(u16, Value)>, KvError>;

fn ok(value: impl Serialize) -> Answer {
    to_json(value).map(|v| Some((200, v)))
}

fn to_json(value: impl Serialize) -> Result<Value, KvError> {
    serde_json::to_value(value).map_err(|e| KvError::new(500, "InternalError", e.to_string()))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, KvError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| KvError::bad_parameter(format!("invalid body: {e}")))
}

/// Applies the fields of a JSON object onto `current` (partial update).
fn merge<T: Serialize + DeserializeOwned>(current: &T, patch: &Value) -> Result<T, KvError> {
    let Value::Object(patch) = patch else {
        return Err(KvError::bad_parameter("the body must be a JSON object"));
    };
    let mut value = to_json(current)?;
    if let Value::Object(object) = &mut value {
        for (k, v) in patch {
            object.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value).map_err(|e| KvError::bad_parameter(format!("invalid body: {e}")))
}

fn not_found(what: String) -> KvError {
    KvError::new(404, "NotFound", what)
}

async fn route(
    state: &Arc<State>,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Answer {
    match (method.as_str(), segments) {
        ("GET", ["vaults"]) => ok(json!({ "vaults": vault_infos(state) })),
        ("POST", ["vaults"]) => {
            let settings = validate_settings(parse(body)?)?;
            let name = settings.name.clone();
            state.create_vault(settings).await?;
            let info = vault_info(state, &name).ok_or_else(|| not_found(name))?;
            Ok(Some((201, to_json(info)?)))
        }
        ("PATCH", ["vaults", name]) => patch_vault(state, name, &parse::<Value>(body)?),
        ("DELETE", ["vaults", name]) => {
            if state.remove_vault(name) {
                Ok(None)
            } else {
                Err(not_found(format!("vault {name} does not exist")))
            }
        }
        ("POST", ["vaults", name, "seed"]) => seed(state, name, parse(body)?).await,
        ("GET", ["time"]) => ok(time(state)),
        ("POST", ["time"]) => {
            let body: Value = parse(body)?;
            match (body.get("shiftSeconds"), body.get("advanceSeconds")) {
                (Some(shift), None) => state.set_shift(as_i64(shift)?),
                (None, Some(advance)) => state.set_shift(state.shift() + as_i64(advance)?),
                _ => {
                    return Err(KvError::bad_parameter(
                        "send exactly one of {\"shiftSeconds\": n} or {\"advanceSeconds\": n}",
                    ))
                }
            }
            ok(time(state))
        }
        ("GET", ["throttle"]) => ok(lock(&state.throttle).settings().clone()),
        ("PUT", ["throttle"]) => {
            let mut throttle = lock(&state.throttle);
            let settings: ThrottleSettings = merge(throttle.settings(), &parse::<Value>(body)?)?;
            throttle.set(settings.clone());
            ok(settings)
        }
        ("POST", ["faults"]) => {
            let spec = FaultSpec::from_json(&parse::<Value>(body)?)?;
            let id = lock(&state.faults).add(spec);
            Ok(Some((201, json!({ "id": id }))))
        }
        ("GET", ["faults"]) => ok(json!({ "faults": lock(&state.faults).list() })),
        ("DELETE", ["faults"]) => {
            lock(&state.faults).clear();
            Ok(None)
        }
        ("DELETE", ["faults", id]) => {
            let removed = id.parse().is_ok_and(|id| lock(&state.faults).remove(id));
            if removed {
                Ok(None)
            } else {
                Err(not_found(format!("fault rule {id} does not exist")))
            }
        }
        ("GET", ["counters"]) => ok(state.stats.counters()),
        ("DELETE", ["counters"]) => {
            state.stats.clear_counters();
            Ok(None)
        }
        ("GET", ["log"]) => {
            let vault = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("vault="));
            ok(json!({ "requests": state.stats.log(vault) }))
        }
        ("DELETE", ["log"]) => {
            state.stats.clear_log();
            Ok(None)
        }
        ("GET", ["auth"]) => ok(state.auth.get()),
        ("PUT", ["auth"]) => {
            let settings: AuthSettings = merge(&state.auth.get(), &parse::<Value>(body)?)?;
            state.auth.set(settings);
            ok(settings)
        }
        ("POST", ["reset"]) => {
            state.reset_vaults().await;
            lock(&state.faults).clear();
            lock(&state.throttle).set(ThrottleSettings::default());
            state.auth.set(AuthSettings::default());
            state.stats.clear_counters();
            state.stats.clear_log();
            state.set_shift(0);
            Ok(None)
        }
        _ => Err(not_found(format!(
            "no control-plane endpoint {method} /_emulator/{}",
            segments.join("/")
        ))),
    }
}

fn as_i64(value: &Value) -> Result<i64, KvError> {
    value
        .as_i64()
        .ok_or_else(|| KvError::bad_parameter("seconds must be an integer"))
}

fn time(state: &State) -> TimeInfo {
    TimeInfo {
        now: state.now(),
        shift_seconds: state.shift(),
    }
}

fn vault_info(state: &State, name: &str) -> Option<VaultInfo> {
    let entry = state.vault(name)?;
    let vault = lock(&entry.vault);
    Some(VaultInfo {
        settings: vault.settings().clone(),
        url: state.vault_url(name)?,
        counts: vault.counts(),
    })
}

fn vault_infos(state: &State) -> Vec<VaultInfo> {
    state
        .vault_list()
        .iter()
        .filter_map(|(name, _)| vault_info(state, name))
        .collect()
}

fn patch_vault(state: &State, name: &str, patch: &Value) -> Answer {
    let entry = state
        .vault(name)
        .ok_or_else(|| not_found(format!("vault {name} does not exist")))?;
    if patch.get("name").is_some() {
        return Err(KvError::bad_parameter("a vault cannot be renamed"));
    }
    {
        let mut vault = lock(&entry.vault);
        let settings = validate_settings(merge(vault.settings(), patch)?)?;
        *vault.settings_mut() = settings;
    }
    ok(vault_info(state, name))
}

async fn seed(state: &State, name: &str, spec: SeedSpec) -> Answer {
    let entry = state
        .vault(name)
        .ok_or_else(|| not_found(format!("vault {name} does not exist")))?;
    let now = state.now();
    // Seeding 100,000 objects takes seconds: keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || lock(&entry.vault).seed(&spec, now))
        .await
        .map_err(|e| KvError::new(500, "InternalError", format!("seeding failed: {e}")))??;
    ok(report)
}
