//! Certificate material: reading an import (`value` as base64 PFX or PEM text), the facts the
//! vault reports from a certificate (validity, subject, SANs, thumbprint), writing the managed
//! secret's value back out as a password-less PFX or as PEM, and making self-signed
//! certificates (with their CSR) for `POST /certificates/{name}/create`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha1::{Digest, Sha1};
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::error::KvError;

use super::jwk::{self, Family, KeyMaterial};

/// CMS `id-data`: the content type of an unencrypted PKCS#12 safe.
const ID_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");

/// `contentType` of a PFX secret.
pub const PKCS12: &str = "application/x-pkcs12";
/// `contentType` of a PEM secret.
pub const PEM: &str = "application/x-pem-file";

/// A certificate chain (leaf first) with the leaf's private key.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Private key of the leaf.
    pub key: KeyMaterial,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// What the vault reports about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Subject in `CN=..., O=...` form.
    pub subject: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// RSA modulus (no leading zero) or EC uncompressed point.
    pub public: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> KvError {
    KvError::bad_parameter(msg)
}

/// Reads the facts of a DER certificate.
pub fn info(der: &[u8]) -> Result<CertInfo, KvError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| bad("The certificate could not be parsed."))?;
    let public = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let m = rsa.modulus;
            let start = m.iter().position(|b| *b != 0).unwrap_or(m.len());
            m[start..].to_vec()
        }
        Ok(PublicKey::EC(point)) => point.data().to_vec(),
        _ => return Err(bad("Only RSA and EC certificates are supported.")),
    };
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                dns_names.push(d.to_string());
            }
        }
    }
    Ok(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        dns_names,
        public,
    })
}

/// `x5t`: base64url (unpadded) SHA-1 of the DER.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha1::digest(der))
}

/// Reads an import `value`: PEM text (plain or base64-encoded), otherwise base64 PFX opened
/// with `pwd` (empty when absent). Returns the bundle and the detected content type.
pub fn read_import(value: &str, pwd: Option<&str>) -> Result<(Bundle, &'static str), KvError> {
    if value.contains("-----BEGIN") {
        return Ok((read_pem(value)?, PEM));
    }
    let der = jwk::decode_b64_lenient(value).ok_or_else(|| {
        bad("The certificate value is neither PEM text nor base64-encoded PKCS#12.")
    })?;
    // The Python SDK base64-encodes every import value, PEM text included.
    if der.windows(11).any(|w| w == b"-----BEGIN ") {
        let text =
            String::from_utf8(der).map_err(|_| bad("The PEM content is not valid UTF-8."))?;
        return Ok((read_pem(&text)?, PEM));
    }
    Ok((read_pfx(&der, pwd.unwrap_or(""))?, PKCS12))
}

fn read_pfx(der: &[u8], pwd: &str) -> Result<Bundle, KvError> {
    let store = p12_keystore::KeyStore::from_pkcs12(der, pwd).map_err(|e| {
        bad(format!(
            "The PKCS#12 content could not be read (wrong password or unsupported format): {e}"
        ))
    })?;
    let Some((_, chain)) = store.private_key_chain() else {
        // p12-keystore only reads shrouded key bags; files written without encryption keep the
        // key in a plain key bag, read here (the MAC, if any, was verified above).
        return read_plain_pfx(der);
    };
    let key = jwk::from_private_der(chain.key())?;
    let chain: Vec<Vec<u8>> = chain.chain().iter().map(|c| c.as_der().to_vec()).collect();
    check_pair(&key, &chain)?;
    Ok(Bundle { key, chain })
}

/// Reads the unencrypted safes of a PFX: plain key bags and certificate bags. The certificate
/// matching the key becomes the leaf.
fn read_plain_pfx(der_bytes: &[u8]) -> Result<Bundle, KvError> {
    use der::asn1::{Any, OctetString};
    use der::{Decode, Encode};
    let no_key = || bad("The PKCS#12 content holds no private key with its certificate.");
    let corrupt = |_| bad("The PKCS#12 content could not be read.");
    let pfx = pkcs12::pfx::Pfx::from_der(der_bytes).map_err(corrupt)?;
    let octets = |content: &Any| -> Result<Vec<u8>, KvError> {
        let der = content.to_der().map_err(corrupt)?;
        Ok(OctetString::from_der(&der).map_err(corrupt)?.into_bytes())
    };
    let safes: Vec<cms::content_info::ContentInfo> =
        Vec::from_der(&octets(&pfx.auth_safe.content)?).map_err(corrupt)?;
    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    for safe in safes.iter().filter(|s| s.content_type == ID_DATA) {
        let bags: pkcs12::safe_bag::SafeContents =
            Vec::from_der(&octets(&safe.content)?).map_err(corrupt)?;
        for bag in bags {
            // `bag_value` is the whole `[0] EXPLICIT` element; its content is the bag itself.
            let inner = Any::from_der(&bag.bag_value).map_err(corrupt)?;
            if bag.bag_id == pkcs12::PKCS_12_KEY_BAG_OID {
                keys.push(inner.value().to_vec());
            } else if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
                let cert = pkcs12::cert_type::CertBag::from_der(inner.value()).map_err(corrupt)?;
                certs.push(cert.cert_value.as_bytes().to_vec());
            }
        }
    }
    let key = jwk::from_private_der(keys.first().ok_or_else(no_key)?)?;
    let fingerprint = jwk::public_fingerprint(&key);
    let leaf = certs
        .iter()
        .position(|c| info(c).is_ok_and(|i| i.public == fingerprint))
        .ok_or_else(no_key)?;
    let leaf_der = certs.remove(leaf);
    certs.insert(0, leaf_der);
    Ok(Bundle { key, chain: certs })
}

