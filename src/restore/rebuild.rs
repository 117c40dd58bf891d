//! `kvkeep index rebuild`: recreates the index from the store alone (DESIGN §4: the index is a
//! cache, the manifests are the truth), so a fresh host with only the store and the identity can
//! restore.
//!
//! Steps: take the index lock exclusively (refused while a backup records runs), list
//! `manifests/`, open each manifest or head with the identities (its envelope must name the
//! vault and run its key says) keeping only what the run was, then replay the runs in start
//! order into a fresh index, one run per transaction and one manifest part at a time —
//! captures, unchanged sightings, deletions, failures, then the run finished with its manifest
//! key — and finally list `objects/` for blobs no replayed run references: captures of
//! incomplete runs, which are reported and never used. An unchanged entry whose blob was
//! written by a run with no manifest left (pruned) records that capture from the entry, so the
//! restore point stays complete. Memory is bounded by one part, not by
//! the store. The new index is built beside the old file and replaces it with one rename
//! when complete, so an interrupted or failed rebuild leaves the old index as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use tokio_util::sync::CancellationToken;

use super::RestoreError;
use crate::backup::manifest::{open_manifest, EntryState, Manifest, ManifestPart, OpenedManifest};
use crate::config::PayloadMode;
use crate::crypto::Identities;
use crate::index::file::{remove_db_files, side_files};
use crate::index::{
    lock_index, CapturedVersion, Index, IndexError, NewCapture, ObjectState, RunStats, RunStatus,
    Writer,
};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::{BlobMeta, BlobStore};

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
    /// Things worth knowing that cost nothing: entries that refer to blobs of runs whose
    /// manifests are gone (pruned), recorded from the entries themselves.
    pub notes: Vec<String>,
}

/// `manifests/{vault}/{timestamp}-{run}.age` or `objects/{vault}/{kind}/{name}/{timestamp}-{run}.age`
/// → (vault, run).
pub(super) fn vault_and_run(key: &str) -> Option<(String, String)> {
    let mut parts = key.split('/');
    let _top = parts.next()?;
    let vault = parts.next()?.to_string();
    let file = key.rsplit('/').next()?;
    let stem = file.strip_suffix(".age")?;
    let run = stem.rsplit('-').next()?.to_string();
    Some((vault, run))
}

/// A manifest opened for replay, with the bytes its head (or format 1 manifest) takes in the
/// store: the backup counted them in the run's `uploaded_bytes`, so the replay does too.
pub(super) struct Listed {
    pub(super) manifest: OpenedManifest,
    pub(super) head_bytes: u64,
}

/// Who replays: a rebuild into a fresh index, or index sync into the index in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// `kvkeep index rebuild`: every run is new; one in the store twice is a problem.
    Rebuild,
    /// Index sync: a run the index already holds (another sync got there first) is skipped,
    /// and one it holds without a manifest is replaced by its manifest's record.
    Sync,
}

impl Replay {
    fn interrupted(self) -> RestoreError {
        RestoreError::Task(match self {
            Replay::Rebuild => "the rebuild was interrupted; the index was left as it was".into(),
            Replay::Sync => {
                "the index sync was interrupted; the runs replayed so far stay, the next sync replays the rest".into()
            }
        })
    }
}

/// What replaying one run came to.
enum Replayed {
    /// Recorded: its captures and a note on entries whose writing run has no manifest.
    Run(u64, Option<String>),
    /// Left out, with why.
    Problem(String),
    /// Already in the index (sync only): nothing to do.
    Known,
}

