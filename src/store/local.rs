//! [`LocalStore`]: blobs as files under a directory — for a first try, tests, and air-gapped
//! copies of a store.
//!
//! Layout: the blob `K` is the file `{root}/{prefix}{K}`, `/` in the key being directory
//! separators. [`BlobKey`] admits only `[A-Za-z0-9._-]` segments and no `.`/`..`, so a key can
//! never leave the root. Temporary files carry a `~` (a character keys cannot contain), so
//! `list` can tell them apart from blobs without a naming convention that a key could mimic.
//!
//! Durability and write-once, in `put_new`:
//! 1. write a temporary file in the blob's own directory and `fsync` it;
//! 2. `link(2)` it to the blob's name. Unlike `rename(2)`, which silently replaces an existing
//!    file, `link` fails with `EEXIST` — atomically, so of two racing writers exactly one wins
//!    and the loser's content never becomes visible. (`renameat2(RENAME_NOREPLACE)` would do the
//!    same but is Linux-only and not supported by every file system; hard links are POSIX);
//! 3. remove the temporary name and `fsync` the directory, so the new entry survives a crash.
//!
//! A crash between 1 and 3 leaves a `~` temp file behind; it is invisible to `list` and
//! harmless.
//!
//! Blobs are encrypted, but their names say which vaults and objects exist: every file and
//! directory the store creates is private (0600 / 0700, set whatever the umask, see
//! [`crate::fsutil`]); directories that existed before keep their mode. File systems without hard links (some FUSE and SMB mounts) are refused with a
//! clear error rather than silently losing the no-overwrite guarantee.
//!
//! Vault leases are `flock`s on the file `locks/{vault}` (see `local_lease.rs`): held while the
//! process keeps the file open, released by the kernel when it dies.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::lease::{lock_key, Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::local_lease::HeldLock;
use super::{normalise_prefix, BlobMeta, BlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::fsutil::{self, sync_dir};
use crate::model::{BlobKey, VaultName};

/// Blobs as files under a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// `{directory}/{prefix}`: where keys start.
    base: PathBuf,
    /// "local store {directory}" for messages.
    pub(super) name: String,
    /// The lock files this store holds, per vault, shared by its clones. The open file *is*
    /// the lock: dropping it releases the `flock`.
    pub(super) locks: Arc<Mutex<HashMap<VaultName, HeldLock>>>,
}

impl LocalStore {
    /// Opens (creating it if needed) the store in `directory`, with blob names under `prefix`
    /// (`""` for none; `"prod"` and `"prod/"` are the same).
    pub fn open(directory: &Path, prefix: &str) -> Result<Self, StoreError> {
        let name = format!("local store {}", directory.display());
        let prefix = normalise_prefix(prefix);
        let base = if prefix.is_empty() {
            directory.to_path_buf()
        } else {
            directory.join(prefix.trim_end_matches('/'))
        };
        fsutil::create_private_dir_all(&base)
            .map_err(|e| io_error(StoreOp::Open, "", &name, &base, e))?;
        Ok(LocalStore {
            base,
            name,
            locks: Arc::default(),
        })
    }

    /// The directory where keys start (the store directory joined with the prefix).
    pub fn base(&self) -> &Path {
        &self.base
    }

    pub(super) fn path_of(&self, key: &BlobKey) -> PathBuf {
        // Safe by construction: BlobKey segments are never empty, `.` or `..`, nor contain a
        // separator other than `/`.
        self.base.join(key.as_str())
    }

