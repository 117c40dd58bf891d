//! `kvkeep verify`: proof that the backups the index relies on can still be restored, at three
//! depths, each recorded in the index (`verifications`) for the retention report:
//!
//! - **quick**: every object blob a committed run references exists with the recorded size and
//!   ciphertext SHA-256, and every committed run's manifest exists;
//! - **deep**: also opens every blob with the identities and checks its envelope against the
//!   index (vault, kind, name, run, current version, capture time) — what restore will do;
//! - **drill**: restores the latest point into a scratch vault, compares names, versions,
//!   attributes and the current version's tags with the index, then deletes and purges what it
//!   restored. Captures recorded before kvkeep recorded tags have no tags to compare with: the
//!   drill counts them (`tags_unchecked_objects`) and says so in the recorded detail instead of
//!   failing, since their tags are unknown rather than wrong.
//!
//! Blobs are read one object at a time with bounded concurrency; nothing is written to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::plan::{singular, ConflictPolicy, VaultLocation};
use super::{plan_restore, RestoreError, RestoreOptions, RestoreRequest, Restorer};
use crate::crypto::{open_expecting, sha256_hex, Expected, Identities};
use crate::index::{
    CaptureRecord, CaptureTags, CapturedVersion, Index, VerificationDepth, VerificationRecord,
};
use crate::model::{BlobKey, VaultName};
use crate::source::{SourceErrorKind, VaultSource};
use crate::store::{BlobStore, StoreErrorKind};

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// The blob concerned.
    pub blob: BlobKey,
    /// `kind/name` of the object, or `manifest`.
    pub object: String,
    /// What is wrong, and what to do.
    pub reason: String,
}

/// The outcome of verifying one vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The vault.
    pub vault: VaultName,
    /// How deep.
    pub depth: String,
    /// Object blobs checked.
    pub checked_blobs: usize,
    /// Manifests checked.
    pub checked_manifests: usize,
    /// Bytes read from the store.
    pub read_bytes: u64,
    /// Objects the drill restored and compared.
    pub drilled_objects: usize,
    /// Drilled objects whose tags were not compared: their capture was recorded before kvkeep
    /// recorded tags, so there is nothing to compare with.
    pub tags_unchecked_objects: usize,
    /// What is wrong (empty = all good).
    pub problems: Vec<VerifyProblem>,
    /// Blobs (or drilled objects) not checked because the verification was interrupted
    /// (Ctrl-C, SIGTERM); each is also listed as a problem.
    pub interrupted_blobs: usize,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether the verification was cut short.
    pub fn interrupted(&self) -> bool {
        self.interrupted_blobs > 0
    }
}

/// The blobs a vault's committed runs reference: captures, and each run with its manifest.
type Referenced = (Vec<CaptureRecord>, Vec<(crate::model::RunId, BlobKey)>);

/// Every committed capture of `vault` (each blob once) and every committed run's manifest.
fn referenced(index: &Index, vault: &VaultName) -> Result<Referenced, crate::index::IndexError> {
    let mut seen = BTreeSet::new();
    let mut captures = Vec::new();
    for object in index.list_objects(Some(vault))? {
        for c in index.list_captures(vault, object.kind, &object.name)? {
            if c.committed && seen.insert(c.blob.clone()) {
                captures.push(c);
            }
        }
    }
    let manifests = index
        .list_runs(Some(vault))?
        .into_iter()
        .filter_map(|r| r.manifest.map(|m| (r.run, m)))
        .collect();
    Ok((captures, manifests))
}

