//! [`InMemoryVaultSource`]: the fake [`VaultSource`]. Same semantics as Key Vault where backup
//! and restore depend on them (soft delete, managed key/secret of a certificate, 409 on restore
//! over an existing or soft-deleted name, 403 on backing up a managed object or purging under
//! purge protection), plus what tests need: seeding, programmable failures per operation and
//! object, and call counters ("a run with no changes makes zero backup calls").
//!
//! Paging does not exist here. Blobs are JSON with a marker prefix — opaque to callers, as the
//! service's are. A std mutex guards the state: it is never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::error::{SourceError, SourceErrorKind, SourceOp};
use super::{
    warn_many_versions, BackupBlob, DeletedInfo, ObjectProperties, ObjectSummary, RestoredObject,
    Tags, VaultSource, VersionInfo, MAX_BACKUP_VERSIONS,
};
use crate::model::{ObjectKind, ObjectName, ObjectVersion, Validity, VaultName};

const BLOB_MARKER: &[u8] = b"kvkeep-in-memory-backup-v1\n";

/// One version of a fake object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FakeVersion {
    version: ObjectVersion,
    created: i64,
    updated: i64,
    enabled: bool,
    tags: Tags,
    content_type: Option<String>,
    /// `nbf` and `exp`. Defaulted so blobs written before the fake kept them still restore.
    #[serde(default)]
    validity: Validity,
    /// The secret value or stand-in key material; only ever inside a blob.
    value: Vec<u8>,
}

/// A fake object: all versions, the last one current.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FakeObject {
    name: ObjectName,
    kind: ObjectKind,
    managed: bool,
    versions: Vec<FakeVersion>,
    deleted_on: Option<i64>,
}

impl FakeObject {
    fn current(&self) -> Option<&FakeVersion> {
        self.versions.last()
    }
}

/// A blob: the object plus, for a certificate, its managed key and secret.
#[derive(Serialize, Deserialize)]
struct FakeBlob {
    object: FakeObject,
    managed: Vec<FakeObject>,
}

/// What to put in the vault with [`InMemoryVaultSource::put`].
#[derive(Debug, Clone, Default)]
pub struct SeedObject {
    /// Tags of the new version.
    pub tags: Tags,
    /// Content type (secrets).
    pub content_type: Option<String>,
    /// Whether the new version is enabled.
    pub enabled: bool,
    /// `nbf` and `exp` of the new version.
    pub validity: Validity,
    /// The value (secrets) or stand-in key material.
    pub value: Vec<u8>,
}

impl SeedObject {
    /// An enabled version with this value and nothing else.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        SeedObject {
            enabled: true,
            value: value.into(),
            ..SeedObject::default()
        }
    }
}

/// A programmed failure: calls matching `op`, `kind` and `name` (each `None` = any) fail with
/// `error` — the next `times` of them, or all when `times` is `None`.
#[derive(Debug, Clone)]
pub struct FailureRule {
    /// Operation to fail (any when `None`).
    pub op: Option<SourceOp>,
    /// Kind to fail (any when `None`).
    pub kind: Option<ObjectKind>,
    /// Object to fail (any when `None`; compared case-insensitively).
    pub name: Option<String>,
    /// How the call fails.
    pub error: SourceErrorKind,
    /// Retry-After reported with a `Throttled` failure.
    pub retry_after: Option<std::time::Duration>,
    /// How many more calls fail (`None` = every one).
    pub times: Option<u32>,
}

impl FailureRule {
    /// A rule failing every call of `op` on `kind`/`name` with `error`.
    pub fn new(op: SourceOp, kind: ObjectKind, name: &str, error: SourceErrorKind) -> Self {
        FailureRule {
            op: Some(op),
            kind: Some(kind),
            name: Some(name.to_string()),
            error,
            retry_after: None,
            times: None,
        }
    }

