//! The backup planner: a pure function from what the vault lists and what the index remembers
//! to what a run must do (DESIGN §3, §5).
//!
//! Planning is two pure steps around one kind of I/O the executor does in between:
//!
//! 1. [`deep_scans_due`] names the objects that *look* unchanged (same current version and
//!    `updated` as their last committed capture) but whose version lists have not been compared
//!    for `deep_scan_every`; the executor lists their versions, and reads from the index the
//!    versions their last capture holds;
//! 2. [`plan`] sorts every listed object into captured (with the reason), unchanged, skipped
//!    (with the reason) and gone (known to the index, no longer listed).
//!
//! Nothing here reads a clock or does I/O: "now" arrives in [`PlanOptions`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::config::VaultConfig;
use crate::index::LastCapture;
use crate::model::{ObjectKind, ObjectName, ObjectVersion, Validity, VaultName};
use crate::source::{ObjectSummary, Tags, VersionInfo};

/// An object's identity within a vault: kind and canonical (lower-case) name, as Key Vault
/// compares names.
pub type ObjectKey = (ObjectKind, String);

/// The key of `kind`/`name`.
pub fn object_key(kind: ObjectKind, name: &ObjectName) -> ObjectKey {
    (kind, name.canonical())
}

/// What decides a plan besides the listing and the index: the vault's filters, the deep-scan
/// period and the time of planning.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The vault.
    pub vault: VaultName,
    /// Kinds listed (others are neither captured nor seen gone).
    pub kinds: BTreeSet<ObjectKind>,
    include: Vec<(String, GlobMatcher)>,
    exclude: Vec<(String, GlobMatcher)>,
    /// Skip objects whose tag `k` has value `v`.
    pub skip_tags: BTreeMap<String, String>,
    /// How often version lists are compared in full.
    pub deep_scan_every: Duration,
    /// The time of planning, Unix seconds.
    pub now: i64,
}

/// A name glob that does not compile (the configuration validates globs, so this means a
/// configuration built around validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vault {vault}: invalid name glob {glob:?}: {detail}")]
pub struct PlanError {
    /// The vault.
    pub vault: VaultName,
    /// The glob.
    pub glob: String,
    /// Why it does not compile.
    pub detail: String,
}

