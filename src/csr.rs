//! Certificate signing requests (PKCS#10): reading, verifying, describing
//! and making them.
//!
//! A [`Csr`] is only ever built from bytes that parsed as a PKCS#10
//! `CertificationRequest`; whether its self-signature verified is recorded
//! ([`Csr::signature_valid`]) so `pki inspect` can show a broken one, while
//! [`Csr::read`] and [`Csr::from_dps_field`] refuse it. What a CSR asks for
//! (its requested extensions) is only described, never copied: the device
//! profile ([`crate::profile::Profile::Device`]) decides what a signed
//! certificate carries.
//!
//! Two encodings come in: files (PEM `CERTIFICATE REQUEST` or DER), and the
//! DPS register body's `csr` field, which is base64 DER without PEM armour
//! (docs/certificate-issuance.md).

use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::cert::looks_pem;
use crate::regid::RegistrationId;

/// Largest CSR (DER bytes) accepted anywhere: IoT Hub's documented CSR
/// limit, far above any real device CSR (a P-384 one is about 400 bytes).
pub const MAX_CSR_DER: usize = 8 * 1024;

/// OID of the P-384 curve (secp384r1).
const OID_P384: &str = "1.3.132.0.34";
/// OID of the P-256 curve (prime256v1).
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Why bytes are not a usable CSR. Every message names the rule and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The CSR is bigger than [`MAX_CSR_DER`].
    #[error("{what} is {len} bytes; a CSR must be at most {MAX_CSR_DER} bytes of DER")]
    TooLarge { what: String, len: usize },
    /// A DPS `csr` field holds PEM armour.
    #[error(
        "{what} has PEM armour (`-----BEGIN …`); DPS wants base64 DER only: drop the BEGIN/END lines and the line breaks"
    )]
    PemArmour { what: String },
    /// A DPS `csr` field is not base64.
    #[error("{what} is not valid base64; send the CSR as base64 of its DER bytes")]
    NotBase64 { what: String },
    /// PEM text with no `CERTIFICATE REQUEST` block.
    #[error(
        "{what} holds no CSR (found {found}); pass a PKCS#10 `BEGIN CERTIFICATE REQUEST` file, e.g. from `openssl req -new` or `pki csr new`"
    )]
    NotCsrPem { what: String, found: String },
    /// Bytes that do not parse as PKCS#10; `detail` says why in words.
    #[error(
        "{what} is not a usable PKCS#10 certificate signing request: {detail}; pass the whole CSR in PEM or DER (as `openssl req -new` or `pki csr new` writes it)"
    )]
    NotCsr { what: String, detail: String },
    /// The self-signature does not verify with the CSR's own key.
    #[error(
        "the signature of {what} does not verify with its own public key: the CSR was altered or signed with another key; make a new CSR"
    )]
    BadSignature { what: String },
    /// The subject has no CN.
    #[error("{what} has no subject CN; its CN must be the device's registration ID")]
    NoCommonName { what: String },
}

/// The public key type of a CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrKey {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384 (the only type DPS certificate issuance accepts).
    EcP384,
    /// RSA with this many bits.
    Rsa(usize),
    /// Anything else, by algorithm OID (and curve OID for other EC curves).
    Other(String),
}

impl std::fmt::Display for CsrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsrKey::EcP256 => f.write_str("ec-p256"),
            CsrKey::EcP384 => f.write_str("ec-p384"),
            CsrKey::Rsa(bits) => write!(f, "rsa-{bits}"),
            CsrKey::Other(oid) => write!(f, "unsupported ({oid})"),
        }
    }
}

/// A requested extension, as the CSR states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedExtension {
    /// Short name (`subjectAltName`, `keyUsage`, …) or dotted OID.
    pub name: String,
    /// Whether the CSR asks for it to be critical.
    pub critical: bool,
}

/// A parsed PKCS#10 request.
#[derive(Clone, Debug)]
pub struct Csr {
    /// The DER of the whole request.
    pub der: Vec<u8>,
    /// The subject (`CN=…`).
    pub subject: String,
    /// The subject CN, if any.
    pub common_name: Option<String>,
    /// The public key type.
    pub key: CsrKey,
    /// DER SubjectPublicKeyInfo of the requested key.
    pub public_key_der: Vec<u8>,
    /// Extensions the CSR requests (described, never copied).
    pub requested_extensions: Vec<RequestedExtension>,
    /// Whether the self-signature verified.
    pub signature_valid: bool,
}

