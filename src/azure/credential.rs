//! The Entra ID credential built from `[azure] credential = …`, over `azure_identity` 1.x, plus
//! [`TokenFileCredential`] for emulators and tests.
//!
//! `azure_identity` 1.0 has no `DefaultAzureCredential`; `default` is kvkeep's own chain
//! ([`ChainedCredential`]): workload identity when its environment is present, then managed
//! identity, then the developer tools (Azure CLI, Azure Developer CLI) — production identities
//! first, so a daemon on an Azure host never silently runs as whoever last ran `az login`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::ClientOptions;
use azure_core::time::{Duration, OffsetDateTime};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ClientSecretCredentialOptions,
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::{read_secret_file, scrub_secrets, AzureSetupError};
use crate::config::CredentialConfig;
use crate::fsutil::SecretFileError;

/// How long a token read by [`TokenFileCredential`] is taken to live when it carries no
/// expiry of its own (it is not a JWT, or has no `exp` claim).
pub const TOKEN_FILE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// Builds the credential configured in `[azure]`. `options` (normally
/// [`super::identity_client_options`]) is the transport the identity clients use to reach Entra
/// ID or the managed identity endpoint: `resolve` applies to it, `ca_file` only with
/// `ca_scope = "all"`.
///
/// Nothing is contacted here: a wrong tenant or a missing managed identity shows on the first
/// token request. A client secret file is read now, so a missing file stops the start.
pub fn credential(
    config: &CredentialConfig,
    options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, AzureSetupError> {
    Ok(match config {
        CredentialConfig::Default => Arc::new(ChainedCredential::default_chain(options)?),
        CredentialConfig::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options.clone(),
            }))
            .map_err(setup("managed-identity"))?
        }
        CredentialConfig::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(workload_options(options)))
                .map_err(setup("workload-identity"))?
        }
        CredentialConfig::ClientSecret {
            tenant_id,
            client_id,
            secret_file,
        } => {
            let secret = read_secret_file("client secret file", secret_file)?;
            ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                Secret::new(secret.into_inner()),
                Some(ClientSecretCredentialOptions {
                    client_options: options.clone(),
                }),
            )
            .map_err(setup("client-secret"))?
        }
        CredentialConfig::AzureCli => AzureCliCredential::new(None).map_err(setup("azure-cli"))?,
        CredentialConfig::TokenFile { path } => {
            // Checked now so a token file others can read stops the start, not the first
            // request; every fetch checks again.
            if let Some(mode) = crate::fsutil::loose_mode(path) {
                return Err(AzureSetupError::LooseFile {
                    what: "token file",
                    path: path.clone(),
                    mode,
                });
            }
            Arc::new(TokenFileCredential::new(path.clone()))
        }
    })
}

/// Turns an `azure_identity` constructor's error into the setup error of credential `kind`.
fn setup(kind: &'static str) -> impl Fn(azure_core::Error) -> AzureSetupError {
    move |e| AzureSetupError::Credential {
        kind,
        reason: scrub_secrets(&e.to_string()),
    }
}

fn workload_options(options: &ClientOptions) -> WorkloadIdentityCredentialOptions {
    let mut workload = WorkloadIdentityCredentialOptions::default();
    workload.credential_options.client_options = options.clone();
    workload
}

/// Tries credentials in order and keeps using the first one that hands out a token (so a
/// transient failure of a later token request is reported, not papered over by another identity).
pub struct ChainedCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    // Index of the source that first succeeded; usize::MAX until one has.
    chosen: AtomicUsize,
}

impl ChainedCredential {
    /// The `default` chain: workload identity (only when `AZURE_FEDERATED_TOKEN_FILE` and friends
    /// are set, as on AKS), managed identity, developer tools.
    pub fn default_chain(options: &ClientOptions) -> Result<Self, AzureSetupError> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        // Construction fails exactly when the workload identity environment is absent; that
        // simply leaves it out of the chain.
        if let Ok(workload) = WorkloadIdentityCredential::new(Some(workload_options(options))) {
            sources.push(("workload-identity", workload));
        }
        let managed = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: None,
            client_options: options.clone(),
        }))
        .map_err(setup("default"))?;
        sources.push(("managed-identity", managed));
        let tools = DeveloperToolsCredential::new(None).map_err(setup("default"))?;
        sources.push(("developer-tools", tools));
        Ok(Self::new(sources))
    }

    /// A chain over the given named sources, tried in order.
    pub fn new(sources: Vec<(&'static str, Arc<dyn TokenCredential>)>) -> Self {
        ChainedCredential {
            sources,
            chosen: AtomicUsize::new(usize::MAX),
        }
    }

    /// The names of the sources, in the order they are tried.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|(name, _)| *name).collect()
    }
}

