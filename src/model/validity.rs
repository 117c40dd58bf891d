//! The validity period Key Vault records on an object's current version (`nbf` and `exp` in its
//! `attributes`): what `kvkeep report` warns about before an object expires.

use serde::{Deserialize, Serialize};

/// `nbf` and `exp` of an object's current version, Unix seconds, each absent when the version has
/// none (most objects never expire).
///
/// Serialised as Key Vault names them (`{"nbf": ..., "exp": ...}`, absent keys left out), so
/// `{}` means "known: neither is set". Where kvkeep may not know them at all (captures recorded
/// before it read them), the holder is an `Option<Validity>` and `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// Not valid before (`nbf`).
    #[serde(rename = "nbf", default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// Expires at (`exp`).
    #[serde(rename = "exp", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

impl Validity {
    /// Whether the version is expired at `now`: Key Vault treats it as expired from `exp` on.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires.is_some_and(|exp| exp <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_key_vault_names_and_leaves_out_what_is_not_set() {
        let both = Validity {
            not_before: Some(10),
            expires: Some(20),
        };
        assert_eq!(
            serde_json::to_string(&both).expect("json"),
            r#"{"nbf":10,"exp":20}"#
        );
        assert_eq!(
            serde_json::to_string(&Validity::default()).expect("json"),
            "{}"
        );
        for text in [r#"{"nbf":10,"exp":20}"#, "{}", r#"{"exp":20}"#] {
            let parsed: Validity = serde_json::from_str(text).expect("parse");
            assert_eq!(serde_json::to_string(&parsed).expect("json"), text);
        }
    }

    #[test]
    fn expired_from_exp_on() {
        let v = Validity {
            not_before: None,
            expires: Some(100),
        };
        assert!(!v.is_expired_at(99));
        assert!(v.is_expired_at(100));
        assert!(!Validity::default().is_expired_at(i64::MAX));
    }
}
