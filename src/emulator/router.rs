//! From an HTTP request to a handler: path parsing, api-version, body limit.
//!
//! Paths are split and percent-decoded by hand rather than with an axum
//! `Router`, because DPS routing is case-insensitive in the collection
//! segment (Node calls `/enrollmentgroups/…/attestationmechanism`) while ids
//! must be percent-decoded and kept as sent (contract §2.1).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use percent_encoding::percent_decode_str;

use super::api_versions::{self, Api};
use super::errors::{DpsError, DpsResult};
use super::http::{PeerChain, Req, error_response, json_response};
use super::{State, arm, device, service};

/// Largest request body accepted (a bulk request of 10 groups with two
/// RSA-4096 certificates each is well under this).
pub const BODY_LIMIT: usize = 256 * 1024;

/// Bodies over [`BODY_LIMIT`] but under this are read and thrown away
/// before the 413, so the client sees the answer instead of a reset
/// connection while it is still sending.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

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
            check_dps_api_version(&state, &req, Api::Service, path)?;
            service::dispatch(&state, &req).await
        }
        Some("emulator") if req.segments.len() == 2 => clock_endpoint(&state, &req),
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
            check_dps_api_version(&state, &req, Api::Device, path)?;
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

/// The service and device APIs' versions: retired ones warn once per client, or fail when strict.
fn check_dps_api_version(state: &State, req: &Req, api: Api, path: &str) -> DpsResult<()> {
    // C# v1 names its header `UserAgent` (sdk-wire A.1).
    let client = req
        .header("user-agent")
        .or_else(|| req.header("useragent"))
        .unwrap_or("a client without User-Agent");
    let policy = api_versions::Policy {
        strict: state.strict_api_versions,
        log: state.log,
    };
    let v = req.query("api-version");
    api_versions::check(api, v, path, client, policy, &state.api_warnings)
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

/// `GET`/`PUT /emulator/clock` (emulator-only): read or move the clock every
/// validity check uses. Authenticated like the service API (its SAS token).
fn clock_endpoint(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    if !req.segments[1].eq_ignore_ascii_case("clock") {
        return Err(DpsError::not_found(
            404_000,
            format!(
                "no such emulator endpoint: {} /emulator/{}; the emulator's own endpoint is /emulator/clock",
                req.method, req.segments[1]
            ),
        ));
    }
    super::service::authorize_service(state, req)?;
    if req.method == Method::PUT {
        let body: super::clock::ClockRequest = req.json("the clock")?;
        let spec = body
            .spec()
            .map_err(|e| DpsError::bad_request(format!("PUT /emulator/clock: {e}")))?;
        state
            .clock
            .set(spec)
            .map_err(|e| DpsError::bad_request(format!("PUT /emulator/clock: {e}")))?;
        if state.log {
            super::log_line(&format!("clock set to {}", state.clock.describe()));
        }
    } else if req.method != Method::GET {
        return Err(DpsError::method_not_allowed(format!(
            "{} /emulator/clock: use GET to read the clock or PUT to move it",
            req.method
        )));
    }
    Ok(json_response(StatusCode::OK, &state.clock.view()))
}
