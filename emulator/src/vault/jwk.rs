//! Real key material as JSON Web Key members: generation (RSA via `rsa`, EC via the RustCrypto
//! curve crates), import from a JWK body or from PKCS#8/PKCS#1/SEC1 DER (certificate imports),
//! export to PKCS#8 (PFX and self-signed certificates) and the public-only JWK the service
//! returns. Binary members are stored as bytes and rendered base64url without padding.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::error::KvError;

/// The two key families the emulator holds (`oct` keys exist only in Managed HSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// RSA (`RSA`, `RSA-HSM`).
    Rsa,
    /// Elliptic curve (`EC`, `EC-HSM`).
    Ec,
}

/// Bytes that serialize as base64url without padding (the backup payload stays compact and
/// readable in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_b64url(&s)
            .map(B64)
            .ok_or_else(|| serde::de::Error::custom("invalid base64url"))
    }
}

/// Private key material: the family, the curve for EC keys and every binary JWK member
/// (`n e d p q dp dq qi` or `x y d`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    /// Key family.
    pub family: Family,
    /// `crv` for EC keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Binary members by JWK name.
    pub members: BTreeMap<String, B64>,
}

/// The curves Key Vault supports for EC keys.
pub const CURVES: [&str; 4] = ["P-256", "P-384", "P-521", "P-256K"];

impl KeyMaterial {
    /// The public JWK members (`n`,`e` or `crv`,`x`,`y`), base64url.
    pub fn public_members(&self) -> Map<String, Value> {
        let names: &[&str] = match self.family {
            Family::Rsa => &["n", "e"],
            Family::Ec => &["x", "y"],
        };
        let mut m = Map::new();
        if let Some(crv) = &self.crv {
            m.insert("crv".into(), json!(crv));
        }
        for n in names {
            if let Some(b) = self.members.get(*n) {
                m.insert((*n).into(), json!(URL_SAFE_NO_PAD.encode(&b.0)));
            }
        }
        m
    }

    /// Every member, private ones included (for the JWK of an exported key).
    pub fn member(&self, name: &str) -> Option<&[u8]> {
        self.members.get(name).map(|b| b.0.as_slice())
    }

    /// RSA modulus size in bits (0 for EC keys).
    pub fn rsa_bits(&self) -> usize {
        match self.family {
            Family::Rsa => self
                .member("n")
                .map_or(0, |n| BigUint::from_bytes_be(n).bits()),
            Family::Ec => 0,
        }
    }

    /// PKCS#8 DER of the private key (for PFX files and certificate signing).
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KvError> {
        let bad = |_| KvError::bad_parameter("The key material is not valid.");
        match self.family {
            Family::Rsa => Ok(self
                .rsa_private()?
                .to_pkcs8_der()
                .map_err(bad)?
                .as_bytes()
                .to_vec()),
            Family::Ec => {
                let d = self.member("d").ok_or_else(invalid_key)?;
                let der = match self.crv.as_deref() {
                    Some("P-256") => p256::SecretKey::from_slice(d)
                        .map_err(|_| invalid_key())?
                        .to_pkcs8_der(),
                    Some("P-384") => p384::SecretKey::from_slice(d)
                        .map_err(|_| invalid_key())?
                        .to_pkcs8_der(),
                    Some("P-521") => p521::SecretKey::from_slice(d)
                        .map_err(|_| invalid_key())?
                        .to_pkcs8_der(),
                    Some("P-256K") => k256::SecretKey::from_slice(d)
                        .map_err(|_| invalid_key())?
                        .to_pkcs8_der(),
                    _ => return Err(invalid_key()),
                };
                Ok(der.map_err(bad)?.as_bytes().to_vec())
            }
        }
    }

    fn rsa_private(&self) -> Result<RsaPrivateKey, KvError> {
        let big = |n: &str| self.member(n).map(BigUint::from_bytes_be);
        let (n, e, d) = match (big("n"), big("e"), big("d")) {
            (Some(n), Some(e), Some(d)) => (n, e, d),
            _ => return Err(invalid_key()),
        };
        let primes = match (big("p"), big("q")) {
            (Some(p), Some(q)) => vec![p, q],
            _ => Vec::new(),
        };
        RsaPrivateKey::from_components(n, e, d, primes).map_err(|_| invalid_key())
    }
}

