//! Certificates: PEM and PFX import, managed key and secret, self-signed create, policy,
//! delete/recover/purge carrying the managed objects.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use super::*;
use crate::vault::{jwk, x509};

/// A self-signed certificate and its PKCS#8 key, made with rcgen: (cert DER, key DER, PEM text).
fn make_cert(rsa: bool) -> (Vec<u8>, Vec<u8>, String) {
    let kp = if rsa {
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
    } else {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let mut params = rcgen::CertificateParams::new(vec!["app.example.test".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "app.example.test");
    let cert = params.self_signed(&kp).unwrap_or_else(|e| panic!("{e}"));
    let pem = format!("{}{}", kp.serialize_pem(), cert.pem());
    (cert.der().to_vec(), kp.serialize_der(), pem)
}

fn pfx(cert_der: &[u8], key_der: &[u8], pwd: &str, legacy: bool) -> String {
    let mut store = p12_keystore::KeyStore::new();
    let cert = p12_keystore::Certificate::from_der(cert_der).unwrap_or_else(|e| panic!("{e}"));
    store.add_entry(
        "alias",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key_der,
            [1u8; 20],
            [cert],
        )),
    );
    let mut w = store
        .writer(pwd)
        .encryption_iterations(1000)
        .mac_iterations(1000);
    if legacy {
        w = w
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1);
    }
    STANDARD.encode(w.write().unwrap_or_else(|e| panic!("{e}")))
}

fn import(name: &str, body: Value) -> Op {
    Op::ImportCertificate {
        name: name.into(),
        body,
    }
}

#[test]
fn pem_import_creates_certificate_with_managed_key_and_secret() {
    let mut v = vault();
    let (der, _, pem) = make_cert(false);
    let b = ok(
        &mut v,
        import(
            "Web-Cert",
            json!({"value": pem, "tags": {"env": "test"}, "attributes": {"enabled": true}}),
        ),
    );
    assert_id(&b["id"], "certificates", "Web-Cert", true);
    let ver = version_of(&b["id"]);
    assert_eq!(b["kid"], format!("https://{AUTH}/keys/Web-Cert/{ver}"));
    assert_eq!(b["sid"], format!("https://{AUTH}/secrets/Web-Cert/{ver}"));
    assert_eq!(b["cer"], STANDARD.encode(&der));
    assert_eq!(b["x5t"], URL_SAFE_NO_PAD.encode(Sha1::digest(&der)));
    assert_eq!(b["contentType"], x509::PEM);
    assert_eq!(b["tags"], json!({"env": "test"}));
    assert!(b["attributes"]["nbf"].is_i64() && b["attributes"]["exp"].is_i64());
    assert_eq!(
        b["policy"]["id"],
        format!("https://{AUTH}/certificates/Web-Cert/policy")
    );
    assert_eq!(b["policy"]["secret_props"]["contentType"], x509::PEM);
    assert_eq!(b["policy"]["key_props"]["kty"], "EC");
    assert_eq!(b["policy"]["issuer"]["name"], "Unknown");

    let secret = ok(&mut v, get(Collection::Secrets, "web-cert", None));
    assert_eq!(secret["managed"], true);
    assert_eq!(secret["kid"], b["kid"]);
    assert_eq!(secret["id"], b["sid"]);
    assert_eq!(secret["contentType"], x509::PEM);
    let value = secret["value"].as_str().unwrap_or_default();
    assert!(
        value.starts_with("-----BEGIN PRIVATE KEY-----")
            && value.contains("-----BEGIN CERTIFICATE-----")
    );
    let key = ok(&mut v, get(Collection::Keys, "web-cert", None));
    assert_eq!(key["managed"], true);
    assert_eq!(key["key"]["kid"], b["kid"]);
    assert!(key["key"].get("d").is_none());

    // Managed objects appear in lists with managed: true.
    let (secrets, _) = page(&mut v, list(Collection::Secrets, None, 25));
    assert_eq!(secrets[0]["managed"], true);
    let (keys, _) = page(&mut v, list(Collection::Keys, None, 25));
    assert_eq!(keys[0]["managed"], true);
    let (certs, _) = page(&mut v, list(Collection::Certificates, None, 25));
    assert_id(&certs[0]["id"], "certificates", "Web-Cert", false);
    assert_eq!(certs[0]["x5t"], b["x5t"]);
    assert_eq!(v.counts().certificates, 1);
    assert_eq!((v.counts().keys, v.counts().secrets), (1, 1));

    // The policy endpoint answers the stored policy.
    let p = ok(
        &mut v,
        Op::GetCertificatePolicy {
            name: "WEB-CERT".into(),
        },
    );
    assert_eq!(p["x509_props"]["subject"], "CN=app.example.test");
    // Writing the managed secret directly is refused, and backing it up too.
    assert_eq!(
        err(
            &mut v,
            Op::SetSecret {
                name: "web-cert".into(),
                body: json!({"value": "x"})
            }
        )
        .status,
        403
    );
    let e = err(
        &mut v,
        Op::Backup {
            coll: Collection::Keys,
            name: "web-cert".into(),
        },
    );
    assert_eq!((e.status, e.code.as_str()), (403, "Forbidden"));
    assert!(e
        .message
        .starts_with("Operation \"backup\" is not allowed on this Key"));
    assert_eq!(
        err(
            &mut v,
            Op::Backup {
                coll: Collection::Secrets,
                name: "web-cert".into()
            }
        )
        .status,
        403
    );
    // Imported certificates have no pending operation.
    assert_eq!(
        err(
            &mut v,
            Op::GetCertificateOperation {
                name: "web-cert".into()
            }
        )
        .status,
        404
    );
}