/// Opens the manifests (format 1) or heads (format 2) `listed` in the store, keeping what each
/// run was but none of its entries; unreadable ones become problems. Sorted in replay order.
pub(super) async fn open_manifests(
    store: &dyn BlobStore,
    listed: Vec<BlobMeta>,
    identities: &Arc<Identities>,
    concurrency: usize,
    cancel: &CancellationToken,
    mode: Replay,
) -> Result<(Vec<Listed>, Vec<String>), RestoreError> {
    let results: Vec<Result<Listed, String>> = futures::stream::iter(listed)
        .map(|meta| async move {
            if cancel.is_cancelled() {
                return Err(String::new());
            }
            let (key, head_bytes) = (meta.key, meta.size_bytes);
            let (vault, run) = vault_and_run(key.as_str())
                .ok_or_else(|| format!("{key}: not a manifest name; ignored"))?;
            let vault: VaultName = vault
                .parse()
                .map_err(|e| format!("{key}: bad vault name: {e}; ignored"))?;
            let run: RunId = run
                .parse()
                .map_err(|e| format!("{key}: bad run id: {e}; ignored"))?;
            let mut opened = open_manifest(store, identities, &vault, &run, &key)
                .await
                .map_err(|e| format!("{e}; its run is left out"))?;
            opened.forget_entries();
            Ok(Listed {
                manifest: opened,
                head_bytes,
            })
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if cancel.is_cancelled() {
        return Err(mode.interrupted());
    }
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(m) => manifests.push(m),
            Err(p) => problems.push(p),
        }
    }
    // Replay order: a manifest's "unchanged" entries refer to captures of earlier runs.
    manifests.sort_by(|a, b| {
        let (a, b) = (&a.manifest, &b.manifest);
        (a.head.started_at, a.head.finished_at, &a.key).cmp(&(
            b.head.started_at,
            b.head.finished_at,
            &b.key,
        ))
    });
    order_same_second_runs(&mut manifests);
    problems.sort();
    Ok((manifests, problems))
}

/// Entries of one run that refer to captures no replayed manifest recorded (recorded from the
/// entries themselves), summarised for the report.
#[derive(Default)]
struct Orphans {
    count: usize,
    first: Option<String>,
}

/// Replays one part of a run's manifest into the open transaction.
fn replay_part(
    w: &mut Writer<'_>,
    m: &OpenedManifest,
    part: &ManifestPart,
    stats: &mut RunStats,
    orphans: &mut Orphans,
) -> Result<(), IndexError> {
    for o in &part.objects {
        let state = ObjectState {
            kind: o.kind,
            name: o.name.clone(),
            current_version: o.current_version.clone(),
            updated: o.updated,
        };
        // An unrecognised word falls back to native rather than dropping the capture.
        let payload = o.payload.parse().unwrap_or(PayloadMode::Native);
        let capture = NewCapture {
            object: state.clone(),
            blob: o.blob.clone(),
            captured_at: o.captured_at,
            plain_bytes: o.plain_bytes,
            stored_bytes: o.stored_bytes,
            sha256: o.sha256.clone(),
            payload,
            versions: o.versions.iter().map(CapturedVersion::from).collect(),
            tags: o.tags.clone(),
            validity: o.validity,
        };
        if o.state == EntryState::Captured && o.run == m.head.run {
            w.record_capture(&m.head.run, &capture)?;
            stats.captured_objects += 1;
            stats.uploaded_bytes += o.stored_bytes;
            continue;
        }
        if !w.has_capture(&o.blob)? {
            // The run that wrote the blob has no manifest any more (pruned, or lost): the
            // entry describes the blob in full, so the capture is recorded from it and this
            // restore point stays complete. Dropping the entry would silently shrink every
            // later restore point that still refers to the blob.
            w.record_orphaned_capture(&m.head.vault, &o.run, &capture)?;
            orphans.count += 1;
            orphans.first.get_or_insert_with(|| {
                format!(
                    "{}/{} refers to blob {} of run {}",
                    o.kind, o.name, o.blob, o.run
                )
            });
        }
        w.record_unchanged(&m.head.run, &state, &o.blob, m.head.finished_at, false)?;
        // As the run did when it found the object unchanged: a capture recorded before kvkeep
        // read `nbf`/`exp` learns them from the later listing this entry records.
        if let Some(validity) = &o.validity {
            w.fill_unknown_validity(&o.blob, validity)?;
        }
        stats.unchanged_objects += 1;
    }
    for d in &part.deleted {
        if w.has_object(&m.head.vault, d.kind, &d.name)? {
            w.record_deleted(&m.head.run, d.kind, &d.name, d.seen_at)?;
            stats.deleted_objects += 1;
        }
    }
    for f in &part.failed {
        w.record_object_error(
            &m.head.run,
            f.kind,
            &f.name,
            &f.error_kind,
            &f.message,
            m.head.finished_at,
        )?;
        stats.failed_objects += 1;
    }
    Ok(())
}

