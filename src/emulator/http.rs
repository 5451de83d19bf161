//! The HTTP edge: a parsed request as handlers see it, and the replies.
//!
//! A leaf module: it imports no handler, so the dispatcher
//! ([`super::router`]) and the handlers ([`super::service`],
//! [`super::device`], [`super::arm`]) all depend on it and not on each
//! other. [`error_response`] is the one place a [`DpsError`] becomes an HTTP
//! status and headers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use rustls::pki_types::CertificateDer;

use super::errors::{DpsError, DpsResult, parse_json};

/// The content type of every JSON reply (contract §2.4).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The certificate chain a TLS client presented (leaf first); empty if none.
#[derive(Clone, Debug, Default)]
pub struct PeerChain(pub Arc<Vec<CertificateDer<'static>>>);

/// A parsed request, as handlers see it.
pub struct Req {
    pub method: Method,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
    pub peer: PeerChain,
}

impl Req {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter (first occurrence).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The host the client addressed (Host header), default `localhost`.
    pub fn host(&self) -> &str {
        self.header("host").unwrap_or("localhost")
    }

    /// `If-Match`, if sent.
    pub fn if_match(&self) -> Option<&str> {
        self.header("if-match")
    }

    /// The body as JSON of type `T`; `what` names the expected type in messages.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> DpsResult<T> {
        parse_json(&self.body, what)
    }
}

/// A 200 (or other) reply with a JSON body and DPS's content type.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    r
}

/// 204 with no body and no Content-Type (what DELETE answers, §2.4).
pub fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// The HTTP response for an error: its status, DPS's body, and the
/// `x-ms-request-id` / `x-ms-error-code` headers.
pub fn error_response(e: &DpsError) -> Response<Body> {
    let tracking = DpsError::new_tracking_id();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, &e.body(&tracking));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tracking) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&e.code.to_string()) {
        h.insert("x-ms-error-code", v);
    }
    resp
}

/// Whether an `If-Match` value matches `etag`: verbatim, `*`, or with one
/// layer of quotes (and `W/`) removed, since C# v1 wraps etags in quotes (§3.2),
/// so its forced update sends `"*"`.
pub fn etag_matches(if_match: &str, etag: &str) -> bool {
    let v = if_match.trim();
    if v == "*" || v == etag {
        return true;
    }
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .is_some_and(|s| s == etag || s == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert!(etag_matches("abc=", "abc="));
        assert!(etag_matches("\"abc=\"", "abc="));
        assert!(etag_matches("W/\"abc=\"", "abc="));
        assert!(etag_matches("*", "abc="));
        assert!(etag_matches("\"*\"", "abc="));
        assert!(!etag_matches("abd=", "abc="));
    }

    #[test]
    fn errors_carry_status_code_and_headers() {
        let r = error_response(&DpsError::unauthorized("why"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["x-ms-error-code"], "401002");
    }
}
