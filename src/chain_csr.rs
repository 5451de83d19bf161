//! `pki device new --csr`: device certificates for keys `pki` never sees.
//!
//! A factory line or secure element sends a PKCS#10 CSR; this signs it
//! under a CA directory with the same device profile, file names and
//! manifest entry as `pki device new`, but writes no key and no PFX (there
//! is no key). Every CSR is read and checked (self-signature, CN as a
//! registration ID, a key pki can sign) before anything is written, so a bad
//! CSR in a batch leaves the directory untouched. Requested extensions are
//! ignored: [`Profile::Device`] decides them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ca_dir::LoadedCa;
use crate::chain::Summary;
use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, ensure_dir, read_input};
use crate::issue::issue_for_public_key;
use crate::keys::pem_lf;
use crate::layout::{FileKind, Layout};
use crate::manifest::{Entry, Manifest};
use crate::profile::{Profile, Role};
use crate::regid::RegistrationId;

/// File name endings taken from a directory of CSRs.
const CSR_ENDINGS: [&str; 4] = [".csr", ".csr.pem", ".req", ".csr.der"];

/// A checked CSR, ready to sign.
pub struct Request {
    /// Where it was read from.
    pub path: PathBuf,
    /// The device (the CSR's CN, or `--cn`).
    pub id: RegistrationId,
    /// The key to certify.
    pub public_key: rcgen::SubjectPublicKeyInfo,
    /// The request itself.
    pub csr: Csr,
}

/// Reads the CSRs named by `paths` (files, or directories whose `*.csr`,
/// `*.csr.pem`, `*.req` and `*.csr.der` files are taken in name order).
///
/// `cn` replaces the CSR's CN (one CSR only). Returns the requests and the
/// warnings to print once the run has succeeded.
pub fn collect(paths: &[PathBuf], cn: Option<&str>) -> Result<(Vec<Request>, Vec<String>)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| Error::Read {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let name = f.file_name().map(|n| n.to_string_lossy().to_lowercase());
                    f.is_file()
                        && name.is_some_and(|n| CSR_ENDINGS.iter().any(|end| n.ends_with(end)))
                })
                .collect();
            if found.is_empty() {
                return Err(Error::input(format!(
                    "{} holds no CSR files (*.csr, *.csr.pem, *.req, *.csr.der); pass CSR files or a directory of them",
                    p.display()
                )));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if cn.is_some() && files.len() != 1 {
        return Err(Error::input(format!(
            "--cn names one device, but {} CSRs were given; drop --cn to use each CSR's CN",
            files.len()
        )));
    }
    let mut requests = Vec::with_capacity(files.len());
    let mut warnings = Vec::new();
    for path in files {
        let what = path.display().to_string();
        let csr = Csr::read(&read_input(&path)?, &what)?;
        let (id, warning) = match cn {
            Some(cn) => RegistrationId::parse_cn(cn)?,
            None => csr.registration_id(&what)?,
        };
        warnings.extend(warning);
        let public_key = csr.public_key()?;
        requests.push(Request {
            path,
            id,
            public_key,
            csr,
        });
    }
    let ids: Vec<String> = requests.iter().map(|r| r.id.to_string()).collect();
    crate::chain::check_unique(&ids.into())?;
    Ok((requests, warnings))
}

/// Signs `requests` under `loaded` with the device profile, for `days`
/// (capped at the CA's), writing `certs/<id>.cert.pem`,
/// `certs/<id>-full-chain.cert.pem` and the manifest entries.
pub fn sign(
    layout: &Layout,
    loaded: &LoadedCa,
    requests: &[Request],
    validity: &crate::validity::Validity,
    force: bool,
) -> Result<Summary> {
    if !force {
        check_certs_absent(layout, requests)?;
    }
    crate::issue::check_validity(validity)?;
    ensure_dir(&layout.certs_dir(), Mode::Public)?;
    let staging = Staging::new(layout.base())?;
    let chain_pem: String = std::iter::once(loaded.ca.cert.pem.clone())
        .chain(loaded.above.iter().map(|d| pem_lf("CERTIFICATE", d)))
        .collect();
    let mut summary = Summary::default();
    let mut capped = false;
    for r in requests {
        let id = r.id.as_str();
        let cert = issue_for_public_key(&Profile::Device, id, validity, &r.public_key, &loaded.ca)?;
        capped |= cert.capped;
        for w in &cert.warnings {
            if !summary.notes.contains(w) {
                summary.notes.push(w.clone());
            }
        }
        let (c, f) = (layout.device_cert(id), layout.device_full_chain(id));
        staging.write(&c, cert.pem.as_bytes(), Mode::Public)?;
        let full = format!("{}{chain_pem}", cert.pem);
        staging.write(&f, full.as_bytes(), Mode::Public)?;
        let mut entry = Entry::new(
            Role::Device,
            &cert.der,
            files(&[(FileKind::Cert, &c), (FileKind::FullChain, &f)], layout),
        )?;
        // The key is the device's own, from its CSR: not a seeded key.
        entry.seeded = false;
        summary.issued.push(entry);
    }
    if capped {
        summary.notes.push(format!(
            "device validity was cut to the issuer's expiry ({}): a certificate cannot outlive its CA",
            loaded.ca.cert.not_after.date()
        ));
    }
    let mut manifest = Manifest::load(layout)?;
    summary.device_count = summary.issued.len();
    summary.first_device = summary.issued.first().cloned();
    summary.last_device = summary.issued.last().cloned();
    manifest.upsert(summary.issued.clone());
    manifest.save(layout, &staging)?;
    staging.commit()?;
    Ok(summary)
}

fn files(pairs: &[(FileKind, &Path)], layout: &Layout) -> BTreeMap<FileKind, String> {
    pairs
        .iter()
        .map(|(k, p)| (*k, layout.relative(p)))
        .collect()
}

/// Refuses to replace a device certificate (a key next to it is fine: it is
/// the one `pki csr new` made for this CSR). Compared case-insensitively,
/// as DPS compares IDs.
fn check_certs_absent(layout: &Layout, requests: &[Request]) -> Result<()> {
    let existing: std::collections::HashSet<String> = std::fs::read_dir(layout.certs_dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_ascii_lowercase())
        .collect();
    for r in requests {
        let cert = layout.device_cert(r.id.as_str());
        let name = cert
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if existing.contains(&name) {
            return Err(Error::input(format!(
                "device `{}` already has a certificate ({}); pass --force to re-issue it, or use --cn for another ID",
                r.id,
                layout.relative(&cert)
            )));
        }
    }
    Ok(())
}
