//! Vault leases: the store-side lock that lets several kvkeep instances share one store while
//! only one of them backs up or prunes a given vault at a time (issue 11).
//!
//! One lock blob per vault, `locks/{vault}` under the store prefix, is created once (with
//! `If-None-Match: *`, like every other blob) and then only leased; it holds no backup data and
//! is the one key whose content or metadata changes after creation: the holder writes who it is
//! (instance name, pid, when) onto it, so that a refused instance can say who is in the way —
//! Azure never reveals another holder's lease id. Nothing that reads backups lists `locks/`:
//! restore, rebuild, retention and verify list only `manifests/`, `manifest-parts/` and
//! `objects/`.
//!
//! The semantics every backend meets (checked by the lease part of the store contract suite):
//!
//! - [`BlobStore::acquire_lease`] proposes the holder's lease id, which is derived from its
//!   instance name and therefore the same after a restart: acquiring a lease that the same id
//!   already holds succeeds at once (Azure allows re-acquiring with the current id), so a
//!   restarted instance takes its vaults back without waiting for its old lease to expire.
//!   Another holder is refused with [`LeaseError::Held`], naming the holder as recorded.
//! - [`BlobStore::renew_lease`] extends the lease by its duration; it fails with
//!   [`LeaseError::Lost`] when the lease was broken, released, or taken by another holder. The
//!   caller must stop the work the lease protects on `Lost` — and also when no renew has
//!   succeeded for a whole lease duration, whatever the errors were, because by then another
//!   instance may hold the vault (a lease has no fencing: only the holder's discipline keeps
//!   two instances apart).
//! - [`BlobStore::release_lease`] ends the lease; releasing a lease that is no longer ours
//!   (broken, expired, taken) is not an error — there is nothing left to release, and that makes
//!   release safe to retry.
//! - [`BlobStore::break_lease`] ends whoever's lease at once (break period 0), for operators and
//!   tests; the next acquire by anyone succeeds. Breaking a vault that has no lease succeeds.
//! - The holder records what it works on ([`LeaseWork`]: a backup run by id, or a prune). When
//!   the previous lease ended without a release — it expired, was broken, or (local store) its
//!   process died — the next acquire returns that record as [`Lease::abandoned`], so the new
//!   holder can mark the run left unfinished `interrupted`; after a release it returns none.
//!
//! Backends: Azure uses blob leases (15–60 s or infinite, the service enforces expiry); the
//! local store uses an OS file lock (`flock`), held while the process holds the file open, so
//! a lease there never expires while its process lives and always ends when it dies; the
//! in-memory store keeps leases in a map with expiry read from an injectable clock.
//!
//! Immutability: a container under a time-based retention policy or legal hold (WORM) refuses
//! the metadata writes that record a lease's holder, so lock blobs must live in a container
//! without such a policy: `[store] lock_container_url` names a separate container for them
//! ([`super::LocksElsewhere`]).
//!
//! [`BlobStore::acquire_lease`]: super::BlobStore::acquire_lease
//! [`BlobStore::renew_lease`]: super::BlobStore::renew_lease
//! [`BlobStore::release_lease`]: super::BlobStore::release_lease
//! [`BlobStore::break_lease`]: super::BlobStore::break_lease

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::model::{BlobKey, RunId, VaultName};

/// Where lock blobs live, under the store prefix. Reserved: no backup is ever written here.
pub const LOCKS_PREFIX: &str = "locks/";

/// The lock blob of `vault`: `locks/{vault}`.
pub fn lock_key(vault: &VaultName) -> BlobKey {
    // Vault names are letters, digits and single hyphens, so this is always a valid key.
    format!("{LOCKS_PREFIX}{}", vault.as_str())
        .parse()
        .unwrap_or_else(|_| unreachable!("a vault name is a valid blob key segment"))
}

/// Who asks for leases: a kvkeep instance, by name, and the lease id it always proposes.
///
/// The lease id is derived from the name (a UUID of version 8, "custom", from SHA-256), so it
/// is the same after a restart and on every vault; it is not a secret — anyone who may write
/// to the container may break any lease anyway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseHolder {
    instance: String,
    lease_id: String,
    /// What the lease is taken for, recorded on the lock blob beside the name.
    work: Option<LeaseWork>,
}

