//! The device registration API over HTTPS (contract §7): a thin adapter.
//!
//! Parses the path, the `Authorization` header, the TLS client chain and the
//! body into the transport-free form of [`super::registration`], and turns
//! its results into HTTP replies (status, `Retry-After`, `Location`). No
//! attestation or assignment rule lives here.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};

use super::State;
use super::errors::{DpsError, DpsResult};
use super::http::{Req, json_response};
use super::model::random_uuid;
use super::registration::{self, Presented, parse_registration_id};

/// Routes a device-API request (`/{idScope}/registrations/…`).
pub async fn dispatch(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let scope = seg[0];
    registration::check_scope(state, scope)?;
    match (&req.method, &seg[2..]) {
        (&Method::PUT, [reg, r]) if r.eq_ignore_ascii_case("register") => {
            register(state, req, scope, reg).await
        }
        (&Method::GET, [reg, o, op]) if o.eq_ignore_ascii_case("operations") => {
            let reg = parse_registration_id(reg)?;
            registration::refuse_csr_in_status_lookup(&req.body)?;
            let status = registration::operation_status(state, scope, &reg, op, presented(req))?;
            Ok(json_response(StatusCode::OK, &status.body()))
        }
        (&Method::POST, [reg]) => {
            let reg = parse_registration_id(reg)?;
            registration::refuse_csr_in_status_lookup(&req.body)?;
            let st = registration::registration_state(state, scope, &reg, presented(req))?;
            Ok(json_response(StatusCode::OK, &st))
        }
        _ => Err(DpsError::not_found(
            404_000,
            format!(
                "no such device endpoint: {} /{}; devices call PUT /{{idScope}}/registrations/{{id}}/register and GET …/operations/{{operationId}}",
                req.method,
                seg.join("/")
            ),
        )),
    }
}

/// The credentials of an HTTP request: `Authorization` and the TLS chain.
fn presented(req: &Req) -> Presented<'_> {
    Presented {
        sas: req.header("authorization"),
        chain: &req.peer.0,
    }
}

async fn register(state: &State, req: &Req, scope: &str, reg: &str) -> DpsResult<Response<Body>> {
    let reg = parse_registration_id(reg)?;
    let accepted = registration::register(state, scope, &reg, presented(req), &req.body).await?;
    let mut resp = json_response(StatusCode::ACCEPTED, &accepted.body());
    let h = resp.headers_mut();
    h.insert("retry-after", HeaderValue::from(accepted.retry_after));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "https://{}/{}/registrations/{reg}/register",
        req.host(),
        state.id_scope
    )) {
        h.insert("location", v);
    }
    if let Ok(v) = HeaderValue::from_str(&random_uuid()) {
        h.insert("x-ms-request-id", v);
    }
    Ok(resp)
}
