//! `certs/manifest.json`: every certificate `pki` issued into a directory,
//! with subject, issuer, serial, validity, thumbprints and file paths, so
//! scripts never have to parse file names.
//!
//! Bulk runs write the manifest as a stream ([`ManifestWriter`]): each
//! device's entry is encoded as soon as the device is made and then
//! dropped, so a million devices need no more memory than ten.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging};
use crate::inspect::CertDetails;
use crate::issue::IssuedCert;
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
    /// The key came from `--seed`: a reproducible TEST key. Absent (false)
    /// for ordinary keys, so unseeded manifests read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seeded: bool,
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
            seeded: crate::seed::active(),
        })
    }

    /// The entry of a certificate this run just signed, from what signing it
    /// already knew, giving what [`Entry::new`] gives (a unit test holds
    /// them equal) without parsing the DER back: that parse took a fifth of
    /// a device's CPU. Only for certificates whose subject is the single CN
    /// [`crate::profile::Profile::apply`] sets. `issuer` is the issuer's
    /// subject as [`Entry::new`] shows it, `key` the key as it shows it
    /// (`EC P-256`).
    pub fn for_issued(
        role: Role,
        cert: &IssuedCert,
        issuer: &str,
        key: &str,
        files: BTreeMap<FileKind, String>,
    ) -> Entry {
        use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
        let serial = hex(&cert.serial);
        Entry {
            role,
            common_name: cert.common_name.clone(),
            subject: format!("CN={}", cert.common_name),
            issuer: issuer.to_string(),
            serial_number: serial.trim_start_matches("00").to_string(),
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            key: key.to_string(),
            sha1_thumbprint: hex(digest(&SHA1_FOR_LEGACY_USE_ONLY, &cert.der).as_ref()),
            sha256_thumbprint: hex(digest(&SHA256, &cert.der).as_ref()),
            files,
            seeded: crate::seed::active(),
        }
    }
}

/// Upper-case hex, as [`crate::inspect::hex_upper`] writes it, without a
/// `format!` per byte (this runs for every device).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// RFC 3339, as `pki inspect` and [`Entry::new`] write validity times.
fn rfc3339(t: time::OffsetDateTime) -> String {
    use std::cell::RefCell;
    use time::format_description::well_known::Rfc3339;
    // Every device of a batch has the same two instants: each worker thread
    // keeps the last two it formatted instead of formatting them again.
    thread_local! {
        static LAST: RefCell<[Option<(time::OffsetDateTime, String)>; 2]> =
            const { RefCell::new([None, None]) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((_, s)) = last.iter().flatten().find(|(at, _)| *at == t) {
            return s.clone();
        }
        let s = t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
        last.rotate_right(1);
        last[0] = Some((t, s.clone()));
        s
    })
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
        // An index by certificate file: a linear search per entry made adding
        // 10,000 devices to 10,000 quadratic. The first entry with a file wins,
        // as the search did.
        let mut index: std::collections::HashMap<Option<String>, usize> =
            std::collections::HashMap::new();
        for (i, x) in self.certificates.iter().enumerate() {
            index
                .entry(x.files.get(&FileKind::Cert).cloned())
                .or_insert(i);
        }
        for e in entries {
            let key = e.files.get(&FileKind::Cert).cloned();
            match index.get(&key) {
                Some(&i) => self.certificates[i] = e,
                None => {
                    index.insert(key, self.certificates.len());
                    self.certificates.push(e);
                }
            }
        }
    }

    /// The certificate files (`files.cert`) of every entry.
    pub fn cert_files(&self) -> std::collections::HashSet<&str> {
        self.certificates
            .iter()
            .filter_map(|x| x.files.get(&FileKind::Cert).map(String::as_str))
            .collect()
    }

    /// Stages the manifest with the rest of a run's files.
    pub fn save(&self, layout: &Layout, staging: &Staging) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::failed(format!("cannot encode manifest.json: {e}")))?;
        json.push(b'\n');
        staging.write(&layout.manifest(), &json, Mode::Public)
    }
}

