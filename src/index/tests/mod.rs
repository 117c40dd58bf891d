//! Tests of the index: migrations, records and their round trips, the point-in-time query, and
//! damaged files. Shared builders live here.

mod catalog;
mod damage;
mod expiry;
mod foreign;
mod migrations;
#[cfg(unix)]
mod permissions;
mod point_in_time;
mod records;

use super::{CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus};
use crate::config::PayloadMode;
use crate::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

pub(super) fn vault(s: &str) -> VaultName {
    s.parse().expect("test vault name")
}

pub(super) fn name(s: &str) -> ObjectName {
    s.parse().expect("test object name")
}

pub(super) fn version(s: &str) -> ObjectVersion {
    s.parse().expect("test version")
}

pub(super) fn blob(s: &str) -> BlobKey {
    s.parse().expect("test blob key")
}

/// Run ids from small numbers, so tests read `run(3)`.
pub(super) fn run(n: u64) -> RunId {
    format!("{n:016x}").parse().expect("test run id")
}

pub(super) fn state(kind: ObjectKind, object: &str, ver: &str, updated: i64) -> ObjectState {
    ObjectState {
        kind,
        name: name(object),
        current_version: version(ver),
        updated,
    }
}

/// A capture of `object` at `at` whose blob holds `versions` (the last one current).
pub(super) fn capture(
    vault_name: &str,
    kind: ObjectKind,
    object: &str,
    versions: &[&str],
    at: i64,
) -> NewCapture {
    let current = versions.last().copied().expect("at least one version");
    NewCapture {
        object: state(kind, object, current, at - 1),
        blob: blob(&format!(
            "objects/{vault_name}/{kind}/{}/{at}.age",
            object.to_ascii_lowercase()
        )),
        captured_at: at,
        plain_bytes: 1000,
        stored_bytes: 600,
        sha256: "ab".repeat(32),
        payload: PayloadMode::Native,
        versions: versions
            .iter()
            .enumerate()
            .map(|(i, v)| CapturedVersion {
                version: version(v),
                created: Some(i as i64),
                updated: Some(at - 1),
                enabled: true,
            })
            .collect(),
        tags: None,
        validity: None,
    }
}

/// What one run of a scenario does.
pub(super) struct RunScript<'a> {
    pub run: u64,
    pub vault: &'a str,
    pub at: i64,
    pub captures: Vec<NewCapture>,
    pub deleted: Vec<(ObjectKind, &'a str)>,
    /// Objects seen unchanged since the capture at the given time (see [`capture`]).
    pub unchanged: Vec<(ObjectKind, &'a str, i64)>,
    pub status: RunStatus,
    /// Whether the manifest was written (the run is committed).
    pub manifest: bool,
}

impl<'a> RunScript<'a> {
    pub fn committed(run: u64, vault: &'a str, at: i64) -> Self {
        RunScript {
            run,
            vault,
            at,
            captures: Vec::new(),
            deleted: Vec::new(),
            unchanged: Vec::new(),
            status: RunStatus::Completed,
            manifest: true,
        }
    }

    pub fn capture(mut self, kind: ObjectKind, object: &str, versions: &[&str]) -> Self {
        let c = capture(self.vault, kind, object, versions, self.at);
        self.captures.push(c);
        self
    }

    pub fn delete(mut self, kind: ObjectKind, object: &'a str) -> Self {
        self.deleted.push((kind, object));
        self
    }

    /// The object is unchanged since its capture at `captured_at` (by an earlier run).
    pub fn unchanged(mut self, kind: ObjectKind, object: &'a str, captured_at: i64) -> Self {
        self.unchanged.push((kind, object, captured_at));
        self
    }

    /// Plays the run into `index` in one batch, as the backup executor would.
    pub fn play(self, index: &Index) {
        let id = run(self.run);
        let manifest = self
            .manifest
            .then(|| blob(&format!("manifests/{}/{}-{id}.age", self.vault, self.at)));
        index
            .write(|w| {
                w.begin_run(&id, &vault(self.vault), self.at)?;
                for c in &self.captures {
                    w.record_capture(&id, c)?;
                }
                for (kind, object, captured_at) in &self.unchanged {
                    let earlier = capture(self.vault, *kind, object, &["x"], *captured_at);
                    w.record_unchanged(
                        &id,
                        &state(*kind, object, "x", captured_at - 1),
                        &earlier.blob,
                        self.at,
                        false,
                    )?;
                }
                for (kind, object) in &self.deleted {
                    w.record_deleted(&id, *kind, &name(object), self.at)?;
                }
                let stats = RunStats {
                    captured_objects: self.captures.len() as u64,
                    deleted_objects: self.deleted.len() as u64,
                    unchanged_objects: self.unchanged.len() as u64,
                    ..RunStats::default()
                };
                w.finish_run(&id, self.status, &stats, self.at + 5, manifest.as_ref())
            })
            .expect("scenario run records");
    }
}
