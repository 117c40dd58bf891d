//! Recording what runs do: begin, captures with their versions, unchanged and deleted objects,
//! per-object errors, finish. [`Writer`] holds one open transaction ([`Index::write`]); the
//! methods of the same names on [`Index`] each wrap a single call in its own transaction.
//!
//! Every per-run record checks that the run exists and is still running: once a run has its
//! final status, its manifest lists exactly what it recorded, and the index must not disagree.

use rusqlite::{params, OptionalExtension, Transaction};

use super::error::{classify, IndexError};
use super::types::{
    NewCapture, ObjectState, RunStats, RunStatus, SkippedCounts, VerificationRecord,
};
use super::Index;
use crate::model::{BlobKey, ObjectKind, ObjectName, RunId, Validity, VaultName};

/// One open write transaction on the index; see [`Index::write`].
pub struct Writer<'a> {
    tx: Transaction<'a>,
    path: &'a str,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(tx: Transaction<'a>, path: &'a str) -> Self {
        Writer { tx, path }
    }

    pub(crate) fn commit(self) -> Result<(), IndexError> {
        self.tx
            .commit()
            .map_err(|e| classify(self.path, "committing", e))
    }

    fn err(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
        move |e| classify(self.path, context, e)
    }

    /// Records the start of a run of `vault`.
    pub fn begin_run(
        &mut self,
        run: &RunId,
        vault: &VaultName,
        started_at: i64,
    ) -> Result<(), IndexError> {
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT INTO runs (run_id, vault, started_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![run.as_str(), vault.as_str(), started_at]))
            .map_err(self.err("recording the start of a run"))?;
        if inserted == 0 {
            return Err(IndexError::DuplicateRun { run: run.clone() });
        }
        Ok(())
    }

    /// Records a blob written for one object in `run`, with the versions it holds, and updates
    /// the object's last-seen state. A capture lists the object's versions, so it also counts as
    /// a deep scan for change detection.
    pub fn record_capture(&mut self, run: &RunId, capture: &NewCapture) -> Result<(), IndexError> {
        let tags = checked_tags(run, capture)?;
        let (run_row, vault) = self.running(run)?;
        let (capture_row, object) = self.insert_capture(run_row, &vault, capture, tags)?;
        self.add_member(run_row, object, capture_row)
    }

    /// Inserts a capture row written by run `run_row` and its versions; returns the capture's
    /// and the object's row ids.
    fn insert_capture(
        &mut self,
        run_row: i64,
        vault: &VaultName,
        capture: &NewCapture,
        tags: Option<String>,
    ) -> Result<(i64, i64), IndexError> {
        let object = self.upsert_object(vault, &capture.object, capture.captured_at, true)?;
        let context = "recording a capture";
        let capture_row: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO captures (run, object, blob_key, display_name, captured_at,
                     current_version, updated, plain_bytes, stored_bytes, sha256, payload_mode,
                     tags, expires_at, not_before, validity_known)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 RETURNING id",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        run_row,
                        object,
                        capture.blob.as_str(),
                        capture.object.name.as_str(),
                        capture.captured_at,
                        capture.object.current_version.as_str(),
                        capture.object.updated,
                        capture.plain_bytes,
                        capture.stored_bytes,
                        capture.sha256,
                        capture.payload.as_str(),
                        tags,
                        capture.validity.and_then(|v| v.expires),
                        capture.validity.and_then(|v| v.not_before),
                        capture.validity.is_some(),
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(self.err(context))?;
        let mut insert_version = self
            .tx
            .prepare_cached(
                "INSERT INTO capture_versions (capture, version, created, updated, enabled)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(self.err(context))?;
        for v in &capture.versions {
            insert_version
                .execute(params![
                    capture_row,
                    v.version.as_str(),
                    v.created,
                    v.updated,
                    v.enabled
                ])
                .map_err(|e| classify(self.path, "recording the versions of a capture", e))?;
        }
        Ok((capture_row, object))
    }

    /// Records that run `run_row` holds `capture` as its copy of `object`. A run holds one
    /// capture per object; a second record for the same object keeps the first.
    fn add_member(&mut self, run_row: i64, object: i64, capture: i64) -> Result<(), IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO run_members (run, object, capture) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run, object) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![run_row, object, capture]))
            .map_err(self.err("recording what a run holds"))?;
        Ok(())
    }

    /// Records that `run` saw an object unchanged since its capture in `blob` (no blob written):
    /// the run holds that capture as its copy of the object, whichever run wrote it.
    /// `deep_scanned` says whether its full version list was compared too.
    pub fn record_unchanged(
        &mut self,
        run: &RunId,
        object: &ObjectState,
        blob: &BlobKey,
        seen_at: i64,
        deep_scanned: bool,
    ) -> Result<(), IndexError> {
        let (run_row, vault) = self.running(run)?;
        let object_row = self.upsert_object(&vault, object, seen_at, deep_scanned)?;
        let capture: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM captures WHERE blob_key = ?1 AND object = ?2")
            .and_then(|mut s| {
                s.query_row(params![blob.as_str(), object_row], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err("looking up a capture"))?;
        let capture = capture.ok_or_else(|| {
            IndexError::InvalidInput(format!(
                "run {run} saw {}/{} unchanged since blob {blob}, which the index holds no capture of that object in; rebuild the index with kvkeep index rebuild",
                object.kind, object.name
            ))
        })?;
        self.add_member(run_row, object_row, capture)
    }

    /// Records the `nbf` and `exp` a run listed for an object it found unchanged since its
    /// capture in `blob`, when that capture's are not known (it was recorded before kvkeep read
    /// them). Unchanged means the same `updated`, and Key Vault moves `updated` whenever
    /// attributes change, so the listing still shows the captured version's period; a period
    /// already known is left as the capture recorded it. Returns whether it filled one in.
    pub fn fill_unknown_validity(
        &mut self,
        blob: &BlobKey,
        validity: &Validity,
    ) -> Result<bool, IndexError> {
        let filled = self
            .tx
            .prepare_cached(
                "UPDATE captures SET expires_at = ?2, not_before = ?3, validity_known = 1
                 WHERE blob_key = ?1 AND validity_known = 0",
            )
            .and_then(|mut s| {
                s.execute(params![
                    blob.as_str(),
                    validity.expires,
                    validity.not_before
                ])
            })
            .map_err(self.err("recording the validity period of an unchanged object"))?;
        Ok(filled > 0)
    }

    /// Records how many listed objects run `run` left out, by reason.
    pub fn record_skipped(
        &mut self,
        run: &RunId,
        skipped: &SkippedCounts,
    ) -> Result<(), IndexError> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE runs SET skipped_managed = ?2, skipped_filtered = ?3, skipped_tagged = ?4
                 WHERE run_id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.as_str(),
                    skipped.managed,
                    skipped.filtered,
                    skipped.tagged
                ])
            })
            .map_err(self.err("recording the objects a run left out"))?;
        if changed == 0 {
            return Err(IndexError::UnknownRun { run: run.clone() });
        }
        Ok(())
    }

    /// Records, for a rebuild, a capture that run `writer` wrote but whose manifest is no longer
    /// in the store, from an entry of a later manifest that refers to it. `writer` gets a row
    /// (finished, no manifest, so never a restore point) if the index has none, and the capture
    /// is recorded under it; it then counts through the runs that hold it
    /// ([`Writer::record_unchanged`]), as if `writer` had been forgotten by a prune.
    pub fn record_orphaned_capture(
        &mut self,
        vault: &VaultName,
        writer: &RunId,
        capture: &NewCapture,
    ) -> Result<(), IndexError> {
        let tags = checked_tags(writer, capture)?;
        let context = "recording the run behind an orphaned capture";
        self.tx
            .prepare_cached(
                "INSERT INTO runs (run_id, vault, started_at, finished_at, status, forgotten_at)
                 VALUES (?1, ?2, ?3, ?3, 'completed', ?3)
                 ON CONFLICT (run_id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    writer.as_str(),
                    vault.as_str(),
                    capture.captured_at
                ])
            })
            .map_err(self.err(context))?;
        let row: Option<(i64, String, bool)> = self
            .tx
            .prepare_cached(
                "SELECT id, vault, manifest_key IS NOT NULL FROM runs WHERE run_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([writer.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err(context))?;
        match row {
            Some((id, v, false)) if v == vault.as_str() => {
                self.insert_capture(id, vault, capture, tags)?;
                Ok(())
            }
            _ => Err(IndexError::InvalidInput(format!(
                "blob {} of run {writer} is not in the index, but run {writer} is recorded with a manifest or for another vault than {vault}",
                capture.blob
            ))),
        }
    }

    /// Records that `run` found an object gone from the vault. Recording the same object twice
    /// in one run is harmless.
    pub fn record_deleted(
        &mut self,
        run: &RunId,
        kind: ObjectKind,
        name: &ObjectName,
        seen_at: i64,
    ) -> Result<(), IndexError> {
        let (run_row, vault) = self.running(run)?;
        let context = "recording a deletion";
        let object: i64 = self
            .tx
            .prepare_cached("SELECT id FROM objects WHERE vault = ?1 AND kind = ?2 AND name = ?3")
            .and_then(|mut s| {
                s.query_row(
                    params![vault.as_str(), kind.as_str(), name.canonical()],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(self.err(context))?
            .ok_or_else(|| IndexError::UnknownObject {
                vault: vault.clone(),
                kind,
                name: name.clone(),
            })?;
        self.tx
            .prepare_cached(
                "INSERT INTO deletions (run, object, seen_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run, object) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![run_row, object, seen_at]))
            .map_err(self.err(context))?;
        // deleted_at is the first time the object was seen gone since it was last seen present;
        // a deletion older than the last sighting (a rebuild replaying an old manifest) is stale.
        self.tx
            .prepare_cached(
                "UPDATE objects SET deleted_at = CASE
                     WHEN ?2 < last_seen THEN deleted_at
                     ELSE min(coalesce(deleted_at, ?2), ?2) END
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![object, seen_at]))
            .map_err(self.err(context))?;
        Ok(())
    }

    /// Records why an object could not be captured in `run`. `error_kind` is a short stable
    /// word (`forbidden`, `throttled`, ...) for grouping; `message` is for a person.
    pub fn record_object_error(
        &mut self,
        run: &RunId,
        kind: ObjectKind,
        name: &ObjectName,
        error_kind: &str,
        message: &str,
        at: i64,
    ) -> Result<(), IndexError> {
        let (run_row, _) = self.running(run)?;
        self.tx
            .prepare_cached(
                "INSERT INTO object_errors (run, kind, name, error_kind, message, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run_row,
                    kind.as_str(),
                    name.as_str(),
                    error_kind,
                    message,
                    at
                ])
            })
            .map_err(self.err("recording an object error"))?;
        Ok(())
    }

    /// Ends `run` with its final status and counts. `manifest` is the manifest's key once it is
    /// in the store; pass `None` when the run ended without one (its captures then never count).
    pub fn finish_run(
        &mut self,
        run: &RunId,
        status: RunStatus,
        stats: &RunStats,
        finished_at: i64,
        manifest: Option<&BlobKey>,
    ) -> Result<(), IndexError> {
        if status == RunStatus::Running {
            return Err(IndexError::InvalidInput(format!(
                "run {run} cannot finish with status running: pass its final status"
            )));
        }
        let (run_row, _) = self.running(run)?;
        if manifest.is_some() {
            self.carry_over(run_row)?;
        }
        self.tx
            .prepare_cached(
                "UPDATE runs SET finished_at = ?2, status = ?3, captured_objects = ?4,
                     unchanged_objects = ?5, deleted_objects = ?6, failed_objects = ?7,
                     uploaded_bytes = ?8, manifest_key = ?9
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run_row,
                    finished_at,
                    status.as_str(),
                    stats.captured_objects,
                    stats.unchanged_objects,
                    stats.deleted_objects,
                    stats.failed_objects,
                    stats.uploaded_bytes,
                    manifest.map(BlobKey::as_str),
                ])
            })
            .map_err(self.err("finishing a run"))?;
        Ok(())
    }

    /// Completes what a committing run holds: an object it neither captured, saw unchanged nor
    /// saw deleted (it failed, or its kind was not backed up in this run) keeps the capture the
    /// vault's previous restore point held. That is what a restore as of this run returned
    /// before runs recorded what they hold, and what the manifest means by "their earlier
    /// captures in earlier manifests"; a rebuild replays the same records, so it agrees.
    fn carry_over(&mut self, run_row: i64) -> Result<(), IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO run_members (run, object, capture)
                 SELECT ?1, m.object, m.capture FROM run_members AS m
                 WHERE m.run = (
                     SELECT p.id FROM runs AS p JOIN runs AS me ON me.id = ?1
                     WHERE p.vault = me.vault AND p.manifest_key IS NOT NULL AND p.id <> me.id
                       AND (p.started_at < me.started_at
                            OR (p.started_at = me.started_at AND p.id < me.id))
                     ORDER BY p.started_at DESC, p.id DESC LIMIT 1)
                   AND NOT EXISTS (
                     SELECT 1 FROM deletions AS d WHERE d.run = ?1 AND d.object = m.object)
                 ON CONFLICT (run, object) DO NOTHING",
            )
            .and_then(|mut s| s.execute([run_row]))
            .map_err(self.err("carrying objects over from the previous restore point"))?;
        Ok(())
    }

    /// Prune's first step: `run` is no restore point from now on. Its manifest key moves to
    /// `forgotten_manifest_key` (the manifest is still to be deleted from the store) and the
    /// run keeps what it holds until [`Writer::manifest_deleted`], so no blob its manifest
    /// names is deleted while the manifest may still be in the store. Idempotent: a run
    /// already forgotten is left as it is.
    ///
    /// The crash-safe order of a prune: mark here → delete the manifest (head, then parts) →
    /// [`Writer::manifest_deleted`] → delete the blobs no run holds ([`Index::unheld_blobs`])
    /// → [`Writer::delete_capture`]. A crash between two steps leaves marks the next prune
    /// completes from, never a restore point with a missing blob.
    pub fn mark_forgotten(&mut self, run: &RunId, at: i64) -> Result<(), IndexError> {
        let context = "marking a restore point forgotten";
        let row: Option<(i64, bool, bool)> = self
            .tx
            .prepare_cached(
                "SELECT id, manifest_key IS NOT NULL, forgotten_at IS NOT NULL
                 FROM runs WHERE run_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([run.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err(context))?;
        let run_row = match row {
            None => return Err(IndexError::UnknownRun { run: run.clone() }),
            Some((_, _, true)) => return Ok(()),
            Some((_, false, false)) => {
                return Err(IndexError::InvalidInput(format!(
                    "run {run} is no restore point (it has no manifest), so it cannot be forgotten"
                )))
            }
            Some((id, true, false)) => id,
        };
        self.tx
            .prepare_cached(
                "UPDATE runs SET forgotten_at = ?2, forgotten_manifest_key = manifest_key,
                     manifest_key = NULL
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![run_row, at]))
            .map_err(self.err(context))?;
        Ok(())
    }

    /// Prune's second step, once the manifest of forgotten run `run` is gone from the store:
    /// the run holds nothing any more, so the blobs only it held can go. Idempotent.
    pub fn manifest_deleted(&mut self, run: &RunId) -> Result<(), IndexError> {
        let context = "recording a deleted manifest";
        let run_row = self.forgotten_row(run, context)?;
        self.release_members(run_row, context)?;
        self.tx
            .prepare_cached("UPDATE runs SET forgotten_manifest_key = NULL WHERE id = ?1")
            .and_then(|mut s| s.execute([run_row]))
            .map_err(self.err(context))?;
        Ok(())
    }

    /// Both steps at once, for callers that delete no manifest (tests, a store already
    /// without it): [`Writer::mark_forgotten`] then [`Writer::manifest_deleted`].
    pub fn forget_run(&mut self, run: &RunId, at: i64) -> Result<(), IndexError> {
        self.mark_forgotten(run, at)?;
        self.manifest_deleted(run)
    }

    /// Removes `run`, which ended without a manifest in the index (not forgotten, not swept,
    /// not running), with everything it recorded, and returns whether there was such a run.
    /// Index sync calls it in the transaction that replays the run's manifest, found in the
    /// store after all: the process died between writing the manifest and recording it, and the
    /// manifest, not the half-recorded run, is the truth. Nothing else can hold its captures:
    /// change detection only refers to committed captures.
    pub fn discard_uncommitted_run(&mut self, run: &RunId) -> Result<bool, IndexError> {
        let deleted = self
            .tx
            .prepare_cached(
                "DELETE FROM runs WHERE run_id = ?1 AND manifest_key IS NULL
                     AND forgotten_at IS NULL AND swept_at IS NULL AND status <> 'running'",
            )
            .and_then(|mut s| s.execute([run.as_str()]))
            .map_err(self.err("discarding a run recorded without its manifest"))?;
        Ok(deleted > 0)
    }

    /// Gives up the blobs of `run`, which ended without a manifest (failed, interrupted before
    /// committing, or recorded by a rebuild as the writer of blobs whose manifest is gone), once
    /// it is older than prune's grace period: it holds nothing any more, so blobs no committed
    /// run holds can go. Refused for a running or committed run. Idempotent.
    pub fn sweep_uncommitted(&mut self, run: &RunId, at: i64) -> Result<(), IndexError> {
        let context = "sweeping a run that never committed";
        let row: Option<(i64, bool, bool)> = self
            .tx
            .prepare_cached(
                "SELECT id, status = 'running',
                     manifest_key IS NOT NULL OR forgotten_manifest_key IS NOT NULL
                 FROM runs WHERE run_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([run.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err(context))?;
        let run_row = match row {
            None => return Err(IndexError::UnknownRun { run: run.clone() }),
            Some((_, true, _)) => {
                return Err(IndexError::InvalidInput(format!(
                    "run {run} is still running; its blobs cannot be given up"
                )))
            }
            Some((_, _, true)) => {
                return Err(IndexError::InvalidInput(format!(
                    "run {run} has a manifest; prune forgets restore points by the retention policy only"
                )))
            }
            Some((id, false, false)) => id,
        };
        self.release_members(run_row, context)?;
        self.tx
            .prepare_cached("UPDATE runs SET swept_at = coalesce(swept_at, ?2) WHERE id = ?1")
            .and_then(|mut s| s.execute(params![run_row, at]))
            .map_err(self.err(context))?;
        Ok(())
    }

    fn forgotten_row(&mut self, run: &RunId, context: &'static str) -> Result<i64, IndexError> {
        let row: Option<(i64, bool)> = self
            .tx
            .prepare_cached("SELECT id, forgotten_at IS NOT NULL FROM runs WHERE run_id = ?1")
            .and_then(|mut s| {
                s.query_row([run.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(self.err(context))?;
        match row {
            None => Err(IndexError::UnknownRun { run: run.clone() }),
            Some((_, false)) => Err(IndexError::InvalidInput(format!(
                "run {run} is not marked forgotten; mark it before deleting its manifest"
            ))),
            Some((id, true)) => Ok(id),
        }
    }

    fn release_members(&mut self, run_row: i64, context: &'static str) -> Result<(), IndexError> {
        self.tx
            .prepare_cached("DELETE FROM run_members WHERE run = ?1")
            .and_then(|mut s| s.execute([run_row]))
            .map_err(self.err(context))?;
        Ok(())
    }

    /// Deletes the capture stored at `blob` once the blob is gone from the store. Refused while a
    /// run still holds it. Returns whether there was such a capture.
    pub fn delete_capture(&mut self, blob: &BlobKey) -> Result<bool, IndexError> {
        let context = "deleting a capture";
        let holder: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT r.run_id FROM captures AS c
                 JOIN run_members AS m ON m.capture = c.id
                 JOIN runs AS r ON r.id = m.run
                 WHERE c.blob_key = ?1 LIMIT 1",
            )
            .and_then(|mut s| s.query_row([blob.as_str()], |r| r.get(0)).optional())
            .map_err(self.err(context))?;
        if let Some(holder) = holder {
            return Err(IndexError::InvalidInput(format!(
                "capture {blob} cannot be deleted: run {holder} still holds it; forget that run first"
            )));
        }
        let deleted = self
            .tx
            .prepare_cached("DELETE FROM captures WHERE blob_key = ?1")
            .and_then(|mut s| s.execute([blob.as_str()]))
            .map_err(self.err(context))?;
        Ok(deleted > 0)
    }

    /// Marks the runs of `vault` (or of every vault) still `running` as `interrupted` at `at`,
    /// without a manifest, and returns how many. Call it once the vault's lease is held (or, for
    /// all vaults, when a daemon that is the index's only user starts): no earlier run can still
    /// be going then, so a `running` row is the trace of a crash.
    pub fn interrupt_unfinished_runs(
        &mut self,
        vault: Option<&VaultName>,
        at: i64,
    ) -> Result<usize, IndexError> {
        self.tx
            .prepare_cached(
                "UPDATE runs SET status = 'interrupted', finished_at = max(?1, started_at)
                 WHERE status = 'running' AND (?2 IS NULL OR vault = ?2)",
            )
            .and_then(|mut s| s.execute(params![at, vault.map(VaultName::as_str)]))
            .map_err(self.err("interrupting unfinished runs"))
    }

    /// Records `run` of `vault`, which the kvkeep instance `by` started at `started_at` and
    /// never finished (its lease on the vault ended without a release), as `interrupted` at
    /// `at`. A run the index knows is left as it is — committed (its manifest was synced), or
    /// already ended — unless it is still `running`, which only this host's own previous
    /// process can have left. Returns whether the index changed.
    pub fn record_abandoned_run(
        &mut self,
        run: &RunId,
        vault: &VaultName,
        started_at: i64,
        at: i64,
        by: &str,
    ) -> Result<bool, IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO runs (run_id, vault, started_at, finished_at, status, abandoned_by)
                 VALUES (?1, ?2, ?3, max(?4, ?3), 'interrupted', ?5)
                 ON CONFLICT (run_id) DO UPDATE
                 SET status = 'interrupted', finished_at = max(?4, started_at), abandoned_by = ?5
                 WHERE status = 'running'",
            )
            .and_then(|mut s| s.execute(params![run.as_str(), vault.as_str(), started_at, at, by]))
            .map(|changed| changed > 0)
            .map_err(self.err("recording a run another instance left unfinished"))
    }

    /// Records the outcome of a verification.
    pub fn record_verification(&mut self, v: &VerificationRecord) -> Result<(), IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO verifications (vault, at, depth, ok, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    v.vault.as_str(),
                    v.at,
                    v.depth.as_str(),
                    v.ok,
                    v.detail
                ])
            })
            .map_err(self.err("recording a verification"))?;
        Ok(())
    }

    /// Whether the index holds a capture stored at `blob` (a rebuild asks before replaying an
    /// entry that refers to an earlier run's capture).
    pub fn has_capture(&self, blob: &BlobKey) -> Result<bool, IndexError> {
        self.tx
            .prepare_cached("SELECT 1 FROM captures WHERE blob_key = ?1")
            .and_then(|mut s| s.exists([blob.as_str()]))
            .map_err(self.err("looking up a capture"))
    }

    /// Whether the index knows `kind`/`name` in `vault`.
    pub fn has_object(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<bool, IndexError> {
        self.tx
            .prepare_cached("SELECT 1 FROM objects WHERE vault = ?1 AND kind = ?2 AND name = ?3")
            .and_then(|mut s| s.exists(params![vault.as_str(), kind.as_str(), name.canonical()]))
            .map_err(self.err("looking up an object"))
    }

    /// The row and vault of `run`, which must exist and still be running.
    fn running(&self, run: &RunId) -> Result<(i64, VaultName), IndexError> {
        let row: Option<(i64, String, bool)> = self
            .tx
            .prepare_cached("SELECT id, vault, finished_at IS NOT NULL FROM runs WHERE run_id = ?1")
            .and_then(|mut s| {
                s.query_row([run.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err("looking up a run"))?;
        let (id, vault, finished) =
            row.ok_or_else(|| IndexError::UnknownRun { run: run.clone() })?;
        let vault: VaultName = vault.parse().map_err(|e| IndexError::BadValue {
            path: self.path.to_string(),
            detail: format!("vault of run {run}: {e}"),
        })?;
        if finished {
            return Err(IndexError::RunFinished {
                run: run.clone(),
                vault,
            });
        }
        Ok((id, vault))
    }

    /// Inserts or refreshes an object's row from a sighting at `seen_at`; returns its row id.
    fn upsert_object(
        &self,
        vault: &VaultName,
        object: &ObjectState,
        seen_at: i64,
        deep_scanned: bool,
    ) -> Result<i64, IndexError> {
        // Sightings may arrive out of order (a rebuild replays manifests in any order), so the
        // "current" columns only move forward in time, and deleted_at survives only a sighting
        // older than the deletion.
        self.tx
            .prepare_cached(
                "INSERT INTO objects (vault, kind, name, display_name, first_seen, last_seen,
                     current_version, updated, last_deep_scan)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)
                 ON CONFLICT (vault, kind, name) DO UPDATE SET
                     display_name = CASE WHEN excluded.last_seen >= last_seen
                         THEN excluded.display_name ELSE display_name END,
                     current_version = CASE WHEN excluded.last_seen >= last_seen
                         THEN excluded.current_version ELSE current_version END,
                     updated = CASE WHEN excluded.last_seen >= last_seen
                         THEN excluded.updated ELSE updated END,
                     deleted_at = CASE WHEN deleted_at > excluded.last_seen
                         THEN deleted_at ELSE NULL END,
                     first_seen = min(first_seen, excluded.first_seen),
                     last_seen = max(last_seen, excluded.last_seen),
                     last_deep_scan = max(coalesce(last_deep_scan, excluded.last_deep_scan),
                         coalesce(excluded.last_deep_scan, last_deep_scan))
                 RETURNING id",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        vault.as_str(),
                        object.kind.as_str(),
                        object.name.canonical(),
                        object.name.as_str(),
                        seen_at,
                        object.current_version.as_str(),
                        object.updated,
                        deep_scanned.then_some(seen_at),
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(self.err("recording an object"))
    }
}

/// Checks a capture's sha256 and serialises its tags for the `tags` column.
fn checked_tags(run: &RunId, capture: &NewCapture) -> Result<Option<String>, IndexError> {
    if !crate::crypto::is_sha256_hex(&capture.sha256) {
        return Err(IndexError::InvalidInput(format!(
            "capture of {}/{} in run {run}: sha256 {:?} is not 64 lowercase hex characters",
            capture.object.kind, capture.object.name, capture.sha256
        )));
    }
    // A map of strings always serialises; the error arm only keeps `?` honest.
    capture
        .tags
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| {
            IndexError::InvalidInput(format!(
                "capture of {}/{} in run {run}: tags cannot be recorded: {e}",
                capture.object.kind, capture.object.name
            ))
        })
}

/// One-record conveniences: each runs in its own transaction. Batch with [`Index::write`].
impl Index {
    /// See [`Writer::begin_run`].
    pub fn begin_run(
        &self,
        run: &RunId,
        vault: &VaultName,
        started_at: i64,
    ) -> Result<(), IndexError> {
        self.write(|w| w.begin_run(run, vault, started_at))
    }

    /// See [`Writer::record_capture`].
    pub fn record_capture(&self, run: &RunId, capture: &NewCapture) -> Result<(), IndexError> {
        self.write(|w| w.record_capture(run, capture))
    }

    /// See [`Writer::record_unchanged`].
    pub fn record_unchanged(
        &self,
        run: &RunId,
        object: &ObjectState,
        blob: &BlobKey,
        seen_at: i64,
        deep_scanned: bool,
    ) -> Result<(), IndexError> {
        self.write(|w| w.record_unchanged(run, object, blob, seen_at, deep_scanned))
    }

    /// See [`Writer::forget_run`].
    pub fn forget_run(&self, run: &RunId, at: i64) -> Result<(), IndexError> {
        self.write(|w| w.forget_run(run, at))
    }

    /// See [`Writer::mark_forgotten`]; every run of `runs` in one transaction.
    pub fn mark_forgotten(&self, runs: &[RunId], at: i64) -> Result<(), IndexError> {
        self.write(|w| runs.iter().try_for_each(|run| w.mark_forgotten(run, at)))
    }

    /// See [`Writer::manifest_deleted`].
    pub fn manifest_deleted(&self, run: &RunId) -> Result<(), IndexError> {
        self.write(|w| w.manifest_deleted(run))
    }

    /// See [`Writer::sweep_uncommitted`].
    pub fn sweep_uncommitted(&self, run: &RunId, at: i64) -> Result<(), IndexError> {
        self.write(|w| w.sweep_uncommitted(run, at))
    }

    /// See [`Writer::delete_capture`].
    pub fn delete_capture(&self, blob: &BlobKey) -> Result<bool, IndexError> {
        self.write(|w| w.delete_capture(blob))
    }

    /// [`Writer::delete_capture`] for every blob of `blobs`, in one transaction; returns how
    /// many had a capture.
    pub fn delete_captures(&self, blobs: &[BlobKey]) -> Result<usize, IndexError> {
        self.write(|w| {
            blobs.iter().try_fold(0, |n, blob| {
                w.delete_capture(blob).map(|had| n + usize::from(had))
            })
        })
    }

    /// See [`Writer::record_deleted`].
    pub fn record_deleted(
        &self,
        run: &RunId,
        kind: ObjectKind,
        name: &ObjectName,
        seen_at: i64,
    ) -> Result<(), IndexError> {
        self.write(|w| w.record_deleted(run, kind, name, seen_at))
    }

    /// See [`Writer::record_object_error`].
    pub fn record_object_error(
        &self,
        run: &RunId,
        kind: ObjectKind,
        name: &ObjectName,
        error_kind: &str,
        message: &str,
        at: i64,
    ) -> Result<(), IndexError> {
        self.write(|w| w.record_object_error(run, kind, name, error_kind, message, at))
    }

    /// See [`Writer::finish_run`].
    pub fn finish_run(
        &self,
        run: &RunId,
        status: RunStatus,
        stats: &RunStats,
        finished_at: i64,
        manifest: Option<&BlobKey>,
    ) -> Result<(), IndexError> {
        self.write(|w| w.finish_run(run, status, stats, finished_at, manifest))
    }

    /// See [`Writer::interrupt_unfinished_runs`].
    pub fn interrupt_unfinished_runs(
        &self,
        vault: Option<&VaultName>,
        at: i64,
    ) -> Result<usize, IndexError> {
        self.write(|w| w.interrupt_unfinished_runs(vault, at))
    }

    /// See [`Writer::record_abandoned_run`].
    pub fn record_abandoned_run(
        &self,
        run: &RunId,
        vault: &VaultName,
        started_at: i64,
        at: i64,
        by: &str,
    ) -> Result<bool, IndexError> {
        self.write(|w| w.record_abandoned_run(run, vault, started_at, at, by))
    }

    /// See [`Writer::record_verification`].
    pub fn record_verification(&self, v: &VerificationRecord) -> Result<(), IndexError> {
        self.write(|w| w.record_verification(v))
    }
}
