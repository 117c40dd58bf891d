//! `kvkeep lock break` through the real binary on a local store: the lease another holder has on
//! a vault ends at once (that holder's next renew finds it lost, another holder may take it),
//! and the mistakes a person makes (no vault, an unknown one) exit 2 with nothing broken.

use std::path::Path;
use std::process::{Command, Output};

use kvkeep::model::VaultName;
use kvkeep::store::{BlobStore, LeaseDuration, LeaseError, LeaseHolder, LocalStore};

const CONFIG: &str = r#"
[store]
type = "local"
path = "store"

[index]
path = "index.sqlite"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[vault]]
name = "kv-a"

[[vault]]
name = "kv-b"
"#;

fn kvkeep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .arg("--config")
        .arg(dir.join("kvkeep.toml"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run kvkeep")
}

#[tokio::test]
async fn lock_break_ends_a_held_lease_and_refuses_mistakes() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("kvkeep.toml"), CONFIG).expect("config");
    std::fs::create_dir(dir.path().join("store")).expect("store dir");
    let store = LocalStore::open(&dir.path().join("store"), "").expect("store");
    let vault: VaultName = "kv-a".parse().expect("vault");
    let hung = LeaseHolder::new("hung-host").expect("holder");
    let lease = store
        .acquire_lease(&vault, &hung, LeaseDuration::DEFAULT)
        .await
        .expect("lease");
    let other = LeaseHolder::new("other-host").expect("holder");
    assert!(matches!(
        store
            .acquire_lease(&vault, &other, LeaseDuration::DEFAULT)
            .await,
        Err(LeaseError::Held { .. })
    ));

    // Mistakes: no vault named, an unknown vault. Nothing is broken.
    let out = kvkeep(dir.path(), &["lock", "break"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kvkeep(dir.path(), &["lock", "break", "--vault", "kv-nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kv-a, kv-b"), "{stderr}");
    store.renew_lease(&lease).await.expect("still held");

    // Broken: the hung holder's renew finds it lost, and another holder takes the vault.
    let out = kvkeep(dir.path(), &["lock", "break", "--vault", "kv-a"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("vault kv-a: lease broken"), "{stdout}");
    assert!(matches!(
        store.renew_lease(&lease).await,
        Err(LeaseError::Lost { .. })
    ));
    store
        .acquire_lease(&vault, &other, LeaseDuration::DEFAULT)
        .await
        .expect("the vault is free");
    // A vault nobody holds: nothing to break, and that is fine.
    let out = kvkeep(dir.path(), &["lock", "break", "--vault", "kv-b"]);
    assert_eq!(out.status.code(), Some(0));
}
