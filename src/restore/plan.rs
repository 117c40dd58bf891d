//! The restore plan: pure functions from what the index says existed at a point in time, the
//! operator's filters, the two vaults' locations and the target's current state, to one intended
//! action per object. Nothing here performs I/O, so every decision is table-tested with pinned
//! times and printed as is by `--dry-run`.
//!
//! Order of refusal, each before anything is written:
//! 1. nothing existed at the time, or an `--only` name did not exist then → [`PlanError`];
//! 2. a native blob cannot restore into the target (different known subscription or
//!    geography) → [`PlanError::Incompatible`], before the target is even read;
//! 3. per object, the target state and the conflict policy decide the action; a purge of a
//!    soft-deleted object is planned only when the restore after it is known to be accepted
//!    ([`purge_blocker`]), otherwise that object fails untouched.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::PayloadMode;
use crate::index::CaptureRecord;
use crate::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

/// What to do when the target already holds the name (active or soft-deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Leave the target's object alone and report it skipped (non-destructive default).
    #[default]
    Skip,
    /// Report the object failed.
    Fail,
    /// Recover a soft-deleted object (with the versions the vault still holds) instead of
    /// restoring the backup; active objects are skipped.
    RecoverThenSkip,
    /// Purge a soft-deleted object, then restore the backup. Refused under purge protection.
    /// Active objects are skipped: kvkeep never deletes a live object.
    PurgeThenRestore,
}

impl ConflictPolicy {
    /// The word used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Skip => "skip",
            ConflictPolicy::Fail => "fail",
            ConflictPolicy::RecoverThenSkip => "recover-then-skip",
            ConflictPolicy::PurgeThenRestore => "purge-then-restore",
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConflictPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "skip" => ConflictPolicy::Skip,
            "fail" => ConflictPolicy::Fail,
            "recover-then-skip" => ConflictPolicy::RecoverThenSkip,
            "purge-then-restore" => ConflictPolicy::PurgeThenRestore,
            other => {
                return Err(format!(
                "conflict policy {other:?} is not one of skip, fail, recover-then-skip, purge-then-restore"
            ))
            }
        })
    }
}

/// A vault as restore needs to know it: where it is and, when configured, which subscription
/// and geography it lives in (native backup blobs restore only within both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultLocation {
    /// The vault's name.
    pub name: VaultName,
    /// Its URL.
    pub url: String,
    /// Its subscription id, when configured.
    pub subscription: Option<String>,
    /// Its Azure geography, when configured.
    pub geography: Option<String>,
}

/// `KIND/NAME` as given to `--only`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// The kind.
    pub kind: ObjectKind,
    /// The name.
    pub name: ObjectName,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl FromStr for ObjectRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!(
                "{s:?} is not KIND/NAME (e.g. secrets/db-password, keys/signing, certificates/tls)"
            )
        })?;
        Ok(ObjectRef {
            kind: kind.parse().map_err(|_| {
                format!("{s:?}: kind {kind:?} is not keys, secrets or certificates")
            })?,
            name: name.parse().map_err(|e| format!("{s:?}: {e}"))?,
        })
    }
}

/// The target's state for one name, as surveyed before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TargetState {
    /// No object of that name, active or deleted.
    Absent,
    /// An active object holds the name.
    Active,
    /// A soft-deleted object holds the name.
    SoftDeleted {
        /// When the service will purge it, if it said.
        scheduled_purge: Option<i64>,
    },
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetState::Absent => "absent",
            TargetState::Active => "active",
            TargetState::SoftDeleted { .. } => "soft-deleted",
        })
    }
}

/// What the executor will do with one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Restore the backup (the name is free).
    Restore,
    /// Recover the soft-deleted object in the target; the backup is not used.
    Recover,
    /// Purge the soft-deleted object, then restore the backup.
    PurgeThenRestore,
    /// Leave it.
    Skip {
        /// Why, for a person.
        reason: String,
    },
    /// Report it failed without touching it.
    Fail {
        /// Why, and what to do.
        reason: String,
    },
}

impl Action {
    /// A short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Restore => "restore",
            Action::Recover => "recover",
            Action::PurgeThenRestore => "purge+restore",
            Action::Skip { .. } => "skip",
            Action::Fail { .. } => "fail",
        }
    }

    /// Whether carrying it out writes to the target.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Action::Restore | Action::Recover | Action::PurgeThenRestore
        )
    }
}

