//! Vault leases of the [`LocalStore`]: an exclusive `flock` on the file `locks/{vault}` in the
//! store directory — the mechanism `index::lock` uses for its per-vault locks — with the
//! holder's instance name, pid and time written into the locked file as JSON.
//!
//! How the lease semantics map onto a file lock:
//!
//! - **duration** is validated like Azure's but not enforced: the lock is held while the process
//!   keeps the file open and is released by the kernel when the process dies, so a crashed
//!   instance never leaves a lock behind and a hung one keeps it until it is stopped or broken;
//! - **re-acquire** by the same holder succeeds when this store (or a clone of it) already holds
//!   the lock. Another process is refused even when it carries the same instance name: the lock
//!   belongs to an open file, not to a name, and a restarted process finds the lock free anyway;
//! - **renew** checks that the lock is still ours: this store holds the file open and the name
//!   `locks/{vault}` still refers to that very file (same device and inode);
//! - **break** puts a new file in the place of `locks/{vault}` (renamed over it, with the
//!   holder's record copied). A `flock` cannot be taken from a living process, but once the
//!   name leads to another file, the next acquire locks that one, and the old holder's next
//!   renew sees that the name no longer leads to its file and reports the lease lost — the
//!   same outcome as a broken Azure lease. Acquire re-checks the name after locking for the
//!   same reason: a file replaced between `open` and `flock` is not a lock anyone sees;
//! - **release** empties the file before closing it, so a record found in the file by the next
//!   acquire is a holder that never released: it died or was broken in the middle of its
//!   work ([`Lease::abandoned`]).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::lease::{lock_key, HolderInfo, Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::local::{create_dirs, io_error};
use super::{LocalStore, StoreError, StoreErrorKind, StoreOp};
use crate::fsutil::{self, sync_dir};
use crate::model::VaultName;

/// A lock file this process holds open (and so locked).
#[derive(Debug)]
pub(super) struct HeldLock {
    lease_id: String,
    file: File,
}

/// How often acquire starts over when the lock file it locked was unlinked (broken) meanwhile.
/// Each round means someone broke the lock again between two system calls; a few suffice.
const ACQUIRE_ROUNDS: usize = 8;

/// The most of a lock file read for its holder: a holder record is short, a damaged file must
/// not fill memory.
const HOLDER_READ_LIMIT: u64 = 4096;

