//! Service-side throttling (DESIGN §2): a token bucket per vault holding `vaultBudget`
//! transactions refilled over `windowSeconds`, and one per subscription holding
//! `subscriptionMultiplier` times that. A request needs its weight in both; a refused request
//! (429 `Throttled`) takes nothing, as the service does not count 429s.
//!
//! A bucket rather than an exact sliding window: O(1) per request, the same long-run rate, and
//! the same "burst of one budget" a fresh window allows.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Settings of `GET`/`PUT /_emulator/throttle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ThrottleSettings {
    /// Off by default: most tests do not want throttling.
    pub enabled: bool,
    /// Transactions per window per vault (weight 1 = a secret operation).
    pub vault_budget: u32,
    /// Window length in seconds.
    pub window_seconds: u32,
    /// Subscription-wide budget = this × `vault_budget`, shared by the subscription's vaults.
    pub subscription_multiplier: u32,
    /// `Retry-After` (seconds) on 429s; none by default, like the captured responses.
    pub retry_after_seconds: Option<u64>,
    /// `x-ms-retry-after-ms` on 429s.
    pub retry_after_ms: Option<u64>,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            enabled: false,
            vault_budget: 4000,
            window_seconds: 10,
            subscription_multiplier: 5,
            retry_after_seconds: None,
            retry_after_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, capacity: f64, per_second: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.at = now;
    }
}

/// Throttle settings and buckets.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    settings: ThrottleSettings,
    vaults: HashMap<String, Bucket>,
    subscriptions: HashMap<String, Bucket>,
}

impl Throttle {
    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    /// New settings start with full buckets.
    pub fn set(&mut self, settings: ThrottleSettings) {
        self.settings = settings;
        self.vaults.clear();
        self.subscriptions.clear();
    }

    /// Takes `weight` from the vault's and the subscription's bucket, or refuses without taking.
    pub fn admit(&mut self, vault: &str, subscription: &str, weight: u32, now: Instant) -> bool {
        let s = &self.settings;
        if !s.enabled {
            return true;
        }
        let vault_cap = f64::from(s.vault_budget);
        let sub_cap = vault_cap * f64::from(s.subscription_multiplier.max(1));
        let window = f64::from(s.window_seconds.max(1));
        let weight = f64::from(weight);
        let fresh = |capacity: f64| Bucket {
            tokens: capacity,
            at: now,
        };
        let mut v = self.vaults.get(vault).copied().unwrap_or(fresh(vault_cap));
        let mut sub = self
            .subscriptions
            .get(subscription)
            .copied()
            .unwrap_or(fresh(sub_cap));
        v.refill(vault_cap, vault_cap / window, now);
        sub.refill(sub_cap, sub_cap / window, now);
        let admitted = v.tokens >= weight && sub.tokens >= weight;
        if admitted {
            v.tokens -= weight;
            sub.tokens -= weight;
        }
        self.vaults.insert(vault.to_string(), v);
        self.subscriptions.insert(subscription.to_string(), sub);
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn throttle(budget: u32, multiplier: u32) -> Throttle {
        let mut t = Throttle::default();
        t.set(ThrottleSettings {
            enabled: true,
            vault_budget: budget,
            window_seconds: 10,
            subscription_multiplier: multiplier,
            ..ThrottleSettings::default()
        });
        t
    }

    #[test]
    fn vault_budget_is_enforced_and_refills() {
        let mut t = throttle(3, 5);
        let now = Instant::now();
        assert!((0..3).all(|_| t.admit("kv1", "s", 1, now)));
        assert!(!t.admit("kv1", "s", 1, now));
        assert!(
            t.admit("kv2", "s", 1, now),
            "another vault has its own budget"
        );
        assert!(t.admit("kv1", "s", 1, now + Duration::from_secs(4)));
    }

    #[test]
    fn subscription_budget_spans_vaults() {
        let mut t = throttle(2, 2);
        let now = Instant::now();
        assert!(t.admit("a", "s", 2, now));
        assert!(t.admit("b", "s", 2, now));
        assert!(
            !t.admit("c", "s", 1, now),
            "subscription budget of 4 is spent"
        );
        assert!(t.admit("d", "other", 1, now));
    }

    #[test]
    fn weights_count_and_disabled_admits_all() {
        let mut t = throttle(8, 5);
        let now = Instant::now();
        assert!(t.admit("kv", "s", 8, now));
        assert!(!t.admit("kv", "s", 1, now));
        t.set(ThrottleSettings::default());
        assert!((0..10_000).all(|_| t.admit("kv", "s", 8, now)));
    }
}
