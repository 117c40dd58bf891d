//! A vault's history as manifests in a store, written with the real manifest writer: hourly
//! runs of a vault of `per` secrets, a tenth of them captured afresh each run and the rest
//! unchanged references to their last capture. Included with `#[path]` by the benches that
//! replay manifests (`benches/restore.rs`: index rebuild; `benches/sync.rs`: index sync).

#![allow(dead_code)]

use std::sync::Arc;

use kvkeep::backup::manifest::{
    object_blob_key, EntryState, ManifestObject, ManifestVersion, ManifestWriter,
};
use kvkeep::crypto::Sealer;
use kvkeep::model::{ObjectKind, ObjectVersion, RunId, VaultName};
use kvkeep::store::BlobStore;

use super::index_builder::{object_name, HOUR, START};

/// The id of the `r`th run (from 0).
pub fn run_id(r: usize) -> RunId {
    format!("{:016x}", r + 1).parse().expect("run")
}

/// Writes the manifests of runs `0..manifests` of `vault` into `store`, each run an hour after
/// the one before from `START`, sealed by `sealer`.
pub fn write_history(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn BlobStore>,
    sealer: &Arc<Sealer>,
    vault: &VaultName,
    manifests: usize,
    per: usize,
) {
    // Each run captures a tenth of the objects afresh and refers to the others' last captures.
    let mut last: Vec<Option<ManifestObject>> = vec![None; per];
    for r in 0..manifests {
        let run = run_id(r);
        let at = START + r as i64 * HOUR;
        let mut writer = ManifestWriter::new(
            store.clone(),
            sealer.clone(),
            vault.clone(),
            run.clone(),
            at,
        );
        for (o, slot) in last.iter_mut().enumerate() {
            let fresh = slot.is_none() || o % 10 == r % 10;
            if fresh {
                let name = object_name(o);
                let version: ObjectVersion = format!("{:032x}", (o as u128) << 32 | r as u128)
                    .parse()
                    .expect("version");
                *slot = Some(ManifestObject {
                    state: EntryState::Captured,
                    kind: ObjectKind::Secrets,
                    blob: object_blob_key(vault, ObjectKind::Secrets, &name, at, &run)
                        .expect("key"),
                    name,
                    run: run.clone(),
                    captured_at: at,
                    current_version: version.clone(),
                    updated: at - 10,
                    versions: vec![ManifestVersion {
                        version,
                        created: Some(at - 10),
                        updated: Some(at - 10),
                        enabled: true,
                    }],
                    plain_bytes: 4096,
                    stored_bytes: 2100,
                    sha256: format!("{:064x}", o * 1_000 + r),
                    payload: "native".into(),
                    tags: Some(Default::default()),
                    validity: Some(Default::default()),
                });
            }
            let entry = slot.as_ref().expect("set");
            let entry = if fresh {
                entry.clone()
            } else {
                ManifestObject {
                    state: EntryState::Unchanged,
                    ..entry.clone()
                }
            };
            rt.block_on(writer.object(&entry)).expect("entry");
        }
        rt.block_on(writer.finish(at + 60, "completed"))
            .expect("manifest");
    }
}
