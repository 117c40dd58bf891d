//! Shared Azure connection plumbing: the HTTPS transport every Azure SDK client in kvkeep uses,
//! the Entra ID credential built from `[azure]`, and the wrapper that keeps secrets out of logs.
//!
//! Both the blob store adapter (`store::AzureBlobStore`) and the Key Vault source adapter build
//! their SDK clients from [`client_options`] and [`credential`], so a CA file, a host override or
//! a credential source configured once applies to every Azure endpoint kvkeep talks to.
//!
//! Error rules of this module: [`AzureSetupError`] names the file or setting at fault and what to
//! change; it never carries a secret's value (file contents, tokens, SAS signatures).

mod credential;
mod host_policy;
mod response;
mod secret;
mod transport;

use std::path::PathBuf;

pub use credential::{credential, ChainedCredential, TokenFileCredential, TOKEN_FILE_LIFETIME};
pub use host_policy::SameHostPolicy;
pub use response::{error_chain, retry_after};
pub use secret::{read_secret_file, scrub_secrets, Redacted};
pub use transport::{client_options, http_client, identity_client_options, identity_http_client};

/// Why an Azure client, transport or credential could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AzureSetupError {
    /// A file named in the configuration could not be read.
    #[error("cannot read {what} {}: {source}; check the path and that kvkeep's user may read it", path.display())]
    ReadFile {
        /// What the file is for ("ca file", "client secret file", …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret file that group or others can access: refused unread.
    #[error("{}", crate::fsutil::loose_file_message(.what, .path, *.mode))]
    LooseFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file was read but its content is unusable (never quoted: it may be a secret).
    #[error("{what} {} is unusable: {reason}", path.display())]
    BadFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTPS client could not be built.
    #[error("cannot build the https client for azure: {0}")]
    HttpClient(String),
    /// The `azure_identity` credential could not be constructed.
    #[error("cannot set up the {kind} credential: {reason}")]
    Credential {
        /// The configured credential kind.
        kind: &'static str,
        /// What the SDK reported (scrubbed of secrets).
        reason: String,
    },
}
