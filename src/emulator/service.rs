//! The service API: enrollment groups, individual enrollments and
//! registration states (contract §3, §4).
//!
//! Groups and individual enrollments behave the same (create 200, 409
//! without `If-Match`, 412 on a stale etag, 204 on delete, paged queries),
//! so both go through the generic handlers here, parameterised by
//! [`Record`]. Certificates are decoded and validated before the write is
//! queued, so the single writer thread only does the etag check and the
//! write itself.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use base64::Engine;
use redb::{TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certs::{cert_info, decode_certificate, sha256, to_pem};
use super::errors::{DpsError, DpsResult};
use super::http::{Req, etag_matches, json_response, no_content};
use super::model::{
    AllocationPolicy, Attestation, AttestationKind, CertWithInfo, EnrollmentCommon,
    EnrollmentGroup, IndividualEnrollment, ProvisioningStatus, RegistrationState, SymmetricKey,
    X509Certificates, hex_lower, new_etag, now_utc_string, random_bytes,
};
use super::store::{
    ENROLLMENTS, GROUPS, REG_BY_GROUP, REGISTRATIONS, SEP, SIGNERS, SYMKEY_GROUPS, StoreResult,
    get_json, index_suffixes, page_json, store_error, to_json,
};
use super::{POLICY, State};
use crate::dps::sas::{SasError, Token};

/// Default and largest query page (the real service returned 150 in one page; §3.5).
const DEFAULT_PAGE: usize = 1000;
/// Most items in one bulk request (§3.6).
const MAX_BULK: usize = 10;

/// Routes a service-API request.
pub async fn dispatch(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    authorize_service(state, req)?;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let collection = seg[0].to_ascii_lowercase();
    let m = &req.method;
    match (collection.as_str(), &seg[1..]) {
        ("enrollmentgroups", []) if m == Method::POST => bulk::<EnrollmentGroup>(state, req).await,
        ("enrollments", []) if m == Method::POST => bulk::<IndividualEnrollment>(state, req).await,
        ("enrollmentgroups", ["query"]) if m == Method::POST => {
            query::<EnrollmentGroup>(state, req)
        }
        ("enrollments", ["query"]) if m == Method::POST => {
            query::<IndividualEnrollment>(state, req)
        }
        ("enrollmentgroups", [id]) => record::<EnrollmentGroup>(state, req, id).await,
        ("enrollments", [id]) => record::<IndividualEnrollment>(state, req, id).await,
        ("enrollmentgroups", [id, a])
            if a.eq_ignore_ascii_case("attestationmechanism") && m == Method::POST =>
        {
            attestation_mechanism::<EnrollmentGroup>(state, id)
        }
        ("enrollments", [id, a])
            if a.eq_ignore_ascii_case("attestationmechanism") && m == Method::POST =>
        {
            attestation_mechanism::<IndividualEnrollment>(state, id)
        }
        ("registrations", [id]) => registration(state, req, id).await,
        ("registrations", [group, q]) if q.eq_ignore_ascii_case("query") && m == Method::POST => {
            registration_query(state, req, group)
        }
        _ => Err(DpsError::not_found(
            404_000,
            format!(
                "no such service endpoint: {} /{}",
                req.method,
                seg.join("/")
            ),
        )),
    }
}

/// Checks the service API's `Authorization` (SAS of `provisioningserviceowner`).
pub fn authorize_service(state: &State, req: &Req) -> DpsResult<()> {
    let result = crate::dps::sas::verify_service(
        req.header("authorization"),
        POLICY,
        &[state.sas_key.as_str()],
        req.host(),
        state.clock.now_unix(),
    );
    let e = match result {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    // `WrongResource` comes only after the signature verified. Clients may
    // sign `host:port` and send a Host header without the port (or the
    // other way round, behind a port rewrite, §9): compare host names alone.
    if let SasError::WrongResource(_) = e
        && let Some(Ok(token)) = req.header("authorization").map(Token::parse)
        && bare_host(&token.resource()).eq_ignore_ascii_case(bare_host(req.host()))
    {
        return Ok(());
    }
    let hint = match e {
        SasError::Missing | SasError::NotSas | SasError::MissingField("skn") => {
            "; send `Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=provisioningserviceowner` made from the emulator's connection string"
        }
        SasError::BadSignature => {
            "; sign with the SharedAccessKey of the emulator's connection string"
        }
        _ => "",
    };
    Err(DpsError::unauthorized(format!("{e}{hint}")))
}

/// A host without its port (`localhost:8443` → `localhost`, `[::1]:443` → `[::1]`).
fn bare_host(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((host, port))
            if port.chars().all(|c| c.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => h,
    }
}

/// What differs between enrollment groups and individual enrollments.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const TABLE: TableDefinition<'static, &'static str, &'static [u8]>;
    /// Singular name in messages.
    const KIND: &'static str;
    /// The JSON field holding the id.
    const ID_FIELD: &'static str;
    const NOT_FOUND: u32;
    const EXISTS: u32;
    const EXISTS_MESSAGE: &'static str;
    /// `x-ms-item-type` of query replies.
    const ITEM_TYPE: &'static str;
    /// Bulk request array field.
    const BULK_FIELD: &'static str;
    const IS_GROUP: bool;

    fn id(&self) -> Option<&str>;
    fn set_id(&mut self, id: String);
    fn attestation(&self) -> Option<&Attestation>;
    fn attestation_mut(&mut self) -> &mut Option<Attestation>;
    fn common(&self) -> &EnrollmentCommon;
    fn common_mut(&mut self) -> &mut EnrollmentCommon;
    fn redacted(&self) -> Self;
    /// Read-only fields that clients may send back and that are never stored.
    fn clear_read_only(&mut self) {}
    /// Shows the device's registration state (individual enrollments only).
    fn set_registration_state(&mut self, _state: RegistrationState) {}
    /// Keeps index tables in step with a write (`new` None = delete).
    fn reindex(
        txn: &WriteTransaction,
        key: &str,
        old: Option<&Self>,
        new: Option<&Self>,
    ) -> StoreResult<()>;
}

impl Record for EnrollmentGroup {
    const TABLE: TableDefinition<'static, &'static str, &'static [u8]> = GROUPS;
    const KIND: &'static str = "enrollment group";
    const ID_FIELD: &'static str = "enrollmentGroupId";
    const NOT_FOUND: u32 = 404_204;
    const EXISTS: u32 = 409_202;
    const EXISTS_MESSAGE: &'static str = "EnrollmentGroup already exists.";
    const ITEM_TYPE: &'static str = "EnrollmentGroup";
    const BULK_FIELD: &'static str = "enrollmentGroups";
    const IS_GROUP: bool = true;

    fn id(&self) -> Option<&str> {
        self.enrollment_group_id.as_deref()
    }
    fn set_id(&mut self, id: String) {
        self.enrollment_group_id = Some(id);
    }
    fn attestation(&self) -> Option<&Attestation> {
        self.attestation.as_ref()
    }
    fn attestation_mut(&mut self) -> &mut Option<Attestation> {
        &mut self.attestation
    }
    fn common(&self) -> &EnrollmentCommon {
        &self.common
    }
    fn common_mut(&mut self) -> &mut EnrollmentCommon {
        &mut self.common
    }
    fn redacted(&self) -> Self {
        EnrollmentGroup::redacted(self)
    }
    fn reindex(
        txn: &WriteTransaction,
        key: &str,
        old: Option<&Self>,
        new: Option<&Self>,
    ) -> StoreResult<()> {
        let mut signers = txn.open_table(SIGNERS)?;
        let mut symkey = txn.open_table(SYMKEY_GROUPS)?;
        if let Some(o) = old {
            for k in signer_keys(key, o.attestation.as_ref()) {
                signers.remove(k.as_str())?;
            }
            symkey.remove(key)?;
        }
        if let Some(n) = new {
            for k in signer_keys(key, n.attestation.as_ref()) {
                signers.insert(k.as_str(), ())?;
            }
            if is_kind(n.attestation.as_ref(), &AttestationKind::SymmetricKey) {
                symkey.insert(key, ())?;
            }
        }
        Ok(())
    }
}

impl Record for IndividualEnrollment {
    const TABLE: TableDefinition<'static, &'static str, &'static [u8]> = ENROLLMENTS;
    const KIND: &'static str = "enrollment";
    const ID_FIELD: &'static str = "registrationId";
    const NOT_FOUND: u32 = 404_201;
    const EXISTS: u32 = 409_201;
    const EXISTS_MESSAGE: &'static str = "Enrollment already exists.";
    const ITEM_TYPE: &'static str = "Enrollment";
    const BULK_FIELD: &'static str = "enrollments";
    const IS_GROUP: bool = false;

    fn id(&self) -> Option<&str> {
        self.registration_id.as_deref()
    }
    fn set_id(&mut self, id: String) {
        self.registration_id = Some(id);
    }
    fn attestation(&self) -> Option<&Attestation> {
        self.attestation.as_ref()
    }
    fn attestation_mut(&mut self) -> &mut Option<Attestation> {
        &mut self.attestation
    }
    fn common(&self) -> &EnrollmentCommon {
        &self.common
    }
    fn common_mut(&mut self) -> &mut EnrollmentCommon {
        &mut self.common
    }
    fn redacted(&self) -> Self {
        IndividualEnrollment::redacted(self)
    }
    fn clear_read_only(&mut self) {
        self.registration_state = None;
    }
    fn set_registration_state(&mut self, state: RegistrationState) {
        self.registration_state = Some(state);
    }
    fn reindex(
        _: &WriteTransaction,
        _: &str,
        _: Option<&Self>,
        _: Option<&Self>,
    ) -> StoreResult<()> {
        // Devices find their individual enrollment by registration id: no index.
        Ok(())
    }
}

fn is_kind(att: Option<&Attestation>, kind: &AttestationKind) -> bool {
    att.and_then(|a| a.kind.as_ref()) == Some(kind)
}

/// Index keys of a group: its signing certificates by thumbprint and by
/// subject, and its CA references by name (see [`super::store::SIGNERS`]).
pub fn signer_keys(group_key: &str, att: Option<&Attestation>) -> Vec<String> {
    let mut keys = Vec::new();
    let Some(x509) = att.and_then(|a| a.x509.as_ref()) else {
        return keys;
    };
    if let Some(sc) = &x509.signing_certificates {
        for (_, slot) in sc.slots() {
            let Some(der) = slot.certificate.as_deref().and_then(|p| pem::parse(p).ok()) else {
                continue;
            };
            let der = der.into_contents();
            keys.push(format!("t:{}{SEP}{group_key}", hex_lower(&sha256(&der))));
            if let Ok((_, x)) = X509Certificate::from_der(&der) {
                keys.push(format!(
                    "s:{}{SEP}{group_key}",
                    hex_lower(&sha256(x.subject().as_raw()))
                ));
            }
        }
    }
    if let Some(r) = &x509.ca_references {
        for name in [&r.primary, &r.secondary].into_iter().flatten() {
            keys.push(format!("r:{}{SEP}{group_key}", name.to_ascii_lowercase()));
        }
    }
    keys
}

/// Checks an id against DPS's rules (§4.3); returns the lower-cased store key.
pub fn check_id(id: &str, kind: &str) -> DpsResult<String> {
    crate::regid::check(id, crate::regid::MAX_ID, kind)
        .map_err(|e| DpsError::bad_request(e.to_string()))?;
    Ok(id.to_ascii_lowercase())
}

async fn record<R: Record>(state: &State, req: &Req, id: &str) -> DpsResult<Response<Body>> {
    let key = check_id(id, &format!("{} ID", R::KIND))?;
    match req.method {
        Method::GET => {
            let r = state.store.read()?;
            let t = r.open_table(R::TABLE).map_err(store_error)?;
            let rec: R = get_json(&t, &key)
                .map_err(store_error)?
                .ok_or_else(|| not_found::<R>(id))?;
            let mut out = rec.redacted();
            if !R::IS_GROUP {
                attach_registration_state(state, &key, &mut out)?;
            }
            Ok(json_response(StatusCode::OK, &out))
        }
        Method::PUT => {
            let rec: R = req.json(&format!("{} record", R::KIND))?;
            let saved = put_record(state, id, rec, req.if_match().map(str::to_string)).await?;
            Ok(json_response(StatusCode::OK, &saved.redacted()))
        }
        Method::DELETE => {
            delete_record::<R>(state, id, req.if_match().map(str::to_string)).await?;
            Ok(no_content())
        }
        _ => Err(DpsError::method_not_allowed(format!(
            "{} is not allowed on an {}; use GET, PUT or DELETE",
            req.method,
            R::KIND
        ))),
    }
}

fn attach_registration_state<R: Record>(state: &State, key: &str, out: &mut R) -> DpsResult<()> {
    // Only individual enrollments carry their device's registration state on GET (§3.7).
    let r = state.store.read()?;
    let t = r.open_table(REGISTRATIONS).map_err(store_error)?;
    if let Some(reg) = get_json::<RegistrationState>(&t, key).map_err(store_error)?
        && reg.group_id().is_none()
    {
        out.set_registration_state(reg);
    }
    Ok(())
}

fn not_found<R: Record>(id: &str) -> DpsError {
    DpsError::not_found(R::NOT_FOUND, format!("{} `{id}` does not exist", R::KIND))
}

/// Validates and stores a record: create without `If-Match`, update with it.
pub async fn put_record<R: Record>(
    state: &State,
    id: &str,
    mut rec: R,
    if_match: Option<String>,
) -> DpsResult<R> {
    let key = check_id(id, &format!("{} ID", R::KIND))?;
    match rec.id() {
        Some(body_id) if body_id != id => {
            return Err(DpsError::bad_request(format!(
                "{} `{body_id}` in the body does not match `{id}` in the path",
                R::ID_FIELD
            )));
        }
        _ => rec.set_id(id.to_string()),
    }
    rec.clear_read_only();
    validate_common(rec.common_mut())?;
    super::issuance::prepare_enrollment(state, rec.common())?;
    let att = rec
        .attestation_mut()
        .as_mut()
        .ok_or_else(|| DpsError::bad_request("attestation is required"))?;
    prepare_attestation(att, R::IS_GROUP)?;
    let id = id.to_string();
    state
        .store
        .write(move |txn| -> StoreResult<DpsResult<R>> {
            let mut table = txn.open_table(R::TABLE)?;
            let old: Option<R> = get_json(&table, &key)?;
            match (&old, if_match.as_deref()) {
                (Some(_), None) => {
                    return Ok(Err(DpsError::conflict(
                        R::EXISTS,
                        format!(
                            "{} (`{id}`; to update it, send If-Match with its etag, or `*`)",
                            R::EXISTS_MESSAGE
                        ),
                    )));
                }
                (Some(o), Some(m)) => {
                    let etag = o.common().etag.as_deref().unwrap_or("");
                    if !etag_matches(m, etag) {
                        return Ok(Err(DpsError::precondition(format!(
                            "ETag in the request does not match the current etag of {} `{id}` as per RFC7232: GET it again and retry with its etag",
                            R::KIND
                        ))));
                    }
                }
                (None, Some(_)) => {
                    return Ok(Err(DpsError::not_found(
                        R::NOT_FOUND,
                        format!(
                            "{} `{id}` does not exist, so it cannot be updated (If-Match was sent); send no If-Match to create it",
                            R::KIND
                        ),
                    )));
                }
                (None, None) => {}
            }
            let mut rec = rec;
            if let Err(e) = keep_stored_certificates(
                rec.attestation_mut(),
                old.as_ref().and_then(|o| o.attestation()),
            ) {
                return Ok(Err(e));
            }
            let now = now_utc_string();
            let common = rec.common_mut();
            common.created_date_time_utc = Some(
                old.as_ref()
                    .and_then(|o| o.common().created_date_time_utc.clone())
                    .unwrap_or_else(|| now.clone()),
            );
            common.last_updated_date_time_utc = Some(now);
            common.etag = Some(new_etag());
            table.insert(key.as_str(), to_json(&rec).as_slice())?;
            drop(table);
            R::reindex(txn, &key, old.as_ref(), Some(&rec))?;
            Ok(Ok(rec))
        })
        .await?
}

/// Deletes a record, honouring `If-Match`.
pub async fn delete_record<R: Record>(
    state: &State,
    id: &str,
    if_match: Option<String>,
) -> DpsResult<()> {
    let key = check_id(id, &format!("{} ID", R::KIND))?;
    let id = id.to_string();
    state
        .store
        .write(move |txn| -> StoreResult<DpsResult<()>> {
            let mut table = txn.open_table(R::TABLE)?;
            let Some(old): Option<R> = get_json(&table, &key)? else {
                return Ok(Err(not_found::<R>(&id)));
            };
            if let Some(m) = &if_match
                && !etag_matches(m, old.common().etag.as_deref().unwrap_or(""))
            {
                return Ok(Err(DpsError::precondition(format!(
                    "ETag in the request does not match the current etag of {} `{id}` as per RFC7232",
                    R::KIND
                ))));
            }
            table.remove(key.as_str())?;
            drop(table);
            R::reindex(txn, &key, Some(&old), None)?;
            Ok(Ok(()))
        })
        .await?
}

fn validate_common(c: &mut EnrollmentCommon) -> DpsResult<()> {
    match &c.provisioning_status {
        Some(ProvisioningStatus::Other(s)) => {
            return Err(DpsError::bad_request(format!(
                "provisioningStatus `{s}` is invalid: use `enabled` or `disabled`"
            )));
        }
        Some(_) => {}
        None => c.provisioning_status = Some(ProvisioningStatus::Enabled),
    }
    if let Some(AllocationPolicy::Other(p)) = &c.allocation_policy {
        return Err(DpsError::bad_request(format!(
            "allocationPolicy `{p}` is invalid: use hashed, geoLatency, static or custom"
        )));
    }
    if c.iot_hubs.as_ref().is_some_and(|h| !h.is_empty()) && c.allocation_policy.is_none() {
        return Err(DpsError::bad_request(
            "Enrollment allocationPolicy must be specified when iotHubs are specified.",
        ));
    }
    if let Some(hubs) = &c.iot_hubs
        && let Some(bad) = hubs.iter().find(|h| h.trim().is_empty())
    {
        return Err(DpsError::bad_request(format!(
            "iotHubs holds an empty host name `{bad}`"
        )));
    }
    if c.allocation_policy == Some(AllocationPolicy::Custom) {
        let ok = c.custom_allocation_definition.as_ref().is_some_and(|d| {
            d.webhook_url.as_deref().is_some_and(|u| !u.is_empty())
                && d.api_version.as_deref().is_some_and(|v| !v.is_empty())
        });
        if !ok {
            return Err(DpsError::bad_request(
                "allocationPolicy `custom` needs customAllocationDefinition with webhookUrl and apiVersion",
            ));
        }
    }
    if let Some(t) = &c.initial_twin
        && !(t.is_object() || t.is_null())
    {
        return Err(DpsError::bad_request("initialTwin must be a JSON object"));
    }
    Ok(())
}

/// Validates the attestation, decodes certificates (normalised PEM + `info`)
/// and generates missing symmetric keys. A certificate slot without
/// `certificate` is left empty: on update it keeps the stored one.
fn prepare_attestation(att: &mut Attestation, group: bool) -> DpsResult<()> {
    let kind = att.kind.clone().ok_or_else(|| {
        DpsError::bad_request("attestation.type is required (x509 or symmetricKey)")
    })?;
    match kind {
        AttestationKind::X509 => {
            att.tpm = None;
            att.symmetric_key = None;
            let x = att.x509.as_mut().ok_or_else(|| {
                DpsError::bad_request("attestation.type is x509 but attestation.x509 is missing")
            })?;
            if group && x.client_certificates.is_some() {
                return Err(DpsError::bad_request(
                    "an enrollment group takes attestation.x509.signingCertificates or caReferences, not clientCertificates (those are for individual enrollments)",
                ));
            }
            let n = [
                x.client_certificates.is_some(),
                x.signing_certificates.is_some(),
                x.ca_references.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                return Err(DpsError::bad_request(if group {
                    "attestation.x509 needs exactly one of signingCertificates or caReferences"
                } else {
                    "attestation.x509 needs exactly one of clientCertificates, signingCertificates or caReferences"
                }));
            }
            for (name, certs) in [
                ("clientCertificates", x.client_certificates.as_mut()),
                ("signingCertificates", x.signing_certificates.as_mut()),
            ] {
                if let Some(c) = certs {
                    prepare_certs(c, &format!("attestation.x509.{name}"))?;
                }
            }
            if let Some(r) = &x.ca_references
                && r.primary.as_deref().is_none_or(str::is_empty)
            {
                return Err(DpsError::bad_request(
                    "attestation.x509.caReferences.primary is required (the name of a certificate in the DPS certificate store)",
                ));
            }
        }
        AttestationKind::SymmetricKey => {
            att.tpm = None;
            att.x509 = None;
            let sk = att.symmetric_key.get_or_insert_with(SymmetricKey::default);
            for (name, slot) in [
                ("primaryKey", &mut sk.primary_key),
                ("secondaryKey", &mut sk.secondary_key),
            ] {
                match slot {
                    Some(k) if crate::dps::sas::decode_key(k).is_none() => {
                        return Err(DpsError::bad_request(format!(
                            "attestation.symmetricKey.{name} is not valid base64"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        *slot = Some(
                            base64::engine::general_purpose::STANDARD.encode(random_bytes::<64>()),
                        )
                    }
                }
            }
        }
        AttestationKind::Tpm if !group => {
            let ok = att
                .tpm
                .as_ref()
                .and_then(|t| t.get("endorsementKey"))
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty());
            if !ok {
                return Err(DpsError::bad_request(
                    "attestation.tpm.endorsementKey is required",
                ));
            }
        }
        _ if group => {
            return Err(DpsError::bad_request(format!(
                "attestation.type `{kind}` is not valid for an enrollment group: use x509 or symmetricKey"
            )));
        }
        _ => {
            return Err(DpsError::bad_request(format!(
                "attestation.type `{kind}` is invalid: use x509, symmetricKey or tpm"
            )));
        }
    }
    Ok(())
}

fn prepare_certs(c: &mut X509Certificates, what: &str) -> DpsResult<()> {
    if c.primary.is_none() {
        return Err(DpsError::bad_request(format!("{what}.primary is required")));
    }
    for (name, slot) in [("primary", &mut c.primary), ("secondary", &mut c.secondary)] {
        let Some(s) = slot else { continue };
        let path = format!("{what}.{name}");
        match s.certificate.as_deref() {
            Some(text) => {
                let der =
                    decode_certificate(text, &path).map_err(|e| DpsError::bad_request(e.0))?;
                let info = cert_info(&der).map_err(|e| DpsError::bad_request(e.0))?;
                *s = CertWithInfo {
                    certificate: Some(to_pem(&der)),
                    info: Some(info),
                };
            }
            // Info-only slot (a PUT-back of a returned record): resolved against the stored record.
            None => s.info = None,
        }
    }
    Ok(())
}

/// Fills info-only certificate slots from the stored record (§3.2: the
/// PUT-back of a returned record must keep its certificates).
fn keep_stored_certificates(
    new: &mut Option<Attestation>,
    old: Option<&Attestation>,
) -> DpsResult<()> {
    let Some(x) = new.as_mut().and_then(|a| a.x509.as_mut()) else {
        return Ok(());
    };
    let old_x = old.and_then(|a| a.x509.as_ref());
    for (name, certs, old_certs) in [
        (
            "clientCertificates",
            x.client_certificates.as_mut(),
            old_x.and_then(|o| o.client_certificates.as_ref()),
        ),
        (
            "signingCertificates",
            x.signing_certificates.as_mut(),
            old_x.and_then(|o| o.signing_certificates.as_ref()),
        ),
    ] {
        let Some(certs) = certs else { continue };
        for (slot_name, slot, old_slot) in [
            (
                "primary",
                &mut certs.primary,
                old_certs.and_then(|o| o.primary.as_ref()),
            ),
            (
                "secondary",
                &mut certs.secondary,
                old_certs.and_then(|o| o.secondary.as_ref()),
            ),
        ] {
            let Some(s) = slot else { continue };
            if s.certificate.is_some() {
                continue;
            }
            match old_slot.filter(|o| o.certificate.is_some()) {
                Some(o) => *s = o.clone(),
                None => {
                    return Err(DpsError::bad_request(format!(
                        "attestation.x509.{name}.{slot_name}.certificate is missing: a new certificate needs the PEM (or base64) text; only an update may send info alone to keep the stored certificate"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn attestation_mechanism<R: Record>(state: &State, id: &str) -> DpsResult<Response<Body>> {
    let key = check_id(id, &format!("{} ID", R::KIND))?;
    let r = state.store.read()?;
    let t = r.open_table(R::TABLE).map_err(store_error)?;
    let rec: R = get_json(&t, &key)
        .map_err(store_error)?
        .ok_or_else(|| not_found::<R>(id))?;
    let att = rec
        .attestation()
        .map(Attestation::redacted)
        .unwrap_or_default();
    Ok(json_response(StatusCode::OK, &att))
}

/// Page size from `x-ms-max-item-count` (default and cap [`DEFAULT_PAGE`]).
fn page_size(req: &Req) -> DpsResult<usize> {
    match req.header("x-ms-max-item-count") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(DEFAULT_PAGE)),
            _ => Err(DpsError::bad_request(format!(
                "x-ms-max-item-count `{v}` is not a positive integer"
            ))),
        },
    }
}

/// The store key after which the next page starts, from `x-ms-continuation`.
fn continuation(req: &Req) -> DpsResult<Option<String>> {
    let Some(token) = req.header("x-ms-continuation").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| {
            DpsError::bad_request("x-ms-continuation is not a token this emulator issued")
        })
}

fn check_query_body(req: &Req) -> DpsResult<()> {
    // The query text is ignored (§3.5), but a body that is not JSON is still a client bug.
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: serde_json::Value = req.json("query specification ({\"query\":\"*\"})")?;
    if !v.is_object() {
        return Err(DpsError::bad_request(
            "the query body must be a JSON object such as {\"query\":\"*\"}",
        ));
    }
    Ok(())
}

fn paged_response<T: Serialize>(
    items: &[T],
    item_type: &str,
    next: Option<String>,
    limit: usize,
) -> Response<Body> {
    let mut resp = json_response(StatusCode::OK, &items);
    let h = resp.headers_mut();
    h.insert(
        "x-ms-item-type",
        HeaderValue::from_str(item_type).unwrap_or(HeaderValue::from_static("")),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&limit.to_string()) {
        h.insert("x-ms-max-item-count", v);
    }
    // Only when more pages exist, and never empty: Node loops forever on "" (§3.5).
    if let Some(n) = next
        && let Ok(v) =
            HeaderValue::from_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n))
    {
        h.insert("x-ms-continuation", v);
    }
    resp
}

fn query<R: Record>(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    check_query_body(req)?;
    let limit = page_size(req)?;
    let after = continuation(req)?;
    let r = state.store.read()?;
    let t = r.open_table(R::TABLE).map_err(store_error)?;
    let (items, next) = page_json::<R>(&t, after.as_deref(), limit).map_err(store_error)?;
    let items: Vec<R> = items.iter().map(R::redacted).collect();
    Ok(paged_response(&items, R::ITEM_TYPE, next, limit))
}

async fn registration(state: &State, req: &Req, id: &str) -> DpsResult<Response<Body>> {
    let key = check_id(id, "registration ID")?;
    match req.method {
        Method::GET => {
            let r = state.store.read()?;
            let t = r.open_table(REGISTRATIONS).map_err(store_error)?;
            let reg: RegistrationState = get_json(&t, &key)
                .map_err(store_error)?
                .ok_or_else(|| registration_not_found(id))?;
            Ok(json_response(StatusCode::OK, &reg))
        }
        Method::DELETE => {
            let if_match = req.if_match().map(str::to_string);
            let id = id.to_string();
            state
                .store
                .write(move |txn| -> StoreResult<DpsResult<()>> {
                    let mut t = txn.open_table(REGISTRATIONS)?;
                    let Some(old): Option<RegistrationState> = get_json(&t, &key)? else {
                        return Ok(Err(registration_not_found(&id)));
                    };
                    if let Some(m) = &if_match
                        && !etag_matches(m, old.etag.as_deref().unwrap_or(""))
                    {
                        return Ok(Err(DpsError::precondition(format!(
                            "ETag in the request does not match the current etag of registration `{id}` as per RFC7232"
                        ))));
                    }
                    t.remove(key.as_str())?;
                    if let Some(g) = old.group_id() {
                        let mut idx = txn.open_table(REG_BY_GROUP)?;
                        idx.remove(format!("{}{SEP}{key}", g.to_ascii_lowercase()).as_str())?;
                    }
                    Ok(Ok(()))
                })
                .await??;
            Ok(no_content())
        }
        _ => Err(DpsError::method_not_allowed(format!(
            "{} is not allowed on a registration; use GET or DELETE",
            req.method
        ))),
    }
}

fn registration_not_found(id: &str) -> DpsError {
    DpsError::not_found(
        404_202,
        format!("registration `{id}` does not exist (the device has not registered)"),
    )
}

fn registration_query(state: &State, req: &Req, group: &str) -> DpsResult<Response<Body>> {
    check_query_body(req)?;
    let gkey = check_id(group, "enrollment group ID")?;
    let limit = page_size(req)?;
    let after = continuation(req)?;
    let r = state.store.read()?;
    let idx = r.open_table(REG_BY_GROUP).map_err(store_error)?;
    let (keys, more) = index_suffixes(&idx, &format!("{gkey}{SEP}"), after.as_deref(), limit)
        .map_err(store_error)?;
    let regs = r.open_table(REGISTRATIONS).map_err(store_error)?;
    let mut items = Vec::with_capacity(keys.len());
    for k in &keys {
        if let Some(reg) = get_json::<RegistrationState>(&regs, k).map_err(store_error)? {
            items.push(reg);
        }
    }
    let next = if more { keys.last().cloned() } else { None };
    Ok(paged_response(&items, "DeviceRegistration", next, limit))
}

/// One failed item of a bulk request (§3.6).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkError {
    #[serde(skip_serializing_if = "Option::is_none")]
    enrollment_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_id: Option<String>,
    error_code: u32,
    error_status: String,
}

async fn bulk<R: Record>(state: &State, req: &Req) -> DpsResult<Response<Body>> {
    let v: serde_json::Value = req.json("bulk operation")?;
    let mode = v
        .get("mode")
        .and_then(|m| m.as_str())
        .ok_or_else(|| {
            DpsError::bad_request("mode is required: create, update, updateIfMatchETag or delete")
        })?
        .to_string();
    let items = v
        .get(R::BULK_FIELD)
        .and_then(|a| a.as_array())
        .ok_or_else(|| DpsError::bad_request(format!("{} must be an array", R::BULK_FIELD)))?;
    if items.is_empty() || items.len() > MAX_BULK {
        return Err(DpsError::bad_request(format!(
            "{} must hold 1 to {MAX_BULK} items, not {}",
            R::BULK_FIELD,
            items.len()
        )));
    }
    let mut errors = Vec::new();
    for item in items {
        let rec: R = serde_json::from_value(item.clone()).map_err(|e| {
            DpsError::bad_request(format!(
                "an item of {} is not a valid {}: {e}",
                R::BULK_FIELD,
                R::KIND
            ))
        })?;
        let id = rec
            .id()
            .map(str::to_string)
            .ok_or_else(|| DpsError::bad_request(format!("every item needs {}", R::ID_FIELD)))?;
        let etag = rec.common().etag.clone();
        let result = match mode.to_ascii_lowercase().as_str() {
            "create" | "update" => put_record(state, &id, rec, None).await.map(|_| ()),
            "updateifmatchetag" => put_record(state, &id, rec, Some(etag.unwrap_or_default()))
                .await
                .map(|_| ()),
            "delete" => delete_record::<R>(state, &id, etag).await,
            _ => {
                return Err(DpsError::bad_request(format!(
                    "mode `{mode}` is invalid: use create, update, updateIfMatchETag or delete"
                )));
            }
        };
        if let Err(e) = result {
            let (g, r) = if R::IS_GROUP {
                (Some(id), None)
            } else {
                (None, Some(id))
            };
            errors.push(BulkError {
                enrollment_group_id: g,
                registration_id: r,
                error_code: e.code,
                error_status: e.message,
            });
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"isSuccessful": errors.is_empty(), "errors": errors}),
    ))
}
