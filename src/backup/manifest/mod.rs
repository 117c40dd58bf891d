//! Run manifests and blob names: the part of the storage format the backup pipeline writes
//! (DESIGN §4; README "Storage format").
//!
//! # Blob names
//!
//! Relative to the store prefix, with the vault name and object names in lower case and
//! `{timestamp}` the UTC time as `YYYYMMDDTHHMMSSZ`:
//!
//! - `objects/{vault}/{kind}/{name}/{timestamp}-{run}.age`: one object capture;
//! - `manifests/{vault}/{timestamp}-{run}.age`: a run's manifest.
//!
//! `{timestamp}` is the run's start for both, so every blob of a run shares `{timestamp}-{run}`
//! and a vault's manifests list in run order; `{run}` keeps names unique when two runs start
//! within one second. The exact capture time of an object is in its envelope and the manifest.
//!
//! - `manifest-parts/{vault}/{timestamp}-{run}/{part}.age`: one part of a format 2 manifest
//!   (`{part}` is five decimal digits from `00000`).
//!
//! # Manifests
//!
//! A run's manifest is its commit record: written last, after every object blob of the run, so
//! a run without one is incomplete and its blobs count for nothing.
//!
//! **Format 2** (written since kvkeep split manifests) is a small *head* at
//! `manifests/{vault}/{timestamp}-{run}.age` and any number of *parts* under
//! `manifest-parts/`. Parts are written first, the head last: the head is the commit marker,
//! and it names every part with its size and SHA-256, so a missing, truncated or swapped part
//! is detected. A part holds up to about [`PART_TARGET_BYTES`] of JSON, so memory stays bounded
//! however large the vault (a vault of 25,000 objects × 100 versions writes ~60 parts per run),
//! for the writer and for every reader, and no part comes near the 64 MiB envelope cap that
//! format 1 manifests ran into. See [`ManifestHead`] and [`ManifestPart`].
//!
//! **Format 1** (read, no longer written) is one blob holding everything: [`Manifest`].
//!
//! Readers ignore unknown keys and refuse formats they do not know. An older kvkeep reading a
//! format 2 head refuses it ("upgrade kvkeep") instead of misreading it as an empty run.

mod read;
mod write;

pub use read::{check_manifest, open_manifest, read_manifest, OpenedManifest};
pub use write::ManifestWriter;

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::index::CapturedVersion;
use crate::model::{
    BlobKey, IdError, ObjectKind, ObjectName, ObjectVersion, RunId, Validity, VaultName,
};

/// The manifest format this code writes: a head and parts.
pub const MANIFEST_FORMAT: u32 = 2;

/// Format 1: one blob with everything ([`Manifest`]); still read.
pub const MANIFEST_FORMAT_V1: u32 = 1;

/// Roughly how much JSON goes into one part before the writer starts the next. Small enough
/// that a part opens in a few MiB of memory, large enough that a run of a large vault writes
/// tens of parts, not thousands of tiny blobs.
pub const PART_TARGET_BYTES: usize = 4 << 20;

/// `YYYYMMDDTHHMMSSZ` for Unix seconds `at` (UTC); times outside chrono's range are clamped
/// to the epoch, which cannot happen for a clock-derived time.
pub fn timestamp(at: i64) -> String {
    DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Where a capture of `kind`/`name` by `run`, started at `started_at`, is stored.
pub fn object_blob_key(
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    started_at: i64,
    run: &RunId,
) -> Result<BlobKey, IdError> {
    BlobKey::from_segments([
        "objects",
        vault.as_str(),
        kind.as_str(),
        &name.canonical(),
        &format!("{}-{run}.age", timestamp(started_at)),
    ])
}

/// Where the manifest of `run`, started at `started_at`, is stored.
pub fn manifest_blob_key(
    vault: &VaultName,
    started_at: i64,
    run: &RunId,
) -> Result<BlobKey, IdError> {
    BlobKey::from_segments([
        "manifests",
        vault.as_str(),
        &format!("{}-{run}.age", timestamp(started_at)),
    ])
}

/// Where part `part` of the manifest of `run`, started at `started_at`, is stored.
pub fn manifest_part_key(
    vault: &VaultName,
    started_at: i64,
    run: &RunId,
    part: u32,
) -> Result<BlobKey, IdError> {
    BlobKey::from_segments([
        "manifest-parts",
        vault.as_str(),
        &format!("{}-{run}", timestamp(started_at)),
        &format!("{part:05}.age"),
    ])
}

/// Whether a manifest entry was captured by its run or refers to an earlier capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Captured by this run.
    Captured,
    /// Unchanged since an earlier capture, which `blob` names.
    Unchanged,
}

