//! Fault injection rules of `/_emulator/faults`: the next N (or a random share) of the matching
//! data-plane requests fail in a chosen way — 429, 500, 503, a dropped connection, added latency,
//! an empty page that still carries a nextLink, a short page, or a page whose nextLink points at
//! another (loopback) host.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::KvError;

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// `429 Throttled`, with `Retry-After`/`x-ms-retry-after-ms` only when the rule sets them.
    Throttle,
    /// `500 InternalServerError`.
    Error500,
    /// `503 ServiceUnavailable`.
    Error503,
    /// The TCP connection is closed without a response, before the request is carried out.
    Reset,
    /// The request is carried out, then the TCP connection is closed without a response: the
    /// lost answer of an operation that took effect.
    ResetAfter,
    /// `latencyMs` of delay, then the request is served normally.
    Latency,
    /// List operations only: `{"value":[],"nextLink":...}` resuming at the same position.
    EmptyPage,
    /// List operations only: at most `pageSize` items, with a correct nextLink.
    ShortPage,
    /// List operations only: the page is served normally, but its nextLink names the host
    /// `nextLinkHost` instead of the vault's (on a last page, a link that would repeat the
    /// page). A client that follows it would send its bearer token to that host.
    ForeignNextLink,
    /// `403 Forbidden` / `ForbiddenByPolicy`: the caller lacks the permission for the operation,
    /// worded as the service words a missing access-policy permission.
    Forbidden,
}

impl FaultKind {
    fn list_only(self) -> bool {
        matches!(
            self,
            FaultKind::EmptyPage | FaultKind::ShortPage | FaultKind::ForeignNextLink
        )
    }
}

/// A rule as posted to `POST /_emulator/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// Only this vault (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Operation pattern: `secrets.backup`, `secrets.*` or `*` (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// Fire on the next N matching requests (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Fire on this share (0–1) of matching requests (every one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// `Retry-After` seconds (throttle, error503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// `x-ms-retry-after-ms` (throttle, error503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Delay of a `latency` fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Page size of a `shortPage` fault (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    /// `host[:port]` the nextLink of a `foreignNextLink` fault points at: a loopback address
    /// (`127.0.0.0/8`, `[::1]`) or a `localhost`/`*.localhost` name, never anything that could
    /// leave the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link_host: Option<String>,
}

const SPEC_FIELDS: [&str; 10] = [
    "vault",
    "op",
    "kind",
    "count",
    "rate",
    "retryAfterSeconds",
    "retryAfterMs",
    "latencyMs",
    "pageSize",
    "nextLinkHost",
];

impl FaultSpec {
    /// Parses and validates a posted rule. (Unknown fields are refused by hand: serde cannot
    /// combine `deny_unknown_fields` with the `flatten` of [`FaultRule`].)
    pub(crate) fn from_json(body: &Value) -> Result<FaultSpec, KvError> {
        let object = body
            .as_object()
            .ok_or_else(|| KvError::bad_parameter("a fault rule must be a JSON object"))?;
        if let Some(unknown) = object.keys().find(|k| !SPEC_FIELDS.contains(&k.as_str())) {
            return Err(KvError::bad_parameter(format!(
                "unknown field `{unknown}` in fault rule; expected one of {SPEC_FIELDS:?}"
            )));
        }
        let spec: FaultSpec = serde_json::from_value(body.clone())
            .map_err(|e| KvError::bad_parameter(format!("invalid fault rule: {e}")))?;
        if let Some(rate) = spec.rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(KvError::bad_parameter("rate must be between 0 and 1"));
            }
        }
        if spec.kind == FaultKind::Latency && spec.latency_ms.is_none() {
            return Err(KvError::bad_parameter("a latency fault needs latencyMs"));
        }
        if spec.page_size == Some(0) {
            return Err(KvError::bad_parameter("pageSize must be at least 1"));
        }
        match (&spec.next_link_host, spec.kind) {
            (None, FaultKind::ForeignNextLink) => {
                return Err(KvError::bad_parameter(
                    "a foreignNextLink fault needs nextLinkHost",
                ))
            }
            (Some(host), _) if !is_loopback_authority(host) => {
                return Err(KvError::bad_parameter(format!(
                    "nextLinkHost {host:?} is not a loopback host: use 127.x.x.x, [::1], localhost or *.localhost, with an optional port"
                )))
            }
            _ => {}
        }
        Ok(spec)
    }

    fn matches(&self, vault: &str, op: &str) -> bool {
        let vault_ok = self
            .vault
            .as_deref()
            .is_none_or(|v| v.eq_ignore_ascii_case(vault));
        let op_ok = match self.op.as_deref() {
            None | Some("*") => true,
            Some(pattern) => match pattern.strip_suffix(".*") {
                Some(prefix) => op
                    .split_once('.')
                    .is_some_and(|(coll, _)| coll.eq_ignore_ascii_case(prefix)),
                None => pattern.eq_ignore_ascii_case(op),
            },
        };
        vault_ok && op_ok
    }
}

/// `host[:port]` names a loopback address or a `localhost` name: the emulator never points a
/// client at anything that could leave the machine.
fn is_loopback_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some(split) => split,
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok());
    if !port_ok {
        return false;
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = host.to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost"))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A rule as listed by `GET /_emulator/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Rule id, for `DELETE /_emulator/faults/{id}`.
    pub id: u64,
    /// Firings left (`None` = unlimited).
    pub remaining: Option<u64>,
    /// How often it fired.
    pub fired: u64,
    /// The rule.
    #[serde(flatten)]
    pub spec: FaultSpec,
}