fn invalid_key() -> KvError {
    KvError::bad_parameter(
        "The key is not valid: a private key with all required JWK members is expected.",
    )
}

/// Decodes base64url with or without padding (and tolerates the standard alphabet, which some
/// clients send for JWK members).
pub fn decode_b64url(s: &str) -> Option<Vec<u8>> {
    let normalized: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}

/// Decodes standard base64 (certificate import bodies), tolerating whitespace and url-safe text.
pub fn decode_b64_lenient(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .ok()
        .or_else(|| decode_b64url(&compact))
}

/// A fresh RSA key (`bits` 2048, 3072 or 4096, e = 65537).
pub fn generate_rsa(bits: usize) -> Result<KeyMaterial, KvError> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| {
        KvError::new(
            500,
            "InternalError",
            format!("RSA key generation failed: {e}"),
        )
    })?;
    Ok(from_rsa(&key))
}

fn from_rsa(key: &RsaPrivateKey) -> KeyMaterial {
    let mut members = BTreeMap::new();
    let mut put = |name: &str, v: &BigUint| {
        members.insert(name.to_string(), B64(v.to_bytes_be()));
    };
    put("n", key.n());
    put("e", key.e());
    put("d", key.d());
    let primes = key.primes();
    if let [p, q] = primes {
        let one = BigUint::from(1u8);
        put("p", p);
        put("q", q);
        put("dp", &(key.d() % (p - &one)));
        put("dq", &(key.d() % (q - &one)));
        if let Some(qi) = key.crt_coefficient() {
            put("qi", &qi);
        }
    }
    KeyMaterial {
        family: Family::Rsa,
        crv: None,
        members,
    }
}

/// Builds EC material from a secret key of one of the curve crates; a macro because the four
/// crates share method names but no trait bound small enough to write generically.
macro_rules! ec_material {
    ($sk:expr, $crv:expr) => {{
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let sk = $sk;
        let point = sk.public_key().to_encoded_point(false);
        let mut members = BTreeMap::new();
        if let (Some(x), Some(y)) = (point.x(), point.y()) {
            members.insert("x".to_string(), B64(x.to_vec()));
            members.insert("y".to_string(), B64(y.to_vec()));
        }
        members.insert("d".to_string(), B64(sk.to_bytes().to_vec()));
        KeyMaterial {
            family: Family::Ec,
            crv: Some($crv.to_string()),
            members,
        }
    }};
}

/// A fresh EC key on one of [`CURVES`].
pub fn generate_ec(crv: &str) -> Result<KeyMaterial, KvError> {
    let mut rng = rand::rngs::OsRng;
    Ok(match crv {
        "P-256" => ec_material!(p256::SecretKey::random(&mut rng), crv),
        "P-384" => ec_material!(p384::SecretKey::random(&mut rng), crv),
        "P-521" => ec_material!(p521::SecretKey::random(&mut rng), crv),
        "P-256K" => ec_material!(k256::SecretKey::random(&mut rng), crv),
        _ => return Err(bad_curve(crv)),
    })
}

fn bad_curve(crv: &str) -> KvError {
    KvError::bad_parameter(format!(
        "The curve '{crv}' is not supported; use one of P-256, P-384, P-521, P-256K."
    ))
}

/// Reads a private key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) DER.
pub fn from_private_der(der: &[u8]) -> Result<KeyMaterial, KvError> {
    if let Ok(k) = RsaPrivateKey::from_pkcs8_der(der) {
        return Ok(from_rsa(&k));
    }
    if let Ok(k) = RsaPrivateKey::from_pkcs1_der(der) {
        return Ok(from_rsa(&k));
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return Ok(ec_material!(k, "P-256"));
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return Ok(ec_material!(k, "P-384"));
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return Ok(ec_material!(k, "P-521"));
    }
    if let Ok(k) = k256::SecretKey::from_pkcs8_der(der) {
        return Ok(ec_material!(k, "P-256K"));
    }
    // SEC1 carries the curve as an optional parameter, so try each curve in turn.
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return Ok(ec_material!(k, "P-256"));
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return Ok(ec_material!(k, "P-384"));
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return Ok(ec_material!(k, "P-521"));
    }
    if let Ok(k) = k256::SecretKey::from_sec1_der(der) {
        return Ok(ec_material!(k, "P-256K"));
    }
    Err(KvError::bad_parameter(
        "The private key could not be read: expected an RSA or EC key in PKCS#8, PKCS#1 or SEC1 form.",
    ))
}