/// One version held by a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestVersion {
    /// The version id.
    pub version: ObjectVersion,
    /// Its `created` attribute.
    pub created: Option<i64>,
    /// Its `updated` attribute.
    pub updated: Option<i64>,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl From<&CapturedVersion> for ManifestVersion {
    fn from(v: &CapturedVersion) -> Self {
        ManifestVersion {
            version: v.version.clone(),
            created: v.created,
            updated: v.updated,
            enabled: v.enabled,
        }
    }
}

impl From<&ManifestVersion> for CapturedVersion {
    fn from(v: &ManifestVersion) -> Self {
        CapturedVersion {
            version: v.version.clone(),
            created: v.created,
            updated: v.updated,
            enabled: v.enabled,
        }
    }
}

/// One object and the capture that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Captured now or unchanged.
    pub state: EntryState,
    /// Kind.
    pub kind: ObjectKind,
    /// Name as the vault displays it.
    pub name: ObjectName,
    /// The blob.
    pub blob: BlobKey,
    /// The run that wrote the blob.
    pub run: RunId,
    /// When the blob was captured.
    pub captured_at: i64,
    /// The current version at capture.
    pub current_version: ObjectVersion,
    /// That version's `updated`.
    pub updated: i64,
    /// Every version the blob holds.
    pub versions: Vec<ManifestVersion>,
    /// Payload size before compression and encryption.
    pub plain_bytes: u64,
    /// Blob size as stored.
    pub stored_bytes: u64,
    /// SHA-256 of the blob as stored, hex.
    pub sha256: String,
    /// `native` or `portable`.
    pub payload: String,
    /// The current version's tags at capture; `None` in manifests written before tags were
    /// recorded (unknown, not empty), so those still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The current version's `nbf` and `exp` as listed (`{"nbf": .., "exp": ..}`, `{}` when it
    /// has neither); `None` in manifests written before kvkeep recorded them (unknown), so those
    /// still parse and older readers, which ignore unknown keys, read new ones unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
}

/// An object seen gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDeleted {
    /// Kind.
    pub kind: ObjectKind,
    /// Name as last displayed.
    pub name: ObjectName,
    /// When the run saw it gone.
    pub seen_at: i64,
}

/// An object that could not be captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFailure {
    /// Kind.
    pub kind: ObjectKind,
    /// Name.
    pub name: ObjectName,
    /// Stable class of the error (`forbidden`, `throttled`, ...).
    pub error_kind: String,
    /// What went wrong.
    pub message: String,
}

/// A whole manifest: a format 1 blob as stored, or a format 2 head with all its parts read
/// together ([`read_manifest`]; for small vaults, tests and tools; large runs are read part by
/// part with [`open_manifest`]).
///
/// Format 1 keys: `format` (1), `vault`, `run`, `started_at`, `finished_at` (Unix seconds),
/// `status`, `objects` (every object captured by this run (`state` `captured`) or unchanged
/// since an earlier capture (`unchanged`, a reference to that blob), see [`ManifestObject`]),
/// `deleted` (objects seen gone) and `failed` (objects that could not be captured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_V1`] as stored; [`MANIFEST_FORMAT`] when assembled from parts.
    pub format: u32,
    /// The vault.
    pub vault: VaultName,
    /// The run.
    pub run: RunId,
    /// When the run started.
    pub started_at: i64,
    /// When the manifest was written.
    pub finished_at: i64,
    /// The run's status as of writing.
    pub status: String,
    /// Objects and the captures holding them.
    pub objects: Vec<ManifestObject>,
    /// Objects seen gone.
    #[serde(default)]
    pub deleted: Vec<ManifestDeleted>,
    /// Objects that failed.
    #[serde(default)]
    pub failed: Vec<ManifestFailure>,
}

impl Manifest {
    /// The JSON payload to seal.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses an opened format 1 manifest payload; refuses any other format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
        if manifest.format != MANIFEST_FORMAT_V1 {
            return Err(unsupported(manifest.format));
        }
        Ok(manifest)
    }
}

/// The error for a manifest format this code cannot read.
fn unsupported(format: u32) -> String {
    format!(
        "manifest format {format} is not supported (this kvkeep reads formats {MANIFEST_FORMAT_V1} and {MANIFEST_FORMAT}); upgrade kvkeep"
    )
}

/// The format number of an opened manifest payload, read without keeping the rest.
pub fn format_of(bytes: &[u8]) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    serde_json::from_slice::<Probe>(bytes)
        .map(|p| p.format)
        .map_err(|e| format!("manifest is not valid: {e}"))
}