impl fmt::Debug for ChainedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainedCredential")
            .field("sources", &self.source_names())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some((_, source)) = self.sources.get(self.chosen.load(Ordering::Relaxed)) {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.chosen.store(index, Ordering::Relaxed);
                    return Ok(token);
                }
                Err(e) => failures.push(format!("{name}: {}", scrub_secrets(&e.to_string()))),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no credential of the default chain produced a token ({}); configure one explicitly in [azure]",
                failures.join("; ")
            ),
        ))
    }
}

/// A bearer token read from a file on every fetch — for emulators and tests, or for an external
/// process that keeps a fresh token in a file.
///
/// Expiry: when the token is a JWT with an `exp` claim, that time; otherwise now +
/// [`TOKEN_FILE_LIFETIME`] (1 h). `azure_core`'s bearer policy caches a token until 5 minutes
/// before its expiry, so a rewritten file is picked up by then at the latest (and at once when
/// the JWT's own expiry is near). The file's content is never logged or put in an error, and a
/// file group or others can access is refused unread.
#[derive(Debug, Clone)]
pub struct TokenFileCredential {
    path: PathBuf,
}

impl TokenFileCredential {
    /// A credential reading `path`.
    pub fn new(path: PathBuf) -> Self {
        TokenFileCredential { path }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl TokenCredential for TokenFileCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || crate::fsutil::read_secret_file(&path))
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    ErrorKind::Credential,
                    format!("reading the token file ended abnormally: {e}"),
                )
            })?;
        let text = read.map_err(|e| {
            let message = match e {
                SecretFileError::Loose { mode } => {
                    crate::fsutil::loose_file_message("token file", &self.path, mode)
                }
                SecretFileError::Io(e) => format!(
                    "cannot read the token file {}: {e}; check [azure] token_file",
                    self.path.display()
                ),
            };
            azure_core::Error::with_message(ErrorKind::Credential, message)
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("the token file {} is empty", self.path.display()),
            ));
        }
        let now = OffsetDateTime::from_unix_timestamp(crate::clock::now_unix())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let expires_on = jwt_expiry(token).unwrap_or_else(|| {
            now + Duration::seconds(i64::try_from(TOKEN_FILE_LIFETIME.as_secs()).unwrap_or(3600))
        });
        if expires_on <= now {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "the token in {} expired at {expires_on}; write a fresh one",
                    self.path.display()
                ),
            ));
        }
        Ok(AccessToken::new(token.to_string(), expires_on))
    }
}

/// The `exp` claim of a JWT (`header.claims.signature`, base64url), if the token is one.
fn jwt_expiry(token: &str) -> Option<OffsetDateTime> {
    let mut parts = token.split('.');
    let (_header, claims) = (parts.next()?, parts.next()?);
    parts.next()?;
    let bytes = azure_core::base64::decode_url_safe(claims).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    OffsetDateTime::from_unix_timestamp(exp).ok()
}

#[cfg(test)]
mod tests {

