//! Reading manifests of either format: [`open_manifest`] opens the blob a run's manifest key
//! names (a format 1 manifest or a format 2 head) and [`OpenedManifest::part`] then reads the
//! run's entries one part at a time, each checked against the size and SHA-256 the head
//! recorded, so a reader never holds more than one part of a large run.

use std::sync::Arc;

use super::{format_of, Manifest, ManifestHead, ManifestPart, MANIFEST_FORMAT_V1};
use crate::crypto::{open_expecting, sha256_hex, Expected, Identities};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::BlobStore;

/// A run's manifest, opened: what the run was, and how to read its entries.
#[derive(Debug, Clone)]
pub struct OpenedManifest {
    /// The key of the manifest (format 1) or head (format 2).
    pub key: BlobKey,
    /// The format it was written in.
    pub format: u32,
    /// What the run was: its head as written (format 2), or as a format 1 manifest says, with
    /// no parts.
    pub head: ManifestHead,
    /// Format 1: the entries, unless [`Self::forget_entries`] dropped them.
    v1: Option<Box<Manifest>>,
}

impl OpenedManifest {
    /// A manifest already in memory, as if opened (one part holding every entry).
    pub fn from_manifest(key: BlobKey, manifest: Manifest) -> Self {
        OpenedManifest {
            key,
            format: manifest.format,
            head: head_of(&manifest),
            v1: Some(Box::new(manifest)),
        }
    }

    /// How many parts [`Self::part`] reads (a format 1 manifest is one part).
    pub fn part_count(&self) -> usize {
        if self.format == MANIFEST_FORMAT_V1 || self.v1.is_some() {
            1
        } else {
            self.head.parts.len()
        }
    }

    /// The entries held in memory (a format 1 manifest, or one built by
    /// [`Self::from_manifest`]) as one part.
    pub fn entries(&self) -> Option<ManifestPart> {
        self.v1.as_ref().map(|m| ManifestPart {
            format: m.format,
            vault: m.vault.clone(),
            run: m.run.clone(),
            part: 0,
            objects: m.objects.clone(),
            deleted: m.deleted.clone(),
            failed: m.failed.clone(),
        })
    }

    /// Drops the entries a format 1 manifest carried in its one blob, keeping what the run was;
    /// [`Self::part`] reads them again from the store. A caller that opens many manifests
    /// before replaying them (a rebuild sorts runs first) keeps memory bounded this way.
    pub fn forget_entries(&mut self) {
        self.v1 = None;
    }

    /// The blob that holds part `index`: the part's own blob (format 2), or the manifest
    /// itself (format 1).
    fn part_key(&self, index: usize) -> Result<&BlobKey, String> {
        if self.format == MANIFEST_FORMAT_V1 {
            return Ok(&self.key);
        }
        self.head
            .parts
            .get(index)
            .map(|p| &p.blob)
            .ok_or_else(|| format!("{}: has no part {index}", self.key))
    }

    /// Reads part `index` (0-based) of the run's entries, opening it off the runtime threads.
    pub async fn part(
        &self,
        store: &dyn BlobStore,
        identities: &Arc<Identities>,
        index: usize,
    ) -> Result<ManifestPart, String> {
        if let Some(part) = self.entries() {
            return Ok(part);
        }
        let bytes = fetch(store, self.part_key(index)?).await?;
        let (this, identities) = (self.clone(), identities.clone());
        tokio::task::spawn_blocking(move || this.decode_part(index, bytes, &identities))
            .await
            .map_err(|e| format!("{}: opening stopped: {e}", self.key))?
    }

