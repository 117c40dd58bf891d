//! Process locks beside the index file, so two kvkeep processes on one host never work on the
//! same vault at once, and `index rebuild` never swaps the file under a process that writes it.
//!
//! Two kinds of lock, both advisory `flock`s that the kernel releases when the process dies
//! (so a crash never leaves a stale lock to clean up):
//!
//! - `{index}.lock`: taken *shared* by every process that records runs (`kvkeep backup`, the
//!   daemon) and *exclusive* by `kvkeep index rebuild`, which therefore waits for nobody and
//!   is refused while any run is going;
//! - `{index}.locks/{vault}.lock`: taken *exclusive* for the whole run of one vault. Holding it
//!   proves no other process on the host is working on the vault, which is what makes marking
//!   its leftover `running` rows `interrupted` safe.
//!
//! The holder writes who it is (pid, command, since when) into the file it locked
//! exclusively, so a refused process can say which process is in the way. The text carries
//! no secret: a pid, the command's name and a time.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::VaultName;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{what} is in use by another kvkeep process ({holders}); wait for it to finish or stop it, then try again")]
    Busy {
        /// What was to be locked, for the message.
        what: String,
        /// Who holds it, as far as the lock files say.
        holders: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock (or set of locks); released when dropped or when the process exits.
#[derive(Debug)]
pub struct IndexLock {
    _files: Vec<File>,
}

/// `index.sqlite` → `index.sqlite.{suffix}`.
fn sibling(index: &Path, suffix: &str) -> PathBuf {
    let mut s = index.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens (creating it, private to the owner) a lock file.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

/// Who holds the lock on `file`, as its holder wrote it.
fn holder_of(file: &mut File) -> Option<String> {
    let mut text = String::new();
    // Bounded: a holder line is short, and a damaged file must not fill memory.
    file.take(512).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Writes who holds the lock into its (exclusively locked) file.
fn stamp(file: &mut File, path: &Path, purpose: &str, now: i64) -> Result<(), LockError> {
    let line = format!(
        "pid {} ({purpose}) since {}\n",
        std::process::id(),
        crate::restore::plan::rfc3339(now)
    );
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .and_then(|()| file.write_all(line.as_bytes()))
        .map_err(io_error(path))
}

fn try_lock(file: &File, shared: bool, path: &Path) -> Result<bool, LockError> {
    let attempt = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(io_error(path)(e)),
    }
}

/// Takes the locks for recording runs of `vault` in the index at `index`: the index lock
/// shared, the vault's lock exclusive. `purpose` names the command for other processes'
/// messages (`kvkeep backup`).
pub fn lock_vault(
    index: &Path,
    vault: &VaultName,
    purpose: &str,
    now: i64,
) -> Result<IndexLock, LockError> {
    let index_lock_path = sibling(index, "lock");
    let mut index_lock = open_lock_file(&index_lock_path)?;
    if !try_lock(&index_lock, true, &index_lock_path)? {
        return Err(LockError::Busy {
            what: format!("the index {}", index.display()),
            holders: holder_of(&mut index_lock).unwrap_or_else(|| "its pid is not recorded".into()),
        });
    }
    let dir = sibling(index, "locks");
    crate::fsutil::create_private_dir_all(&dir).map_err(io_error(&dir))?;
    let path = dir.join(format!("{vault}.lock"));
    let mut file = open_lock_file(&path)?;
    if !try_lock(&file, false, &path)? {
        return Err(LockError::Busy {
            what: format!("vault {vault}"),
            holders: holder_of(&mut file).unwrap_or_else(|| "its pid is not recorded".into()),
        });
    }
    stamp(
        &mut file,
        &path,
        &format!("{purpose} of vault {vault}"),
        now,
    )?;
    Ok(IndexLock {
        _files: vec![index_lock, file],
    })
}

/// Takes the index lock exclusively (`kvkeep index rebuild`): refused while any process
/// records runs, and naming those processes.
pub fn lock_index(index: &Path, purpose: &str, now: i64) -> Result<IndexLock, LockError> {
    let path = sibling(index, "lock");
    let mut file = open_lock_file(&path)?;
    if !try_lock(&file, false, &path)? {
        return Err(LockError::Busy {
            what: format!("the index {}", index.display()),
            holders: vault_holders(index)
                .or_else(|| holder_of(&mut file))
                .unwrap_or_else(|| "its pid is not recorded".into()),
        });
    }
    stamp(&mut file, &path, purpose, now)?;
    Ok(IndexLock { _files: vec![file] })
}

/// The holders of the vault locks that are held now, joined for a message.
fn vault_holders(index: &Path) -> Option<String> {
    let entries = std::fs::read_dir(sibling(index, "locks")).ok()?;
    let mut holders: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let mut file = File::open(&path).ok()?;
            // A lock we can take is not held: release it at once and skip it.
            match file.try_lock_shared() {
                Ok(()) => None,
                Err(_) => holder_of(&mut file),
            }
        })
        .collect();
    holders.sort();
    (!holders.is_empty()).then(|| holders.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(s: &str) -> VaultName {
        s.parse().expect("vault")
    }

    #[test]
    fn a_vault_is_locked_once_and_the_refusal_names_the_holder() {
        let dir = tempfile::tempdir().expect("dir");
        let index = dir.path().join("index.sqlite");
        let held = lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect("first");
        let err = lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect_err("second");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id()))
                && text.contains("kvkeep backup of vault kv1"),
            "{text}"
        );
        // Another vault is independent.
        let _other = lock_vault(&index, &vault("kv2"), "kvkeep backup", 0).expect("kv2");
        drop(held);
        lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect("free again");
    }

    #[test]
    fn rebuild_waits_for_no_run_and_runs_wait_for_no_rebuild() {
        let dir = tempfile::tempdir().expect("dir");
        let index = dir.path().join("index.sqlite");
        let run = lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect("run");
        let err = lock_index(&index, "kvkeep index rebuild", 0).expect_err("rebuild refused");
        assert!(
            err.to_string().contains("kvkeep backup of vault kv1"),
            "{err}"
        );
        drop(run);
        let rebuild = lock_index(&index, "kvkeep index rebuild", 0).expect("rebuild");
        let err = lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect_err("run refused");
        assert!(err.to_string().contains("kvkeep index rebuild"), "{err}");
        drop(rebuild);
    }

    #[test]
    fn lock_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let index = dir.path().join("index.sqlite");
        let _held = lock_vault(&index, &vault("kv1"), "kvkeep backup", 0).expect("lock");
        let mode = |p: PathBuf| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(sibling(&index, "lock")), 0o600);
        assert_eq!(mode(sibling(&index, "locks")), 0o700);
        assert_eq!(mode(sibling(&index, "locks").join("kv1.lock")), 0o600);
    }
}
