//! Skip tokens and nextLinks (§6). A token is the base64url (unpadded) encoding of the vault's
//! opaque name marker, so it only ever contains `[A-Za-z0-9_-]` and survives the SDKs'
//! re-encoding of the query (`+` would turn into a space). A one-byte tag in front also lets a
//! token mean "from the start", which the `emptyPage` fault needs on a first page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::KvError;

const MARKER: u8 = b'm';
const START: u8 = b's';

/// The token that resumes a listing at `after` (`None` = from the first item).
pub(crate) fn encode(after: Option<&str>) -> String {
    let mut plain = Vec::with_capacity(1 + after.map_or(0, str::len));
    match after {
        Some(marker) => {
            plain.push(MARKER);
            plain.extend_from_slice(marker.as_bytes());
        }
        None => plain.push(START),
    }
    URL_SAFE_NO_PAD.encode(plain)
}

/// Reads a token back; anything the emulator did not make is a 400.
pub(crate) fn decode(token: &str) -> Result<Option<String>, KvError> {
    let invalid = || KvError::bad_parameter(format!("The skip token '{token}' is not valid."));
    let plain = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    match plain.split_first() {
        Some((&START, [])) => Ok(None),
        Some((&MARKER, rest)) => String::from_utf8(rest.to_vec())
            .map(Some)
            .map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// `https://{authority}{path}?api-version=..&$skiptoken=..[&maxresults=n]`: absolute, from the
/// authority the client used, with `maxresults` only when the client sent it.
pub(crate) fn next_link(
    authority: &str,
    path: &str,
    api_version: &str,
    token: &str,
    maxresults: Option<usize>,
) -> String {
    let mut link =
        format!("https://{authority}{path}?api-version={api_version}&$skiptoken={token}");
    if let Some(n) = maxresults {
        link.push_str(&format!("&maxresults={n}"));
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_url_safe() {
        for marker in [None, Some(""), Some("SECRET-00042"), Some("a+b/c=d ü")] {
            let token = encode(marker);
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(decode(&token).unwrap().as_deref(), marker);
        }
    }

    #[test]
    fn foreign_tokens_are_bad_parameters() {
        for token in ["", "!!", "eHl6", "25"] {
            assert_eq!(decode(token).unwrap_err().code, "BadParameter", "{token}");
        }
    }

    #[test]
    fn next_link_echoes_maxresults_only_when_sent() {
        assert_eq!(
            next_link("kv1.vault.localhost:8443", "/secrets", "7.6", "bXg", None),
            "https://kv1.vault.localhost:8443/secrets?api-version=7.6&$skiptoken=bXg"
        );
        assert!(next_link("a", "/keys", "7.6", "t", Some(3)).ends_with("&maxresults=3"));
    }
}
