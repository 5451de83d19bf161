//! Key types, key generation, and writing private keys.
//!
//! `pki` writes every private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`), because
//! the Java DPS sample needs it, optionally encrypted with PBES2
//! (PBKDF2-HMAC-SHA256, AES-256-CBC), which `openssl pkey` reads. Reading the
//! formats certGen.sh and openssl leave behind is [`crate::keyfile`]'s job.

use std::fmt;

use pkcs8::der::Decode;
use rcgen::KeyPair;

use crate::error::{Error, Result};

/// PBKDF2 iterations for encrypted keys: OpenSSL's default for `-v2`, and
/// cheap enough (≈0.25 ms) for bulk runs. See shared/reference/crates.md.
const PBKDF2_ITERATIONS: u32 = 2048;

/// The key algorithms `pki` generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256, SHA-256 signatures (the default: fast and small).
    #[value(name = "ec-p256")]
    EcP256,
    /// ECDSA on NIST P-384, SHA-384 signatures.
    #[value(name = "ec-p384")]
    EcP384,
    /// RSA 2048-bit, SHA-256 signatures.
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 3072-bit, SHA-256 signatures.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// RSA 4096-bit, SHA-256 signatures (certGen.sh's only choice).
    #[value(name = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order help and tests list them.
    pub const ALL: [KeyType; 5] = [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The name used on the command line and in manifest.json.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// The key as `pki inspect` and the manifest describe a certificate's
    /// key (`EC P-256`, `RSA 2048`).
    pub fn cert_description(self) -> &'static str {
        match self {
            KeyType::EcP256 => "EC P-256",
            KeyType::EcP384 => "EC P-384",
            KeyType::Rsa2048 => "RSA 2048",
            KeyType::Rsa3072 => "RSA 3072",
            KeyType::Rsa4096 => "RSA 4096",
        }
    }

    /// Whether this is an RSA key (RSA device certificates also get keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    /// Generates a fresh key pair.
    pub fn generate(self) -> Result<KeyPair> {
        let key = match self {
            KeyType::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        };
        key.map_err(|e| Error::Crypto(format!("cannot generate a {} key: {e}", self.name())))
    }

    /// Generates a fresh key for bulk issuing (devices), without the round
    /// trip [`KeyType::generate`] makes.
    ///
    /// rcgen's `KeyPair::generate_for` serializes a new EC key to PKCS#8 and
    /// parses it back, and that parse runs `EC_KEY_check_key`: a second
    /// scalar multiplication, as costly as generating the key. Here the EC
    /// key is generated once and serialized once (the same aws-lc-rs calls,
    /// so the PKCS#8 bytes are the same format). RSA keys still come from
    /// rcgen: their generation costs tens of milliseconds, the re-parse
    /// nothing in comparison.
    pub fn generate_fresh(self) -> Result<GeneratedKey> {
        self.generate_fresh_for("device", "")
    }

    /// [`KeyType::generate_fresh`], or under `--seed` the key of `role`
    /// and `id` from the seeded generator.
    pub fn generate_fresh_for(self, role: &str, id: &str) -> Result<GeneratedKey> {
        if let Some(k) = crate::seed::SeededKey::derive(self, role, id)? {
            return Ok(GeneratedKey {
                pkcs8: k.pkcs8_der().to_vec(),
                alg: rcgen::PublicKeyData::algorithm(&k),
                kind: GeneratedKind::Seeded(k),
            });
        }
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
        };
        let ec = match self {
            KeyType::EcP256 => Some((
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            )),
            KeyType::EcP384 => Some((
                &ECDSA_P384_SHA384_ASN1_SIGNING,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            )),
            _ => None,
        };
        let Some((lc_alg, alg)) = ec else {
            let key = self.generate()?;
            return Ok(GeneratedKey {
                pkcs8: key.serialized_der().to_vec(),
                alg: key.algorithm(),
                kind: GeneratedKind::Rcgen(key),
            });
        };
        let failed = || Error::Crypto(format!("cannot generate a {} key", self.name()));
        let key = EcdsaKeyPair::generate(lc_alg).map_err(|_| failed())?;
        // `to_pkcs8v1` would marshal the public point again, and aws-lc
        // converts it to affine coordinates for that: a field inversion,
        // an eighth of the key's cost. The point is already encoded in
        // `public_key()`, so the PKCS#8 is assembled around it (the same
        // bytes, a unit test holds them equal).
        let curve_oid = match self {
            KeyType::EcP384 => &OID_SECP384R1,
            _ => &OID_PRIME256V1,
        };
        let private = {
            use aws_lc_rs::encoding::AsBigEndian as _;
            key.private_key().as_be_bytes().map_err(|_| failed())?
        };
        let pkcs8 = {
            use aws_lc_rs::signature::KeyPair as _;
            ec_pkcs8(curve_oid, private.as_ref(), key.public_key().as_ref())
                .map_err(|_| failed())?
        };
        Ok(GeneratedKey {
            pkcs8,
            alg,
            kind: GeneratedKind::Ec(key),
        })
    }
}

