//! Test PKI for the emulator: a throw-away CA and one server certificate that serves every vault host.
//!
//! The leaf carries `*.vault.localhost` (not `*.localhost`: rustls-webpki refuses wildcards with
//! fewer than two labels after the `*`), `vault.localhost`, `localhost`, `127.0.0.1` and `::1`, so
//! the same files serve host-routed vaults, the loopback mode and Azurite in the test harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the PEM files of a certificate directory live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertPaths {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The server certificate chain (leaf then CA).
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub server_key: PathBuf,
}

impl CertPaths {
    fn in_dir(dir: &Path) -> Self {
        CertPaths {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Errors while making or loading the test PKI.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("certificate file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating the test certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file did not hold what it should.
    #[error("certificate file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Uses the CA and server certificate in `dir` when all files are present, otherwise generates a
/// new CA and server certificate there (the private keys are written with mode 0600).
pub fn ensure_cert_dir(dir: &Path) -> Result<CertPaths, TlsError> {
    let paths = CertPaths::in_dir(dir);
    if paths.ca_cert.exists() && paths.server_cert.exists() && paths.server_key.exists() {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kvkeep test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "*.vault.localhost".to_string(),
        "vault.localhost".to_string(),
        "localhost".to_string(),
    ])?;
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "vault.localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    write(&paths.ca_cert, ca_cert.pem().as_bytes(), false)?;
    write(
        &paths.server_cert,
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()).as_bytes(),
        false,
    )?;
    write(&paths.server_key, leaf_key.serialize_pem().as_bytes(), true)?;
    Ok(paths)
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A rustls server configuration (HTTP/1.1 only in ALPN) for the certificate directory.
pub fn server_config(paths: &CertPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.server_cert)
        .and_then(|iter| iter.collect())
        .map_err(|e| TlsError::Invalid {
            path: paths.server_cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: paths.server_cert.clone(),
            reason: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&paths.server_key).map_err(|e| TlsError::Invalid {
        path: paths.server_key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
