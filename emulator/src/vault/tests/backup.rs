//! Backup blobs: framing, all versions, restore into the same and another vault, refusal
//! across geographies, tampering, wrong kinds, conflicts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;

fn backup(v: &mut Vault, coll: Collection, name: &str) -> String {
    let b = ok(
        v,
        Op::Backup {
            coll,
            name: name.into(),
        },
    );
    b["value"].as_str().unwrap_or_default().to_string()
}

fn restore(coll: Collection, blob: &str) -> Op {
    Op::Restore {
        coll,
        body: json!({ "value": blob }),
    }
}

fn delete_and_purge(v: &mut Vault, coll: Collection, name: &str) {
    ok(
        v,
        Op::Delete {
            coll,
            name: name.into(),
        },
    );
    assert_eq!(
        v.apply(
            &Op::Purge {
                coll,
                name: name.into()
            },
            &ctx()
        ),
        Ok(Reply::NoContent)
    );
}

/// Three versions at distinct times, the middle one disabled and tagged.
fn three_versions(v: &mut Vault) -> Vec<Value> {
    vec![
        ok_at(
            v,
            Op::SetSecret {
                name: "Bk".into(),
                body: json!({"value": "one"}),
            },
            NOW - 20,
        ),
        ok_at(
            v,
            Op::SetSecret {
                name: "bk".into(),
                body: json!({"value": "two", "tags": {"a": "b"}, "attributes": {"enabled": false}}),
            },
            NOW - 10,
        ),
        ok_at(
            v,
            Op::SetSecret {
                name: "bk".into(),
                body: json!({"value": "three", "contentType": "text/plain"}),
            },
            NOW - 5,
        ),
    ]
}

fn assert_versions_preserved(v: &mut Vault, originals: &[Value]) {
    let (items, _) = page(
        v,
        Op::ListVersions {
            coll: Collection::Secrets,
            name: "bk".into(),
            after: None,
            limit: 25,
        },
    );
    let ids: Vec<&Value> = items.iter().map(|i| &i["id"]).collect();
    let want: Vec<&Value> = originals.iter().map(|o| &o["id"]).collect();
    assert_eq!(ids, want);
    for (item, orig) in items.iter().zip(originals) {
        assert_eq!(item["attributes"]["created"], orig["attributes"]["created"]);
        assert_eq!(item["attributes"]["updated"], orig["attributes"]["updated"]);
        assert_eq!(item["attributes"]["enabled"], orig["attributes"]["enabled"]);
    }
    let first = ok(
        v,
        get(
            Collection::Secrets,
            "bk",
            Some(&version_of(&originals[0]["id"])),
        ),
    );
    assert_eq!(first["value"], "one");
    assert_eq!(
        ok(v, get(Collection::Secrets, "bk", None))["value"],
        "three"
    );
    assert_eq!(items[1]["tags"], json!({"a": "b"}));
}

#[test]
fn blob_has_the_service_framing_and_is_opaque() {
    let mut v = vault();
    set_secret(&mut v, "s", "very-visible-value");
    let blob = backup(&mut v, Collection::Secrets, "s");
    assert!(!blob.contains('=') && !blob.contains('+') && !blob.contains('/'));
    let raw = URL_SAFE_NO_PAD.decode(&blob).unwrap_or_default();
    assert_eq!(raw[0], 0x29);
    assert_eq!(&raw[1..42], b"AzureKeyVaultSecretBackupV1.microsoft.com");
    assert!(!String::from_utf8_lossy(&raw).contains("very-visible-value"));

    ok(
        &mut v,
        Op::CreateKey {
            name: "k".into(),
            body: json!({"kty": "EC"}),
        },
    );
    let raw = URL_SAFE_NO_PAD
        .decode(backup(&mut v, Collection::Keys, "k"))
        .unwrap_or_default();
    assert_eq!(raw[0], 0x26);
    assert_eq!(&raw[1..39], b"AzureKeyVaultKeyBackupV1.microsoft.com");
}