/// What a holder takes a vault's lease for, recorded on the lock blob so that the next holder
/// can tell which run a holder that never released its lease left unfinished.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum LeaseWork {
    /// A backup run, by its id.
    Backup {
        /// The run.
        run: RunId,
    },
    /// A prune.
    Prune,
}

impl fmt::Display for LeaseWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseWork::Backup { run } => write!(f, "backup run {run}"),
            LeaseWork::Prune => f.write_str("a prune"),
        }
    }
}

impl LeaseHolder {
    /// The longest instance name (a DNS host name's limit).
    pub const MAX_INSTANCE_LEN: usize = 253;

    /// A holder named `instance`: 1–253 characters of ASCII letters, digits, `.`, `_` and `-`
    /// (a host name fits), because the name travels in an HTTP header as blob metadata.
    pub fn new(instance: &str) -> Result<Self, LeaseError> {
        let bad = |reason: &str| LeaseError::InvalidInstance {
            name: instance.to_string(),
            reason: reason.to_string(),
        };
        if instance.is_empty() {
            return Err(bad("it is empty"));
        }
        if instance.len() > Self::MAX_INSTANCE_LEN {
            return Err(bad("it is longer than 253 characters"));
        }
        if !instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad(
                "use only ascii letters, digits, '.', '_' and '-' (a host name fits)",
            ));
        }
        Ok(LeaseHolder {
            instance: instance.to_string(),
            lease_id: lease_id_for(instance),
            work: None,
        })
    }

    /// The same holder (same name, same lease id) taking the lease for `work`, which it records
    /// on the lock blob.
    pub fn for_work(&self, work: LeaseWork) -> LeaseHolder {
        LeaseHolder {
            work: Some(work),
            ..self.clone()
        }
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The lease id this holder proposes (a lowercase UUID).
    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }

    /// What this holder records on the lock blob when it acquires at `now` (Unix seconds).
    pub(crate) fn info_at(&self, now: i64) -> HolderInfo {
        HolderInfo {
            instance: self.instance.clone(),
            pid: Some(std::process::id()),
            acquired_at: Some(now),
            work: self.work.clone(),
        }
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.instance)
    }
}

/// The lease id of `instance`: the first 16 bytes of SHA-256 over a domain tag and the name,
/// formatted as a UUID with version 8 and the RFC 9562 variant (Azure wants a GUID).
fn lease_id_for(instance: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"kvkeep lease id v1\0")
        .chain_update(instance.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// How long a lease lasts unless renewed. Azure allows 15 to 60 seconds, or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseDuration {
    /// A timed lease of this many seconds (15–60; build with [`LeaseDuration::seconds`]).
    Seconds(u8),
    /// A lease that lasts until released or broken — an instance that dies leaves it behind
    /// until someone breaks it, so kvkeep's runs use timed leases.
    Infinite,
}

impl LeaseDuration {
    /// The shortest timed lease Azure grants.
    pub const MIN_SECONDS: u64 = 15;
    /// The longest timed lease Azure grants.
    pub const MAX_SECONDS: u64 = 60;
    /// The lease kvkeep's runs take: 60 s, renewed every 20 s (see [`Self::renew_interval`]),
    /// so two renewals may fail before the lease runs out.
    pub const DEFAULT: LeaseDuration = LeaseDuration::Seconds(60);

    /// A timed lease of `secs` seconds, if Azure allows it (15–60).
    pub fn seconds(secs: u64) -> Result<Self, LeaseError> {
        if (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&secs) {
            Ok(LeaseDuration::Seconds(secs as u8))
        } else {
            Err(LeaseError::InvalidDuration { seconds: secs })
        }
    }

    /// The length of a timed lease; `None` for an infinite one.
    pub fn as_duration(self) -> Option<Duration> {
        match self {
            LeaseDuration::Seconds(s) => Some(Duration::from_secs(u64::from(s))),
            LeaseDuration::Infinite => None,
        }
    }

    /// How often to renew: a third of the duration (20 s for 60 s); `None` for an infinite
    /// lease, which needs no renewal.
    pub fn renew_interval(self) -> Option<Duration> {
        self.as_duration().map(|d| d / 3)
    }

