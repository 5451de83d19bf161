//! PKCS#12 (PFX) files: key + leaf + chain, for C# samples and Windows.
//!
//! Modern by default (PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, SHA-256
//! MAC), which OpenSSL 3 reads without `-legacy`; `legacy` gives 3DES and a
//! SHA-1 MAC for Windows Server 2016 and Java 8, which reject the modern form.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use crate::error::{Error, Result};

/// Key-derivation iterations: OpenSSL's own default for `pkcs12 -export`
/// (PKCS12_DEFAULT_ITER). The crate's default, 10,000, costs ~3 ms per file.
const ITERATIONS: u32 = 2048;

/// How a PFX file is protected.
#[derive(Clone, Debug)]
pub struct PfxOptions {
    /// The password (the tutorial's default is "1234").
    pub password: String,
    /// 3DES + SHA-1 MAC instead of AES-256 + SHA-256 MAC.
    pub legacy: bool,
}

/// Builds a PFX holding `key_pkcs8_der` and `chain_der` (leaf first, root
/// last), with `friendly_name` as the alias.
pub fn build(
    friendly_name: &str,
    key_pkcs8_der: &[u8],
    chain_der: &[&[u8]],
    options: &PfxOptions,
) -> Result<Vec<u8>> {
    if crate::seed::active() {
        return Err(Error::input(crate::seed::PFX_REFUSAL));
    }
    let err =
        |e: p12_keystore::error::Error| Error::Crypto(format!("cannot build the PFX file: {e}"));
    let key = PrivateKey::from_der(key_pkcs8_der).map_err(err)?;
    let certs = chain_der
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(err)?;
    // The local key id ties the key bag to the leaf certificate bag.
    let local_key_id = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        chain_der.first().copied().unwrap_or_default(),
    );
    let chain = PrivateKeyChain::new(local_key_id.as_ref(), key, certs);
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(chain));
    let (enc, mac) = if options.legacy {
        (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        )
    } else {
        (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        )
    };
    store
        .writer(&options.password)
        .encryption_algorithm(enc)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(err)
}
