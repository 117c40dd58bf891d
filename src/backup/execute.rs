//! Carrying out a backup run of one vault (see the module docs of [`super`] for the order of
//! steps and the rules). [`VaultBackup`] holds the seams of one vault; [`VaultBackup::survey`]
//! plans without writing anything (`--dry-run`), [`VaultBackup::run`] plans and executes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::manifest::{
    object_blob_key, EntryState, ManifestDeleted, ManifestFailure, ManifestObject, ManifestVersion,
    ManifestWriter,
};
use super::plan::{
    self, object_key, BackupPlan, DeepScan, KnownObject, ListedObject, ObjectKey, PlanOptions,
    PlannedCapture, SkipReason, SkippedObject, VersionFingerprint,
};
use super::report::{BackupReport, BackupStats, ObjectFailure, Progress};
use crate::config::VaultConfig;
use crate::crypto::{sha256_hex, Label, Sealer};
use crate::index::{
    CapturedVersion, Index, IndexError, NewCapture, ObjectState, RunStatus, SkippedCounts,
};
use crate::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, Validity};
use crate::source::{
    ObjectSummary, SourceError, SourceErrorKind, VaultSource, VersionInfo, MAX_BACKUP_VERSIONS,
};
use crate::store::{BlobStore, LeaseWatch};

/// A source of "now" in Unix seconds. Production uses [`super::system_clock`].
pub type Clock = crate::clock::UnixClock;

/// Everything one vault's backup needs. Cheap to build per run.
#[derive(Clone)]
pub struct VaultBackup {
    /// The vault's configuration (kinds, filters, deep-scan period, payload mode).
    pub vault: VaultConfig,
    /// The vault.
    pub source: Arc<dyn VaultSource>,
    /// Where blobs go.
    pub store: Arc<dyn BlobStore>,
    /// The catalog.
    pub index: Arc<Index>,
    /// Seals blobs to the configured recipients.
    pub sealer: Arc<Sealer>,
    /// Objects in flight at once (`limits.concurrency`).
    pub concurrency: usize,
    /// The time.
    pub clock: Clock,
    /// Checked before each object is started.
    pub cancel: CancellationToken,
    /// Progress hooks.
    pub progress: Arc<dyn Progress>,
    /// Start a new manifest part past this many bytes of JSON instead of the default
    /// ([`super::manifest::PART_TARGET_BYTES`]); tests set it to get many parts.
    pub manifest_part_bytes: Option<usize>,
    /// The vault's lease, when the run holds one: checked before the manifest is written (and
    /// before its head), so a run that lost its lease never commits. `cancel` is cancelled
    /// too when it is lost, so no further object is started.
    pub lease: Option<LeaseWatch>,
}

/// Why a run could not even plan.
#[derive(Debug, thiserror::Error)]
enum SurveyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
}

/// A capture carried out and recorded.
struct Captured {
    capture: NewCapture,
}

/// What the manifest needs of a capture once it is recorded: where to find it in the index.
struct CaptureSummary {
    kind: ObjectKind,
    name: ObjectName,
    blob: BlobKey,
    stored_bytes: u64,
}

/// Manifest entries read from the index at once: enough to amortise a blocking task, few
/// enough that their versions stay a small part of the run's memory.
const ENTRY_BATCH: usize = 256;

