//! Building responses: JSON bodies with the headers the real service sends on every response
//! (§16), errors in Key Vault's shape, and the bare 204 of a purge.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use rand::RngCore;
use serde_json::Value;

use crate::error::KvError;

/// The response type of every handler.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// The version string the emulator reports in `x-ms-keyvault-service-version`.
const SERVICE_VERSION: &str = "1.9.2440.1";

/// Per-request values that go into the common headers.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub region: String,
    pub client_request_id: Option<HeaderValue>,
    pub peer: IpAddr,
}

impl Meta {
    pub fn new(headers: &HeaderMap, peer: IpAddr) -> Self {
        Meta {
            region: "westeurope".into(),
            client_request_id: headers.get("x-ms-client-request-id").cloned(),
            peer,
        }
    }
}

/// A JSON response with the common headers.
pub(crate) fn json(status: u16, body: &Value, meta: &Meta) -> HttpResponse {
    // Serialising a `Value` cannot fail (keys are strings); an empty body would still be a
    // well-formed response should it ever happen.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status_code(status);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    common_headers(response.headers_mut(), meta);
    response
}

/// An error in the service's `{"error":{...}}` shape.
pub(crate) fn error(err: &KvError, meta: &Meta) -> HttpResponse {
    json(err.status, &err.body(), meta)
}

/// `204` without body or content type (purge).
pub(crate) fn no_content(meta: &Meta) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    common_headers(response.headers_mut(), meta);
    response
}

/// Adds `Retry-After` (seconds) and/or `x-ms-retry-after-ms` when configured.
pub(crate) fn with_retry_after(
    mut response: HttpResponse,
    seconds: Option<u64>,
    millis: Option<u64>,
) -> HttpResponse {
    let headers = response.headers_mut();
    if let Some(seconds) = seconds {
        headers.insert("retry-after", HeaderValue::from(seconds));
    }
    if let Some(millis) = millis {
        headers.insert("x-ms-retry-after-ms", HeaderValue::from(millis));
    }
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn common_headers(headers: &mut HeaderMap, meta: &Meta) {
    const STATIC: [(&str, &str); 5] = [
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("expires", "-1"),
        (
            "strict-transport-security",
            "max-age=31536000;includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
    ];
    for (name, value) in STATIC {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id()) {
        headers.insert("x-ms-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&meta.region) {
        headers.insert("x-ms-keyvault-region", value);
    }
    headers.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static(SERVICE_VERSION),
    );
    let network = match meta.peer {
        IpAddr::V4(ip) => format!("conn_type=Ipv4;addr={ip};act_addr_fam=InterNetwork;"),
        IpAddr::V6(ip) => format!("conn_type=Ipv6;addr={ip};act_addr_fam=InterNetworkV6;"),
    };
    if let Ok(value) = HeaderValue::from_str(&network) {
        headers.insert("x-ms-keyvault-network-info", value);
    }
    if let Some(id) = &meta.client_request_id {
        headers.insert("x-ms-client-request-id", id.clone());
    }
    // hyper adds `date` itself (cached once a second).
}

/// A random version-4 UUID, formatted as the service's request ids are.
fn request_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
        assert_ne!(request_id(), id);
    }
}
