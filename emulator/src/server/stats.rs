//! The request log (a ring buffer of the last [`LOG_CAPACITY`] data-plane requests, the
//! unauthenticated ones included) and the per-vault, per-operation counters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::state::lock;

/// How many requests the log keeps; older ones are dropped so a long benchmark cannot exhaust
/// memory.
pub const LOG_CAPACITY: usize = 100_000;

/// One logged data-plane request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Sequence number, increasing from 1 (restarts after a reset).
    pub seq: u64,
    /// The vault the request addressed, when the host named one.
    pub vault: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path as sent.
    pub path: String,
    /// Query as sent (empty when none).
    pub query: String,
    /// Operation name (`secrets.list`), when the path routed.
    pub op: Option<String>,
    /// Status sent (0 when the connection was reset instead).
    pub status: u16,
    /// Whether an `Authorization` header was present.
    pub has_authorization: bool,
    /// Who called, as Key Vault's own logs name the caller's identity: a fingerprint of the
    /// bearer token (the first 12 hex digits of its SHA-256), never the token itself. Tells
    /// clients with distinct tokens apart (several processes sharing a vault).
    #[serde(default)]
    pub caller: Option<String>,
    /// Request body length in bytes.
    pub body_length: usize,
    /// The injected fault that answered or delayed the request.
    pub fault: Option<String>,
}

/// `GET /_emulator/counters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Vault → operation → requests (authenticated and routed, faulted and throttled included).
    pub vaults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Vault → requests answered 429 by the throttle.
    pub throttled: BTreeMap<String, u64>,
    /// Vault → requests answered or altered by an injected fault.
    pub faulted: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Log {
    next_seq: u64,
    entries: VecDeque<LogEntry>,
}

/// Log and counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    log: Mutex<Log>,
    counters: Mutex<Counters>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl Stats {
    pub fn record(&self, mut entry: LogEntry) {
        let mut log = lock(&self.log);
        log.next_seq += 1;
        entry.seq = log.next_seq;
        if log.entries.len() >= LOG_CAPACITY {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
    }

    pub fn log(&self, vault: Option<&str>) -> Vec<LogEntry> {
        let log = lock(&self.log);
        log.entries
            .iter()
            .filter(|e| match vault {
                None => true,
                Some(v) => e
                    .vault
                    .as_deref()
                    .is_some_and(|ev| ev.eq_ignore_ascii_case(v)),
            })
            .cloned()
            .collect()
    }

    pub fn clear_log(&self) {
        *lock(&self.log) = Log::default();
    }

    pub fn count(&self, vault: &str, op: &str) {
        let mut c = lock(&self.counters);
        match c.vaults.get_mut(vault) {
            Some(ops) => bump(ops, op),
            None => {
                c.vaults
                    .insert(vault.to_string(), BTreeMap::from([(op.to_string(), 1)]));
            }
        }
    }

    pub fn count_throttled(&self, vault: &str) {
        bump(&mut lock(&self.counters).throttled, vault);
    }

    pub fn count_faulted(&self, vault: &str) {
        bump(&mut lock(&self.counters).faulted, vault);
    }

    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    pub fn clear_counters(&self) {
        *lock(&self.counters) = Counters::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vault: &str) -> LogEntry {
        LogEntry {
            seq: 0,
            vault: Some(vault.into()),
            method: "GET".into(),
            path: "/secrets".into(),
            query: String::new(),
            op: None,
            status: 200,
            has_authorization: true,
            caller: None,
            body_length: 0,
            fault: None,
        }
    }

    #[test]
    fn log_is_a_bounded_ring() {
        let stats = Stats::default();
        for _ in 0..LOG_CAPACITY + 5 {
            stats.record(entry("kv1"));
        }
        let log = stats.log(None);
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log[0].seq, 6);
        assert_eq!(stats.log(Some("KV1")).len(), LOG_CAPACITY);
        assert!(stats.log(Some("kv2")).is_empty());
    }

    #[test]
    fn counters_count_per_vault_and_op() {
        let stats = Stats::default();
        stats.count("kv1", "secrets.get");
        stats.count("kv1", "secrets.get");
        stats.count("kv2", "keys.list");
        stats.count_throttled("kv1");
        let c = stats.counters();
        assert_eq!(c.vaults["kv1"]["secrets.get"], 2);
        assert_eq!(c.vaults["kv2"]["keys.list"], 1);
        assert_eq!(c.throttled["kv1"], 1);
        stats.clear_counters();
        assert_eq!(stats.counters(), Counters::default());
    }
}
