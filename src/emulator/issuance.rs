//! DPS certificate issuance (Azure Device Registry certificate management):
//! a local "ADR namespace" and the rules of a register call with `csr`.
//!
//! For each (namespace, certificate authority, certificate policy) the
//! emulator keeps a P-384 root and a P-384 issuing CA, durable under
//! `<data>/certificate-policies/<namespace>/<authority>/<policy>/`
//! (`root.cert.pem` is the exported root a test or hub trusts;
//! `issuing.cert.pem`; keys 0600; `policy.json` with the validity). A policy
//! is created when `--certificate-policy` declares it, or on first use by an
//! enrollment. Issued leaves are P-384/SHA-384, CN = registration ID,
//! clientAuth ([`Profile::Device`]), valid for the policy's days.
//!
//! The registration core ([`super::registration`]) calls [`issue_for`] after
//! attestation, and [`super::attest`] calls [`attest_issued`] so a device can
//! come back with its issued certificate. Refusals are DPS-shaped 400s whose
//! message names the rule (docs/certificate-issuance.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use redb::ReadTransaction;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::attest::{Attested, Credential, Enrollment};
use super::certs::{cert_info, info_of, sha256};
use super::errors::{DpsError, DpsResult};
use super::model::RegistrationSource;
use super::model::{EnrollmentCommon, EnrollmentGroup, IndividualEnrollment, RegistrationState};
use super::store::{ENROLLMENTS, GROUPS, REGISTRATIONS, get_json, store_error};
use crate::csr::{Csr, CsrKey};
use crate::error::{Error, Result};
use crate::fsio::{Mode, ensure_dir, write_atomic};
use crate::issue::{Ca, issue_for_public_key};
use crate::keys::{KeyType, load_private_key, private_key_pem};
use crate::profile::Profile;
use crate::regid::RegistrationId;

/// Namespace and authority of a policy named only by the preview's
/// `credentialPolicyName` (or a bare `--certificate-policy NAME`).
pub const DEFAULT_NAMESPACE: &str = "default";
/// See [`DEFAULT_NAMESPACE`].
pub const DEFAULT_AUTHORITY: &str = "default";
/// Validity of issued certificates when a policy is created on first use.
pub const DEFAULT_DAYS: u32 = 30;
/// The service's range for a policy's validity (concept-certificate-renewal).
pub const MIN_DAYS: u32 = 7;
/// See [`MIN_DAYS`].
pub const MAX_DAYS: u32 = 90;
/// Validity of the emulator's policy root and issuing CAs.
const CA_DAYS: u32 = 3650;
/// Directory under `--data`.
const DIR: &str = "certificate-policies";

/// A policy's full name: (namespace, certificate authority, policy).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyName {
    pub namespace_name: String,
    pub certificate_authority_name: String,
    pub certificate_policy_name: String,
}

impl PolicyName {
    /// Checks the three names (letters, digits, `-`, `_`, `.`; 1–63
    /// characters; not starting with `.` or `-`).
    pub fn new(
        namespace: &str,
        authority: &str,
        policy: &str,
    ) -> std::result::Result<Self, String> {
        for (what, v) in [
            ("namespaceName", namespace),
            ("certificateAuthorityName", authority),
            ("certificatePolicyName", policy),
        ] {
            let ok = (1..=63).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !v.starts_with(['.', '-']);
            if !ok {
                return Err(format!(
                    "{what} `{v}` is invalid: use 1-63 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
                ));
            }
        }
        Ok(PolicyName {
            namespace_name: namespace.to_string(),
            certificate_authority_name: authority.to_string(),
            certificate_policy_name: policy.to_string(),
        })
    }