/// Replays one run into `index` in one transaction, taking its parts one at a time from
/// `read_part`. A part that cannot be read leaves the whole run out: the transaction rolls
/// back. Returns the run's captures with a note on entries whose writing run has no manifest,
/// or the problem that left the run out.
fn replay_run(
    index: &Index,
    m: &OpenedManifest,
    head_bytes: u64,
    read_part: &mut dyn FnMut(usize) -> Result<ManifestPart, String>,
    mode: Replay,
) -> Result<Replayed, IndexError> {
    let mut unusable: Option<String> = None;
    let outcome = index.write(|w| {
        if mode == Replay::Sync {
            // Recorded here without its manifest, which is in the store after all: the
            // manifest is the truth, so the half-recorded run makes way for it.
            w.discard_uncommitted_run(&m.head.run)?;
        }
        w.begin_run(&m.head.run, &m.head.vault, m.head.started_at)?;
        // The backup counts the manifest it wrote (head and parts) in the run's uploaded
        // bytes; so does the replay, so a rebuilt index lists the runs as they were.
        let part_bytes: u64 = m.head.parts.iter().map(|p| p.stored_bytes).sum();
        let mut stats = RunStats {
            uploaded_bytes: head_bytes + part_bytes,
            ..RunStats::default()
        };
        let mut orphans = Orphans::default();
        for i in 0..m.part_count() {
            let part = match read_part(i) {
                Ok(part) => part,
                Err(e) => {
                    unusable = Some(format!("{e}; its run is left out"));
                    // Any error rolls the run back; the problem above says why.
                    return Err(IndexError::InvalidInput(String::new()));
                }
            };
            replay_part(w, m, &part, &mut stats, &mut orphans)?;
        }
        let status: RunStatus = m.head.status.parse().unwrap_or(RunStatus::Completed);
        let status = if status == RunStatus::Running {
            RunStatus::Interrupted
        } else {
            status
        };
        w.finish_run(
            &m.head.run,
            status,
            &stats,
            m.head.finished_at,
            Some(&m.key),
        )?;
        Ok((stats.captured_objects, orphans))
    });
    match (outcome, unusable) {
        (_, Some(problem)) => Ok(Replayed::Problem(problem)),
        (Err(IndexError::DuplicateRun { .. }), None) if mode == Replay::Sync => Ok(Replayed::Known),
        (Err(IndexError::DuplicateRun { run }), None) => Ok(Replayed::Problem(format!(
            "{}: run {run} is in the store twice; left out",
            m.key
        ))),
        // Records the manifest's entries contradict (an unchanged entry naming another
        // object's blob): the run is left out, the rest of the store still replays.
        (Err(IndexError::InvalidInput(problem)), None) => Ok(Replayed::Problem(format!(
            "{}: {problem}; its run is left out",
            m.key
        ))),
        (Err(e), None) => Err(e),
        (Ok((captures, orphans)), None) => {
            let note = orphans.first.map(|first| format!(
                "{}: {} entr{} refer to blobs of runs whose manifests are not in the store (first: {first}); recorded from the entries, so the restore point is complete",
                m.key,
                orphans.count,
                if orphans.count == 1 { "y" } else { "ies" },
            ));
            Ok(Replayed::Run(captures, note))
        }
    }
}

impl RebuildReport {
    /// Adds what replaying one run came to.
    fn add(&mut self, replayed: Replayed) {
        match replayed {
            Replayed::Run(captures, note) => {
                self.runs += 1;
                self.captures += captures as usize;
                self.notes.extend(note);
            }
            Replayed::Problem(problem) => self.problems.push(problem),
            Replayed::Known => {}
        }
    }
}

