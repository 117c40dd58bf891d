//! Typed identifiers, validated on construction, so a vault name can never be passed where an
//! object name is expected and nothing invalid travels past the edge of the program.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A vault name breaks Azure's naming rule.
    #[error("invalid vault name {0:?}: use 3-24 characters, letters, digits and single hyphens, starting with a letter and ending with a letter or digit")]
    VaultName(String),
    /// An object name breaks Key Vault's naming rule.
    #[error("invalid object name {0:?}: use 1-127 characters, letters, digits and hyphens")]
    ObjectName(String),
    /// An unknown object kind.
    #[error("unknown object kind {0:?}: expected keys, secrets or certificates")]
    ObjectKind(String),
    /// Not a run id.
    #[error("invalid run id {0:?}: expected 16 lowercase hex characters")]
    RunId(String),
    /// Not an object version.
    #[error("invalid object version {0:?}: expected up to 64 letters and digits")]
    ObjectVersion(String),
    /// Not a valid blob key.
    #[error(
        "invalid blob key {0:?}: use '/'-separated segments of letters, digits, '-', '_' and '.'"
    )]
    BlobKey(String),
}

/// The name of a Key Vault (`kv-prod-weu`), as in `https://{name}.vault.azure.net`.
///
/// Azure's rule: 3–24 characters, ASCII letters, digits and hyphens, starting with a letter,
/// ending with a letter or digit, no consecutive hyphens. Vault names are case-insensitive in DNS,
/// so the canonical form is lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VaultName(String);

impl VaultName {
    /// The canonical (lower-case) name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VaultName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = (3..=24).contains(&bytes.len())
            && bytes[0].is_ascii_alphabetic()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && !s.contains("--");
        if valid {
            Ok(VaultName(s.to_ascii_lowercase()))
        } else {
            Err(IdError::VaultName(s.to_string()))
        }
    }
}

impl TryFrom<String> for VaultName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<VaultName> for String {
    fn from(v: VaultName) -> String {
        v.0
    }
}

impl fmt::Display for VaultName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a key, secret or certificate inside a vault.
///
/// Key Vault compares names case-insensitively but echoes them as created; this type keeps the
/// name as given and offers [`ObjectName::canonical`] for comparisons and storage keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName(String);

impl ObjectName {
    /// The name as the vault reports it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-case form the service compares by.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl FromStr for ObjectName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=127).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(ObjectName(s.to_string()))
        } else {
            Err(IdError::ObjectName(s.to_string()))
        }
    }
}

impl TryFrom<String> for ObjectName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ObjectName> for String {
    fn from(v: ObjectName) -> String {
        v.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The three kinds of Key Vault object kvkeep backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// Keys (never exportable: only the native backup blob can save them).
    Keys,
    /// Secrets.
    Secrets,
    /// Certificates (their backup covers the managed key and secret).
    Certificates,
}

impl ObjectKind {
    /// All kinds, in the order kvkeep processes them.
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Keys,
        ObjectKind::Secrets,
        ObjectKind::Certificates,
    ];

    /// The plural lower-case name used in config, paths and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Keys => "keys",
            ObjectKind::Secrets => "secrets",
            ObjectKind::Certificates => "certificates",
        }
    }
}

impl FromStr for ObjectKind {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keys" | "key" => Ok(ObjectKind::Keys),
            "secrets" | "secret" => Ok(ObjectKind::Secrets),
            "certificates" | "certificate" => Ok(ObjectKind::Certificates),
            _ => Err(IdError::ObjectKind(s.to_string())),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_azure_rules() {
        for ok in ["kv1", "kv-prod-weu", "A23456789012345678901234"] {
            assert!(ok.parse::<VaultName>().is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "kv",
            "1kv",
            "kv-",
            "kv--x",
            "kv_1",
            "kv.prod",
            "a234567890123456789012345",
        ] {
            assert!(bad.parse::<VaultName>().is_err(), "{bad} should be invalid");
        }
        assert_eq!(
            "KV-Prod".parse::<VaultName>().map(|v| v.to_string()),
            Ok("kv-prod".into())
        );
    }

    #[test]
    fn object_names_keep_case_and_compare_canonically() {
        let name: ObjectName = "Db-Password".parse().expect("valid");
        assert_eq!(name.as_str(), "Db-Password");
        assert_eq!(name.canonical(), "db-password");
        assert!("a b".parse::<ObjectName>().is_err());
        assert!("x".repeat(128).parse::<ObjectName>().is_err());
        assert!("x".repeat(127).parse::<ObjectName>().is_ok());
    }

    #[test]
    fn kinds_parse_singular_and_plural() {
        assert_eq!("key".parse(), Ok(ObjectKind::Keys));
        assert_eq!("certificates".parse(), Ok(ObjectKind::Certificates));
        assert!("blobs".parse::<ObjectKind>().is_err());
    }
}
