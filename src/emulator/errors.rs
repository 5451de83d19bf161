//! DPS-shaped errors, independent of any transport.
//!
//! Every failure the emulator answers is a [`DpsError`]: a status (HTTP's
//! number, also what MQTT puts in `$dps/registrations/res/{status}/`), the
//! six-digit DPS code and a message. [`DpsError::body`] renders the body DPS
//! clients parse (`errorCode`, `trackingId`, `message`, `timestampUtc`,
//! contract §5.1) for any transport; only the HTTP edge ([`super::http`])
//! turns the status into a `StatusCode` and headers. The `message` names the
//! exact check that failed: Azure's own 401s are famously opaque, and saying
//! why is the point of the emulator.

use serde_json::{Value, json};

use super::model::{now_utc_string, random_uuid};

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpsError {
    /// Status: HTTP's status number, and MQTT's reply-topic status.
    pub status: u16,
    /// Six-digit DPS code: status × 1000 + sub-code.
    pub code: u32,
    /// What went wrong, and where possible how to fix it. Never holds secrets.
    pub message: String,
    /// The front-door shape (`{"Message":"ErrorCode:…"}`) used for api-version errors.
    pub gateway: bool,
}

/// Result type of the emulator's rules and handlers.
pub type DpsResult<T> = std::result::Result<T, DpsError>;

impl DpsError {
    fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        DpsError {
            status,
            code,
            message: message.into(),
            gateway: false,
        }
    }

    /// 400 400004 ArgumentInvalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, 400_004, message)
    }

    /// 400 400012 "Deserialization error": a field DPS cannot decode (a PEM
    /// or non-base64 `csr`, as seen from the service).
    pub fn deserialization(message: impl Into<String>) -> Self {
        Self::new(400, 400_012, message)
    }

    /// 400 in the gateway shape DPS uses for a missing or unknown api-version (§2.2).
    pub fn api_version(message: impl Into<String>) -> Self {
        let mut e = Self::new(400, 400_001, message);
        e.gateway = true;
        e
    }

    /// 401 401002: authentication or attestation failed.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, 401_002, message)
    }

    /// 404 with the given DPS code (404201 enrollment, 404202 registration, 404204 group).
    pub fn not_found(code: u32, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, 405_000, message)
    }

    /// 409 with the given DPS code (409201 enrollment, 409202 group).
    pub fn conflict(code: u32, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 412 412001: `If-Match` does not match the stored etag.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(412, 412_001, message)
    }

    /// 413: the request body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            413_001,
            format!("the request body is larger than the emulator's limit of {limit} bytes"),
        )
    }

    /// 408: the client stopped sending its request body.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(408, 408_000, message)
    }

    /// 500: the store failed (disk full, I/O error).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, 500_000, message)
    }

    /// The JSON body DPS sends for this error, with a fresh tracking id.
    pub fn body(&self, tracking_id: &str) -> Value {
        let now = now_utc_string();
        if self.gateway {
            json!({
                "Message": format!("ErrorCode:ArgumentInvalid;{}", self.message),
                "ExceptionMessage": format!("Tracking ID:{tracking_id}-G2:-TimeStamp:{now}"),
            })
        } else {
            json!({
                "errorCode": self.code,
                "trackingId": tracking_id,
                "message": self.message,
                "timestampUtc": now,
            })
        }
    }

    /// A new tracking id for one reply.
    pub fn new_tracking_id() -> String {
        random_uuid()
    }
}

impl std::fmt::Display for DpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for DpsError {}

/// Parses a JSON body of type `T`; `what` names the expected type in messages.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> DpsResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DpsError::bad_request(format!(
            "the request body is empty; expected a JSON {what}"
        )));
    }
    // serde's message quotes the offending value, which may be a key the
    // client sent (`"symmetricKey": …`): report only where and what kind.
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            serde_json::error::Category::Data => "a field has the wrong type or value",
            serde_json::error::Category::Io => "unreadable",
        };
        DpsError::bad_request(format!(
            "the request body is not a valid {what}: {kind} at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}