impl PlanOptions {
    /// The options of a configured vault at time `now`. Globs match names case-insensitively,
    /// as Key Vault compares names.
    pub fn from_vault(vault: &VaultConfig, now: i64) -> Result<Self, PlanError> {
        let compile = |globs: &[String]| {
            globs
                .iter()
                .map(|g| {
                    GlobBuilder::new(g)
                        .case_insensitive(true)
                        .build()
                        .map(|glob| (g.clone(), glob.compile_matcher()))
                        .map_err(|e| PlanError {
                            vault: vault.name.clone(),
                            glob: g.clone(),
                            detail: e.kind().to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(PlanOptions {
            vault: vault.name.clone(),
            kinds: vault.kinds.clone(),
            include: compile(&vault.include)?,
            exclude: compile(&vault.exclude)?,
            skip_tags: vault.skip_tags.clone(),
            deep_scan_every: vault.deep_scan_every,
            now,
        })
    }

    /// Why `object` is not backed up, or `None` when it is.
    pub fn skip_reason(&self, object: &ObjectSummary) -> Option<SkipReason> {
        if object.managed {
            return Some(SkipReason::Managed);
        }
        let name = object.name.as_str();
        if !self.include.is_empty() && !self.include.iter().any(|(_, m)| m.is_match(name)) {
            return Some(SkipReason::NotIncluded);
        }
        if let Some((glob, _)) = self.exclude.iter().find(|(_, m)| m.is_match(name)) {
            return Some(SkipReason::Excluded { glob: glob.clone() });
        }
        self.skip_tags.iter().find_map(|(k, v)| {
            (object.tags.get(k) == Some(v)).then(|| SkipReason::Tagged {
                key: k.clone(),
                value: v.clone(),
            })
        })
    }

    fn deep_scan_is_due(&self, last: &LastCapture) -> bool {
        let every = i64::try_from(self.deep_scan_every.as_secs()).unwrap_or(i64::MAX);
        match last.last_deep_scan {
            None => true,
            Some(at) => self.now.saturating_sub(at) >= every,
        }
    }
}

/// What the index knows of one object of the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownObject {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name as last displayed.
    pub name: ObjectName,
    /// Whether a committed run saw it gone after its newest committed capture.
    pub deleted: bool,
    /// Its newest committed capture, if any.
    pub last: Option<LastCapture>,
}

/// One version as compared by a deep scan: a change to any of these fields of any version
/// (an older version disabled, re-enabled or edited) is a change of the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionFingerprint {
    /// The version id.
    pub version: ObjectVersion,
    /// Its `updated` attribute.
    pub updated: Option<i64>,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl From<&VersionInfo> for VersionFingerprint {
    fn from(v: &VersionInfo) -> Self {
        VersionFingerprint {
            version: v.version.clone(),
            updated: v.updated,
            enabled: v.enabled,
        }
    }
}

/// The two version lists a deep scan compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeepScan {
    /// What the vault lists now, in full: when the scan finds a change, the capture reuses this
    /// list instead of listing the versions a second time.
    pub listed: Vec<VersionInfo>,
    /// What the last capture holds.
    pub captured: Vec<VersionFingerprint>,
}

impl DeepScan {
    /// The versions that are new, changed or gone since the capture, sorted.
    pub fn differences(&self) -> Vec<ObjectVersion> {
        let current: Vec<VersionFingerprint> =
            self.listed.iter().map(VersionFingerprint::from).collect();
        let now: HashSet<&VersionFingerprint> = current.iter().collect();
        let then: HashSet<&VersionFingerprint> = self.captured.iter().collect();
        let mut out: Vec<ObjectVersion> = now
            .symmetric_difference(&then)
            .map(|f| f.version.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        out.sort();
        out
    }
}

/// Why an object is captured in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ChangeReason {
    /// Never captured by a committed run.
    New,
    /// Its current version is not the one last captured.
    NewCurrentVersion {
        /// Captured then.
        captured: ObjectVersion,
        /// Listed now.
        listed: ObjectVersion,
    },
    /// Its current version's `updated` moved (attributes or tags changed).
    UpdatedChanged {
        /// Captured then.
        captured: i64,
        /// Listed now (`None`: the listing did not say, so it cannot be trusted unchanged).
        listed: Option<i64>,
    },
    /// A deep scan found versions added, changed or gone since the last capture.
    DeepScanChanged {
        /// Those versions.
        versions: Vec<ObjectVersion>,
    },
    /// Listed again after a committed run saw it gone (recovered from soft delete, or created
    /// anew): captured so that the newest committed event of the object is a capture, which
    /// restore and change detection both read as "present".
    Reappeared,
}

impl std::fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeReason::New => f.write_str("new"),
            ChangeReason::NewCurrentVersion { captured, listed } => {
                write!(f, "new current version {listed} (was {captured})")
            }
            ChangeReason::UpdatedChanged { captured, listed } => match listed {
                Some(l) => write!(f, "updated changed from {captured} to {l}"),
                None => write!(f, "updated unknown (was {captured})"),
            },
            ChangeReason::DeepScanChanged { versions } => {
                write!(f, "deep scan found {} changed version(s)", versions.len())
            }
            ChangeReason::Reappeared => f.write_str("back after its deletion"),
        }
    }
}

/// Why an object is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// A certificate's key or secret: the certificate's backup covers it (backing it up
    /// directly is refused by the service).
    Managed,
    /// Its name matches none of the include globs.
    NotIncluded,
    /// Its name matches an exclude glob.
    Excluded {
        /// The glob.
        glob: String,
    },
    /// It carries a skip tag.
    Tagged {
        /// Tag name.
        key: String,
        /// Tag value.
        value: String,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Managed => f.write_str("managed by its certificate"),
            SkipReason::NotIncluded => f.write_str("matches no include glob"),
            SkipReason::Excluded { glob } => write!(f, "excluded by {glob:?}"),
            SkipReason::Tagged { key, value } => write!(f, "tagged {key}={value}"),
        }
    }
}