fn read_pem(text: &str) -> Result<Bundle, KvError> {
    let mut chain = Vec::new();
    let mut key = None;
    for (label, der) in pem_blocks(text)? {
        match label.as_str() {
            "CERTIFICATE" => chain.push(der),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                key = Some(jwk::from_private_der(&der)?)
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(bad("Encrypted PEM private keys are not supported."))
            }
            _ => {}
        }
    }
    let key = key.ok_or_else(|| bad("The PEM content holds no private key."))?;
    check_pair(&key, &chain)?;
    Ok(Bundle { key, chain })
}

/// The leaf must exist and carry the private key's public half.
fn check_pair(key: &KeyMaterial, chain: &[Vec<u8>]) -> Result<(), KvError> {
    let leaf = chain
        .first()
        .ok_or_else(|| bad("The content holds no certificate."))?;
    if info(leaf)?.public != jwk::public_fingerprint(key) {
        return Err(bad("The private key does not match the certificate."));
    }
    Ok(())
}

/// Splits PEM text into (label, DER) blocks.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, b64)) = current.take() {
                let der = STANDARD
                    .decode(b64)
                    .map_err(|_| bad(format!("The PEM block '{label}' is not valid base64.")))?;
                out.push((label, der));
            }
        } else if let Some((_, b64)) = current.as_mut() {
            b64.push_str(line);
        }
    }
    Ok(out)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The managed secret's value: base64 of a password-less PFX, or PEM (key first, then the
/// chain, as the service writes it).
pub fn secret_value(bundle: &Bundle, content_type: &str) -> Result<String, KvError> {
    let key_der = bundle.key.to_pkcs8_der()?;
    if content_type == PEM {
        let mut s = pem_block("PRIVATE KEY", &key_der);
        for c in &bundle.chain {
            s.push_str(&pem_block("CERTIFICATE", c));
        }
        return Ok(s);
    }
    let certs = bundle
        .chain
        .iter()
        .map(|c| p12_keystore::Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("The certificate could not be re-encoded: {e}")))?;
    let mut store = p12_keystore::KeyStore::new();
    let local_id: [u8; 20] =
        Sha1::digest(bundle.chain.first().map(Vec::as_slice).unwrap_or_default()).into();
    store.add_entry(
        "1",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key_der, local_id, certs,
        )),
    );
    // OpenSSL's default iteration count keeps the debug-build cost of PBKDF2 low.
    let pfx = store
        .writer("")
        .encryption_iterations(2048)
        .mac_iterations(2048)
        .write()
        .map_err(|e| {
            KvError::new(
                500,
                "InternalError",
                format!("PKCS#12 encoding failed: {e}"),
            )
        })?;
    Ok(STANDARD.encode(pfx))
}

/// A managed secret's value in the `wanted` format ([`PEM`] or [`PKCS12`]), for `outContentType`
/// (§4.1 S3). The stored format is read from the value itself (PEM text or base64 of a
/// password-less PFX), not from its `contentType`, so a value already in the wanted format is
/// returned byte for byte rather than re-encoded.
pub fn convert_secret_value(value: &str, wanted: &str) -> Result<String, KvError> {
    // The value was written by the vault, so an unreadable one is the vault's fault, not the
    // client's: 500 rather than the 400 an import would answer.
    let (bundle, stored) = read_import(value, None).map_err(|e| {
        KvError::new(
            500,
            "InternalError",
            format!(
                "The certificate content of the secret could not be read: {}",
                e.message
            ),
        )
    })?;
    if stored == wanted {
        return Ok(value.to_string());
    }
    secret_value(&bundle, wanted)
}

/// What a self-signed certificate is made from (read from the policy's `x509_props`).
#[derive(Debug, Clone, Default)]
pub struct SelfSignedSpec {
    /// `subject`, e.g. `CN=example.com, O=Contoso`.
    pub subject: String,
    /// `sans.dns_names`.
    pub dns_names: Vec<String>,
    /// `sans.emails`.
    pub emails: Vec<String>,
    /// `validity_months`.
    pub validity_months: u32,
    /// `ekus` (dotted OIDs).
    pub ekus: Vec<String>,
    /// `key_usage` names.
    pub key_usage: Vec<String>,
}