/// One object of the plan: the capture to restore and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedObject {
    /// Kind.
    pub kind: ObjectKind,
    /// Name as captured (the blob's envelope carries this spelling).
    pub name: ObjectName,
    /// The capture's blob.
    pub blob: BlobKey,
    /// The run that wrote it.
    pub run: RunId,
    /// When it was captured.
    pub captured_at: i64,
    /// Its current version at capture.
    pub current_version: ObjectVersion,
    /// That version's `updated`.
    pub updated: i64,
    /// Blob size as recorded.
    pub stored_bytes: u64,
    /// SHA-256 of the blob as recorded.
    pub sha256: String,
    /// Native or portable.
    pub payload: PayloadMode,
    /// The target's state for the name.
    pub target_state: TargetState,
    /// What will be done.
    #[serde(flatten)]
    pub action: Action,
}

/// Counts of a plan, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanStats {
    /// Objects to restore (including purge-then-restore).
    pub restore_objects: usize,
    /// Objects to recover.
    pub recover_objects: usize,
    /// Objects to skip.
    pub skip_objects: usize,
    /// Objects that will be reported failed.
    pub fail_objects: usize,
}

/// The computed intent of a restore: printed by `--dry-run`, carried out by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// The vault the backups come from.
    pub source: VaultLocation,
    /// The vault written to.
    pub target: VaultLocation,
    /// The point in time (Unix seconds).
    pub at: i64,
    /// The conflict policy.
    pub policy: ConflictPolicy,
    /// `--assume-compatible`: the operator vouches that the target accepts the source's native
    /// backups (same subscription, geography and, for HSM keys, a premium vault), so
    /// purge-then-restore may purge where kvkeep cannot check that itself.
    pub assume_compatible: bool,
    /// One entry per object, by kind then name.
    pub objects: Vec<PlannedObject>,
    /// Things the operator should know that do not stop the restore.
    pub warnings: Vec<String>,
}

impl RestorePlan {
    /// Counts by action.
    pub fn stats(&self) -> PlanStats {
        let mut s = PlanStats::default();
        for o in &self.objects {
            match o.action {
                Action::Restore | Action::PurgeThenRestore => s.restore_objects += 1,
                Action::Recover => s.recover_objects += 1,
                Action::Skip { .. } => s.skip_objects += 1,
                Action::Fail { .. } => s.fail_objects += 1,
            }
        }
        s
    }
}

/// Why no plan could be made. Nothing was written when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The index has no committed capture of the vault at or before the time.
    #[error("vault {vault} has no restore point at or before {at}: nothing restored; list restore points with `kvkeep list runs --vault {vault}` (or rebuild the index with `kvkeep index rebuild` on a fresh host)")]
    NothingAt {
        /// The vault.
        vault: VaultName,
        /// The time, as RFC 3339.
        at: String,
    },
    /// `--only` named objects that did not exist at the time.
    #[error("nothing restored: {} did not exist in vault {vault} at {at} according to the backups; {hint}", missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    UnknownObjects {
        /// The vault.
        vault: VaultName,
        /// The time, as RFC 3339.
        at: String,
        /// The names given that matched nothing.
        missing: Vec<ObjectRef>,
        /// What does exist (a few names) or how to list it.
        hint: String,
    },
    /// Native blobs cannot restore into the target.
    #[error("restore of vault {source_vault} into {target} refused before anything was written: {why}; {what_to_do}")]
    Incompatible {
        /// The source vault.
        source_vault: VaultName,
        /// The target vault.
        target: VaultName,
        /// Why.
        why: String,
        /// What to do.
        what_to_do: String,
    },
}

/// RFC 3339 form of Unix seconds, for messages.
pub fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

