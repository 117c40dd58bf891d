//! Translation of `azure_core` errors into the source vocabulary (STYLE.md: "translate vendor
//! errors at the adapter"): HTTP status → [`SourceErrorKind`], the service's `error.code`,
//! `innererror.code` and message kept, `Retry-After` read for 429/503.

use azure_core::error::ErrorKind;

use super::error::{SourceError, SourceErrorKind, SourceOp};
use super::sdk_retry::NotSent;
use crate::azure::{error_chain, retry_after};
use crate::model::{ObjectKind, VaultName};

/// Translates an SDK error into the source vocabulary (STYLE.md "translate vendor errors at the
/// adapter"). The service's JSON body is parsed here rather than trusting the SDK's
/// `error_code`: azure_core 1.1 reports the bare status as the code when the message contains a
/// JSON escape (the 403 wordings `Operation "backup" is not allowed…` do).
pub(super) fn translate(
    e: &azure_core::Error,
    op: SourceOp,
    vault: &VaultName,
    kind: ObjectKind,
    name: Option<&str>,
) -> SourceError {
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let status = u16::from(*status);
            let body = raw_response
                .as_ref()
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(r.body().as_ref()).ok())
                .unwrap_or_default();
            let error = &body["error"];
            let code = error["code"]
                .as_str()
                .map(str::to_string)
                .or_else(|| error_code.clone().filter(|c| c.parse::<u16>().is_err()));
            let inner = error["innererror"]["code"].as_str().map(str::to_string);
            let message = error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("http status {status}"));
            let source_kind = match status {
                404 => SourceErrorKind::NotFound,
                409 => SourceErrorKind::Conflict,
                401 | 403 => SourceErrorKind::Forbidden,
                429 => SourceErrorKind::Throttled,
                408 | 500..=599 => SourceErrorKind::Transient,
                _ => SourceErrorKind::Permanent,
            };
            let retry_after = match status {
                429 | 503 => raw_response.as_ref().and_then(|r| retry_after(r.headers())),
                _ => None,
            };
            SourceError::new(source_kind, op, vault, kind, name, message)
                .with_codes(code, inner)
                .with_retry_after(retry_after)
        }
        ErrorKind::Io | ErrorKind::Connection => SourceError::new(
            SourceErrorKind::Transient,
            op,
            vault,
            kind,
            name,
            format!("connection to key vault failed: {}", error_chain(e)),
        ),
        ErrorKind::Credential => SourceError::new(
            SourceErrorKind::Forbidden,
            op,
            vault,
            kind,
            name,
            format!(
                "no access token for key vault: {}; check the [azure] credential",
                error_chain(e)
            ),
        ),
        ErrorKind::DataConversion => SourceError::new(
            SourceErrorKind::Permanent,
            op,
            vault,
            kind,
            name,
            format!("unexpected answer from key vault: {}", error_chain(e)),
        ),
        _ => match not_sent(e) {
            Some(NotSent::Interrupted) => SourceError::interrupted(op, vault, kind, name),
            // Transient: the vault may well be fine; the caller checks what happened.
            Some(lost @ NotSent::AnswerLost(_)) => SourceError::new(
                SourceErrorKind::Transient,
                op,
                vault,
                kind,
                name,
                lost.to_string(),
            ),
            None => SourceError::new(
                SourceErrorKind::Permanent,
                op,
                vault,
                kind,
                name,
                error_chain(e),
            ),
        },
    }
}

/// kvkeep's own "not sent" marker, wherever in the chain the SDK's retry put it (it wraps
/// errors it will not retry in a context message).
fn not_sent(e: &azure_core::Error) -> Option<&NotSent> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(marker) = err.downcast_ref::<NotSent>() {
            return Some(marker);
        }
        if let Some(marker) = err
            .downcast_ref::<azure_core::Error>()
            .and_then(|az| az.get_ref())
            .and_then(|inner| inner.downcast_ref::<NotSent>())
        {
            return Some(marker);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::headers::Headers;
    use std::time::Duration;

    fn http_error(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &str,
    ) -> azure_core::Error {
        use azure_core::http::{headers::HeaderName, RawResponse, StatusCode};
        let mut h = Headers::new();
        for (k, v) in headers {
            h.insert(HeaderName::from_static(k), *v);
        }
        let raw = RawResponse::from_bytes(StatusCode::from(status), h, body.as_bytes().to_vec());
        ErrorKind::HttpResponse {
            status: StatusCode::from(status),
            // What azure_core reports when it cannot parse the body.
            error_code: Some(status.to_string()),
            raw_response: Some(Box::new(raw)),
        }
        .into_error()
    }

    fn tr(e: azure_core::Error) -> SourceError {
        let vault: VaultName = "kv1".parse().expect("vault");
        translate(
            &e,
            SourceOp::Restore,
            &vault,
            ObjectKind::Secrets,
            Some("db"),
        )
    }

    #[test]
    fn statuses_map_to_the_source_vocabulary() {
        let conflict = tr(http_error(
            409,
            &[],
            r#"{"error":{"code":"Conflict","message":"Secret db is currently in a deleted but recoverable state","innererror":{"code":"ObjectIsDeletedButRecoverable"}}}"#,
        ));
        assert_eq!(conflict.kind(), SourceErrorKind::Conflict);
        assert_eq!(conflict.code(), Some("Conflict"));
        assert_eq!(conflict.inner_code(), Some("ObjectIsDeletedButRecoverable"));
        assert!(conflict.to_string().contains("deleted but recoverable"));

        // The body's code wins over the status number the SDK reports for escaped messages.
        let forbidden = tr(http_error(
            403,
            &[],
            r#"{"error":{"code":"Forbidden","message":"Operation \"backup\" is not allowed on this Key"}}"#,
        ));
        assert_eq!(forbidden.kind(), SourceErrorKind::Forbidden);
        assert_eq!(forbidden.code(), Some("Forbidden"));
        assert!(forbidden.detail().contains("Operation \"backup\""));

        let throttled = tr(http_error(429, &[("x-ms-retry-after-ms", "250")], "{}"));
        assert_eq!(throttled.kind(), SourceErrorKind::Throttled);
        assert_eq!(throttled.retry_after(), Some(Duration::from_millis(250)));
        let throttled = tr(http_error(429, &[("retry-after", "3")], ""));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            throttled.code(),
            None,
            "a bare status is not a service code"
        );

        assert_eq!(
            tr(http_error(404, &[], "{}")).kind(),
            SourceErrorKind::NotFound
        );
        assert_eq!(
            tr(http_error(401, &[], "{}")).kind(),
            SourceErrorKind::Forbidden
        );
        assert_eq!(
            tr(http_error(503, &[], "{}")).kind(),
            SourceErrorKind::Transient
        );
        assert_eq!(
            tr(http_error(500, &[], "{}")).kind(),
            SourceErrorKind::Transient
        );
        let bad = tr(http_error(
            400,
            &[],
            r#"{"error":{"code":"Malformed backup blob","message":"Backup blob is corrupt."}}"#,
        ));
        assert_eq!(bad.kind(), SourceErrorKind::Permanent);
        assert_eq!(bad.code(), Some("Malformed backup blob"));

        let io = tr(azure_core::Error::with_message(
            ErrorKind::Io,
            "connection reset by peer",
        ));
        assert_eq!(io.kind(), SourceErrorKind::Transient);
        assert!(io.to_string().contains("connection reset"));
        assert_eq!(
            tr(azure_core::Error::with_message(
                ErrorKind::Credential,
                "no token"
            ))
            .kind(),
            SourceErrorKind::Forbidden
        );
    }
}