/// Makes a self-signed certificate and the matching CSR for `key`; returns (cert DER, CSR DER).
pub fn self_signed(
    spec: &SelfSignedSpec,
    key: &KeyMaterial,
    now: i64,
) -> Result<(Vec<u8>, Vec<u8>), KvError> {
    let internal = |e: rcgen::Error| {
        KvError::new(
            500,
            "InternalError",
            format!("certificate creation failed: {e}"),
        )
    };
    let alg =
        match (key.family, key.crv.as_deref()) {
            (Family::Rsa, _) => &rcgen::PKCS_RSA_SHA256,
            (Family::Ec, Some("P-256")) => &rcgen::PKCS_ECDSA_P256_SHA256,
            (Family::Ec, Some("P-384")) => &rcgen::PKCS_ECDSA_P384_SHA384,
            (Family::Ec, Some("P-521")) => &rcgen::PKCS_ECDSA_P521_SHA512,
            _ => return Err(bad(
                "Self-signed certificates support RSA keys and the curves P-256, P-384 and P-521.",
            )),
        };
    let der = key.to_pkcs8_der()?;
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), alg)
        .map_err(internal)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = distinguished_name(&spec.subject)?;
    for d in &spec.dns_names {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| bad(format!("Invalid DNS name '{d}'.")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for e in &spec.emails {
        let name = e
            .clone()
            .try_into()
            .map_err(|_| bad(format!("Invalid email '{e}'.")))?;
        params
            .subject_alt_names
            .push(rcgen::SanType::Rfc822Name(name));
    }
    let start = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|_| bad("The vault clock is out of range."))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(spec.validity_months.max(1)) * 30);
    for k in &spec.key_usage {
        params.key_usages.push(key_usage(k)?);
    }
    for oid in &spec.ekus {
        params.extended_key_usages.push(eku(oid)?);
    }
    // A CSR cannot carry a serial number, so it is made before the serial is set.
    let csr = params.serialize_request(&pair).map_err(internal)?;
    params.serial_number = Some(rcgen::SerialNumber::from(
        rand::random::<[u8; 16]>().to_vec(),
    ));
    let cert = params.self_signed(&pair).map_err(internal)?;
    Ok((cert.der().to_vec(), csr.der().to_vec()))
}

fn distinguished_name(subject: &str) -> Result<rcgen::DistinguishedName, KvError> {
    let mut dn = rcgen::DistinguishedName::new();
    for part in subject
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (attr, value) = part.split_once('=').ok_or_else(|| {
            bad(format!(
                "The subject '{subject}' is not a valid X.500 name."
            ))
        })?;
        let ty = match attr.trim().to_ascii_uppercase().as_str() {
            "CN" => rcgen::DnType::CommonName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "C" => rcgen::DnType::CountryName,
            "ST" | "S" => rcgen::DnType::StateOrProvinceName,
            "L" => rcgen::DnType::LocalityName,
            "E" | "EMAILADDRESS" => rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            other => {
                return Err(bad(format!(
                    "The subject attribute '{other}' is not supported."
                )))
            }
        };
        dn.push(ty, value.trim());
    }
    Ok(dn)
}

fn key_usage(name: &str) -> Result<rcgen::KeyUsagePurpose, KvError> {
    use rcgen::KeyUsagePurpose as K;
    Ok(match name {
        "digitalSignature" => K::DigitalSignature,
        "nonRepudiation" => K::ContentCommitment,
        "keyEncipherment" => K::KeyEncipherment,
        "dataEncipherment" => K::DataEncipherment,
        "keyAgreement" => K::KeyAgreement,
        "keyCertSign" => K::KeyCertSign,
        "cRLSign" => K::CrlSign,
        "encipherOnly" => K::EncipherOnly,
        "decipherOnly" => K::DecipherOnly,
        other => return Err(bad(format!("The key usage '{other}' is not valid."))),
    })
}

fn eku(oid: &str) -> Result<rcgen::ExtendedKeyUsagePurpose, KvError> {
    use rcgen::ExtendedKeyUsagePurpose as E;
    Ok(match oid {
        "1.3.6.1.5.5.7.3.1" => E::ServerAuth,
        "1.3.6.1.5.5.7.3.2" => E::ClientAuth,
        "1.3.6.1.5.5.7.3.3" => E::CodeSigning,
        "1.3.6.1.5.5.7.3.4" => E::EmailProtection,
        "1.3.6.1.5.5.7.3.8" => E::TimeStamping,
        "1.3.6.1.5.5.7.3.9" => E::OcspSigning,
        other => E::Other(
            other
                .split('.')
                .map(|n| n.parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad(format!("The EKU '{other}' is not a valid OID.")))?,
        ),
    })
}