/// An object as listed, in the shape plans and reports print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedObject {
    /// Kind.
    pub kind: ObjectKind,
    /// Name as listed.
    pub name: ObjectName,
    /// Current version, when the listing says.
    pub version: Option<ObjectVersion>,
    /// Current version's `updated`.
    pub updated: Option<i64>,
    /// Whether the current version is enabled.
    pub enabled: bool,
    /// Current version's tags, recorded with a capture for the restore drill to compare with.
    /// Not printed: plans show what changed, and a tag change already shows as `updated`.
    #[serde(skip)]
    pub tags: Tags,
    /// Current version's content type (secrets). Not printed; with `updated`, `enabled` and the
    /// tags it tells the current version among versions created within the same second.
    #[serde(skip)]
    pub content_type: Option<String>,
    /// Current version's `nbf` and `exp`, recorded with a capture for the expiry report. Not
    /// printed, like the tags: changing them moves `updated`, which is what plans show.
    #[serde(skip)]
    pub validity: Validity,
}

impl From<&ObjectSummary> for ListedObject {
    fn from(o: &ObjectSummary) -> Self {
        ListedObject {
            kind: o.kind,
            name: o.name.clone(),
            version: o.version.clone(),
            updated: o.updated,
            enabled: o.enabled,
            tags: o.tags.clone(),
            content_type: o.content_type.clone(),
            validity: o.validity,
        }
    }
}

/// An object to capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedCapture {
    /// The object.
    #[serde(flatten)]
    pub object: ListedObject,
    /// Why.
    pub why: ChangeReason,
    /// Its versions as a deep scan of this run listed them, if one did: the capture uses them
    /// rather than listing again (one request less per object a deep scan finds changed).
    #[serde(skip)]
    pub versions: Option<Vec<VersionInfo>>,
}

/// An object unchanged since its last committed capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnchangedObject {
    /// The object.
    #[serde(flatten)]
    pub object: ListedObject,
    /// Its current version (the listing's, or the last capture's when the listing has none).
    pub current_version: ObjectVersion,
    /// The `updated` of its current version.
    pub updated: i64,
    /// The capture that still holds it.
    #[serde(skip)]
    pub last: LastCapture,
    /// Whether its version list was compared in full in this run.
    pub deep_scanned: bool,
}

/// An object the index knows that the vault no longer lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoneObject {
    /// Kind.
    pub kind: ObjectKind,
    /// Name as last displayed.
    pub name: ObjectName,
}

/// A listed object that is not backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedObject {
    /// Kind.
    pub kind: ObjectKind,
    /// Name.
    pub name: ObjectName,
    /// Why.
    pub why: SkipReason,
}

/// What a run of one vault must do. Every list is sorted by kind, then canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPlan {
    /// The vault.
    pub vault: VaultName,
    /// When it was planned (Unix seconds).
    pub planned_at: i64,
    /// Objects to capture, with the reason.
    pub changed: Vec<PlannedCapture>,
    /// Objects unchanged since their last committed capture.
    pub unchanged: Vec<UnchangedObject>,
    /// Objects gone from the vault since a run last saw them: recorded as deleted.
    pub gone: Vec<GoneObject>,
    /// Listed objects left out, with the reason.
    pub skipped: Vec<SkippedObject>,
}

impl BackupPlan {
    /// True when the run has nothing to capture and nothing to record as deleted.
    pub fn is_quiet(&self) -> bool {
        self.changed.is_empty() && self.gone.is_empty()
    }
}

/// The objects whose version lists must be compared before [`plan`]: listed, not skipped,
/// unchanged by version and `updated`, and not deep-scanned for `deep_scan_every`. Sorted.
pub fn deep_scans_due(
    options: &PlanOptions,
    listing: &[ObjectSummary],
    known: &HashMap<ObjectKey, KnownObject>,
) -> Vec<(ObjectKind, ObjectName)> {
    let mut due: Vec<(ObjectKind, ObjectName)> = listing
        .iter()
        .filter(|o| options.kinds.contains(&o.kind) && options.skip_reason(o).is_none())
        .filter_map(|o| {
            let last = known.get(&object_key(o.kind, &o.name))?.last.as_ref()?;
            (shallow_change(o, last).is_none() && options.deep_scan_is_due(last))
                .then(|| (o.kind, o.name.clone()))
        })
        .collect();
    due.sort_by_key(|(kind, name)| (*kind, name.canonical()));
    due
}

