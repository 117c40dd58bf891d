//! The files named in a configuration that hold secrets (a SAS URL, a client secret, a bearer
//! token, a notification URL) must be private to kvkeep's user. Checked when a configuration is loaded from disk,
//! so `kvkeep config check` (systemd's `ExecStartPre=`) and every command refuse a file others
//! can read before anything is contacted; the adapters check again when they read the file.
//!
//! Only permissions are looked at here, never the content: validation itself stays pure.

use std::path::Path;

use super::{Config, ConfigError, CredentialConfig, NotifyTarget, StoreAuth, StoreConfig};
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
    files
        .into_iter()
        .filter_map(|(key, what, path)| {
            fsutil::loose_mode(path).map(|mode| ConfigError {
                path: key.to_string(),
                line: None,
                message: fsutil::loose_file_message(what, path, mode),
            })
        })
        .collect()
}