/// Replays manifests already in memory (oldest run first) into `index`: the rebuild's replay
/// without the store, for tests and tools that hold a few small manifests.
pub fn replay(
    index: &Index,
    manifests: &[(BlobKey, Manifest)],
    report: &mut RebuildReport,
) -> Result<(), IndexError> {
    for (key, manifest) in manifests {
        let opened = OpenedManifest::from_manifest(key.clone(), manifest.clone());
        let mut read_part = |_| {
            opened
                .entries()
                .ok_or_else(|| format!("{key}: holds no entries"))
        };
        // In memory the stored size is unknown; only the entries' blobs are counted.
        report.add(replay_run(
            index,
            &opened,
            0,
            &mut read_part,
            Replay::Rebuild,
        )?);
    }
    Ok(())
}

/// Rebuilds the index at `index_path` from `store`, streaming: manifests are opened one run at
/// a time and one part at a time, so memory stays bounded whatever the store holds. The new
/// index is built beside the old file and replaces it with one rename once complete; an
/// interrupted or failed rebuild leaves the old index as it was. Refused while another kvkeep
/// process records runs in the index.
pub async fn rebuild(
    store: Arc<dyn BlobStore>,
    identities: Arc<Identities>,
    index_path: &Path,
    concurrency: usize,
    cancel: CancellationToken,
    now: i64,
) -> Result<RebuildReport, RestoreError> {
    let _lock = lock_index(index_path, "kvkeep index rebuild", now)
        .map_err(|e| RestoreError::Task(e.to_string()))?;
    let listed = store
        .list("manifests/")
        .await
        .map_err(|e| RestoreError::Task(format!("cannot list the manifests in the store: {e}")))?;
    let total = listed.len();
    let (manifests, problems) = open_manifests(
        store.as_ref(),
        listed,
        &identities,
        concurrency,
        &cancel,
        Replay::Rebuild,
    )
    .await?;
    let mut report = RebuildReport {
        manifests: total,
        problems,
        ..RebuildReport::default()
    };
    let vaults: BTreeSet<String> = manifests
        .iter()
        .map(|m| m.manifest.head.vault.to_string())
        .collect();
    report.vaults = vaults.into_iter().collect();

    let tmp = {
        let mut name = index_path.as_os_str().to_owned();
        name.push(".rebuild");
        PathBuf::from(name)
    };
    let index = {
        let tmp = tmp.clone();
        tokio::task::spawn_blocking(move || {
            remove_db_files(&tmp);
            Index::open(&tmp)
        })
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??
    };
    let index = Arc::new(index);
    let replayed = replay_all(
        &index,
        &store,
        &identities,
        manifests,
        &cancel,
        report,
        Replay::Rebuild,
    )
    .await;
    let result = match replayed {
        Ok(mut replayed) => incomplete_runs(&index, store.as_ref())
            .await
            .map(|incomplete| {
                replayed.incomplete = incomplete;
                replayed
            }),
        Err(e) => Err(e),
    };
    // Closing the last connection checkpoints the WAL into the file and removes it.
    drop(index);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            remove_db_files(&tmp);
            return Err(e);
        }
    };
    let final_path = index_path.to_path_buf();
    tokio::task::spawn_blocking(move || swap_in(&tmp, &final_path))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??;
    Ok(report)
}

/// Runs of one vault that started and ended in the same second sort by their random run ids
/// above; each such group is put in the order the runs ran, following each head's `previous`
/// (the run it follows): a run goes after the run it names. Heads written before kvkeep
/// recorded `previous` keep the order they have.
pub(super) fn order_same_second_runs(manifests: &mut [Listed]) {
    let tie = |a: &Listed, b: &Listed| {
        let (a, b) = (&a.manifest.head, &b.manifest.head);
        (a.started_at, a.finished_at, &a.vault) == (b.started_at, b.finished_at, &b.vault)
    };
    let mut start = 0;
    while start < manifests.len() {
        let mut end = start + 1;
        while end < manifests.len() && tie(&manifests[start], &manifests[end]) {
            end += 1;
        }
        let group = &mut manifests[start..end];
        // Groups are a handful of runs at most: a quadratic walk is plenty.
        for place in 0..group.len() {
            // The first remaining run whose predecessor is not among the remaining ones.
            let ready = (place..group.len())
                .find(|&i| {
                    let previous = group[i].manifest.head.previous.as_ref();
                    !group[place..]
                        .iter()
                        .any(|other| Some(&other.manifest.head.run) == previous)
                })
                .unwrap_or(place);
            group[place..=ready].rotate_right(1);
        }
        start = end;
    }
}

