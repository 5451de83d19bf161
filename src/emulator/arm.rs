//! The ARM certificate calls behind DPS proof of possession (contract §10):
//! upload a CA certificate, generate a verification code, verify a
//! certificate signed by the CA's key with CN = that code, get, list, delete.
//!
//! Paths are those of `management.azure.com`:
//! `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Devices/provisioningServices/{dps}/certificates/{name}`.
//! The emulator cannot validate Azure AD tokens, so any non-empty
//! `Authorization: Bearer …` is accepted (as is the service SAS token);
//! a request without credentials is refused.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::State;
use super::certs::{cert_info, decode_certificate, sha256, to_pem};
use super::errors::{DpsError, DpsResult};
use super::http::{Req, etag_matches, json_response, no_content};
use super::model::{StoredCaCert, hex_lower, hex_upper, new_etag, random_bytes};
use super::store::{CA_BY_THUMB, CA_CERTS, SEP, StoreResult, get_json, store_error, to_json};

/// ARM api-versions of `Microsoft.Devices/provisioningServices` (§10).
pub const API_VERSIONS: &[&str] = &[
    "2017-08-21-preview",
    "2017-11-15",
    "2018-01-22",
    "2020-01-01",
    "2020-03-01",
    "2020-09-01-preview",
    "2021-10-15",
    "2022-02-05",
    "2022-12-12",
    "2023-03-01-preview",
    "2025-02-01-preview",
];

/// Routes an ARM request.
pub async fn dispatch(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    authorize(state, req)?;
    let s: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let shape_ok = s.len() >= 9
        && s[2].eq_ignore_ascii_case("resourceGroups")
        && s[4].eq_ignore_ascii_case("providers")
        && s[5].eq_ignore_ascii_case("Microsoft.Devices")
        && s[6].eq_ignore_ascii_case("provisioningServices")
        && s[8].eq_ignore_ascii_case("certificates");
    if !shape_ok {
        return Err(DpsError::not_found(
            404_000,
            "the emulator's management API only has …/providers/Microsoft.Devices/provisioningServices/{name}/certificates[/{certificate}]",
        ));
    }
    let base = format!("/{}", s[..9].join("/"));
    match (&req.method, &s[9..]) {
        (&Method::GET, []) => list(state, &base),
        (&Method::GET, [name]) => get(state, &base, name),
        (&Method::PUT, [name]) => upload(state, req, &base, name).await,
        (&Method::DELETE, [name]) => delete(state, req, name).await,
        (&Method::POST, [name, action])
            if action.eq_ignore_ascii_case("generateVerificationCode") =>
        {
            generate_code(state, req, &base, name).await
        }
        (&Method::POST, [name, action]) if action.eq_ignore_ascii_case("verify") => {
            verify(state, req, &base, name).await
        }
        _ => Err(DpsError::not_found(
            404_000,
            format!(
                "no such certificate operation: {} {}",
                req.method,
                s.join("/")
            ),
        )),
    }
}

fn authorize(state: &State, req: &Req) -> DpsResult<()> {
    match req.header("authorization") {
        Some(h)
            if h.len() > 7
                && h[..7].eq_ignore_ascii_case("bearer ")
                && !h[7..].trim().is_empty() =>
        {
            Ok(())
        }
        Some(h) if h.starts_with("SharedAccessSignature") => {
            super::service::authorize_service(state, req)
        }
        _ => Err(DpsError::unauthorized(
            "the management API needs `Authorization: Bearer <token>` (any token: the emulator does not check Azure AD) or the service SAS token",
        )),
    }
}

fn check_name(name: &str) -> DpsResult<String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(DpsError::bad_request(format!(
            "certificate name `{name}` is invalid: use letters, digits, `-`, `.` and `_`"
        )))
    }
}

fn rfc1123(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

/// ARM's certificate description.
fn describe(base: &str, c: &StoredCaCert) -> Value {
    let der = pem::parse(&c.certificate)
        .map(|p| p.into_contents())
        .unwrap_or_default();
    let expiry = X509Certificate::from_der(&der)
        .map(|(_, x)| rfc1123(x.validity().not_after.to_datetime()))
        .unwrap_or_default();
    let mut props = json!({
        "subject": c.info.subject_name,
        "expiry": expiry,
        "thumbprint": c.info.sha1_thumbprint,
        "isVerified": c.is_verified,
        "certificate": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der),
        "created": c.created,
        "updated": c.updated,
    });
    if let (Some(code), Some(obj)) = (&c.verification_code, props.as_object_mut()) {
        obj.insert("verificationCode".into(), json!(code));
    }
    json!({
        "properties": props,
        "id": format!("{base}/{}", c.name),
        "name": c.name,
        "type": "Microsoft.Devices/provisioningServices/Certificates",
        "etag": c.etag,
    })
}