/// One part of a format 2 manifest as the head names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// Where the part is stored.
    pub blob: BlobKey,
    /// Objects it lists.
    pub objects: u64,
    /// Deletions it lists.
    pub deleted: u64,
    /// Failures it lists.
    pub failed: u64,
    /// Its size as stored.
    pub stored_bytes: u64,
    /// SHA-256 of the part as stored, hex.
    pub sha256: String,
}

/// The head of a format 2 manifest: the run and the parts that list its objects. Written last;
/// its presence commits the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHead {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The vault.
    pub vault: VaultName,
    /// The run.
    pub run: RunId,
    /// When the run started.
    pub started_at: i64,
    /// When the manifest was written.
    pub finished_at: i64,
    /// The run's status as of writing.
    pub status: String,
    /// Always empty. It is there so that a format 1 reader, which parses `objects` before it
    /// looks at `format`, parses a head and then refuses it by its format number ("upgrade
    /// kvkeep") instead of failing on a field of the wrong type.
    #[serde(default)]
    pub objects: Vec<ManifestObject>,
    /// Objects listed over all parts.
    pub object_count: u64,
    /// Deletions listed over all parts.
    pub deleted_count: u64,
    /// Failures listed over all parts.
    pub failed_count: u64,
    /// The parts, in order.
    pub parts: Vec<PartRef>,
    /// The vault's newest restore point when this run was written: the run it follows. Runs
    /// are timed to the second, so two runs of one second are ordered by this link (an index
    /// rebuild or sync must replay the earlier one first: the later one's unchanged entries
    /// refer to its blobs). Absent in manifests written before kvkeep recorded it, and for a
    /// vault's first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RunId>,
}

impl ManifestHead {
    /// Parses an opened head; refuses formats other than [`MANIFEST_FORMAT`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let format = format_of(bytes)?;
        if format != MANIFEST_FORMAT {
            return Err(unsupported(format));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("manifest head is not valid: {e}"))
    }
}

/// One part of a format 2 manifest: a slice of the run's objects, deletions and failures, in
/// the run's (kind, name) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The vault.
    pub vault: VaultName,
    /// The run.
    pub run: RunId,
    /// Its position, from 0.
    pub part: u32,
    /// Objects and the captures holding them.
    #[serde(default)]
    pub objects: Vec<ManifestObject>,
    /// Objects seen gone.
    #[serde(default)]
    pub deleted: Vec<ManifestDeleted>,
    /// Objects that failed.
    #[serde(default)]
    pub failed: Vec<ManifestFailure>,
}

