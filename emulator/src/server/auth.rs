//! The bearer challenge (§3): every data-plane request without a usable token gets `401` with a
//! `WWW-Authenticate` header both SDKs can parse, before any routing or body validation.
//!
//! The default resource is `https://vault.localhost:{port}`: a parent domain of every vault host,
//! with the port because Python compares netlocs, so challenge verification passes at its default
//! in both SDKs. The other challenge forms and the token modes exist for negative tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::KvError;

use super::response::{self, HttpResponse, Meta};
use super::state::{lock, wall_clock};

/// The tenant in the challenge's `authorization` URI (clients only pass it to their credential).
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const LOGIN: &str = "https://login.emulator.invalid";

/// Which `WWW-Authenticate` header a 401 carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChallengeMode {
    /// `resource="https://vault.localhost:{port}"` (loopback mode: the request authority).
    #[default]
    Default,
    /// `scope="https://vault.localhost:{port}/.default"` instead of `resource`.
    Scope,
    /// `resource` = the request authority (lowkey-vault style; needs verification off).
    Authority,
    /// `resource="https://vault.azure.net"`, which fails challenge verification.
    Foreign,
    /// No `WWW-Authenticate` header at all.
    None,
}

/// Which bearer tokens are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenMode {
    /// Any non-empty bearer token.
    #[default]
    Any,
    /// An (unsigned) JWT whose `aud` is the challenge resource, `exp` in the future and `nbf`
    /// (if present) not in the future.
    Jwt,
    /// The next request carrying a token is refused once (a mid-run re-challenge); the mode then
    /// reads `any` again.
    RejectOnce,
}

/// Settings of `GET`/`PUT /_emulator/auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthSettings {
    /// The challenge form.
    pub challenge: ChallengeMode,
    /// The token check.
    pub token: TokenMode,
}

/// Live auth settings; `reject_armed` is the one-shot of [`TokenMode::RejectOnce`].
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    settings: Mutex<AuthSettings>,
    reject_armed: AtomicBool,
}

impl AuthState {
    pub fn get(&self) -> AuthSettings {
        *lock(&self.settings)
    }

    pub fn set(&self, settings: AuthSettings) {
        let mut current = lock(&self.settings);
        *current = settings;
        self.reject_armed
            .store(settings.token == TokenMode::RejectOnce, Ordering::SeqCst);
    }
}

/// Where the request went, as far as the challenge is concerned.
pub(crate) struct Audience<'a> {
    /// `host[:port]` as the client sent it.
    pub authority: &'a str,
    /// The port the client addressed (`None` = 443).
    pub port: Option<u16>,
    pub loopback: bool,
}

/// `None` when the request may proceed, else the 401 to send.
pub(crate) fn check(
    state: &AuthState,
    headers: &HeaderMap,
    audience: &Audience<'_>,
    meta: &Meta,
) -> Option<HttpResponse> {
    let settings = state.get();
    let resource = resource(settings.challenge, audience);
    let refuse = |message: &str| {
        let err = KvError::new(401, "Unauthorized", message);
        let mut response = response::error(&err, meta);
        if let Some(value) = challenge(settings.challenge, &resource) {
            response.headers_mut().insert("www-authenticate", value);
        }
        Some(response)
    };
    let Some(token) = bearer(headers) else {
        return refuse("AKV10000: Request is missing a Bearer or PoP token.");
    };
    match settings.token {
        TokenMode::Any => None,
        TokenMode::RejectOnce => {
            if state.reject_armed.swap(false, Ordering::SeqCst) {
                lock(&state.settings).token = TokenMode::Any;
                refuse("AKV10022: Invalid token: the token was revoked; request a new one.")
            } else {
                None
            }
        }
        TokenMode::Jwt => match check_jwt(token, &resource, wall_clock()) {
            Ok(()) => None,
            Err(reason) => refuse(&format!("AKV10022: Invalid token: {reason}")),
        },
    }
}