/// Step 1: the captures to restore — the point-in-time set filtered by `only` (empty = all).
/// `captures` is [`crate::index::Index::captures_as_of`]`(vault, at)`.
pub fn select(
    vault: &VaultName,
    at: i64,
    captures: Vec<CaptureRecord>,
    only: &[ObjectRef],
) -> Result<Vec<CaptureRecord>, PlanError> {
    if captures.is_empty() {
        return Err(PlanError::NothingAt {
            vault: vault.clone(),
            at: rfc3339(at),
        });
    }
    if only.is_empty() {
        return Ok(captures);
    }
    let key = |kind: ObjectKind, name: &ObjectName| (kind, name.canonical());
    let missing: Vec<ObjectRef> = only
        .iter()
        .filter(|r| {
            !captures
                .iter()
                .any(|c| key(c.kind, &c.name) == key(r.kind, &r.name))
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        const SHOWN: usize = 5;
        let mut names: Vec<String> = captures
            .iter()
            .take(SHOWN)
            .map(|c| format!("{}/{}", c.kind, c.name))
            .collect();
        if captures.len() > SHOWN {
            names.push(format!("… {} more", captures.len() - SHOWN));
        }
        return Err(unknown_objects(vault, at, missing, &names));
    }
    Ok(captures
        .into_iter()
        .filter(|c| {
            only.iter()
                .any(|r| key(c.kind, &c.name) == key(r.kind, &r.name))
        })
        .collect())
}

fn unknown_objects(
    vault: &VaultName,
    at: i64,
    missing: Vec<ObjectRef>,
    names: &[String],
) -> PlanError {
    PlanError::UnknownObjects {
        vault: vault.clone(),
        at: rfc3339(at),
        missing,
        hint: format!(
            "it held {} (see `kvkeep restore --dry-run` without --only for the full list)",
            names.join(", ")
        ),
    }
}

/// Step 2: whether native blobs among `selected` can restore into `target`. A difference in a
/// *known* subscription or geography refuses the whole plan; an unknown one is a warning (the
/// service itself refuses a foreign blob, but only after other objects may have been written).
pub fn check_compatibility(
    source: &VaultLocation,
    target: &VaultLocation,
    selected: &[CaptureRecord],
) -> Result<Vec<String>, PlanError> {
    let natives = selected
        .iter()
        .filter(|c| c.payload == PayloadMode::Native)
        .count();
    // Only the same URL proves the same vault: a `--to-vault` URL whose first label happens to
    // be the source's name may be another vault entirely (another cloud, a look-alike host).
    if natives == 0 || same_location(source, target) {
        return Ok(Vec::new());
    }
    let refuse = |why: String| {
        PlanError::Incompatible {
        source_vault: source.name.clone(),
        target: target.name.clone(),
        why,
        what_to_do: format!(
            "key vault restores its native backups only into a vault of the same subscription and geography: restore into such a vault (or back into {}), and copy keys elsewhere by other means",
            source.name
        ),
    }
    };
    if let (Some(s), Some(t)) = (&source.geography, &target.geography) {
        if !s.eq_ignore_ascii_case(t) {
            return Err(refuse(format!(
                "{natives} native backup(s) come from geography {s:?}, the target is in {t:?}"
            )));
        }
    }
    if let (Some(s), Some(t)) = (&source.subscription, &target.subscription) {
        if !s.eq_ignore_ascii_case(t) {
            return Err(refuse(format!(
                "{natives} native backup(s) come from subscription {s}, the target is in {t}"
            )));
        }
    }
    let mut warnings = Vec::new();
    let unknown: Vec<&str> = [
        ("geography", &source.geography, &target.geography),
        ("subscription", &source.subscription, &target.subscription),
    ]
    .iter()
    .filter(|(_, s, t)| s.is_none() || t.is_none())
    .map(|(what, _, _)| *what)
    .collect();
    if !unknown.is_empty() {
        warnings.push(format!(
            "the {} of {} or {} is not configured, so compatibility could not be checked before writing; key vault refuses native backups from another subscription or geography",
            unknown.join(" and "),
            source.name,
            target.name
        ));
    }
    Ok(warnings)
}

/// Whether two locations are certainly the same vault: both URLs known and of the same host.
/// Names alone prove nothing (an unconfigured `--to-vault` URL is named after its first label).
pub fn same_location(a: &VaultLocation, b: &VaultLocation) -> bool {
    let host = |u: &str| {
        url::Url::parse(u.trim()).ok().and_then(|u| {
            u.host_str()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        })
    };
    match (host(&a.url), host(&b.url)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Why purging a soft-deleted object of `kind` in `target` to make room for a native backup of
/// `source` is not known to be safe, or `None` when it is. A purge is irreversible, and key vault
/// checks the blob only when the restore that follows is sent: a blob it refuses (another
/// subscription or geography, an HSM-protected key into a standard vault) would then leave the
/// object in neither vault. So the purge needs proof that the restore can succeed — the same
/// vault, or both vaults' subscription and geography configured and equal (and, for keys, the
/// target's pricing tier, which kvkeep is never told) — or the operator's
/// `--assume-compatible`.
pub fn purge_blocker(
    source: &VaultLocation,
    target: &VaultLocation,
    kind: ObjectKind,
    assume_compatible: bool,
) -> Option<String> {
    if assume_compatible || same_location(source, target) {
        return None;
    }
    let mut unknown: Vec<&str> = Vec::new();
    let mut differ: Vec<String> = Vec::new();
    for (what, s, t) in [
        ("subscription", &source.subscription, &target.subscription),
        ("geography", &source.geography, &target.geography),
    ] {
        match (s, t) {
            (Some(s), Some(t)) if s.eq_ignore_ascii_case(t) => {}
            (Some(s), Some(t)) => differ.push(format!("{what} {s} vs {t}")),
            _ => unknown.push(what),
        }
    }
    if kind == ObjectKind::Keys {
        unknown.push("pricing tier (an HSM-protected key restores only into a premium vault)");
    }
    if differ.is_empty() && unknown.is_empty() {
        return None;
    }
    let why = if differ.is_empty() {
        format!(
            "the {} of {} and {} is not known",
            unknown.join(" and the "),
            source.name,
            target.name
        )
    } else {
        format!("the vaults differ ({})", differ.join(", "))
    };
    Some(format!(
        "not purged: {why}, so key vault may refuse the backup after the purge and the object would be lost from both; configure subscription and geography for both vaults, or rerun with --assume-compatible if you know key vault accepts the backup there, or use --on-conflict recover-then-skip"
    ))
}

/// Step 3: one action per selected capture from the target's state and the policy. `states`
/// maps `(kind, canonical name)` to the surveyed state; a name missing from it is absent.
// Each argument is one independent input of the pure decision; bundling them would only move
// the same list into a struct built once per call.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    source: VaultLocation,
    target: VaultLocation,
    at: i64,
    policy: ConflictPolicy,
    assume_compatible: bool,
    selected: Vec<CaptureRecord>,
    states: &BTreeMap<(ObjectKind, String), TargetState>,
    warnings: Vec<String>,
) -> RestorePlan {
    let objects = selected
        .into_iter()
        .map(|c| {
            let state = states
                .get(&(c.kind, c.name.canonical()))
                .copied()
                .unwrap_or(TargetState::Absent);
            let action = match action_for(&c, &target.name, state, policy) {
                Action::PurgeThenRestore => {
                    match purge_blocker(&source, &target, c.kind, assume_compatible) {
                        Some(why) => Action::Fail {
                            reason: format!(
                                "{} {} is soft-deleted in {} and was left alone, {why}",
                                singular(c.kind),
                                c.name,
                                target.name
                            ),
                        },
                        None => Action::PurgeThenRestore,
                    }
                }
                other => other,
            };
            PlannedObject {
                kind: c.kind,
                name: c.name,
                blob: c.blob,
                run: c.run,
                captured_at: c.captured_at,
                current_version: c.current_version,
                updated: c.updated,
                stored_bytes: c.stored_bytes,
                sha256: c.sha256,
                payload: c.payload,
                target_state: state,
                action,
            }
        })
        .collect();
    RestorePlan {
        source,
        target,
        at,
        policy,
        assume_compatible,
        objects,
        warnings,
    }
}

fn action_for(
    c: &CaptureRecord,
    target: &VaultName,
    state: TargetState,
    policy: ConflictPolicy,
) -> Action {
    let what = format!("{} {}", singular(c.kind), c.name);
    if c.payload == PayloadMode::Portable {
        return Action::Fail {
            reason: format!(
                "{what} was captured in portable mode, which this kvkeep cannot restore yet; upgrade kvkeep"
            ),
        };
    }
    match (state, policy) {
        (TargetState::Absent, _) => Action::Restore,
        (TargetState::Active, ConflictPolicy::Fail) => Action::Fail {
            reason: format!(
                "{what} already exists in {target}; rerun with --on-conflict skip to keep it, or delete it first to replace it with the backup"
            ),
        },
        (TargetState::Active, _) => Action::Skip {
            reason: format!("{what} already exists in {target}; left as it is"),
        },
        (TargetState::SoftDeleted { .. }, ConflictPolicy::Skip) => Action::Skip {
            reason: format!(
                "{what} is soft-deleted in {target}; rerun with --on-conflict recover-then-skip or purge-then-restore"
            ),
        },
        (TargetState::SoftDeleted { .. }, ConflictPolicy::Fail) => Action::Fail {
            reason: format!(
                "{what} is soft-deleted in {target}; rerun with --on-conflict recover-then-skip or purge-then-restore"
            ),
        },
        (TargetState::SoftDeleted { .. }, ConflictPolicy::RecoverThenSkip) => Action::Recover,
        (TargetState::SoftDeleted { .. }, ConflictPolicy::PurgeThenRestore) => {
            Action::PurgeThenRestore
        }
    }
}

/// `secret`, `key`, `certificate` for messages.
pub(crate) fn singular(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Keys => "key",
        ObjectKind::Secrets => "secret",
        ObjectKind::Certificates => "certificate",
    }
}
