//! From a request line to an [`Op`]: path normalisation (§2.3: `//` collapsed, trailing slash =
//! latest version, percent-decoding, case-insensitive collection segments), query parsing
//! (`%24skiptoken` = `$skiptoken`), api-version and `maxresults` checks, and the endpoint table
//! of §4.1–4.3.

use hyper::Method;
use serde_json::Value;

use crate::api::{Collection, Op};
use crate::error::KvError;

/// api-versions the emulator serves (§1: what the Rust and Python SDKs send).
const API_VERSIONS: [&str; 10] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2016-10-01",
    "2025-07-01",
    "2026-04-01",
];
const LATEST_API_VERSION: &str = "2026-04-01";

/// Default and maximum page size of the list endpoints.
pub(crate) const MAX_PAGE: usize = 25;

/// A request path split into decoded, non-empty segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub segments: Vec<String>,
}

impl Path {
    /// Splits and percent-decodes a raw path; empty segments (from `//` or a trailing slash) are
    /// dropped, which is exactly "trailing slash = latest version".
    pub fn parse(raw: &str) -> Result<Path, KvError> {
        let segments = raw
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_decode(s, false).ok_or_else(|| {
                    KvError::bad_parameter(format!(
                        "The request URI contains an invalid path: {raw}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Path { segments })
    }

    /// The canonical path (`/secrets/x/versions`), percent-encoded, for nextLinks.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            percent_encode_into(segment, &mut out);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// The query parameters the data plane understands, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pub api_version: Option<String>,
    pub skiptoken: Option<String>,
    pub maxresults: Option<String>,
    /// `outContentType` (S3), undecoded beyond percent-decoding; the vault validates it.
    pub out_content_type: Option<String>,
}

impl Query {
    /// Parses `a=b&c=d` with form-urlencoded decoding; keys are matched case-insensitively.
    pub fn parse(raw: Option<&str>) -> Result<Query, KvError> {
        let mut query = Query::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let invalid =
                || KvError::bad_parameter("The request URI contains an invalid query string.");
            let key = percent_decode(key, true).ok_or_else(invalid)?;
            let value = percent_decode(value, true).ok_or_else(invalid)?;
            match key.to_ascii_lowercase().as_str() {
                "api-version" => query.api_version = Some(value),
                "$skiptoken" => query.skiptoken = Some(value),
                "maxresults" => query.maxresults = Some(value),
                "outcontenttype" => query.out_content_type = Some(value),
                _ => {}
            }
        }
        Ok(query)
    }

    /// The api-version, if it is one the emulator serves.
    pub fn check_api_version(&self) -> Result<&str, KvError> {
        match self.api_version.as_deref() {
            None | Some("") => Err(KvError::bad_parameter(
                "The 'api-version' query parameter is missing. Specify a supported version, e.g. api-version=2025-07-01.",
            )),
            Some(v) if API_VERSIONS.contains(&v) => Ok(v),
            Some(v) => Err(KvError::bad_parameter(format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
            ))),
        }
    }

    /// `maxresults` as a page size: 1–25, default 25.
    pub fn page_size(&self) -> Result<usize, KvError> {
        match self.maxresults.as_deref() {
            None => Ok(MAX_PAGE),
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(KvError::bad_parameter(format!(
                    "Invalid maxresults value '{raw}': it must be an integer between 1 and {MAX_PAGE}."
                ))),
            },
        }
    }
}

/// Maps method and path to an operation (bodies `Null`, paging at its defaults; the dispatcher
/// fills them in).
pub(crate) fn route(method: &Method, path: &Path) -> Result<Op, KvError> {
    let s: Vec<&str> = path.segments.iter().map(String::as_str).collect();
    let unsupported = || {
        KvError::new(
            404,
            "NotFound",
            format!(
                "The requested operation {method} {} is not supported by this vault.",
                path.canonical()
            ),
        )
    };
    let Some(first) = s.first() else {
        return Err(unsupported());
    };
    let name = |i: usize| s[i].to_string();
    let is = |i: usize, word: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(word));