    async fn blocking<T, E, F>(&self, op: StoreOp, key: &str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(LocalStore) -> Result<T, E> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Permanent,
                    op,
                    key,
                    self.name.clone(),
                    format!("the file system task ended abnormally: {e}"),
                )
                .into()
            })
            .and_then(|r| r)
    }

    fn put_blocking(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        let target = self.path_of(key);
        let err =
            |e: io::Error, path: &Path| io_error(StoreOp::Put, key.as_str(), &self.name, path, e);
        let dir = target.parent().unwrap_or(&self.base).to_path_buf();
        create_dirs(&self.base, &dir).map_err(|e| err(e, &dir))?;

        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!("{file_name}~{:016x}.tmp", rand::random::<u64>()));
        let written = (|| {
            let mut file = fsutil::create_private_file(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(err(e, &temp));
        }
        let linked = fs::hard_link(&temp, &target);
        // The temp name goes whatever the outcome: on success the data lives on under the
        // blob's name; on failure it must not linger.
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if target.is_dir() {
                    return Err(StoreError::new(
                        StoreErrorKind::Permanent,
                        StoreOp::Put,
                        key.as_str(),
                        self.name.clone(),
                        format!("{} is a directory (a local store cannot hold both a blob and keys under it)", target.display()),
                    ));
                }
                return Err(StoreError::new(
                    StoreErrorKind::AlreadyExists,
                    StoreOp::Put,
                    key.as_str(),
                    self.name.clone(),
                    "",
                ));
            }
            Err(e) if is_unsupported(&e) => {
                return Err(StoreError::new(
                    StoreErrorKind::Permanent,
                    StoreOp::Put,
                    key.as_str(),
                    self.name.clone(),
                    format!("the file system under {} does not support hard links, which kvkeep needs to write without ever overwriting ({e}); use a local file system such as ext4 or xfs", self.base.display()),
                ));
            }
            Err(e) => return Err(err(e, &target)),
        }
        sync_dir(&dir).map_err(|e| err(e, &dir))
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        // Start at the deepest directory the prefix names completely; everything else is
        // filtered by string prefix below.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        let start = if dir_part.is_empty() {
            self.base.clone()
        } else {
            // A prefix with path tricks cannot name any key; it matches nothing.
            if dir_part.parse::<BlobKey>().is_err() {
                return Ok(out);
            }
            self.base.join(dir_part)
        };
        let mut pending = vec![(start, dir_part.to_string())];
        while let Some((dir, rel)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    continue
                }
                Err(e) => return Err(io_error(StoreOp::List, prefix, &self.name, &dir, e)),
            };
            for entry in entries {
                let entry =
                    entry.map_err(|e| io_error(StoreOp::List, prefix, &self.name, &dir, e))?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                    continue; // not UTF-8: not a blob
                };
                let key_text = if rel.is_empty() {
                    file_name
                } else {
                    format!("{rel}/{file_name}")
                };
                // Temp files (`~`) and anything else that is not a key are not blobs.
                let Ok(key) = key_text.parse::<BlobKey>() else {
                    continue;
                };
                let file_type = entry
                    .file_type()
                    .map_err(|e| io_error(StoreOp::List, prefix, &self.name, &entry.path(), e))?;
                if file_type.is_dir() {
                    // Descend only where keys matching the prefix can be.
                    let as_dir = format!("{key_text}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        pending.push((entry.path(), key_text));
                    }
                } else if file_type.is_file() && key_text.starts_with(prefix) {
                    let size = entry
                        .metadata()
                        .map_err(|e| io_error(StoreOp::List, prefix, &self.name, &entry.path(), e))?
                        .len();
                    out.push(BlobMeta {
                        key,
                        size_bytes: size,
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let k = key.clone();
        self.blocking(StoreOp::Put, key.as_str(), move |s| {
            s.put_blocking(&k, &bytes)
        })
        .await
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        let k = key.clone();
        self.blocking(StoreOp::Get, key.as_str(), move |s| {
            let path = s.path_of(&k);
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| io_error(StoreOp::Get, k.as_str(), &s.name, &path, e))
        })
        .await
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, StoreError> {
        let k = key.clone();
        self.blocking(StoreOp::Head, key.as_str(), move |s| {
            let path = s.path_of(&k);
            let meta = fs::metadata(&path)
                .map_err(|e| io_error(StoreOp::Head, k.as_str(), &s.name, &path, e))?;
            if !meta.is_file() {
                return Err(StoreError::new(
                    StoreErrorKind::NotFound,
                    StoreOp::Head,
                    k.as_str(),
                    s.name.clone(),
                    "",
                ));
            }
            Ok(BlobMeta {
                key: k,
                size_bytes: meta.len(),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        let p = prefix.to_string();
        self.blocking(StoreOp::List, prefix, move |s| s.list_blocking(&p))
            .await
    }

    async fn acquire_lease(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        let (v, h) = (vault.clone(), holder.clone());
        let now = crate::clock::now_unix();
        self.blocking(StoreOp::AcquireLease, lock_key(vault).as_str(), move |s| {
            s.acquire_lease_blocking(&v, &h, duration, now)
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        let l = lease.clone();
        self.blocking(StoreOp::RenewLease, lease.key().as_str(), move |s| {
            s.renew_lease_blocking(&l)
        })
        .await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), LeaseError> {
        let key = lease.key();
        self.blocking(StoreOp::ReleaseLease, key.as_str(), move |s| {
            s.release_lease_blocking(&lease)
        })
        .await
    }

    async fn break_lease(&self, vault: &VaultName) -> Result<(), LeaseError> {
        let v = vault.clone();
        self.blocking(StoreOp::BreakLease, lock_key(vault).as_str(), move |s| {
            s.break_lease_blocking(&v)
        })
        .await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let k = key.clone();
        self.blocking(StoreOp::Delete, key.as_str(), move |s| {
            let path = s.path_of(&k);
            let err = |e, p: &Path| io_error(StoreOp::Delete, k.as_str(), &s.name, p, e);
            fs::remove_file(&path).map_err(|e| err(e, &path))?;
            // Empty directories are left in place: removing them could race with a put_new
            // that just created its temp file there.
            match path.parent() {
                Some(dir) => sync_dir(dir).map_err(|e| err(e, dir)),
                None => Ok(()),
            }
        })
        .await
    }
}

/// Creates `dir` and its missing ancestors below `base`, private, fsyncing each parent after a
/// child appears in it, so the directory entries survive a crash along with the blob.
pub(super) fn create_dirs(base: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // Keys never leave the base (see BlobKey), so everything created is below it.
    debug_assert!(dir.starts_with(base));
    fsutil::create_private_dir_all(dir).map(drop)
}

fn is_unsupported(e: &io::Error) -> bool {
    // EPERM from link(2) on file systems without hard links (e.g. vfat), EOPNOTSUPP elsewhere.
    e.kind() == io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(1) | Some(95))
}

/// Translates a file-system error into the store vocabulary.
pub(super) fn io_error(
    op: StoreOp,
    key: &str,
    store: &str,
    path: &Path,
    e: io::Error,
) -> StoreError {
    use io::ErrorKind as K;
    let (kind, detail) = match e.kind() {
        K::NotFound | K::IsADirectory | K::NotADirectory
            if matches!(op, StoreOp::Get | StoreOp::Head | StoreOp::Delete) =>
        {
            (StoreErrorKind::NotFound, String::new())
        }
        K::PermissionDenied | K::ReadOnlyFilesystem => (
            StoreErrorKind::Forbidden,
            format!("{e} on {}; check that the user kvkeep runs as may read and write it (and that the file system is writable)", path.display()),
        ),
        K::StorageFull | K::QuotaExceeded => (
            StoreErrorKind::Permanent,
            format!("{e} on {}; free space or raise the quota", path.display()),
        ),
        K::Interrupted | K::TimedOut | K::WouldBlock => (
            StoreErrorKind::Transient,
            format!("{e} on {}", path.display()),
        ),
        _ => (StoreErrorKind::Permanent, format!("{e} on {}", path.display())),
    };
    StoreError::new(kind, op, key, store, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_become_forbidden_with_the_path() {
        let e = io_error(
            StoreOp::Put,
            "a/b",
            "local store /s",
            Path::new("/s/a"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), StoreErrorKind::Forbidden);
        let text = e.to_string();
        assert!(
            text.contains("write blob a/b in local store /s denied") && text.contains("/s/a"),
            "{text}"
        );
    }

    /// Every file and directory under `root` with its permission bits.
    #[cfg(unix)]
    fn modes_under(root: &Path) -> Vec<(PathBuf, bool, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                let meta = fs::symlink_metadata(&path).expect("metadata");
                if meta.is_dir() {
                    pending.push(path.clone());
                }
                out.push((path, meta.is_dir(), meta.permissions().mode() & 0o777));
            }
        }
        out
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn blobs_are_private_files_in_private_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // A parent others may read: what kvkeep creates below it must not be.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let store = LocalStore::open(&dir.path().join("store"), "prod").expect("open");
        let key: BlobKey = "objects/kv1/secrets/db/100-0001.age".parse().expect("key");
        store
            .put_new(&key, Bytes::from_static(b"sealed"))
            .await
            .expect("put");
        let entries = modes_under(&dir.path().join("store"));
        assert!(entries.len() >= 5, "{entries:?}");
        for (path, is_dir, mode) in entries {
            let want = if is_dir { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} has mode {mode:04o}", path.display());
        }
        let store_mode = fs::metadata(dir.path().join("store"))
            .expect("store dir")
            .permissions()
            .mode();
        assert_eq!(store_mode & 0o777, 0o700, "the store directory it created");
    }

    #[test]
    fn prefixes_are_normalised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalStore::open(dir.path(), "prod").expect("open");
        let b = LocalStore::open(dir.path(), "/prod/").expect("open");
        assert_eq!(a.base(), b.base());
        assert_eq!(a.base(), dir.path().join("prod"));
    }
}
