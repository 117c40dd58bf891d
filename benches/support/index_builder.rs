//! The synthetic index the benches share: hourly runs of one vault capturing every object, every
//! tenth run left without a manifest and every hundredth object deleted halfway, so queries skip
//! uncommitted captures and check deletions as in production. Included by `benches/index.rs`
//! and `benches/restore.rs` with `#[path]`.

#![allow(dead_code)]

use kvkeep::config::PayloadMode;
use kvkeep::index::{CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus};
use kvkeep::model::{BlobKey, ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

/// Seconds between runs.
pub const HOUR: i64 = 3600;
/// The first run's time.
pub const START: i64 = 1_700_000_000;

#[path = "env.rs"]
mod env;
pub use env::env_usize;

/// One hourly run capturing every object, in one batched transaction. Every tenth run dies
/// before its manifest, and every hundredth object is deleted halfway, so the query has to skip
/// uncommitted captures and check deletions like in production.
pub fn record_run(index: &Index, vault: &VaultName, r: usize, objects: usize) {
    let run: RunId = format!("{:016x}", r + 1).parse().expect("run id");
    record_run_as(
        index,
        vault,
        &run,
        r,
        START + r as i64 * HOUR,
        objects,
        true,
    );
}

/// Run number `r` of `vault` as `run`, at `at`, capturing every object: every tenth run dies
/// before its manifest, and with `deletions` every hundredth object is gone from run 50 on
/// (seen deleted by run 50).
pub fn record_run_as(
    index: &Index,
    vault: &VaultName,
    run: &RunId,
    r: usize,
    at: i64,
    objects: usize,
    deletions: bool,
) {
    let committed = r % 10 != 9;
    let deleting = deletions && r > 0 && r == 50;
    index
        .write(|w| {
            w.begin_run(run, vault, at)?;
            for o in 0..objects {
                let gone = deletions && o % 100 == 0 && r >= 50;
                if gone {
                    if deleting {
                        w.record_deleted(run, ObjectKind::Secrets, &object_name(o), at)?;
                    }
                    continue;
                }
                w.record_capture(run, &new_capture(vault, o, r, at))?;
            }
            let manifest: Option<BlobKey> = committed.then(|| {
                format!("manifests/{vault}/{at}-{run}.age")
                    .parse()
                    .expect("manifest key")
            });
            let status = if committed {
                RunStatus::Completed
            } else {
                RunStatus::Interrupted
            };
            w.finish_run(
                run,
                status,
                &RunStats::default(),
                at + 60,
                manifest.as_ref(),
            )
        })
        .expect("record run");
}

pub fn object_name(o: usize) -> ObjectName {
    format!("secret-{o:06}").parse().expect("object name")
}

pub fn new_capture(vault: &VaultName, o: usize, r: usize, at: i64) -> NewCapture {
    let version: ObjectVersion = format!("{:032x}", (o as u128) << 32 | r as u128)
        .parse()
        .expect("version");
    NewCapture {
        object: ObjectState {
            kind: ObjectKind::Secrets,
            name: object_name(o),
            current_version: version.clone(),
            updated: at - 10,
        },
        blob: format!("objects/{vault}/secrets/secret-{o:06}/{at}-{r:016x}.age")
            .parse()
            .expect("blob key"),
        captured_at: at,
        plain_bytes: 4096,
        stored_bytes: 2100,
        sha256: format!("{:064x}", o * 1_000 + r),
        payload: PayloadMode::Native,
        versions: vec![CapturedVersion {
            version,
            created: Some(at - 10),
            updated: Some(at - 10),
            enabled: true,
        }],
        tags: Some(Default::default()),
        validity: Some(Default::default()),
    }
}
