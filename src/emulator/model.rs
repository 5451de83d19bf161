//! The JSON records of the service API (contract §4, §3.7, §3.8, §7.3).
//!
//! Stored records and replies share these types. A stored record keeps the
//! uploaded certificate (normalised PEM) in `certificate`;
//! [`EnrollmentGroup::redacted`] and friends drop it before a record leaves
//! the emulator, because DPS never returns certificates, only the computed
//! `info`. Every optional field is `Option` so that explicit JSON `null`
//! (Python sends them) means "absent", unset fields are omitted from
//! replies, and unknown fields are ignored.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub use crate::dps::vocab::{
    AllocationPolicy, AttestationKind, ProvisioningStatus, RegistrationStatus,
};
use time::macros::format_description;

/// `X509CertificateInfo`: what DPS computes from an uploaded certificate (§4.5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    pub subject_name: String,
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    pub issuer_name: String,
    pub not_before_utc: String,
    pub not_after_utc: String,
    pub serial_number: String,
    pub version: u32,
}

/// `X509CertificateWithInfo`: `certificate` on the way in, `info` on the way out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertWithInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<CertInfo>,
}

/// `X509Certificates`: a primary and an optional secondary certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<CertWithInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<CertWithInfo>,
}

impl X509Certificates {
    /// The slots that are set, with their names.
    pub fn slots(&self) -> impl Iterator<Item = (&'static str, &CertWithInfo)> {
        [("primary", &self.primary), ("secondary", &self.secondary)]
            .into_iter()
            .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
    }

    fn redact(&mut self) {
        for slot in [&mut self.primary, &mut self.secondary]
            .into_iter()
            .flatten()
        {
            slot.certificate = None;
        }
    }
}

/// `X509CAReferences`: names of certificates in the DPS certificate store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaReferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// `X509Attestation`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<CaReferences>,
}

/// `SymmetricKeyAttestation`: base64 keys, generated when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// `AttestationMechanism`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    #[serde(rename = "type", default)]
    pub kind: Option<AttestationKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKey>,
}

impl Attestation {
    /// The attestation without certificate bodies (what replies carry).
    pub fn redacted(&self) -> Attestation {
        let mut a = self.clone();
        if let Some(x) = a.x509.as_mut() {
            if let Some(c) = x.client_certificates.as_mut() {
                c.redact();
            }
            if let Some(c) = x.signing_certificates.as_mut() {
                c.redact();
            }
        }
        a
    }
}

/// `ReprovisionPolicy`; both fields default to true (§4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: true,
        }
    }
}

/// `CustomAllocationDefinition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocation {
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
}

/// `DeviceCapabilities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

/// Fields shared by enrollment groups and individual enrollments, in DPS's reply order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCommon {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocation>,
    /// ADR namespace of the certificate policy (GA `2026-11-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    /// Certificate authority of the certificate policy (GA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_name: Option<String>,
    /// Certificate policy that issues device certificates (GA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_policy_name: Option<String>,
    /// The preview (`2025-07-01-preview`) name of the policy; an alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_policy_name: Option<String>,
}

impl EnrollmentCommon {
    /// Whether devices may register (`provisioningStatus` is not `disabled`).
    pub fn enabled(&self) -> bool {
        self.provisioning_status != Some(ProvisioningStatus::Disabled)
    }
}

/// `EnrollmentGroup` (§4.1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    #[serde(default)]
    pub enrollment_group_id: Option<String>,
    #[serde(default)]
    pub attestation: Option<Attestation>,
    #[serde(flatten)]
    pub common: EnrollmentCommon,
}

impl EnrollmentGroup {
    /// The record as replies show it: no certificate bodies.
    pub fn redacted(&self) -> EnrollmentGroup {
        let mut g = self.clone();
        g.attestation = g.attestation.map(|a| a.redacted());
        g
    }
}

/// `IndividualEnrollment` (§3.7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    #[serde(default)]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<RegistrationState>,
    #[serde(default)]
    pub attestation: Option<Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<Value>,
    #[serde(flatten)]
    pub common: EnrollmentCommon,
}