    if let Some(coll) = Collection::from_segment(first) {
        let after = None;
        let limit = MAX_PAGE;
        let op = match (method.as_str(), s.len()) {
            ("GET", 1) => Op::List { coll, after, limit },
            ("GET", 2) => Op::Get {
                coll,
                name: name(1),
                version: None,
                out_content_type: None,
            },
            ("GET", 3) if is(2, "versions") => Op::ListVersions {
                coll,
                name: name(1),
                after,
                limit,
            },
            ("GET", 3) if coll == Collection::Certificates && is(2, "policy") => {
                Op::GetCertificatePolicy { name: name(1) }
            }
            ("GET", 3) if coll == Collection::Certificates && is(2, "pending") => {
                Op::GetCertificateOperation { name: name(1) }
            }
            ("GET", 3) => Op::Get {
                coll,
                name: name(1),
                version: Some(name(2)),
                out_content_type: None,
            },
            ("PUT", 2) if coll == Collection::Secrets => Op::SetSecret {
                name: name(1),
                body: Value::Null,
            },
            ("PUT", 2) if coll == Collection::Keys => Op::ImportKey {
                name: name(1),
                body: Value::Null,
            },
            ("PATCH", 2) => Op::Update {
                coll,
                name: name(1),
                version: None,
                body: Value::Null,
            },
            ("PATCH", 3) => Op::Update {
                coll,
                name: name(1),
                version: Some(name(2)),
                body: Value::Null,
            },
            ("DELETE", 2) => Op::Delete {
                coll,
                name: name(1),
            },
            ("POST", 2) if is(1, "restore") => Op::Restore {
                coll,
                body: Value::Null,
            },
            ("POST", 3) if is(2, "backup") => Op::Backup {
                coll,
                name: name(1),
            },
            ("POST", 3) if coll == Collection::Keys && is(2, "create") => Op::CreateKey {
                name: name(1),
                body: Value::Null,
            },
            ("POST", 3) if coll == Collection::Certificates && is(2, "create") => {
                Op::CreateCertificate {
                    name: name(1),
                    body: Value::Null,
                }
            }
            ("POST", 3) if coll == Collection::Certificates && is(2, "import") => {
                Op::ImportCertificate {
                    name: name(1),
                    body: Value::Null,
                }
            }
            _ => return Err(unsupported()),
        };
        return Ok(op);
    }
    if let Some(coll) = Collection::from_deleted_segment(first) {
        let op = match (method.as_str(), s.len()) {
            ("GET", 1) => Op::ListDeleted {
                coll,
                after: None,
                limit: MAX_PAGE,
            },
            ("GET", 2) => Op::GetDeleted {
                coll,
                name: name(1),
            },
            ("DELETE", 2) => Op::Purge {
                coll,
                name: name(1),
            },
            ("POST", 3) if is(2, "recover") => Op::Recover {
                coll,
                name: name(1),
            },
            _ => return Err(unsupported()),
        };
        return Ok(op);
    }
    Err(unsupported())
}

/// The body slot of an operation that takes a JSON body.
pub(crate) fn body_slot(op: &mut Op) -> Option<&mut Value> {
    match op {
        Op::SetSecret { body, .. }
        | Op::CreateKey { body, .. }
        | Op::ImportKey { body, .. }
        | Op::ImportCertificate { body, .. }
        | Op::CreateCertificate { body, .. }
        | Op::Update { body, .. }
        | Op::Restore { body, .. } => Some(body),
        _ => None,
    }
}

/// The paging slots of a list operation.
pub(crate) fn paging_slot(op: &mut Op) -> Option<(&mut Option<String>, &mut usize)> {
    match op {
        Op::List { after, limit, .. }
        | Op::ListVersions { after, limit, .. }
        | Op::ListDeleted { after, limit, .. } => Some((after, limit)),
        _ => None,
    }
}

/// The `outContentType` slot of a secret get; other operations (and key or certificate gets,
/// for which the service defines no such parameter) have none, so the parameter is ignored there
/// like any unknown query parameter.
pub(crate) fn out_content_type_slot(op: &mut Op) -> Option<&mut Option<String>> {
    match op {
        Op::Get {
            coll: Collection::Secrets,
            out_content_type,
            ..
        } => Some(out_content_type),
        _ => None,
    }
}

