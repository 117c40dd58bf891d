//! Tests of the sealing pipeline: round trips, recipients and identities, and damage —
//! every bit flip and every truncation of a small blob, forged envelopes, swapped blobs —
//! each refused with its own error and never a panic.

use std::io::Write;
use std::path::Path;

use age::secrecy::ExposeSecret;

use super::envelope::{encode, sha256_hex, EnvelopeHeader};
use super::*;
use crate::model::{ObjectKind, ObjectName, ObjectVersion, RunId, VaultName};

fn vault(s: &str) -> VaultName {
    s.parse().expect("valid vault")
}

fn name(s: &str) -> ObjectName {
    s.parse().expect("valid name")
}

fn version(s: &str) -> ObjectVersion {
    s.parse().expect("valid version")
}

const V1: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const V2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn secret_label(object: &str) -> Label {
    Label::object(
        vault("kv-prod"),
        ObjectKind::Secrets,
        name(object),
        vec![version(V1), version(V2)],
        version(V2),
        1_764_356_400,
    )
}

fn sealer_for(identities: &[&Identity]) -> Sealer {
    let recipients: Vec<String> = identities.iter().map(|i| i.recipient()).collect();
    Sealer::new(&recipients, 3).expect("valid recipients")
}

/// Encrypts arbitrary envelope bytes the way the sealer does, to forge damaged envelopes that
/// age itself would never let through otherwise.
fn seal_raw_envelope(identity: &Identity, envelope_bytes: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(envelope_bytes, 1).expect("zstd");
    age_encrypt(identity, &compressed)
}

fn age_encrypt(identity: &Identity, plaintext: &[u8]) -> Vec<u8> {
    let recipient: age::x25519::Recipient = identity.recipient().parse().expect("recipient");
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .expect("encryptor");
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).expect("wrap");
    w.write_all(plaintext).expect("write");
    w.finish().expect("finish");
    out
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    // xorshift: incompressible enough, and deterministic so failures reproduce.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn round_trips_payloads_of_every_size_and_records_the_header() {
    let id = Identity::generate();
    let sealer = sealer_for(&[&id]);
    let ids = Identities::from(id);
    // Sizes around age's 64 KiB chunk boundary, and 1 MiB.
    for len in [0, 1, 100, 65_535, 65_536, 65_537, 1 << 20] {
        let payload = pseudo_random(len, len as u64 + 7);
        let label = secret_label("db-password").with_run(RunId::random());
        let blob = sealer.seal(&label, &payload).expect("seal");
        let opened = open(&blob, &ids).expect("open");
        assert_eq!(opened.payload, payload, "payload of {len} bytes");
        let h = &opened.header;
        assert_eq!(h.format, FORMAT_VERSION);
        assert_eq!(h.blob, BlobType::Object);
        assert_eq!(h.vault, vault("kv-prod"));
        assert_eq!(h.run, label.run);
        assert_eq!(h.kind, Some(ObjectKind::Secrets));
        assert_eq!(h.name, Some(name("db-password")));
        assert_eq!(h.versions, vec![version(V1), version(V2)]);
        assert_eq!(h.current_version, Some(version(V2)));
        assert_eq!(h.captured_at, 1_764_356_400);
        assert_eq!(h.mode, PayloadMode::Native);
        assert_eq!(h.payload_len, len as u64);
        assert_eq!(h.payload_sha256, sha256_hex(&payload));
    }
}

#[test]
fn manifests_round_trip_without_object_fields() {
    let id = Identity::generate();
    let sealer = sealer_for(&[&id]);
    let run = RunId::random();
    let label = Label::manifest(vault("kv-prod"), 1_764_356_400).with_run(run.clone());
    let blob = sealer.seal(&label, b"{\"objects\":[]}").expect("seal");
    let ids = Identities::from(id);
    let expected = Expected::manifest(vault("kv-prod")).with_run(run);
    let opened = open_expecting(&blob, &ids, &expected).expect("open");
    assert_eq!(opened.header.blob, BlobType::Manifest);
    assert_eq!(opened.header.kind, None);
    assert!(opened.header.versions.is_empty());
    // The same blob is not an object capture.
    let err = open_expecting(
        &blob,
        &ids,
        &Expected::object(vault("kv-prod"), ObjectKind::Secrets, name("x")),
    )
    .expect_err("a manifest is not an object");
    assert!(
        err.to_string()
            .contains("blob type is manifest, expected object"),
        "{err}"
    );
}

