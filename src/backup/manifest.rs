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
//! # Manifest (format 1)
//!
//! A sealed blob (`blob: "manifest"` in the envelope) whose payload is one UTF-8 JSON object:
//!
//! | key | meaning |
//! |---|---|
//! | `format` | `1` |
//! | `vault`, `run` | the vault (lower case) and the run id |
//! | `started_at`, `finished_at` | Unix seconds (UTC) |
//! | `status` | `completed`, `partially_failed` or `interrupted` as of writing the manifest |
//! | `objects` | every object captured by this run (`state` `captured`) or unchanged since an earlier capture (`unchanged`, a reference to that blob); an object that failed is only in `failed`, its earlier captures are in earlier manifests; with `kind`, `name`, `blob`, `run` (the run that wrote the blob), `captured_at`, `current_version`, `updated`, `versions` (`version`, `created`, `updated`, `enabled`), `plain_bytes`, `stored_bytes`, `sha256` (of the blob as stored), `payload` and `tags` (the current version's tags as listed at capture, an object of strings; absent in manifests written before kvkeep recorded tags, which means unknown, not none) |
//! | `deleted` | objects seen gone in this run: `kind`, `name`, `seen_at` |
//! | `failed` | objects that could not be captured: `kind`, `name`, `error_kind`, `message` |
//!
//! The manifest is written last, after every object blob of the run: a run without one is
//! incomplete and its blobs count for nothing. Readers ignore unknown keys.
//!
//! Fields added later are optional, so every manifest ever written still parses, and the format
//! number changes only when an older reader would misread a newer file (`tags` was added
//! within format 1: a reader that ignores it loses nothing it relied on).

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::index::CapturedVersion;
use crate::model::{BlobKey, IdError, ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

/// The manifest format this code writes.
pub const MANIFEST_FORMAT: u32 = 1;

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

/// A run's manifest: the commit record of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
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

    /// Parses an opened manifest payload; refuses formats this code does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!(
                "manifest format {} is not supported (this kvkeep reads format {MANIFEST_FORMAT}); upgrade kvkeep",
                manifest.format
            ));
        }
        Ok(manifest)
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
        let json = m.to_json().expect("json");
        assert_eq!(Manifest::from_json(&json), Ok(m));
        let future = br#"{"format":2,"vault":"kv1","run":"0123456789abcdef","started_at":1,"finished_at":2,"status":"completed","objects":[]}"#;
        assert!(Manifest::from_json(future)
            .expect_err("format 2")
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
}