impl LocalStore {
    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<VaultName, HeldLock>> {
        // Every update inserts or removes one entry whole, so a poisoned map is consistent.
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lease_io(&self, op: StoreOp, vault: &VaultName, path: &Path, e: io::Error) -> LeaseError {
        io_error(op, lock_key(vault).as_str(), &self.name, path, e).into()
    }

    fn lost(&self, vault: &VaultName, detail: &str) -> LeaseError {
        LeaseError::Lost {
            vault: vault.clone(),
            store: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    pub(super) fn acquire_lease_blocking(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
        now: i64,
    ) -> Result<Lease, LeaseError> {
        let op = StoreOp::AcquireLease;
        let path = self.path_of(&lock_key(vault));
        let dir = path.parent().unwrap_or(self.base()).to_path_buf();
        create_dirs(self.base(), &dir).map_err(|e| self.lease_io(op, vault, &dir, e))?;
        let lease = Lease::new(vault.clone(), holder.clone(), duration, now);

        // The map stays locked for the whole acquire, so two tasks of this process acquiring
        // the same vault take turns instead of both opening the file.
        let mut held = self.held();
        if let Some(lock) = held.get_mut(vault) {
            if lock.lease_id == holder.lease_id() {
                if same_file(&lock.file, &path).map_err(|e| self.lease_io(op, vault, &path, e))? {
                    stamp(&mut lock.file, &holder.info_at(now))
                        .map_err(|e| self.lease_io(op, vault, &path, e))?;
                    return Ok(lease);
                }
                // Ours, but broken since: close it and lock afresh below.
                held.remove(vault);
            }
            // Another holder's lock in this very store: the flock below is refused like any
            // other process's, or succeeds if that lock was broken (and then replaces it).
        }

        for _ in 0..ACQUIRE_ROUNDS {
            let mut file = open_lock_file(&path).map_err(|e| self.lease_io(op, vault, &path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LeaseError::Held {
                        vault: vault.clone(),
                        store: self.name.clone(),
                        by: read_holder(&path),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(self.lease_io(op, vault, &path, e)),
            }
            if !same_file(&file, &path).map_err(|e| self.lease_io(op, vault, &path, e))? {
                continue; // broken between open and flock: that file is no lock any more
            }
            // A release empties the file: a record left in it is a holder that died (or was
            // broken) in the middle of its work.
            let abandoned = read_record(&mut file);
            stamp(&mut file, &holder.info_at(now))
                .map_err(|e| self.lease_io(op, vault, &path, e))?;
            held.insert(
                vault.clone(),
                HeldLock {
                    lease_id: holder.lease_id().to_string(),
                    file,
                },
            );
            return Ok(lease.after_abandoned(abandoned));
        }
        Err(StoreError::new(
            StoreErrorKind::Transient,
            op,
            lock_key(vault).as_str(),
            self.name.clone(),
            format!("the lock file {} was removed {ACQUIRE_ROUNDS} times while it was being locked; is something breaking it in a loop?", path.display()),
        )
        .into())
    }

    pub(super) fn renew_lease_blocking(&self, lease: &Lease) -> Result<(), LeaseError> {
        let vault = lease.vault();
        let path = self.path_of(&lease.key());
        let mut held = self.held();
        match held.get(vault) {
            Some(lock) if lock.lease_id == lease.holder().lease_id() => {
                let still = same_file(&lock.file, &path)
                    .map_err(|e| self.lease_io(StoreOp::RenewLease, vault, &path, e))?;
                if still {
                    Ok(())
                } else {
                    held.remove(vault);
                    Err(self.lost(
                        vault,
                        &format!(
                            "the lock file {} was removed: the lock was broken",
                            path.display()
                        ),
                    ))
                }
            }
            Some(_) => Err(self.lost(vault, "it was broken and another holder acquired it since")),
            None => Err(self.lost(vault, "it was released, or never acquired by this process")),
        }
    }

    pub(super) fn release_lease_blocking(&self, lease: &Lease) -> Result<(), LeaseError> {
        let mut held = self.held();
        if held
            .get(lease.vault())
            .is_some_and(|lock| lock.lease_id == lease.holder().lease_id())
        {
            if let Some(lock) = held.remove(lease.vault()) {
                // Emptied first, so the next holder knows this one finished its work (a file
                // broken meanwhile is no longer the lock: emptying it changes nothing). Closing
                // the file then releases the flock; the file stays, as Azure's lock blob does.
                if let Err(e) = lock.file.set_len(0) {
                    let path = self.path_of(&lease.key());
                    return Err(self.lease_io(StoreOp::ReleaseLease, lease.vault(), &path, e));
                }
            }
        }
        Ok(())
    }

    pub(super) fn break_lease_blocking(&self, vault: &VaultName) -> Result<(), LeaseError> {
        let op = StoreOp::BreakLease;
        let path = self.path_of(&lock_key(vault));
        // A new file takes the name, with the holder's record copied: the holder's open file
        // is then no lock any more, and the next holder still learns whose work was cut short.
        let record = match File::open(&path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(HOLDER_READ_LIMIT)
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.lease_io(op, vault, &path, e))?;
                bytes
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.lease_io(op, vault, &path, e)),
        };
        fsutil::replace_private_file(&path, &record)
            .map_err(|e| self.lease_io(op, vault, &path, e))?;
        match path.parent() {
            Some(dir) => sync_dir(dir).map_err(|e| self.lease_io(op, vault, dir, e)),
            None => Ok(()),
        }
    }
}

/// Opens the lock file, creating it private (0600) the first time; never truncates it, since
/// another process may hold it and its holder record.
fn open_lock_file(path: &Path) -> io::Result<File> {
    match fsutil::create_private_file(path) {
        Ok(file) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` still names the open `file` (not unlinked, not replaced by a new file).
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes the holder record into the (locked) file, replacing the previous one. Not fsynced: it
/// only serves messages, and the lock itself does not survive a crash either.
fn stamp(file: &mut File, info: &HolderInfo) -> io::Result<()> {
    let mut line = serde_json::to_vec(info).map_err(io::Error::other)?;
    line.push(b'\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&line)
}

/// The holder record of the lock file at `path`, if it can be read and makes sense.
fn read_holder(path: &Path) -> Option<HolderInfo> {
    read_record(&mut File::open(path).ok()?)
}

/// The holder record in the open lock `file`, read from its start, if it makes sense.
fn read_record(file: &mut File) -> Option<HolderInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(HOLDER_READ_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    let info: HolderInfo = serde_json::from_str(text.trim()).ok()?;
    // Only a name a holder could have written is repeated in messages.
    LeaseHolder::new(&info.instance).ok()?;
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlobStore;

    fn vault(s: &str) -> VaultName {
        s.parse().expect("vault")
    }

    fn holder(s: &str) -> LeaseHolder {
        LeaseHolder::new(s).expect("holder")
    }

    /// Two stores over one directory stand for two processes: each has its own open files, and
    /// flocks on separate opens exclude each other even within one process.
    #[tokio::test]
    async fn a_lock_is_held_by_an_open_file_and_freed_when_its_store_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = LocalStore::open(dir.path(), "p").expect("open");
        let second = LocalStore::open(dir.path(), "p").expect("open");
        let v = vault("kv1");
        first
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::DEFAULT)
            .await
            .expect("first");
        // Even the same instance name is refused from another process while the first lives.
        for who in ["web-2", "web-1"] {
            let err = second
                .acquire_lease(&v, &holder(who), LeaseDuration::DEFAULT)
                .await
                .expect_err("held by the first store");
            let LeaseError::Held { by: Some(by), .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(by.instance, "web-1");
            assert_eq!(by.pid, Some(std::process::id()));
            assert!(err.to_string().contains("kvkeep instance web-1"), "{err}");
        }
        // A clone shares the lock: it is the same store in the same process.
        first
            .clone()
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::DEFAULT)
            .await
            .expect("re-acquired through a clone");
        // The process "dies": its files close and the kernel frees the lock.
        drop(first);
        let taken = second
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect("free once the holder is gone");
        // It died holding the lock, so its record is what the next holder finds unfinished.
        let left = taken.abandoned().expect("web-1 never released");
        assert_eq!(left.instance, "web-1");
        second.release_lease(taken).await.expect("release");
        let again = second
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect("free after the release");
        assert_eq!(
            again.abandoned(),
            None,
            "a release leaves nothing unfinished"
        );
    }

    #[tokio::test]
    async fn a_broken_lock_is_lost_to_its_holder_in_another_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let holder_store = LocalStore::open(dir.path(), "").expect("open");
        let operator = LocalStore::open(dir.path(), "").expect("open");
        let v = vault("kv1");
        let lease = holder_store
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::DEFAULT)
            .await
            .expect("acquire");
        operator.break_lease(&v).await.expect("break");
        operator
            .acquire_lease(&v, &holder("web-2"), LeaseDuration::DEFAULT)
            .await
            .expect("the next acquire succeeds at once");
        let err = holder_store
            .renew_lease(&lease)
            .await
            .expect_err("lost after the break");
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
        assert!(err.to_string().contains("was broken"), "{err}");
        // The old holder cannot take it back while the new one holds it.
        let err = holder_store
            .acquire_lease(&v, &holder("web-1"), LeaseDuration::DEFAULT)
            .await
            .expect_err("held by web-2");
        assert!(err.to_string().contains("kvkeep instance web-2"), "{err}");
        holder_store
            .release_lease(lease)
            .await
            .expect("releasing a lost lease is no error");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn lock_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path(), "").expect("open");
        store
            .acquire_lease(&vault("kv1"), &holder("web-1"), LeaseDuration::DEFAULT)
            .await
            .expect("acquire");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("locks")), 0o700);
        assert_eq!(mode(&dir.path().join("locks/kv1")), 0o600);
    }
}