/// Whether the manifest beside `cert_file` (`manifest.json` in the same
/// directory, as `pki` lays out `certs/`) lists the certificate with this
/// SHA-1 thumbprint as seeded (`--seed`: a reproducible test key). Any
/// missing or unreadable manifest is "no": this only adds a warning.
pub fn seeded_beside(cert_file: &std::path::Path, sha1_thumbprint: &str) -> bool {
    let Some(dir) = cert_file.parent() else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let Ok(data) = std::fs::read(dir.join("manifest.json")) else {
        return false;
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&data) else {
        return false;
    };
    manifest
        .certificates
        .iter()
        .any(|e| e.seeded && e.sha1_thumbprint.eq_ignore_ascii_case(sha1_thumbprint))
}

/// Writes `certs/manifest.json` into a [`Staging`] batch entry by entry,
/// byte for byte what [`Manifest::save`] writes for the same entries.
///
/// Devices are made on several threads; [`ManifestWriter::push_at`] puts
/// their entries back in ID order, holding only the few that finish ahead
/// of a slower one.
pub struct ManifestWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    written: usize,
    next: usize,
    ahead: BTreeMap<usize, Vec<u8>>,
}

impl ManifestWriter {
    /// Starts the manifest of `layout` in `staging`.
    pub fn create(layout: &Layout, staging: &Staging) -> Result<ManifestWriter> {
        let path = layout.manifest();
        let file = staging.create(&path, Mode::Public)?;
        let mut w = ManifestWriter {
            out: std::io::BufWriter::with_capacity(64 * 1024, file),
            path,
            written: 0,
            next: 0,
            ahead: BTreeMap::new(),
        };
        w.raw(b"{\n  \"version\": 1,\n  \"certificates\": [")?;
        Ok(w)
    }

    /// Appends `entry` now.
    pub fn push(&mut self, entry: &Entry) -> Result<()> {
        let json = encode(entry)?;
        self.write_encoded(&json)
    }

    /// Appends the entry of the `i`th device of a batch, once devices
    /// `0..i` are written (pushed in any order; each `i` once).
    pub fn push_at(&mut self, i: usize, entry: &Entry) -> Result<()> {
        self.push_encoded_at(i, encode(entry)?)
    }

