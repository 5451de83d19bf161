//! The device registration rules, free of any transport (contract §7, §8).
//!
//! HTTPS ([`super::device`]) and MQTT ([`super::mqtt`]) parse their wire
//! form into a scope, a [`RegistrationId`], the [`Presented`] credentials and
//! the request body, then call [`register`] or [`operation_status`] here.
//! Attestation ([`super::attest`]), enrollment selection, allocation,
//! reprovisioning and every refusal message live here or below, so both
//! transports refuse the same inputs with the same words. Results are a
//! [`DpsError`] (status, DPS code, message) that each transport renders at
//! its edge.
//!
//! The assignment is computed and written durably before the reply goes
//! out, so the first poll already finds the final `assigned` / `disabled` /
//! `failed` state.

use serde_json::{Value, json};

pub use super::attest::Presented;
use super::attest::{Attested, Credential, Enrollment, attest_sas, attest_x509};
use super::errors::{DpsError, DpsResult, parse_json};
use super::model::{
    AllocationPolicy, RegistrationSource, RegistrationState, RegistrationStatus, hex_lower,
    new_etag, now_utc_string, random_bytes, random_uuid,
};
use super::store::{REG_BY_GROUP, REGISTRATIONS, SEP, StoreResult, get_json, store_error, to_json};
use super::{DEFAULT_HUB, State};
use crate::regid::RegistrationId;

/// Seconds clients wait before polling. Node honours 0–1 directly; C# raises
/// anything under 2 to 2; Azure sends 3 (§7.6, §13).
pub const RETRY_AFTER: u32 = 1;
/// Largest device `payload` (as JSON text) the emulator accepts; it is kept
/// with the operation until polled, so it is bounded.
const MAX_PAYLOAD: usize = 8 * 1024;

/// A finished registration, kept for the status polls.
#[derive(Clone, Debug)]
pub struct Operation {
    pub registration_id: RegistrationId,
    pub credential: Credential,
    pub state: RegistrationState,
}

/// A registration the emulator took: the operation to poll.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub operation_id: String,
    /// Seconds the device should wait before its first poll.
    pub retry_after: u32,
}

impl Accepted {
    /// The 202 body: `{"operationId": …, "status": "assigning"}`.
    pub fn body(&self) -> Value {
        json!({"operationId": self.operation_id, "status": RegistrationStatus::Assigning})
    }
}

/// The answer to a status poll.
#[derive(Clone, Debug)]
pub struct OperationStatus {
    pub operation_id: String,
    pub state: RegistrationState,
}

impl OperationStatus {
    /// The 200 body: `{"operationId", "status", "registrationState"}`.
    pub fn body(&self) -> Value {
        json!({"operationId": self.operation_id, "status": self.state.status, "registrationState": self.state})
    }
}

/// Checks a registration ID from a path, topic or username against DPS's rule.
pub fn parse_registration_id(reg: &str) -> DpsResult<RegistrationId> {
    RegistrationId::parse(reg)
        .map(|(id, _)| id)
        .map_err(|e| DpsError::bad_request(format!("Invalid RegistrationId: {e}")))
}

/// Refuses an ID scope that is not this emulator's.
pub fn check_scope(state: &State, scope: &str) -> DpsResult<()> {
    if scope.eq_ignore_ascii_case(&state.id_scope) {
        Ok(())
    } else {
        Err(DpsError::unauthorized(format!(
            "ID scope `{scope}` is not this emulator's; use `{}`",
            state.id_scope
        )))
    }
}

/// Who the device is: a SAS token or, failing that, its TLS chain.
fn authenticate(state: &State, reg: &RegistrationId, p: &Presented<'_>) -> DpsResult<Attested> {
    if let Some(token) = p.sas {
        return attest_sas(state, &state.id_scope, reg.as_str(), token);
    }
    if !p.chain.is_empty() {
        return attest_x509(state, reg.as_str(), p.chain);
    }
    Err(DpsError::unauthorized(
        "no device credential: present a client certificate in the TLS handshake (X.509), or send a SAS token `SharedAccessSignature …` (symmetric key: HTTP Authorization header, MQTT password)",
    ))
}

