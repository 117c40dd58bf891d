//! The index holds every object name and version of every vault: the file and the `-wal` and
//! `-shm` files SQLite puts beside it are private to kvkeep's user (0600), whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::super::Index;
use super::{run, vault};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_new_index_and_its_wal_and_shm_files_are_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Whatever directory kvkeep is pointed at: even one others may read.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("index.sqlite");
    let index = Index::open(&path).expect("create");
    index
        .begin_run(&run(1), &vault("kv-prod"), 100)
        .expect("a write, so the WAL exists");
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let file = dir.path().join(name);
        assert!(file.exists(), "{name} exists while the index is open");
        assert_eq!(mode(&file), 0o600, "{name} mode {:04o}", mode(&file));
    }
    drop(index);
    assert_eq!(mode(&path), 0o600);
}
