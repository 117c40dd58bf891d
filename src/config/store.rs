//! `[store]`: where the sealed blobs go (a local directory or an Azure container), validated;
//! with an Azure container, optionally a second container for the vaults' lock blobs.

use toml::Spanned;

use super::model::{AccessTier, LockContainer, StoreAuth, StoreConfig};
use super::raw::RawStore;
use super::validate::Check;

pub(super) fn validate(c: &mut Check, raw: Option<Spanned<RawStore>>) -> Option<StoreConfig> {
    let Some(raw) = raw else {
        c.here("store", "missing section: add [store] with type = \"local\" (and path) or type = \"azure\" (and container_url)");
        return None;
    };
    let raw = raw.into_inner();
    let prefix = match &raw.prefix {
        Some(p) => {
            let s = p.get_ref();
            let ok = !s.starts_with('/')
                && s.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_./".contains(ch))
                && !s.split('/').any(|seg| seg == "." || seg == "..");
            if !ok {
                c.at("store.prefix", p, "use letters, digits, '-', '_', '.' and '/' separators, with no leading '/' and no '.' or '..' segments");
                String::new()
            } else if s.is_empty() || s.ends_with('/') {
                s.clone()
            } else {
                format!("{s}/")
            }
        }
        None => String::new(),
    };
    match raw.kind.get_ref().as_str() {
        "local" => {
            for (key, v) in [
                ("store.container_url", &raw.container_url),
                ("store.auth", &raw.auth),
                ("store.sas_url_file", &raw.sas_url_file),
                ("store.access_tier", &raw.access_tier),
                ("store.lock_container_url", &raw.lock_container_url),
                ("store.lock_sas_url_file", &raw.lock_sas_url_file),
            ] {
                if let Some(v) = v {
                    c.at(key, v, "only used with type = \"azure\"");
                }
            }
            match &raw.path {
                Some(p) if !p.get_ref().trim().is_empty() => Some(StoreConfig::Local {
                    path: c.path(p.get_ref()),
                    prefix,
                }),
                Some(p) => {
                    c.at("store.path", p, "must not be empty");
                    None
                }
                None => {
                    c.at("store.path", &raw.kind, "missing: a local store needs path = \"/var/lib/kvkeep/store\" (a directory)");
                    None
                }
            }
        }
        "azure" => {
            if let Some(p) = &raw.path {
                c.at("store.path", p, "only used with type = \"local\"");
            }
            let url = match &raw.container_url {
                Some(u) => container_url(c, "store.container_url", u),
                None => {
                    c.at("store.container_url", &raw.kind, "missing: an azure store needs container_url = \"https://ACCOUNT.blob.core.windows.net/CONTAINER\"");
                    None
                }
            };
            let auth = match raw.auth.as_ref().map(|a| a.get_ref().as_str()) {
                None | Some("credential") => {
                    if let Some(f) = &raw.sas_url_file {
                        c.at("store.sas_url_file", f, "only used with auth = \"sas\"");
                    }
                    Some(StoreAuth::Credential)
                }
                Some("sas") => match &raw.sas_url_file {
                    Some(f) => c
                        .readable_file("store.sas_url_file", f)
                        .map(|(url_file, _)| StoreAuth::Sas { url_file }),
                    None => {
                        if let Some(a) = &raw.auth {
                            c.at("store.sas_url_file", a, "missing: auth = \"sas\" needs sas_url_file, a file holding the SAS URL");
                        }
                        None
                    }
                },
                Some(_) => {
                    if let Some(a) = &raw.auth {
                        c.at(
                            "store.auth",
                            a,
                            "unknown auth: expected \"credential\" or \"sas\"",
                        );
                    }
                    None
                }
            };
            let access_tier = match &raw.access_tier {
                None => Some(None),
                Some(t) => match t.get_ref().to_ascii_lowercase().as_str() {
                    "hot" => Some(Some(AccessTier::Hot)),
                    "cool" => Some(Some(AccessTier::Cool)),
                    "cold" => Some(Some(AccessTier::Cold)),
                    _ => {
                        c.at("store.access_tier", t, "unknown access tier: expected hot, cool or cold (archive cannot be restored from quickly)");
                        None
                    }
                },
            };
            let locks = lock_container(c, &raw, url.as_deref(), auth.as_ref());
            Some(StoreConfig::Azure {
                container_url: url?,
                auth: auth?,
                prefix,
                access_tier: access_tier?,
                locks: locks?,
            })
        }
        _ => {
            c.at(
                "store.type",
                &raw.kind,
                "unknown store type: expected \"local\" or \"azure\"",
            );
            None
        }
    }
}

