//! From an HTTP request to a handler: path parsing, api-version, body limit.
//!
//! Paths are split and percent-decoded by hand rather than with an axum
//! `Router`, because DPS routing is case-insensitive in the collection
//! segment (Node calls `/enrollmentgroups/…/attestationmechanism`) while ids
//! must be percent-decoded and kept as sent (contract §2.1).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, header};
use percent_encoding::percent_decode_str;

use super::errors::{DpsError, DpsResult};
use super::http::{PeerChain, Req, error_response};
use super::{State, arm, device, service};

/// Largest request body accepted (a bulk request of 10 groups with two
/// RSA-4096 certificates each is well under this).
pub const BODY_LIMIT: usize = 256 * 1024;

/// Bodies over [`BODY_LIMIT`] but under this are read and thrown away
/// before the 413, so the client sees the answer instead of a reset
/// connection while it is still sending.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// api-versions of the service and device APIs (contract §2.2).
pub const API_VERSIONS: &[&str] = &[
    "2018-09-01-preview",
    "2018-11-01",
    "2019-03-31",
    "2021-06-01",
    "2021-10-01",
    "2021-11-01-preview",
    "2025-07-01-preview",
    // Certificate issuance (docs/certificate-issuance.md).
    "2026-04-01",
    "2026-11-01",
    "2026-11-02-preview",
];

/// Answers one request. Never panics on client input: every failure is an [`DpsError`].
pub async fn handle(
    state: Arc<State>,
    peer: PeerChain,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    // Path only: query strings may carry tokens on other services, and are never needed here.
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let log = state.log;
    match parse_and_dispatch(state, peer, req).await {
        Ok(r) => r,
        Err(e) => {
            if log {
                // Messages name the failed check and never contain keys or signatures.
                super::log_line(&format!("{method} {path} -> {e}"));
            }
            error_response(&e)
        }
    }
}

async fn parse_and_dispatch(
    state: Arc<State>,
    peer: PeerChain,
    req: Request<hyper::body::Incoming>,
) -> DpsResult<Response<Body>> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > DRAIN_LIMIT
    {
        // Far too big to be worth reading: answer now and let hyper close the connection.
        return Err(DpsError::too_large(BODY_LIMIT));
    }
    let body = read_body(body).await?;
    let path = parts.uri.path();
    let mut segments = Vec::new();
    for raw in path.trim_matches('/').split('/').filter(|s| !s.is_empty()) {
        let s = percent_decode_str(raw).decode_utf8().map_err(|_| {
            DpsError::bad_request("the request path is not valid UTF-8 after percent-decoding")
        })?;
        segments.push(s.into_owned());
    }
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect();
    let req = Req {
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        body,
        peer,
    };
    let first = req.segments.first().map(|s| s.to_ascii_lowercase());
    match first.as_deref() {
        None => super::status::dispatch(&state, &req, false),
        Some("status.json") if req.segments.len() == 1 => {
            super::status::dispatch(&state, &req, true)
        }
        Some("enrollmentgroups" | "enrollments" | "registrations") => {
            check_api_version(&req, API_VERSIONS)?;
            service::dispatch(&state, &req).await
        }
        Some("subscriptions") => {
            check_api_version(&req, arm::API_VERSIONS)?;
            arm::dispatch(&state, &req).await
        }
        Some(_)
            if req
                .segments
                .get(1)
                .is_some_and(|s| s.eq_ignore_ascii_case("registrations")) =>
        {
            check_api_version(&req, API_VERSIONS)?;
            device::dispatch(&state, &req).await
        }
        _ => Err(DpsError::not_found(
            404_000,
            format!(
                "no such endpoint: {} {path}; the service API is under /enrollmentGroups, /enrollments and /registrations, devices use /{{idScope}}/registrations/{{registrationId}}/register",
                req.method
            ),
        )),
    }
}

/// How long a client may take to send its whole request body: a client that
/// sends headers and then stalls must not hold a connection forever.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body within [`BODY_TIMEOUT`].
async fn read_body(body: hyper::body::Incoming) -> DpsResult<axum::body::Bytes> {
    tokio::time::timeout(BODY_TIMEOUT, read_body_unbounded(body))
        .await
        .unwrap_or_else(|_| {
            Err(DpsError::timeout(format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            )))
        })
}

/// Reads a request body up to [`BODY_LIMIT`] (draining up to [`DRAIN_LIMIT`]).
async fn read_body_unbounded(mut body: hyper::body::Incoming) -> DpsResult<axum::body::Bytes> {
    use hyper::body::Body as _;
    let mut buf = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => {
                return Err(DpsError::bad_request(format!(
                    "cannot read the request body: {e}"
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    total = total.saturating_add(data.len());
                    if total <= BODY_LIMIT {
                        buf.extend_from_slice(&data);
                    } else if total > DRAIN_LIMIT {
                        break;
                    }
                }
            }
        }
    }
    if total > BODY_LIMIT {
        return Err(DpsError::too_large(BODY_LIMIT));
    }
    Ok(buf.into())
}

fn check_api_version(req: &Req, accepted: &[&str]) -> DpsResult<()> {
    match req.query("api-version") {
        None => Err(DpsError::api_version(
            "the api-version query parameter is missing (for example ?api-version=2021-10-01)",
        )),
        Some(v) if accepted.contains(&v) => Ok(()),
        Some(v) => Err(DpsError::api_version(format!(
            "Unknown api version {v}; the emulator accepts {}",
            accepted.join(", ")
        ))),
    }
}