/// Reads the JWK of an import body (`kty` RSA/RSA-HSM/EC/EC-HSM with private members). The key
/// is checked for consistency (RSA components, EC point on the curve matching `d`).
pub fn from_jwk(jwk: &Map<String, Value>) -> Result<(KeyMaterial, bool), KvError> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| KvError::bad_parameter("The parameter 'key.kty' is required."))?;
    let (family, hsm) = parse_kty(kty)?;
    let member = |name: &str| -> Result<Option<Vec<u8>>, KvError> {
        match jwk.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => decode_b64url(s).map(Some).ok_or_else(|| {
                KvError::bad_parameter(format!("The JWK member '{name}' is not valid base64url."))
            }),
            Some(_) => Err(KvError::bad_parameter(format!(
                "The JWK member '{name}' must be a string."
            ))),
        }
    };
    match family {
        Family::Rsa => {
            let mut members = BTreeMap::new();
            for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
                if let Some(b) = member(name)? {
                    members.insert(name.to_string(), B64(b));
                }
            }
            let material = KeyMaterial {
                family,
                crv: None,
                members,
            };
            // Validates n/e/d (and p/q when present) and fills the CRT members consistently.
            let key = material.rsa_private()?;
            Ok((from_rsa(&key), hsm))
        }
        Family::Ec => {
            let crv = jwk.get("crv").and_then(Value::as_str).ok_or_else(|| {
                KvError::bad_parameter("The parameter 'key.crv' is required for EC keys.")
            })?;
            let d = member("d")?.ok_or_else(invalid_key)?;
            let material = match crv {
                "P-256" => ec_material!(
                    p256::SecretKey::from_slice(&d).map_err(|_| invalid_key())?,
                    crv
                ),
                "P-384" => ec_material!(
                    p384::SecretKey::from_slice(&d).map_err(|_| invalid_key())?,
                    crv
                ),
                "P-521" => ec_material!(
                    p521::SecretKey::from_slice(&d).map_err(|_| invalid_key())?,
                    crv
                ),
                "P-256K" => ec_material!(
                    k256::SecretKey::from_slice(&d).map_err(|_| invalid_key())?,
                    crv
                ),
                other => return Err(bad_curve(other)),
            };
            for name in ["x", "y"] {
                if let Some(given) = member(name)? {
                    if material.member(name) != Some(given.as_slice()) {
                        return Err(KvError::bad_parameter(
                            "The EC public point does not match the private key.",
                        ));
                    }
                }
            }
            Ok((material, hsm))
        }
    }
}

/// `RSA`/`RSA-HSM`/`EC`/`EC-HSM` → family and HSM flag; anything else is a 400.
pub fn parse_kty(kty: &str) -> Result<(Family, bool), KvError> {
    match kty {
        "RSA" => Ok((Family::Rsa, false)),
        "RSA-HSM" => Ok((Family::Rsa, true)),
        "EC" => Ok((Family::Ec, false)),
        "EC-HSM" => Ok((Family::Ec, true)),
        other => Err(KvError::bad_parameter(format!(
            "The key type '{other}' is not supported by this vault; use RSA, RSA-HSM, EC or EC-HSM."
        ))),
    }
}

/// The `kty` label of a family.
pub fn kty_label(family: Family, hsm: bool) -> &'static str {
    match (family, hsm) {
        (Family::Rsa, false) => "RSA",
        (Family::Rsa, true) => "RSA-HSM",
        (Family::Ec, false) => "EC",
        (Family::Ec, true) => "EC-HSM",
    }
}

/// The public key of the material as (RSA modulus) or (EC uncompressed point), to compare with
/// a certificate's subject public key.
pub fn public_fingerprint(m: &KeyMaterial) -> Vec<u8> {
    match m.family {
        Family::Rsa => m.member("n").map(<[u8]>::to_vec).unwrap_or_default(),
        Family::Ec => {
            let mut point = vec![0x04];
            point.extend_from_slice(m.member("x").unwrap_or_default());
            point.extend_from_slice(m.member("y").unwrap_or_default());
            point
        }
    }
}
