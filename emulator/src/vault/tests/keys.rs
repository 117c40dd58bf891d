//! Keys: real key material, public-only JWKs, import, update, throttle weights.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::vault::jwk;

fn create(name: &str, body: Value) -> Op {
    Op::CreateKey {
        name: name.into(),
        body,
    }
}

fn b64len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or_default();
    assert!(
        !s.contains('=') && !s.contains('+') && !s.contains('/'),
        "base64url unpadded: {s}"
    );
    URL_SAFE_NO_PAD.decode(s).map(|b| b.len()).unwrap_or(0)
}

fn assert_public_only(key: &Value) {
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            key.get(private).is_none(),
            "{private} must never be returned"
        );
    }
}

#[test]
fn create_ec_keys_on_each_curve() {
    let mut v = vault();
    for (crv, len) in [("P-256", 32), ("P-384", 48), ("P-521", 66), ("P-256K", 32)] {
        let name = format!("ec-{}", crv.replace('-', ""));
        let b = ok(&mut v, create(&name, json!({"kty": "EC", "crv": crv})));
        let key = &b["key"];
        assert_id(&key["kid"], "keys", &name, true);
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], crv);
        assert_eq!(key["key_ops"], json!(["sign", "verify"]));
        assert_eq!((b64len(&key["x"]), b64len(&key["y"])), (len, len), "{crv}");
        assert_public_only(key);
        assert_eq!(b["attributes"]["created"], NOW);
    }
    // Default curve is P-256; HSM kty is recorded.
    let b = ok(&mut v, create("hsm", json!({"kty": "EC-HSM"})));
    assert_eq!(
        (b["key"]["kty"].as_str(), b["key"]["crv"].as_str()),
        (Some("EC-HSM"), Some("P-256"))
    );
}

#[test]
fn create_rsa_key_has_real_modulus() {
    let mut v = vault();
    let b = ok(
        &mut v,
        create(
            "rsa",
            json!({"kty": "RSA", "key_ops": ["sign", "verify"], "tags": {"t": "1"}}),
        ),
    );
    let key = &b["key"];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(b64len(&key["n"]), 256);
    assert_eq!(key["e"], "AQAB");
    assert_eq!(key["key_ops"], json!(["sign", "verify"]));
    assert_eq!(b["tags"], json!({"t": "1"}));
    assert_public_only(key);
    // The latest version's GET returns the same public key.
    let again = ok(&mut v, get(Collection::Keys, "RSA", None));
    assert_eq!(again["key"]["n"], key["n"]);
}

#[test]
fn bad_create_bodies_are_400() {
    let mut v = vault();
    for body in [
        json!({}),
        json!({"kty": "oct"}),
        json!({"kty": "RSA", "key_size": 1024}),
        json!({"kty": "RSA", "public_exponent": 3}),
        json!({"kty": "EC", "crv": "P-192"}),
        json!({"kty": "EC", "key_ops": ["fly"]}),
        json!({"kty": "EC", "attributes": {"nbf": 9, "exp": 1}}),
    ] {
        let e = err(&mut v, create("k", body.clone()));
        assert_eq!((e.status, e.code.as_str()), (400, "BadParameter"), "{body}");
    }
    assert_eq!(v.counts().keys, 0);
}

#[test]
fn import_jwk_returns_public_part_and_validates() {
    let mut v = vault();
    let m = jwk::generate_ec("P-256").unwrap_or_else(|e| panic!("{e}"));
    let enc = |n: &str| URL_SAFE_NO_PAD.encode(m.member(n).unwrap_or_default());
    let body = json!({"key": {"kty": "EC", "crv": "P-256", "x": enc("x"), "y": enc("y"), "d": enc("d"), "key_ops": ["sign"]}, "Hsm": true});
    let b = ok(
        &mut v,
        Op::ImportKey {
            name: "Imported".into(),
            body,
        },
    );
    assert_eq!(b["key"]["kty"], "EC-HSM");
    assert_eq!(b["key"]["x"], enc("x"));
    assert_eq!(b["key"]["key_ops"], json!(["sign"]));
    assert_public_only(&b["key"]);

    // Mismatched public point, missing private part, garbage base64.
    let other = jwk::generate_ec("P-256").unwrap_or_else(|e| panic!("{e}"));
    let bad_x = URL_SAFE_NO_PAD.encode(other.member("x").unwrap_or_default());
    for body in [
        json!({"key": {"kty": "EC", "crv": "P-256", "x": bad_x, "y": enc("y"), "d": enc("d")}}),
        json!({"key": {"kty": "EC", "crv": "P-256", "x": enc("x"), "y": enc("y")}}),
        json!({"key": {"kty": "RSA", "n": "!!!", "e": "AQAB", "d": "AQAB"}}),
        json!({"key": {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}}),
        json!({"notkey": 1}),
    ] {
        let e = err(
            &mut v,
            Op::ImportKey {
                name: "bad".into(),
                body: body.clone(),
            },
        );
        assert_eq!(e.status, 400, "{body}");
    }
}