    /// The value of Azure's `x-ms-lease-duration`: the seconds, or -1 for infinite.
    pub(crate) fn azure_seconds(self) -> i32 {
        match self {
            LeaseDuration::Seconds(s) => i32::from(s),
            LeaseDuration::Infinite => -1,
        }
    }

    /// When a lease of this duration taken or renewed at `now` runs out; `None` = never.
    pub(crate) fn expiry_from(self, now: i64) -> Option<i64> {
        match self {
            LeaseDuration::Seconds(s) => Some(now.saturating_add(i64::from(s))),
            LeaseDuration::Infinite => None,
        }
    }
}

impl fmt::Display for LeaseDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseDuration::Seconds(s) => write!(f, "{s} s"),
            LeaseDuration::Infinite => f.write_str("infinite"),
        }
    }
}

/// A lease held on one vault's lock blob. Cheap to clone: a renewal task may hold a copy while
/// the run holds another and releases it at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    vault: VaultName,
    holder: LeaseHolder,
    duration: LeaseDuration,
    acquired_at: i64,
    abandoned: Option<HolderInfo>,
}

impl Lease {
    pub(crate) fn new(
        vault: VaultName,
        holder: LeaseHolder,
        duration: LeaseDuration,
        acquired_at: i64,
    ) -> Self {
        Lease {
            vault,
            holder,
            duration,
            acquired_at,
            abandoned: None,
        }
    }

    /// The lease, noting what the previous holder left behind (see [`Lease::abandoned`]).
    pub(crate) fn after_abandoned(mut self, previous: Option<HolderInfo>) -> Self {
        self.abandoned = previous;
        self
    }

    /// What the previous holder recorded, when its lease ended without a release: it expired,
    /// was broken, or (local store) the holder's process died — or the holder re-acquired its
    /// own lease after a restart. The work it recorded may then be unfinished: a backup run
    /// that wrote no manifest is the new holder's to mark interrupted. `None` when the previous
    /// lease was released (its holder finished what it was doing) or there was none.
    pub fn abandoned(&self) -> Option<&HolderInfo> {
        self.abandoned.as_ref()
    }

    /// The vault the lease protects.
    pub fn vault(&self) -> &VaultName {
        &self.vault
    }

    /// Who holds it.
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// How long it lasts unless renewed.
    pub fn duration(&self) -> LeaseDuration {
        self.duration
    }

    /// When it was acquired (Unix seconds, the store's clock).
    pub fn acquired_at(&self) -> i64 {
        self.acquired_at
    }

    /// Its lock blob, `locks/{vault}`.
    pub fn key(&self) -> BlobKey {
        lock_key(&self.vault)
    }
}

/// Who holds a lease, as its holder recorded it on the lock blob. Best effort: a holder that
/// acquired a moment ago may not have written it yet, so a refusal can name the previous holder
/// or nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    /// The holder's instance name.
    pub instance: String,
    /// Its process id, on its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When it acquired the lease (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquired_at: Option<i64>,
    /// What it took the lease for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<LeaseWork>,
}

impl fmt::Display for HolderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kvkeep instance {}", self.instance)?;
        match (self.pid, self.acquired_at) {
            (Some(pid), Some(at)) => write!(
                f,
                " (pid {pid}, since {})",
                crate::restore::plan::rfc3339(at)
            ),
            (Some(pid), None) => write!(f, " (pid {pid})"),
            (None, Some(at)) => write!(f, " (since {})", crate::restore::plan::rfc3339(at)),
            (None, None) => Ok(()),
        }?;
        match &self.work {
            Some(work) => write!(f, " for {work}"),
            None => Ok(()),
        }
    }
}

/// Metadata names on an Azure lock blob (C# identifiers, as Azure requires).
pub(crate) const META_INSTANCE: &str = "kvkeep_instance";
pub(crate) const META_PID: &str = "kvkeep_pid";
pub(crate) const META_ACQUIRED_AT: &str = "kvkeep_acquired_at";
pub(crate) const META_TASK: &str = "kvkeep_task";
pub(crate) const META_RUN: &str = "kvkeep_run";

