//! What a vault holds, read back through its data plane, so the demo can show that a restore
//! reproduced a point in time: every version of every key, secret and certificate (the
//! certificate-managed ones too), as the service answers a GET of that version — names, version
//! ids, attributes, tags, content types, key material and secret values.
//!
//! Snapshots hold secret values, so nothing here prints one: a difference is reported by the
//! names of the fields that differ.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The api-version the demo's data-plane reads use.
const API_VERSION: &str = "7.5";
/// Stands for the vault's own URL in a snapshot, so snapshots of two vaults compare.
const VAULT_URL: &str = "https://VAULT";

/// Every version of every object, keyed `kind/name/version`. Its `Debug` shows only the keys:
/// the values hold secrets.
pub(super) struct Snapshot(BTreeMap<String, Value>);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Snapshot {
    /// Versions in the snapshot.
    pub fn versions(&self) -> usize {
        self.0.len()
    }

    /// Distinct objects (`kind/name`) in the snapshot.
    pub fn objects(&self) -> usize {
        self.0
            .keys()
            .filter_map(|k| k.rsplit_once('/').map(|(object, _)| object))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether `kind/name` is in the snapshot.
    pub fn has_object(&self, kind: &str, name: &str) -> bool {
        let prefix = format!("{kind}/{name}/");
        self.0.keys().any(|k| k.starts_with(&prefix))
    }

    /// Every difference of `actual` from `self`, one line each (`kind/name/version` and the
    /// fields that differ, never their values). Empty when they match.
    pub fn differences(&self, actual: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (key, expected) in &self.0 {
            match actual.0.get(key) {
                None => out.push(format!("{key}: missing")),
                Some(got) if got != expected => {
                    out.push(format!("{key}: {} differ", differing_fields(expected, got)))
                }
                Some(_) => {}
            }
        }
        for key in actual.0.keys().filter(|k| !self.0.contains_key(*k)) {
            out.push(format!("{key}: not expected"));
        }
        out
    }
}

/// The top-level fields (and the fields inside `attributes`) that differ, by name.
fn differing_fields(expected: &Value, got: &Value) -> String {
    let mut fields = BTreeSet::new();
    let empty = serde_json::Map::new();
    let e = expected.as_object().unwrap_or(&empty);
    let g = got.as_object().unwrap_or(&empty);
    for key in e.keys().chain(g.keys()) {
        let (ev, gv) = (e.get(key), g.get(key));
        if ev == gv {
            continue;
        }
        match (
            key.as_str(),
            ev.and_then(Value::as_object),
            gv.and_then(Value::as_object),
        ) {
            ("attributes", Some(ea), Some(ga)) => {
                for a in ea.keys().chain(ga.keys()) {
                    if ea.get(a) != ga.get(a) {
                        fields.insert(format!("attributes.{a}"));
                    }
                }
            }
            _ => {
                fields.insert(key.clone());
            }
        }
    }
    fields.into_iter().collect::<Vec<_>>().join(", ")
}

/// Reads everything `vault_url` holds (active objects) through its data plane.
pub(super) async fn take(
    http: &reqwest::Client,
    vault_url: &str,
    token: &str,
) -> Result<Snapshot, String> {
    let reader = Reader {
        http,
        vault_url,
        token,
    };
    let mut out = BTreeMap::new();
    for kind in ["secrets", "keys", "certificates"] {
        for item in reader.list(kind).await? {
            let name = last_segment(&item)?;
            for version in reader.list(&format!("{kind}/{name}/versions")).await? {
                let id = last_segment(&version)?;
                // A disabled version cannot be read (403): its listing, with attributes and
                // tags, stands for it.
                let full = if version["attributes"]["enabled"] == Value::Bool(false) {
                    version
                } else {
                    reader.get(&format!("{kind}/{name}/{id}")).await?
                };
                let text = full.to_string().replace(vault_url, VAULT_URL);
                let value = serde_json::from_str(&text)
                    .map_err(|e| format!("reading {kind}/{name}/{id} back: {e}"))?;
                out.insert(format!("{kind}/{name}/{id}"), value);
            }
        }
    }
    Ok(Snapshot(out))
}

/// The name or version at the end of an item's id (`kid` for keys).
fn last_segment(item: &Value) -> Result<String, String> {
    item["id"]
        .as_str()
        .or(item["kid"].as_str())
        .and_then(|id| id.trim_end_matches('/').rsplit('/').next())
        .map(str::to_string)
        .ok_or_else(|| "the vault listed an item without an id".to_string())
}

struct Reader<'a> {
    http: &'a reqwest::Client,
    vault_url: &'a str,
    token: &'a str,
}

impl Reader<'_> {
    /// One GET, by path under the vault or by a full `nextLink`.
    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{path}?api-version={API_VERSION}", self.vault_url)
        };
        let response = self
            .http
            .get(&url)
            .bearer_auth(self.token)
            .send()
            .await
            .map_err(|e| format!("reading {path} back: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("reading {path} back: the vault answered {status}"));
        }
        response
            .json()
            .await
            .map_err(|e| format!("reading {path} back: {e}"))
    }

    /// Every item of a list, following `nextLink`.
    async fn list(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut page = self.get(path).await?;
        loop {
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => page = self.get(next).await?,
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(entries: &[(&str, Value)]) -> Snapshot {
        Snapshot(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn differences_name_fields_never_values() {
        let expected = snapshot(&[
            (
                "secrets/a/1",
                json!({"value": "s3cret", "attributes": {"enabled": true}}),
            ),
            ("secrets/b/1", json!({"value": "x"})),
        ]);
        let actual = snapshot(&[
            (
                "secrets/a/1",
                json!({"value": "other", "attributes": {"enabled": false}}),
            ),
            ("keys/c/1", json!({})),
        ]);
        let diff = expected.differences(&actual);
        assert_eq!(
            diff,
            [
                "secrets/a/1: attributes.enabled, value differ",
                "secrets/b/1: missing",
                "keys/c/1: not expected",
            ]
        );
        assert!(!diff.concat().contains("s3cret"));
        assert!(!format!("{expected:?}").contains("s3cret"));
        assert_eq!(expected.objects(), 2);
        assert!(expected.has_object("secrets", "b") && !expected.has_object("secrets", "c"));
        assert!(expected.differences(&expected).is_empty());
    }
}