/// A fault that fired on a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub kind: FaultKind,
    pub retry_after_seconds: Option<u64>,
    pub retry_after_ms: Option<u64>,
    pub latency_ms: u64,
    pub page_size: usize,
    pub next_link_host: Option<String>,
}

/// The rule list.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    next_id: u64,
    rules: Vec<FaultRule>,
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) -> u64 {
        self.next_id += 1;
        self.rules.push(FaultRule {
            id: self.next_id,
            remaining: spec.count,
            fired: 0,
            spec,
        });
        self.next_id
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The first active rule that matches and fires (rules are tried in the order they were
    /// added; a rate rule that does not fire lets the next rule try).
    /// `after_latency`: a latency fault already fired on this request; only other kinds may
    /// follow it (so a delay can precede, say, an empty page).
    pub fn fire(
        &mut self,
        vault: &str,
        op: &str,
        is_list: bool,
        after_latency: bool,
    ) -> Option<Fired> {
        if self.rules.is_empty() {
            return None;
        }
        let mut rng = rand::thread_rng();
        for rule in &mut self.rules {
            if rule.remaining == Some(0)
                || (rule.spec.kind.list_only() && !is_list)
                || (after_latency && rule.spec.kind == FaultKind::Latency)
                || !rule.spec.matches(vault, op)
            {
                continue;
            }
            if let Some(rate) = rule.spec.rate {
                if !rng.gen_bool(rate) {
                    continue;
                }
            }
            if let Some(remaining) = &mut rule.remaining {
                *remaining -= 1;
            }
            rule.fired += 1;
            return Some(Fired {
                kind: rule.spec.kind,
                retry_after_seconds: rule.spec.retry_after_seconds,
                retry_after_ms: rule.spec.retry_after_ms,
                latency_ms: rule.spec.latency_ms.unwrap_or(0),
                page_size: rule.spec.page_size.unwrap_or(1),
                next_link_host: rule.spec.next_link_host.clone(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(body: Value) -> FaultSpec {
        FaultSpec::from_json(&body).unwrap()
    }

    #[test]
    fn count_limits_firings() {
        let mut f = Faults::default();
        f.add(spec(
            json!({"kind": "error503", "count": 2, "op": "secrets.*"}),
        ));
        assert!(f.fire("kv1", "keys.get", false, false).is_none());
        assert!(f.fire("kv1", "secrets.get", false, false).is_some());
        assert!(f.fire("kv1", "secrets.list", true, false).is_some());
        assert!(f.fire("kv1", "secrets.get", false, false).is_none());
        assert_eq!(f.list()[0].fired, 2);
        assert_eq!(f.list()[0].remaining, Some(0));
    }

    #[test]
    fn page_faults_only_hit_lists_and_vault_filters() {
        let mut f = Faults::default();
        f.add(spec(json!({"kind": "emptyPage", "vault": "KV1"})));
        assert!(f.fire("kv1", "secrets.get", false, false).is_none());
        assert!(f.fire("kv2", "secrets.list", true, false).is_none());
        assert_eq!(
            f.fire("kv1", "secrets.list", true, false).map(|x| x.kind),
            Some(FaultKind::EmptyPage)
        );
    }

    #[test]
    fn rate_zero_never_fires_and_bad_specs_are_refused() {
        let mut f = Faults::default();
        f.add(spec(json!({"kind": "error500", "rate": 0.0})));
        assert!((0..100).all(|_| f.fire("kv", "keys.get", false, false).is_none()));
        for bad in [
            json!({"kind": "nope"}),
            json!({"kind": "error500", "rate": 2}),
            json!({"kind": "error500", "typo": 1}),
            json!({"kind": "latency"}),
            json!({"kind": "foreignNextLink"}),
            json!({"kind": "foreignNextLink", "nextLinkHost": "example.com"}),
            json!({"kind": "foreignNextLink", "nextLinkHost": "10.0.0.1:443"}),
            json!({"kind": "foreignNextLink", "nextLinkHost": "localhost.example.com"}),
            json!({"kind": "foreignNextLink", "nextLinkHost": "a@127.0.0.1"}),
        ] {
            assert!(FaultSpec::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn foreign_next_links_only_point_at_loopback_hosts() {
        for host in [
            "127.0.0.2",
            "127.0.0.2:8443",
            "[::1]:1",
            "localhost",
            "evil.localhost:9",
        ] {
            let body = json!({"kind": "foreignNextLink", "nextLinkHost": host});
            assert!(FaultSpec::from_json(&body).is_ok(), "{host}");
        }
        let mut f = Faults::default();
        f.add(spec(
            json!({"kind": "foreignNextLink", "nextLinkHost": "127.0.0.2:9"}),
        ));
        assert!(f.fire("kv1", "secrets.get", false, false).is_none());
        let fired = f.fire("kv1", "secrets.list", true, false).expect("fires");
        assert_eq!(fired.next_link_host.as_deref(), Some("127.0.0.2:9"));
    }

    #[test]
    fn rules_list_flat() {
        let mut f = Faults::default();
        f.add(spec(json!({"kind": "throttle", "retryAfterSeconds": 1})));
        let listed = serde_json::to_value(f.list()).unwrap();
        assert_eq!(listed[0]["kind"], "throttle");
        assert_eq!(listed[0]["retryAfterSeconds"], 1);
        assert_eq!(listed[0]["id"], 1);
        let back: Vec<FaultRule> = serde_json::from_value(listed).unwrap();
        assert_eq!(back, f.list());
    }
}