impl IndividualEnrollment {
    /// The record as replies show it: no certificate bodies.
    pub fn redacted(&self) -> IndividualEnrollment {
        let mut e = self.clone();
        e.attestation = e.attestation.map(|a| a.redacted());
        e
    }
}

/// Which enrollment a registration came through (`x509` / `symmetricKey` blocks of §7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_info: Option<CertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate_info: Option<CertInfo>,
}

/// `DeviceRegistrationState` / `DeviceRegistrationResult` (§3.8, §7.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<RegistrationSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<RegistrationSource>,
    pub registration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Certificate issuance: base64 DER, issued leaf, issuing CA, root.
    /// Only in the register operation's result, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate_chain: Option<Vec<String>>,
}

impl RegistrationState {
    /// A state with only the ID and status set.
    pub fn new(registration_id: String, status: RegistrationStatus) -> Self {
        RegistrationState {
            x509: None,
            symmetric_key: None,
            registration_id,
            created_date_time_utc: None,
            assigned_hub: None,
            device_id: None,
            status,
            substatus: None,
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: None,
            etag: None,
            payload: None,
            issued_certificate_chain: None,
        }
    }

    /// The enrollment group this registration came through, if any.
    pub fn group_id(&self) -> Option<&str> {
        self.x509
            .as_ref()
            .and_then(|x| x.enrollment_group_id.as_deref())
            .or_else(|| {
                self.symmetric_key
                    .as_ref()
                    .and_then(|s| s.enrollment_group_id.as_deref())
            })
    }
}

/// A CA certificate in the ARM certificate store (§10), as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCaCert {
    pub name: String,
    /// Normalised PEM of the CA certificate.
    pub certificate: String,
    pub info: CertInfo,
    pub is_verified: bool,
    #[serde(default)]
    pub verification_code: Option<String>,
    pub etag: String,
    pub created: String,
    pub updated: String,
}

/// Now, as DPS writes record timestamps: 7 fractional digits (§2.4).
pub fn now_utc_string() -> String {
    format_record_time(OffsetDateTime::now_utc())
}

/// A record timestamp with 7 fractional digits, e.g. `2023-05-19T23:10:35.7799084Z`.
pub fn format_record_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    ))
    .unwrap_or_default()
}

/// A certificate timestamp without fraction, e.g. `2023-05-19T23:10:35Z`.
pub fn format_cert_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// Random bytes from the system generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG failing is not recoverable; a zeroed value would only
    // make ids collide, never leak anything, so there is nothing to report.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b
}

/// A random UUID v4 string (tracking ids, etags, operation ids).
pub fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_lower(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A new opaque etag shaped like Azure's: base64 of a quoted id (§1).
pub fn new_etag() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\"{}\"", random_uuid()))
}

/// Lower-case hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Upper-case hex (thumbprints and serial numbers).
pub fn hex_upper(bytes: &[u8]) -> String {
    hex_lower(bytes).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_omit_unset_fields_and_certificates() {
        let g: EnrollmentGroup = serde_json::from_str(
            r#"{"enrollmentGroupId":"g","attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate":"PEM","info":null}}}},"iotHubs":null,"capabilities":null,"unknown":1}"#,
        )
        .unwrap();
        let out = serde_json::to_string(&g.redacted()).unwrap();
        assert!(!out.contains("PEM"), "{out}");
        assert!(!out.contains("null"), "{out}");
        assert!(!out.contains("iotHubs"), "{out}");
    }

    #[test]
    fn times_have_the_dps_shape() {
        let t = time::macros::datetime!(2023-05-19 23:10:35.7799084 UTC);
        assert_eq!(format_record_time(t), "2023-05-19T23:10:35.7799084Z");
        assert_eq!(format_cert_time(t), "2023-05-19T23:10:35Z");
        assert_eq!(random_uuid().len(), 36);
    }
}
