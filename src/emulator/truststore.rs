//! `truststore.p12`: the emulator's TLS CA as a Java trust store.
//!
//! The Java SDKs trust servers through the JVM's trust store, not a PEM file,
//! so start-up writes the CA of `ca.pem` into a PKCS#12 file beside it, as a
//! trusted-certificate entry (with the attribute Java's PKCS12 key store
//! needs to load a certificate as trusted). Java reads PKCS#12 with PBES2 /
//! AES-256 and an HMAC-SHA-256 MAC since 8u301 and 11.0.12. The password is
//! `changeit`, the JDK's own convention for trust stores: it guards nothing
//! secret (the file holds one public certificate).

use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm};

use crate::error::{Error, Result};
use crate::fsio::{Mode, write_atomic};

/// File name, beside `ca.pem` in `--data`.
pub const FILE: &str = "truststore.p12";
/// The trust store's password.
pub const PASSWORD: &str = "changeit";
/// Alias of the CA entry.
const ALIAS: &str = "pki-emulator-tls-ca";

/// Writes `<data>/truststore.p12` holding the CA of `<data>/ca.pem`; returns its absolute path.
pub fn write(data: &Path) -> Result<PathBuf> {
    let ca_path = data.join("ca.pem");
    let ca_pem = std::fs::read(&ca_path)
        .map_err(|e| Error::failed(format!("cannot read {}: {e}", ca_path.display())))?;
    let der = crate::cert::read_first(&ca_pem, &ca_path.display().to_string())
        .map_err(|e| super::damaged_ca(data, e))?;
    let err = |e: p12_keystore::error::Error| {
        Error::Crypto(format!("cannot build the Java trust store: {e}"))
    };
    let mut store = KeyStore::new();
    store.add_entry(
        ALIAS,
        KeyStoreEntry::Certificate(Certificate::from_der(&der).map_err(err)?),
    );
    let bytes = store
        .writer(PASSWORD)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .encryption_iterations(2048)
        .mac_iterations(2048)
        .write()
        .map_err(err)?;
    let path = data.join(FILE);
    write_atomic(&path, &bytes, Mode::Public)?;
    Ok(std::path::absolute(&path).unwrap_or(path))
}

/// The JVM options that make Java trust the emulator (and only it).
pub fn java_options(path: &Path) -> String {
    format!(
        "-Djavax.net.ssl.trustStore={} -Djavax.net.ssl.trustStorePassword={PASSWORD}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_reads_back_as_a_trusted_entry() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::keys::KeyType::EcP256.generate().unwrap();
        let ca = crate::issue::Ca::create(
            &crate::profile::Profile::RootCa { path_len: 0 },
            "trust store test CA",
            &crate::validity::Validity::days(2),
            key,
            None,
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert.pem).unwrap();
        let path = write(dir.path()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let store =
            KeyStore::from_pkcs12(&bytes, PASSWORD, p12_keystore::Pkcs12ImportPolicy::Strict)
                .unwrap();
        let Some(KeyStoreEntry::Certificate(c)) = store.entry(ALIAS) else {
            panic!("no trusted certificate entry");
        };
        assert_eq!(c.as_der(), pem::parse(&ca.cert.pem).unwrap().contents());
        assert!(java_options(&path).contains("trustStorePassword=changeit"));
    }
}
