//! Tests of the two key roles: manifests open with the recovery and the catalog identity, object
//! blobs with the recovery identity only (a canary secret must never come out with the catalog
//! key), role comments in identity files, and the catalog identity file's checks.

use std::path::Path;

use super::*;
use crate::config::EncryptionConfig;
use crate::model::{ObjectKind, ObjectName, ObjectVersion, VaultName};

const CANARY: &[u8] = b"kvkeep-canary-7f3a9c: the secret value no catalog key may read";
const V1: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn vault() -> VaultName {
    "kv-prod".parse().expect("vault")
}

fn object_label() -> Label {
    let v: ObjectVersion = V1.parse().expect("version");
    let name: ObjectName = "db-password".parse().expect("name");
    Label::object(
        vault(),
        ObjectKind::Secrets,
        name,
        vec![v.clone()],
        v,
        1_764_356_400,
    )
}

fn manifest_label() -> Label {
    Label::manifest(vault(), 1_764_356_400)
}

/// A recovery identity, a catalog identity (marked as such, as `keys generate --catalog`
/// writes it) and the sealer the configuration would build from them.
fn keys() -> (Identities, Identities, Sealer) {
    let recovery = Identity::generate();
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    let sealer = Sealer::new(&[recovery.recipient()], 3)
        .expect("sealer")
        .with_catalog(&catalog.recipient())
        .expect("catalog");
    (recovery.into(), catalog.into(), sealer)
}

/// The number of X25519 recipient stanzas in an age file's header: who a blob is sealed to,
/// read from the blob itself rather than from the sealer that wrote it.
fn stanzas(ciphertext: &[u8]) -> usize {
    let end = ciphertext
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("an age header");
    String::from_utf8_lossy(&ciphertext[..end])
        .lines()
        .filter(|l| l.starts_with("-> X25519 "))
        .count()
}

#[test]
fn a_manifest_is_sealed_to_the_recovery_and_the_catalog_recipient() {
    let (recovery, catalog, sealer) = keys();
    let blob = sealer
        .seal(&manifest_label(), b"{\"format\":2}")
        .expect("seal");
    assert_eq!(stanzas(&blob), 2);
    for identities in [&recovery, &catalog] {
        let opened = open_expecting(&blob, identities, &Expected::manifest(vault()))
            .expect("a manifest opens with either role");
        assert_eq!(opened.payload, b"{\"format\":2}");
    }
}

