//! Validation of `[azure]`: the credential kind and its keys, cloud endpoints, the CA file and
//! `resolve` overrides.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::validate::Check;

/// Validates `[azure]`; `None` when it has problems (each recorded in `c`).
pub(super) fn azure(c: &mut Check, raw: RawAzure) -> Option<AzureConfig> {
    let mut ok = true;
    let kind = raw
        .credential
        .as_ref()
        .map(|k| k.get_ref().as_str())
        .unwrap_or("default");
    let unused = |c: &mut Check, key: &str, v: &Option<Spanned<String>>, needed_by: &str| {
        if let Some(v) = v {
            c.at(
                format!("azure.{key}"),
                v,
                format!("only used with credential = \"{needed_by}\""),
            );
        }
    };
    let credential = match kind {
        "default" | "managed-identity" | "workload-identity" | "azure-cli" => {
            unused(c, "tenant_id", &raw.tenant_id, "client-secret");
            unused(
                c,
                "client_secret_file",
                &raw.client_secret_file,
                "client-secret",
            );
            unused(c, "token_file", &raw.token_file, "token-file");
            if kind != "managed-identity" {
                unused(
                    c,
                    "client_id",
                    &raw.client_id,
                    "client-secret or managed-identity",
                );
            }
            match kind {
                "default" => Some(CredentialConfig::Default),
                "managed-identity" => Some(CredentialConfig::ManagedIdentity {
                    client_id: raw.client_id.as_ref().map(|s| s.get_ref().clone()),
                }),
                "workload-identity" => Some(CredentialConfig::WorkloadIdentity),
                _ => Some(CredentialConfig::AzureCli),
            }
        }
        "client-secret" => {
            unused(c, "token_file", &raw.token_file, "token-file");
            let mut need = |key: &str, v: &Option<Spanned<String>>| match v {
                Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
                _ => {
                    let cred = raw.credential.as_ref();
                    if let Some(cred) = cred {
                        c.at(
                            format!("azure.{key}"),
                            cred,
                            "missing: credential = \"client-secret\" needs tenant_id, client_id and client_secret_file",
                        );
                    }
                    None
                }
            };
            let tenant_id = need("tenant_id", &raw.tenant_id);
            let client_id = need("client_id", &raw.client_id);
            let secret_file = match &raw.client_secret_file {
                Some(f) => c
                    .readable_file("azure.client_secret_file", f)
                    .map(|(p, _)| p),
                None => {
                    need("client_secret_file", &None);
                    None
                }
            };
            match (tenant_id, client_id, secret_file) {
                (Some(tenant_id), Some(client_id), Some(secret_file)) => {
                    Some(CredentialConfig::ClientSecret {
                        tenant_id,
                        client_id,
                        secret_file,
                    })
                }
                _ => None,
            }
        }
        "token-file" => {
            unused(c, "tenant_id", &raw.tenant_id, "client-secret");
            unused(
                c,
                "client_id",
                &raw.client_id,
                "client-secret or managed-identity",
            );
            unused(
                c,
                "client_secret_file",
                &raw.client_secret_file,
                "client-secret",
            );
            match &raw.token_file {
                Some(f) => c
                    .readable_file("azure.token_file", f)
                    .map(|(path, _)| CredentialConfig::TokenFile { path }),
                None => {
                    if let Some(cred) = &raw.credential {
                        c.at("azure.token_file", cred, "missing: credential = \"token-file\" needs token_file, a file holding a bearer token");
                    }
                    None
                }
            }
        }
        _ => {
            if let Some(cred) = &raw.credential {
                c.at("azure.credential", cred, "unknown credential: expected default, managed-identity, workload-identity, client-secret, azure-cli or token-file");
            }
            None
        }
    };
    ok &= credential.is_some();
    let ca_file = match &raw.ca_file {
        None => None,
        Some(f) => match c.readable_file("azure.ca_file", f) {
            Some((path, text)) if text.contains("-----BEGIN CERTIFICATE-----") => Some(path),
            Some(_) => {
                c.at(
                    "azure.ca_file",
                    f,
                    "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                );
                ok = false;
                None
            }
            None => {
                ok = false;
                None
            }
        },
    };
    let ca_scope = match raw.ca_scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "services")) => CaScope::Services,
        Some((_, "all")) => CaScope::All,
        Some((s, _)) => {
            c.at("azure.ca_scope", s, "unknown scope: expected \"services\" (ca_file is trusted for the vault and store hosts only) or \"all\" (also for the identity provider)");
            ok = false;
            CaScope::Services
        }
    };
    if let (Some(s), None) = (&raw.ca_scope, &raw.ca_file) {
        c.at("azure.ca_scope", s, "only used with ca_file");
        ok = false;
    }
    let mut resolve = BTreeMap::new();
    for (host, addr) in &raw.resolve {
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
        if !host_ok {
            c.at(
                "azure.resolve",
                addr,
                "a key is not a host name (letters, digits, '-' and '.')",
            );
            ok = false;
            continue;
        }
        match IpAddr::from_str(addr.get_ref()) {
            Ok(ip) => {
                resolve.insert(host.to_ascii_lowercase(), ip);
            }
            Err(_) => {
                c.at(
                    format!("azure.resolve.{host}"),
                    addr,
                    "not an IP address (e.g. 127.0.0.1 or ::1)",
                );
                ok = false;
            }
        }
    }
    Some(AzureConfig {
        credential: credential?,
        ca_file,
        ca_scope,
        resolve,
        verify_challenge_resource: raw.verify_challenge_resource.unwrap_or(true),
    })
    .filter(|_| ok)
}
