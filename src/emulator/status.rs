//! The emulator's read-only status page, on its HTTPS listener: enrollment
//! groups, individual enrollments, registration states and the last
//! [`MAX_ATTEMPTS`] registration attempts (newest first, with the exact
//! reason for each refusal), refreshing itself every two seconds.
//!
//! `GET /?token=…` serves one HTML file with a small inline script (no build
//! step, nothing loaded from elsewhere: the Content-Security-Policy forbids
//! it); the script polls `GET /status.json?token=…`. The token is derived
//! from the service SAS key ([`token_for`]) and printed in the start-up text
//! as a ready link; the SAS key itself is accepted too. Anything else gets
//! 401. The JSON is built from an explicit list of fields, so symmetric keys
//! and SAS keys can never appear on the page.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};

use super::State;
use super::attest::Presented;
use super::errors::{DpsError, DpsResult};
use super::http::{Req, json_response};
use super::model::now_utc_string;
use super::registration::Accepted;
use super::store::{ENROLLMENTS, GROUPS, REGISTRATIONS, page_json, store_error};
use crate::regid::RegistrationId;

/// Registration attempts kept for the page.
pub const MAX_ATTEMPTS: usize = 50;
/// Rows read per table for the page (a local emulator rarely has more).
const MAX_ROWS: usize = 500;
/// The page itself.
const PAGE: &str = include_str!("status/page.html");

/// One registration attempt, as the page shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub time: String,
    pub registration_id: String,
    /// `X.509` or `symmetric key` (or `none` when the device sent neither).
    pub via: &'static str,
    /// `assigned`, `disabled`, `failed`, `unassigned`, or `refused (HTTP n)`.
    pub result: String,
    /// The hub for an assignment, else the reason the emulator gave.
    pub detail: String,
}

/// The last attempts, newest last.
#[derive(Debug, Default)]
pub struct Attempts(Mutex<VecDeque<Attempt>>);