impl Csr {
    /// Parses PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER
    /// without requiring a valid signature (for `pki inspect`).
    pub fn parse(data: &[u8], what: &str) -> Result<Csr, CsrError> {
        let der = if looks_pem(data) {
            let blocks = crate::cert::pem_blocks(data).map_err(|problem| CsrError::NotCsr {
                what: what.into(),
                detail: problem,
            })?;
            let found: Vec<String> = blocks.iter().map(|b| format!("`{}`", b.tag())).collect();
            blocks
                .into_iter()
                .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
                .ok_or_else(|| CsrError::NotCsrPem {
                    what: what.into(),
                    found: if found.is_empty() {
                        "nothing".into()
                    } else {
                        found.join(", ")
                    },
                })?
                .into_contents()
        } else {
            data.to_vec()
        };
        Self::parse_der(der, what)
    }

    /// [`Csr::parse`], then refuses a CSR whose self-signature does not verify.
    pub fn read(data: &[u8], what: &str) -> Result<Csr, CsrError> {
        let csr = Self::parse(data, what)?;
        csr.require_signature(what)?;
        Ok(csr)
    }

    /// The `csr` field of a DPS register body: base64 DER, no PEM armour, at
    /// most [`MAX_CSR_DER`] bytes, self-signature valid.
    pub fn from_dps_field(field: &str) -> Result<Csr, CsrError> {
        let what = "the `csr` field".to_string();
        if field.contains("-----BEGIN") {
            return Err(CsrError::PemArmour { what });
        }
        // Base64 is 4/3 of the DER: refuse huge text before decoding it.
        if field.len() > MAX_CSR_DER.div_ceil(3) * 4 {
            return Err(CsrError::TooLarge {
                what,
                len: field.len() / 4 * 3,
            });
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(field.trim())
            .map_err(|_| CsrError::NotBase64 { what: what.clone() })?;
        let csr = Self::parse_der(der, &what)?;
        csr.require_signature(&what)?;
        Ok(csr)
    }

    fn parse_der(der: Vec<u8>, what: &str) -> Result<Csr, CsrError> {
        if der.len() > MAX_CSR_DER {
            return Err(CsrError::TooLarge {
                what: what.into(),
                len: der.len(),
            });
        }
        let not_csr = |detail: String| CsrError::NotCsr {
            what: what.into(),
            detail,
        };
        let (rest, req) = X509CertificationRequest::from_der(&der)
            .map_err(|e| not_csr(crate::cert::der_problem(&e)))?;
        if !rest.is_empty() {
            return Err(not_csr(format!("{} bytes after the request", rest.len())));
        }
        let info = &req.certification_request_info;
        let common_name = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let spki = &info.subject_pki;
        let key = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => CsrKey::Rsa(rsa.key_size()),
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P384 => CsrKey::EcP384,
                    OID_P256 => CsrKey::EcP256,
                    _ => CsrKey::Other(format!("EC curve {curve}")),
                }
            }
            _ => CsrKey::Other(spki.algorithm.algorithm.to_id_string()),
        };
        let registry = x509_parser::objects::oid_registry();
        let mut requested_extensions = Vec::new();
        for attr in info.iter_attributes() {
            if let ParsedCriAttribute::ExtensionRequest(r) = attr.parsed_attribute() {
                for ext in &r.extensions {
                    requested_extensions.push(RequestedExtension {
                        name: x509_parser::objects::oid2sn(&ext.oid, registry)
                            .map(str::to_string)
                            .unwrap_or_else(|_| ext.oid.to_id_string()),
                        critical: ext.critical,
                    });
                }
            }
        }
        let signature_valid = req.verify_signature().is_ok();
        Ok(Csr {
            subject: info.subject.to_string(),
            common_name,
            key,
            public_key_der: spki.raw.to_vec(),
            requested_extensions,
            signature_valid,
            der,
        })
    }

    fn require_signature(&self, what: &str) -> Result<(), CsrError> {
        if self.signature_valid {
            Ok(())
        } else {
            Err(CsrError::BadSignature { what: what.into() })
        }
    }

    /// The CN, checked as an X.509 registration ID (at most 64 characters).
    /// The second value is the upper-case warning, if any.
    pub fn registration_id(&self, what: &str) -> crate::Result<(RegistrationId, Option<String>)> {
        let cn = self
            .common_name
            .as_deref()
            .ok_or_else(|| CsrError::NoCommonName { what: what.into() })?;
        RegistrationId::parse_cn(cn).map_err(|e| {
            crate::Error::input(format!(
                "the CN of {what} is not a valid registration ID: {e}; pass --cn to name the device"
            ))
        })
    }

    /// The requested public key, for signing.
    pub fn public_key(&self) -> crate::Result<rcgen::SubjectPublicKeyInfo> {
        rcgen::SubjectPublicKeyInfo::from_der(&self.public_key_der).map_err(|e| {
            crate::Error::input(format!(
                "the CSR's {} key cannot be signed by pki ({e}); use an EC P-256/P-384 or RSA key",
                self.key
            ))
        })
    }

    /// The PEM form (LF line endings).
    pub fn pem(&self) -> String {
        crate::keys::pem_lf("CERTIFICATE REQUEST", &self.der)
    }

    /// The DPS form: base64 DER, one line, no armour.
    pub fn base64_der(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }
}