#[test]
fn an_object_blob_never_opens_with_the_catalog_identity() {
    let (recovery, catalog, sealer) = keys();
    let blob = sealer.seal(&object_label(), CANARY).expect("seal");
    assert_eq!(stanzas(&blob), 1, "sealed to the recovery recipient only");
    let expected = Expected::object(
        vault(),
        ObjectKind::Secrets,
        "db-password".parse().expect("name"),
    );
    let opened = open_expecting(&blob, &recovery, &expected).expect("recovery opens it");
    assert_eq!(opened.payload, CANARY);

    // The catalog identity gets no file key, so nothing of the payload.
    let err = open(&blob, &catalog).expect_err("the catalog identity cannot open a backup");
    assert!(
        matches!(err, CryptoError::NoMatchingIdentity { .. }),
        "{err:?}"
    );
    // Asked for an object, the error says what kind of key was given.
    let err = open_expecting(&blob, &catalog, &expected).expect_err("refused");
    assert!(matches!(err, CryptoError::CatalogIdentityOnly { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with("this is the catalog identity: it opens manifests only;"),
        "{message}"
    );
    assert!(!message.contains("kvkeep-canary"), "{message}");

    // Even an unmarked key configured as the catalog recipient opens no backup: the sealer,
    // not the key file, decides.
    let plain = Identity::generate();
    let sealer = Sealer::new(&[Identity::generate().recipient()], 3)
        .expect("sealer")
        .with_catalog(&plain.recipient())
        .expect("catalog");
    let blob = sealer.seal(&object_label(), CANARY).expect("seal");
    assert!(open(&blob, &Identities::from(plain)).is_err());
}

#[test]
fn without_a_catalog_recipient_every_blob_goes_to_the_recovery_recipients_only() {
    let recovery = Identity::generate();
    let sealer = Sealer::new(&[recovery.recipient()], 3).expect("sealer");
    assert_eq!(sealer.catalog_recipient(), None);
    for label in [manifest_label(), object_label()] {
        assert_eq!(stanzas(&sealer.seal(&label, b"x").expect("seal")), 1);
    }
}

#[test]
fn the_catalog_recipient_must_not_be_a_recovery_recipient() {
    let recovery = Identity::generate();
    let sealer = Sealer::new(&[recovery.recipient()], 3).expect("sealer");
    let err = sealer
        .clone()
        .with_catalog(&recovery.recipient())
        .expect_err("same key");
    assert!(matches!(err, CryptoError::CatalogIsRecovery));
    assert!(err.to_string().contains("would open every backup"), "{err}");
    let err = sealer
        .with_catalog("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQCANARY")
        .expect_err("a private key");
    assert!(matches!(err, CryptoError::InvalidCatalogRecipient { .. }));
    assert!(!err.to_string().contains("CANARY"), "{err}");
}

#[test]
fn identity_files_carry_their_role_and_the_configuration_can_name_it() {
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    let recovery = Identity::generate();
    let plain = Identity::generate();
    let text = format!(
        "{ROLE_COMMENT} catalog\n{}\n{ROLE_COMMENT} recovery\n{}\n{}\n",
        secret_of(&catalog),
        secret_of(&recovery),
        secret_of(&plain)
    );
    let ids = Identities::parse(&text, Path::new("k.txt")).expect("parse");
    assert_eq!(
        ids.roles(),
        vec![KeyRole::Catalog, KeyRole::Recovery, KeyRole::Recovery]
    );
    assert!(ids.opens_objects());

    // An age-keygen file whose key is the configured catalog recipient is a catalog key.
    let only_plain =
        Identities::parse(&format!("{}\n", secret_of(&plain)), Path::new("p.txt")).expect("parse");
    assert!(only_plain.require_recovery("restore").is_ok());
    let marked = only_plain.with_catalog_recipient(Some(&plain.recipient()));
    assert_eq!(marked.roles(), vec![KeyRole::Catalog]);
    let err = marked
        .require_recovery("restore")
        .expect_err("catalog only");
    assert_eq!(
        err.to_string(),
        "this is the catalog identity: it opens manifests only; restore needs a recovery identity (the offline key whose recipient is in [encryption] recipients)"
    );

    let err = Identities::parse(
        &format!("{ROLE_COMMENT} everything\n{}\n", secret_of(&plain)),
        Path::new("u.txt"),
    )
    .expect_err("unknown role");
    assert!(
        err.to_string().contains("line 1: unknown key role"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn keys_generate_writes_the_role_and_the_catalog_file_is_checked_against_the_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.txt");
    let catalog = Identity::generate_with_role(KeyRole::Catalog);
    write_identity_file(&path, &catalog, "2026-12-01T00:00:00Z", false).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("\n# kvkeep key role: catalog\n"), "{text}");
    assert_eq!(
        Identities::from_file(&path).expect("load").roles(),
        vec![KeyRole::Catalog]
    );

    let recovery = Identity::generate();
    let config = |catalog_recipient: &str| EncryptionConfig {
        recipients: vec![recovery.recipient()],
        catalog_recipient: Some(catalog_recipient.to_string()),
        catalog_identity_file: Some(path.clone()),
        zstd_level: 3,
    };
    let loaded = load_catalog_identity(&config(&catalog.recipient()))
        .expect("load")
        .expect("configured");
    assert_eq!(loaded.recipients(), vec![catalog.recipient()]);
    assert!(!loaded.opens_objects());

    let other = Identity::generate().recipient();
    let err = load_catalog_identity(&config(&other)).expect_err("mismatch");
    let message = err.to_string();
    assert!(matches!(err, CryptoError::CatalogIdentityMismatch { .. }));
    assert!(message.contains(&other) && message.contains(&catalog.recipient()));
    assert!(!message.contains(&secret_of(&catalog)[20..]), "{message}");

    // A recovery key on a daemon host is refused even beside the right catalog key.
    let both = dir.path().join("both.txt");
    let text = format!("{}\n{}\n", secret_of(&catalog), secret_of(&recovery));
    std::fs::write(&both, text).expect("write");
    std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut with_both = config(&catalog.recipient());
    with_both.catalog_identity_file = Some(both);
    let err = load_catalog_identity(&with_both).expect_err("a recovery key");
    assert!(matches!(err, CryptoError::CatalogFileHoldsRecovery { .. }));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = load_catalog_identity(&config(&catalog.recipient())).expect_err("loose");
    assert!(matches!(err, CryptoError::IdentityFileLoose { .. }));
}

fn secret_of(identity: &Identity) -> String {
    use age::secrecy::ExposeSecret;
    identity.key.to_string().expose_secret().to_string()
}
