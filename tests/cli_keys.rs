//! Drives `kvkeep keys generate` (and `--catalog`) through the real binary: the identity file it
//! writes, the recipient it prints, and its refusal to overwrite a key.

use std::path::Path;
use std::process::{Command, Output};
use std::str::FromStr;

use kvkeep::crypto::{open, Identities, KeyRole, Label, Sealer};

fn kvkeep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(args)
        .output()
        .expect("the kvkeep binary runs")
}

fn generate(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().expect("utf-8 temp path");
    let mut args = vec!["keys", "generate", "--out", out];
    args.extend_from_slice(extra);
    kvkeep(&args)
}

fn secret_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("identity file")
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("an identity line")
        .to_string()
}

fn assert_no_secret(output: &Output, secret: &str) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream).to_ascii_uppercase();
        assert!(
            !text.contains(&secret[16..]),
            "the identity was printed: {text}"
        );
    }
}

#[test]
fn generate_writes_a_private_identity_and_prints_its_recipient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kvkeep-identity.txt");
    let out = generate(&path, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "identity file mode {mode:o}");
    }

    // stdout is exactly the recipient, a valid age X25519 public key of this identity.
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let recipient = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    age::x25519::Recipient::from_str(recipient).expect("stdout parses as an age recipient");
    let identities = Identities::from_file(&path).expect("the file loads as identities");
    assert_eq!(identities.recipients(), vec![recipient.to_string()]);

    // The file carries the age-keygen style header comments.
    let text = std::fs::read_to_string(&path).expect("file");
    assert!(text.starts_with("# created: "), "{text}");
    assert!(
        text.contains(&format!("# public key: {recipient}\n")),
        "{text}"
    );

    // The hint points at the configuration and at keeping the identity offline.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[encryption] recipients"), "{stderr}");
    assert!(stderr.contains("offline"), "{stderr}");
    assert_no_secret(&out, &secret_line(&path));

    // What is sealed to the printed recipient opens with the written identity.
    let sealer = Sealer::new(&[recipient], 3).expect("sealer");
    let label = Label::manifest("kv-test".parse().expect("vault"), 0);
    let blob = sealer.seal(&label, b"hello").expect("seal");
    assert_eq!(open(&blob, &identities).expect("open").payload, b"hello");
}

#[test]
fn generate_catalog_writes_a_marked_identity_that_opens_manifests_and_no_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.txt");
    let out = generate(&path, &["--catalog"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "identity file mode {mode:o}");
    }
    let catalog = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let catalog = catalog.trim();
    age::x25519::Recipient::from_str(catalog).expect("stdout is the recipient");
    let text = std::fs::read_to_string(&path).expect("file");
    assert!(text.contains("\n# kvkeep key role: catalog\n"), "{text}");
    let identities = Identities::from_file(&path).expect("loads");
    assert_eq!(identities.roles(), vec![KeyRole::Catalog]);

    // The hint names the catalog key's place in the configuration and says daemon hosts only.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[encryption] catalog_recipient"),
        "{stderr}"
    );
    assert!(stderr.contains("daemon hosts only"), "{stderr}");
    assert!(stderr.contains("never a backup"), "{stderr}");
    assert_no_secret(&out, &secret_line(&path));

    // Sealed by a configuration that names it: manifests open with it, backups do not.
    let recovery = dir.path().join("recovery.txt");
    let out = generate(&recovery, &[]);
    let recovery_recipient = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sealer = Sealer::new(&[recovery_recipient], 3)
        .expect("sealer")
        .with_catalog(catalog)
        .expect("catalog");
    let vault: kvkeep::model::VaultName = "kv-test".parse().expect("vault");
    let manifest = sealer
        .seal(&Label::manifest(vault.clone(), 0), b"names")
        .expect("seal");
    assert_eq!(
        open(&manifest, &identities).expect("open").payload,
        b"names"
    );
    let version: kvkeep::model::ObjectVersion =
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0".parse().expect("version");
    let object = Label::object(
        vault,
        kvkeep::model::ObjectKind::Secrets,
        "db".parse().expect("name"),
        vec![version.clone()],
        version,
        0,
    );
    let blob = sealer.seal(&object, b"canary-secret").expect("seal");
    assert!(open(&blob, &identities).is_err());
}

#[test]
fn generate_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("identity.txt");
    assert_eq!(generate(&path, &[]).status.code(), Some(0));
    let before = std::fs::read(&path).expect("file");

    let again = generate(&path, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(again.stdout.is_empty(), "nothing on stdout when refusing");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).expect("file"),
        before,
        "file left unchanged"
    );
    assert_no_secret(&again, &secret_line(&path));

    let forced = generate(&path, &["--force"]);
    assert_eq!(forced.status.code(), Some(0));
    assert_ne!(
        std::fs::read(&path).expect("file"),
        before,
        "--force replaces"
    );
    let recipient = String::from_utf8_lossy(&forced.stdout).trim().to_string();
    assert_eq!(
        Identities::from_file(&path).expect("load").recipients(),
        vec![recipient]
    );
    assert_no_secret(&forced, &secret_line(&path));
}

#[test]
fn generate_into_a_missing_directory_fails_with_exit_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = generate(&dir.path().join("no/such/dir/identity.txt"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write identity file"));
}

#[test]
fn generate_without_out_is_a_usage_error() {
    let out = kvkeep(&["keys", "generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
}
