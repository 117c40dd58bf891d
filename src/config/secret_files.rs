//! The files named in a configuration that hold secrets (a SAS URL, a client secret, a bearer
//! token, a notification URL) must be private to kvkeep's user. Checked when a configuration is loaded from disk,
//! so `kvkeep config check` (systemd's `ExecStartPre=`) and every command refuse a file others
//! can read before anything is contacted; the adapters check again when they read the file.
//!
//! Only permissions are looked at here, never the content: validation itself stays pure. The
//! one exception is the catalog identity file, which is also opened (through the same private
//! file checks) to compare its public key with `catalog_recipient`: a mismatch would only show
//! much later, when another instance cannot open this one's manifests.

use std::path::Path;

use super::{
    Config, ConfigError, CredentialConfig, LockContainer, NotifyTarget, StoreAuth, StoreConfig,
};
use crate::fsutil;

/// One [`ConfigError`] per secret file that group or others can access.
pub(super) fn check(config: &Config) -> Vec<ConfigError> {
    let mut files: Vec<(&str, &str, &Path)> = Vec::new();
    if let StoreConfig::Azure {
        auth: StoreAuth::Sas { url_file },
        ..
    } = &config.store
    {
        files.push(("store.sas_url_file", "sas url file", url_file));
    }
    if let StoreConfig::Azure {
        locks:
            Some(LockContainer {
                auth: StoreAuth::Sas { url_file },
                ..
            }),
        ..
    } = &config.store
    {
        files.push((
            "store.lock_sas_url_file",
            "lock container sas url file",
            url_file,
        ));
    }
    if let Some(path) = &config.encryption.catalog_identity_file {
        files.push((
            "encryption.catalog_identity_file",
            "catalog identity file",
            path,
        ));
    }
    match &config.azure.credential {
        CredentialConfig::ClientSecret { secret_file, .. } => files.push((
            "azure.client_secret_file",
            "client secret file",
            secret_file,
        )),
        CredentialConfig::TokenFile { path } => {
            files.push(("azure.token_file", "token file", path))
        }
        _ => {}
    }
    // A notification's URL carries its token. A file that does not exist yet (a systemd
    // credential present only while the service runs) is checked when it is read.
    let notify_keys: Vec<(String, &Path)> = config
        .notify
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.target {
            NotifyTarget::Webhook { url_file } | NotifyTarget::Ping { url_file } => {
                Some((format!("notify[{i}].url_file"), url_file.as_path()))
            }
            NotifyTarget::Command { .. } => None,
        })
        .collect();
    for (key, path) in &notify_keys {
        files.push((key, "notification url file", path));
    }
    let mut errors: Vec<ConfigError> = files
        .into_iter()
        .filter_map(|(key, what, path)| {
            fsutil::loose_mode(path).map(|mode| ConfigError {
                path: key.to_string(),
                line: None,
                message: fsutil::loose_file_message(what, path, mode),
            })
        })
        .collect();
    errors.extend(catalog_identity(config));
    errors
}

/// Opens the catalog identity file, when it exists and is private, to check it holds the key of
/// `catalog_recipient` and no recovery key. A file that does not exist yet (a credential present
/// only while the service runs) is checked when the daemon reads it.
fn catalog_identity(config: &Config) -> Option<ConfigError> {
    let path = config.encryption.catalog_identity_file.as_ref()?;
    if !path.exists() || fsutil::loose_mode(path).is_some() {
        return None;
    }
    crate::crypto::load_catalog_identity(&config.encryption)
        .err()
        .map(|e| ConfigError {
            path: "encryption.catalog_identity_file".into(),
            line: None,
            // CryptoError never carries key material: files by path, keys by public key.
            message: e.to_string(),
        })
}