/// Quick (`identities` = `None`) or deep verification of `vault`'s blobs; records the result
/// in the index at `now`.
pub async fn verify_blobs(
    index: Arc<Index>,
    store: Arc<dyn BlobStore>,
    vault: &VaultName,
    identities: Option<Arc<Identities>>,
    concurrency: usize,
    now: i64,
    cancel: &CancellationToken,
) -> Result<VerifyReport, RestoreError> {
    let (captures, manifests) = {
        let index = index.clone();
        let vault = vault.clone();
        tokio::task::spawn_blocking(move || referenced(&index, &vault))
            .await
            .map_err(|e| RestoreError::Task(e.to_string()))??
    };
    let depth = if identities.is_some() {
        VerificationDepth::Deep
    } else {
        VerificationDepth::Quick
    };
    // Iterated by position, not by reference: a stream over `captures.iter()` makes the future
    // not `Send` where it is spawned (the daemon runs verifications on the runtime's threads).
    let captures = Arc::new(captures);
    let results: Vec<(u64, Option<VerifyProblem>)> = futures::stream::iter(0..captures.len())
        .map(|i| {
            let identities = identities.clone();
            let store = store.clone();
            let captures = captures.clone();
            async move {
                let c = &captures[i];
                // No blob is started once the token fired; one being read finishes.
                if cancel.is_cancelled() {
                    return (
                        0,
                        Some(not_checked(&c.blob, format!("{}/{}", c.kind, c.name))),
                    );
                }
                check_capture(store.as_ref(), vault, c, identities).await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let interrupted_blobs = results
        .iter()
        .filter(|(_, p)| p.as_ref().is_some_and(|p| p.reason == NOT_CHECKED))
        .count();
    let mut report = VerifyReport {
        vault: vault.clone(),
        depth: depth.as_str().to_string(),
        checked_blobs: captures.len(),
        checked_manifests: manifests.len(),
        read_bytes: results.iter().map(|(b, _)| b).sum(),
        drilled_objects: 0,
        tags_unchecked_objects: 0,
        problems: results.into_iter().filter_map(|(_, p)| p).collect(),
        interrupted_blobs,
    };
    for (run, key) in &manifests {
        if cancel.is_cancelled() {
            report.interrupted_blobs += 1;
            report
                .problems
                .push(not_checked(key, format!("manifest of run {run}")));
            continue;
        }
        if let Some(p) = check_manifest(store.as_ref(), vault, run, key, identities.clone()).await {
            report.problems.push(p);
        }
    }
    // A prune running beside this verification (the daemon's after a backup, or `kvkeep
    // prune`) may delete blobs and manifests it listed: a blob that is gone because no restore
    // point references it any more is no problem. Asked again only when something was missing.
    if report.problems.iter().any(|p| p.reason != NOT_CHECKED) {
        let (captures, manifests) = {
            let index = index.clone();
            let vault = vault.clone();
            tokio::task::spawn_blocking(move || referenced(&index, &vault))
                .await
                .map_err(|e| RestoreError::Task(e.to_string()))??
        };
        let still: BTreeSet<&BlobKey> = captures
            .iter()
            .map(|c| &c.blob)
            .chain(manifests.iter().map(|(_, m)| m))
            .collect();
        report
            .problems
            .retain(|p| p.reason == NOT_CHECKED || still.contains(&p.blob));
    }
    report.problems.sort_by(|a, b| a.blob.cmp(&b.blob));
    // An interrupted verification proves nothing about the blobs it did not reach: it is not
    // recorded as the vault's last verification.
    if !report.interrupted() {
        record(index, &report, depth, now).await?;
    }
    Ok(report)
}

/// The reason of a blob left unchecked by an interrupted verification.
const NOT_CHECKED: &str =
    "not checked: the verification was interrupted; rerun `kvkeep verify` to check it";

fn not_checked(blob: &BlobKey, object: String) -> VerifyProblem {
    VerifyProblem {
        blob: blob.clone(),
        object,
        reason: NOT_CHECKED.to_string(),
    }
}

async fn check_capture(
    store: &dyn BlobStore,
    vault: &VaultName,
    c: &CaptureRecord,
    identities: Option<Arc<Identities>>,
) -> (u64, Option<VerifyProblem>) {
    let object = format!("{}/{}", c.kind, c.name);
    let problem = |reason: String| VerifyProblem {
        blob: c.blob.clone(),
        object: object.clone(),
        reason,
    };
    let bytes = match store.get(&c.blob).await {
        Ok(b) => b,
        Err(e) if e.kind() == StoreErrorKind::NotFound => {
            return (0, Some(problem(format!(
                "missing from the store: the {} cannot be restored from the capture of {}; the next backup captures it again only if it changes, so check the store's retention and access policies",
                singular(c.kind), super::plan::rfc3339(c.captured_at)
            ))))
        }
        Err(e) => return (0, Some(problem(format!("cannot be read: {e}")))),
    };
    let read = bytes.len() as u64;
    if read != c.stored_bytes {
        return (
            read,
            Some(problem(format!(
                "is {read} bytes, the index recorded {} (truncated or replaced)",
                c.stored_bytes
            ))),
        );
    }
    if sha256_hex(&bytes) != c.sha256 {
        return (
            read,
            Some(problem(
                "its SHA-256 differs from the one recorded (corrupted or replaced)".into(),
            )),
        );
    }
    let Some(identities) = identities else {
        return (read, None);
    };
    let expected = Expected::object(vault.clone(), c.kind, c.name.clone())
        .with_run(c.run.clone())
        .with_current_version(c.current_version.clone())
        .with_captured_at(c.captured_at);
    let opened =
        tokio::task::spawn_blocking(move || open_expecting(&bytes, &identities, &expected)).await;
    match opened {
        Ok(Ok(_)) => (read, None),
        Ok(Err(e)) => (read, Some(problem(format!("cannot be opened: {e}")))),
        Err(e) => (read, Some(problem(format!("opening stopped: {e}")))),
    }
}

async fn check_manifest(
    store: &dyn BlobStore,
    vault: &VaultName,
    run: &crate::model::RunId,
    key: &BlobKey,
    identities: Option<Arc<Identities>>,
) -> Option<VerifyProblem> {
    let problem = |reason: String| VerifyProblem {
        blob: key.clone(),
        object: "manifest".into(),
        reason,
    };
    let Some(identities) = identities else {
        return match store.head(key).await {
            Ok(_) => None,
            Err(e) if e.kind() == StoreErrorKind::NotFound => Some(problem(format!(
                "the manifest of run {run} is missing: its captures survive in the index only; keep this index or restore the manifest from a copy"
            ))),
            Err(e) => Some(problem(format!("cannot be read: {e}"))),
        };
    };
    // Format 2: the head and every part it names (size, SHA-256, envelope); format 1: the blob.
    crate::backup::manifest::check_manifest(store, &identities, vault, run, key)
        .await
        .err()
        .map(problem)
}

async fn record(
    index: Arc<Index>,
    report: &VerifyReport,
    depth: VerificationDepth,
    now: i64,
) -> Result<(), RestoreError> {
    let mut detail = if report.ok() {
        format!(
            "{} blobs, {} manifests, {} objects drilled",
            report.checked_blobs, report.checked_manifests, report.drilled_objects
        )
    } else {
        format!(
            "{} problem(s); first: {} {}",
            report.problems.len(),
            report.problems[0].blob,
            report.problems[0].reason
        )
    };
    if report.tags_unchecked_objects > 0 {
        detail.push_str(&format!(
            "; tags not compared for {} object(s) captured before kvkeep recorded tags",
            report.tags_unchecked_objects
        ));
    }
    let record = VerificationRecord {
        vault: report.vault.clone(),
        at: now,
        depth,
        ok: report.ok(),
        detail,
    };
    tokio::task::spawn_blocking(move || index.record_verification(&record))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??;
    Ok(())
}

/// A restore drill: restores `source`'s latest point (`now`) into `scratch`, compares what the
/// vault reports with the index, then deletes and purges every object it restored. The scratch
/// vault must not hold any of the names (they are reported failed, never touched).
pub async fn drill(
    index: Arc<Index>,
    restorer: &Restorer,
    source: VaultLocation,
    scratch: VaultLocation,
    now: i64,
) -> Result<VerifyReport, RestoreError> {
    let request = RestoreRequest {
        source: source.clone(),
        target: scratch.clone(),
        at: now,
        only: Vec::new(),
        policy: ConflictPolicy::Fail,
        assume_compatible: false,
    };
    let plan = plan_restore(index.clone(), restorer.target.as_ref(), request).await?;
    let restored = restorer.execute(&plan).await;
    let mut report = VerifyReport {
        vault: source.name.clone(),
        depth: VerificationDepth::Drill.as_str().to_string(),
        checked_blobs: plan.objects.len(),
        checked_manifests: 0,
        read_bytes: plan.objects.iter().map(|o| o.stored_bytes).sum(),
        drilled_objects: 0,
        tags_unchecked_objects: 0,
        problems: Vec::new(),
        interrupted_blobs: restored.stats.interrupted_objects,
    };
    let target = restorer.target.as_ref();
    for (planned, outcome) in plan.objects.iter().zip(&restored.objects) {
        let object = format!("{}/{}", planned.kind, planned.name);
        let problem = |reason: String| VerifyProblem {
            blob: planned.blob.clone(),
            object: object.clone(),
            reason,
        };
        match &outcome.outcome {
            super::Outcome::Restored { .. } => {}
            super::Outcome::Failed { reason }
            | super::Outcome::Skipped { reason }
            | super::Outcome::Interrupted { reason } => {
                report.problems.push(problem(reason.clone()));
                continue;
            }
            super::Outcome::Recovered => continue,
        }
        report.drilled_objects += 1;
        let (versions, tags) = {
            let index = index.clone();
            let blob = planned.blob.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, crate::index::IndexError>((
                    index.capture_versions(&blob)?,
                    index.capture_tags(&blob)?,
                ))
            })
            .await
            .map_err(|e| RestoreError::Task(e.to_string()))??
        };
        if tags.is_none() {
            report.tags_unchecked_objects += 1;
        }
        match compare(target, planned, &versions, tags.as_ref()).await {
            Ok(()) => {}
            Err(reason) => report.problems.push(problem(reason)),
        }
        if let Err(reason) = remove(target, planned, restorer.options).await {
            report.problems.push(problem(reason));
        }
    }
    record(index, &report, VerificationDepth::Drill, now).await?;
    Ok(report)
}

/// What the scratch vault reports against the index's record of the capture. `tags` = `None`:
/// not recorded (an older capture), so not compared.
async fn compare(
    target: &dyn VaultSource,
    planned: &super::PlannedObject,
    versions: &[CapturedVersion],
    tags: Option<&CaptureTags>,
) -> Result<(), String> {
    let props = target
        .get_properties(planned.kind, &planned.name)
        .await
        .map_err(|e| format!("restored but cannot be read back: {e}"))?;
    let mut diffs = Vec::new();
    if props.version != planned.current_version {
        diffs.push(format!(
            "current version is {}, the backup recorded {}",
            props.version, planned.current_version
        ));
    }
    if let Some(want) = tags {
        diffs.extend(tag_diffs(&props.tags, want));
    }
    let listed = target
        .list_versions(planned.kind, &planned.name)
        .await
        .map_err(|e| format!("restored but its versions cannot be listed: {e}"))?;
    for want in versions {
        match listed.iter().find(|v| v.version == want.version) {
            None => diffs.push(format!("version {} is missing", want.version)),
            Some(got) => {
                if got.enabled != want.enabled
                    || (want.created.is_some() && got.created != want.created)
                    || (want.updated.is_some() && got.updated != want.updated)
                {
                    diffs.push(format!(
                        "version {} attributes differ (enabled {} vs {}, created {:?} vs {:?}, updated {:?} vs {:?})",
                        want.version, got.enabled, want.enabled, got.created, want.created, got.updated, want.updated
                    ));
                }
            }
        }
    }
    if listed.len() != versions.len() {
        diffs.push(format!(
            "{} versions restored, the backup recorded {}",
            listed.len(),
            versions.len()
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "restored copy differs from the backup: {}",
            diffs.join("; ")
        ))
    }
}

/// One line per tag that differs between the restored current version (`got`) and the backup's
/// record (`want`). Tag values are printed: they are labels, not secrets.
fn tag_diffs(got: &BTreeMap<String, String>, want: &CaptureTags) -> Vec<String> {
    let names: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| match (got.get(name), want.get(name)) {
            (Some(g), Some(w)) if g != w => {
                Some(format!("tag {name:?} is {g:?}, the backup recorded {w:?}"))
            }
            (None, Some(w)) => Some(format!(
                "tag {name:?} is missing, the backup recorded {w:?}"
            )),
            (Some(g), None) => Some(format!(
                "tag {name:?} is {g:?}, the backup recorded no such tag"
            )),
            _ => None,
        })
        .collect()
}