    /// `NAMESPACE/CA/POLICY`, or a bare `POLICY` in the default namespace and authority.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s.split('/').collect::<Vec<_>>()[..] {
            [ns, ca, policy] => Self::new(ns, ca, policy),
            [policy] => Self::new(DEFAULT_NAMESPACE, DEFAULT_AUTHORITY, policy),
            _ => Err(format!(
                "`{s}` is not a certificate policy: write NAMESPACE/CA/POLICY (or POLICY alone for {DEFAULT_NAMESPACE}/{DEFAULT_AUTHORITY}/POLICY)"
            )),
        }
    }

    /// The policy an enrollment names, if any: the GA triple, or the
    /// preview's `credentialPolicyName`. A partial triple, or an alias that
    /// contradicts the triple, is refused.
    pub fn of_enrollment(c: &EnrollmentCommon) -> DpsResult<Option<PolicyName>> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        let triple = [
            ("namespaceName", set(&c.namespace_name)),
            (
                "certificateAuthorityName",
                set(&c.certificate_authority_name),
            ),
            ("certificatePolicyName", set(&c.certificate_policy_name)),
        ];
        let missing: Vec<&str> = triple
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        let alias = set(&c.credential_policy_name);
        let name = match (missing.len(), alias) {
            (3, None) => return Ok(None),
            (3, Some(p)) => Self::new(DEFAULT_NAMESPACE, DEFAULT_AUTHORITY, p),
            (0, alias) => {
                let n = Self::new(
                    triple[0].1.unwrap_or_default(),
                    triple[1].1.unwrap_or_default(),
                    triple[2].1.unwrap_or_default(),
                );
                if let (Ok(n), Some(a)) = (&n, alias)
                    && !a.eq_ignore_ascii_case(&n.certificate_policy_name)
                {
                    return Err(DpsError::bad_request(format!(
                        "credentialPolicyName `{a}` (the preview name) contradicts certificatePolicyName `{}`: send only the triple namespaceName, certificateAuthorityName, certificatePolicyName",
                        n.certificate_policy_name
                    )));
                }
                n
            }
            _ => {
                return Err(DpsError::bad_request(format!(
                    "namespaceName, certificateAuthorityName and certificatePolicyName go together: set all three or none ({} missing)",
                    missing.join(", ")
                )));
            }
        };
        name.map(Some).map_err(DpsError::bad_request)
    }

    /// The lower-cased key policies are stored under (names are case-insensitive).
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace_name, self.certificate_authority_name, self.certificate_policy_name
        )
        .to_ascii_lowercase()
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.namespace_name, self.certificate_authority_name, self.certificate_policy_name
        )
    }
}

/// `policy.json`, and a policy as the `--json` start-up line lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    #[serde(flatten)]
    pub name: PolicyName,
    /// Validity of issued certificates.
    pub validity_days: u32,
    /// The exported root (PEM) to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_file: Option<PathBuf>,
    /// The issuing CA (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuing_ca_file: Option<PathBuf>,
}

/// One policy's CAs.
pub struct PolicyCa {
    pub info: PolicyInfo,
    issuing: Ca,
    /// `[issuing CA, root]` as base64 DER, the tail of every issued chain.
    tail: [String; 2],
    /// Raw DER subject of the issuing CA, to recognise what it issued.
    issuing_subject: Vec<u8>,
}

/// A policy declared with `--certificate-policy NAME[:DAYS]`.
#[derive(Clone, Debug)]
pub struct Declared {
    pub name: PolicyName,
    pub days: Option<u32>,
}

impl Declared {
    /// Parses `NAMESPACE/CA/POLICY[:DAYS]` (or `POLICY[:DAYS]`); `short`
    /// allows fewer than [`MIN_DAYS`] days (renewal tests).
    pub fn parse(s: &str, short: bool) -> Result<Declared> {
        let (name, days) = match s.rsplit_once(':') {
            Some((n, d)) => {
                let days: u32 = d.parse().map_err(|_| {
                    Error::input(format!(
                        "--certificate-policy `{s}`: `{d}` is not a number of days"
                    ))
                })?;
                (n, Some(days))
            }
            None => (s, None),
        };
        let name = PolicyName::parse(name)
            .map_err(|e| Error::input(format!("--certificate-policy: {e}")))?;
        if let Some(d) = days {
            check_days(d, short)
                .map_err(|e| Error::input(format!("--certificate-policy `{s}`: {e}")))?;
        }
        Ok(Declared { name, days })
    }
}

