//! Certificates as clients upload them, and the `info` DPS computes.
//!
//! Official clients send PEM text, base64(DER) and base64(PEM) (contract
//! §4.4); all three decode here to DER. A field that holds a private key is
//! refused outright: a key never belongs in DPS, and saying so is more
//! useful than "not a certificate".

use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use crate::cert::{dn_string, sha256};

use super::model::{CertInfo, format_cert_time};
use crate::cert::{self, Thumbprints, hex_upper};

/// Why a certificate field could not be used (becomes a 400 message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(pub String);

const NO_KEYS: &str = "holds a private key: never upload private keys to DPS; send only the certificate (the `-----BEGIN CERTIFICATE-----` block)";

/// Decodes a certificate field (PEM, base64 DER or base64 PEM) to DER.
///
/// `what` names the field in messages, e.g. `signingCertificates.primary`.
pub fn decode_certificate(text: &str, what: &str) -> Result<Vec<u8>, CertError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CertError(format!("{what}.certificate is empty")));
    }
    if cert::looks_pem(text.as_bytes()) {
        return from_pem(text.as_bytes(), what);
    }
    // Base64, tolerating whitespace and missing padding.
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let trimmed = compact.trim_end_matches('=');
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|_| {
            CertError(format!(
                "{what}.certificate is neither PEM nor valid base64; send PEM text, base64 of the DER, or base64 of the PEM"
            ))
        })?;
    if raw.starts_with(b"-----BEGIN") {
        return from_pem(&raw, what);
    }
    check_der(raw, what)
}

fn from_pem(data: &[u8], what: &str) -> Result<Vec<u8>, CertError> {
    let blocks = cert::pem_blocks(data)
        .map_err(|problem| CertError(format!("{what}.certificate is not valid PEM: {problem}")))?;
    if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
        return Err(CertError(format!("{what}.certificate {NO_KEYS}")));
    }
    let count = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").count();
    if count > 1 {
        return Err(CertError(format!(
            "{what}.certificate holds {count} certificates (a PEM bundle or chain); send exactly one: the CA certificate itself"
        )));
    }
    let block = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| {
            CertError(format!(
                "{what}.certificate has no `-----BEGIN CERTIFICATE-----` block"
            ))
        })?;
    check_der(block.into_contents(), what)
}

fn check_der(der: Vec<u8>, what: &str) -> Result<Vec<u8>, CertError> {
    match X509Certificate::from_der(&der) {
        Ok(([], _)) => Ok(der),
        Ok(_) => Err(CertError(format!(
            "{what}.certificate has trailing bytes after the certificate"
        ))),
        Err(e) => {
            if rcgen::KeyPair::try_from(der.as_slice()).is_ok() {
                return Err(CertError(format!("{what}.certificate {NO_KEYS}")));
            }
            Err(CertError(format!(
                "{what}.certificate is not an X.509 certificate: {}",
                cert::der_problem(&e)
            )))
        }
    }
}

/// The `info` block for a certificate (§4.5).
pub fn cert_info(der: &[u8]) -> Result<CertInfo, CertError> {
    let x = cert::parse_der(der, "the certificate").map_err(|e| CertError(e.to_string()))?;
    Ok(info_of(&x, der))
}

/// The `info` block for an already parsed certificate.
pub fn info_of(x: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
    let Thumbprints { sha1, sha256 } = Thumbprints::of(der);
    CertInfo {
        subject_name: dn_string(x.subject()),
        sha1_thumbprint: sha1,
        sha256_thumbprint: sha256,
        issuer_name: dn_string(x.issuer()),
        not_before_utc: format_cert_time(x.validity().not_before.to_datetime()),
        not_after_utc: format_cert_time(x.validity().not_after.to_datetime()),
        serial_number: hex_upper(x.raw_serial()),
        version: x.version().0 + 1,
    }
}

/// PEM text of a DER certificate (LF line endings), as stored.
pub fn to_pem(der: &[u8]) -> String {
    crate::keys::pem_lf("CERTIFICATE", der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::issue;
    use crate::keys::KeyType;
    use crate::profile::Profile;

    #[test]
    fn all_three_forms_decode_and_keys_are_refused() {
        let key = KeyType::EcP256.generate().unwrap();
        let cert = issue(
            &Profile::RootCa { path_len: 0 },
            "root",
            &crate::validity::Validity::days(2),
            &key,
            None,
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        for text in [
            cert.pem.clone(),
            b64.encode(&cert.der),
            b64.encode(cert.pem.as_bytes()),
            b64.encode(&cert.der).trim_end_matches('=').to_string(),
        ] {
            assert_eq!(decode_certificate(&text, "x").unwrap(), cert.der);
        }
        let key_pem = crate::keys::private_key_pem(&key, None).unwrap();
        for text in [
            format!("{}{}", cert.pem, key_pem),
            b64.encode(key.serialized_der()),
        ] {
            let e = decode_certificate(&text, "x").unwrap_err();
            assert!(e.0.contains("never upload private keys"), "{}", e.0);
        }
        assert!(decode_certificate("!!!", "x").is_err());
        let info = cert_info(&cert.der).unwrap();
        assert_eq!(info.subject_name, "CN=root");
        assert_eq!(info.sha256_thumbprint.len(), 64);
        assert_eq!(info.version, 3);
    }
}