impl VaultBackup {
    /// Runs `f` on the index off the async runtime threads: SQLite blocks. A task that dies
    /// becomes an index error like any other.
    async fn on_index<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || f(&index))
            .await
            .unwrap_or_else(|e| Err(IndexError::InvalidInput(format!("index task failed: {e}"))))
    }

    /// Lists the vault, reads the index and carries out the deep scans that are due, then plans.
    /// Writes nothing: this is `--dry-run`, and the first half of [`VaultBackup::run`].
    pub async fn survey(&self) -> Result<BackupPlan, String> {
        self.survey_inner().await.map_err(|e| e.to_string())
    }

    async fn survey_inner(&self) -> Result<BackupPlan, SurveyError> {
        let now = (self.clock)();
        let options = PlanOptions::from_vault(&self.vault, now)?;
        // The kinds side by side: pages of one kind follow each other (each page names the
        // next), so listing them one kind after another would add up three chains of latency.
        let listings = futures::future::try_join_all(
            self.vault.kinds.iter().map(|kind| self.source.list(*kind)),
        )
        .await?;
        let listing: Vec<ObjectSummary> = listings.into_iter().flatten().collect();
        let known = self.known_objects().await?;
        // A stopped run starts no deep scan: the objects stay unchanged and due next run.
        let due = if self.cancel.is_cancelled() {
            Vec::new()
        } else {
            plan::deep_scans_due(&options, &listing, &known)
        };
        let scans = self.deep_scans(&due, &known).await;
        Ok(plan::plan(&options, &listing, &known, &scans))
    }

    /// What committed runs say of the vault's objects, read in one query off the async runtime
    /// threads (SQLite blocks).
    async fn known_objects(&self) -> Result<HashMap<ObjectKey, KnownObject>, IndexError> {
        let vault = self.vault.name.clone();
        let objects = self
            .on_index(move |index| index.committed_objects(&vault))
            .await?;
        Ok(objects
            .into_iter()
            .map(|o| {
                (
                    object_key(o.kind, &o.name),
                    KnownObject {
                        kind: o.kind,
                        name: o.name,
                        deleted: o.deleted,
                        last: o.last,
                    },
                )
            })
            .collect())
    }

    /// Lists the versions of each due object and reads those its last capture holds. A scan
    /// that fails is left out (the plan then keeps the object unchanged, due again next run).
    async fn deep_scans(
        &self,
        due: &[(ObjectKind, ObjectName)],
        known: &HashMap<ObjectKey, KnownObject>,
    ) -> HashMap<ObjectKey, DeepScan> {
        let results: Vec<Option<(ObjectKey, DeepScan)>> = stream::iter(0..due.len())
            // By index, not by reference: a closure over borrowed items makes the future
            // impossible to prove `Send`, and the daemon spawns it.
            .map(|i| self.deep_scan_one(due[i].0, &due[i].1, known))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    /// One deep scan: the object's versions as listed now and as its last capture holds them.
    /// `None` when the run was stopped or the scan failed (logged).
    async fn deep_scan_one(
        &self,
        kind: ObjectKind,
        name: &ObjectName,
        known: &HashMap<ObjectKey, KnownObject>,
    ) -> Option<(ObjectKey, DeepScan)> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let key = object_key(kind, name);
        let blob = known.get(&key)?.last.as_ref()?.blob.clone();
        let current = match self.source.list_versions(kind, name).await {
            Ok(v) => v,
            Err(e) => {
                warn!(vault = %self.vault.name, kind = %kind, name = %name, error = %e,
                    "deep scan skipped: listing the versions failed; it is due again next run");
                return None;
            }
        };
        let captured = match self
            .on_index(move |index| index.capture_versions(&blob))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(vault = %self.vault.name, kind = %kind, name = %name, error = %e,
                    "deep scan skipped: reading the captured versions failed");
                return None;
            }
        };
        let scan = DeepScan {
            listed: current,
            captured: captured
                .into_iter()
                .map(|v| VersionFingerprint {
                    version: v.version,
                    updated: v.updated,
                    enabled: v.enabled,
                })
                .collect(),
        };
        Some((key, scan))
    }

    /// One object of the run: not started once the run is stopped (the only cancellation
    /// point, between objects, never inside one), else captured and reported to the progress
    /// hooks. Only a summary of the capture is kept.
    async fn capture_one(
        &self,
        run: &RunId,
        started_at: i64,
        planned: &PlannedCapture,
        backup_calls: &AtomicU64,
    ) -> Result<CaptureSummary, ObjectFailure> {
        if self.cancel.is_cancelled() {
            return Err(failure(
                planned,
                "interrupted",
                "not started: the run was stopped",
            ));
        }
        let outcome = self
            .capture(run, started_at, planned, backup_calls)
            .await
            .map(|c| CaptureSummary {
                kind: c.capture.object.kind,
                name: c.capture.object.name,
                blob: c.capture.blob,
                stored_bytes: c.capture.stored_bytes,
            });
        self.progress.object_done(
            &self.vault.name,
            planned.object.kind,
            &planned.object.name,
            outcome.is_ok(),
        );
        outcome
    }

    /// Runs a backup of the vault and reports how it went. Never panics on external input and
    /// never returns early without a report: every failure is in the report (and, once the run
    /// is recorded, in the index).
    pub async fn run(&self) -> BackupReport {
        self.run_as(RunId::random()).await
    }

    /// [`VaultBackup::run`] as run `run`: the id the vault's lease was taken for, so the lock
    /// blob names the run a holder that dies leaves unfinished.
    pub async fn run_as(&self, run: RunId) -> BackupReport {
        let started_at = (self.clock)();
        let vault = self.vault.name.clone();
        let mut report = BackupReport {
            vault: vault.clone(),
            run: run.clone(),
            status: RunStatus::Failed,
            started_at,
            finished_at: started_at,
            manifest: None,
            stats: BackupStats::default(),
            failures: Vec::new(),
            error: None,
            held_elsewhere: None,
        };
        let (this_run, this_vault) = (run.clone(), vault.clone());
        let begun = self
            .on_index(move |index| index.begin_run(&this_run, &this_vault, started_at))
            .await;
        if let Err(e) = begun {
            report.error = Some(format!("cannot record the run in the index: {e}"));
            report.finished_at = (self.clock)();
            self.progress.finished(&report);
            return report;
        }
        info!(vault = %vault, run = %run, "backup started");
        if self.cancel.is_cancelled() {
            report.error = Some("stopped before listing the vault: nothing was done".into());
            self.finish(&mut report, RunStatus::Interrupted, None).await;
            return report;
        }
        let plan = match self.survey_inner().await {
            Ok(plan) => plan,
            Err(e) => {
                report.error = Some(format!(
                    "backup of vault {vault} failed before any object: {e}"
                ));
                self.finish(&mut report, RunStatus::Failed, None).await;
                return report;
            }
        };
        self.progress.planned(&plan);
        report.stats.skipped_objects = plan.skipped.len() as u64;
        info!(vault = %vault, run = %run, changed = plan.changed.len(),
            unchanged = plan.unchanged.len(), gone = plan.gone.len(),
            skipped = plan.skipped.len(), "backup planned");

        let backup_calls = AtomicU64::new(0);
        // Only a summary of each capture is kept: its versions are in the index, and holding
        // them for every object of a large vault would cost hundreds of MiB.
        let outcomes: Vec<Result<CaptureSummary, ObjectFailure>> =
            stream::iter(0..plan.changed.len())
                // By index, for the same reason as the deep scans.
                .map(|i| self.capture_one(&run, started_at, &plan.changed[i], &backup_calls))
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
        report.stats.backup_calls = backup_calls.load(Ordering::Relaxed);

        let mut captured: Vec<CaptureSummary> = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(c) => {
                    report.stats.uploaded_bytes += c.stored_bytes;
                    captured.push(c);
                }
                Err(f) => report.failures.push(f),
            }
        }
        captured.sort_by_key(|c| (c.kind, c.name.canonical()));
        report
            .failures
            .sort_by_key(|f| (f.kind, f.name.canonical()));
        report.stats.captured_objects = captured.len() as u64;
        report.stats.failed_objects = report.failures.len() as u64;
        let interrupted = report
            .failures
            .iter()
            .any(|f| f.error_kind == "interrupted");

        // Unchanged and gone objects, and every failure, in one transaction.
        let seen_at = (self.clock)();
        // SQLite blocks: off the runtime threads, with owned copies of what it records.
        let unchanged: Vec<(ObjectState, BlobKey, bool, Validity)> = plan
            .unchanged
            .iter()
            .map(|u| {
                let state = ObjectState {
                    kind: u.object.kind,
                    name: u.object.name.clone(),
                    current_version: u.current_version.clone(),
                    updated: u.updated,
                };
                (
                    state,
                    u.last.blob.clone(),
                    u.deep_scanned,
                    u.object.validity,
                )
            })
            .collect();
        let gone: Vec<(ObjectKind, ObjectName)> =
            plan.gone.iter().map(|g| (g.kind, g.name.clone())).collect();
        let failures = report.failures.clone();
        let skipped = skipped_counts(&plan.skipped);
        let this_run = run.clone();
        let recorded = self
            .on_index(move |index| {
                index.write(|w| {
                    w.record_skipped(&this_run, &skipped)?;
                    for (state, blob, deep_scanned, validity) in &unchanged {
                        w.record_unchanged(&this_run, state, blob, seen_at, *deep_scanned)?;
                        // A capture recorded before kvkeep read `nbf`/`exp` learns them here,
                        // so the expiry report knows them without a new backup of the object.
                        w.fill_unknown_validity(blob, validity)?;
                    }
                    for (kind, name) in &gone {
                        w.record_deleted(&this_run, *kind, name, seen_at)?;
                    }
                    for f in &failures {
                        w.record_object_error(
                            &this_run,
                            f.kind,
                            &f.name,
                            &f.error_kind,
                            &f.message,
                            seen_at,
                        )?;
                    }
                    Ok(())
                })
            })
            .await;
        if let Err(e) = recorded {
            report.error = Some(format!("cannot record the run's objects in the index: {e}"));
            self.finish(&mut report, RunStatus::Failed, None).await;
            return report;
        }
        report.stats.unchanged_objects = plan.unchanged.len() as u64;
        report.stats.deleted_objects = plan.gone.len() as u64;

        let status = if interrupted {
            RunStatus::Interrupted
        } else if report.failures.is_empty() {
            RunStatus::Completed
        } else if captured.is_empty() && plan.unchanged.is_empty() {
            RunStatus::Failed
        } else {
            RunStatus::PartiallyFailed
        };

        // A run that lost its lease commits nothing: another instance may be backing the vault
        // up now, and its run, not this one, is the restore point. The blobs written stay
        // unreferenced until prune deletes them after its grace period.
        if let Some(lost) = self.lease_lost() {
            report.error = Some(format!(
                "{lost}; the run's manifest was not written, so nothing it captured counts (prune deletes its blobs after grace_period)"
            ));
            self.finish(&mut report, RunStatus::Interrupted, None).await;
            return report;
        }

        // The manifest last: it commits everything above.
        match self
            .write_manifest(&run, started_at, seen_at, status, &plan, &captured, &report)
            .await
        {
            Ok((key, bytes)) => {
                report.stats.uploaded_bytes += bytes;
                self.finish(&mut report, status, Some(key)).await;
            }
            Err(e) => {
                report.error = Some(format!(
                    "the run's manifest could not be written, so nothing it captured counts (the next run captures it again): {e}"
                ));
                let status = if self.lease_lost().is_some() {
                    RunStatus::Interrupted
                } else {
                    RunStatus::Failed
                };
                self.finish(&mut report, status, None).await;
            }
        }
        report
    }

    /// Why the run's lease was lost, if it holds one and lost it.
    fn lease_lost(&self) -> Option<String> {
        self.lease.as_ref().and_then(LeaseWatch::lost)
    }

    /// Records the end of the run and logs it.
    async fn finish(
        &self,
        report: &mut BackupReport,
        status: RunStatus,
        manifest: Option<BlobKey>,
    ) {
        report.finished_at = (self.clock)();
        report.status = status;
        report.manifest = manifest;
        let (run, stats, at, key) = (
            report.run.clone(),
            (&report.stats).into(),
            report.finished_at,
            report.manifest.clone(),
        );
        let finished = self
            .on_index(move |index| index.finish_run(&run, status, &stats, at, key.as_ref()))
            .await;
        if let Err(e) = finished {
            // The blobs and the manifest are in the store; `kvkeep index rebuild` recovers the
            // index from them, so this is reported, not fatal to the data.
            let message = format!("cannot record the end of the run in the index: {e}");
            report.error = Some(match report.error.take() {
                Some(earlier) => format!("{earlier}; {message}"),
                None => message,
            });
            if report.status != RunStatus::Failed {
                report.status = RunStatus::Failed;
            }
        }
        match report.status {
            RunStatus::Completed => info!(vault = %report.vault, run = %report.run,
                captured = report.stats.captured_objects, unchanged = report.stats.unchanged_objects,
                deleted = report.stats.deleted_objects, uploaded_bytes = report.stats.uploaded_bytes,
                "backup completed"),
            status => tracing::error!(vault = %report.vault, run = %report.run, status = %status,
                failed = report.stats.failed_objects, error = report.error.as_deref().unwrap_or(""),
                "backup did not complete"),
        }
        self.progress.finished(report);
    }

    /// Captures one object: versions → backup → seal → put → index. Two requests to the vault
    /// (one when a deep scan of this run already listed the versions), and no read of the
    /// object: the current version comes from the version list (see [`current_version`]), so
    /// a secret's value is never fetched and the identity needs list + backup only.
    async fn capture(
        &self,
        run: &RunId,
        run_started_at: i64,
        planned: &PlannedCapture,
        backup_calls: &AtomicU64,
    ) -> Result<Captured, ObjectFailure> {
        let kind = planned.object.kind;
        let name = &planned.object.name;
        let vault = &self.vault.name;
        debug!(vault = %vault, kind = %kind, name = %name, why = %planned.why, "capturing");
        let source_failure =
            |e: SourceError| failure(planned, source_kind(e.kind()), e.to_string());

        let versions = match &planned.versions {
            Some(listed) => listed.clone(),
            None => self
                .source
                .list_versions(kind, name)
                .await
                .map_err(source_failure)?,
        };
        let current_version = match current_version(&planned.object, &versions) {
            Current::Known(v) => v,
            Current::Ambiguous { chosen, candidates } => {
                // Only versions created within the same second with identical attributes and
                // tags get here; the blob holds them all either way, and only a drill's
                // "current version" comparison could notice the choice.
                warn!(vault = %vault, kind = %kind, name = %name, version = %chosen,
                    candidates, "current version ambiguous: several versions were created in the same second with identical attributes and tags; recording the one with the highest id");
                chosen
            }
            Current::None => {
                return Err(failure(
                    planned,
                    "permanent",
                    format!(
                        "{kind} {name} in vault {vault} has no versions; it may have been deleted meanwhile, the next run tries again"
                    ),
                ))
            }
        };
        if versions.len() > MAX_BACKUP_VERSIONS {
            return Err(failure(
                planned,
                "too_many_versions",
                format!(
                    "{kind} {name} in vault {vault} has {} versions; key vault backs up at most {MAX_BACKUP_VERSIONS}: remove old versions",
                    versions.len()
                ),
            ));
        }
        if !versions.iter().any(|v| v.version == current_version) {
            return Err(failure(
                planned,
                "permanent",
                format!(
                    "{kind} {name} in vault {vault}: the current version {current_version} is missing from the version list; it may have been deleted meanwhile, the next run tries again"
                ),
            ));
        }
        backup_calls.fetch_add(1, Ordering::Relaxed);
        let blob = self
            .source
            .backup(kind, name)
            .await
            .map_err(source_failure)?;
        let plain_bytes = blob.len() as u64;

        let captured_at = (self.clock)();
        let label = Label::object(
            vault.clone(),
            kind,
            name.clone(),
            versions.iter().map(|v| v.version.clone()).collect(),
            current_version.clone(),
            captured_at,
        )
        .with_run(run.clone())
        .with_mode(self.vault.payload.into());
        let sealer = self.sealer.clone();
        // zstd and age over up to 64 MiB: off the runtime threads.
        let sealed = tokio::task::spawn_blocking(move || {
            let payload = blob.into_bytes();
            sealer.seal(&label, &payload).map(|ciphertext| {
                let sha256 = sha256_hex(&ciphertext);
                (ciphertext, sha256)
            })
        })
        .await;
        let (ciphertext, sha256) = match sealed {
            Ok(Ok(sealed)) => sealed,
            Ok(Err(e)) => return Err(failure(planned, "crypto", e.to_string())),
            Err(e) => {
                return Err(failure(
                    planned,
                    "crypto",
                    format!("sealing task failed: {e}"),
                ))
            }
        };
        // Named by the run's start, like the manifest: a run's blobs share `{timestamp}-{run}`.
        let key = object_blob_key(vault, kind, name, run_started_at, run)
            .map_err(|e| failure(planned, "permanent", e.to_string()))?;
        let stored_bytes = ciphertext.len() as u64;
        self.store
            .put_new(&key, Bytes::from(ciphertext))
            .await
            .map_err(|e| failure(planned, "store", e.to_string()))?;
        let updated_now = versions
            .iter()
            .find(|v| v.version == current_version)
            .and_then(|v| v.updated);
        let capture = NewCapture {
            object: ObjectState {
                kind,
                name: name.clone(),
                current_version,
                updated: planned.object.updated.or(updated_now).unwrap_or_default(),
            },
            blob: key,
            captured_at,
            plain_bytes,
            stored_bytes,
            sha256,
            payload: self.vault.payload,
            versions: versions
                .into_iter()
                .map(|v| CapturedVersion {
                    version: v.version,
                    created: v.created,
                    updated: v.updated,
                    enabled: v.enabled,
                })
                .collect(),
            // From the listing the plan was made from: the same snapshot of the object that
            // change detection compared (`updated` moves when tags change).
            tags: Some(planned.object.tags.clone()),
            // Likewise: `updated` moves when `nbf` or `exp` change, so this is the period of
            // the version the blob holds as current.
            validity: Some(planned.object.validity),
        };
        // SQLite blocks: off the runtime threads. The capture comes back for the summary.
        let this_run = run.clone();
        let capture = self
            .on_index(move |index| index.record_capture(&this_run, &capture).map(|()| capture))
            .await
            .map_err(|e| failure(planned, "index", e.to_string()))?;
        debug!(vault = %vault, kind = %kind, name = %name, blob = %capture.blob,
            stored_bytes, "captured");
        Ok(Captured { capture })
    }

    /// Writes the manifest part by part (objects in (kind, name) order, read back from the
    /// index in batches, then deletions and failures) and its head last; returns the head's key
    /// and the bytes stored.
    #[allow(clippy::too_many_arguments)]
    async fn write_manifest(
        &self,
        run: &RunId,
        started_at: i64,
        finished_at: i64,
        status: RunStatus,
        plan: &BackupPlan,
        captured: &[CaptureSummary],
        report: &BackupReport,
    ) -> Result<(BlobKey, u64), String> {
        let vault = &self.vault.name;
        // No other run of the vault commits meanwhile (the vault's lock), so this is the run
        // this one follows.
        let previous = {
            let vault = vault.clone();
            self.on_index(move |index| index.newest_restore_point(&vault))
                .await
                .map_err(|e| format!("cannot read the vault's newest restore point: {e}"))?
        };
        let mut writer = ManifestWriter::new(
            self.store.clone(),
            self.sealer.clone(),
            vault.clone(),
            run.clone(),
            started_at,
        )
        .with_previous(previous);
        if let Some(bytes) = self.manifest_part_bytes {
            writer = writer.with_part_target(bytes);
        }
        // Both lists are sorted by (kind, canonical name): merge them into one ordered walk.
        let mut entries: Vec<(BlobKey, ObjectName)> =
            Vec::with_capacity(captured.len() + plan.unchanged.len());
        let (mut c, mut u) = (captured.iter().peekable(), plan.unchanged.iter().peekable());
        loop {
            let take_captured = match (c.peek(), u.peek()) {
                (Some(a), Some(b)) => {
                    (a.kind, a.name.canonical()) <= (b.object.kind, b.object.name.canonical())
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_captured {
                if let Some(a) = c.next() {
                    entries.push((a.blob.clone(), a.name.clone()));
                }
            } else if let Some(b) = u.next() {
                entries.push((b.last.blob.clone(), b.object.name.clone()));
            }
        }
        for batch in entries.chunks(ENTRY_BATCH) {
            let index = self.index.clone();
            let batch = batch.to_vec();
            let this_run = run.clone();
            let objects =
                tokio::task::spawn_blocking(move || manifest_entries(&index, &this_run, batch))
                    .await
                    .map_err(|e| format!("index task failed: {e}"))??;
            for object in &objects {
                writer.object(object).await?;
            }
        }
        for g in &plan.gone {
            writer
                .deleted(&ManifestDeleted {
                    kind: g.kind,
                    name: g.name.clone(),
                    seen_at: finished_at,
                })
                .await?;
        }
        for f in &report.failures {
            writer
                .failed(&ManifestFailure {
                    kind: f.kind,
                    name: f.name.clone(),
                    error_kind: f.error_kind.clone(),
                    message: f.message.clone(),
                })
                .await?;
        }
        // The parts took time: the head is the commit, so the lease is checked once more.
        if let Some(lost) = self.lease_lost() {
            return Err(format!("{lost} while the manifest parts were written"));
        }
        writer.finish(finished_at, status.as_str()).await
    }
}

/// The manifest entries of `blobs` (with the name each is listed under now), from the index:
/// captured by `run` itself, or an earlier committed capture the object is unchanged since.
fn manifest_entries(
    index: &Index,
    run: &RunId,
    blobs: Vec<(BlobKey, ObjectName)>,
) -> Result<Vec<ManifestObject>, String> {
    blobs
        .into_iter()
        .map(|(blob, name)| {
            let record = index
                .capture(&blob)
                .map_err(|e| e.to_string())?
                .filter(|c| c.committed || c.run == *run)
                .ok_or_else(|| format!("the index has no usable capture {blob} of {name}"))?;
            let versions = index
                .capture_versions(&record.blob)
                .map_err(|e| e.to_string())?;
            // The tags recorded with that capture (unknown for one made before tags were).
            let tags = index
                .capture_tags(&record.blob)
                .map_err(|e| e.to_string())?;
            // Its `nbf`/`exp`: for an unchanged object, filled in from this run's listing if the
            // capture predates recorded periods (recorded above, before the manifest).
            let validity = index
                .capture_validity(&record.blob)
                .map_err(|e| e.to_string())?;
            let state = if record.run == *run {
                EntryState::Captured
            } else {
                EntryState::Unchanged
            };
            Ok(ManifestObject {
                state,
                kind: record.kind,
                name: if state == EntryState::Captured {
                    record.name
                } else {
                    name
                },
                blob: record.blob,
                run: record.run,
                captured_at: record.captured_at,
                current_version: record.current_version,
                updated: record.updated,
                versions: versions.iter().map(ManifestVersion::from).collect(),
                plain_bytes: record.plain_bytes,
                stored_bytes: record.stored_bytes,
                sha256: record.sha256,
                payload: record.payload.as_str().to_string(),
                tags,
                validity,
            })
        })
        .collect()
}

fn failure(planned: &PlannedCapture, kind: &str, message: impl Into<String>) -> ObjectFailure {
    ObjectFailure {
        kind: planned.object.kind,
        name: planned.object.name.clone(),
        error_kind: kind.to_string(),
        message: message.into(),
    }
}

/// The stable word recorded for a source failure.
fn source_kind(kind: SourceErrorKind) -> &'static str {
    match kind {
        SourceErrorKind::NotFound => "not_found",
        SourceErrorKind::AlreadyExists => "already_exists",
        SourceErrorKind::Conflict => "conflict",
        SourceErrorKind::Forbidden => "forbidden",
        SourceErrorKind::Throttled => "throttled",
        SourceErrorKind::Transient => "transient",
        SourceErrorKind::Permanent => "permanent",
    }
}

