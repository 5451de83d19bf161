//! Who is calling: service SAS tokens, device SAS tokens and X.509 device
//! chains, with DPS's enrollment selection rules (contract §6, §8).
//!
//! Every refusal is a 401 401002 whose message names the one check that
//! failed (CN ≠ registration ID, a broken link, an expired certificate, no
//! enrollment for the chain, …), because that is exactly what Azure's
//! opaque "Unauthorized" does not tell users.

use redb::ReadTransaction;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::State;
use super::certs::{dn_string, info_of, sha256};
use super::errors::{DpsError, DpsResult};
use super::model::{
    Attestation, AttestationKind, EnrollmentCommon, EnrollmentGroup, IndividualEnrollment,
    RegistrationSource, StoredCaCert, hex_lower, hex_upper,
};
use super::store::{
    CA_BY_THUMB, CA_CERTS, ENROLLMENTS, GROUPS, SEP, SIGNERS, SYMKEY_GROUPS, get_json,
    index_suffixes, store_error,
};
use crate::dps::sas::{SasError, Token};

/// Most candidates read from one index prefix (ids sharing one certificate).
const MAX_CANDIDATES: usize = 64;

/// The enrollment a device matched.
#[derive(Clone, Debug)]
pub enum Enrollment {
    Group(Box<EnrollmentGroup>),
    Individual(Box<IndividualEnrollment>),
}

impl Enrollment {
    /// Settings shared by both kinds (status, hubs, allocation, reprovisioning).
    pub fn common(&self) -> &EnrollmentCommon {
        match self {
            Enrollment::Group(g) => &g.common,
            Enrollment::Individual(e) => &e.common,
        }
    }

    /// "enrollment group `x`" or "individual enrollment `x`", for messages.
    pub fn describe(&self) -> String {
        match self {
            Enrollment::Group(g) => format!(
                "enrollment group `{}`",
                g.enrollment_group_id.as_deref().unwrap_or("")
            ),
            Enrollment::Individual(e) => format!(
                "individual enrollment `{}`",
                e.registration_id.as_deref().unwrap_or("")
            ),
        }
    }

    /// The group id, for group enrollments.
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Enrollment::Group(g) => g.enrollment_group_id.as_deref(),
            Enrollment::Individual(_) => None,
        }
    }
}

/// How a device proved itself; re-checked on every status poll.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The TLS client certificate with this SHA-256.
    X509 { leaf_sha256: [u8; 32] },
    /// A SAS token signed with one of these keys (base64; derived for groups).
    Sas { keys: Vec<String> },
}

impl Credential {
    /// Whether a later request (a status poll) carries the same credential.
    pub fn check(&self, state: &State, presented: &Presented<'_>) -> DpsResult<()> {
        match self {
            Credential::X509 { leaf_sha256 } => {
                let same = presented
                    .chain
                    .first()
                    .is_some_and(|leaf| sha256(leaf) == *leaf_sha256);
                if same {
                    Ok(())
                } else {
                    Err(DpsError::unauthorized(
                        "this operation belongs to another device: present the same client certificate that registered",
                    ))
                }
            }
            Credential::Sas { keys } => {
                let header = presented.sas.ok_or_else(|| {
                    DpsError::unauthorized("the status poll carries no SAS token (HTTP Authorization header, MQTT password); send the same SAS token as the register call")
                })?;
                let token =
                    Token::parse(header).map_err(|e| DpsError::unauthorized(e.to_string()))?;
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                token
                    .verify(&keys, state.clock.now_unix())
                    .map_err(|e| DpsError::unauthorized(e.to_string()))
            }
        }
    }
}

/// The credentials a device presented, whatever the transport: a SAS token
/// (HTTP `Authorization`, MQTT password) and the TLS client chain.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`, if sent.
    pub sas: Option<&'a str>,
    /// The TLS client chain, leaf first; empty if none.
    pub chain: &'a [CertificateDer<'static>],
}