impl HolderInfo {
    /// As blob metadata.
    pub(crate) fn to_metadata(&self) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::new();
        m.insert(META_INSTANCE.to_string(), self.instance.clone());
        if let Some(pid) = self.pid {
            m.insert(META_PID.to_string(), pid.to_string());
        }
        if let Some(at) = self.acquired_at {
            m.insert(META_ACQUIRED_AT.to_string(), at.to_string());
        }
        match &self.work {
            Some(LeaseWork::Backup { run }) => {
                m.insert(META_TASK.to_string(), "backup".to_string());
                m.insert(META_RUN.to_string(), run.to_string());
            }
            Some(LeaseWork::Prune) => {
                m.insert(META_TASK.to_string(), "prune".to_string());
            }
            None => {}
        }
        m
    }

    /// From blob metadata; `None` without an instance name. Metadata names are compared without
    /// case: the service and proxies may change it.
    pub(crate) fn from_metadata(m: &std::collections::HashMap<String, String>) -> Option<Self> {
        let get = |name: &str| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        let instance = get(META_INSTANCE).filter(|v| !v.is_empty())?;
        Some(HolderInfo {
            // Only what a valid holder could have written is repeated in messages.
            instance: LeaseHolder::new(instance).ok()?.instance,
            pid: get(META_PID).and_then(|v| v.parse().ok()),
            acquired_at: get(META_ACQUIRED_AT).and_then(|v| v.parse().ok()),
            work: match get(META_TASK) {
                Some("backup") => get(META_RUN)
                    .and_then(|v| v.parse().ok())
                    .map(|run| LeaseWork::Backup { run }),
                Some("prune") => Some(LeaseWork::Prune),
                _ => None,
            },
        })
    }
}