/// What the version list says the current version is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Current {
    /// Exactly one version qualifies.
    Known(ObjectVersion),
    /// Several versions qualify equally (created within the same second, with the attributes
    /// and tags the listing reported); `chosen` is the one with the highest id, so the choice
    /// is at least the same on every run.
    Ambiguous {
        chosen: ObjectVersion,
        candidates: usize,
    },
    /// The list is empty.
    None,
}

/// The current version of `listed` according to its version list, without reading the object
/// (for a secret that read would return the value).
///
/// - When the listing names the version (the fake does; the service does not), that one — the
///   check that it is in the list comes after.
/// - Otherwise the newest `created`: versions are only ever added, so the last created is the
///   current one.
/// - Key Vault timestamps have one-second resolution, so several versions can share the newest
///   `created`. Among those, the one whose `updated`, `enabled`, tags and content type match
///   what the object listing reported for the current version.
pub(super) fn current_version(listed: &ListedObject, versions: &[VersionInfo]) -> Current {
    if let Some(v) = &listed.version {
        return Current::Known(v.clone());
    }
    let Some(newest) = versions.iter().map(|v| v.created).max() else {
        return Current::None;
    };
    let tied: Vec<&VersionInfo> = versions.iter().filter(|v| v.created == newest).collect();
    let matching: Vec<&VersionInfo> = tied
        .iter()
        .copied()
        .filter(|v| {
            v.updated == listed.updated
                && v.enabled == listed.enabled
                && v.tags == listed.tags
                && v.content_type == listed.content_type
        })
        .collect();
    // None matching: the object changed between the listing and the version list; the newest
    // versions are then all candidates.
    let candidates = if matching.is_empty() { tied } else { matching };
    let highest = candidates.iter().map(|v| &v.version).max();
    match (candidates.len(), highest) {
        (_, None) => Current::None,
        (1, Some(v)) => Current::Known(v.clone()),
        (n, Some(v)) => Current::Ambiguous {
            chosen: v.clone(),
            candidates: n,
        },
    }
}

/// The plan's left-out objects counted by reason, for the report's coverage section.
fn skipped_counts(skipped: &[SkippedObject]) -> SkippedCounts {
    let mut counts = SkippedCounts::default();
    for s in skipped {
        match s.why {
            SkipReason::Managed => counts.managed += 1,
            SkipReason::NotIncluded | SkipReason::Excluded { .. } => counts.filtered += 1,
            SkipReason::Tagged { .. } => counts.tagged += 1,
        }
    }
    counts
}