    /// Limits the rule to the next `n` matching calls.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Reports this Retry-After with a `Throttled` failure.
    pub fn retry_after(mut self, delay: std::time::Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

#[derive(Debug, Default)]
struct State {
    /// (kind, canonical name) → object; active and soft-deleted alike (`deleted_on`).
    objects: BTreeMap<(ObjectKind, String), FakeObject>,
    failures: Vec<FailureRule>,
    calls: HashMap<(SourceOp, ObjectKind), u64>,
    purge_protection: bool,
    /// The fake clock (Unix seconds), advanced by every change so `updated` always moves.
    clock: i64,
    next_version: u64,
}

/// The in-memory Key Vault.
#[derive(Debug)]
pub struct InMemoryVaultSource {
    vault: VaultName,
    state: Mutex<State>,
}

/// A soft-deleted object as `get_deleted`/`list_deleted` report it (`None` when it is live).
fn deleted_info(o: &FakeObject) -> Option<DeletedInfo> {
    o.deleted_on.map(|deleted| DeletedInfo {
        name: o.name.clone(),
        deleted_on: Some(deleted),
        scheduled_purge: Some(deleted + 90 * 86_400),
        managed: o.managed,
    })
}

fn key(kind: ObjectKind, name: &ObjectName) -> (ObjectKind, String) {
    (kind, name.canonical())
}

impl InMemoryVaultSource {
    /// An empty vault with soft delete and no purge protection; its clock starts at `now`
    /// (Unix seconds).
    pub fn new(vault: VaultName, now: i64) -> Self {
        InMemoryVaultSource {
            vault,
            state: Mutex::new(State {
                clock: now,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every change is one insert or
        // remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Turns purge protection on or off.
    pub fn set_purge_protection(&self, on: bool) {
        self.lock().purge_protection = on;
    }

    /// Adds a version to an object, creating it if needed, and returns the new version id.
    /// Panics on a soft-deleted name (seeding is test set-up; Key Vault would answer 409).
    pub fn put(&self, kind: ObjectKind, name: &ObjectName, seed: SeedObject) -> ObjectVersion {
        let mut state = self.lock();
        Self::put_locked(&mut state, kind, name, seed, false)
    }

    fn put_locked(
        state: &mut State,
        kind: ObjectKind,
        name: &ObjectName,
        seed: SeedObject,
        managed: bool,
    ) -> ObjectVersion {
        state.clock += 1;
        state.next_version += 1;
        let version: ObjectVersion = format!("{:032x}", state.next_version)
            .parse()
            .expect("32 hex digits are a valid version");
        let now = state.clock;
        let object = state
            .objects
            .entry(key(kind, name))
            .or_insert_with(|| FakeObject {
                name: name.clone(),
                kind,
                managed,
                versions: Vec::new(),
                deleted_on: None,
            });
        assert!(
            object.deleted_on.is_none(),
            "{kind} {name} is soft-deleted; recover or purge it first"
        );
        object.versions.push(FakeVersion {
            version: version.clone(),
            created: now,
            updated: now,
            enabled: seed.enabled,
            tags: seed.tags,
            content_type: seed.content_type,
            validity: seed.validity,
            value: seed.value,
        });
        version
    }

    /// Adds a certificate version with its managed key and secret (same name, same version),
    /// as importing a certificate does.
    pub fn put_certificate(&self, name: &ObjectName, seed: SeedObject) -> ObjectVersion {
        let mut state = self.lock();
        let version = Self::put_locked(
            &mut state,
            ObjectKind::Certificates,
            name,
            seed.clone(),
            false,
        );
        for kind in [ObjectKind::Keys, ObjectKind::Secrets] {
            Self::put_locked(&mut state, kind, name, seed.clone(), true);
            // The managed versions share the certificate's version id.
            if let Some(v) = state
                .objects
                .get_mut(&key(kind, name))
                .and_then(|o| o.versions.last_mut())
            {
                v.version = version.clone();
            }
        }
        version
    }

    /// Changes attributes of the current version (enabled, tags), moving `updated`.
    pub fn update(&self, kind: ObjectKind, name: &ObjectName, enabled: bool, tags: Tags) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(v) = state
            .objects
            .get_mut(&key(kind, name))
            .filter(|o| o.deleted_on.is_none())
            .and_then(|o| o.versions.last_mut())
        {
            v.enabled = enabled;
            v.tags = tags;
            v.updated = now;
        }
    }

    /// Sets `nbf` and `exp` of the current version, moving `updated` as Key Vault's update
    /// does (no new version).
    pub fn set_validity(&self, kind: ObjectKind, name: &ObjectName, validity: Validity) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(v) = state
            .objects
            .get_mut(&key(kind, name))
            .filter(|o| o.deleted_on.is_none())
            .and_then(|o| o.versions.last_mut())
        {
            v.validity = validity;
            v.updated = now;
        }
    }

    /// Enables or disables one version (an older one, say), moving its `updated`: a change the
    /// object listing does not show, only the version list does.
    pub fn set_version_enabled(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
        version: &ObjectVersion,
        enabled: bool,
    ) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(v) = state
            .objects
            .get_mut(&key(kind, name))
            .filter(|o| o.deleted_on.is_none())
            .and_then(|o| o.versions.iter_mut().find(|v| v.version == *version))
        {
            v.enabled = enabled;
            v.updated = now;
        }
    }

    /// Programs a failure.
    pub fn fail(&self, rule: FailureRule) {
        self.lock().failures.push(rule);
    }

    /// Removes every programmed failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// How many calls of `op` on `kind` were made (failed ones included).
    pub fn calls(&self, op: SourceOp, kind: ObjectKind) -> u64 {
        self.lock().calls.get(&(op, kind)).copied().unwrap_or(0)
    }

    /// How many calls of `op` were made, all kinds together.
    pub fn calls_of(&self, op: SourceOp) -> u64 {
        self.lock()
            .calls
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Resets the call counters.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn error(
        &self,
        kind: SourceErrorKind,
        op: SourceOp,
        object_kind: ObjectKind,
        name: Option<&str>,
        detail: impl AsRef<str>,
    ) -> SourceError {
        SourceError::new(kind, op, &self.vault, object_kind, name, detail)
    }

    fn not_found(&self, op: SourceOp, kind: ObjectKind, name: &ObjectName) -> SourceError {
        let singular = kind.as_str().trim_end_matches('s');
        self.error(
            SourceErrorKind::NotFound,
            op,
            kind,
            Some(name.as_str()),
            format!("a {singular} with (name/id) {name} was not found in this key vault"),
        )
        .with_codes(Some(not_found_code(kind).into()), None)
    }

    /// A 403 worded as the service words it (`error.code` "Forbidden").
    fn forbidden(
        &self,
        op: SourceOp,
        kind: ObjectKind,
        name: &ObjectName,
        detail: impl AsRef<str>,
    ) -> SourceError {
        self.error(
            SourceErrorKind::Forbidden,
            op,
            kind,
            Some(name.as_str()),
            detail,
        )
        .with_codes(Some("Forbidden".into()), None)
    }

    /// Counts the call and fires a matching failure rule, if any.
    fn enter(
        &self,
        state: &mut State,
        op: SourceOp,
        kind: ObjectKind,
        name: Option<&ObjectName>,
    ) -> Result<(), SourceError> {
        *state.calls.entry((op, kind)).or_default() += 1;
        let hit = state.failures.iter_mut().position(|rule| {
            rule.op.is_none_or(|o| o == op)
                && rule.kind.is_none_or(|k| k == kind)
                && rule
                    .name
                    .as_deref()
                    .is_none_or(|n| name.is_some_and(|name| name.as_str().eq_ignore_ascii_case(n)))
                && rule.times != Some(0)
        });
        let Some(index) = hit else { return Ok(()) };
        let rule = &mut state.failures[index];
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        let (error, retry_after) = (rule.error, rule.retry_after);
        Err(self
            .error(
                error,
                op,
                kind,
                name.map(ObjectName::as_str),
                "injected failure",
            )
            .with_retry_after(retry_after))
    }

    fn active<'a>(state: &'a State, kind: ObjectKind, name: &ObjectName) -> Option<&'a FakeObject> {
        state
            .objects
            .get(&key(kind, name))
            .filter(|o| o.deleted_on.is_none())
    }

    fn soft_deleted(state: &State, kind: ObjectKind, name: &ObjectName) -> bool {
        state
            .objects
            .get(&key(kind, name))
            .is_some_and(|o| o.deleted_on.is_some())
    }

    /// The certificate's managed companions, moved along with it by delete/recover/purge.
    fn companions(kind: ObjectKind) -> &'static [ObjectKind] {
        match kind {
            ObjectKind::Certificates => &[ObjectKind::Keys, ObjectKind::Secrets],
            _ => &[],
        }
    }
}

fn not_found_code(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secrets => "SecretNotFound",
        ObjectKind::Keys => "KeyNotFound",
        ObjectKind::Certificates => "CertificateNotFound",
    }
}