/// The caller of a request for the request log: the first 12 hex digits of the SHA-256 of its
/// bearer token, so that the log tells clients apart without holding a credential.
pub(crate) fn caller(headers: &HeaderMap) -> Option<String> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bearer(headers)?.as_bytes());
    Some(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The resource (without `/.default`) the challenge names.
fn resource(mode: ChallengeMode, audience: &Audience<'_>) -> String {
    match mode {
        ChallengeMode::Foreign => "https://vault.azure.net".to_string(),
        ChallengeMode::Authority => format!("https://{}", audience.authority),
        _ if audience.loopback => format!("https://{}", audience.authority),
        _ => match audience.port {
            Some(port) => format!("https://vault.localhost:{port}"),
            None => "https://vault.localhost".to_string(),
        },
    }
}

fn challenge(mode: ChallengeMode, resource: &str) -> Option<HeaderValue> {
    let authorization = format!("{LOGIN}/{TENANT}");
    let header = match mode {
        ChallengeMode::None => return None,
        ChallengeMode::Scope => {
            format!("Bearer authorization=\"{authorization}\", scope=\"{resource}/.default\"")
        }
        _ => format!("Bearer authorization=\"{authorization}\", resource=\"{resource}\""),
    };
    HeaderValue::from_str(&header).ok()
}

/// Decodes a JWT's claims (no signature check: the emulator has no issuer) and checks audience
/// and lifetime against the wall clock (tokens come from real credentials, not shifted time).
fn check_jwt(token: &str, resource: &str, now: i64) -> Result<(), String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| "not a JWT".to_string())?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url".to_string())?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| "the JWT payload is not JSON".to_string())?;
    let wanted = resource.trim_end_matches('/');
    let audience_ok = |aud: &Value| {
        aud.as_str().is_some_and(|a| {
            let a = a.trim_end_matches('/');
            a == wanted || a.strip_suffix("/.default") == Some(wanted)
        })
    };
    let aud_ok = match &claims["aud"] {
        Value::Array(list) => list.iter().any(audience_ok),
        aud => audience_ok(aud),
    };
    if !aud_ok {
        return Err(format!("audience {} is not {wanted}", claims["aud"]));
    }
    let exp = claims["exp"]
        .as_i64()
        .ok_or_else(|| "the JWT has no exp".to_string())?;
    if exp <= now {
        return Err("the token has expired".into());
    }
    if let Some(nbf) = claims["nbf"].as_i64() {
        if nbf > now {
            return Err("the token is not valid yet".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        format!(
            "e30.{}.sig",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        )
    }

    const RES: &str = "https://vault.localhost:8443";

    #[test]
    fn jwt_claims_are_checked() {
        let ok = jwt(serde_json::json!({"aud": RES, "exp": 200, "nbf": 50}));
        assert_eq!(check_jwt(&ok, RES, 100), Ok(()));
        let scoped = jwt(serde_json::json!({"aud": [format!("{RES}/.default")], "exp": 200}));
        assert_eq!(check_jwt(&scoped, RES, 100), Ok(()));
        let wrong = jwt(serde_json::json!({"aud": "https://vault.azure.net", "exp": 200}));
        assert!(check_jwt(&wrong, RES, 100).is_err());
        assert!(check_jwt(&ok, RES, 300).is_err());
        assert!(check_jwt(&ok, RES, 10).is_err());
        assert!(check_jwt("opaque", RES, 100).is_err());
    }

    #[test]
    fn challenge_grammar() {
        let audience = Audience {
            authority: "kv1.vault.localhost:8443",
            port: Some(8443),
            loopback: false,
        };
        let r = resource(ChallengeMode::Default, &audience);
        assert_eq!(
            challenge(ChallengeMode::Default, &r).unwrap(),
            format!("Bearer authorization=\"{LOGIN}/{TENANT}\", resource=\"https://vault.localhost:8443\"")
        );
        assert_eq!(
            challenge(ChallengeMode::Scope, &r).unwrap(),
            format!("Bearer authorization=\"{LOGIN}/{TENANT}\", scope=\"https://vault.localhost:8443/.default\"")
        );
        assert_eq!(
            resource(ChallengeMode::Authority, &audience),
            "https://kv1.vault.localhost:8443"
        );
        assert!(challenge(ChallengeMode::None, &r).is_none());
    }
}