/// The type tag, then a JWE compact serialization (five base64url segments), at the service's
/// sizes (§8.1): ~4 KB for a small secret, ~10 KB for a key.
#[test]
fn blob_is_a_tagged_jwe_of_the_service_size() {
    let mut v = vault();
    set_secret(&mut v, "s", "small");
    ok(
        &mut v,
        Op::CreateKey {
            name: "k".into(),
            body: json!({"kty": "RSA"}),
        },
    );
    for (coll, name, tag, sizes) in [
        (
            Collection::Secrets,
            "s",
            &b"AzureKeyVaultSecretBackupV1.microsoft.com"[..],
            3_500..5_000,
        ),
        (
            Collection::Keys,
            "k",
            &b"AzureKeyVaultKeyBackupV1.microsoft.com"[..],
            8_000..11_000,
        ),
    ] {
        let blob = backup(&mut v, coll, name);
        assert!(
            sizes.contains(&blob.len()),
            "{coll:?}: {} chars",
            blob.len()
        );
        let raw = URL_SAFE_NO_PAD.decode(&blob).unwrap_or_default();
        assert_eq!(&raw[1..=tag.len()], tag);
        let jwe = std::str::from_utf8(&raw[1 + tag.len()..]).expect("ascii jwe");
        let segments: Vec<&str> = jwe.split('.').collect();
        assert_eq!(segments.len(), 5, "{jwe}");
        for segment in &segments {
            assert!(segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).unwrap_or_default())
                .expect("json header");
        assert_eq!(
            (&header["alg"], &header["enc"]),
            (&json!("dir"), &json!("A256GCM"))
        );
        assert!(header["kid"].as_str().is_some_and(|k| k.len() == 36));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(segments[2]).map(|iv| iv.len()),
            Ok(12)
        );

        // A header edited to claim another kind is tampering like any other.
        let mut edited = header.clone();
        edited["kvemu-kind"] = json!("certificate");
        let forged_jwe = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(edited.to_string()),
            segments[1..].join(".")
        );
        let mut forged = raw[..=tag.len()].to_vec();
        forged.extend_from_slice(forged_jwe.as_bytes());
        let forged = URL_SAFE_NO_PAD.encode(forged);
        assert_eq!(
            err(&mut v, restore(Collection::Certificates, &forged)).code,
            "Malformed backup blob"
        );
    }
}

#[test]
fn backup_purge_restore_keeps_versions_and_timestamps_in_the_same_vault() {
    let mut v = vault();
    let originals = three_versions(&mut v);
    let blob = backup(&mut v, Collection::Secrets, "BK");
    delete_and_purge(&mut v, Collection::Secrets, "bk");
    let restored = ok_at(&mut v, restore(Collection::Secrets, &blob), NOW + 100);
    assert_eq!(restored["id"], originals[2]["id"]);
    assert!(
        restored.get("value").is_none(),
        "restore answers without the value"
    );
    assert_eq!(restored["attributes"]["created"], NOW - 5);
    assert_versions_preserved(&mut v, &originals);
    // The name is echoed as first created.
    assert_id(&restored["id"], "secrets", "Bk", true);
}

#[test]
fn restore_into_another_vault_of_the_same_geo_and_subscription() {
    let mut a = vault();
    let originals = three_versions(&mut a);
    let blob = backup(&mut a, Collection::Secrets, "bk");
    let mut b = vault_with(|s| s.name = "kv2".into());
    ok(&mut b, restore(Collection::Secrets, &blob));
    assert_versions_preserved(&mut b, &originals);
    // The source vault is untouched by a restore elsewhere.
    assert_eq!(a.counts().secrets, 1);
}

#[test]
fn restore_is_refused_across_geo_or_subscription() {
    let mut a = vault();
    three_versions(&mut a);
    let blob = backup(&mut a, Collection::Secrets, "bk");
    for mut other in [
        vault_with(|s| s.geo = "asia".into()),
        vault_with(|s| s.subscription = "00000000-0000-0000-0000-000000000002".into()),
        Vault::new(VaultSettings::named("kv1"), [8; 32]),
    ] {
        let e = err(&mut other, restore(Collection::Secrets, &blob));
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (400, "Malformed backup blob", "Backup blob is corrupt.")
        );
        assert_eq!(other.counts().secrets, 0);
    }
}

#[test]
fn tampered_truncated_and_garbage_blobs_are_400() {
    let mut v = vault();
    three_versions(&mut v);
    let blob = backup(&mut v, Collection::Secrets, "bk");
    let raw = URL_SAFE_NO_PAD.decode(&blob).unwrap_or_default();
    let mut flipped = raw.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    let cases = [
        URL_SAFE_NO_PAD.encode(&flipped),
        URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]),
        URL_SAFE_NO_PAD.encode(&raw[..40]),
        "not base64 at all!".to_string(),
        String::new(),
    ];
    delete_and_purge(&mut v, Collection::Secrets, "bk");
    for c in cases {
        let e = err(&mut v, restore(Collection::Secrets, &c));
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "Malformed backup blob"),
            "{c}"
        );
    }
    assert_eq!(
        err(
            &mut v,
            Op::Restore {
                coll: Collection::Secrets,
                body: json!({})
            }
        )
        .status,
        400
    );
    // The untouched blob still restores.
    ok(&mut v, restore(Collection::Secrets, &blob));
}

#[test]
fn a_blob_only_restores_into_its_own_collection() {
    let mut v = vault();
    ok(
        &mut v,
        Op::CreateKey {
            name: "kk".into(),
            body: json!({"kty": "EC"}),
        },
    );
    set_secret(&mut v, "ss", "x");
    let key_blob = backup(&mut v, Collection::Keys, "kk");
    let secret_blob = backup(&mut v, Collection::Secrets, "ss");
    for (coll, blob) in [
        (Collection::Secrets, &key_blob),
        (Collection::Certificates, &key_blob),
        (Collection::Keys, &secret_blob),
    ] {
        let e = err(&mut v, restore(coll, blob));
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "Malformed backup blob"),
            "{coll:?}"
        );
    }
}