fn check_days(days: u32, short: bool) -> std::result::Result<(), String> {
    let min = if short { 1 } else { MIN_DAYS };
    if (min..=MAX_DAYS).contains(&days) {
        Ok(())
    } else if short {
        Err(format!("{days} days is outside 1-{MAX_DAYS}"))
    } else {
        Err(format!(
            "{days} days is outside the service's {MIN_DAYS}-{MAX_DAYS}; pass --short-certificate-validity for 1-6 days (renewal tests)"
        ))
    }
}

/// Every certificate policy of a running emulator.
pub struct Issuance {
    dir: PathBuf,
    policies: Mutex<BTreeMap<String, Arc<PolicyCa>>>,
}

impl Issuance {
    /// Loads the policies under `<data>/certificate-policies` and creates
    /// (or re-dates) the declared ones.
    pub fn open(data: &Path, declared: &[Declared]) -> Result<Issuance> {
        let dir = data.join(DIR);
        let issuance = Issuance {
            dir,
            policies: Mutex::new(BTreeMap::new()),
        };
        for d in declared {
            issuance.ensure(&d.name, d.days)?;
        }
        // Policies created on first use in earlier runs.
        for ns in read_dirs(&issuance.dir) {
            for ca in read_dirs(&ns) {
                for policy in read_dirs(&ca) {
                    if let Ok(text) = std::fs::read(policy.join("policy.json"))
                        && let Ok(info) = serde_json::from_slice::<PolicyInfo>(&text)
                    {
                        issuance.ensure(&info.name, None)?;
                    }
                }
            }
        }
        Ok(issuance)
    }

