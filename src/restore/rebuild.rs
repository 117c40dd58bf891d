//! `kvkeep index rebuild`: recreates the index from the store alone (DESIGN §4: the index is a
//! cache, the manifests are the truth), so a fresh host with only the store and the identity can
//! restore.
//!
//! Steps: list `manifests/`, open each with the identities (its envelope must name the vault
//! and run its key says), replay the runs in start order into a fresh index — captures,
//! unchanged sightings, deletions, failures, then the run finished with its manifest key — and
//! finally list `objects/` for blobs no manifest references: captures of incomplete runs, which
//! are reported and never used. The new index is built beside the old file and moved over it
//! only when complete, so an interrupted rebuild leaves the old index as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use super::RestoreError;
use crate::backup::manifest::{EntryState, Manifest};
use crate::config::PayloadMode;
use crate::crypto::{open_expecting, Expected, Identities};
use crate::index::{
    CapturedVersion, Index, IndexError, NewCapture, ObjectState, RunStats, RunStatus,
};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::BlobStore;

/// A run with blobs in the store but no manifest: never used for restore or retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncompleteRun {
    /// The vault.
    pub vault: String,
    /// The run id from the blob names.
    pub run: String,
    /// How many object blobs it left.
    pub blobs: usize,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RebuildReport {
    /// Manifests found in the store.
    pub manifests: usize,
    /// Runs replayed into the index.
    pub runs: usize,
    /// Captures recorded.
    pub captures: usize,
    /// Vaults seen.
    pub vaults: Vec<String>,
    /// Runs that never wrote a manifest (listed, not used).
    pub incomplete: Vec<IncompleteRun>,
    /// Manifests or entries that could not be used, with why.
    pub problems: Vec<String>,
}

/// `manifests/{vault}/{timestamp}-{run}.age` or `objects/{vault}/{kind}/{name}/{timestamp}-{run}.age`
/// → (vault, run).
fn vault_and_run(key: &str) -> Option<(String, String)> {
    let mut parts = key.split('/');
    let _top = parts.next()?;
    let vault = parts.next()?.to_string();
    let file = key.rsplit('/').next()?;
    let stem = file.strip_suffix(".age")?;
    let run = stem.rsplit('-').next()?.to_string();
    Some((vault, run))
}

