//! Private files: how kvkeep creates the files and directories it writes (index, local-store
//! blobs, temporary files, identity files) and how it reads the files that hold secrets
//! (identities, bearer tokens, SAS URLs, client secrets).
//!
//! Everything kvkeep writes names vaults, objects and versions, or is key material, so it is
//! created private to kvkeep's user: 0600 for files, 0700 for directories. The mode is set
//! with `fchmod`/`chmod` after creation rather than only passed to `open(2)`/`mkdir(2)`,
//! because the process umask filters the latter: a umask of 000 would otherwise leave the
//! default 0644 of some callers, and an unusual umask such as 0277 would leave a file kvkeep
//! cannot write.
//!
//! A secret file that group or others can access is refused, not merely warned about, before
//! its content is read (as OpenSSH does with private keys): a key readable by others must be
//! treated as exposed, and a warning in a log nobody reads protects nothing. The content that is
//! read lands in a buffer that is zeroed when dropped ([`zeroize::Zeroizing`]).
//!
//! On platforms without Unix permissions these helpers create and read files normally.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// The mode of every file kvkeep creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of every directory kvkeep creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates the new file `path` (failing if it exists) with mode 0600, whatever the umask.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    let file = options.open(path)?;
    if let Err(e) = set_mode(&file, PRIVATE_FILE_MODE) {
        // A file that cannot be made private is not left behind half-created.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// Creates the directory `path` (its parent must exist) with mode 0700, whatever the umask.
/// Fails with `AlreadyExists` if it exists; an existing directory keeps its mode.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Creates `dir` and its missing ancestors, each with mode 0700; directories that already
/// exist (say `/var/lib`, or a state directory systemd made) keep theirs. Each new directory's
/// parent is fsynced after the child appears in it, so the entries survive a crash. Returns
/// the directories it created, outermost first.
pub fn create_private_dir_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match create_private_dir(&d) {
            Ok(()) => {
                sync_dir(parent_or_dot(&d))?;
                created.push(d);
            }
            // Someone else (a concurrent put) created it first: theirs is just as good.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Fsyncs a directory, so that entries created, linked or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with a private file (0600 whatever the umask) holding `bytes`: written to a
/// new file beside it and renamed over it once complete, so a reader (a web server, a mail job,
/// the daemon's `/report`) never sees half a file. The temporary name is unique per process and
/// call, so two writers in one process do not trample each other; the last rename wins.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temp_name = file_name.to_os_string();
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = path.with_file_name(temp_name);
    let written = create_private_file(&temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed
}

/// The directory holding `path`: its parent, or `.` for a bare file name.
pub fn parent_or_dot(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Why a secret file was not read.
#[derive(Debug)]
pub enum SecretFileError {
    /// It could not be opened or read, or is not UTF-8 text.
    Io(io::Error),
    /// Group or others may access it; `mode` holds its permission bits.
    Loose {
        /// The permission bits (`0o644`).
        mode: u32,
    },
}

/// What to tell an operator about a secret file with permission bits `mode`: which file, why
/// it is refused, and the command that fixes it. Never the content.
pub fn loose_file_message(what: &str, path: &Path, mode: u32) -> String {
    format!(
        "{what} {path} can be accessed by group or others (mode {mode:04o}) but holds a secret, so kvkeep refuses to use it: run `chmod 600 {path}` (and keep it owned by the user kvkeep runs as)",
        path = path.display()
    )
}

/// Reads a file that holds a secret. Refuses it, unread, when group or others may access it;
/// otherwise returns its text in a buffer zeroed on drop.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let mut file = File::open(path).map_err(SecretFileError::Io)?;
    // The open handle's metadata, not the path's: the file checked is the file read.
    let meta = file.metadata().map_err(SecretFileError::Io)?;
    if let Some(mode) = loose_bits(&meta) {
        return Err(SecretFileError::Loose { mode });
    }
    // Sized up front so the buffer never reallocates, which would leave an unzeroed copy of
    // the secret in freed memory.
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes).map_err(SecretFileError::Io)?;
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(SecretFileError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file is not UTF-8 text",
            )))
        }
    }
}

/// The permission bits of `path` when group or others have any access to it (Unix only).
pub fn loose_mode(path: &Path) -> Option<u32> {
    loose_bits(&fs::metadata(path).ok()?)
}

#[cfg(unix)]
fn loose_bits(meta: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_bits(_meta: &fs::Metadata) -> Option<u32> {
    None
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_directories_are_private_and_existing_ancestors_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let deep = dir.path().join("a").join("b").join("c");
        let created = create_private_dir_all(&deep).expect("create");
        assert_eq!(created.len(), 3);
        for d in &created {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        assert_eq!(
            mode(dir.path()),
            0o755,
            "an existing directory keeps its mode"
        );
        assert!(create_private_dir_all(&deep).expect("again").is_empty());

        let file = deep.join("f");
        drop(create_private_file(&file).expect("file"));
        assert_eq!(mode(&file), 0o600);
        let err = create_private_file(&file).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn secret_files_are_read_only_when_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        fs::write(&path, "s3cret\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_secret_file(&path).expect("read").as_str(), "s3cret\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(read_secret_file(&path).is_ok());
        for loose in [0o644, 0o640, 0o604, 0o620, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).expect("chmod");
            assert!(
                matches!(read_secret_file(&path), Err(SecretFileError::Loose { mode }) if mode == loose),
                "{loose:04o}"
            );
        }
        let message = loose_file_message("token file", &path, 0o644);
        assert!(message.contains("mode 0644"), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }

    #[test]
    fn a_replaced_file_is_private_whole_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.html");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        replace_private_file(&path, b"new report").expect("replace");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new report");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.html")]);
        // A directory in the way: an error, and the directory is left alone.
        let blocked = dir.path().join("sub");
        fs::create_dir(&blocked).expect("mkdir");
        fs::write(blocked.join("keep"), "x").expect("write");
        assert!(replace_private_file(&blocked, b"x").is_err());
        assert!(blocked.join("keep").exists());
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 2);
    }
}