#[async_trait]
impl VaultSource for InMemoryVaultSource {
    fn vault(&self) -> &VaultName {
        &self.vault
    }

    async fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectSummary>, SourceError> {
        let mut state = self.lock();
        self.enter(&mut state, SourceOp::List, kind, None)?;
        Ok(state
            .objects
            .values()
            .filter(|o| o.kind == kind && o.deleted_on.is_none())
            .filter_map(|o| {
                let current = o.current()?;
                Some(ObjectSummary {
                    name: o.name.clone(),
                    kind,
                    // Like the service: lists carry no version.
                    version: None,
                    updated: Some(current.updated),
                    enabled: current.enabled,
                    tags: current.tags.clone(),
                    validity: current.validity,
                    managed: o.managed,
                    content_type: current.content_type.clone(),
                })
            })
            .collect())
    }

    async fn list_versions(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<VersionInfo>, SourceError> {
        let versions: Vec<VersionInfo> = {
            let mut state = self.lock();
            self.enter(&mut state, SourceOp::ListVersions, kind, Some(name))?;
            Self::active(&state, kind, name)
                .map(|o| {
                    o.versions
                        .iter()
                        .map(|v| VersionInfo {
                            version: v.version.clone(),
                            created: Some(v.created),
                            updated: Some(v.updated),
                            enabled: v.enabled,
                            tags: v.tags.clone(),
                            content_type: v.content_type.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        warn_many_versions(&self.vault, kind, name, versions.len());
        Ok(versions)
    }

    async fn backup(&self, kind: ObjectKind, name: &ObjectName) -> Result<BackupBlob, SourceError> {
        let op = SourceOp::Backup;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, Some(name))?;
        let object =
            Self::active(&state, kind, name).ok_or_else(|| self.not_found(op, kind, name))?;
        if object.managed {
            let singular = kind.as_str().trim_end_matches('s');
            return Err(self.forbidden(op, kind, name, format!("Operation \"backup\" is not allowed on this {singular}, since it is associated with a certificate. Perform the operation on the corresponding certificate")));
        }
        if object.versions.len() > MAX_BACKUP_VERSIONS {
            return Err(self.error(
                SourceErrorKind::Permanent,
                op,
                kind,
                Some(name.as_str()),
                format!("the object has {} versions, more than the backup limit of {MAX_BACKUP_VERSIONS}", object.versions.len()),
            ));
        }
        let managed = Self::companions(kind)
            .iter()
            .filter_map(|k| Self::active(&state, *k, name).cloned())
            .collect();
        let blob = FakeBlob {
            object: object.clone(),
            managed,
        };
        let mut bytes = BLOB_MARKER.to_vec();
        serde_json::to_writer(&mut bytes, &blob).map_err(|e| {
            self.error(
                SourceErrorKind::Permanent,
                op,
                kind,
                Some(name.as_str()),
                e.to_string(),
            )
        })?;
        Ok(BackupBlob::new(bytes))
    }

    async fn restore(&self, kind: ObjectKind, blob: &[u8]) -> Result<RestoredObject, SourceError> {
        let op = SourceOp::Restore;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, None)?;
        let corrupt = || {
            self.error(
                SourceErrorKind::Permanent,
                op,
                kind,
                None,
                "Backup blob is corrupt.",
            )
            .with_codes(Some("Malformed backup blob".into()), None)
        };
        let parsed: FakeBlob = blob
            .strip_prefix(BLOB_MARKER)
            .and_then(|json| serde_json::from_slice(json).ok())
            .ok_or_else(corrupt)?;
        if parsed.object.kind != kind {
            return Err(corrupt());
        }
        let name = parsed.object.name.clone();
        let taken = std::iter::once(kind)
            .chain(parsed.managed.iter().map(|m| m.kind))
            .any(|k| state.objects.contains_key(&key(k, &name)));
        if taken {
            let singular = kind.as_str().trim_end_matches('s');
            return Err(self
                .error(
                    SourceErrorKind::Conflict,
                    op,
                    kind,
                    Some(name.as_str()),
                    format!("There was a conflict restoring the {singular} '{name}'"),
                )
                .with_codes(Some("Conflict".into()), None));
        }
        let version = parsed
            .object
            .current()
            .map(|v| v.version.clone())
            .ok_or_else(corrupt)?;
        for mut object in std::iter::once(parsed.object).chain(parsed.managed) {
            object.deleted_on = None;
            state.objects.insert(key(object.kind, &object.name), object);
        }
        Ok(RestoredObject { name, version })
    }

    async fn list_deleted(&self, kind: ObjectKind) -> Result<Vec<DeletedInfo>, SourceError> {
        let mut state = self.lock();
        self.enter(&mut state, SourceOp::ListDeleted, kind, None)?;
        // Like the service: a certificate's managed key and secret, deleted with it, are not
        // listed on their own.
        Ok(state
            .objects
            .values()
            .filter(|o| o.kind == kind && !o.managed)
            .filter_map(deleted_info)
            .collect())
    }

    async fn get_deleted(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<DeletedInfo>, SourceError> {
        let mut state = self.lock();
        self.enter(&mut state, SourceOp::GetDeleted, kind, Some(name))?;
        Ok(state.objects.get(&key(kind, name)).and_then(deleted_info))
    }

    async fn recover(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        let op = SourceOp::Recover;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, Some(name))?;
        if !Self::soft_deleted(&state, kind, name) {
            return Err(self.not_found(op, kind, name));
        }
        for k in std::iter::once(&kind).chain(Self::companions(kind)) {
            if let Some(o) = state.objects.get_mut(&key(*k, name)) {
                o.deleted_on = None;
            }
        }
        Ok(())
    }

    async fn purge(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        let op = SourceOp::Purge;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, Some(name))?;
        if !Self::soft_deleted(&state, kind, name) {
            return Err(self.not_found(op, kind, name));
        }
        if state.purge_protection {
            return Err(self.forbidden(op, kind, name, "Operation \"purge\" is not allowed because purge protection is enabled for this vault"));
        }
        for k in std::iter::once(&kind).chain(Self::companions(kind)) {
            if Self::soft_deleted(&state, *k, name) {
                state.objects.remove(&key(*k, name));
            }
        }
        Ok(())
    }

    async fn delete(&self, kind: ObjectKind, name: &ObjectName) -> Result<(), SourceError> {
        let op = SourceOp::Delete;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, Some(name))?;
        let object =
            Self::active(&state, kind, name).ok_or_else(|| self.not_found(op, kind, name))?;
        if object.managed {
            return Err(self.forbidden(
                op,
                kind,
                name,
                "Operation \"delete\" is not allowed on an object associated with a certificate",
            ));
        }
        state.clock += 1;
        let now = state.clock;
        for k in std::iter::once(&kind).chain(Self::companions(kind)) {
            if let Some(o) = state
                .objects
                .get_mut(&key(*k, name))
                .filter(|o| o.deleted_on.is_none())
            {
                o.deleted_on = Some(now);
            }
        }
        Ok(())
    }

    async fn get_properties(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectProperties, SourceError> {
        let op = SourceOp::GetProperties;
        let mut state = self.lock();
        self.enter(&mut state, op, kind, Some(name))?;
        let object =
            Self::active(&state, kind, name).ok_or_else(|| self.not_found(op, kind, name))?;
        let current = object
            .current()
            .ok_or_else(|| self.not_found(op, kind, name))?;
        // As the service: reading a disabled secret version is refused (the GET returns the
        // value), while keys and certificates answer with their attributes.
        if kind == ObjectKind::Secrets && !current.enabled {
            return Err(self
                .error(
                    SourceErrorKind::Forbidden,
                    op,
                    kind,
                    Some(name.as_str()),
                    "Operation get is not allowed on a disabled secret.",
                )
                .with_codes(Some("Forbidden".into()), Some("SecretDisabled".into())));
        }
        Ok(ObjectProperties {
            name: object.name.clone(),
            kind,
            version: current.version.clone(),
            enabled: current.enabled,
            created: Some(current.created),
            updated: Some(current.updated),
            not_before: current.validity.not_before,
            expires: current.validity.expires,
            tags: current.tags.clone(),
            managed: object.managed,
            content_type: current.content_type.clone(),
        })
    }
}