#[test]
fn pfx_import_with_password_modern_and_legacy_encryption() {
    let mut v = vault();
    let (der, key, _) = make_cert(true);
    for (name, legacy) in [("modern", false), ("legacy", true)] {
        let value = pfx(&der, &key, "s3cret", legacy);
        let b = ok(
            &mut v,
            import(
                name,
                json!({"value": value, "pwd": "s3cret", "policy": {"secret_props": {"contentType": "application/x-pkcs12"}}}),
            ),
        );
        assert_eq!(b["cer"], STANDARD.encode(&der), "{name}");
        assert_eq!(b["policy"]["key_props"]["kty"], "RSA");
        assert_eq!(b["policy"]["key_props"]["key_size"], 2048);
        // The managed secret is a password-less PFX holding the same certificate.
        let secret = ok(&mut v, get(Collection::Secrets, name, None));
        assert_eq!(secret["contentType"], x509::PKCS12);
        let raw = STANDARD
            .decode(secret["value"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let ks = p12_keystore::KeyStore::from_pkcs12(&raw, "").unwrap_or_else(|e| panic!("{e}"));
        let (_, chain) = ks
            .private_key_chain()
            .unwrap_or_else(|| panic!("no key in managed PFX"));
        assert_eq!(chain.chain()[0].as_der(), der.as_slice());
        let k = ok(&mut v, get(Collection::Keys, name, None));
        assert_eq!(k["key"]["kty"], "RSA");
    }
    let value = pfx(&der, &key, "s3cret", false);
    let e = err(
        &mut v,
        import("wrong", json!({"value": value, "pwd": "nope"})),
    );
    assert_eq!(e.status, 400);
    let e = err(&mut v, import("junk", json!({"value": "bm90IGEgcGZ4"})));
    assert_eq!(e.status, 400);
    // PFX content converted to PEM when the policy asks for PEM.
    let b = ok(
        &mut v,
        import(
            "aspem",
            json!({"value": value, "pwd": "s3cret", "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
        ),
    );
    assert_eq!(b["contentType"], x509::PEM);
    let s = ok(&mut v, get(Collection::Secrets, "aspem", None));
    assert!(s["value"]
        .as_str()
        .unwrap_or_default()
        .contains("BEGIN PRIVATE KEY"));
}

#[test]
fn base64_wrapped_pem_is_read_as_pem() {
    // The Python SDK base64-encodes every import value, PEM included.
    let mut v = vault();
    let (der, _, pem) = make_cert(false);
    let body = json!({"value": STANDARD.encode(pem), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}});
    let b = ok(&mut v, import("wrapped", body));
    assert_eq!(b["cer"], STANDARD.encode(&der));
    assert_eq!(b["contentType"], x509::PEM);
}

#[test]
fn pem_with_mismatched_key_or_without_key_is_400() {
    let mut v = vault();
    let (_, _, pem_a) = make_cert(false);
    let (_, _, pem_b) = make_cert(false);
    let key_a = &pem_a[..pem_a.find("-----BEGIN CERTIFICATE").unwrap_or(0)];
    let cert_b = &pem_b[pem_b.find("-----BEGIN CERTIFICATE").unwrap_or(0)..];
    assert_eq!(
        err(
            &mut v,
            import("mix", json!({"value": format!("{key_a}{cert_b}")}))
        )
        .status,
        400
    );
    assert_eq!(
        err(&mut v, import("nokey", json!({"value": cert_b}))).status,
        400
    );
    assert_eq!(err(&mut v, import("nothing", json!({}))).status, 400);
    assert_eq!(v.counts(), crate::api::ObjectCounts::default());
}

#[test]
fn create_self_signed_answers_202_and_pending_reports_completion() {
    let mut v = vault();
    let body = json!({"policy": {
        "key_props": {"kty": "EC", "crv": "P-384"},
        "x509_props": {"subject": "CN=made.here, O=Kvkeep", "sans": {"dns_names": ["made.here"]}, "validity_months": 6},
        "issuer": {"name": "Self"},
        "secret_props": {"contentType": "application/x-pem-file"}
    }});
    let reply = v.apply(
        &Op::CreateCertificate {
            name: "Made".into(),
            body,
        },
        &ctx(),
    );
    let Ok(Reply::Json {
        status: 202,
        body: op,
    }) = reply
    else {
        panic!("expected 202, got {reply:?}");
    };
    assert_eq!(
        op["id"],
        format!("https://{AUTH}/certificates/Made/pending")
    );
    assert_eq!(op["status"], "inProgress");
    assert_eq!(op["issuer"]["name"], "Self");
    assert!(!op["csr"].as_str().unwrap_or_default().is_empty());
    let done = ok(
        &mut v,
        Op::GetCertificateOperation {
            name: "made".into(),
        },
    );
    assert_eq!(done["status"], "completed");
    assert_eq!(done["target"], format!("https://{AUTH}/certificates/Made"));
    assert_eq!((&done["csr"], &done["id"]), (&op["csr"], &op["id"]));

    let cert = ok(&mut v, get(Collection::Certificates, "made", None));
    let der = STANDARD
        .decode(cert["cer"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let info = x509::info(&der).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.subject, "CN=made.here, O=Kvkeep");
    assert_eq!(info.dns_names, vec!["made.here".to_string()]);
    assert_eq!(info.not_before, NOW);
    assert_eq!(cert["attributes"]["exp"], info.not_after);
    assert_eq!(cert["policy"]["key_props"]["crv"], "P-384");
    assert_eq!(cert["policy"]["issuer"]["name"], "Self");
    let key = ok(&mut v, get(Collection::Keys, "made", None));
    assert_eq!(key["key"]["crv"], "P-384");

    let e = err(
        &mut v,
        Op::CreateCertificate {
            name: "ca".into(),
            body: json!({"policy": {"issuer": {"name": "DigiCert"}}}),
        },
    );
    assert_eq!(e.status, 400);
    let e = err(
        &mut v,
        Op::CreateCertificate {
            name: "k1".into(),
            body: json!({"policy": {"key_props": {"kty": "EC", "crv": "P-256K"}}}),
        },
    );
    assert_eq!(e.status, 400);
}

#[test]
fn certificate_versions_share_ids_with_managed_objects_and_update_propagates_enabled() {
    let mut v = vault();
    let (_, _, pem1) = make_cert(false);
    let (_, _, pem2) = make_cert(false);
    let b1 = ok(&mut v, import("rot", json!({"value": pem1})));
    let b2 = ok_at(&mut v, import("rot", json!({"value": pem2})), NOW + 1);
    let (versions, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Certificates,
            name: "rot".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["id"], b1["id"]);
    let (kv, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Keys,
            name: "rot".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(version_of(&kv[1]["kid"]), version_of(&b2["id"]));

    let u = ok(
        &mut v,
        Op::Update {
            coll: Collection::Certificates,
            name: "rot".into(),
            version: None,
            body: json!({"attributes": {"enabled": false}, "tags": {"x": "y"}}),
        },
    );
    assert_eq!(u["attributes"]["enabled"], false);
    assert_eq!(u["tags"], json!({"x": "y"}));
    assert_eq!(
        err(&mut v, get(Collection::Secrets, "rot", None))
            .inner
            .as_deref(),
        Some("SecretDisabled")
    );
}

#[test]
fn a_foreign_secret_name_blocks_certificate_import() {
    let mut v = vault();
    set_secret(&mut v, "taken", "x");
    let (_, _, pem) = make_cert(false);
    assert_eq!(
        err(&mut v, import("taken", json!({"value": pem}))).status,
        409
    );
}

#[test]
fn delete_recover_purge_carry_managed_key_and_secret() {
    let mut v = vault();
    let (_, _, pem) = make_cert(false);
    ok(&mut v, import("cascade", json!({"value": pem})));
    let d = ok(
        &mut v,
        Op::Delete {
            coll: Collection::Certificates,
            name: "cascade".into(),
        },
    );
    assert_eq!(
        d["recoveryId"],
        format!("https://{AUTH}/deletedcertificates/cascade")
    );
    assert!(d.get("x5t").is_some());
    assert_eq!(
        err(&mut v, get(Collection::Keys, "cascade", None)).status,
        404
    );
    assert_eq!(
        err(&mut v, get(Collection::Secrets, "cascade", None)).status,
        404
    );
    // Not listed among deleted keys/secrets, but reachable by name.
    for coll in [Collection::Keys, Collection::Secrets] {
        let (items, _) = page(
            &mut v,
            Op::ListDeleted {
                coll,
                after: None,
                limit: 25,
            },
        );
        assert!(items.is_empty(), "{coll:?}");
        let gd = ok(
            &mut v,
            Op::GetDeleted {
                coll,
                name: "cascade".into(),
            },
        );
        assert_eq!(gd["managed"], true);
    }
    let (items, _) = page(
        &mut v,
        Op::ListDeleted {
            coll: Collection::Certificates,
            after: None,
            limit: 25,
        },
    );
    assert_eq!(items.len(), 1);
    assert_eq!(v.counts().deleted, 3);

    ok(
        &mut v,
        Op::Recover {
            coll: Collection::Certificates,
            name: "cascade".into(),
        },
    );
    assert_eq!(
        ok(&mut v, get(Collection::Keys, "cascade", None))["managed"],
        true
    );
    assert_eq!(
        ok(&mut v, get(Collection::Secrets, "cascade", None))["managed"],
        true
    );

    ok(
        &mut v,
        Op::Delete {
            coll: Collection::Certificates,
            name: "cascade".into(),
        },
    );
    assert_eq!(
        v.apply(
            &Op::Purge {
                coll: Collection::Certificates,
                name: "cascade".into()
            },
            &ctx()
        ),
        Ok(Reply::NoContent)
    );
    assert_eq!(v.counts(), crate::api::ObjectCounts::default());
    ok(
        &mut v,
        import("cascade", json!({"value": make_cert(false).2})),
    );
}

/// PFX files written by Python's `cryptography` (no encryption, PBES2/AES-256, PBES1 3DES) and
/// by `openssl pkcs12 -export -legacy` (RC2-40 certificates), kept as fixtures so the formats
/// real clients send keep importing.
#[test]
fn pfx_fixtures_from_python_and_openssl_import() {
    let fixture = |text: &str| text.trim().to_string();
    let cert = STANDARD
        .decode(fixture(include_str!("fixtures/cert.der.b64")))
        .unwrap_or_default();
    let rc2_cert = STANDARD
        .decode(fixture(include_str!("fixtures/rc2_cert.der.b64")))
        .unwrap_or_default();
    let cases = [
        ("plain", include_str!("fixtures/plain.pfx.b64"), None, &cert),
        (
            "aes",
            include_str!("fixtures/aes.pfx.b64"),
            Some("fixture-pw"),
            &cert,
        ),
        (
            "des3",
            include_str!("fixtures/legacy3des.pfx.b64"),
            Some("fixture-pw"),
            &cert,
        ),
        (
            "rc2",
            include_str!("fixtures/legacy_rc2.pfx.b64"),
            Some("fixture-pw"),
            &rc2_cert,
        ),
    ];
    let mut v = vault();
    for (name, value, pwd, der) in cases {
        let mut body = json!({"value": fixture(value)});
        if let Some(p) = pwd {
            body["pwd"] = json!(p);
        }
        let b = ok(&mut v, import(name, body));
        assert_eq!(b["cer"], STANDARD.encode(der), "{name}");
        assert_eq!(b["contentType"], x509::PKCS12, "{name}");
        let key = ok(&mut v, get(Collection::Keys, name, None));
        assert_eq!(
            (key["key"]["kty"].as_str(), key["key"]["crv"].as_str()),
            (Some("EC"), Some("P-256")),
            "{name}"
        );
    }
    // A password-protected file without its password is refused.
    let e = err(
        &mut v,
        import(
            "nopw",
            json!({"value": fixture(include_str!("fixtures/aes.pfx.b64"))}),
        ),
    );
    assert_eq!(e.status, 400);
}

fn get_as(name: &str, version: Option<&str>, out: &str) -> Op {
    Op::Get {
        coll: Collection::Secrets,
        name: name.into(),
        version: version.map(str::to_string),
        out_content_type: Some(out.into()),
    }
}

/// The PEM blocks of a text as (label, DER), in order.
fn pem_labels_and_der(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, b64)) = current.take() {
                out.push((label, STANDARD.decode(b64).unwrap_or_default()));
            }
        } else if let Some((_, b64)) = current.as_mut() {
            b64.push_str(line);
        }
    }
    out
}

#[test]
fn out_content_type_converts_managed_secrets_between_pfx_and_pem() {
    let mut v = vault();
    let (der, key, pem) = make_cert(true);
    let pfx_value = pfx(&der, &key, "s3cret", false);
    let b = ok(
        &mut v,
        import("from-pfx", json!({"value": pfx_value, "pwd": "s3cret"})),
    );
    let ver = version_of(&b["id"]);

    // PKCS#12 → PEM: private key then the certificate, contentType follows; by version too, and
    // the media type is matched case-insensitively.
    for (version, out) in [
        (None, "application/x-pem-file"),
        (Some(ver.as_str()), "Application/X-PEM-File"),
    ] {
        let s = ok(&mut v, get_as("from-pfx", version, out));
        assert_eq!(s["contentType"], x509::PEM, "{out}");
        assert_eq!(s["id"], b["sid"]);
        assert_eq!(s["managed"], true);
        let blocks = pem_labels_and_der(s["value"].as_str().unwrap_or_default());
        let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["PRIVATE KEY", "CERTIFICATE"]);
        assert_eq!(blocks[1].1, der);
        let key = jwk::from_private_der(&blocks[0].1).unwrap_or_else(|e| panic!("{e:?}"));
        let info = x509::info(&der).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(jwk::public_fingerprint(&key), info.public);
    }
    // Asking for the stored format answers the stored value unchanged.
    let stored = ok(&mut v, get(Collection::Secrets, "from-pfx", None));
    let same = ok(&mut v, get_as("from-pfx", None, x509::PKCS12));
    assert_eq!(same, stored);

    // PEM → PKCS#12: a password-less PFX with the same certificate.
    ok(
        &mut v,
        import(
            "from-pem",
            json!({"value": pem, "policy": {"secret_props": {"contentType": x509::PEM}}}),
        ),
    );
    let s = ok(&mut v, get_as("from-pem", None, x509::PKCS12));
    assert_eq!(s["contentType"], x509::PKCS12);
    let raw = STANDARD
        .decode(s["value"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let ks = p12_keystore::KeyStore::from_pkcs12(&raw, "").unwrap_or_else(|e| panic!("{e}"));
    let (_, chain) = ks
        .private_key_chain()
        .unwrap_or_else(|| panic!("no key in the converted PFX"));
    assert_eq!(chain.chain()[0].as_der(), der.as_slice());
    // The stored secret is not changed by a converting read.
    let stored = ok(&mut v, get(Collection::Secrets, "from-pem", None));
    assert_eq!(stored["contentType"], x509::PEM);
}

#[test]
fn out_content_type_is_ignored_for_plain_secrets_and_unsupported_values_are_400() {
    let mut v = vault();
    let plain = set_secret(&mut v, "plain", "not a certificate");
    let s = ok(&mut v, get_as("plain", None, x509::PEM));
    assert_eq!(s, plain);
    let (der, key, _) = make_cert(false);
    ok(
        &mut v,
        import("cert", json!({"value": pfx(&der, &key, "", false)})),
    );
    for bad in ["text/plain", "", "application/x-pem-file;charset=utf-8"] {
        for name in ["cert", "plain", "missing"] {
            let e = err(&mut v, get_as(name, None, bad));
            assert_eq!((e.status, e.code.as_str()), (400, "BadParameter"), "{bad}");
            assert!(e.message.contains("outContentType"), "{}", e.message);
        }
    }
    // A known value on an unknown name is still a 404.
    assert_eq!(err(&mut v, get_as("missing", None, x509::PEM)).status, 404);
}
