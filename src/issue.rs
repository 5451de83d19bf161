//! Signing certificates: the one place a certificate is made.
//!
//! [`issue`] takes a [`Profile`], a subject key and an optional issuing
//! [`Ca`] and returns the signed certificate. It sets everything rcgen would
//! otherwise default (validity, serial, subject), keeps notBefore a few
//! minutes in the past for clock skew, and never lets a child outlive its
//! issuer.

use rcgen::{CertificateParams, Issuer, KeyPair, PublicKeyData, SerialNumber, SigningKey};
use time::OffsetDateTime;

use crate::cert;
use crate::error::{Error, Result};
use crate::keys::pem_lf;
use crate::profile::Profile;
use crate::validity::{Decided, Validity, Window, decide};

/// A signed certificate.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding (LF line endings).
    pub pem: String,
    /// Subject common name.
    pub common_name: String,
    /// Serial number as encoded (big-endian, no sign byte needed).
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether notAfter was cut short to the issuer's notAfter.
    pub capped: bool,
    /// Loud notes: an `--allow-…-issuer` override was used.
    pub warnings: Vec<String>,
}

impl IssuedCert {
    /// notBefore and notAfter.
    pub fn window(&self) -> Window {
        Window {
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

/// A CA's signing key: an rcgen key pair, or under `--seed` a seeded key
/// that signs deterministically (RFC 6979).
pub enum CaKey {
    Pair(KeyPair),
    Seeded(crate::seed::SeededKey),
}

impl From<KeyPair> for CaKey {
    /// Under `--seed`, an EC key signs with RFC 6979 so the output is reproducible.
    fn from(k: KeyPair) -> CaKey {
        if crate::seed::active()
            && let Some(s) = crate::seed::SeededKey::from_pkcs8(k.serialized_der())
        {
            return CaKey::Seeded(s);
        }
        CaKey::Pair(k)
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Pair(k) => k.der_bytes(),
            CaKey::Seeded(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKey::Pair(k) => k.algorithm(),
            CaKey::Seeded(k) => k.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Pair(k) => k.sign(msg),
            CaKey::Seeded(k) => k.sign(msg),
        }
    }
}

impl crate::keys::Pkcs8Source for CaKey {
    fn pkcs8_bytes(&self) -> &[u8] {
        match self {
            CaKey::Pair(k) => k.serialized_der(),
            CaKey::Seeded(k) => k.pkcs8_der(),
        }
    }
}

impl CaKey {
    /// A new CA key of `kt`; under `--seed`, the one of `role` and `id`.
    pub fn generate(kt: crate::keys::KeyType, role: &str, id: &str) -> Result<CaKey> {
        match crate::seed::SeededKey::derive(kt, role, id)? {
            Some(k) => Ok(CaKey::Seeded(k)),
            None => kt.generate().map(CaKey::Pair),
        }
    }

    /// The key as PKCS#8 DER, whatever format it was read from.
    pub fn pkcs8_der(&self) -> Result<Vec<u8>> {
        match self {
            CaKey::Pair(k) => crate::keys::pkcs8_der(k),
            CaKey::Seeded(k) => Ok(k.pkcs8_der().to_vec()),
        }
    }

    /// The serialized private key (PKCS#8 for generated keys).
    pub fn serialized_der(&self) -> &[u8] {
        crate::keys::Pkcs8Source::pkcs8_bytes(self)
    }
}

/// A certificate authority: its certificate and the key that signs for it.
pub struct Ca {
    /// The CA's own certificate.
    pub cert: IssuedCert,
    issuer: Issuer<'static, CaKey>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Ca")
            .field("cert", &self.cert.common_name)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a new CA certificate for `key` (self-signed when `parent` is None).
    pub fn create(
        profile: &Profile,
        common_name: &str,
        validity: &Validity,
        key: impl Into<CaKey>,
        parent: Option<&Ca>,
    ) -> Result<Ca> {
        debug_assert!(profile.is_ca());
        let key = key.into();
        let (cert, mut params) = issue_with_params(profile, common_name, validity, &key, parent)?;
        // rcgen would hash this CA's public key again for the authority key
        // identifier of every certificate it signs; the same bytes (the
        // method's digest of the key) are worked out once here.
        let key_id = params.key_identifier(&key);
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_id);
        Ok(Ca {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA from its certificate (DER) and private key.
    ///
    /// Refuses a certificate that is not a CA or whose public key does not
    /// match `key`. `what` names the certificate file in messages.
    pub fn from_parts(cert_der: &[u8], key: KeyPair, what: &str) -> Result<Ca> {
        let key = CaKey::from(key);
        let x509 = cert::parse_der(cert_der, what)?;
        if !cert::is_ca(&x509) {
            return Err(Error::input(format!(
                "{what} is not a CA certificate (basicConstraints CA:TRUE is missing); pick a root or intermediate certificate"
            )));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(Error::input(format!(
                "the private key does not belong to {what}: pass the key file made together with that certificate"
            )));
        }
        let common_name = cert::common_name(&x509).unwrap_or_default();
        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der.to_vec().into(), key)
            .map_err(|e| Error::input(format!("cannot use {what} as an issuer: {e}")))?;
        Ok(Ca {
            cert: IssuedCert {
                der: cert_der.to_vec(),
                pem: pem_lf("CERTIFICATE", cert_der),
                common_name,
                serial: x509.raw_serial().to_vec(),
                not_before,
                not_after,
                capped: false,
                warnings: Vec::new(),
            },
            issuer,
        })
    }

    /// The CA's signing key.
    pub fn key(&self) -> &CaKey {
        self.issuer.key()
    }
}

/// Signs a certificate of `profile` for `subject_key`; self-signed when `issuer` is None.
pub fn issue(
    profile: &Profile,
    common_name: &str,
    validity: &Validity,
    subject_key: &impl SigningKey,
    issuer: Option<&Ca>,
) -> Result<IssuedCert> {
    issue_with_params(profile, common_name, validity, subject_key, issuer).map(|(c, _)| c)
}

/// Signs a certificate of `profile` for a public key whose private key
/// `pki` never sees (a CSR's key): the profile, not the request, decides
/// every extension.
pub fn issue_for_public_key(
    profile: &Profile,
    common_name: &str,
    validity: &Validity,
    public_key: &rcgen::SubjectPublicKeyInfo,
    issuer: &Ca,
) -> Result<IssuedCert> {
    let rsa = [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ]
    .contains(&public_key.algorithm());
    let (
        params,
        Decided {
            capped, warnings, ..
        },
    ) = params_for(
        profile,
        common_name,
        validity,
        rsa,
        public_key.der_bytes(),
        Some(issuer),
    )?;
    let cert = params.signed_by(public_key, &issuer.issuer)?;
    let der = cert.der().to_vec();
    Ok(IssuedCert {
        pem: pem_lf("CERTIFICATE", &der),
        der,
        common_name: common_name.to_string(),
        serial: params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default(),
        not_before: params.not_before,
        not_after: params.not_after,
        capped,
        warnings,
    })
}

fn issue_with_params(
    profile: &Profile,
    common_name: &str,
    validity: &Validity,
    subject_key: &impl SigningKey,
    issuer: Option<&Ca>,
) -> Result<(IssuedCert, CertificateParams)> {
    let (
        params,
        Decided {
            capped, warnings, ..
        },
    ) = params_for(
        profile,
        common_name,
        validity,
        is_rsa(subject_key),
        subject_key.der_bytes(),
        issuer,
    )?;
    let cert = match issuer {
        Some(ca) => params.signed_by(subject_key, &ca.issuer)?,
        None => params.self_signed(subject_key)?,
    };
    let der = cert.der().to_vec();
    Ok((
        IssuedCert {
            pem: pem_lf("CERTIFICATE", &der),
            der,
            common_name: common_name.to_string(),
            serial: params
                .serial_number
                .as_ref()
                .map(SerialNumber::to_bytes)
                .unwrap_or_default(),
            not_before: params.not_before,
            not_after: params.not_after,
            capped,
            warnings,
        },
        params,
    ))
}

/// The parameters of a certificate: validity (capped at the issuer's),
/// serial and the profile's subject and extensions; and whether the
/// validity was capped noticeably.
fn params_for(
    profile: &Profile,
    common_name: &str,
    validity: &Validity,
    rsa_subject: bool,
    subject_public_key: &[u8],
    issuer: Option<&Ca>,
) -> Result<(CertificateParams, Decided)> {
    let decided = decide(
        validity,
        common_name,
        issuer.map(|c| (c.cert.common_name.as_str(), c.cert.window())),
    )?;
    let mut params = CertificateParams::default();
    params.not_before = decided.window.not_before;
    params.not_after = decided.window.not_after;
    params.serial_number = Some(
        match seeded_serial(profile, common_name, &decided, subject_public_key) {
            Some(s) => s,
            None => random_serial()?,
        },
    );
    profile.apply(&mut params, common_name, rsa_subject)?;
    Ok((params, decided))
}

/// Checks a validity request before anything is written, so a bad
/// `--days` or window never leaves a half-made directory behind.
pub fn check_validity(validity: &Validity) -> Result<()> {
    validity.window().map(|_| ())
}

/// [`check_validity`] for a length in days from now.
pub fn check_days(days: u32) -> Result<()> {
    check_validity(&Validity::days(days))
}

fn is_rsa(key: &impl PublicKeyData) -> bool {
    // Every algorithm pki signs with other than ECDSA and Ed25519 is RSA
    // (the rule `keys::describe` follows).
    let alg = key.algorithm();
    alg != &rcgen::PKCS_ECDSA_P256_SHA256
        && alg != &rcgen::PKCS_ECDSA_P384_SHA384
        && alg != &rcgen::PKCS_ED25519
}

/// Under `--seed`: the serial of this certificate (profile, CN, window and
/// subject key), so a renewal or a new key gets a new serial.
fn seeded_serial(
    profile: &Profile,
    common_name: &str,
    decided: &Decided,
    subject_public_key: &[u8],
) -> Option<SerialNumber> {
    // Unseeded (the usual case) the label below is never needed: formatting
    // it would be two time formats and three allocations a device.
    if !crate::seed::active() {
        return None;
    }
    let w = &decided.window;
    let mut bytes = crate::seed::bytes(
        &[
            b"serial",
            format!("{profile:?}").as_bytes(),
            common_name.as_bytes(),
            w.to_string().as_bytes(),
            subject_public_key,
        ],
        16,
    )?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Some(SerialNumber::from_slice(&bytes))
}

/// A random, positive, 16-byte serial number (RFC 5280 allows up to 20 bytes).
pub fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::Crypto("the system random number generator failed".into()))?;
    // Clear the sign bit (positive) and keep the top byte non-zero so the
    // DER encoding is always exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The subject common name of a parsed certificate (kept here for the
/// emulator's callers; the one implementation is [`crate::cert::common_name`]).
pub use crate::cert::common_name as common_name_of;