/// The device's `payload` and `csr`, from a `DeviceRegistration` body
/// (empty, `" "`, `{"registrationId": …}`, `{"payload": null}`, …).
pub(crate) fn parse_body(
    reg: &RegistrationId,
    body: &[u8],
) -> DpsResult<(Option<Value>, Option<String>)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let body: Value = parse_json(body, "DeviceRegistration ({\"registrationId\":\"…\"})")?;
    let obj = body.as_object().ok_or_else(|| {
        DpsError::bad_request(
            "the body must be a JSON object such as {\"registrationId\":\"device-01\"}",
        )
    })?;
    match obj.get("registrationId") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id.eq_ignore_ascii_case(reg.as_str()) => {}
        Some(Value::String(id)) => {
            return Err(DpsError::bad_request(format!(
                "registrationId `{id}` in the body does not match `{reg}` in the path"
            )));
        }
        Some(_) => return Err(DpsError::bad_request("registrationId must be a string")),
    }
    let csr = match obj.get("csr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(DpsError::deserialization(
                "csr must be a string: base64 DER of a PKCS#10 request, no PEM armour",
            ));
        }
    };
    let payload = obj.get("payload").filter(|p| !p.is_null()).cloned();
    // The payload is kept with the operation until it is polled: bound it
    // so remembered operations cannot grow memory by 256 KiB each.
    if payload
        .as_ref()
        .is_some_and(|p| p.to_string().len() > MAX_PAYLOAD)
    {
        return Err(DpsError::bad_request(format!(
            "the payload is larger than {MAX_PAYLOAD} bytes of JSON; send less custom data"
        )));
    }
    Ok((payload, csr))
}

/// A status lookup (operation poll or registration status) must not carry
/// a `csr`: DPS answers that with a bad request.
pub fn refuse_csr_in_status_lookup(body: &[u8]) -> DpsResult<()> {
    let has_csr = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("csr").is_some_and(|c| !c.is_null()));
    if has_csr {
        return Err(DpsError::bad_request(
            "a status lookup must not carry `csr`: send the CSR with the register call (PUT …/register)",
        ));
    }
    Ok(())
}

/// Registers a device: checks the scope and body, attests, assigns, stores
/// the result durably and remembers the operation for the polls. Every
/// outcome is recorded for the status page.
pub async fn register(
    state: &State,
    scope: &str,
    reg: &RegistrationId,
    presented: Presented<'_>,
    body: &[u8],
) -> DpsResult<Accepted> {
    let result = register_unrecorded(state, scope, reg, presented, body).await;
    super::status::record(state, reg, &presented, &result);
    result
}

async fn register_unrecorded(
    state: &State,
    scope: &str,
    reg: &RegistrationId,
    presented: Presented<'_>,
    body: &[u8],
) -> DpsResult<Accepted> {
    check_scope(state, scope)?;
    let (payload, csr) = parse_body(reg, body)?;
    let attested = authenticate(state, reg, &presented)?;
    let credential = attested.credential.clone();
    let describe = attested.enrollment.describe();
    let issued = match &csr {
        Some(csr) => Some(super::issuance::issue_for(
            state,
            &attested.enrollment,
            reg,
            csr,
        )?),
        None => None,
    };
    let mut reg_state = assign(state, reg, attested, payload).await?;
    if reg_state.status == RegistrationStatus::Assigned {
        reg_state.issued_certificate_chain = issued;
    }
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
    let operation_id = format!("5.{}.{}", hex_lower(&random_bytes::<8>()), random_uuid());
    if let Ok(mut ops) = state.operations.lock() {
        ops.insert(
            operation_id.clone(),
            Operation {
                registration_id: reg.clone(),
                credential,
                state: reg_state,
            },
        );
    }
    Ok(Accepted {
        operation_id,
        retry_after: RETRY_AFTER,
    })
}

/// The hub a device goes to under `policy`, from `hubs` (never empty).
fn choose_hub(policy: &AllocationPolicy, reg: &RegistrationId, hubs: &[String]) -> String {
    match policy {
        AllocationPolicy::Hashed => {
            let h = super::certs::sha256(reg.folded().as_bytes());
            let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
            hubs[(n % hubs.len() as u64) as usize].clone()
        }
        // static and geoLatency: the first hub (a local emulator has no latency).
        _ => hubs[0].clone(),
    }
}

