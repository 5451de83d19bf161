//! `certs/manifest.json`: every certificate `pki` issued into a directory,
//! with subject, issuer, serial, validity, thumbprints and file paths, so
//! scripts never have to parse file names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging};
use crate::inspect::CertDetails;
use crate::layout::{FileKind, Layout};
use crate::profile::Role;

/// One certificate in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// `root-ca`, `intermediate-ca`, `edge-ca`, `device`, `verification`.
    pub role: Role,
    /// Subject common name (the registration ID for devices).
    pub common_name: String,
    /// `CN=…`.
    pub subject: String,
    /// `CN=…` of the issuer.
    pub issuer: String,
    /// Upper-case hex serial.
    pub serial_number: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Key type, e.g. `EC P-256`.
    pub key: String,
    /// Upper-case hex SHA-1 of the DER.
    pub sha1_thumbprint: String,
    /// Upper-case hex SHA-256 of the DER.
    pub sha256_thumbprint: String,
    /// Files, relative to the manifest's CA directory: `cert`, `key`, `fullChain`, `pfx`, `chain`.
    pub files: BTreeMap<FileKind, String>,
}

impl Entry {
    /// Builds an entry from a certificate's DER and its files.
    pub fn new(role: Role, der: &[u8], files: BTreeMap<FileKind, String>) -> Result<Entry> {
        let info = CertDetails::from_der(der, "an issued certificate")?;
        Ok(Entry {
            role,
            common_name: info.common_name.unwrap_or_default(),
            subject: info.subject,
            issuer: info.issuer,
            serial_number: info.serial_number,
            not_before: info.not_before,
            not_after: info.not_after,
            key: info.key,
            sha1_thumbprint: info.sha1_thumbprint,
            sha256_thumbprint: info.sha256_thumbprint,
            files,
        })
    }
}

/// The whole manifest file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every certificate, CAs first, then devices in the order issued.
    pub certificates: Vec<Entry>,
}

impl Manifest {
    /// Loads the manifest of a CA directory, or an empty one if there is none
    /// (a certGen.sh directory, say).
    pub fn load(layout: &Layout) -> Result<Manifest> {
        let path = layout.manifest();
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                Error::input(format!(
                    "{} is not a pki manifest ({e}); move it away and run again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                certificates: Vec::new(),
            }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Adds or replaces (by certificate file) entries.
    pub fn upsert(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            let key = e.files.get(&FileKind::Cert).cloned();
            match self
                .certificates
                .iter_mut()
                .find(|x| x.files.get(&FileKind::Cert) == key.as_ref())
            {
                Some(slot) => *slot = e,
                None => self.certificates.push(e),
            }
        }
    }

    /// Stages the manifest with the rest of a run's files.
    pub fn save(&self, layout: &Layout, staging: &Staging) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::failed(format!("cannot encode manifest.json: {e}")))?;
        json.push(b'\n');
        staging.write(&layout.manifest(), &json, Mode::Public)
    }
}
