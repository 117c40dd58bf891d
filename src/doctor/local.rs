//! The checks that stay on this side of Key Vault: the index, the store's probe blob and, with
//! an identity, the newest manifest of a vault.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{Check, CheckName};
use crate::backup::manifest::open_manifest;
use crate::config::Config;
use crate::crypto::Identities;
use crate::index::Index;
use crate::model::{BlobKey, RunId, VaultName};
use crate::store::{
    lock_key, open_store_with, BlobStore, LeaseDuration, LeaseError, RetryOptions, StoreError,
    StoreErrorKind,
};

/// Where probe blobs go: a prefix no backup, manifest or prune ever reads or lists.
pub const PROBE_PREFIX: &str = "doctor/";

/// A preflight waits for a struggling store a little, not the quarter of a minute a backup
/// does: the operator is watching and the answer is "fix the store" either way.
const PROBE_RETRY: RetryOptions = RetryOptions {
    max_attempts: 2,
    initial_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
};

/// Opens (or creates) the index and commits an empty write transaction: proves the file is a
/// kvkeep index, its schema is current and kvkeep may write it, without recording anything.
pub async fn check_index(path: &Path) -> Check {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        let index = Index::open(&path)?;
        index.write(|_| Ok(()))?;
        index.schema_version()
    })
    .await;
    match result {
        Ok(Ok(version)) => Check::ok(
            None,
            CheckName::Index,
            format!("{shown}: opens and is writable (schema {version})"),
        ),
        Ok(Err(e)) => Check::fail(
            None,
            CheckName::Index,
            e.to_string(),
            "make [index] path a writable file on a local disk for kvkeep's user; a damaged index is recreated from the store with `kvkeep index rebuild`",
        ),
        Err(e) => Check::fail(
            None,
            CheckName::Index,
            format!("the index check stopped: {e}"),
            "run kvkeep doctor again; report a bug if it repeats",
        ),
    }
}