/// Deletes and purges a drilled object, waiting out the service's delete lag.
async fn remove(
    target: &dyn VaultSource,
    planned: &super::PlannedObject,
    options: RestoreOptions,
) -> Result<(), String> {
    let what = format!("{} {}", singular(planned.kind), planned.name);
    match target.delete(planned.kind, &planned.name).await {
        Ok(()) => {}
        // Delete is not re-sent after a lost answer: the object no longer being active means
        // it was carried out.
        Err(e)
            if e.kind() == SourceErrorKind::Transient
                && matches!(
                    target.get_properties(planned.kind, &planned.name).await,
                    Err(ref gone) if gone.kind() == SourceErrorKind::NotFound
                ) => {}
        Err(e) => {
            return Err(format!(
                "drill cleanup: deleting {what} failed: {e}; delete and purge it by hand"
            ))
        }
    }
    let deadline = tokio::time::Instant::now() + options.purge_wait;
    loop {
        match target.purge(planned.kind, &planned.name).await {
            Ok(()) => return Ok(()),
            // Likewise a purge whose answer was lost: the deleted object being gone settles it.
            Err(e)
                if e.kind() == SourceErrorKind::Transient
                    && matches!(target.get_deleted(planned.kind, &planned.name).await, Ok(None)) =>
            {
                return Ok(())
            }
            Err(e)
                if matches!(e.kind(), SourceErrorKind::NotFound | SourceErrorKind::Conflict)
                    && tokio::time::Instant::now() < deadline =>
            {
                // The deletion is not visible yet (Key Vault deletes asynchronously).
                tokio::time::sleep(options.purge_retry_interval.min(Duration::from_secs(2))).await;
            }
            Err(e) => {
                return Err(format!(
                    "drill cleanup: purging {what} failed: {e}; it stays soft-deleted in the scratch vault until purged by hand or by the service"
                ))
            }
        }
    }
}
