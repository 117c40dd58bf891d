//! What to do about a failed Key Vault call: a [`SourceError`] read as "which of the things a
//! preflight checks is broken" — the host, TLS, the token and its resource, a permission by
//! name, the firewall — and the remedy. Pure, so every wording is unit-tested.
//!
//! The permission wording follows the README's table "Permissions the daemon's identity needs".

use super::CheckStatus;
use crate::model::ObjectKind;
use crate::source::{SourceError, SourceErrorKind, SourceOp};

/// Why a vault could not be used, as far as the error tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The host name does not resolve.
    UnknownHost,
    /// TLS failed: an untrusted or mismatched certificate.
    Tls,
    /// No connection (refused, timed out, reset).
    Unreachable,
    /// No token, or the vault refused it (401).
    Token,
    /// The challenge named a resource kvkeep will not send a token to.
    Resource,
    /// The vault's network rules refuse this host.
    Firewall,
    /// The identity lacks a permission (403).
    Permission,
    /// The service is busy (429).
    Throttled,
    /// Anything else.
    Other,
}

impl Cause {
    /// Whether the vault answered an authenticated request: a permission refusal proves the
    /// host, TLS and the token are fine.
    pub(crate) fn reached(self) -> bool {
        matches!(self, Cause::Permission | Cause::Throttled | Cause::Other)
    }
}

/// Reads the cause out of an error of the source.
pub(crate) fn cause(e: &SourceError) -> Cause {
    let detail = e.detail().to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| detail.contains(w));
    match e.kind() {
        SourceErrorKind::Transient
            if has(&[
                "dns error",
                "failed to lookup",
                "name or service not known",
                "no such host",
                "nodename nor servname",
            ]) =>
        {
            Cause::UnknownHost
        }
        SourceErrorKind::Transient
            if has(&[
                "certificate",
                "tls",
                "handshake",
                "unknownissuer",
                "invalid peer",
            ]) =>
        {
            Cause::Tls
        }
        SourceErrorKind::Transient => Cause::Unreachable,
        SourceErrorKind::Throttled => Cause::Throttled,
        SourceErrorKind::Forbidden
            if e.code() == Some("Unauthorized")
                || has(&["no access token", "akv10000", "akv10022", "unauthorized"]) =>
        {
            Cause::Token
        }
        SourceErrorKind::Forbidden
            if e.inner_code() == Some("ForbiddenByFirewall")
                || has(&["client address is not authorized", "firewall"]) =>
        {
            Cause::Firewall
        }
        SourceErrorKind::Forbidden => Cause::Permission,
        _ if has(&["challenge"]) => Cause::Resource,
        _ => Cause::Other,
    }
}

/// The row for a failed call: status, what happened, what to do. `host` is the vault's host.
pub(crate) fn advise(e: &SourceError, host: &str) -> (CheckStatus, String, String) {
    let kind = e.object_kind();
    let fix = match cause(e) {
        Cause::UnknownHost => format!(
            "the host {host} does not resolve: check the vault's url (https://NAME.vault.azure.net), DNS on this host, or add it to [azure] resolve"
        ),
        Cause::Tls => format!(
            "tls to {host} failed: the certificate is not trusted or names another host; behind a tls-inspecting proxy or for a private ca, set [azure] ca_file to its pem"
        ),
        Cause::Unreachable => format!(
            "cannot connect to {host}: check the url's host and port, the firewall or proxy between this host and the vault, and the vault's private endpoint dns"
        ),
        Cause::Token => "the vault did not accept kvkeep's token (401): check [azure] credential (tenant, client id, secret or token file, managed identity assignment) and that the token is for https://vault.azure.net".to_string(),
        Cause::Resource => format!(
            "the vault's auth challenge names a resource that is not {host}'s domain, so kvkeep sent no token: check the vault url, or a proxy answering for the vault"
        ),
        Cause::Firewall => format!(
            "the vault's network rules refuse this host: add its address or virtual network to vault {}'s firewall, or use its private endpoint",
            e.vault()
        ),
        Cause::Permission => match e.op() {
            SourceOp::List | SourceOp::ListVersions => list_permission_fix(kind),
            _ => backup_permission_fix(kind),
        },
        Cause::Throttled => {
            return (
                CheckStatus::Warn,
                e.to_string(),
                "key vault is throttling: run kvkeep doctor again later, or lower [limits] vault_share".into(),
            )
        }
        Cause::Other => "the message says what the vault answered".to_string(),
    };
    (CheckStatus::Fail, e.to_string(), fix)
}

/// The remedy for a missing `list` permission on `kind`, as the README's permission table says.
pub fn list_permission_fix(kind: ObjectKind) -> String {
    let action = match kind {
        ObjectKind::Secrets => "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ObjectKind::Keys => "Microsoft.KeyVault/vaults/keys/read",
        ObjectKind::Certificates => "Microsoft.KeyVault/vaults/certificates/read",
    };
    format!(
        "the identity lacks the `list` permission on {kind}: grant access policy `list` on {kind}, or with Azure RBAC the data action `{action}` (e.g. the {} role)",
        officer(kind)
    )
}

/// The remedy for a missing `backup` permission on `kind`, as the README's permission table
/// says.
pub fn backup_permission_fix(kind: ObjectKind) -> String {
    format!(
        "the identity lacks the `backup` permission on {kind}: grant access policy `backup` on {kind}, or with Azure RBAC the data action `Microsoft.KeyVault/vaults/{kind}/backup/action` (e.g. the {} role)",
        officer(kind)
    )
}

/// The built-in role that holds a kind's backup data action.
fn officer(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secrets => "Key Vault Secrets Officer",
        ObjectKind::Keys => "Key Vault Crypto Officer",
        ObjectKind::Certificates => "Key Vault Certificates Officer",
    }
}
