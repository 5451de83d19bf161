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

/// Shortest code accepted: DPS and IoT Hub show 48 hex digits (so does the
/// emulator); a code much shorter than that is a typo or a placeholder.
pub const MIN_CODE_LEN: usize = 16;
/// Longest code accepted: a certificate CN holds at most 64 characters.
pub const MAX_CODE_LEN: usize = 64;

/// Trims a verification code and checks its form: DPS and IoT Hub codes are
/// hexadecimal (accepted in either case, returned in upper case as shown).
pub fn check_code(code: &str) -> Result<String> {
    let code = code.trim();
    if code.is_empty() {
        return Err(Error::input(
            "the verification code is empty; copy it from the portal (\"Generate verification code\") or `pki ca verify`",
        ));
    }
    if code.chars().any(char::is_control) {
        return Err(Error::input(
            "the verification code contains control characters; copy it again without line breaks or tabs",
        ));
    }
    let len = code.chars().count();
    if len > MAX_CODE_LEN {
        return Err(Error::input(format!(
            "the verification code is {len} characters long, but a certificate CN holds at most {MAX_CODE_LEN}; copy the code again"
        )));
    }
    if let Some(bad) = code.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(Error::input(format!(
            "the verification code contains {bad:?}, but DPS verification codes are hexadecimal \
             (0-9, A-F, usually 48 digits); copy the code from the portal or `az iot dps certificate generate-verification-code`"
        )));
    }
    if len < MIN_CODE_LEN {
        return Err(Error::input(format!(
            "the verification code has {len} hex digits, but DPS verification codes have {MIN_CODE_LEN} to {MAX_CODE_LEN} (usually 48); copy the whole code"
        )));
    }
    Ok(code.to_ascii_uppercase())
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

/// The paths [`write`] would write under `out`.
pub fn paths(out: &Layout) -> Written {
    Written {
        certificate: out.certs_dir().join("verification-code.cert.pem"),
        der: out.certs_dir().join("verification-code.cer"),
        key: out.private_dir().join("verification-code.key.pem"),
    }
}

/// Refuses to replace an existing verification certificate under `out`
/// unless `force`: it may be the one still waiting to be uploaded.
pub fn check_replace(out: &Layout, force: bool) -> Result<()> {
    let w = paths(out);
    if force {
        return Ok(());
    }
    if let Some(existing) = [&w.certificate, &w.der, &w.key]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(Error::input(format!(
            "{} already exists (an earlier verification certificate); pass --force to replace it, or --out DIR to write elsewhere",
            existing.display()
        )));
    }
    Ok(())
}

/// Writes the certificate (PEM and DER) and its key under `out`.
pub fn write(out: &Layout, v: &Verification) -> Result<Written> {
    ensure_dir(&out.certs_dir(), Mode::Public)?;
    ensure_dir(&out.private_dir(), Mode::Secret)?;
    let written = paths(out);
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
        let code = "3a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7";
        assert_eq!(
            check_code(&format!("  {code}\n")).unwrap(),
            code.to_ascii_uppercase()
        );
        for bad in [
            "",
            "   ",
            "a\tb",
            &"A".repeat(65),
            "ABC123",
            "CODE-1",
            "3A1B2C…",
            "3A1B2C3D4E5F60718293A4B5C6D7E8FG",
        ] {
            assert_eq!(check_code(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