/// Why a lease operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another holder has the vault's lease.
    #[error("vault {vault} is locked in {store} by {}; one kvkeep instance works on a vault at a time: try again when its run ends (the lease of an instance that died ends by itself within its duration, at most 60 s)", by.as_ref().map_or_else(|| "another kvkeep instance, which did not record its name".to_string(), ToString::to_string))]
    Held {
        /// The vault.
        vault: VaultName,
        /// The store, for the message.
        store: String,
        /// Who holds it, as far as the lock blob says.
        by: Option<HolderInfo>,
    },
    /// Our lease is gone: broken, expired and taken, or released. The work it protected must
    /// stop, because another instance may be doing it now.
    #[error("the lease on vault {vault} in {store} was lost ({detail}); another kvkeep instance may be working on the vault, so this run must stop")]
    Lost {
        /// The vault.
        vault: VaultName,
        /// The store, for the message.
        store: String,
        /// What the store said.
        detail: String,
    },
    /// A duration Azure does not grant.
    #[error("a lease of {seconds} s is not possible: azure blob leases last 15 to 60 s, or until released")]
    InvalidDuration {
        /// The duration asked for.
        seconds: u64,
    },
    /// An instance name that cannot be recorded on a lock blob.
    #[error("instance name {name:?} cannot hold leases: {reason}")]
    InvalidInstance {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The store failed (unreachable, denied, throttled …).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LeaseError {
    /// Whether repeating the operation may succeed (a throttled or transient store failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LeaseError::Store(e) if e.is_retryable())
    }

    /// The delay the service asked for before a retry, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LeaseError::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(s: &str) -> VaultName {
        s.parse().expect("vault")
    }

    #[test]
    fn lease_ids_are_stable_uuids_distinct_per_instance() {
        let a = LeaseHolder::new("web-1.example.com").expect("holder");
        let again = LeaseHolder::new("web-1.example.com").expect("holder");
        let b = LeaseHolder::new("web-2.example.com").expect("holder");
        assert_eq!(a.lease_id(), again.lease_id(), "stable across restarts");
        assert_ne!(a.lease_id(), b.lease_id());
        let id = a.lease_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(id
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(&id[14..15], "8", "version 8: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
    }

    #[test]
    fn instance_names_are_validated() {
        for bad in ["", "has space", "ünï", "a/b", &"x".repeat(254)] {
            let err = LeaseHolder::new(bad).expect_err(bad);
            assert!(matches!(err, LeaseError::InvalidInstance { .. }), "{err}");
        }
        for good in ["a", "web_1", "host.example.com", &"x".repeat(253)] {
            LeaseHolder::new(good).expect(good);
        }
    }

    #[test]
    fn durations_are_those_azure_grants() {
        for bad in [0, 14, 61, 3600] {
            let err = LeaseDuration::seconds(bad).expect_err("out of range");
            assert_eq!(err, LeaseError::InvalidDuration { seconds: bad });
            assert!(err.to_string().contains("15 to 60 s"), "{err}");
        }
        assert_eq!(
            LeaseDuration::seconds(15).expect("15"),
            LeaseDuration::Seconds(15)
        );
        assert_eq!(
            LeaseDuration::seconds(60).expect("60"),
            LeaseDuration::DEFAULT
        );
        assert_eq!(
            LeaseDuration::DEFAULT.renew_interval(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(LeaseDuration::Infinite.renew_interval(), None);
        assert_eq!(LeaseDuration::Infinite.azure_seconds(), -1);
        assert_eq!(LeaseDuration::DEFAULT.expiry_from(100), Some(160));
        assert_eq!(LeaseDuration::Infinite.expiry_from(100), None);
    }

    #[test]
    fn holder_info_round_trips_through_metadata_and_names_the_holder() {
        let info = LeaseHolder::new("web-1").expect("holder").info_at(0);
        let back = HolderInfo::from_metadata(&info.to_metadata()).expect("parsed");
        assert_eq!(back, info);
        let text = back.to_string();
        assert!(
            text.starts_with("kvkeep instance web-1 (pid ")
                && text.ends_with("since 1970-01-01T00:00:00Z)"),
            "{text}"
        );

        // What the holder works on travels too, and is named.
        let run: RunId = "0123456789abcdef".parse().expect("run id");
        let working = LeaseHolder::new("web-1")
            .expect("holder")
            .for_work(LeaseWork::Backup { run: run.clone() })
            .info_at(0);
        let back = HolderInfo::from_metadata(&working.to_metadata()).expect("parsed");
        assert_eq!(back.work, Some(LeaseWork::Backup { run }));
        assert!(
            back.to_string()
                .ends_with(" for backup run 0123456789abcdef"),
            "{back}"
        );
        let json = serde_json::to_string(&back).expect("json");
        assert_eq!(
            serde_json::from_str::<HolderInfo>(&json).expect("back"),
            back
        );
        let pruning = LeaseHolder::new("web-1")
            .expect("holder")
            .for_work(LeaseWork::Prune)
            .info_at(0);
        let back = HolderInfo::from_metadata(&pruning.to_metadata()).expect("parsed");
        assert_eq!(back.work, Some(LeaseWork::Prune));
        assert!(back.to_string().ends_with(" for a prune"), "{back}");

        // Names in another case, damaged numbers and a missing name.
        let mut m = std::collections::HashMap::new();
        m.insert("KVKEEP_INSTANCE".to_string(), "web-2".to_string());
        m.insert(META_PID.to_string(), "not a pid".to_string());
        let partial = HolderInfo::from_metadata(&m).expect("name found");
        assert_eq!(partial.instance, "web-2");
        assert_eq!(partial.pid, None);
        assert_eq!(partial.to_string(), "kvkeep instance web-2");
        m.insert("kvkeep_instance".to_string(), "bad name\r\n".to_string());
        m.remove("KVKEEP_INSTANCE");
        assert_eq!(HolderInfo::from_metadata(&m), None);
        assert_eq!(
            HolderInfo::from_metadata(&std::collections::HashMap::new()),
            None
        );
    }

    #[test]
    fn refusals_name_the_vault_the_store_and_the_holder() {
        let err = LeaseError::Held {
            vault: vault("kv1"),
            store: "local store /s".to_string(),
            by: Some(HolderInfo {
                instance: "web-1".to_string(),
                pid: Some(42),
                acquired_at: Some(0),
                work: None,
            }),
        };
        assert_eq!(
            err.to_string(),
            "vault kv1 is locked in local store /s by kvkeep instance web-1 (pid 42, since 1970-01-01T00:00:00Z); one kvkeep instance works on a vault at a time: try again when its run ends (the lease of an instance that died ends by itself within its duration, at most 60 s)"
        );
        let err = LeaseError::Held {
            vault: vault("kv1"),
            store: "s".to_string(),
            by: None,
        };
        assert!(err.to_string().contains("did not record its name"), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(lock_key(&vault("KV-One")).as_str(), "locks/kv-one");
    }
}
