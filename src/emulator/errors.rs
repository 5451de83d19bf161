//! DPS-shaped error responses.
//!
//! Every failure the emulator answers goes through [`ApiError`], so each one
//! carries the body DPS clients parse (`errorCode`, `trackingId`, `message`,
//! `timestampUtc`, contract §5.1) and `Content-Type: application/json;
//! charset=utf-8` (Node clients only parse bodies with a JSON content type).
//! The `message` names the exact check that failed: Azure's own 401s are
//! famously opaque, and saying why is the point of the emulator.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::model::{now_utc_string, random_uuid};

/// The content type of every JSON reply (contract §2.4).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Six-digit DPS code: HTTP status × 1000 + sub-code.
    pub code: u32,
    /// What went wrong, and where possible how to fix it. Never holds secrets.
    pub message: String,
    /// The front-door shape (`{"Message":"ErrorCode:…"}`) used for api-version errors.
    gateway: bool,
}

/// Handler result type.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            gateway: false,
        }
    }

    /// 400 400004 ArgumentInvalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 400_004, message)
    }

    /// 400 in the gateway shape DPS uses for a missing or unknown api-version (§2.2).
    pub fn api_version(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, 400_001, message);
        e.gateway = true;
        e
    }

    /// 401 401002: authentication or attestation failed.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 401_002, message)
    }

    /// 404 with the given DPS code (404201 enrollment, 404202 registration, 404204 group).
    pub fn not_found(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, 405_000, message)
    }

    /// 409 with the given DPS code (409201 enrollment, 409202 group).
    pub fn conflict(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 412 412001: `If-Match` does not match the stored etag.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, 412_001, message)
    }

    /// 413: the request body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            413_001,
            format!("the request body is larger than the emulator's limit of {limit} bytes"),
        )
    }

    /// 408: the client stopped sending its request body.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, 408_000, message)
    }

    /// 500: the store failed (disk full, I/O error).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 500_000, message)
    }

    /// The HTTP response for this error.
    pub fn into_response(self) -> Response<Body> {
        let tracking = random_uuid();
        let now = now_utc_string();
        let body = if self.gateway {
            json!({
                "Message": format!("ErrorCode:ArgumentInvalid;{}", self.message),
                "ExceptionMessage": format!("Tracking ID:{tracking}-G2:-TimeStamp:{now}"),
            })
        } else {
            json!({
                "errorCode": self.code,
                "trackingId": tracking,
                "message": self.message,
                "timestampUtc": now,
            })
        };
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        if let Ok(v) = HeaderValue::from_str(&tracking) {
            h.insert("x-ms-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.code.to_string()) {
            h.insert("x-ms-error-code", v);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}