impl Csr {
    /// What `pki inspect --json` shows of a CSR.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "csr",
            "subject": self.subject,
            "commonName": self.common_name,
            "key": self.key.to_string(),
            "signatureValid": self.signature_valid,
            "requestedExtensions": self.requested_extensions.iter().map(|e| serde_json::json!({
                "name": e.name, "critical": e.critical
            })).collect::<Vec<_>>(),
        })
    }

    /// What `pki inspect` prints for a CSR.
    pub fn render(&self) -> String {
        let extensions = if self.requested_extensions.is_empty() {
            "none".to_string()
        } else {
            let list: Vec<String> = self
                .requested_extensions
                .iter()
                .map(|e| {
                    if e.critical {
                        format!("{} (critical)", e.name)
                    } else {
                        e.name.clone()
                    }
                })
                .collect();
            format!(
                "{} (not copied by `pki device new --csr`: the device profile decides)",
                list.join(", ")
            )
        };
        format!(
            "Type:                 certificate signing request (PKCS#10)\n\
             Subject:              {}\n\
             Key:                  {}\n\
             Signature:            {}\n\
             Requested extensions: {extensions}\n",
            self.subject,
            self.key,
            if self.signature_valid {
                "valid (self-signed with the requested key)"
            } else {
                "INVALID: altered, or not signed with the requested key"
            },
        )
    }
}

/// Whether `data` is a CSR (a PEM `CERTIFICATE REQUEST` block, or DER that
/// parses as PKCS#10), for commands that take certificates or CSRs.
pub fn looks_like_csr(data: &[u8]) -> bool {
    if looks_pem(data) {
        data.windows(19).any(|w| w == b"CERTIFICATE REQUEST")
    } else {
        X509CertificationRequest::from_der(data).is_ok()
    }
}

impl From<CsrError> for crate::Error {
    fn from(e: CsrError) -> Self {
        crate::Error::input(e.to_string())
    }
}

/// Makes a CSR with CN = `id`, signed by `key`, requesting no extensions.
pub fn build(id: &RegistrationId, key: &KeyPair) -> crate::Result<Csr> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, id.as_str());
    let req = params.serialize_request(key)?;
    Ok(Csr::parse_der(req.der().to_vec(), "the new CSR")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyType;

    #[test]
    fn builds_parses_and_refuses() {
        let (id, _) = RegistrationId::parse_cn("dev-1").unwrap();
        let key = KeyType::EcP384.generate().unwrap();
        let csr = build(&id, &key).unwrap();
        assert_eq!(csr.key, CsrKey::EcP384);
        assert!(csr.signature_valid);
        assert_eq!(csr.common_name.as_deref(), Some("dev-1"));
        assert_eq!(csr.registration_id("x").unwrap().0, id);
        let back = Csr::read(csr.pem().as_bytes(), "x").unwrap();
        assert_eq!(back.der, csr.der);
        assert_eq!(Csr::read(&csr.der, "x").unwrap().der, csr.der);
        assert_eq!(Csr::from_dps_field(&csr.base64_der()).unwrap().der, csr.der);
        assert_eq!(csr.public_key().unwrap().der_bytes_len(), 97);

        let e = Csr::from_dps_field(&csr.pem()).unwrap_err();
        assert!(matches!(e, CsrError::PemArmour { .. }), "{e}");
        let e = Csr::from_dps_field("@@@").unwrap_err();
        assert!(matches!(e, CsrError::NotBase64 { .. }), "{e}");
        let e = Csr::from_dps_field(&"A".repeat(20_000)).unwrap_err();
        assert!(matches!(e, CsrError::TooLarge { .. }), "{e}");
        let mut broken = csr.der.clone();
        let n = broken.len();
        broken[n - 3] ^= 0x55;
        let e = Csr::read(&broken, "x").unwrap_err();
        assert!(matches!(e, CsrError::BadSignature { .. }), "{e}");
        let e = Csr::read(
            b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`CERTIFICATE`"), "{e}");
    }

    trait Len {
        fn der_bytes_len(&self) -> usize;
    }
    impl Len for rcgen::SubjectPublicKeyInfo {
        fn der_bytes_len(&self) -> usize {
            rcgen::PublicKeyData::der_bytes(self).len()
        }
    }
}