/// The change visible without listing versions, if any.
fn shallow_change(object: &ObjectSummary, last: &LastCapture) -> Option<ChangeReason> {
    if let Some(listed) = &object.version {
        if *listed != last.current_version {
            return Some(ChangeReason::NewCurrentVersion {
                captured: last.current_version.clone(),
                listed: listed.clone(),
            });
        }
    }
    if object.updated != Some(last.updated) {
        return Some(ChangeReason::UpdatedChanged {
            captured: last.updated,
            listed: object.updated,
        });
    }
    None
}

/// Plans a run: sorts every listed object of the configured kinds into changed, unchanged and
/// skipped, and every known object not seen deleted by a committed run of those kinds that is no longer listed
/// into gone. `scans` holds the deep scans the executor carried out (keyed by [`object_key`]);
/// a due scan that is missing (listing the versions failed) leaves the object unchanged and
/// the scan due again next run.
pub fn plan(
    options: &PlanOptions,
    listing: &[ObjectSummary],
    known: &HashMap<ObjectKey, KnownObject>,
    scans: &HashMap<ObjectKey, DeepScan>,
) -> BackupPlan {
    let mut out = BackupPlan {
        vault: options.vault.clone(),
        planned_at: options.now,
        changed: Vec::new(),
        unchanged: Vec::new(),
        gone: Vec::new(),
        skipped: Vec::new(),
    };
    let mut listed: HashSet<ObjectKey> = HashSet::new();
    for object in listing.iter().filter(|o| options.kinds.contains(&o.kind)) {
        let key = object_key(object.kind, &object.name);
        // A name listed twice (case variants) is one object to Key Vault.
        if !listed.insert(key.clone()) {
            continue;
        }
        if let Some(why) = options.skip_reason(object) {
            out.skipped.push(SkippedObject {
                kind: object.kind,
                name: object.name.clone(),
                why,
            });
            continue;
        }
        let Some(last) = known.get(&key).and_then(|k| k.last.as_ref()) else {
            out.changed.push(PlannedCapture {
                object: object.into(),
                why: ChangeReason::New,
                versions: None,
            });
            continue;
        };
        if known.get(&key).is_some_and(|k| k.deleted) {
            out.changed.push(PlannedCapture {
                object: object.into(),
                why: ChangeReason::Reappeared,
                versions: None,
            });
            continue;
        }
        if let Some(why) = shallow_change(object, last) {
            out.changed.push(PlannedCapture {
                object: object.into(),
                why,
                versions: None,
            });
            continue;
        }
        let scan = options
            .deep_scan_is_due(last)
            .then(|| scans.get(&key))
            .flatten();
        if let Some(scan) = scan {
            let versions = scan.differences();
            if !versions.is_empty() {
                out.changed.push(PlannedCapture {
                    object: object.into(),
                    why: ChangeReason::DeepScanChanged { versions },
                    versions: Some(scan.listed.clone()),
                });
                continue;
            }
        }
        out.unchanged.push(UnchangedObject {
            object: object.into(),
            current_version: object
                .version
                .clone()
                .unwrap_or_else(|| last.current_version.clone()),
            updated: last.updated,
            last: last.clone(),
            deep_scanned: scan.is_some(),
        });
    }
    for (key, k) in known {
        if !k.deleted && options.kinds.contains(&k.kind) && !listed.contains(key) {
            out.gone.push(GoneObject {
                kind: k.kind,
                name: k.name.clone(),
            });
        }
    }
    let order = |kind: ObjectKind, name: &ObjectName| (kind, name.canonical());
    out.changed
        .sort_by_key(|c| order(c.object.kind, &c.object.name));
    out.unchanged
        .sort_by_key(|c| order(c.object.kind, &c.object.name));
    out.gone.sort_by_key(|c| order(c.kind, &c.name));
    out.skipped.sort_by_key(|c| order(c.kind, &c.name));
    out
}