    /// [`ManifestWriter::push_at`] with the entry already encoded by
    /// [`encode_entry`]: workers encode before taking the writer's lock,
    /// so the lock is held only for the copy into the file buffer.
    pub fn push_encoded_at(&mut self, i: usize, json: Vec<u8>) -> Result<()> {
        if i != self.next {
            self.ahead.insert(i, json);
            return Ok(());
        }
        self.write_encoded(&json)?;
        self.next += 1;
        while let Some(json) = self.ahead.remove(&self.next) {
            self.write_encoded(&json)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Closes the array and flushes the file. Fails if a device index
    /// before a pushed one never came (a bug: entries would be missing).
    pub fn finish(mut self) -> Result<()> {
        if !self.ahead.is_empty() {
            return Err(Error::failed(format!(
                "manifest entry {} was never written",
                self.next
            )));
        }
        let tail: &[u8] = if self.written == 0 {
            b"]\n}\n"
        } else {
            b"\n  ]\n}\n"
        };
        self.raw(tail)?;
        let path = self.path.clone();
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data().map(|()| f))
            .map(drop)
            .map_err(|source| Error::Write { path, source })
    }

    fn write_encoded(&mut self, json: &[u8]) -> Result<()> {
        self.raw(if self.written == 0 {
            b"\n    "
        } else {
            b",\n    "
        })?;
        self.written += 1;
        // Indent the entry two levels, as serde_json's pretty printer does
        // inside the array: JSON strings hold no raw newlines, so every
        // newline is a line break of the layout.
        let mut rest = json;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.raw(&rest[..=nl])?;
            self.raw(b"    ")?;
            rest = &rest[nl + 1..];
        }
        self.raw(rest)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// One entry as [`ManifestWriter::push_encoded_at`] takes it.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>> {
    encode(entry)
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    // A device entry is about 700 bytes: one allocation instead of the
    // doublings from an empty Vec.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer_pretty(&mut out, entry)
        .map_err(|e| Error::failed(format!("cannot encode manifest.json: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            role: Role::Device,
            common_name: format!("d-{n}"),
            subject: format!("CN=d-{n}"),
            issuer: "CN=ca \"q\"\\n".into(),
            serial_number: "0A".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            key: "EC P-256".into(),
            sha1_thumbprint: "AB".into(),
            sha256_thumbprint: "CD".into(),
            files: [(FileKind::Cert, format!("certs/d-{n}.cert.pem"))].into(),
            seeded: n % 2 == 1,
        }
    }

    #[test]
    fn entries_of_issued_certificates_match_parsed_ones() {
        use crate::issue::{Ca, issue};
        use crate::keys::KeyType;
        use crate::profile::Profile;
        let ca_key = KeyType::EcP256.generate().unwrap();
        let ca = Ca::create(
            &Profile::RootCa { path_len: 0 },
            "Root, \"odd\" CA",
            &crate::validity::Validity::days(30),
            ca_key,
            None,
        )
        .unwrap();
        let ca_subject = crate::cert::parse_der(&ca.cert.der, "ca")
            .unwrap()
            .subject()
            .to_string();
        let files: BTreeMap<FileKind, String> =
            [(FileKind::Cert, "certs/x.cert.pem".into())].into();
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            for id in ["device-0001", "A.b_c:d-E9", "x"] {
                let key = kt.generate_fresh().unwrap();
                // Signed by the CA (validity capped at 30 days) and self-signed.
                for (issuer, subject) in
                    [(Some(&ca), ca_subject.clone()), (None, format!("CN={id}"))]
                {
                    let cert = issue(
                        &Profile::Device,
                        id,
                        &crate::validity::Validity::days(365),
                        &key,
                        issuer,
                    )
                    .unwrap();
                    let parsed = Entry::new(Role::Device, &cert.der, files.clone()).unwrap();
                    let made = Entry::for_issued(
                        Role::Device,
                        &cert,
                        &subject,
                        kt.cert_description(),
                        files.clone(),
                    );
                    assert_eq!(made, parsed, "{kt} {id}");
                }
            }
        }
    }

    #[test]
    fn streamed_manifest_is_what_save_writes() {
        for n in [0, 1, 2, 7] {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::new(dir.path());
            crate::fsio::ensure_dir(&layout.certs_dir(), Mode::Public).unwrap();
            let entries: Vec<Entry> = (0..n).map(entry).collect();
            let staging = Staging::new(layout.base()).unwrap();
            let mut w = ManifestWriter::create(&layout, &staging).unwrap();
            if let Some(first) = entries.first() {
                w.push(first).unwrap();
            }
            // Out of order, as worker threads finish.
            let rest: Vec<(usize, &Entry)> = entries.iter().skip(1).enumerate().collect();
            for (i, e) in rest.iter().rev() {
                w.push_at(*i, e).unwrap();
            }
            w.finish().unwrap();
            staging.commit().unwrap();
            let streamed = std::fs::read(layout.manifest()).unwrap();

            let dir2 = tempfile::tempdir().unwrap();
            let layout2 = Layout::new(dir2.path());
            crate::fsio::ensure_dir(&layout2.certs_dir(), Mode::Public).unwrap();
            let staging2 = Staging::new(layout2.base()).unwrap();
            Manifest {
                version: 1,
                certificates: entries,
            }
            .save(&layout2, &staging2)
            .unwrap();
            staging2.commit().unwrap();
            let saved = std::fs::read(layout2.manifest()).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(saved).unwrap(),
                "{n} entries"
            );
        }
    }
}
