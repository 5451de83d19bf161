//! The device registration API (contract §7): register, then poll the operation.
//!
//! Authentication and enrollment selection happen on the register PUT
//! ([`super::attest`]); failures are an immediate 401. The assignment is
//! computed and written durably before the 202 goes out, so the first poll
//! already finds the final `assigned` / `disabled` / `failed` state.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{Value, json};

use super::attest::{Attested, Credential, Enrollment, attest_sas, attest_x509};
use super::errors::{ApiError, ApiResult};
use super::model::{
    RegistrationSource, RegistrationState, hex_lower, new_etag, now_utc_string, random_bytes,
    random_uuid,
};
use super::router::{Req, json_response};
use super::store::{REG_BY_GROUP, REGISTRATIONS, SEP, StoreResult, get_json, store_error, to_json};
use super::{DEFAULT_HUB, State};

/// Seconds clients wait before polling. Node honours 0–1 directly; C# raises
/// anything under 2 to 2; Azure sends 3 (§7.6, §13).
const RETRY_AFTER: &str = "1";
/// Largest device `payload` (as JSON text) the emulator accepts; it is kept
/// with the operation until polled, so it is bounded.
const MAX_PAYLOAD: usize = 8 * 1024;

/// A finished registration, kept for the status polls.
#[derive(Clone, Debug)]
pub struct Operation {
    pub registration_id: String,
    pub credential: Credential,
    pub state: RegistrationState,
}

/// Routes a device-API request (`/{idScope}/registrations/…`).
pub async fn dispatch(state: &State, req: &Req) -> ApiResult<Response<Body>> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let scope = seg[0];
    if !scope.eq_ignore_ascii_case(&state.id_scope) {
        return Err(ApiError::unauthorized(format!(
            "ID scope `{scope}` is not this emulator's; use `{}`",
            state.id_scope
        )));
    }
    match (&req.method, &seg[2..]) {
        (&Method::PUT, [reg, r]) if r.eq_ignore_ascii_case("register") => {
            register(state, req, reg).await
        }
        (&Method::GET, [reg, o, op]) if o.eq_ignore_ascii_case("operations") => {
            operation(state, req, reg, op)
        }
        (&Method::POST, [reg]) => status_lookup(state, req, reg),
        _ => Err(ApiError::not_found(
            404_000,
            format!(
                "no such device endpoint: {} /{}; devices call PUT /{{idScope}}/registrations/{{id}}/register and GET …/operations/{{operationId}}",
                req.method,
                seg.join("/")
            ),
        )),
    }
}

fn authenticate(state: &State, req: &Req, reg: &str) -> ApiResult<Attested> {
    if let Some(h) = req.header("authorization") {
        return attest_sas(state, &state.id_scope, reg, h);
    }
    if !req.peer.0.is_empty() {
        return attest_x509(state, reg, &req.peer.0);
    }
    Err(ApiError::unauthorized(
        "no device credential: present a client certificate in the TLS handshake (X.509), or send `Authorization: SharedAccessSignature …` (symmetric key)",
    ))
}

fn check_registration_id(reg: &str) -> ApiResult<()> {
    crate::regid::check(reg, crate::regid::MAX_ID, "registration ID")
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("Invalid RegistrationId: {e}")))
}

async fn register(state: &State, req: &Req, reg: &str) -> ApiResult<Response<Body>> {
    check_registration_id(reg)?;
    let mut payload = None;
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        let body: Value = req.json("DeviceRegistration ({\"registrationId\":\"…\"})")?;
        let obj = body.as_object().ok_or_else(|| {
            ApiError::bad_request(
                "the body must be a JSON object such as {\"registrationId\":\"device-01\"}",
            )
        })?;
        match obj.get("registrationId") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) if id.eq_ignore_ascii_case(reg) => {}
            Some(Value::String(id)) => {
                return Err(ApiError::bad_request(format!(
                    "registrationId `{id}` in the body does not match `{reg}` in the path"
                )));
            }
            Some(_) => return Err(ApiError::bad_request("registrationId must be a string")),
        }
        payload = obj.get("payload").filter(|p| !p.is_null()).cloned();
        // The payload is kept with the operation until it is polled: bound it
        // so remembered operations cannot grow memory by 256 KiB each.
        if payload
            .as_ref()
            .is_some_and(|p| p.to_string().len() > MAX_PAYLOAD)
        {
            return Err(ApiError::bad_request(format!(
                "the payload is larger than {MAX_PAYLOAD} bytes of JSON; send less custom data"
            )));
        }
    }
    let attested = authenticate(state, req, reg)?;
    let credential = attested.credential.clone();
    let describe = attested.enrollment.describe();
    let reg_state = assign(state, reg, attested, payload).await?;
    if state.log {
        super::log_line(&format!(
            "registration `{reg}` via {describe}: {}{}",
            reg_state.status,
            reg_state
                .assigned_hub
                .as_deref()
                .map(|h| format!(" to {h}"))
                .or_else(|| reg_state
                    .error_message
                    .as_deref()
                    .map(|m| format!(" ({m})")))
                .unwrap_or_default()
        ));
    }
    let op_id = format!("5.{}.{}", hex_lower(&random_bytes::<8>()), random_uuid());
    if let Ok(mut ops) = state.operations.lock() {
        ops.insert(
            op_id.clone(),
            Operation {
                registration_id: reg.to_string(),
                credential,
                state: reg_state,
            },
        );
    }
    let mut resp = json_response(
        StatusCode::ACCEPTED,
        &json!({"operationId": op_id, "status": "assigning"}),
    );
    let h = resp.headers_mut();
    h.insert("retry-after", HeaderValue::from_static(RETRY_AFTER));
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