/// A device that passed authentication.
#[derive(Clone, Debug)]
pub struct Attested {
    pub enrollment: Enrollment,
    /// The `x509` or `symmetricKey` block of the registration state.
    pub source: RegistrationSource,
    pub x509: bool,
    pub credential: Credential,
}

fn unauthorized(m: impl Into<String>) -> DpsError {
    DpsError::unauthorized(m)
}

/// Label for certificate `i` of a presented chain, for messages.
fn label(i: usize, x: &X509Certificate<'_>) -> String {
    let role = if i == 0 {
        "the device certificate"
    } else {
        "chain certificate"
    };
    format!("certificate #{i} ({role}, {})", dn_string(x.subject()))
}

/// The instant chains are checked at, and how to name it in messages.
#[derive(Clone, Copy)]
struct Now<'a> {
    at: ASN1Time,
    /// "2027-01-01T00:00:00Z" or "… (real time)".
    shown: &'a str,
}

fn validity(what: &str, x: &X509Certificate<'_>, now: Now<'_>) -> DpsResult<()> {
    let v = x.validity();
    let window = |v: &x509_parser::certificate::Validity| {
        format!(
            "notBefore {}, notAfter {}",
            super::model::format_cert_time(v.not_before.to_datetime()),
            super::model::format_cert_time(v.not_after.to_datetime())
        )
    };
    if now.at < v.not_before {
        return Err(unauthorized(format!(
            "{what} is not yet valid ({}) against the emulator clock {}",
            window(v),
            now.shown
        )));
    }
    if now.at > v.not_after {
        return Err(unauthorized(format!(
            "{what} has expired ({}) against the emulator clock {}",
            window(v),
            now.shown
        )));
    }
    Ok(())
}

/// A certificate an enrollment trusts (a signing certificate or a CA reference target).
struct Anchor {
    der: Vec<u8>,
    /// "signing certificate primary of enrollment group `g`".
    what: String,
}

/// X.509 attestation of `reg_id` with the presented `chain` (DER, leaf first), §8.
pub fn attest_x509(
    state: &State,
    reg_id: &str,
    chain: &[CertificateDer<'static>],
) -> DpsResult<Attested> {
    let shown = state.clock.describe();
    let now = Now {
        at: ASN1Time::from(state.clock.now()),
        shown: &shown,
    };
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, x) = X509Certificate::from_der(der).map_err(|e| {
            unauthorized(format!(
                "certificate #{i} of the TLS client chain is not a valid X.509 certificate: {}",
                crate::cert::der_problem(&e)
            ))
        })?;
        parsed.push(x);
    }
    let Some(leaf) = parsed.first() else {
        return Err(unauthorized(
            "no client certificate was presented in the TLS handshake",
        ));
    };
    // Check 2: CN = registration ID.
    let cn = crate::issue::common_name_of(leaf).ok_or_else(|| {
        unauthorized(format!(
            "the device certificate ({}) has no subject CN; its CN must be the registration ID `{reg_id}`",
            dn_string(leaf.subject())
        ))
    })?;
    if !cn.eq_ignore_ascii_case(reg_id) {
        return Err(unauthorized(format!(
            "the device certificate's subject CN `{cn}` does not match the registration ID `{reg_id}`: DPS requires CN = registration ID"
        )));
    }
    // Check 5: every presented link (signature and validity).
    for (i, x) in parsed.iter().enumerate() {
        validity(&label(i, x), x, now)?;
    }
    for i in 0..parsed.len().saturating_sub(1) {
        let (child, parent) = (&parsed[i], &parsed[i + 1]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(unauthorized(format!(
                "{} was issued by `{}`, but the next certificate in the chain is `{}`: send the chain in order, device certificate first, then each issuer",
                label(i, child),
                dn_string(child.issuer()),
                dn_string(parent.subject())
            )));
        }
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(unauthorized(format!(
                "{} is not signed by the key of {} (same name, different key?)",
                label(i, child),
                label(i + 1, parent)
            )));
        }
    }
    let leaf_sha = sha256(&chain[0]);
    let rtxn = state.store.read()?;
    // A certificate a certificate policy issued: the policy's CA is its signer.
    if let Some(a) = super::issuance::attest_issued(state, &rtxn, reg_id, &parsed, chain)? {
        return Ok(a);
    }
    let reg_key = reg_id.to_ascii_lowercase();
    // Check 3: an individual enrollment for the registration ID wins.
    let enrollments = rtxn.open_table(ENROLLMENTS).map_err(store_error)?;
    if let Some(e) =
        get_json::<IndividualEnrollment>(&enrollments, &reg_key).map_err(store_error)?
    {
        return attest_individual_x509(state, &rtxn, e, &parsed, chain, leaf_sha, now);
    }
    let (group, position) = select_group(&rtxn, &parsed, chain, now)?;
    let group_cert_der = match position {
        Position::Presented(i) => chain[i].to_vec(),
        Position::Issuer(ref der) => der.clone(),
    };
    if state.require_verified_ca {
        require_verified(&rtxn, chain, &group_cert_der)?;
    }
    let signing_info = X509Certificate::from_der(&group_cert_der)
        .ok()
        .map(|(_, x)| info_of(&x, &group_cert_der));
    Ok(Attested {
        source: RegistrationSource {
            enrollment_group_id: group.enrollment_group_id.clone(),
            certificate_info: Some(info_of(leaf, &chain[0])),
            signing_certificate_info: signing_info,
        },
        enrollment: Enrollment::Group(Box::new(group)),
        x509: true,
        credential: Credential::X509 {
            leaf_sha256: leaf_sha,
        },
    })
}