/// Creates and removes a private probe file beside `[report] html_path`: the daemon rewrites the
/// report there after every run (through a temporary file renamed over it), and a directory it
/// cannot write only shows up as a warning in its log. A warning here too: backups do not
/// depend on it.
pub async fn check_report(path: &Path) -> Check {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    let probed = tokio::task::spawn_blocking(move || {
        let dir = crate::fsutil::parent_or_dot(&path);
        if path.is_dir() {
            return Err("names a directory, not a file".to_string());
        }
        let probe = dir.join(format!(".kvkeep-doctor-{}", std::process::id()));
        crate::fsutil::create_private_file(&probe).map_err(|e| e.to_string())?;
        std::fs::remove_file(&probe).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the check stopped: {e}")));
    match probed {
        Ok(()) => Check::ok(
            None,
            CheckName::Report,
            format!("{shown}: its directory takes the report"),
        ),
        Err(reason) => Check::warn(
            None,
            CheckName::Report,
            format!("{shown}: {reason}"),
            Some("create the directory of [report] html_path for kvkeep's user, or point the key at a writable place (the daemon cannot write the HTML report; backups are not affected)".to_string()),
        ),
    }
}

/// Writes a probe blob under [`PROBE_PREFIX`] with `put_new` (If-None-Match: *), reads it back,
/// compares and deletes it. Never touches anything else in the store.
pub async fn check_store(config: &Config, cancel: &CancellationToken) -> Check {
    match probe(config, cancel).await {
        Ok(detail) => Check::ok(None, CheckName::Store, detail),
        Err((detail, fix)) => Check::fail(None, CheckName::Store, detail, fix),
    }
}

async fn probe(config: &Config, cancel: &CancellationToken) -> Result<String, (String, String)> {
    let store = open_store_with(&config.store, &config.azure, PROBE_RETRY, cancel.clone())
        .await
        .map_err(|e| store_failure(&e))?;
    let key: BlobKey = format!("{PROBE_PREFIX}probe-{}", RunId::random())
        .parse()
        .map_err(|e| (format!("cannot name the probe blob: {e}"), bug()))?;
    let mut payload = vec![0u8; 64];
    rand::Rng::fill(&mut rand::thread_rng(), payload.as_mut_slice());
    let payload = Bytes::from(payload);
    store
        .put_new(&key, payload.clone())
        .await
        .map_err(|e| store_failure(&e))?;
    let read = store.get(&key).await;
    // Delete whatever the read said: a probe left behind is litter under doctor/, harmless but
    // untidy, and the delete's own failure is the more useful message when both fail.
    let deleted = store.delete(&key).await;
    let read = read.map_err(|e| store_failure(&e))?;
    if read != payload {
        return Err((
            format!("probe blob {key} read back different from what was written"),
            "check for a proxy or gateway that alters blob content between kvkeep and the store"
                .into(),
        ));
    }
    deleted.map_err(|e| {
        let (detail, fix) = store_failure(&e);
        (
            detail,
            format!("{fix}; then delete the probe blob {key} by hand"),
        )
    })?;
    Ok(format!(
        "probe blob written once, read back identical and deleted under {PROBE_PREFIX}"
    ))
}

/// A store error as what happened and what to do.
fn store_failure(e: &StoreError) -> (String, String) {
    let fix = match e.kind() {
        StoreErrorKind::Forbidden => {
            "give kvkeep's identity write, read and delete on the store: with a SAS, permissions r, c, w, d and l on the container and an unexpired signature; with [azure] credential, the Storage Blob Data Contributor role on the container; for a local store, a directory kvkeep's user owns"
        }
        StoreErrorKind::Transient | StoreErrorKind::Throttled => {
            "check that [store] container_url (host and port) is right and reachable from this host (firewall, proxy, private endpoint), and that [azure] ca_file trusts its certificate when a private CA signs it"
        }
        StoreErrorKind::NotFound => {
            "check that the container in [store] container_url exists (kvkeep does not create it) and that the url names it"
        }
        StoreErrorKind::AlreadyExists => "run kvkeep doctor again: the probe's random name was taken",
        StoreErrorKind::Immutable => {
            "the container keeps blobs under an immutability policy: the probe blob is deleted by hand once its retention period ends; prune postpones such blobs too"
        }
        StoreErrorKind::Permanent => {
            "check [store] in the configuration and the files it names; the message says what the store answered"
        }
    };
    (e.to_string(), fix.to_string())
}

/// The vault name the lease probe locks (`locks/kvkeep-lease-probe`): no Key Vault is asked.
pub const LEASE_PROBE_VAULT: &str = "kvkeep-lease-probe";

/// Takes and releases the lease of [`LEASE_PROBE_VAULT`] as this instance: proves that the
/// container holding the locks (the backup container, or `[store] lock_container_url`) grants
/// leases and keeps the holder's record, which a container under an immutability policy
/// refuses. The probe's lock blob stays, a few bytes under `locks/`, as every vault's does.
pub async fn check_locks(config: &Config, cancel: &CancellationToken) -> Check {
    let name = CheckName::Locks;
    let store =
        match open_store_with(&config.store, &config.azure, PROBE_RETRY, cancel.clone()).await {
            Ok(store) => store,
            Err(e) => {
                let (detail, fix) = store_failure(&e);
                return Check::fail(None, name, detail, fix);
            }
        };
    let (Ok(vault), Ok(duration)) = (
        LEASE_PROBE_VAULT.parse::<VaultName>(),
        LeaseDuration::seconds(LeaseDuration::MIN_SECONDS),
    ) else {
        return Check::fail(None, name, "cannot name the lease probe", bug());
    };
    let holder = config.daemon.lease_holder();
    match store.acquire_lease(&vault, &holder, duration).await {
        Ok(lease) => match store.release_lease(lease).await {
            Ok(()) => Check::ok(
                None,
                name,
                format!(
                    "a lease on {} was granted to instance {holder}, recorded and released",
                    lock_key(&vault)
                ),
            ),
            Err(e) => Check::warn(
                None,
                name,
                format!("the probe lease was granted but not released: {e}"),
                Some("nothing to do: it ends by itself within 15 s; if this repeats, check the store's delete and lease permissions".into()),
            ),
        },
        // Another doctor of this name, a moment ago: the container grants leases.
        Err(e @ LeaseError::Held { .. }) => Check::ok(None, name, format!("leases work: {e}")),
        Err(LeaseError::Store(e)) if e.kind() == StoreErrorKind::Immutable => Check::fail(
            None,
            name,
            e.to_string(),
            "keep the locks in a container without an immutability policy: [store] lock_container_url (README, \"Locks\")",
        ),
        Err(LeaseError::Store(e)) => {
            let (detail, fix) = store_failure(&e);
            Check::fail(None, name, detail, fix)
        }
        Err(e) => Check::fail(
            None,
            name,
            e.to_string(),
            "check [daemon] instance (a host name fits); the message says what is wrong",
        ),
    }
}

fn bug() -> String {
    "report a bug: kvkeep built an invalid blob name".into()
}

/// Opens the newest manifest of `vault` in the store (by blob name, which sorts by run start)
/// with `identities`: proves the identity is the one backups are sealed to.
pub async fn check_manifest(
    config: &Config,
    vault: &VaultName,
    identities: &Arc<Identities>,
    cancel: &CancellationToken,
) -> Check {
    let row = |r: Result<String, (String, String)>| match r {
        Ok(detail) => Check::ok(Some(vault), CheckName::Manifest, detail),
        Err((detail, fix)) => Check::fail(Some(vault), CheckName::Manifest, detail, fix),
    };
    let store =
        match open_store_with(&config.store, &config.azure, PROBE_RETRY, cancel.clone()).await {
            Ok(store) => store,
            Err(e) => return row(Err(store_failure(&e))),
        };
    match newest_manifest(store.as_ref(), vault).await {
        Ok(None) => Check::warn(
            Some(vault),
            CheckName::Manifest,
            "no committed backup in the store yet",
            Some("run `kvkeep backup` once, then kvkeep doctor --identity again".into()),
        ),
        Ok(Some((key, run))) => row(open_manifest(store.as_ref(), identities, vault, &run, &key)
            .await
            .map(|m| {
                format!(
                    "{key} opens (run {}, {}) with {}",
                    m.head.run,
                    m.head.status,
                    role_words(identities)
                )
            })
            .map_err(|e| {
                (
                    e,
                    "use the identity whose recipient is in [encryption] recipients or is the catalog_recipient (`kvkeep keys generate` printed it); an identity that opens no manifest cannot restore".into(),
                )
            })),
        Err(e) => row(Err(store_failure(&e))),
    }
}

/// Which role the supplied identities have, for the manifest check: a catalog identity opens
/// manifests as well as a recovery one, and an operator testing the offline key must not be
/// left believing the catalog key could restore.
fn role_words(identities: &Identities) -> String {
    if identities.opens_objects() {
        "a recovery identity (opens manifests and backups)".into()
    } else {
        "the catalog identity: it opens manifests only; restore and deep verify need a recovery identity".into()
    }
}

/// The key and run of the newest manifest of `vault`, if any.
async fn newest_manifest(
    store: &dyn BlobStore,
    vault: &VaultName,
) -> Result<Option<(BlobKey, RunId)>, StoreError> {
    let listed = store
        .list(&format!("manifests/{}/", vault.as_str()))
        .await?;
    // `{timestamp}-{run}.age`: the timestamp sorts by run start; the run id has no `-`.
    Ok(listed.into_iter().rev().find_map(|meta| {
        let file = meta.key.as_str().rsplit('/').next()?;
        let run = file
            .strip_suffix(".age")?
            .rsplit('-')
            .next()?
            .parse()
            .ok()?;
        Some((meta.key, run))
    }))
}