fn container_url(c: &mut Check, key: &str, u: &Spanned<String>) -> Option<String> {
    let parsed = match url::Url::parse(u.get_ref()) {
        Ok(p) => p,
        Err(e) => {
            c.at(key, u, format!("not a URL: {e}"));
            return None;
        }
    };
    if parsed.query().is_some() {
        // Never echo the URL: its query may hold a SAS signature.
        c.at(key, u, "must not carry a query string; put a SAS URL in a file and set auth = \"sas\" and sas_url_file");
        return None;
    }
    if parsed.scheme() != "https" {
        c.at(
            key,
            u,
            "must use https (Azure credentials are never sent over plain http)",
        );
        return None;
    }
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if segments.is_empty() {
        c.at(
            key,
            u,
            "names no container: use https://ACCOUNT.blob.core.windows.net/CONTAINER",
        );
        return None;
    }
    Some(u.get_ref().trim_end_matches('/').to_string())
}

/// `lock_container_url` (and with a SAS, `lock_sas_url_file`): `Some(None)` when locks stay in
/// the backup container, `None` when a key is wrong (the problem is in `c`).
fn lock_container(
    c: &mut Check,
    raw: &RawStore,
    backups: Option<&str>,
    auth: Option<&StoreAuth>,
) -> Option<Option<LockContainer>> {
    let Some(u) = &raw.lock_container_url else {
        if let Some(f) = &raw.lock_sas_url_file {
            c.at(
                "store.lock_sas_url_file",
                f,
                "only used with lock_container_url",
            );
            return None;
        }
        return Some(None);
    };
    let url = container_url(c, "store.lock_container_url", u)?;
    if backups.is_some_and(|b| b.eq_ignore_ascii_case(&url)) {
        c.at(
            "store.lock_container_url",
            u,
            "is the backup container: name a container without an immutability policy, or leave the key out to keep locks beside the backups",
        );
        return None;
    }
    let auth = match auth? {
        StoreAuth::Credential => {
            if let Some(f) = &raw.lock_sas_url_file {
                c.at(
                    "store.lock_sas_url_file",
                    f,
                    "only used with auth = \"sas\"; with the [azure] credential the lock container needs none",
                );
                return None;
            }
            StoreAuth::Credential
        }
        StoreAuth::Sas { .. } => match &raw.lock_sas_url_file {
            Some(f) => {
                let (url_file, _) = c.readable_file("store.lock_sas_url_file", f)?;
                StoreAuth::Sas { url_file }
            }
            None => {
                c.at(
                    "store.lock_sas_url_file",
                    u,
                    "missing: with auth = \"sas\", the lock container needs its own SAS URL in a file (lock_sas_url_file)",
                );
                return None;
            }
        },
    };
    Some(Some(LockContainer {
        container_url: url,
        auth,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigErrors, LockContainer, StoreAuth, StoreConfig};

    const BACKUPS: &str = "https://acct.blob.core.windows.net/backups";
    const LOCKS: &str = "https://acct.blob.core.windows.net/kvkeep-locks";

    /// An azure `[store]` with `extra` keys; `sas.txt` and `locks-sas.txt` are readable.
    fn parse(extra: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "[store]\ntype = \"azure\"\ncontainer_url = \"{BACKUPS}\"\n{extra}\n\n\
             [encryption]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\n\
             [[vault]]\nname = \"kv-prod\"\n"
        );
        Config::parse(
            &text,
            "kvkeep.toml",
            Path::new("/etc/kvkeep"),
            &|p: &Path| {
                if p.ends_with("sas.txt") || p.ends_with("locks-sas.txt") {
                    Ok("https://acct.blob.core.windows.net/c?sig=secret".to_string())
                } else {
                    Err(std::io::Error::from(std::io::ErrorKind::NotFound))
                }
            },
        )
    }

    fn locks(c: &Config) -> Option<LockContainer> {
        match &c.store {
            StoreConfig::Azure { locks, .. } => locks.clone(),
            StoreConfig::Local { .. } => None,
        }
    }

    fn problems(extra: &str) -> String {
        parse(extra).expect_err("invalid").to_string()
    }

    #[test]
    fn locks_stay_beside_the_backups_unless_a_lock_container_is_named() {
        assert_eq!(locks(&parse("").expect("valid")), None);
        let c = parse(&format!("lock_container_url = \"{LOCKS}/\"")).expect("valid");
        assert_eq!(
            locks(&c),
            Some(LockContainer {
                container_url: LOCKS.to_string(),
                auth: StoreAuth::Credential,
            })
        );
        let c = parse(&format!(
            "auth = \"sas\"\nsas_url_file = \"sas.txt\"\nlock_container_url = \"{LOCKS}\"\nlock_sas_url_file = \"locks-sas.txt\""
        ))
        .expect("valid");
        assert_eq!(
            locks(&c),
            Some(LockContainer {
                container_url: LOCKS.to_string(),
                auth: StoreAuth::Sas {
                    url_file: "/etc/kvkeep/locks-sas.txt".into()
                },
            })
        );
    }

    #[test]
    fn a_wrong_lock_container_is_refused_by_key_and_never_echoed() {
        let e = problems(&format!("lock_container_url = \"{BACKUPS}\""));
        assert!(
            e.contains("store.lock_container_url") && e.contains("is the backup container"),
            "{e}"
        );
        let e =
            problems("lock_container_url = \"https://acct.blob.core.windows.net/l?sig=s3cret\"");
        assert!(e.contains("store.lock_container_url"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = problems("lock_container_url = \"http://acct.blob.core.windows.net/locks\"");
        assert!(e.contains("must use https"), "{e}");
        // A SAS store needs the lock container's own SAS; a credential store takes none.
        let e = problems(&format!(
            "auth = \"sas\"\nsas_url_file = \"sas.txt\"\nlock_container_url = \"{LOCKS}\""
        ));
        assert!(
            e.contains("store.lock_sas_url_file") && e.contains("missing"),
            "{e}"
        );
        let e = problems(&format!(
            "lock_container_url = \"{LOCKS}\"\nlock_sas_url_file = \"locks-sas.txt\""
        ));
        assert!(e.contains("only used with auth = \"sas\""), "{e}");
        let e = problems("lock_sas_url_file = \"locks-sas.txt\"");
        assert!(e.contains("only used with lock_container_url"), "{e}");
    }

    #[test]
    fn a_local_store_takes_no_lock_container() {
        let text = format!(
            "[store]\ntype = \"local\"\npath = \"/var/lib/kvkeep/store\"\nlock_container_url = \"{LOCKS}\"\n\n\
             [encryption]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\n\
             [[vault]]\nname = \"kv-prod\"\n"
        );
        let e = Config::parse(&text, "kvkeep.toml", Path::new("/etc/kvkeep"), &|_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .expect_err("invalid")
        .to_string();
        assert!(
            e.contains("store.lock_container_url") && e.contains("only used with type = \"azure\""),
            "{e}"
        );
    }
}