    /// Every policy, for the start-up line.
    pub fn list(&self) -> Vec<PolicyInfo> {
        self.policies
            .lock()
            .map(|p| p.values().map(|p| p.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The CAs of `name`, created (durably) on first use; `days` re-dates an
    /// existing policy.
    pub fn ensure(&self, name: &PolicyName, days: Option<u32>) -> Result<Arc<PolicyCa>> {
        let key = name.key();
        let mut policies = self
            .policies
            .lock()
            .map_err(|_| Error::failed("the certificate-policy table is poisoned"))?;
        if let Some(p) = policies.get(&key)
            && days.is_none_or(|d| d == p.info.validity_days)
        {
            return Ok(p.clone());
        }
        let policy = Arc::new(load_or_create(&self.dir.join(&key), name, days)?);
        policies.insert(key, policy.clone());
        Ok(policy)
    }

    /// The policy whose issuing CA signed `cert`, if any.
    fn issuer_of(&self, cert: &X509Certificate<'_>) -> Option<Arc<PolicyCa>> {
        let policies = self.policies.lock().ok()?;
        policies
            .values()
            .find(|p| {
                p.issuing_subject == cert.issuer().as_raw()
                    && X509Certificate::from_der(&p.issuing.cert.der)
                        .is_ok_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok())
            })
            .cloned()
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// A CN for a policy CA: the names when they fit in 64 characters.
fn ca_common_name(name: &PolicyName, role: &str) -> String {
    let cn = format!("ADR {name} {role}");
    if cn.chars().count() <= crate::regid::MAX_CN_ID {
        cn
    } else {
        let h = super::model::hex_lower(&sha256(name.key().as_bytes()));
        format!("ADR policy {} {role}", &h[..16])
    }
}

fn load_or_create(dir: &Path, name: &PolicyName, days: Option<u32>) -> Result<PolicyCa> {
    let (root_path, issuing_path) = (dir.join("root.cert.pem"), dir.join("issuing.cert.pem"));
    let issuing_key_path = dir.join("issuing.key.pem");
    let info_path = dir.join("policy.json");
    let stored: Option<PolicyInfo> = std::fs::read(&info_path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    let read_ca = || -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let root = pem::parse(std::fs::read(&root_path).ok()?)
            .ok()?
            .into_contents();
        let issuing = pem::parse(std::fs::read(&issuing_path).ok()?)
            .ok()?
            .into_contents();
        Some((root, issuing, std::fs::read(&issuing_key_path).ok()?))
    };
    let (root_der, issuing) = match read_ca() {
        Some((root, issuing, key_pem)) => {
            let what = issuing_path.display().to_string();
            let key = load_private_key(&key_pem, None, &what, "")?;
            (root, Ca::from_parts(&issuing, key, &what)?)
        }
        None => {
            ensure_dir(dir, Mode::Secret)?;
            let root = Ca::create(
                &Profile::RootCa { path_len: 1 },
                &ca_common_name(name, "root"),
                &crate::validity::Validity::days(CA_DAYS),
                KeyType::EcP384.generate()?,
                None,
            )?;
            let issuing = Ca::create(
                &Profile::IntermediateCa { path_len: 0 },
                &ca_common_name(name, "issuing CA"),
                &crate::validity::Validity::days(CA_DAYS),
                KeyType::EcP384.generate()?,
                Some(&root),
            )?;
            write_atomic(
                &dir.join("root.key.pem"),
                private_key_pem(root.key(), None)?.as_bytes(),
                Mode::Secret,
            )?;
            write_atomic(
                &issuing_key_path,
                private_key_pem(issuing.key(), None)?.as_bytes(),
                Mode::Secret,
            )?;
            write_atomic(&issuing_path, issuing.cert.pem.as_bytes(), Mode::Public)?;
            write_atomic(&root_path, root.cert.pem.as_bytes(), Mode::Public)?;
            (root.cert.der.clone(), issuing)
        }
    };
    let validity_days = days
        .or(stored.as_ref().map(|s| s.validity_days))
        .unwrap_or(DEFAULT_DAYS);
    let info = PolicyInfo {
        name: stored.map(|s| s.name).unwrap_or_else(|| name.clone()),
        validity_days,
        root_file: Some(std::path::absolute(&root_path).unwrap_or(root_path)),
        issuing_ca_file: Some(std::path::absolute(&issuing_path).unwrap_or(issuing_path)),
    };
    let on_disk = PolicyInfo {
        root_file: None,
        issuing_ca_file: None,
        ..info.clone()
    };
    let text = serde_json::to_vec_pretty(&on_disk).map_err(|e| Error::failed(e.to_string()))?;
    write_atomic(&info_path, &text, Mode::Public)?;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let issuing_subject = X509Certificate::from_der(&issuing.cert.der)
        .map(|(_, x)| x.subject().as_raw().to_vec())
        .map_err(|e| {
            Error::failed(format!(
                "the policy's issuing CA does not parse: {}",
                crate::cert::der_problem(&e)
            ))
        })?;
    Ok(PolicyCa {
        info,
        tail: [b64(&issuing.cert.der), b64(&root_der)],
        issuing,
        issuing_subject,
    })
}

/// Checks an enrollment's policy fields and creates the policy's CAs on
/// first use (service API PUT).
pub fn prepare_enrollment(state: &super::State, common: &EnrollmentCommon) -> DpsResult<()> {
    if let Some(name) = PolicyName::of_enrollment(common)? {
        state.issuance.ensure(&name, None).map_err(|e| {
            DpsError::internal(format!("cannot create certificate policy {name}: {e}"))
        })?;
    }
    Ok(())
}

/// Register with `csr`: the enrollment's policy, then the CSR's rules
/// (base64 DER, no PEM armour, size, signature, CN = registration ID
/// exactly, EC P-384), then issue. Returns `issuedCertificateChain`: base64
/// DER, leaf, issuing CA, root.
pub fn issue_for(
    state: &super::State,
    enrollment: &Enrollment,
    reg: &RegistrationId,
    csr_field: &str,
) -> DpsResult<Vec<String>> {
    let Some(name) = PolicyName::of_enrollment(enrollment.common())? else {
        return Err(DpsError::bad_request(format!(
            "{} has no certificate policy (namespaceName, certificateAuthorityName, certificatePolicyName), so DPS cannot issue a certificate: set one on the enrollment, or register without `csr`",
            enrollment.describe()
        )));
    };
    let csr = Csr::from_dps_field(csr_field).map_err(|e| match e {
        crate::csr::CsrError::PemArmour { .. } | crate::csr::CsrError::NotBase64 { .. } => {
            DpsError::deserialization(e.to_string())
        }
        e => DpsError::bad_request(e.to_string()),
    })?;
    match csr.common_name.as_deref() {
        Some(cn) if cn == reg.as_str() => {}
        Some(cn) => {
            return Err(DpsError::bad_request(format!(
                "the CSR's CN `{cn}` is not the registration ID `{reg}`: the CN must equal the registration ID exactly"
            )));
        }
        None => {
            return Err(DpsError::bad_request(format!(
                "the CSR has no subject CN: its CN must equal the registration ID `{reg}`"
            )));
        }
    }
    if csr.key != CsrKey::EcP384 {
        return Err(DpsError::bad_request(format!(
            "the CSR's key is {}: DPS certificate issuance accepts only EC P-384 keys (RSA and P-256 are refused)",
            csr.key
        )));
    }
    let policy = state
        .issuance
        .ensure(&name, None)
        .map_err(|e| DpsError::internal(format!("certificate policy {name}: {e}")))?;
    let public_key = csr
        .public_key()
        .map_err(|e| DpsError::bad_request(e.to_string()))?;
    // With the clock moved past the policy's CAs, the CLI's advice in the
    // validity error (`pki ca roll`, --allow-expired-issuer) means nothing
    // to a device: say what expired and how to get issuance back.
    let now = state.clock.now();
    let ca_window = policy.issuing.cert.window();
    if ca_window.not_after <= now {
        let files = policy
            .info
            .issuing_ca_file
            .as_deref()
            .and_then(std::path::Path::parent)
            .map_or_else(String::new, |d| format!(" (in {})", d.display()));
        return Err(DpsError::internal(format!(
            "certificate policy {name}: its issuing CA expired at {}, before the emulator clock ({}); move the clock back (PUT /emulator/clock or --clock), or stop the emulator and delete the policy's CA files{files} so it makes new ones (devices must then trust the new root)",
            crate::validity::show(ca_window.not_after),
            crate::validity::show(now)
        )));
    }
    let leaf = issue_for_public_key(
        &Profile::Device,
        reg.as_str(),
        &crate::validity::Validity {
            now,
            ..crate::validity::Validity::days(policy.info.validity_days)
        },
        &public_key,
        &policy.issuing,
    )
    .map_err(|e| DpsError::internal(format!("issuing under {name} failed: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&leaf.der);
    Ok(vec![b64, policy.tail[0].clone(), policy.tail[1].clone()])
}

/// X.509 attestation of a device presenting a certificate a policy issued:
/// the policy's issuing CA counts as a signer for the enrollment that uses
/// the policy (the device's individual enrollment, or the group it last
/// registered through). `None` when the leaf is not policy-issued.
pub fn attest_issued(
    state: &super::State,
    rtxn: &ReadTransaction,
    reg_id: &str,
    parsed: &[X509Certificate<'_>],
    chain: &[CertificateDer<'static>],
) -> DpsResult<Option<Attested>> {
    let Some(leaf) = parsed.first() else {
        return Ok(None);
    };
    let Some(policy) = state.issuance.issuer_of(leaf) else {
        return Ok(None);
    };
    let name = &policy.info.name;
    let uses_policy = |c: &EnrollmentCommon| {
        PolicyName::of_enrollment(c)
            .ok()
            .flatten()
            .is_some_and(|n| n.key() == name.key())
    };
    let key = reg_id.to_ascii_lowercase();
    let enrollments = rtxn.open_table(ENROLLMENTS).map_err(store_error)?;
    let individual: Option<IndividualEnrollment> =
        get_json(&enrollments, &key).map_err(store_error)?;
    let enrollment = match individual {
        Some(e) if uses_policy(&e.common) => Enrollment::Individual(Box::new(e)),
        Some(e) => {
            return Err(DpsError::unauthorized(format!(
                "the device certificate was issued under certificate policy {name}, but individual enrollment `{}` does not use that policy",
                e.registration_id.unwrap_or_default()
            )));
        }
        None => {
            let regs = rtxn.open_table(REGISTRATIONS).map_err(store_error)?;
            let previous: Option<RegistrationState> = get_json(&regs, &key).map_err(store_error)?;
            let groups = rtxn.open_table(GROUPS).map_err(store_error)?;
            let group: Option<EnrollmentGroup> = match previous.as_ref().and_then(|r| r.group_id())
            {
                Some(g) => get_json(&groups, &g.to_ascii_lowercase()).map_err(store_error)?,
                None => None,
            };
            match group {
                Some(g) if uses_policy(&g.common) => Enrollment::Group(Box::new(g)),
                _ => {
                    return Err(DpsError::unauthorized(format!(
                        "the device certificate was issued under certificate policy {name}, but `{reg_id}` did not last register through an enrollment group that uses that policy"
                    )));
                }
            }
        }
    };
    let leaf_sha256 = sha256(&chain[0]);
    Ok(Some(Attested {
        source: RegistrationSource {
            enrollment_group_id: enrollment.group_id().map(str::to_string),
            certificate_info: Some(info_of(leaf, &chain[0])),
            signing_certificate_info: cert_info(&policy.issuing.cert.der).ok(),
        },
        enrollment,
        x509: true,
        credential: Credential::X509 { leaf_sha256 },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_declarations_parse() {
        let n = PolicyName::parse("ns1/ca1/p1").unwrap();
        assert_eq!(n.to_string(), "ns1/ca1/p1");
        assert_eq!(
            PolicyName::parse("p").unwrap().to_string(),
            "default/default/p"
        );
        assert!(PolicyName::parse("a/b").is_err());
        assert!(PolicyName::parse("a/b/../x").is_err());
        assert!(PolicyName::parse("a/../c").is_err());
        assert_eq!(Declared::parse("a/b/c:7", false).unwrap().days, Some(7));
        assert!(Declared::parse("a/b/c:1", false).is_err());
        assert!(Declared::parse("a/b/c:1", true).is_ok());
        assert!(Declared::parse("a/b/c:91", true).is_err());
        assert!(Declared::parse("a/b/c:x", false).is_err());
    }

    #[test]
    fn partial_triples_are_refused() {
        let mut c = EnrollmentCommon::default();
        assert_eq!(PolicyName::of_enrollment(&c).unwrap(), None);
        c.namespace_name = Some("ns".into());
        let e = PolicyName::of_enrollment(&c).unwrap_err();
        assert!(e.message.contains("certificatePolicyName"), "{e}");
        c.certificate_authority_name = Some("ca".into());
        c.certificate_policy_name = Some("p".into());
        assert!(PolicyName::of_enrollment(&c).unwrap().is_some());
        c.credential_policy_name = Some("other".into());
        assert!(PolicyName::of_enrollment(&c).is_err());
        let alias = EnrollmentCommon {
            credential_policy_name: Some("p".into()),
            ..Default::default()
        };
        assert_eq!(
            PolicyName::of_enrollment(&alias)
                .unwrap()
                .unwrap()
                .to_string(),
            "default/default/p"
        );
    }
}