    /// The wall clock, through the one sanctioned reader.
    fn test_now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(crate::clock::now_unix()).expect("a valid time")
    }
    use super::*;

    fn jwt(exp: i64) -> String {
        let claims = serde_json::json!({ "aud": "https://storage.azure.com", "exp": exp });
        format!(
            "{}.{}.",
            azure_core::base64::encode_url_safe(br#"{"alg":"none"}"#),
            azure_core::base64::encode_url_safe(claims.to_string())
        )
    }

    /// Writes `text` to `path` with mode 0600, as the runbook asks.
    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_token_file_others_may_read_is_refused_at_setup_and_on_fetch() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let canary = "canary-token-8HkQ2";
        write_private(&path, canary);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let config = CredentialConfig::TokenFile { path: path.clone() };
        let err = credential(&config, &ClientOptions::default()).expect_err("loose token file");
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", path.display())),
            "{text}"
        );
        assert!(!text.contains(canary), "{text}");

        let cred = TokenFileCredential::new(path.clone());
        let err = cred
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .expect_err("loose token file");
        let text = format!("{err} {err:?}");
        assert!(text.contains("chmod 600"), "{text}");
        assert!(!text.contains(canary), "{text}");
    }

    #[tokio::test]
    async fn token_file_is_read_on_each_fetch_and_uses_the_jwt_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let cred = TokenFileCredential::new(path.clone());
        let scopes = ["https://storage.azure.com/.default"];

        let err = cred
            .get_token(&scopes, None)
            .await
            .expect_err("missing file");
        assert!(
            err.to_string().contains("cannot read the token file"),
            "{err}"
        );

        let exp = crate::clock::now_unix() + 600;
        write_private(&path, &format!("{}\n", jwt(exp)));
        let token = cred.get_token(&scopes, None).await.expect("token");
        assert_eq!(token.token.secret(), jwt(exp));
        assert_eq!(token.expires_on.unix_timestamp(), exp);

        // Rotation: the next fetch sees the new content.
        write_private(&path, "opaque-token");
        let before = test_now();
        let token = cred.get_token(&scopes, None).await.expect("token");
        let after = test_now();
        assert_eq!(token.token.secret(), "opaque-token");
        // Not a JWT: valid for TOKEN_FILE_LIFETIME from the moment it was read.
        let lifetime = Duration::hours(1);
        assert!(
            before + lifetime <= token.expires_on && token.expires_on <= after + lifetime,
            "{} not within [{before}, {after}] + 1 h",
            token.expires_on
        );

        write_private(&path, &jwt(1_000));
        let err = cred.get_token(&scopes, None).await.expect_err("expired");
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(
            !err.to_string().contains(&jwt(1_000)),
            "the token is never quoted"
        );
    }

    #[tokio::test]
    async fn the_chain_keeps_the_first_source_that_worked() {
        #[derive(Debug)]
        struct Fixed(Option<&'static str>);
        #[async_trait::async_trait]
        impl TokenCredential for Fixed {
            async fn get_token(
                &self,
                _: &[&str],
                _: Option<TokenRequestOptions<'_>>,
            ) -> azure_core::Result<AccessToken> {
                match self.0 {
                    Some(t) => Ok(AccessToken::new(t, test_now() + Duration::hours(1))),
                    None => Err(azure_core::Error::with_message(
                        ErrorKind::Credential,
                        "unavailable",
                    )),
                }
            }
        }
        let chain = ChainedCredential::new(vec![
            ("first", Arc::new(Fixed(None))),
            ("second", Arc::new(Fixed(Some("two")))),
            ("third", Arc::new(Fixed(Some("three")))),
        ]);
        let token = chain.get_token(&["s"], None).await.expect("token");
        assert_eq!(token.token.secret(), "two");

        let none = ChainedCredential::new(vec![("only", Arc::new(Fixed(None)))]);
        let err = none.get_token(&["s"], None).await.expect_err("no source");
        assert!(err.to_string().contains("only: unavailable"), "{err}");
    }

    #[test]
    fn client_secret_credential_needs_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CredentialConfig::ClientSecret {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string(),
            client_id: "00000000-0000-0000-0000-000000000001".to_string(),
            secret_file: dir.path().join("missing"),
        };
        let err = credential(&config, &ClientOptions::default()).expect_err("missing secret file");
        assert!(err.to_string().contains("client secret file"), "{err}");

        write_private(&dir.path().join("missing"), "s3cret\n");
        let cred = credential(&config, &ClientOptions::default()).expect("credential");
        assert!(!format!("{cred:?}").contains("s3cret"));
    }

    #[test]
    fn default_chain_is_built_without_contacting_anything() {
        let chain = ChainedCredential::default_chain(&ClientOptions::default()).expect("chain");
        let names = chain.source_names();
        assert_eq!(
            names[names.len() - 2..],
            ["managed-identity", "developer-tools"]
        );
    }
}