/// Computes the assignment (allocation, reprovisioning) and stores it durably.
async fn assign(
    state: &State,
    reg: &str,
    attested: Attested,
    payload: Option<Value>,
) -> ApiResult<RegistrationState> {
    let common = attested.enrollment.common().clone();
    let hubs: Vec<String> = match (&common.iot_hubs, &common.iot_hub_host_name) {
        (Some(h), _) if !h.is_empty() => h.clone(),
        (_, Some(h)) if !h.is_empty() => vec![h.clone()],
        _ if !state.iot_hubs.is_empty() => state.iot_hubs.clone(),
        _ => vec![DEFAULT_HUB.to_string()],
    };
    let policy = common
        .allocation_policy
        .clone()
        .unwrap_or_else(|| "hashed".into());
    let reprovision = common.reprovision_policy.clone().unwrap_or_default();
    let device_id = match &attested.enrollment {
        Enrollment::Individual(e) => e
            .device_id
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| reg.to_string()),
        Enrollment::Group(_) => reg.to_string(),
    };
    let group_id = attested.enrollment.group_id().map(str::to_string);
    let describe = attested.enrollment.describe();
    let enabled = common.enabled();
    let (x509, symmetric) = if attested.x509 {
        (Some(attested.source), None)
    } else {
        let s = RegistrationSource {
            enrollment_group_id: group_id.clone(),
            ..Default::default()
        };
        (None, Some(s))
    };
    let key = reg.to_ascii_lowercase();
    let reg = reg.to_string();
    state
        .store
        .write(move |txn| -> StoreResult<RegistrationState> {
            let mut regs = txn.open_table(REGISTRATIONS)?;
            let old: Option<RegistrationState> = get_json(&regs, &key)?;
            let now = now_utc_string();
            let mut st = RegistrationState {
                x509,
                symmetric_key: symmetric,
                registration_id: reg.clone(),
                created_date_time_utc: Some(
                    old.as_ref()
                        .and_then(|o| o.created_date_time_utc.clone())
                        .unwrap_or_else(|| now.clone()),
                ),
                last_updated_date_time_utc: Some(now),
                etag: Some(new_etag()),
                payload,
                ..Default::default()
            };
            if !enabled {
                st.status = "disabled".into();
                st.error_message = Some(format!(
                    "{describe} is disabled (provisioningStatus: disabled); enable it to let this device register"
                ));
            } else if policy == "custom" {
                st.status = "failed".into();
                st.error_code = Some(400_000);
                st.error_message = Some(format!(
                    "{describe} uses custom allocation, and the emulator does not call allocation webhooks; use hashed or static allocation"
                ));
            } else {
                let chosen = if policy == "hashed" {
                    let h = super::certs::sha256(reg.to_ascii_lowercase().as_bytes());
                    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
                    hubs[(n % hubs.len() as u64) as usize].clone()
                } else {
                    // static and geoLatency: the first hub (a local emulator has no latency).
                    hubs[0].clone()
                };
                let previous = old
                    .as_ref()
                    .filter(|o| o.status == "assigned")
                    .and_then(|o| o.assigned_hub.clone());
                let (hub, substatus) = match previous {
                    None => (chosen, "initialAssignment"),
                    Some(prev) if !reprovision.update_hub_assignment => (prev, "initialAssignment"),
                    Some(prev) if prev == chosen => (chosen, "initialAssignment"),
                    Some(_) if reprovision.migrate_device_data => (chosen, "deviceDataMigrated"),
                    Some(_) => (chosen, "deviceDataReset"),
                };
                st.status = "assigned".into();
                st.assigned_hub = Some(hub);
                st.device_id = Some(device_id);
                st.substatus = Some(substatus.into());
            }
            regs.insert(key.as_str(), to_json(&st).as_slice())?;
            drop(regs);
            let mut idx = txn.open_table(REG_BY_GROUP)?;
            if let Some(g) = old.as_ref().and_then(|o| o.group_id()) {
                idx.remove(format!("{}{SEP}{key}", g.to_ascii_lowercase()).as_str())?;
            }
            if let Some(g) = &group_id {
                idx.insert(format!("{}{SEP}{key}", g.to_ascii_lowercase()).as_str(), ())?;
            }
            Ok(st)
        })
        .await
}

fn operation(state: &State, req: &Req, reg: &str, op_id: &str) -> ApiResult<Response<Body>> {
    let op = state
        .operations
        .lock()
        .ok()
        .and_then(|ops| ops.get(op_id))
        .ok_or_else(|| {
            ApiError::not_found(
                404_203,
                format!("operation `{op_id}` is unknown (expired, or from before a restart): register again"),
            )
        })?;
    if !op.registration_id.eq_ignore_ascii_case(reg) {
        return Err(ApiError::not_found(
            404_203,
            format!("operation `{op_id}` belongs to another registration ID"),
        ));
    }
    op.credential.check(req)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"operationId": op_id, "status": op.state.status, "registrationState": op.state}),
    ))
}

/// `POST /{idScope}/registrations/{id}`: the device reads its own registration state (§7.4).
fn status_lookup(state: &State, req: &Req, reg: &str) -> ApiResult<Response<Body>> {
    check_registration_id(reg)?;
    authenticate(state, req, reg)?;
    let r = state.store.read()?;
    let t = r.open_table(REGISTRATIONS).map_err(store_error)?;
    let st: RegistrationState = get_json(&t, &reg.to_ascii_lowercase())
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::not_found(404_202, format!("registration `{reg}` does not exist"))
        })?;
    Ok(json_response(StatusCode::OK, &st))
}