/// Computes the assignment (allocation, reprovisioning) and stores it durably.
async fn assign(
    state: &State,
    reg: &RegistrationId,
    attested: Attested,
    payload: Option<Value>,
) -> DpsResult<RegistrationState> {
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
        .unwrap_or(AllocationPolicy::Hashed);
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
    let key = reg.folded();
    let reg = reg.clone();
    state
        .store
        .write(move |txn| -> StoreResult<RegistrationState> {
            let mut regs = txn.open_table(REGISTRATIONS)?;
            let old: Option<RegistrationState> = get_json(&regs, &key)?;
            let now = now_utc_string();
            let mut st = RegistrationState::new(reg.to_string(), RegistrationStatus::Assigned);
            st.x509 = x509;
            st.symmetric_key = symmetric;
            st.created_date_time_utc = Some(
                old.as_ref()
                    .and_then(|o| o.created_date_time_utc.clone())
                    .unwrap_or_else(|| now.clone()),
            );
            st.last_updated_date_time_utc = Some(now);
            st.etag = Some(new_etag());
            st.payload = payload;
            if !enabled {
                st.status = RegistrationStatus::Disabled;
                st.error_message = Some(format!(
                    "{describe} is disabled (provisioningStatus: disabled); enable it to let this device register"
                ));
            } else if policy == AllocationPolicy::Custom {
                st.status = RegistrationStatus::Failed;
                st.error_code = Some(400_000);
                st.error_message = Some(format!(
                    "{describe} uses custom allocation, and the emulator does not call allocation webhooks; use hashed or static allocation"
                ));
            } else {
                let chosen = choose_hub(&policy, &reg, &hubs);
                let previous = old
                    .as_ref()
                    .filter(|o| o.status == RegistrationStatus::Assigned)
                    .and_then(|o| o.assigned_hub.clone());
                let (hub, substatus) = match previous {
                    None => (chosen, "initialAssignment"),
                    Some(prev) if !reprovision.update_hub_assignment => (prev, "initialAssignment"),
                    Some(prev) if prev == chosen => (chosen, "initialAssignment"),
                    Some(_) if reprovision.migrate_device_data => (chosen, "deviceDataMigrated"),
                    Some(_) => (chosen, "deviceDataReset"),
                };
                st.status = RegistrationStatus::Assigned;
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

/// A status poll: the operation must exist, belong to `reg` and be polled
/// with the credential that registered.
pub fn operation_status(
    state: &State,
    scope: &str,
    reg: &RegistrationId,
    operation_id: &str,
    presented: Presented<'_>,
) -> DpsResult<OperationStatus> {
    check_scope(state, scope)?;
    let op = state
        .operations
        .lock()
        .ok()
        .and_then(|ops| ops.get(operation_id))
        .ok_or_else(|| {
            DpsError::not_found(
                404_203,
                format!("operation `{operation_id}` is unknown (expired, or from before a restart): register again"),
            )
        })?;
    if op.registration_id.folded() != reg.folded() {
        return Err(DpsError::not_found(
            404_203,
            format!("operation `{operation_id}` belongs to another registration ID"),
        ));
    }
    op.credential.check(state, &presented)?;
    Ok(OperationStatus {
        operation_id: operation_id.to_string(),
        state: op.state,
    })
}

/// The device reads its own registration state (§7.4).
pub fn registration_state(
    state: &State,
    scope: &str,
    reg: &RegistrationId,
    presented: Presented<'_>,
) -> DpsResult<RegistrationState> {
    check_scope(state, scope)?;
    authenticate(state, reg, &presented)?;
    let r = state.store.read()?;
    let t = r.open_table(REGISTRATIONS).map_err(store_error)?;
    get_json(&t, &reg.folded())
        .map_err(store_error)?
        .ok_or_else(|| DpsError::not_found(404_202, format!("registration `{reg}` does not exist")))
}