    /// [`Self::part`] for a caller on a blocking thread: the blob is fetched through `runtime`
    /// and opened on the calling thread. A rebuild replays every run from one thread this way:
    /// spreading the opening of thousands of parts over the blocking pool's threads made the
    /// allocator keep a heap per thread, several times the memory one part needs.
    pub fn part_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        store: &dyn BlobStore,
        identities: &Identities,
        index: usize,
    ) -> Result<ManifestPart, String> {
        if let Some(part) = self.entries() {
            return Ok(part);
        }
        let bytes = runtime.block_on(fetch(store, self.part_key(index)?))?;
        self.decode_part(index, bytes, identities)
    }

    /// The stored (sealed) bytes of every part, fetched without opening any: index sync
    /// fetches a run's parts before its replay transaction, so no index lock is held across a
    /// store request (the daemon's runs wait for that lock on the runtime's threads, which
    /// then could not drive the request). Empty for entries held in memory.
    pub async fn fetch_parts(&self, store: &dyn BlobStore) -> Result<Vec<bytes::Bytes>, String> {
        if self.v1.is_some() {
            return Ok(Vec::new());
        }
        let mut parts = Vec::with_capacity(self.part_count());
        for index in 0..self.part_count() {
            parts.push(fetch(store, self.part_key(index)?).await?);
        }
        Ok(parts)
    }

    /// Part `index` from bytes [`Self::fetch_parts`] returned, opened on the calling thread.
    /// CPU-bound.
    pub fn part_from(
        &self,
        index: usize,
        fetched: &[bytes::Bytes],
        identities: &Identities,
    ) -> Result<ManifestPart, String> {
        if let Some(part) = self.entries() {
            return Ok(part);
        }
        let bytes = fetched
            .get(index)
            .cloned()
            .ok_or_else(|| format!("{}: part {index} was not fetched", self.key))?;
        self.decode_part(index, bytes, identities)
    }

    /// Checks, opens and parses the stored bytes of part `index`. CPU-bound.
    fn decode_part(
        &self,
        index: usize,
        bytes: bytes::Bytes,
        identities: &Identities,
    ) -> Result<ManifestPart, String> {
        if self.format == MANIFEST_FORMAT_V1 {
            // Its entries were forgotten: the one blob is read again.
            let payload = open_here(&bytes, identities, &self.head, &self.key)?;
            let manifest =
                Manifest::from_json(&payload).map_err(|e| format!("{}: {e}", self.key))?;
            return Ok(ManifestPart {
                format: MANIFEST_FORMAT_V1,
                vault: manifest.vault,
                run: manifest.run,
                part: 0,
                objects: manifest.objects,
                deleted: manifest.deleted,
                failed: manifest.failed,
            });
        }
        let reference = self
            .head
            .parts
            .get(index)
            .ok_or_else(|| format!("{}: has no part {index}", self.key))?;
        let key = &reference.blob;
        if bytes.len() as u64 != reference.stored_bytes || sha256_hex(&bytes) != reference.sha256 {
            return Err(format!(
                "{key}: part {index} of the manifest of run {} is not the one its head records ({} bytes stored, {} recorded); the store was changed or damaged",
                self.head.run,
                bytes.len(),
                reference.stored_bytes
            ));
        }
        let payload = open_here(&bytes, identities, &self.head, key)?;
        let part = ManifestPart::from_json(&payload).map_err(|e| format!("{key}: {e}"))?;
        if part.vault != self.head.vault || part.run != self.head.run || part.part as usize != index
        {
            return Err(format!(
                "{key}: the part inside names vault {} run {} part {}; expected part {index} of run {}",
                part.vault, part.run, part.part, self.head.run
            ));
        }
        let counts = [
            part.objects.len() as u64,
            part.deleted.len() as u64,
            part.failed.len() as u64,
        ];
        if counts != [reference.objects, reference.deleted, reference.failed] {
            return Err(format!(
                "{key}: part {index} lists {counts:?} objects, deletions and failures; its head records {:?}",
                [reference.objects, reference.deleted, reference.failed]
            ));
        }
        Ok(part)
    }
}

/// Opens a sealed manifest blob on the calling thread; its envelope must name the head's vault
/// and run.
fn open_here(
    bytes: &[u8],
    identities: &Identities,
    head: &ManifestHead,
    key: &BlobKey,
) -> Result<Vec<u8>, String> {
    let expected = Expected::manifest(head.vault.clone()).with_run(head.run.clone());
    open_expecting(bytes, identities, &expected)
        .map(|opened| opened.payload)
        .map_err(|e| format!("{key}: cannot be opened: {e}"))
}