/// Replays every run, in order, all on one blocking thread: each run's transaction spans the
/// fetching and opening of its parts, and one thread keeps the allocator to one heap (see
/// [`OpenedManifest::part_blocking`]). Shared by rebuild and index sync.
pub(super) async fn replay_all(
    index: &Arc<Index>,
    store: &Arc<dyn BlobStore>,
    identities: &Arc<Identities>,
    manifests: Vec<Listed>,
    cancel: &CancellationToken,
    report: RebuildReport,
    mode: Replay,
) -> Result<RebuildReport, RestoreError> {
    let (index, store, identities, cancel) = (
        index.clone(),
        store.clone(),
        identities.clone(),
        cancel.clone(),
    );
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut report = report;
        for Listed {
            manifest: m,
            head_bytes,
        } in manifests
        {
            if cancel.is_cancelled() {
                return Err(mode.interrupted());
            }
            let replayed = match mode {
                // A rebuild is the index's only user: each part is fetched inside the run's
                // transaction, one at a time, so memory stays at one part.
                Replay::Rebuild => {
                    let mut read_part =
                        |i| m.part_blocking(&runtime, store.as_ref(), identities.as_ref(), i);
                    replay_run(&index, &m, head_bytes, &mut read_part, mode)?
                }
                // Sync shares the index with running backups, which wait for its lock on the
                // runtime's threads: a store request made while holding it could then never
                // complete. The run's sealed parts are fetched first, outside the transaction.
                Replay::Sync => match runtime.block_on(m.fetch_parts(store.as_ref())) {
                    Ok(fetched) => {
                        let mut read_part = |i| m.part_from(i, &fetched, identities.as_ref());
                        replay_run(&index, &m, head_bytes, &mut read_part, mode)?
                    }
                    Err(e) => Replayed::Problem(format!("{e}; its run is left out")),
                },
            };
            report.add(replayed);
        }
        Ok(report)
    })
    .await
    .map_err(|e| RestoreError::Task(e.to_string()))?
}

/// Object blobs no replayed run references: captures of runs that never committed.
async fn incomplete_runs(
    index: &Arc<Index>,
    store: &dyn BlobStore,
) -> Result<Vec<IncompleteRun>, RestoreError> {
    let objects = store.list("objects/").await.map_err(|e| {
        RestoreError::Task(format!("cannot list the object blobs in the store: {e}"))
    })?;
    let index = index.clone();
    tokio::task::spawn_blocking(move || {
        let mut incomplete: BTreeMap<(String, String), usize> = BTreeMap::new();
        for meta in objects {
            if index.capture(&meta.key)?.is_none() {
                if let Some(k) = vault_and_run(meta.key.as_str()) {
                    *incomplete.entry(k).or_default() += 1;
                }
            }
        }
        Ok(incomplete
            .into_iter()
            .map(|((vault, run), blobs)| IncompleteRun { vault, run, blobs })
            .collect())
    })
    .await
    .map_err(|e| RestoreError::Task(e.to_string()))?
}

/// Moves the complete index at `tmp` over `final_path` with one rename. The old file's WAL
/// and shared-memory files go first: SQLite would otherwise replay the old index's log into
/// the new file. Their content belongs to the index being replaced, so nothing is lost.
fn swap_in(tmp: &Path, final_path: &Path) -> Result<(), RestoreError> {
    let moved = |e: std::io::Error| {
        RestoreError::Task(format!(
            "the rebuilt index is complete at {} but cannot be moved to {}: {e}; move it by hand",
            tmp.display(),
            final_path.display()
        ))
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(moved)?;
    // The old index's log and shared memory, never the new file's: SQLite would replay the old
    // log into the new file.
    for p in side_files(final_path) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(moved(e)),
        }
    }
    std::fs::rename(tmp, final_path).map_err(moved)?;
    // The rename is durable once the directory is.
    if let Some(dir) = final_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(moved)?;
    }
    Ok(())
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
