//! [`SameHostPolicy`]: a pipeline policy that keeps every request of a Key Vault client on the
//! vault's own scheme, host and port.
//!
//! The SDK pagers follow each page's `nextLink` wherever it points, and the bearer-token policy
//! attaches the vault's token to whatever request passes through it. A `nextLink` naming
//! another host (a compromised or misbehaving front end, a proxy rewriting bodies) would
//! therefore carry the token there. This policy sits among the per-call policies, before the
//! retry and authentication policies, so a request for a foreign host is refused before a token
//! is attached and before any connection is made — whichever SDK call built it.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request, Url};

/// Refuses every request whose scheme, host or port differ from the vault's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameHostPolicy {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl SameHostPolicy {
    /// The policy for the vault at `url`; `None` when the URL has no host.
    pub fn for_url(url: &Url) -> Option<Self> {
        Some(SameHostPolicy {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        })
    }

    /// The policy as the shared handle `ClientOptions::per_call_policies` holds.
    pub fn shared(self) -> Arc<dyn Policy> {
        Arc::new(self)
    }

    fn allows(&self, url: &Url) -> bool {
        url.scheme().eq_ignore_ascii_case(&self.scheme)
            && url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && url.port_or_known_default() == self.port
    }

    fn authority(url: &Url) -> String {
        match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => "(no host)".to_string(),
        }
    }
}

#[async_trait]
impl Policy for SameHostPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let url = request.url();
        if !self.allows(url) {
            // Only the authority is named: the rest of a link (skip tokens) is not ours to log.
            let vault = match self.port {
                Some(port) => format!("{}:{port}", self.host),
                None => self.host.clone(),
            };
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                format!(
                    "refused to send a request to {}://{}: only the vault's host {vault} may receive kvkeep's requests and token (a nextLink from the vault pointed elsewhere); check what sits between kvkeep and the vault",
                    url.scheme(),
                    Self::authority(url)
                ),
            ));
        }
        match next.split_first() {
            Some((policy, rest)) => policy.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "the azure pipeline has no transport after the same-host policy",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn only_the_vaults_scheme_host_and_port_pass() {
        let policy = SameHostPolicy::for_url(&url("https://kv1.vault.azure.net/")).expect("host");
        for ok in [
            "https://kv1.vault.azure.net/secrets?api-version=7.5",
            "https://KV1.vault.azure.net:443/secrets?$skiptoken=x",
        ] {
            assert!(policy.allows(&url(ok)), "{ok}");
        }
        for refused in [
            "https://kv2.vault.azure.net/secrets",
            "https://kv1.vault.azure.net.evil.example/secrets",
            "https://kv1.vault.azure.net:8443/secrets",
            "http://kv1.vault.azure.net/secrets",
            "https://127.0.0.2/secrets",
        ] {
            assert!(!policy.allows(&url(refused)), "{refused}");
        }
    }
}