#[test]
fn import_rsa_jwk_round_trips_the_modulus() {
    let mut v = vault();
    let m = jwk::generate_rsa(2048).unwrap_or_else(|e| panic!("{e}"));
    let enc = |n: &str| URL_SAFE_NO_PAD.encode(m.member(n).unwrap_or_default());
    let key: serde_json::Map<String, Value> = ["n", "e", "d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .map(|n| (n.to_string(), json!(enc(n))))
        .chain(std::iter::once(("kty".to_string(), json!("RSA"))))
        .collect();
    let b = ok(
        &mut v,
        Op::ImportKey {
            name: "r".into(),
            body: json!({"key": key}),
        },
    );
    assert_eq!(b["key"]["n"], enc("n"));
    assert_eq!(b["key"]["key_ops"].as_array().map(Vec::len), Some(6));
    let w = v.throttle_weight(&Op::ImportKey {
        name: "r".into(),
        body: json!({"key": key, "Hsm": true}),
    });
    assert_eq!(w, 2);
}

#[test]
fn update_key_ops_and_attributes_and_items_use_kid() {
    let mut v = vault();
    let b = ok(&mut v, create("upd", json!({"kty": "EC"})));
    let u = ok_at(
        &mut v,
        Op::Update {
            coll: Collection::Keys,
            name: "UPD".into(),
            version: None,
            body: json!({"key_ops": ["verify"], "attributes": {"enabled": false, "exp": NOW + 100}, "tags": {"a": "b"}}),
        },
        NOW + 3,
    );
    assert_eq!(u["key"]["key_ops"], json!(["verify"]));
    assert_eq!(u["attributes"]["enabled"], false);
    assert_eq!(u["attributes"]["exp"], NOW + 100);
    assert_eq!(u["attributes"]["updated"], NOW + 3);
    assert_eq!(u["key"]["kid"], b["key"]["kid"]);
    // Keys (unlike secrets) still answer GET when disabled.
    assert_eq!(
        ok(&mut v, get(Collection::Keys, "upd", None))["attributes"]["enabled"],
        false
    );
    let (items, _) = page(&mut v, list(Collection::Keys, None, 25));
    assert_id(&items[0]["kid"], "keys", "upd", false);
    assert!(items[0].get("key").is_none());
    let (versions, _) = page(
        &mut v,
        Op::ListVersions {
            coll: Collection::Keys,
            name: "upd".into(),
            after: None,
            limit: 25,
        },
    );
    assert_eq!(versions[0]["kid"], b["key"]["kid"]);
}

#[test]
fn throttle_weights_follow_key_type() {
    let mut v = vault();
    let w = |v: &Vault, body: Value| v.throttle_weight(&create("x", body));
    assert_eq!(w(&v, json!({"kty": "RSA"})), 1);
    assert_eq!(w(&v, json!({"kty": "RSA", "key_size": 3072})), 4);
    assert_eq!(w(&v, json!({"kty": "RSA", "key_size": 4096})), 8);
    assert_eq!(w(&v, json!({"kty": "RSA-HSM", "key_size": 4096})), 16);
    assert_eq!(w(&v, json!({"kty": "EC-HSM"})), 2);
    assert_eq!(w(&v, json!({"kty": "EC"})), 1);
    assert_eq!(
        v.throttle_weight(&Op::List {
            coll: Collection::Secrets,
            after: None,
            limit: 25
        }),
        1
    );
    ok(&mut v, create("hsm-ec", json!({"kty": "EC-HSM"})));
    assert_eq!(v.throttle_weight(&get(Collection::Keys, "HSM-EC", None)), 2);
    assert_eq!(
        v.throttle_weight(&get(Collection::Keys, "unknown", None)),
        1
    );
    assert_eq!(
        v.throttle_weight(&Op::Backup {
            coll: Collection::Keys,
            name: "hsm-ec".into()
        }),
        2
    );
}