/// Percent-decodes; `plus_is_space` for query components (form encoding). `None` if the result
/// is not UTF-8.
fn percent_decode(input: &str, plus_is_space: bool) -> Option<String> {
    if !input.contains(['%', '+']) {
        return Some(input.to_string());
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode_into(segment: &str, out: &mut String) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, path: &str) -> Result<Op, KvError> {
        route(&method, &Path::parse(path)?)
    }

    #[test]
    fn trailing_and_double_slashes_normalise() {
        let latest = Op::Get {
            coll: Collection::Secrets,
            name: "s1".into(),
            version: None,
            out_content_type: None,
        };
        assert_eq!(op(Method::GET, "/secrets/s1/").unwrap(), latest);
        assert_eq!(op(Method::GET, "//secrets//s1").unwrap(), latest);
        assert_eq!(
            op(Method::POST, "/certificates//restore").unwrap(),
            Op::Restore {
                coll: Collection::Certificates,
                body: Value::Null
            }
        );
    }

    #[test]
    fn collection_segments_are_case_insensitive() {
        assert!(matches!(
            op(Method::GET, "/deletedSecrets").unwrap(),
            Op::ListDeleted {
                coll: Collection::Secrets,
                ..
            }
        ));
        assert!(matches!(
            op(Method::GET, "/Keys/k/Versions").unwrap(),
            Op::ListVersions {
                coll: Collection::Keys,
                ..
            }
        ));
        assert!(matches!(
            op(Method::POST, "/deletedkeys/k/recover").unwrap(),
            Op::Recover { .. }
        ));
    }

    #[test]
    fn unknown_routes_are_404() {
        assert_eq!(op(Method::GET, "/").unwrap_err().status, 404);
        assert_eq!(op(Method::POST, "/secrets").unwrap_err().status, 404);
        assert_eq!(op(Method::GET, "/storage/x").unwrap_err().status, 404);
    }

    #[test]
    fn query_keys_are_percent_decoded() {
        let q = Query::parse(Some("%24skiptoken=abc_-&api-version=7.6&maxresults=3")).unwrap();
        assert_eq!(q.skiptoken.as_deref(), Some("abc_-"));
        assert_eq!(q.check_api_version().unwrap(), "7.6");
        assert_eq!(q.page_size().unwrap(), 3);
    }

    #[test]
    fn out_content_type_is_read_case_insensitively_and_only_kept_for_secrets() {
        let q = Query::parse(Some(
            "api-version=2025-07-01&OUTCONTENTTYPE=application%2Fx-pem-file",
        ))
        .unwrap();
        assert_eq!(
            q.out_content_type.as_deref(),
            Some("application/x-pem-file")
        );
        let mut secret = op(Method::GET, "/secrets/s1/abc").unwrap();
        *out_content_type_slot(&mut secret).unwrap() = q.out_content_type.clone();
        assert_eq!(
            secret,
            Op::Get {
                coll: Collection::Secrets,
                name: "s1".into(),
                version: Some("abc".into()),
                out_content_type: Some("application/x-pem-file".into()),
            }
        );
        for path in ["/keys/k1", "/certificates/c1/", "/secrets/s1/versions"] {
            let mut other = op(Method::GET, path).unwrap();
            assert!(out_content_type_slot(&mut other).is_none(), "{path}");
        }
    }

    #[test]
    fn api_version_and_maxresults_are_checked() {
        let bad = Query::parse(Some("api-version=2020-01-01")).unwrap();
        assert_eq!(
            bad.check_api_version().unwrap_err().message,
            "The specified version (2020-01-01) is not recognized. Consider using the latest supported version (2026-04-01)."
        );
        assert_eq!(
            Query::default().check_api_version().unwrap_err().code,
            "BadParameter"
        );
        for raw in ["0", "26", "x", "-1"] {
            let q = Query::parse(Some(&format!("maxresults={raw}"))).unwrap();
            assert_eq!(q.page_size().unwrap_err().status, 400, "{raw}");
        }
    }

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%2", false).as_deref(), Some("a%2"));
        assert_eq!(percent_decode("a%41", false).as_deref(), Some("aA"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%FF", false), None);
        assert_eq!(
            Path::parse("/secrets/a%2Fb").unwrap().canonical(),
            "/secrets/a%2Fb"
        );
    }
}