impl ManifestPart {
    /// Parses an opened part; refuses formats other than [`MANIFEST_FORMAT`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let part: ManifestPart = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest part is not valid: {e}"))?;
        if part.format != MANIFEST_FORMAT {
            return Err(unsupported(part.format));
        }
        Ok(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_follow_the_layout() {
        let vault: VaultName = "KV1".parse().expect("vault");
        let run: RunId = "0123456789abcdef".parse().expect("run");
        let name: ObjectName = "Db-Password".parse().expect("name");
        // 2026-11-28 19:05:00 UTC
        let at = 1_795_892_700;
        assert_eq!(timestamp(at), "20261128T190500Z");
        assert_eq!(
            object_blob_key(&vault, ObjectKind::Secrets, &name, at, &run)
                .expect("key")
                .as_str(),
            "objects/kv1/secrets/db-password/20261128T190500Z-0123456789abcdef.age"
        );
        assert_eq!(
            manifest_blob_key(&vault, at, &run).expect("key").as_str(),
            "manifests/kv1/20261128T190500Z-0123456789abcdef.age"
        );
    }

    #[test]
    fn manifests_round_trip_and_refuse_unknown_formats() {
        let m = Manifest {
            format: MANIFEST_FORMAT,
            vault: "kv1".parse().expect("vault"),
            run: "0123456789abcdef".parse().expect("run"),
            started_at: 1,
            finished_at: 2,
            status: "completed".into(),
            objects: Vec::new(),
            deleted: vec![ManifestDeleted {
                kind: ObjectKind::Keys,
                name: "k".parse().expect("name"),
                seen_at: 2,
            }],
            failed: Vec::new(),
        };
        let m = Manifest {
            format: MANIFEST_FORMAT_V1,
            ..m
        };
        let json = m.to_json().expect("json");
        assert_eq!(Manifest::from_json(&json), Ok(m));
        let future = br#"{"format":3,"vault":"kv1","run":"0123456789abcdef","started_at":1,"finished_at":2,"status":"completed","objects":[]}"#;
        assert!(Manifest::from_json(future)
            .expect_err("format 3")
            .contains("upgrade"));
        assert!(ManifestHead::from_json(future)
            .expect_err("format 3")
            .contains("upgrade"));
    }

    /// A format 1 manifest as written before kvkeep recorded tags (kept verbatim: such files
    /// are in stores and must keep parsing).
    const BEFORE_TAGS: &[u8] = br#"{"format":1,"vault":"kv1","run":"0123456789abcdef","started_at":1795892700,"finished_at":1795892760,"status":"completed","objects":[{"state":"captured","kind":"secrets","name":"db-password","blob":"objects/kv1/secrets/db-password/20261128T190500Z-0123456789abcdef.age","run":"0123456789abcdef","captured_at":1795892701,"current_version":"0123456789abcdef0123456789abcdef","updated":1795890000,"versions":[{"version":"0123456789abcdef0123456789abcdef","created":1795890000,"updated":1795890000,"enabled":true}],"plain_bytes":1000,"stored_bytes":600,"sha256":"abababababababababababababababababababababababababababababababab","payload":"native"}],"deleted":[],"failed":[]}"#;

    #[test]
    fn a_manifest_written_before_tags_were_recorded_parses_with_tags_unknown() {
        let m = Manifest::from_json(BEFORE_TAGS).expect("old manifest");
        assert_eq!(m.objects.len(), 1);
        assert_eq!(m.objects[0].name.as_str(), "db-password");
        assert_eq!(m.objects[0].tags, None);
    }

    #[test]
    fn tags_round_trip_and_no_tags_stays_distinct_from_unknown() {
        let mut m = Manifest::from_json(BEFORE_TAGS).expect("old manifest");
        for (tags, key_written) in [
            (
                Some(BTreeMap::from([("env".to_string(), "prod".to_string())])),
                true,
            ),
            (Some(BTreeMap::new()), true),
            (None, false),
        ] {
            m.objects[0].tags = tags;
            let json = m.to_json().expect("json");
            assert_eq!(
                String::from_utf8_lossy(&json).contains(r#""tags""#),
                key_written
            );
            assert_eq!(Manifest::from_json(&json).expect("parse"), m);
        }
    }

    #[test]
    fn a_manifest_written_before_validity_was_recorded_parses_with_it_unknown() {
        let m = Manifest::from_json(BEFORE_TAGS).expect("old manifest");
        assert_eq!(m.objects[0].validity, None);
        // A format 2 part as written before kvkeep recorded `nbf`/`exp` (with tags), verbatim.
        let part = br#"{"format":2,"vault":"kv1","run":"0123456789abcdef","part":0,"objects":[{"state":"unchanged","kind":"keys","name":"signing","blob":"objects/kv1/keys/signing/20261128T190500Z-0123456789abcdef.age","run":"0123456789abcdef","captured_at":1795892701,"current_version":"0123456789abcdef0123456789abcdef","updated":1795890000,"versions":[],"plain_bytes":1000,"stored_bytes":600,"sha256":"abababababababababababababababababababababababababababababababab","payload":"native","tags":{"env":"prod"}}],"deleted":[],"failed":[]}"#;
        let part = ManifestPart::from_json(part).expect("old part");
        assert_eq!(part.objects[0].validity, None);
        assert!(part.objects[0].tags.is_some());
    }

    #[test]
    fn validity_round_trips_with_key_vault_names_and_none_set_stays_distinct_from_unknown() {
        let mut m = Manifest::from_json(BEFORE_TAGS).expect("old manifest");
        for (validity, written) in [
            (
                Some(Validity {
                    not_before: Some(1_795_000_000),
                    expires: Some(1_797_000_000),
                }),
                Some(r#""validity":{"nbf":1795000000,"exp":1797000000}"#),
            ),
            (
                Some(Validity {
                    not_before: None,
                    expires: Some(1_797_000_000),
                }),
                Some(r#""validity":{"exp":1797000000}"#),
            ),
            (Some(Validity::default()), Some(r#""validity":{}"#)),
            (None, None),
        ] {
            m.objects[0].validity = validity;
            let json = m.to_json().expect("json");
            let text = String::from_utf8_lossy(&json);
            match written {
                Some(fragment) => assert!(text.contains(fragment), "{text}"),
                None => assert!(!text.contains("validity"), "{text}"),
            }
            assert_eq!(Manifest::from_json(&json).expect("parse"), m);
        }
    }
}