/// A key made by [`KeyType::generate_fresh`]: signs (for self-signed
/// certificates), gives its public key to rcgen, and keeps its PKCS#8 DER
/// for the key file and PFX.
pub struct GeneratedKey {
    kind: GeneratedKind,
    pkcs8: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

enum GeneratedKind {
    Ec(aws_lc_rs::signature::EcdsaKeyPair),
    Rcgen(KeyPair),
    Seeded(crate::seed::SeededKey),
}

impl GeneratedKey {
    /// The private key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl Pkcs8Source for GeneratedKey {
    fn pkcs8_bytes(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("GeneratedKey").finish_non_exhaustive()
    }
}

impl rcgen::PublicKeyData for GeneratedKey {
    fn der_bytes(&self) -> &[u8] {
        use aws_lc_rs::signature::KeyPair as _;
        match &self.kind {
            GeneratedKind::Ec(k) => k.public_key().as_ref(),
            GeneratedKind::Rcgen(k) => k.der_bytes(),
            GeneratedKind::Seeded(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

impl rcgen::SigningKey for GeneratedKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        match &self.kind {
            GeneratedKind::Ec(k) => k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| rcgen::Error::RingUnspecified),
            GeneratedKind::Rcgen(k) => k.sign(msg),
            GeneratedKind::Seeded(k) => k.sign(msg),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The P-256 curve OID (RFC 5480).
const OID_PRIME256V1: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// The P-384 curve OID.
const OID_SECP384R1: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-ecPublicKey`, the algorithm of every EC key.
const OID_EC_PUBLIC_KEY: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// PKCS#8 v1 (RFC 5208) of an EC key: the RFC 5915 `ECPrivateKey` with the
/// public key and without the curve parameters (they are in the algorithm
/// identifier), which is what aws-lc's `EVP_marshal_private_key` writes.
/// `private` is the fixed-length big-endian scalar, `public` the SEC1 point.
/// Encoded by the `sec1` and `pkcs8` crates, which size the output before
/// writing it (no nested buffers).
fn ec_pkcs8(
    curve_oid: &pkcs8::ObjectIdentifier,
    private: &[u8],
    public: &[u8],
) -> std::result::Result<Vec<u8>, pkcs8::der::Error> {
    use pkcs8::der::Encode as _;
    let ec_key = sec1::EcPrivateKey {
        private_key: private,
        parameters: None,
        public_key: Some(public),
    }
    .to_der()?;
    pkcs8::PrivateKeyInfo {
        algorithm: pkcs8::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(curve_oid.into()),
        },
        private_key: &ec_key,
        public_key: None,
    }
    .to_der()
}

/// Encodes DER as PEM with LF line endings, as the `pem` crate's
/// `encode_config` with LF does (a unit test holds them equal), but in one
/// preallocated String: this runs twice per device.
pub fn pem_lf(tag: &str, der: &[u8]) -> String {
    let mut out = String::new();
    push_pem_lf(&mut out, tag, der);
    out
}

/// Appends the PEM of `der` to `out` (see [`pem_lf`]).
pub fn push_pem_lf(out: &mut String, tag: &str, der: &[u8]) {
    use base64::Engine as _;
    let chars = der.len().div_ceil(3) * 4;
    out.reserve(2 * tag.len() + 30 + chars + chars.div_ceil(64));
    out.push_str("-----BEGIN ");
    out.push_str(tag);
    out.push_str("-----\n");
    // 48 bytes are exactly one 64-character line, so every line but the
    // last is unpadded and encoding line by line equals wrapping the whole.
    for chunk in der.chunks(48) {
        base64::engine::general_purpose::STANDARD.encode_string(chunk, out);
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(tag);
    out.push_str("-----\n");
}

/// The PKCS#8 PEM text of a key we generated, encrypted when a password is given.
///
/// Only for keys from [`KeyType::generate`], whose serialized form is PKCS#8.
pub fn private_key_pem(key: &impl Pkcs8Source, password: Option<&str>) -> Result<String> {
    pkcs8_pem(key.pkcs8_bytes(), password)
}

/// A key whose serialized form is PKCS#8 DER.
pub trait Pkcs8Source {
    /// The PKCS#8 DER.
    fn pkcs8_bytes(&self) -> &[u8];
}

impl Pkcs8Source for KeyPair {
    fn pkcs8_bytes(&self) -> &[u8] {
        self.serialized_der()
    }
}

/// The PEM text of PKCS#8 DER `der`, encrypted when a password is given.
pub fn pkcs8_pem(der: &[u8], password: Option<&str>) -> Result<String> {
    let Some(password) = password else {
        return Ok(pem_lf("PRIVATE KEY", der));
    };
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    if let Some(b) = crate::seed::bytes(&[b"pkcs8-encryption", der], 32) {
        salt.copy_from_slice(&b[..16]);
        iv.copy_from_slice(&b[16..]);
    } else {
        aws_lc_rs::rand::fill(&mut salt)
            .and_then(|()| aws_lc_rs::rand::fill(&mut iv))
            .map_err(|_| Error::Crypto("the system random number generator failed".into()))?;
    }
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
            .map_err(|e| Error::Crypto(format!("cannot set up key encryption: {e}")))?;
    let info = pkcs8::PrivateKeyInfo::from_der(der)
        .map_err(|e| Error::Crypto(format!("internal key encoding is not PKCS#8: {e}")))?;
    let doc = info
        .encrypt_with_params(params, password)
        .map_err(|e| Error::Crypto(format!("cannot encrypt the private key: {e}")))?;
    Ok(pem_lf("ENCRYPTED PRIVATE KEY", doc.as_bytes()))
}

/// The key as PKCS#8 DER, whatever format it was read from (a key loaded
/// from a SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` file keeps that
/// encoding in [`KeyPair::serialized_der`]; TLS stacks and PKCS#12 want
/// PKCS#8). Re-encoded by aws-lc-rs, never by relabelling.
pub fn pkcs8_der(key: &KeyPair) -> Result<Vec<u8>> {
    use aws_lc_rs::encoding::AsDer;
    let der = key.serialized_der();
    if pkcs8::PrivateKeyInfo::from_der(der).is_ok() {
        return Ok(der.to_vec());
    }
    let fail = || Error::Crypto("cannot re-encode the private key as PKCS#8".into());
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 || alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        let signing = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING
        } else {
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING
        };
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(signing, der)
            .map_err(|_| fail())?;
        return Ok(pair.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec());
    }
    let pair = aws_lc_rs::rsa::KeyPair::from_der(der).map_err(|_| fail())?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().map_err(|_| fail())?;
    Ok(pkcs8.as_ref().to_vec())
}

/// Reading key files lives in [`crate::keyfile`]; re-exported for callers.
pub use crate::keyfile::load_private_key;

/// A short human description of a key pair's algorithm, e.g. `ec-p256`.
pub fn describe(key: &impl rcgen::PublicKeyData) -> &'static str {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        "ec-p256"
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        "ec-p384"
    } else if alg == &rcgen::PKCS_ED25519 {
        "ed25519"
    } else {
        "rsa"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn pem_lf_matches_the_pem_crate() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for n in (0..200).chain([479, 480, 481, 700]) {
            let want = pem::encode_config(
                &pem::Pem::new("CERTIFICATE", bytes[..n].to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            assert_eq!(pem_lf("CERTIFICATE", &bytes[..n]), want, "{n} bytes");
        }
    }

    #[test]
    fn assembled_pkcs8_equals_aws_lc() {
        use aws_lc_rs::encoding::AsBigEndian as _;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
            KeyPair as _,
        };
        for (alg, oid) in [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, &OID_PRIME256V1),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, &OID_SECP384R1),
        ] {
            for _ in 0..50 {
                let key = EcdsaKeyPair::generate(alg).unwrap();
                let private = key.private_key().as_be_bytes().unwrap();
                assert_eq!(
                    ec_pkcs8(oid, private.as_ref(), key.public_key().as_ref()).unwrap(),
                    key.to_pkcs8v1().unwrap().as_ref()
                );
            }
        }
        for kt in [KeyType::EcP256, KeyType::EcP384] {
            let key = kt.generate_fresh().unwrap();
            let parsed = KeyPair::try_from(key.pkcs8_der()).unwrap();
            assert_eq!(parsed.der_bytes(), key.der_bytes());
        }
    }

    #[test]
    fn generated_keys_round_trip_plain_and_encrypted() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = kt.generate().unwrap();
            let plain = private_key_pem(&key, None).unwrap();
            assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let back = load_private_key(plain.as_bytes(), None, "k", "--pw").unwrap();
            assert_eq!(
                back.subject_public_key_info(),
                key.subject_public_key_info()
            );

            let enc = private_key_pem(&key, Some("s3cret")).unwrap();
            assert!(enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
            let back = load_private_key(enc.as_bytes(), Some("s3cret"), "k", "--pw").unwrap();
            assert_eq!(
                back.subject_public_key_info(),
                key.subject_public_key_info()
            );
            let err = load_private_key(enc.as_bytes(), Some("nope"), "k", "--pw").unwrap_err();
            assert!(err.to_string().contains("wrong password"), "{err}");
            let err = load_private_key(enc.as_bytes(), None, "k", "--pw").unwrap_err();
            assert!(err.to_string().contains("is encrypted"), "{err}");
        }
    }

    #[test]
    fn certificate_is_not_a_key() {
        let err = load_private_key(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            None,
            "x.pem",
            "--pw",
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("holds no private key"));
    }
}