/// The head a format 1 manifest would have had: what the run was, no parts.
fn head_of(m: &Manifest) -> ManifestHead {
    ManifestHead {
        format: m.format,
        vault: m.vault.clone(),
        run: m.run.clone(),
        started_at: m.started_at,
        finished_at: m.finished_at,
        status: m.status.clone(),
        previous: None,
        objects: Vec::new(),
        object_count: m.objects.len() as u64,
        deleted_count: m.deleted.len() as u64,
        failed_count: m.failed.len() as u64,
        parts: Vec::new(),
    }
}

async fn fetch(store: &dyn BlobStore, key: &BlobKey) -> Result<bytes::Bytes, String> {
    store
        .get(key)
        .await
        .map_err(|e| format!("{key}: cannot be read: {e}"))
}

/// Opens a sealed manifest blob off the runtime threads; its envelope must name `vault` and
/// `run`.
async fn open(
    bytes: bytes::Bytes,
    identities: &Arc<Identities>,
    vault: &VaultName,
    run: &RunId,
    key: &BlobKey,
) -> Result<Vec<u8>, String> {
    let identities = identities.clone();
    let expected = Expected::manifest(vault.clone()).with_run(run.clone());
    tokio::task::spawn_blocking(move || open_expecting(&bytes, &identities, &expected))
        .await
        .map_err(|e| format!("{key}: opening stopped: {e}"))?
        .map(|opened| opened.payload)
        .map_err(|e| format!("{key}: cannot be opened: {e}"))
}

/// Opens the manifest of `run` of `vault` stored at `key`, of either format. For format 2 only
/// the head is read here; for format 1 the one blob with every entry.
pub async fn open_manifest(
    store: &dyn BlobStore,
    identities: &Arc<Identities>,
    vault: &VaultName,
    run: &RunId,
    key: &BlobKey,
) -> Result<OpenedManifest, String> {
    let bytes = fetch(store, key).await?;
    let payload = open(bytes, identities, vault, run, key).await?;
    let format = format_of(&payload).map_err(|e| format!("{key}: {e}"))?;
    let opened = if format == MANIFEST_FORMAT_V1 {
        let m = Manifest::from_json(&payload).map_err(|e| format!("{key}: {e}"))?;
        OpenedManifest::from_manifest(key.clone(), m)
    } else {
        let head = ManifestHead::from_json(&payload).map_err(|e| format!("{key}: {e}"))?;
        OpenedManifest {
            key: key.clone(),
            format,
            head,
            v1: None,
        }
    };
    if opened.head.vault != *vault || opened.head.run != *run {
        return Err(format!(
            "{key}: the manifest inside names vault {} run {}",
            opened.head.vault, opened.head.run
        ));
    }
    Ok(opened)
}

/// Reads a whole manifest, every part, into one [`Manifest`] (`format` is the format it was
/// written in). For tests, tools and small runs; large runs are read part by part.
pub async fn read_manifest(
    store: &dyn BlobStore,
    identities: &Arc<Identities>,
    vault: &VaultName,
    run: &RunId,
    key: &BlobKey,
) -> Result<Manifest, String> {
    let opened = open_manifest(store, identities, vault, run, key).await?;
    let head = &opened.head;
    let mut whole = Manifest {
        format: opened.format,
        vault: head.vault.clone(),
        run: head.run.clone(),
        started_at: head.started_at,
        finished_at: head.finished_at,
        status: head.status.clone(),
        objects: Vec::new(),
        deleted: Vec::new(),
        failed: Vec::new(),
    };
    for index in 0..opened.part_count() {
        let part = opened.part(store, identities, index).await?;
        whole.objects.extend(part.objects);
        whole.deleted.extend(part.deleted);
        whole.failed.extend(part.failed);
    }
    Ok(whole)
}

/// Opens a manifest and every part of it, keeping none: what deep verification checks.
/// Returns how many objects it lists.
pub async fn check_manifest(
    store: &dyn BlobStore,
    identities: &Arc<Identities>,
    vault: &VaultName,
    run: &RunId,
    key: &BlobKey,
) -> Result<u64, String> {
    let opened = open_manifest(store, identities, vault, run, key).await?;
    let mut objects = 0;
    for index in 0..opened.part_count() {
        objects += opened.part(store, identities, index).await?.objects.len() as u64;
    }
    Ok(objects)
}
