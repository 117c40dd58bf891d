//! Writing a format 2 manifest part by part, so a run of any size commits in bounded memory:
//! entries are serialised as they arrive, a part is sealed and stored whenever its JSON passes
//! [`PART_TARGET_BYTES`], and [`ManifestWriter::finish`] writes the head last.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::{
    manifest_blob_key, manifest_part_key, ManifestDeleted, ManifestFailure, ManifestHead,
    ManifestObject, PartRef, MANIFEST_FORMAT, PART_TARGET_BYTES,
};
use crate::crypto::{sha256_hex, Label, Sealer};
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::BlobStore;

/// The entries of the part being filled, each already serialised.
#[derive(Default)]
struct Pending {
    objects: Vec<u8>,
    deleted: Vec<u8>,
    failed: Vec<u8>,
    counts: [u64; 3],
}

impl Pending {
    fn bytes(&self) -> usize {
        self.objects.len() + self.deleted.len() + self.failed.len()
    }

    fn is_empty(&self) -> bool {
        self.counts == [0, 0, 0]
    }
}

/// Writes one run's manifest: the parts as entries arrive, the head at [`Self::finish`].
/// Entries go in the order they are given; the backup gives them in (kind, name) order.
pub struct ManifestWriter {
    store: Arc<dyn BlobStore>,
    sealer: Arc<Sealer>,
    vault: VaultName,
    run: RunId,
    started_at: i64,
    target_bytes: usize,
    pending: Pending,
    parts: Vec<PartRef>,
    stored_bytes: u64,
    previous: Option<RunId>,
}

impl ManifestWriter {
    /// A writer for the manifest of `run` of `vault`, started at `started_at`.
    pub fn new(
        store: Arc<dyn BlobStore>,
        sealer: Arc<Sealer>,
        vault: VaultName,
        run: RunId,
        started_at: i64,
    ) -> Self {
        ManifestWriter {
            store,
            sealer,
            vault,
            run,
            started_at,
            target_bytes: PART_TARGET_BYTES,
            pending: Pending::default(),
            parts: Vec::new(),
            stored_bytes: 0,
            previous: None,
        }
    }

    /// Names the run this one follows (the vault's newest restore point), for the head.
    pub fn with_previous(mut self, previous: Option<RunId>) -> Self {
        self.previous = previous;
        self
    }

    /// Starts a new part past `bytes` of JSON instead of [`PART_TARGET_BYTES`] (tests use a
    /// small value to get many parts from a small vault).
    pub fn with_part_target(mut self, bytes: usize) -> Self {
        self.target_bytes = bytes.max(1);
        self
    }

    /// Adds an object entry.
    pub async fn object(&mut self, entry: &ManifestObject) -> Result<(), String> {
        append(&mut self.pending.objects, entry)?;
        self.pending.counts[0] += 1;
        self.flush_if_full().await
    }

    /// Adds a deletion.
    pub async fn deleted(&mut self, entry: &ManifestDeleted) -> Result<(), String> {
        append(&mut self.pending.deleted, entry)?;
        self.pending.counts[1] += 1;
        self.flush_if_full().await
    }

    /// Adds a failure.
    pub async fn failed(&mut self, entry: &ManifestFailure) -> Result<(), String> {
        append(&mut self.pending.failed, entry)?;
        self.pending.counts[2] += 1;
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> Result<(), String> {
        if self.pending.bytes() >= self.target_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals and stores the pending entries as the next part.
    async fn flush(&mut self) -> Result<(), String> {
        let pending = std::mem::take(&mut self.pending);
        let number = u32::try_from(self.parts.len())
            .map_err(|_| "a manifest cannot have more than 4 billion parts".to_string())?;
        // The part's JSON is assembled from the serialised entries: the same bytes serde would
        // write for a `ManifestPart`, without holding the entries as values.
        let head = serde_json::to_string(&PartPrefix {
            format: MANIFEST_FORMAT,
            vault: &self.vault,
            run: &self.run,
            part: number,
        })
        .map_err(|e| e.to_string())?;
        let mut json = Vec::with_capacity(pending.bytes() + head.len() + 48);
        // `{"format":2,...,"part":0}` → `{"format":2,...,"part":0,"objects":[...],...}`
        json.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        for (name, items) in [
            ("objects", &pending.objects),
            ("deleted", &pending.deleted),
            ("failed", &pending.failed),
        ] {
            json.extend_from_slice(format!(",\"{name}\":[").as_bytes());
            json.extend_from_slice(items);
            json.push(b']');
        }
        json.push(b'}');
        drop(pending.objects);
        let key = manifest_part_key(&self.vault, self.started_at, &self.run, number)
            .map_err(|e| e.to_string())?;
        let (stored_bytes, sha256) = self.seal_and_put(&key, json, self.started_at).await?;
        self.parts.push(PartRef {
            blob: key,
            objects: pending.counts[0],
            deleted: pending.counts[1],
            failed: pending.counts[2],
            stored_bytes,
            sha256,
        });
        Ok(())
    }

    async fn seal_and_put(
        &mut self,
        key: &BlobKey,
        json: Vec<u8>,
        at: i64,
    ) -> Result<(u64, String), String> {
        let label = Label::manifest(self.vault.clone(), at).with_run(self.run.clone());
        let sealer = self.sealer.clone();
        // zstd and age over up to a few MiB: off the runtime threads.
        let ciphertext = tokio::task::spawn_blocking(move || sealer.seal(&label, &json))
            .await
            .map_err(|e| format!("sealing task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let sha256 = sha256_hex(&ciphertext);
        let stored_bytes = ciphertext.len() as u64;
        self.store
            .put_new(key, Bytes::from(ciphertext))
            .await
            .map_err(|e| e.to_string())?;
        self.stored_bytes += stored_bytes;
        Ok((stored_bytes, sha256))
    }

    /// Writes the last part, then the head, which commits the run. Returns the head's key and
    /// the bytes stored for the whole manifest.
    pub async fn finish(
        mut self,
        finished_at: i64,
        status: &str,
    ) -> Result<(BlobKey, u64), String> {
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        let sum = |f: fn(&PartRef) -> u64| self.parts.iter().map(f).sum::<u64>();
        let head = ManifestHead {
            format: MANIFEST_FORMAT,
            vault: self.vault.clone(),
            run: self.run.clone(),
            started_at: self.started_at,
            finished_at,
            status: status.to_string(),
            objects: Vec::new(),
            object_count: sum(|p| p.objects),
            deleted_count: sum(|p| p.deleted),
            failed_count: sum(|p| p.failed),
            parts: std::mem::take(&mut self.parts),
            previous: self.previous.take(),
        };
        let json = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
        let key = manifest_blob_key(&self.vault, self.started_at, &self.run)
            .map_err(|e| e.to_string())?;
        self.seal_and_put(&key, json, finished_at).await?;
        Ok((key, self.stored_bytes))
    }
}

/// The fixed keys every part starts with.
#[derive(Serialize)]
struct PartPrefix<'a> {
    format: u32,
    vault: &'a VaultName,
    run: &'a RunId,
    part: u32,
}

/// Appends `entry` to a comma-separated JSON list.
fn append(list: &mut Vec<u8>, entry: &impl Serialize) -> Result<(), String> {
    if !list.is_empty() {
        list.push(b',');
    }
    serde_json::to_writer(&mut *list, entry).map_err(|e| e.to_string())
}
