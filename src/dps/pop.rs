//! Proof of possession against the DPS certificate store (dps-protocol.md
//! §10): find which local CA a stored certificate is, upload it if it is not
//! there yet, get a verification code, sign a certificate for it with the
//! CA's key and submit it, handing the etag from each step to the next.

use std::path::Path;

use serde_json::Value;

use crate::ca_dir::{self, CaFiles};
use crate::dps::arm::ArmClient;
use crate::dps::enrollment::{CertInput, load_cert};
use crate::error::{Error, Result};
use crate::issue::Ca;
use crate::keys::KeyType;
use crate::verify_code;

fn etag_of(v: &Value) -> Option<String> {
    v.get("etag").and_then(Value::as_str).map(str::to_string)
}

fn is_verified(v: &Value) -> bool {
    v.pointer("/properties/isVerified") == Some(&Value::Bool(true))
}

/// Proves possession of the certificate `name` of the store, signing with
/// whichever of `candidates` it is (the first one is uploaded when `name`
/// does not exist yet). `note` is told each step, for stderr.
pub async fn prove(
    client: &ArmClient,
    name: &str,
    candidates: &[CaFiles],
    password: Option<&str>,
    note: &dyn Fn(String),
) -> Result<Value> {
    // Every key is decrypted before the first request, so a wrong password
    // fails here and not after the certificate was uploaded.
    let mut loaded: Vec<(&CaFiles, CertInput, Result<Ca>)> = Vec::new();
    for c in candidates {
        let what = c.cert.display().to_string();
        let cert = load_cert(&crate::fsio::read_input(&c.cert)?, &what, true)?;
        // An expired CA cannot sign the verification certificate at all.
        if cert.not_after < time::OffsetDateTime::now_utc() {
            return Err(Error::input(format!(
                "{what} expired on {}; proof of possession needs a CA that is still valid: make a new chain with `pki chain new --force --out {}`",
                cert.not_after.date(),
                c.cert
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("."))
                    .display()
            )));
        }
        let ca = ca_dir::load(c, password);
        loaded.push((c, cert, ca));
    }
    if loaded.iter().all(|(_, _, ca)| ca.is_err()) {
        if let Some((_, _, Err(e))) = loaded.into_iter().next() {
            return Err(e);
        }
        return Err(Error::input("no CA certificate to prove possession of"));
    }
    let existing = client.get(name).await?;
    let (index, current) = match existing {
        Some(v) => {
            let dps_thumb = v
                .pointer("/properties/thumbprint")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let found = loaded
                .iter()
                .position(|(_, c, _)| c.has_thumbprint(&dps_thumb));
            let Some(found) = found else {
                return Err(Error::input(format!(
                    "certificate `{name}` in DPS has thumbprint {}, which matches none of {}; pass --issuer root|intermediate|PATH for the CA that was uploaded",
                    dps_thumb.to_ascii_uppercase(),
                    loaded
                        .iter()
                        .map(|(c, x, _)| format!("{} ({})", c.label, x.sha1))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if is_verified(&v) {
                note(format!("certificate `{name}` is already verified"));
                return Ok(v);
            }
            (found, v)
        }
        None => {
            // The first candidate is uploaded: its key must have loaded.
            if loaded[0].2.is_err() {
                if let Some((_, _, Err(e))) = loaded.into_iter().next() {
                    return Err(e);
                }
                return Err(Error::failed("the CA key did not load"));
            }
            let (files, cert, _) = &loaded[0];
            note(format!(
                "certificate `{name}` is not in DPS yet; uploading the {} CA ({})",
                files.label, cert.subject
            ));
            let v = client.upload(name, &cert.pem, false, None).await?;
            (0, v)
        }
    };
    let (files, _, ca) = loaded.swap_remove(index);
    let ca = ca?;
    let etag = etag_of(&current)
        .ok_or_else(|| Error::Service(format!("certificate `{name}` came back without an etag")))?;
    let (code, etag) = client.generate_code(name, &etag).await?;
    let vcert = verify_code::make(
        &code,
        &ca,
        KeyType::EcP256,
        &crate::validity::Validity::days(verify_code::DEFAULT_DAYS),
    )?;
    note(format!(
        "verification code {code}: signed with the {} CA's key",
        files.label
    ));
    let v = client.verify(name, &etag, &vcert.cert.pem).await?;
    if !is_verified(&v) {
        return Err(Error::Service(format!(
            "DPS accepted the verification certificate but `{name}` is still not verified"
        )));
    }
    Ok(v)
}
