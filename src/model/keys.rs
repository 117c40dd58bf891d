//! Run ids, object versions and blob keys: the names under which backups are written and found.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::IdError;

/// One backup run of one vault. Random, 16 lowercase hex characters; unique per run so that blob
/// names never collide and nothing is ever overwritten.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A fresh random run id.
    pub fn random() -> Self {
        use rand::Rng;
        let n: u64 = rand::thread_rng().gen();
        RunId(format!("{n:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(RunId(s.to_string()))
        } else {
            Err(IdError::RunId(s.to_string()))
        }
    }
}

impl TryFrom<String> for RunId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RunId> for String {
    fn from(v: RunId) -> String {
        v.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Key Vault object version id (32 lowercase hex characters on the real service).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectVersion(String);

impl ObjectVersion {
    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectVersion {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(ObjectVersion(s.to_ascii_lowercase()))
        } else {
            Err(IdError::ObjectVersion(s.to_string()))
        }
    }
}

impl TryFrom<String> for ObjectVersion {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ObjectVersion> for String {
    fn from(v: ObjectVersion) -> String {
        v.0
    }
}

impl fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a blob in the store, relative to the configured prefix: `/`-separated segments
/// of ASCII letters, digits, `-`, `_` and `.`, with no empty, `.` or `..` segment. The same key
/// is valid for Azure Blob Storage and as a relative path on a local file system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobKey(String);

impl BlobKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Joins validated segments.
    pub fn from_segments<I, S>(segments: I) -> Result<Self, IdError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = segments
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/");
        joined.parse()
    }
}

impl FromStr for BlobKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 1024
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        if valid {
            Ok(BlobKey(s.to_string()))
        } else {
            Err(IdError::BlobKey(s.to_string()))
        }
    }
}

impl TryFrom<String> for BlobKey {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BlobKey> for String {
    fn from(v: BlobKey) -> String {
        v.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_random_hex_and_round_trip() {
        let a = RunId::random();
        let b = RunId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().parse::<RunId>(), Ok(a.clone()));
        assert!("xyz".parse::<RunId>().is_err());
    }

    #[test]
    fn blob_keys_refuse_path_tricks() {
        assert!(
            "objects/kv1/secrets/db/20261128T190000Z-0123456789abcdef.age"
                .parse::<BlobKey>()
                .is_ok()
        );
        for bad in [
            "", "/abs", "a//b", "a/../b", "./a", "a/", "a b", "a\\b", "ä",
        ] {
            assert!(bad.parse::<BlobKey>().is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            BlobKey::from_segments(["manifests", "kv1", "x.age"]).map(|k| k.to_string()),
            Ok("manifests/kv1/x.age".to_string())
        );
    }

    #[test]
    fn versions_are_lower_cased() {
        let v: ObjectVersion = "ABCdef0123".parse().expect("valid");
        assert_eq!(v.as_str(), "abcdef0123");
        assert!("a-b".parse::<ObjectVersion>().is_err());
    }
}
