//! Unit tests of the vault state, driving [`super::Vault::apply`] directly with a fixed clock
//! and authority, so every assertion is about the replies a client would see.

mod backup;
mod certificates;
mod keys;
mod lifecycle;
mod secrets;
mod seed;

use serde_json::{json, Value};

use super::{Vault, VaultSettings};
use crate::api::{Collection, Ctx, Op, Reply};
use crate::error::KvError;

/// The authority every test request uses.
pub const AUTH: &str = "kv1.vault.localhost:8443";
/// The fixed vault clock of the tests.
pub const NOW: i64 = 1_700_000_000;
/// Backup master key shared by the test vaults.
pub const MASTER: [u8; 32] = [7; 32];

pub fn ctx_at(now: i64) -> Ctx {
    Ctx {
        authority: AUTH.to_string(),
        now,
    }
}

pub fn ctx() -> Ctx {
    ctx_at(NOW)
}

pub fn vault() -> Vault {
    Vault::new(VaultSettings::named("kv1"), MASTER)
}

pub fn vault_with(f: impl FnOnce(&mut VaultSettings)) -> Vault {
    let mut s = VaultSettings::named("kv1");
    f(&mut s);
    Vault::new(s, MASTER)
}

/// Applies `op` at `now` and returns the JSON body of a 200 answer.
pub fn ok_at(v: &mut Vault, op: Op, now: i64) -> Value {
    match v.apply(&op, &ctx_at(now)) {
        Ok(Reply::Json { status: 200, body }) => body,
        other => panic!("{} expected 200 JSON, got {other:?}", op.name()),
    }
}

pub fn ok(v: &mut Vault, op: Op) -> Value {
    ok_at(v, op, NOW)
}

/// Applies `op` and returns the error it must fail with.
pub fn err_at(v: &mut Vault, op: Op, now: i64) -> KvError {
    match v.apply(&op, &ctx_at(now)) {
        Err(e) => e,
        Ok(r) => panic!("{} expected an error, got {r:?}", op.name()),
    }
}

pub fn err(v: &mut Vault, op: Op) -> KvError {
    err_at(v, op, NOW)
}

/// Applies a list operation and returns (items, next).
pub fn page_at(v: &mut Vault, op: Op, now: i64) -> (Vec<Value>, Option<String>) {
    match v.apply(&op, &ctx_at(now)) {
        Ok(Reply::Page { items, next }) => (items, next),
        other => panic!("{} expected a page, got {other:?}", op.name()),
    }
}

pub fn page(v: &mut Vault, op: Op) -> (Vec<Value>, Option<String>) {
    page_at(v, op, NOW)
}

pub fn set_secret(v: &mut Vault, name: &str, value: &str) -> Value {
    ok(
        v,
        Op::SetSecret {
            name: name.into(),
            body: json!({ "value": value }),
        },
    )
}

pub fn get(coll: Collection, name: &str, version: Option<&str>) -> Op {
    Op::Get {
        coll,
        name: name.into(),
        version: version.map(str::to_string),
        out_content_type: None,
    }
}

pub fn list(coll: Collection, after: Option<String>, limit: usize) -> Op {
    Op::List { coll, after, limit }
}

/// The version segment of an id.
pub fn version_of(id: &Value) -> String {
    id.as_str()
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Ensures an id is `https://AUTH/{coll}/{name}[/{32 hex}]`.
pub fn assert_id(id: &Value, coll: &str, name: &str, versioned: bool) {
    let id = id.as_str().unwrap_or_default();
    let prefix = format!("https://{AUTH}/{coll}/{name}");
    if versioned {
        let rest = id.strip_prefix(&format!("{prefix}/")).unwrap_or("");
        assert_eq!(rest.len(), 32, "{id}");
        assert!(
            rest.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
    } else {
        assert_eq!(id, prefix);
    }
}