fn not_found(name: &str) -> DpsError {
    DpsError::not_found(
        404_000,
        format!("certificate `{name}` is not in the certificate store"),
    )
}

fn list(state: &State, base: &str) -> DpsResult<Response<Body>> {
    let r = state.store.read()?;
    let t = r.open_table(CA_CERTS).map_err(store_error)?;
    let mut value = Vec::new();
    for item in redb::ReadableTable::iter(&t).map_err(store_error)? {
        let (_, v) = item.map_err(store_error)?;
        if let Ok(c) = serde_json::from_slice::<StoredCaCert>(v.value()) {
            value.push(describe(base, &c));
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "value": value })))
}

fn get(state: &State, base: &str, name: &str) -> DpsResult<Response<Body>> {
    let key = check_name(name)?;
    let r = state.store.read()?;
    let t = r.open_table(CA_CERTS).map_err(store_error)?;
    let c: StoredCaCert = get_json(&t, &key)
        .map_err(store_error)?
        .ok_or_else(|| not_found(name))?;
    Ok(json_response(StatusCode::OK, &describe(base, &c)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadBody {
    properties: UploadProps,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadProps {
    certificate: String,
    #[serde(default)]
    is_verified: Option<bool>,
}

fn index_keys(der: &[u8], key: &str) -> Vec<String> {
    let mut keys = vec![format!("t:{}{SEP}{key}", hex_lower(&sha256(der)))];
    if let Ok((_, x)) = X509Certificate::from_der(der) {
        keys.push(format!(
            "s:{}{SEP}{key}",
            hex_lower(&sha256(x.subject().as_raw()))
        ));
    }
    keys
}

async fn upload(state: &State, req: &Req, base: &str, name: &str) -> DpsResult<Response<Body>> {
    let key = check_name(name)?;
    let body: UploadBody =
        req.json("certificate description ({\"properties\":{\"certificate\":\"…\"}})")?;
    let der = decode_certificate(&body.properties.certificate, "properties")
        .map_err(|e| DpsError::bad_request(e.0))?;
    let info = cert_info(&der).map_err(|e| DpsError::bad_request(e.0))?;
    let is_verified = body.properties.is_verified.unwrap_or(false);
    let if_match = req.if_match().map(str::to_string);
    let name = name.to_string();
    let saved = state
        .store
        .write(move |txn| -> StoreResult<DpsResult<StoredCaCert>> {
            let mut t = txn.open_table(CA_CERTS)?;
            let old: Option<StoredCaCert> = get_json(&t, &key)?;
            match (&old, &if_match) {
                (Some(_), None) => {
                    return Ok(Err(DpsError::conflict(
                        409_000,
                        format!("certificate `{name}` already exists; send If-Match with its etag to replace it"),
                    )));
                }
                (Some(o), Some(m)) if !etag_matches(m, &o.etag) => {
                    return Ok(Err(DpsError::precondition(format!(
                        "If-Match does not match the current etag of certificate `{name}`"
                    ))));
                }
                _ => {}
            }
            let now = rfc1123(OffsetDateTime::now_utc());
            let rec = StoredCaCert {
                name: name.clone(),
                certificate: to_pem(&der),
                info,
                is_verified,
                verification_code: None,
                etag: new_etag(),
                created: old.as_ref().map(|o| o.created.clone()).unwrap_or_else(|| now.clone()),
                updated: now,
            };
            t.insert(key.as_str(), to_json(&rec).as_slice())?;
            let mut idx = txn.open_table(CA_BY_THUMB)?;
            if let Some(o) = &old
                && let Ok(p) = pem::parse(&o.certificate)
            {
                for k in index_keys(p.contents(), &key) {
                    idx.remove(k.as_str())?;
                }
            }
            for k in index_keys(&der, &key) {
                idx.insert(k.as_str(), ())?;
            }
            Ok(Ok(rec))
        })
        .await??;
    Ok(json_response(StatusCode::OK, &describe(base, &saved)))
}

fn require_if_match<'a>(req: &'a Req, step: &str) -> DpsResult<&'a str> {
    req.if_match().ok_or_else(|| {
        DpsError::bad_request(format!(
            "{step} needs If-Match with the certificate's current etag (GET it, or use the etag of the previous step)"
        ))
    })
}

async fn generate_code(
    state: &State,
    req: &Req,
    base: &str,
    name: &str,
) -> DpsResult<Response<Body>> {
    let key = check_name(name)?;
    let if_match = require_if_match(req, "generateVerificationCode")?.to_string();
    let name = name.to_string();
    let saved = state
        .store
        .write(move |txn| -> StoreResult<DpsResult<StoredCaCert>> {
            let mut t = txn.open_table(CA_CERTS)?;
            let Some(mut c): Option<StoredCaCert> = get_json(&t, &key)? else {
                return Ok(Err(not_found(&name)));
            };
            if !etag_matches(&if_match, &c.etag) {
                return Ok(Err(DpsError::precondition(format!(
                    "If-Match does not match the current etag of certificate `{name}` (each step returns a new etag)"
                ))));
            }
            c.verification_code = Some(hex_upper(&random_bytes::<24>()));
            c.etag = new_etag();
            c.updated = rfc1123(OffsetDateTime::now_utc());
            t.insert(key.as_str(), to_json(&c).as_slice())?;
            Ok(Ok(c))
        })
        .await??;
    Ok(json_response(StatusCode::OK, &describe(base, &saved)))
}

#[derive(Deserialize)]
struct VerifyBody {
    certificate: String,
}

async fn verify(state: &State, req: &Req, base: &str, name: &str) -> DpsResult<Response<Body>> {
    let key = check_name(name)?;
    let if_match = require_if_match(req, "verify")?.to_string();
    let body: VerifyBody = req.json("verification request ({\"certificate\":\"…\"})")?;
    let der = decode_certificate(&body.certificate, "the verification")
        .map_err(|e| DpsError::bad_request(e.0))?;
    let name = name.to_string();
    let saved = state
        .store
        .write(move |txn| -> StoreResult<DpsResult<StoredCaCert>> {
            let mut t = txn.open_table(CA_CERTS)?;
            let Some(mut c): Option<StoredCaCert> = get_json(&t, &key)? else {
                return Ok(Err(not_found(&name)));
            };
            if !etag_matches(&if_match, &c.etag) {
                return Ok(Err(DpsError::precondition(format!(
                    "If-Match does not match the current etag of certificate `{name}`: use the etag that generateVerificationCode returned"
                ))));
            }
            if let Err(e) = check_proof(&c, &der) {
                return Ok(Err(e));
            }
            c.is_verified = true;
            c.verification_code = None;
            c.etag = new_etag();
            c.updated = rfc1123(OffsetDateTime::now_utc());
            t.insert(key.as_str(), to_json(&c).as_slice())?;
            Ok(Ok(c))
        })
        .await??;
    Ok(json_response(StatusCode::OK, &describe(base, &saved)))
}

/// The verification certificate must have CN = the code and be signed by the CA's key.
fn check_proof(c: &StoredCaCert, der: &[u8]) -> DpsResult<()> {
    let code = c.verification_code.as_deref().ok_or_else(|| {
        DpsError::bad_request(format!(
            "certificate `{}` has no verification code: call generateVerificationCode first",
            c.name
        ))
    })?;
    let (_, proof) = X509Certificate::from_der(der).map_err(|e| {
        DpsError::bad_request(format!(
            "the verification certificate is not X.509: {}",
            crate::cert::der_problem(&e)
        ))
    })?;
    let cn = crate::issue::common_name_of(&proof).unwrap_or_default();
    if !cn.eq_ignore_ascii_case(code) {
        return Err(DpsError::bad_request(format!(
            "Proof-of-possession failed: the verification certificate's CN is `{cn}`, but the verification code is `{code}`"
        )));
    }
    let ca_der = pem::parse(&c.certificate)
        .map(|p| p.into_contents())
        .map_err(|_| DpsError::internal("stored CA certificate is damaged: it is not PEM"))?;
    let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| {
        DpsError::internal(format!(
            "stored CA certificate is damaged: {}",
            crate::cert::der_problem(&e)
        ))
    })?;
    if proof.verify_signature(Some(ca.public_key())).is_err() {
        return Err(DpsError::bad_request(format!(
            "Proof-of-possession failed: the verification certificate (issuer `{}`) is not signed by the private key of `{}` ({}); sign it with that CA's key",
            super::certs::dn_string(proof.issuer()),
            c.name,
            c.info.subject_name
        )));
    }
    if !proof.validity().is_valid() {
        return Err(DpsError::bad_request(
            "the verification certificate is expired or not yet valid",
        ));
    }
    Ok(())
}

async fn delete(state: &State, req: &Req, name: &str) -> DpsResult<Response<Body>> {
    let key = check_name(name)?;
    let if_match = require_if_match(req, "delete")?.to_string();
    let name = name.to_string();
    state
        .store
        .write(move |txn| -> StoreResult<DpsResult<()>> {
            let mut t = txn.open_table(CA_CERTS)?;
            let Some(c): Option<StoredCaCert> = get_json(&t, &key)? else {
                return Ok(Err(not_found(&name)));
            };
            if !etag_matches(&if_match, &c.etag) {
                return Ok(Err(DpsError::precondition(format!(
                    "If-Match does not match the current etag of certificate `{name}`"
                ))));
            }
            t.remove(key.as_str())?;
            let mut idx = txn.open_table(CA_BY_THUMB)?;
            if let Ok(p) = pem::parse(&c.certificate) {
                for k in index_keys(p.contents(), &key) {
                    idx.remove(k.as_str())?;
                }
            }
            Ok(Ok(()))
        })
        .await??;
    Ok(no_content())
}