impl Attempts {
    fn push(&self, a: Attempt) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= MAX_ATTEMPTS {
                q.pop_front();
            }
            q.push_back(a);
        }
    }

    fn newest_first(&self) -> Vec<Attempt> {
        self.0
            .lock()
            .map(|q| q.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// The page's access token for an emulator whose service SAS key is
/// `sas_key_b64`: 32 hex digits of HMAC-SHA256(key, "pki emulator status
/// page"). Stable across restarts, reveals nothing about the key.
pub fn token_for(sas_key_b64: &str) -> String {
    let key = crate::dps::sas::decode_key(sas_key_b64).unwrap_or_default();
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let tag = aws_lc_rs::hmac::sign(&k, b"pki emulator status page");
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records the outcome of one registration (any transport) for the page.
pub fn record(
    state: &State,
    reg: &RegistrationId,
    presented: &Presented<'_>,
    result: &DpsResult<Accepted>,
) {
    let via = if presented.sas.is_some() {
        "symmetric key"
    } else if !presented.chain.is_empty() {
        "X.509"
    } else {
        "none"
    };
    let (result, detail) = match result {
        Ok(accepted) => {
            let st = state
                .operations
                .lock()
                .ok()
                .and_then(|ops| ops.get(&accepted.operation_id))
                .map(|op| op.state);
            match st {
                Some(st) => (
                    st.status.to_string(),
                    st.assigned_hub.or(st.error_message).unwrap_or_default(),
                ),
                None => ("accepted".to_owned(), String::new()),
            }
        }
        Err(e) => (format!("refused (HTTP {})", e.status), e.message.clone()),
    };
    state.attempts.push(Attempt {
        time: now_utc_string(),
        registration_id: reg.to_string(),
        via,
        result,
        detail,
    });
}

/// Serves `GET /` (the page) and `GET /status.json` (its data).
pub fn dispatch(state: &State, req: &Req, data: bool) -> DpsResult<Response<Body>> {
    if req.method != Method::GET {
        return Err(DpsError::method_not_allowed(
            "the status page is read-only: GET / or /status.json",
        ));
    }
    authorize(state, req)?;
    let mut resp = if data {
        json_response(StatusCode::OK, &snapshot(state)?)
    } else {
        let mut r = Response::new(Body::from(PAGE));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

/// `?token=` must be the page token or the service SAS key (constant time).
fn authorize(state: &State, req: &Req) -> DpsResult<()> {
    let given = req.query("token").unwrap_or("").as_bytes();
    let ok = [token_for(&state.sas_key), state.sas_key.clone()]
        .iter()
        .any(|t| aws_lc_rs::constant_time::verify_slices_are_equal(t.as_bytes(), given).is_ok());
    if ok {
        Ok(())
    } else {
        Err(DpsError::unauthorized(
            "the status page needs ?token= (the link in the emulator's start-up text) or the service SAS key",
        ))
    }
}

/// A table of JSON records.
type JsonTable = redb::TableDefinition<'static, &'static str, &'static [u8]>;

/// Reads up to [`MAX_ROWS`] JSON records of a table.
fn rows(state: &State, table: JsonTable) -> DpsResult<Vec<Value>> {
    let r = state.store.read()?;
    let t = r.open_table(table).map_err(store_error)?;
    let (items, _) = page_json::<Value>(&t, None, MAX_ROWS).map_err(store_error)?;
    Ok(items)
}

fn attestation(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    match s("/attestation/type").unwrap_or("?") {
        "x509" => {
            let x = |p: &str| s(&format!("/attestation/x509/{p}"));
            let name = x("signingCertificates/primary/info/subjectName")
                .or_else(|| x("clientCertificates/primary/info/subjectName"))
                .map(|n| format!("X.509: {n}"))
                .or_else(|| x("caReferences/primary").map(|r| format!("X.509: CA reference {r}")));
            name.unwrap_or_else(|| "X.509".to_owned())
        }
        "symmetricKey" => "symmetric key".to_owned(),
        other => other.to_owned(),
    }
}

/// One enrollment row: only these fields, never keys.
fn enrollment_row(v: &Value, id_field: &str) -> Value {
    let s = |p: &str| v.get(p).and_then(Value::as_str);
    json!({
        "id": s(id_field),
        "attestation": attestation(v),
        "status": s("provisioningStatus").unwrap_or("enabled"),
        "allocation": s("allocationPolicy").unwrap_or("hashed"),
        "iotHubs": v.get("iotHubs").and_then(Value::as_array).map(|h| h.iter().filter_map(Value::as_str).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

fn snapshot(state: &State) -> DpsResult<Value> {
    let groups: Vec<Value> = rows(state, GROUPS)?
        .iter()
        .map(|g| enrollment_row(g, "enrollmentGroupId"))
        .collect();
    let enrollments: Vec<Value> = rows(state, ENROLLMENTS)?
        .iter()
        .map(|e| enrollment_row(e, "registrationId"))
        .collect();
    let registrations: Vec<Value> = rows(state, REGISTRATIONS)?
        .iter()
        .map(|r| {
            let s = |p: &str| r.pointer(p).and_then(Value::as_str);
            json!({
                "id": s("/registrationId"),
                "status": s("/status"),
                "assignedHub": s("/assignedHub"),
                "group": s("/x509/enrollmentGroupId").or_else(|| s("/symmetricKey/enrollmentGroupId")),
                "updated": s("/lastUpdatedDateTimeUtc"),
                "error": s("/errorMessage"),
            })
        })
        .collect();
    Ok(json!({
        "idScope": state.id_scope,
        "groups": groups,
        "enrollments": enrollments,
        "registrations": registrations,
        "attempts": state.attempts.newest_first(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stable_per_key_and_reveals_nothing() {
        let a = token_for("c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==");
        assert_eq!(
            a,
            token_for("c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==")
        );
        assert_ne!(a, token_for("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn rows_list_fields_never_keys() {
        let g = json!({"enrollmentGroupId": "g", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": "SECRET1", "secondaryKey": "SECRET2"}}});
        let row = enrollment_row(&g, "enrollmentGroupId").to_string();
        assert!(
            row.contains("symmetric key") && !row.contains("SECRET"),
            "{row}"
        );
    }
}