/// Where the matched enrollment certificate sits relative to the presented chain.
enum Position {
    /// It is presented certificate #i (i ≥ 1).
    Presented(usize),
    /// It was not presented but issued the top presented certificate (DER).
    Issuer(Vec<u8>),
}

fn select_group(
    rtxn: &ReadTransaction,
    parsed: &[X509Certificate<'_>],
    chain: &[CertificateDer<'static>],
    now: Now<'_>,
) -> DpsResult<(EnrollmentGroup, Position)> {
    let signers = rtxn.open_table(SIGNERS).map_err(store_error)?;
    let ca_index = rtxn.open_table(CA_BY_THUMB).map_err(store_error)?;
    let groups = rtxn.open_table(GROUPS).map_err(store_error)?;
    let lookup = |prefix: String| -> DpsResult<Vec<String>> {
        index_suffixes(&signers, &prefix, None, MAX_CANDIDATES)
            .map(|(v, _)| v)
            .map_err(store_error)
    };
    let via_ca = |kind: char, hash: &str| -> DpsResult<Vec<String>> {
        let names = index_suffixes(
            &ca_index,
            &format!("{kind}:{hash}{SEP}"),
            None,
            MAX_CANDIDATES,
        )
        .map_err(store_error)?
        .0;
        let mut out = Vec::new();
        for n in names {
            out.extend(lookup(format!("r:{n}{SEP}"))?);
        }
        Ok(out)
    };
    let load = |key: &str| -> DpsResult<Option<EnrollmentGroup>> {
        get_json(&groups, key).map_err(store_error)
    };
    // Walk from the leaf's issuer upward; the first certificate any group uses wins (§8.3).
    for (i, der) in chain.iter().enumerate().skip(1) {
        let thumb = hex_lower(&sha256(der));
        let mut cands = lookup(format!("t:{thumb}{SEP}"))?;
        cands.extend(via_ca('t', &thumb)?);
        cands.sort();
        cands.dedup();
        if let Some(key) = cands.first()
            && let Some(g) = load(key)?
        {
            return Ok((g, Position::Presented(i)));
        }
    }
    // Then a group whose certificate issued the top presented certificate
    // (the device need not send the group certificate itself, §8.4/§9).
    let top = &parsed[parsed.len() - 1];
    let top_i = parsed.len() - 1;
    let subject_hash = hex_lower(&sha256(top.issuer().as_raw()));
    let mut cands = lookup(format!("s:{subject_hash}{SEP}"))?;
    cands.extend(via_ca('s', &subject_hash)?);
    cands.sort();
    cands.dedup();
    let mut near_miss = None;
    let ca_certs = rtxn.open_table(CA_CERTS).map_err(store_error)?;
    for key in &cands {
        let Some(g) = load(key)? else { continue };
        for anchor in group_anchors(&g, &ca_certs)? {
            let Ok((_, a)) = X509Certificate::from_der(&anchor.der) else {
                continue;
            };
            if a.subject().as_raw() != top.issuer().as_raw() {
                continue;
            }
            if top.verify_signature(Some(a.public_key())).is_err() {
                near_miss = Some(format!(
                    "{} names `{}` as its issuer, which is the {}, but its signature does not verify with that certificate's key (a different CA with the same name?)",
                    label(top_i, top),
                    dn_string(top.issuer()),
                    anchor.what
                ));
                continue;
            }
            validity(&anchor.what, &a, now)?;
            return Ok((g, Position::Issuer(anchor.der)));
        }
    }
    if let Some(m) = near_miss {
        return Err(unauthorized(m));
    }
    // The CA presented as the device certificate (Azure/azure-iot-sdk-node#532).
    let leaf_thumb = hex_lower(&sha256(&chain[0]));
    if let Some(g) = lookup(format!("t:{leaf_thumb}{SEP}"))?.first() {
        return Err(unauthorized(format!(
            "the device presented the signing certificate of enrollment group `{g}` ({}) as its own certificate; present a device certificate issued by it (Azure says \"Signing certificate info did not match chain elements\")",
            dn_string(parsed[0].subject())
        )));
    }
    let presented: Vec<String> = parsed.iter().map(|x| dn_string(x.subject())).collect();
    Err(unauthorized(format!(
        "no enrollment group matches this device: none of the {} presented certificate(s) [{}] is an enrollment group's signing certificate or CA reference, and no group's certificate issued the top one (its issuer is `{}`); create a group with that CA, or send the intermediate certificates up to the group's certificate",
        parsed.len(),
        presented.join(" <- "),
        dn_string(top.issuer())
    )))
}

/// The certificates an enrollment trusts: signing certificates and CA reference targets.
fn group_anchors(
    g: &EnrollmentGroup,
    ca_certs: &impl redb::ReadableTable<&'static str, &'static [u8]>,
) -> DpsResult<Vec<Anchor>> {
    let name = format!(
        "enrollment group `{}`",
        g.enrollment_group_id.as_deref().unwrap_or("")
    );
    attestation_anchors(g.attestation.as_ref(), &name, ca_certs, false)
}

fn attestation_anchors(
    att: Option<&Attestation>,
    owner: &str,
    ca_certs: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    client: bool,
) -> DpsResult<Vec<Anchor>> {
    let mut out = Vec::new();
    let Some(x) = att.and_then(|a| a.x509.as_ref()) else {
        return Ok(out);
    };
    let certs = if client {
        x.client_certificates.as_ref()
    } else {
        x.signing_certificates.as_ref()
    };
    if let Some(sc) = certs {
        for (slot, c) in sc.slots() {
            if let Some(der) = c.certificate.as_deref().and_then(|p| pem::parse(p).ok()) {
                out.push(Anchor {
                    der: der.into_contents(),
                    what: format!("{slot} signing certificate of {owner}"),
                });
            }
        }
    }
    if !client && let Some(r) = &x.ca_references {
        for name in [&r.primary, &r.secondary].into_iter().flatten() {
            if let Some(ca) = get_json::<StoredCaCert>(ca_certs, &name.to_ascii_lowercase())
                .map_err(store_error)?
                && let Ok(p) = pem::parse(&ca.certificate)
            {
                out.push(Anchor {
                    der: p.into_contents(),
                    what: format!("CA certificate `{name}` referenced by {owner}"),
                });
            }
        }
    }
    Ok(out)
}

fn attest_individual_x509(
    state: &State,
    rtxn: &ReadTransaction,
    e: IndividualEnrollment,
    parsed: &[X509Certificate<'_>],
    chain: &[CertificateDer<'static>],
    leaf_sha: [u8; 32],
    now: Now<'_>,
) -> DpsResult<Attested> {
    let id = e.registration_id.clone().unwrap_or_default();
    let att = e.attestation.as_ref();
    let kind = att.and_then(|a| a.kind.as_ref());
    if kind != Some(&AttestationKind::X509) {
        let kind = kind.map(AttestationKind::as_str).unwrap_or("");
        return Err(unauthorized(format!(
            "individual enrollment `{id}` uses {kind} attestation, but the device authenticated with an X.509 certificate"
        )));
    }
    let ca_certs = rtxn.open_table(CA_CERTS).map_err(store_error)?;
    let owner = format!("individual enrollment `{id}`");
    let leaf_info = info_of(&parsed[0], &chain[0]);
    let mut signing_info = None;
    let has_client = att
        .and_then(|a| a.x509.as_ref())
        .is_some_and(|x| x.client_certificates.is_some());
    if has_client {
        let thumb = hex_upper(&leaf_sha);
        let ok = attestation_anchors(att, &owner, &ca_certs, true)?
            .iter()
            .any(|a| hex_upper(&sha256(&a.der)) == thumb);
        if !ok {
            return Err(unauthorized(format!(
                "the device certificate (SHA-256 {thumb}) is neither the primary nor the secondary client certificate of {owner}"
            )));
        }
        if state.require_verified_ca {
            require_verified(rtxn, chain, &chain[0])?;
        }
    } else {
        let anchors = attestation_anchors(att, &owner, &ca_certs, false)?;
        let mut found = None;
        'outer: for (i, der) in chain.iter().enumerate().skip(1) {
            for a in &anchors {
                if a.der == der.as_ref() {
                    found = Some((i, a.der.clone()));
                    break 'outer;
                }
            }
        }
        if found.is_none() {
            let top = &parsed[parsed.len() - 1];
            for a in &anchors {
                if let Ok((_, x)) = X509Certificate::from_der(&a.der)
                    && x.subject().as_raw() == top.issuer().as_raw()
                    && top.verify_signature(Some(x.public_key())).is_ok()
                {
                    validity(&a.what, &x, now)?;
                    found = Some((0, a.der.clone()));
                    break;
                }
            }
        }
        let Some((_, anchor)) = found else {
            return Err(unauthorized(format!(
                "the presented chain does not lead to the signing certificate or CA reference of {owner}"
            )));
        };
        if state.require_verified_ca {
            require_verified(rtxn, chain, &anchor)?;
        }
        signing_info = super::certs::cert_info(&anchor).ok();
    }
    Ok(Attested {
        source: RegistrationSource {
            enrollment_group_id: None,
            certificate_info: Some(leaf_info),
            signing_certificate_info: signing_info,
        },
        enrollment: Enrollment::Individual(Box::new(e)),
        x509: true,
        credential: Credential::X509 {
            leaf_sha256: leaf_sha,
        },
    })
}

/// `--require-verified-ca`: some certificate of the chain (or the matched
/// enrollment certificate) must be a verified CA in the certificate store.
fn require_verified(
    rtxn: &ReadTransaction,
    chain: &[CertificateDer<'static>],
    anchor: &[u8],
) -> DpsResult<()> {
    let index = rtxn.open_table(CA_BY_THUMB).map_err(store_error)?;
    let certs = rtxn.open_table(CA_CERTS).map_err(store_error)?;
    for der in chain
        .iter()
        .map(|d| d.as_ref())
        .chain(std::iter::once(anchor))
    {
        let thumb = hex_lower(&sha256(der));
        let (names, _) = index_suffixes(&index, &format!("t:{thumb}{SEP}"), None, MAX_CANDIDATES)
            .map_err(store_error)?;
        for n in names {
            if get_json::<StoredCaCert>(&certs, &n)
                .map_err(store_error)?
                .is_some_and(|c| c.is_verified)
            {
                return Ok(());
            }
        }
    }
    Err(unauthorized(
        "--require-verified-ca is set and no certificate of the chain is a verified CA in the certificate store: upload the CA and prove possession (pki ca / pki verify-code), or upload it with isVerified",
    ))
}

/// Symmetric-key attestation with a device SAS token (§6.6).
pub fn attest_sas(
    state: &State,
    id_scope: &str,
    reg_id: &str,
    header: &str,
) -> DpsResult<Attested> {
    let token = Token::parse(header).map_err(|e| {
        unauthorized(format!(
            "{e}; a symmetric-key device sends `SharedAccessSignature sr={id_scope}/registrations/{reg_id}&sig=…&se=…&skn=registration`"
        ))
    })?;
    if let Some(skn) = &token.skn
        && !skn.eq_ignore_ascii_case("registration")
    {
        return Err(unauthorized(format!(
            "the device SAS token names policy `{skn}`; device tokens use skn=registration"
        )));
    }
    let target = format!("{id_scope}/registrations/{reg_id}");
    if !token.covers(&target) {
        return Err(unauthorized(format!(
            "the device SAS token's resource `{}` is not `{target}`",
            token.resource()
        )));
    }
    let now = state.clock.now_unix();
    let rtxn = state.store.read()?;
    let enrollments = rtxn.open_table(ENROLLMENTS).map_err(store_error)?;
    let reg_key = reg_id.to_ascii_lowercase();
    if let Some(e) =
        get_json::<IndividualEnrollment>(&enrollments, &reg_key).map_err(store_error)?
    {
        let id = e.registration_id.clone().unwrap_or_default();
        let sk = e
            .attestation
            .as_ref()
            .filter(|a| a.kind == Some(AttestationKind::SymmetricKey))
            .and_then(|a| a.symmetric_key.clone())
            .ok_or_else(|| {
                unauthorized(format!(
                    "individual enrollment `{id}` does not use symmetricKey attestation, but the device sent a SAS token"
                ))
            })?;
        let keys: Vec<String> = [sk.primary_key, sk.secondary_key]
            .into_iter()
            .flatten()
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        token.verify(&refs, now).map_err(|e| {
            unauthorized(format!(
                "{e} (checked against the keys of individual enrollment `{id}`)"
            ))
        })?;
        return Ok(Attested {
            source: RegistrationSource::default(),
            enrollment: Enrollment::Individual(Box::new(e)),
            x509: false,
            credential: Credential::Sas { keys },
        });
    }
    // Group devices: the token does not name its group, so try each
    // symmetric-key group's derived key for this registration ID.
    let symkey = rtxn.open_table(SYMKEY_GROUPS).map_err(store_error)?;
    let groups = rtxn.open_table(GROUPS).map_err(store_error)?;
    let mut tried = 0usize;
    for item in redb::ReadableTable::iter(&symkey).map_err(store_error)? {
        let (k, _) = item.map_err(store_error)?;
        let Some(g) = get_json::<EnrollmentGroup>(&groups, k.value()).map_err(store_error)? else {
            continue;
        };
        let Some(sk) = g.attestation.as_ref().and_then(|a| a.symmetric_key.clone()) else {
            continue;
        };
        tried += 1;
        let keys: Vec<String> = [sk.primary_key, sk.secondary_key]
            .into_iter()
            .flatten()
            .filter_map(|k| crate::dps::sas::derive_device_key(&k, reg_id))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        match token.verify(&refs, now) {
            Ok(()) => {
                return Ok(Attested {
                    source: RegistrationSource {
                        enrollment_group_id: g.enrollment_group_id.clone(),
                        ..Default::default()
                    },
                    enrollment: Enrollment::Group(Box::new(g)),
                    x509: false,
                    credential: Credential::Sas { keys },
                });
            }
            Err(e @ (SasError::Expired(_) | SasError::BadExpiry)) => {
                return Err(unauthorized(e.to_string()));
            }
            Err(_) => {}
        }
    }
    Err(unauthorized(format!(
        "the SAS token's signature matches no enrollment: there is no individual enrollment `{reg_id}`, and the token is not signed with a key derived (HMAC-SHA256 of the registration ID) from the keys of any of the {tried} symmetric-key enrollment group(s)"
    )))
}
