//! Validation of `[encryption]`: the age recipients backups are sealed to, the catalog
//! recipient and identity file, and the zstd level.

use std::collections::BTreeSet;
use std::str::FromStr;

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::validate::Check;
use super::{line_of, ConfigError};

const DEFAULT_ZSTD_LEVEL: i64 = 9;

/// Validates `[encryption]`; `None` when it is missing or has problems (each recorded in `c`).
pub(super) fn encryption(
    c: &mut Check,
    raw: Option<Spanned<RawEncryption>>,
) -> Option<EncryptionConfig> {
    let Some(raw) = raw else {
        c.here("encryption", "missing section: add [encryption] with recipients = [\"age1...\"] (create one with `kvkeep keys generate`)");
        return None;
    };
    let span_for_empty = raw.span();
    let raw = raw.into_inner();
    let mut recipients = Vec::new();
    let mut ok = true;
    for (i, r) in raw.recipients.iter().enumerate() {
        match recipient(r.get_ref()) {
            Ok(r) => recipients.push(r),
            Err(msg) => {
                c.at(format!("encryption.recipients[{i}]"), r, msg);
                ok = false;
            }
        }
    }
    if let Some(file) = &raw.recipients_file {
        if let Some((_, text)) = c.readable_file("encryption.recipients_file", file) {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match recipient(line) {
                    Ok(r) => recipients.push(r),
                    Err(msg) => {
                        c.at(
                            "encryption.recipients_file",
                            file,
                            format!("line {} of the file: {msg}", n + 1),
                        );
                        ok = false;
                    }
                }
            }
        } else {
            ok = false;
        }
    }
    if ok && recipients.is_empty() {
        c.errors.push(ConfigError {
            path: "encryption.recipients".into(),
            line: Some(line_of(c.text, span_for_empty.start)),
            message: "no recipients: add at least one age public key (age1...) inline or in recipients_file; `kvkeep keys generate` makes one".into(),
        });
        ok = false;
    }
    let mut seen = BTreeSet::new();
    recipients.retain(|r| seen.insert(r.clone()));
    let zstd_level = match &raw.zstd_level {
        None => DEFAULT_ZSTD_LEVEL,
        Some(l) if (1..=22).contains(l.get_ref()) => *l.get_ref(),
        Some(l) => {
            c.at("encryption.zstd_level", l, "must be between 1 and 22");
            ok = false;
            DEFAULT_ZSTD_LEVEL
        }
    };
    let catalog_recipient = match &raw.catalog_recipient {
        None => None,
        Some(r) => match recipient(r.get_ref()) {
            // Object blobs are sealed to every recovery recipient: the same key as catalog
            // recipient would put every backup within reach of the daemon hosts.
            Ok(catalog) if recipients.contains(&catalog) => {
                c.at(
                    "encryption.catalog_recipient",
                    r,
                    "is also one of the recipients: backups are sealed to every recipient, so the catalog identity, which sits on daemon hosts, would open every backup; make a separate catalog key with `kvkeep keys generate --catalog`",
                );
                ok = false;
                None
            }
            Ok(catalog) => Some(catalog),
            Err(msg) => {
                c.at("encryption.catalog_recipient", r, msg);
                ok = false;
                None
            }
        },
    };
    let catalog_identity_file = match &raw.catalog_identity_file {
        None => None,
        Some(p) if p.get_ref().trim().is_empty() => {
            c.at("encryption.catalog_identity_file", p, "must not be empty: name the catalog identity file (e.g. /run/credentials/kvkeep.service/catalog-identity) or remove the key");
            ok = false;
            None
        }
        Some(p) if catalog_recipient.is_none() && raw.catalog_recipient.is_none() => {
            // An identity without its recipient: the daemon would seal nothing to it, so the
            // manifests it is meant to open would not open with it.
            c.at("encryption.catalog_identity_file", p, "is set without catalog_recipient: set [encryption] catalog_recipient to the public key `kvkeep keys generate --catalog` printed for it");
            ok = false;
            None
        }
        Some(p) => Some(c.path(p.get_ref())),
    };
    ok.then_some(EncryptionConfig {
        recipients,
        catalog_recipient,
        catalog_identity_file,
        zstd_level: zstd_level as i32,
    })
}

/// Checks one age recipient. A pasted identity is refused without echoing it.
fn recipient(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err("this is an age identity (a private key), not a recipient: remove it from the configuration at once and put its public key (age1...) here instead".into());
    }
    age::x25519::Recipient::from_str(s)
        .map(|r| r.to_string())
        .map_err(|_| {
            "not an age X25519 recipient (expected age1 followed by 58 characters)".to_string()
        })
}