#[test]
fn restore_conflicts_with_live_deleted_and_just_purged_names() {
    let mut v = vault_with(|s| s.purge_lag_secs = 10);
    let originals = three_versions(&mut v);
    let blob = backup(&mut v, Collection::Secrets, "bk");
    let e = err(&mut v, restore(Collection::Secrets, &blob));
    assert_eq!((e.status, e.code.as_str()), (409, "Conflict"));
    let id = originals[2]["id"].as_str().unwrap_or_default();
    assert!(e
        .message
        .starts_with(&format!("There was a conflict restoring the secret '{id}'")));
    ok(
        &mut v,
        Op::Delete {
            coll: Collection::Secrets,
            name: "bk".into(),
        },
    );
    assert_eq!(err(&mut v, restore(Collection::Secrets, &blob)).status, 409);
    assert_eq!(
        v.apply(
            &Op::Purge {
                coll: Collection::Secrets,
                name: "bk".into()
            },
            &ctx()
        ),
        Ok(Reply::NoContent)
    );
    assert_eq!(
        err_at(&mut v, restore(Collection::Secrets, &blob), NOW + 9).status,
        409
    );
    ok_at(&mut v, restore(Collection::Secrets, &blob), NOW + 10);
}

#[test]
fn backup_of_missing_or_soft_deleted_object_is_404() {
    let mut v = vault();
    assert_eq!(
        err(
            &mut v,
            Op::Backup {
                coll: Collection::Secrets,
                name: "none".into()
            }
        )
        .status,
        404
    );
    set_secret(&mut v, "gone", "x");
    ok(
        &mut v,
        Op::Delete {
            coll: Collection::Secrets,
            name: "gone".into(),
        },
    );
    let e = err(
        &mut v,
        Op::Backup {
            coll: Collection::Secrets,
            name: "gone".into(),
        },
    );
    assert_eq!((e.status, e.code.as_str()), (404, "SecretNotFound"));
}

#[test]
fn key_backup_restores_the_same_material_and_versions() {
    let mut v = vault();
    let k1 = ok_at(
        &mut v,
        Op::CreateKey {
            name: "key".into(),
            body: json!({"kty": "EC", "crv": "P-384"}),
        },
        NOW - 3,
    );
    let k2 = ok(
        &mut v,
        Op::CreateKey {
            name: "key".into(),
            body: json!({"kty": "EC-HSM"}),
        },
    );
    let blob = backup(&mut v, Collection::Keys, "key");
    delete_and_purge(&mut v, Collection::Keys, "key");
    let r = ok(&mut v, restore(Collection::Keys, &blob));
    assert_eq!(r["key"], k2["key"]);
    let old = ok(
        &mut v,
        get(
            Collection::Keys,
            "key",
            Some(&version_of(&k1["key"]["kid"])),
        ),
    );
    assert_eq!(old["key"], k1["key"]);
    assert_eq!(old["attributes"]["created"], NOW - 3);
}

#[test]
fn certificate_backup_carries_managed_key_and_secret() {
    let mut v = vault();
    let body = json!({"policy": {"key_props": {"kty": "EC"}, "x509_props": {"subject": "CN=bk"}}});
    assert!(v
        .apply(
            &Op::CreateCertificate {
                name: "cert".into(),
                body
            },
            &ctx()
        )
        .is_ok());
    let cert = ok(&mut v, get(Collection::Certificates, "cert", None));
    let secret = ok(&mut v, get(Collection::Secrets, "cert", None));
    let blob = backup(&mut v, Collection::Certificates, "cert");
    let raw = URL_SAFE_NO_PAD.decode(&blob).unwrap_or_default();
    assert_eq!(&raw[1..39], b"AzureKeyVaultKeyBackupV1.microsoft.com");
    delete_and_purge(&mut v, Collection::Certificates, "cert");
    assert_eq!(v.counts(), crate::api::ObjectCounts::default());

    let mut other = vault_with(|s| s.name = "kv2".into());
    let r = ok(&mut other, restore(Collection::Certificates, &blob));
    assert_eq!(r["id"], cert["id"]);
    assert_eq!(r["cer"], cert["cer"]);
    let s = ok(&mut other, get(Collection::Secrets, "cert", None));
    assert_eq!(
        (s["value"].clone(), s["managed"].clone()),
        (secret["value"].clone(), json!(true))
    );
    assert_eq!(
        ok(&mut other, get(Collection::Keys, "cert", None))["managed"],
        true
    );
    assert_eq!(
        ok(
            &mut other,
            Op::GetCertificatePolicy {
                name: "cert".into()
            }
        )["x509_props"]["subject"],
        "CN=bk"
    );
    // A key or secret already holding the name blocks a certificate restore.
    let mut third = vault();
    set_secret(&mut third, "cert", "x");
    assert_eq!(
        err(&mut third, restore(Collection::Certificates, &blob)).status,
        409
    );
}