#[test]
fn every_recipient_can_open_alone() {
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
    let sealer = sealer_for(&ids.iter().collect::<Vec<_>>());
    let blob = sealer
        .seal(&secret_label("api-key"), b"native backup bytes")
        .expect("seal");
    for id in ids {
        let opened = open(&blob, &Identities::from(id)).expect("each recipient opens");
        assert_eq!(opened.payload, b"native backup bytes");
    }
}

#[test]
fn a_file_with_several_identities_opens_with_whichever_matches() {
    let old = Identity::generate();
    let new = Identity::generate();
    let blob = sealer_for(&[&old])
        .seal(&secret_label("api-key"), b"x")
        .expect("seal");
    let both: Identities = [new, old].into_iter().collect();
    assert!(open(&blob, &both).is_ok());
}

#[test]
fn a_wrong_identity_is_refused() {
    let blob = sealer_for(&[&Identity::generate()])
        .seal(&secret_label("api-key"), b"x")
        .expect("seal");
    let err = open(&blob, &Identities::from(Identity::generate())).expect_err("wrong key");
    assert!(
        matches!(err, CryptoError::NoMatchingIdentity { identities: 1 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("none of the 1 supplied identity"));
}

#[test]
fn every_single_bit_flip_is_refused() {
    let id = Identity::generate();
    let blob = sealer_for(&[&id])
        .seal(
            &secret_label("db"),
            b"a small payload of forty bytes or so...",
        )
        .expect("seal");
    let ids = Identities::from(id);
    for pos in 0..blob.len() {
        for bit in 0..8 {
            let mut damaged = blob.clone();
            damaged[pos] ^= 1 << bit;
            let result = open(&damaged, &ids);
            assert!(
                result.is_err(),
                "flipping bit {bit} of byte {pos} of {} went unnoticed",
                blob.len()
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let id = Identity::generate();
    let blob = sealer_for(&[&id])
        .seal(
            &secret_label("db"),
            b"a small payload of forty bytes or so...",
        )
        .expect("seal");
    let ids = Identities::from(id);
    for len in 0..blob.len() {
        match open(&blob[..len], &ids) {
            Err(
                CryptoError::Truncated
                | CryptoError::Corrupted
                | CryptoError::AgeHeaderDamaged(_)
                | CryptoError::NoMatchingIdentity { .. },
            ) => {}
            other => panic!("truncation to {len} bytes gave {other:?}"),
        }
    }
    // Cut inside the encrypted stream: reported as truncation or failed authentication.
    let cut = open(&blob[..blob.len() - 1], &ids).expect_err("cut");
    assert!(
        matches!(cut, CryptoError::Truncated | CryptoError::Corrupted),
        "{cut:?}"
    );
}

#[test]
fn a_blob_swapped_under_another_name_is_refused_naming_the_difference() {
    let id = Identity::generate();
    let blob = sealer_for(&[&id])
        .seal(&secret_label("db-password"), b"x")
        .expect("seal");
    let ids = Identities::from(id);

    let want = Expected::object(vault("kv-prod"), ObjectKind::Secrets, name("api-key"));
    let err = open_expecting(&blob, &ids, &want).expect_err("swapped");
    let CryptoError::Mismatch { differences } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(
        differences,
        &vec!["name is db-password, expected api-key".to_string()]
    );
    assert!(err.to_string().contains("swapped or misfiled"), "{err}");

    // Another vault and kind are each named.
    let want = Expected::object(vault("kv-dev"), ObjectKind::Keys, name("db-password"));
    let err = open_expecting(&blob, &ids, &want).expect_err("other vault and kind");
    let msg = err.to_string();
    assert!(msg.contains("vault is kv-prod, expected kv-dev"), "{msg}");
    assert!(msg.contains("kind is secrets, expected keys"), "{msg}");

    // Names compare case-insensitively, as Key Vault does.
    let want = Expected::object(vault("kv-prod"), ObjectKind::Secrets, name("DB-Password"));
    assert!(open_expecting(&blob, &ids, &want).is_ok());

    // Optional expectations: run, current version, capture time.
    let want = Expected::object(vault("kv-prod"), ObjectKind::Secrets, name("db-password"))
        .with_run(RunId::random())
        .with_current_version(version(V1))
        .with_captured_at(1);
    let err = open_expecting(&blob, &ids, &want).expect_err("older capture");
    let CryptoError::Mismatch { differences } = err else {
        panic!("expected a mismatch");
    };
    assert_eq!(differences.len(), 3, "{differences:?}");
    assert!(differences[0].starts_with("run is absent, expected "));
    assert_eq!(
        differences[1],
        format!("current version is {V2}, expected {V1}")
    );
    assert_eq!(differences[2], "capture time is 1764356400, expected 1");
}

#[test]
fn zstd_compresses_a_repetitive_payload() {
    let id = Identity::generate();
    let payload = b"kvkeep backs up Azure Key Vault. ".repeat(32 * 1024); // ~1 MiB
    let blob = sealer_for(&[&id])
        .seal(&secret_label("big"), &payload)
        .expect("seal");
    assert!(
        blob.len() * 50 < payload.len(),
        "{} bytes sealed to {}",
        payload.len(),
        blob.len()
    );
    assert_eq!(
        open(&blob, &Identities::from(id)).expect("open").payload,
        payload
    );
}

#[test]
fn the_stock_age_tool_format_is_used() {
    // Operators can open a blob with `age -d -i key.txt | zstd -d` in an emergency.
    let id = Identity::generate();
    let blob = sealer_for(&[&id])
        .seal(&secret_label("db"), b"x")
        .expect("seal");
    assert!(blob.starts_with(b"age-encryption.org/v1\n-> X25519 "));
}

fn header_for(payload: &[u8]) -> EnvelopeHeader {
    EnvelopeHeader::new(&secret_label("db"), payload).expect("header")
}

fn frame(version: u8, header_json: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = b"KVKEEP\0".to_vec();
    out.push(version);
    out.extend_from_slice(&(header_json.len() as u32).to_be_bytes());
    out.extend_from_slice(header_json);
    out.extend_from_slice(payload);
    out
}

#[test]
fn forged_envelopes_are_refused_each_with_its_own_error() {
    let id = Identity::generate();
    let ids = Identities::from(id.clone());
    let payload = b"payload".to_vec();
    let json = serde_json::to_vec(&header_for(&payload)).expect("json");
    let open_plain = |plain: &[u8]| open(&seal_raw_envelope(&id, plain), &ids);

    // The honest framing opens, so the cases below fail for the reason they name.
    let good = encode(&header_for(&payload), &payload).expect("encode");
    assert_eq!(good, frame(1, &json, &payload));
    assert!(open_plain(&good).is_ok());

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(open_plain(&bad_magic), Err(CryptoError::BadMagic)));
    assert!(matches!(
        open_plain(b"something else entirely"),
        Err(CryptoError::BadMagic)
    ));
    assert!(matches!(
        open_plain(&frame(2, &json, &payload)),
        Err(CryptoError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    for declared in [0u32, 65_537, u32::MAX] {
        let mut oversized = good.clone();
        oversized[8..12].copy_from_slice(&declared.to_be_bytes());
        assert!(
            matches!(
                open_plain(&oversized),
                Err(CryptoError::HeaderTooLarge { .. })
            ),
            "declared {declared}"
        );
    }
    for cut in [0, 3, 7, 8, 11, 12, 20] {
        assert!(
            matches!(
                open_plain(&good[..cut]),
                Err(CryptoError::EnvelopeTruncated(_))
            ),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        open_plain(&frame(1, b"{not json", &payload)),
        Err(CryptoError::InvalidHeader(_))
    ));
    let mut other_hash = header_for(&payload);
    other_hash.payload_sha256 = sha256_hex(b"other");
    let json_other = serde_json::to_vec(&other_hash).expect("json");
    assert!(matches!(
        open_plain(&frame(1, &json_other, &payload)),
        Err(CryptoError::PayloadHashMismatch)
    ));
    assert!(matches!(
        open_plain(&frame(1, &json, b"payload plus")),
        Err(CryptoError::PayloadLengthMismatch {
            expected: 7,
            actual: 12
        })
    ));
    let mut shapeless = header_for(&payload);
    shapeless.name = None;
    let json_shapeless = serde_json::to_vec(&shapeless).expect("json");
    assert!(matches!(
        open_plain(&frame(1, &json_shapeless, &payload)),
        Err(CryptoError::InvalidHeader(_))
    ));
    let mut format_two = header_for(&payload);
    format_two.format = 2;
    let json_two = serde_json::to_vec(&format_two).expect("json");
    assert!(matches!(
        open_plain(&frame(1, &json_two, &payload)),
        Err(CryptoError::InvalidHeader(_))
    ));
}

#[test]
fn non_zstd_content_and_foreign_files_are_refused() {
    let id = Identity::generate();
    let ids = Identities::from(id.clone());
    let not_zstd = age_encrypt(&id, b"KVKEEP\0\x01 this was never compressed");
    assert!(matches!(
        open(&not_zstd, &ids),
        Err(CryptoError::Decompress(_))
    ));
    assert!(matches!(
        open(b"PK\x03\x04 a zip file", &ids),
        Err(CryptoError::NotAgeFile)
    ));
    assert!(matches!(open(b"", &ids), Err(CryptoError::Truncated)));
}

#[test]
fn a_decompression_bomb_is_refused_at_the_limit() {
    let id = Identity::generate();
    let ids = Identities::from(id.clone());
    // A few KiB that expand past the cap.
    let zeros = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    let bomb = zstd::bulk::compress(&zeros, 1).expect("zstd");
    drop(zeros);
    assert!(bomb.len() < 64 * 1024);
    let blob = age_encrypt(&id, &bomb);
    assert!(matches!(
        open(&blob, &ids),
        Err(CryptoError::DecompressedTooLarge { limit }) if limit == MAX_ENVELOPE_BYTES as u64
    ));
}

/// A zstd frame whose header asks for a window of `2^window_log` bytes, made by the zstd
/// encoder itself with long-distance matching, as a hostile writer could.
fn frame_with_window(window_log: u32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    encoder
        .long_distance_matching(true)
        .expect("long distance matching");
    encoder.window_log(window_log).expect("window log");
    encoder.write_all(&[7u8; 4096]).expect("write");
    let frame = encoder.finish().expect("finish");
    // RFC 8878: magic, frame header descriptor, then (no single-segment flag) the window
    // descriptor whose exponent is window_log - 10. Check the frame says what the test needs.
    assert_eq!(frame[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(
        frame[4] & 0x20,
        0,
        "not single-segment: the window is declared"
    );
    assert_eq!(u32::from(frame[5] >> 3) + 10, window_log, "declared window");
    frame
}

#[test]
fn a_frame_declaring_a_huge_window_is_refused_before_allocating_it() {
    let id = Identity::generate();
    let ids = Identities::from(id.clone());
    for window_log in [28, 30] {
        let blob = age_encrypt(&id, &frame_with_window(window_log));
        let err = open(&blob, &ids).expect_err("a window above 128 MiB must be refused");
        let message = err.to_string();
        assert!(
            message.contains("window") && message.contains("128 MiB"),
            "window 2^{window_log}: {message}"
        );
        assert!(
            !message.contains("not valid zstd"),
            "a clear reason, not a generic one: {message}"
        );
    }
}

#[test]
fn the_largest_window_kvkeep_writes_still_opens() {
    // Level 22 over a payload near the envelope limit uses zstd's largest default window.
    let id = Identity::generate();
    let ids = Identities::from(id.clone());
    let payload = pseudo_random(512 * 1024, 22);
    let blob = Sealer::new(&[id.recipient()], 22)
        .expect("sealer")
        .seal(&secret_label("big"), &payload)
        .expect("seal");
    assert_eq!(open(&blob, &ids).expect("opens").payload, payload);
    // And a frame declaring exactly the 128 MiB window opens too.
    let frame = frame_with_window(27);
    let blob = age_encrypt(&id, &frame);
    let err = open(&blob, &ids).expect_err("not a kvkeep envelope");
    assert!(matches!(err, CryptoError::BadMagic), "{err:?}");
}

#[test]
fn sealing_refuses_what_could_not_be_opened() {
    let id = Identity::generate();
    let sealer = sealer_for(&[&id]);
    let too_big = vec![0u8; MAX_ENVELOPE_BYTES];
    assert!(matches!(
        sealer.seal(&secret_label("db"), &too_big),
        Err(CryptoError::PayloadTooLarge { .. })
    ));
    drop(too_big);

    let mut no_versions = secret_label("db");
    no_versions.versions.clear();
    assert!(matches!(
        sealer.seal(&no_versions, b"x"),
        Err(CryptoError::InvalidLabel(_))
    ));
    let mut stray_current = secret_label("db");
    stray_current.current_version = Some(version("ffff"));
    let err = sealer.seal(&stray_current, b"x").expect_err("stray");
    assert!(
        err.to_string().contains("not among the versions held"),
        "{err}"
    );
    let mut manifest_with_name = Label::manifest(vault("kv-prod"), 0);
    manifest_with_name.name = Some(name("db"));
    assert!(matches!(
        sealer.seal(&manifest_with_name, b"x"),
        Err(CryptoError::InvalidLabel(_))
    ));
}

#[test]
fn sealers_check_recipients_and_level() {
    let id = Identity::generate();
    let empty: [&str; 0] = [];
    assert!(matches!(
        Sealer::new(&empty, 3),
        Err(CryptoError::NoRecipients)
    ));
    assert!(matches!(
        Sealer::new(&[id.recipient()], 0),
        Err(CryptoError::InvalidZstdLevel(0))
    ));
    assert!(matches!(
        Sealer::new(&[id.recipient(), "age1nope".into()], 3),
        Err(CryptoError::InvalidRecipient { index: 1, .. })
    ));
    let config = crate::config::EncryptionConfig {
        recipients: vec![id.recipient()],
        catalog_recipient: None,
        catalog_identity_file: None,
        zstd_level: 19,
    };
    let sealer = Sealer::from_config(&config).expect("config");
    assert_eq!(sealer.recipients(), vec![id.recipient()]);
}

#[test]
fn sealers_and_identities_can_cross_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Sealer>();
    shareable::<Identities>();
    shareable::<Opened>();
}

#[test]
fn identity_files_parse_comments_and_several_keys() {
    let a = Identity::generate();
    let b = Identity::generate();
    let text = format!(
        "# created: 2026-11-28T19:00:00Z\n# public key: {}\n{}\n\n  {}  \n",
        a.recipient(),
        secret_of(&a),
        secret_of(&b)
    );
    let ids = Identities::parse(&text, Path::new("keys.txt")).expect("parse");
    assert_eq!(ids.len(), 2);
    assert_eq!(ids.recipients(), vec![a.recipient(), b.recipient()]);

    let err = Identities::parse("# nothing\n", Path::new("keys.txt")).expect_err("empty");
    assert!(matches!(err, CryptoError::NoIdentities { .. }));
    let err = Identities::parse(&format!("# x\n{}\n", a.recipient()), Path::new("keys.txt"))
        .expect_err("recipient");
    assert!(
        matches!(err, CryptoError::IdentityParse { line: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("keys.txt line 2"), "{err}");
    let err =
        Identities::from_file(Path::new("/nonexistent/kvkeep-identity.txt")).expect_err("missing");
    assert!(matches!(err, CryptoError::IdentityFileRead { .. }));
}

fn secret_of(identity: &Identity) -> String {
    identity.key.to_string().expose_secret().to_string()
}

#[cfg(unix)]
#[test]
fn identity_files_are_written_private_and_never_overwritten_without_force() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("identity.txt");
    let first = Identity::generate();
    let recipient =
        write_identity_file(&path, &first, "2026-11-28T19:00:00Z", false).expect("write");
    assert_eq!(recipient, first.recipient());
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(crate::fsutil::loose_mode(&path), None);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with(&format!(
        "# created: 2026-11-28T19:00:00Z\n# public key: {recipient}\n"
    )));
    assert_eq!(
        Identities::from_file(&path).expect("load").recipients(),
        vec![recipient.clone()]
    );

    let err =
        write_identity_file(&path, &Identity::generate(), "later", false).expect_err("exists");
    assert!(matches!(err, CryptoError::IdentityFileExists { .. }));
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    // --force replaces it atomically and tightens a loose mode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(crate::fsutil::loose_mode(&path), Some(0o644));
    // A key readable by others is refused, naming the file and the fix, never its content.
    let err = Identities::from_file(&path).expect_err("a 0644 identity file is refused");
    let message = err.to_string();
    assert!(
        message.contains(&format!("chmod 600 {}", path.display())),
        "{message}"
    );
    assert!(!message.contains(&secret_of(&first)[20..]), "{message}");
    for loose in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
        assert!(Identities::from_file(&path).is_err(), "mode {loose:04o}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    assert!(Identities::from_file(&path).is_ok(), "0400 is private");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let second = Identity::generate();
    write_identity_file(&path, &second, "later", true).expect("force");
    assert_eq!(
        Identities::from_file(&path).expect("load").recipients(),
        vec![second.recipient()]
    );
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[test]
fn identities_never_reach_debug_display_or_errors() {
    let canary = Identity::generate();
    let secret = secret_of(&canary);
    // The part after the fixed prefix is what must never leak, in any case.
    let body = secret["AGE-SECRET-KEY-1".len()..].to_ascii_lowercase();
    let ids = Identities::from(canary.clone());

    let mut shown: Vec<String> = vec![
        format!("{canary:?}"),
        format!("{canary}"),
        format!("{ids:?}"),
        format!("{ids}"),
    ];
    let blob = sealer_for(&[&canary])
        .seal(&secret_label("db"), b"secret value")
        .expect("seal");
    let opened = open(&blob, &ids).expect("open");
    let opened_debug = format!("{opened:?}");
    assert!(!opened_debug.contains("secret value"), "{opened_debug}");
    shown.push(opened_debug);

    let mut errors = vec![
        open(&blob, &Identities::from(Identity::generate())).expect_err("wrong"),
        open_expecting(
            &blob,
            &ids,
            &Expected::object(vault("kv-prod"), ObjectKind::Keys, name("x")),
        )
        .expect_err("mismatch"),
        // A private key pasted where a recipient belongs.
        Sealer::new(std::slice::from_ref(&secret), 3).expect_err("identity as recipient"),
    ];
    // A damaged identity line, and one followed by junk.
    let mut damaged = secret.clone();
    damaged.pop();
    errors.push(Identities::parse(&damaged, Path::new("id.txt")).expect_err("damaged"));
    errors.push(Identities::parse(&format!("{secret}x\n"), Path::new("id.txt")).expect_err("junk"));
    // One character substituted by another valid bech32 character: only the checksum fails.
    let mut substituted = secret.clone().into_bytes();
    substituted[20] = if substituted[20] == b'Q' { b'P' } else { b'Q' };
    let substituted = String::from_utf8(substituted).expect("ascii");
    errors.push(Identities::parse(&substituted, Path::new("id.txt")).expect_err("checksum"));
    for e in &errors {
        shown.push(e.to_string());
        shown.push(format!("{e:?}"));
    }
    for s in &shown {
        assert!(
            !s.to_ascii_lowercase().contains(&body),
            "the identity leaked into {s:?}"
        );
    }
}

/// A blob sealed by format version 1, kept forever: every future build must still open it.
/// Regenerate only when adding a new version's fixture (`cargo test -p kvkeep
/// write_format_fixture -- --ignored`), never to replace this one.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/crypto/testdata");

#[test]
#[ignore = "writes the format-v1 fixture; run once by hand"]
fn write_format_fixture() {
    let dir = Path::new(FIXTURE_DIR);
    std::fs::create_dir_all(dir).expect("mkdir");
    let id = Identity::generate();
    write_identity_file(
        &dir.join("v1-identity.txt"),
        &id,
        "2026-11-28T19:00:00Z",
        false,
    )
    .expect("identity");
    let label = secret_label("db-password").with_run("0123456789abcdef".parse().expect("run"));
    let blob = sealer_for(&[&id])
        .seal(&label, b"native backup blob bytes")
        .expect("seal");
    std::fs::write(dir.join("v1-object.age"), blob).expect("write");
}

#[test]
fn format_v1_fixture_still_opens() {
    let dir = Path::new(FIXTURE_DIR);
    // Parsed rather than loaded: git does not keep the file's 0600, and the fixture is about
    // the format, not permissions.
    let key_file = dir.join("v1-identity.txt");
    let text = std::fs::read_to_string(&key_file).expect("fixture identity");
    let ids = Identities::parse(&text, &key_file).expect("fixture identity parses");
    let blob = std::fs::read(dir.join("v1-object.age")).expect("fixture blob");
    let expected = Expected::object(vault("kv-prod"), ObjectKind::Secrets, name("db-password"))
        .with_run("0123456789abcdef".parse().expect("run"))
        .with_current_version(version(V2))
        .with_captured_at(1_764_356_400);
    let opened = open_expecting(&blob, &ids, &expected).expect("fixture opens");
    assert_eq!(opened.payload, b"native backup blob bytes");
    assert_eq!(opened.header.versions, vec![version(V1), version(V2)]);
    assert_eq!(opened.header.mode, PayloadMode::Native);
}