/// Reads and opens every manifest in the store; unreadable ones become problems.
async fn read_manifests(
    store: &dyn BlobStore,
    identities: Arc<Identities>,
    concurrency: usize,
) -> Result<(Vec<(BlobKey, Manifest)>, Vec<String>, usize), RestoreError> {
    let listed = store
        .list("manifests/")
        .await
        .map_err(|e| RestoreError::Task(format!("cannot list the manifests in the store: {e}")))?;
    let total = listed.len();
    let results: Vec<Result<(BlobKey, Manifest), String>> = futures::stream::iter(listed)
        .map(|meta| {
            let identities = identities.clone();
            async move {
                let key = meta.key;
                let (vault, run) = vault_and_run(key.as_str())
                    .ok_or_else(|| format!("{key}: not a manifest name; ignored"))?;
                let vault: VaultName = vault
                    .parse()
                    .map_err(|e| format!("{key}: bad vault name: {e}; ignored"))?;
                let run: RunId = run
                    .parse()
                    .map_err(|e| format!("{key}: bad run id: {e}; ignored"))?;
                let bytes = store
                    .get(&key)
                    .await
                    .map_err(|e| format!("{key}: cannot be read: {e}"))?;
                let expected = Expected::manifest(vault.clone()).with_run(run.clone());
                let opened = tokio::task::spawn_blocking(move || {
                    open_expecting(&bytes, &identities, &expected)
                })
                .await
                .map_err(|e| format!("{key}: opening stopped: {e}"))?
                .map_err(|e| format!("{key}: cannot be opened, its run is left out: {e}"))?;
                let manifest = Manifest::from_json(&opened.payload)
                    .map_err(|e| format!("{key}: {e}; its run is left out"))?;
                if manifest.vault != vault || manifest.run != run {
                    return Err(format!(
                        "{key}: the manifest inside names vault {} run {}; its run is left out",
                        manifest.vault, manifest.run
                    ));
                }
                Ok((key, manifest))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(m) => manifests.push(m),
            Err(p) => problems.push(p),
        }
    }
    // Replay order: a manifest's "unchanged" entries refer to captures of earlier runs.
    manifests.sort_by(|(ak, a), (bk, b)| {
        (a.started_at, a.finished_at, ak).cmp(&(b.started_at, b.finished_at, bk))
    });
    problems.sort();
    Ok((manifests, problems, total))
}

/// Replays opened manifests into `index` (which should be empty) in one transaction.
pub fn replay(
    index: &Index,
    manifests: &[(BlobKey, Manifest)],
    report: &mut RebuildReport,
) -> Result<(), IndexError> {
    let problems = index.write(|w| {
        let mut problems = Vec::new();
        let mut recorded: BTreeSet<BlobKey> = BTreeSet::new();
        let mut known: BTreeSet<(VaultName, crate::model::ObjectKind, String)> = BTreeSet::new();
        for (key, m) in manifests {
            if let Err(e) = w.begin_run(&m.run, &m.vault, m.started_at) {
                problems.push(format!("{key}: {e}; left out"));
                continue;
            }
            let mut stats = RunStats::default();
            for o in &m.objects {
                let state = ObjectState {
                    kind: o.kind,
                    name: o.name.clone(),
                    current_version: o.current_version.clone(),
                    updated: o.updated,
                };
                let fresh = o.state == EntryState::Captured && o.run == m.run;
                if fresh {
                    // An unrecognised word falls back to native rather than dropping the capture.
                    let payload = o.payload.parse().unwrap_or(PayloadMode::Native);
                    w.record_capture(
                        &m.run,
                        &NewCapture {
                            object: state,
                            blob: o.blob.clone(),
                            captured_at: o.captured_at,
                            plain_bytes: o.plain_bytes,
                            stored_bytes: o.stored_bytes,
                            sha256: o.sha256.clone(),
                            payload,
                            versions: o.versions.iter().map(CapturedVersion::from).collect(),
                            tags: o.tags.clone(),
                        },
                    )?;
                    recorded.insert(o.blob.clone());
                    stats.captured_objects += 1;
                    stats.uploaded_bytes += o.stored_bytes;
                } else if recorded.contains(&o.blob) {
                    w.record_unchanged(&m.run, &state, m.finished_at, false)?;
                    stats.unchanged_objects += 1;
                } else {
                    problems.push(format!(
                        "{key}: {}/{} refers to blob {} of run {}, whose manifest is not in the store; that capture is not restorable through this index",
                        o.kind, o.name, o.blob, o.run
                    ));
                    continue;
                }
                known.insert((m.vault.clone(), o.kind, o.name.canonical()));
            }
            for d in &m.deleted {
                if known.contains(&(m.vault.clone(), d.kind, d.name.canonical())) {
                    w.record_deleted(&m.run, d.kind, &d.name, d.seen_at)?;
                    stats.deleted_objects += 1;
                }
            }
            for f in &m.failed {
                w.record_object_error(
                    &m.run,
                    f.kind,
                    &f.name,
                    &f.error_kind,
                    &f.message,
                    m.finished_at,
                )?;
                stats.failed_objects += 1;
            }
            let status: RunStatus = m.status.parse().unwrap_or(RunStatus::Completed);
            let status = if status == RunStatus::Running {
                RunStatus::Interrupted
            } else {
                status
            };
            w.finish_run(&m.run, status, &stats, m.finished_at, Some(key))?;
            report.runs += 1;
            report.captures += stats.captured_objects as usize;
        }
        Ok(problems)
    })?;
    report.problems.extend(problems);
    Ok(())
}

/// Rebuilds the index at `index_path` from `store`. The old file (and its WAL) is replaced only
/// once the new one is complete.
pub async fn rebuild(
    store: Arc<dyn BlobStore>,
    identities: Arc<Identities>,
    index_path: &Path,
    concurrency: usize,
) -> Result<RebuildReport, RestoreError> {
    let (manifests, problems, total) =
        read_manifests(store.as_ref(), identities, concurrency).await?;
    let mut report = RebuildReport {
        manifests: total,
        problems,
        ..RebuildReport::default()
    };
    let vaults: BTreeSet<String> = manifests.iter().map(|(_, m)| m.vault.to_string()).collect();
    report.vaults = vaults.into_iter().collect();

    // Captures no manifest references: incomplete runs.
    let referenced: BTreeSet<&BlobKey> = manifests
        .iter()
        .flat_map(|(_, m)| m.objects.iter().map(|o| &o.blob))
        .collect();
    let objects = store.list("objects/").await.map_err(|e| {
        RestoreError::Task(format!("cannot list the object blobs in the store: {e}"))
    })?;
    let mut incomplete: BTreeMap<(String, String), usize> = BTreeMap::new();
    for meta in objects.iter().filter(|m| !referenced.contains(&m.key)) {
        if let Some(k) = vault_and_run(meta.key.as_str()) {
            *incomplete.entry(k).or_default() += 1;
        }
    }
    report.incomplete = incomplete
        .into_iter()
        .map(|((vault, run), blobs)| IncompleteRun { vault, run, blobs })
        .collect();

    let tmp = sibling(index_path, "rebuild");
    let final_path = index_path.to_path_buf();
    let report = tokio::task::spawn_blocking(move || -> Result<RebuildReport, RestoreError> {
        remove_db(&tmp);
        let index = Index::open(&tmp)?;
        replay(&index, &manifests, &mut report)?;
        drop(index);
        remove_db(&final_path);
        std::fs::rename(&tmp, &final_path).map_err(|e| {
            RestoreError::Task(format!(
                "the rebuilt index is complete at {} but cannot be moved to {}: {e}; move it by hand",
                tmp.display(),
                final_path.display()
            ))
        })?;
        Ok(report)
    })
    .await
    .map_err(|e| RestoreError::Task(e.to_string()))??;
    Ok(report)
}

/// `index.sqlite` → `index.sqlite.{suffix}`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

/// Removes a SQLite file and its WAL and shared-memory files, if present.
fn remove_db(path: &Path) {
    for p in [
        path.to_path_buf(),
        sibling(path, "wal"),
        sibling(path, "shm"),
    ] {
        // Absent files are the normal case; anything else surfaces when the file is opened.
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::vault_and_run;

    #[test]
    fn names_give_vault_and_run() {
        assert_eq!(
            vault_and_run("manifests/kv1/20261128T190500Z-0123456789abcdef.age"),
            Some(("kv1".into(), "0123456789abcdef".into()))
        );
        assert_eq!(
            vault_and_run("objects/kv1/secrets/db-pass/20261128T190500Z-0123456789abcdef.age"),
            Some(("kv1".into(), "0123456789abcdef".into()))
        );
        assert_eq!(vault_and_run("junk"), None);
    }
}
