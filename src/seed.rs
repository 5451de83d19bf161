//! Reproducible fixtures: `--seed TEXT` (or `PKI_SEED`).
//!
//! Under a seed every random value an issuing command uses (EC keys, serial
//! numbers, the salts and IVs of encrypted key files) comes from one
//! deterministic generator, HMAC-SHA256 keyed by the seed over a label made
//! of the role and the certificate's ID, so two runs with the same seed and
//! `--epoch` write byte-identical files, and different seeds or IDs give
//! unrelated keys. ECDSA signatures from aws-lc-rs are randomized, so seeded
//! keys sign with RFC 6979 (the RustCrypto `p256`/`p384` crates). Only EC
//! P-256 and P-384 keys are seeded; RSA with `--seed` is refused. The normal
//! (unseeded) path never comes here.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use p256::pkcs8::EncodePrivateKey;

use crate::error::{Error, Result};
use crate::keys::KeyType;

static SEED: OnceLock<String> = OnceLock::new();

/// What `--help` and refusals say about RSA.
pub const RSA_REFUSAL: &str = "--seed makes reproducible EC keys only (ec-p256, ec-p384): RSA keys from a seeded prime search are not offered; pick --key ec-p256 (and --ca-key ec-p256) or drop --seed";

/// Why `--seed` needs `--no-pfx`.
pub const PFX_REFUSAL: &str = "--seed cannot write reproducible PFX files (p12-keystore picks random salts and IVs): add --no-pfx";

/// Turns seeding on for this process (once; a second, different seed is refused).
pub fn activate(seed: &str) -> Result<()> {
    if seed.is_empty() {
        return Err(Error::input(
            "--seed is empty: give some text, e.g. --seed fixtures-v1",
        ));
    }
    let set = SEED.get_or_init(|| seed.to_string());
    if set != seed {
        return Err(Error::input("only one --seed per run"));
    }
    Ok(())
}

static USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says once, on stderr, that the keys are test keys, if this run derived
/// any. Called only when a command has succeeded, so a refusal stays one line.
pub fn announce() {
    if !USED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "pki: note: --seed: these are reproducible TEST keys (anyone with the seed has them); never use them in production"
        );
    });
}

/// Refuses what `--seed` cannot reproduce, before anything is made or
/// written: RSA (or Ed25519) keys among `keys`, and PFX files (`pfx`).
pub fn check(keys: &[KeyType], pfx: bool) -> Result<()> {
    if !active() {
        return Ok(());
    }
    for kt in keys {
        check_key_type(*kt)?;
    }
    if pfx {
        return Err(Error::input(PFX_REFUSAL));
    }
    Ok(())
}

/// Whether `--seed` is in force.
pub fn active() -> bool {
    SEED.get().is_some()
}

/// `n` bytes for `label` (role, ID, purpose), or `None` when not seeded.
pub fn bytes(label: &[&[u8]], n: usize) -> Option<Vec<u8>> {
    let seed = SEED.get()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes());
    let mut out = Vec::with_capacity(n);
    let mut counter = 0u32;
    while out.len() < n {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"pki-seed-v1");
        for part in label {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(&counter.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(n);
    Some(out)
}

/// Refuses RSA (and Ed25519) under a seed.
pub fn check_key_type(kt: KeyType) -> Result<()> {
    if active() && !matches!(kt, KeyType::EcP256 | KeyType::EcP384) {
        return Err(Error::input(RSA_REFUSAL));
    }
    Ok(())
}

/// A key derived from the seed that signs deterministically (RFC 6979).
#[derive(Clone)]
pub struct SeededKey {
    inner: Inner,
    public: Vec<u8>,
    pkcs8: Vec<u8>,
}

#[derive(Clone)]
enum Inner {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for SeededKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededKey").finish_non_exhaustive()
    }
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(format!("seeded key: {e}"))
}

impl SeededKey {
    /// The key of `role` (root-ca, intermediate-ca, device, …) and `id`.
    /// `None` when no seed is in force.
    pub fn derive(kt: KeyType, role: &str, id: &str) -> Result<Option<SeededKey>> {
        if !active() {
            return Ok(None);
        }
        check_key_type(kt)?;
        USED.store(true, std::sync::atomic::Ordering::Relaxed);
        for attempt in 0u32..64 {
            let label: [&[u8]; 4] = [
                b"key",
                kt.name().as_bytes(),
                role.as_bytes(),
                &[id.as_bytes(), &attempt.to_be_bytes()].concat(),
            ];
            let inner = match kt {
                KeyType::EcP256 => bytes(&label, 32)
                    .and_then(|b| p256::ecdsa::SigningKey::from_slice(&b).ok())
                    .map(Inner::P256),
                _ => bytes(&label, 48)
                    .and_then(|b| p384::ecdsa::SigningKey::from_slice(&b).ok())
                    .map(Inner::P384),
            };
            // A scalar ≥ n (or 0) is rejected: try the next counter.
            if let Some(inner) = inner {
                return SeededKey::from_inner(inner).map(Some);
            }
        }
        Err(crypto("no valid scalar in 64 attempts"))
    }

    /// A loaded EC key (PKCS#8 DER) as a deterministic signer, under a seed.
    pub fn from_pkcs8(der: &[u8]) -> Option<SeededKey> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return SeededKey::from_inner(Inner::P256(k)).ok();
        }
        p384::ecdsa::SigningKey::from_pkcs8_der(der)
            .ok()
            .and_then(|k| SeededKey::from_inner(Inner::P384(k)).ok())
    }

    fn from_inner(inner: Inner) -> Result<SeededKey> {
        let (public, pkcs8) = match &inner {
            Inner::P256(k) => (
                k.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
                p256::SecretKey::from(k)
                    .to_pkcs8_der()
                    .map_err(crypto)?
                    .as_bytes()
                    .to_vec(),
            ),
            Inner::P384(k) => (
                k.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
                p384::SecretKey::from(k)
                    .to_pkcs8_der()
                    .map_err(crypto)?
                    .as_bytes()
                    .to_vec(),
            ),
        };
        Ok(SeededKey {
            inner,
            public,
            pkcs8,
        })
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl rcgen::PublicKeyData for SeededKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.inner {
            Inner::P256(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Inner::P384(_) => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl rcgen::SigningKey for SeededKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        use p256::ecdsa::signature::Signer;
        Ok(match &self.inner {
            Inner::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            Inner::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
        })
    }
}
