//! Proof-of-possession ("verification code") certificates.
//!
//! DPS and IoT Hub show a verification code for an uploaded CA; the user
//! proves they hold that CA's key by uploading a certificate whose subject is
//! `CN=<code>`, signed by it. Unlike certGen.sh, any CA can sign (root or
//! intermediate), and the certificate is an ordinary leaf (CA:FALSE, fresh
//! serial), unlike the Java DICE tool's.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::fsio::{Mode, ensure_dir, write_atomic};
use crate::issue::{Ca, IssuedCert, issue};
use crate::keys::{KeyType, private_key_pem};
use crate::layout::Layout;
use crate::profile::Profile;

/// Default validity of a verification certificate: it is used once, right away.
pub const DEFAULT_DAYS: u32 = 30;

/// Trims a verification code and checks it can be a CN.
pub fn check_code(code: &str) -> Result<String> {
    let code = code.trim();
    if code.is_empty() {
        return Err(Error::input(
            "the verification code is empty; copy it from the portal (\"Generate verification code\") or `pki ca verify`",
        ));
    }
    if code.chars().count() > 64 {
        return Err(Error::input(format!(
            "the verification code is {} characters long, but a certificate CN holds at most 64; copy the code again",
            code.chars().count()
        )));
    }
    if code.chars().any(char::is_control) {
        return Err(Error::input(
            "the verification code contains control characters; copy it again without line breaks or tabs",
        ));
    }
    Ok(code.to_string())
}

/// A verification certificate and its fresh key.
pub struct Verification {
    /// The certificate (subject `CN=<code>`).
    pub cert: IssuedCert,
    /// Its private key.
    pub key: crate::issue::CaKey,
}

/// Makes the verification certificate for `code`, signed by `issuer`.
pub fn make(
    code: &str,
    issuer: &Ca,
    key_type: KeyType,
    validity: &crate::validity::Validity,
) -> Result<Verification> {
    let code = check_code(code)?;
    let key = crate::issue::CaKey::generate(key_type, "verification", &code)?;
    let cert = issue(&Profile::Verification, &code, validity, &key, Some(issuer))?;
    Ok(Verification { cert, key })
}

/// Paths written by [`write`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Written {
    /// `certs/verification-code.cert.pem`: upload this.
    pub certificate: PathBuf,
    /// `certs/verification-code.cer`: the same in DER, which the portal also takes.
    pub der: PathBuf,
    /// `private/verification-code.key.pem` (0600).
    pub key: PathBuf,
}

/// Writes the certificate (PEM and DER) and its key under `out`.
pub fn write(out: &Layout, v: &Verification) -> Result<Written> {
    ensure_dir(&out.certs_dir(), Mode::Public)?;
    ensure_dir(&out.private_dir(), Mode::Secret)?;
    let written = Written {
        certificate: out.certs_dir().join("verification-code.cert.pem"),
        der: out.certs_dir().join("verification-code.cer"),
        key: out.private_dir().join("verification-code.key.pem"),
    };
    write_atomic(
        &written.key,
        private_key_pem(&v.key, None)?.as_bytes(),
        Mode::Secret,
    )?;
    write_atomic(&written.certificate, v.cert.pem.as_bytes(), Mode::Public)?;
    write_atomic(&written.der, &v.cert.der, Mode::Public)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_trimmed_and_checked() {
        assert_eq!(check_code("  ABC123\n").unwrap(), "ABC123");
        for bad in ["", "   ", "a\tb", &"x".repeat(65)] {
            assert_eq!(check_code(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
