//! Reading private key files: every format and encryption that openssl,
//! certGen.sh and `pki` write, and, when a file cannot be used, what is
//! wrong with it in words (cut short, damaged, encrypted with a cipher pki
//! does not read, named with the openssl command that re-encrypts it).
//!
//! Formats: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) and SEC1
//! (`EC PRIVATE KEY`), as PEM or DER. Encryption read:
//!
//! - encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`, PEM or DER) with PBES2:
//!   PBKDF2 (HMAC-SHA1 to HMAC-SHA512) or scrypt, then AES-128/192/256-CBC
//!   or DES-EDE3-CBC. That is what `pki`, `openssl pkcs8 -topk8 -v2 …`,
//!   `openssl genpkey -aes256|-des3` and OpenSSL 3's `genrsa -des3` write;
//! - encrypted PKCS#8 with PKCS#12 password-based encryption
//!   (`openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES`, and PBE-SHA1-RC2-40),
//!   decrypted by p12-keystore, which reads those for PFX files anyway;
//! - the traditional `Proc-Type: 4,ENCRYPTED` PEM with AES-128/192/256-CBC
//!   or DES-EDE3-CBC (`openssl rsa -aes256|-des3 -traditional`,
//!   `openssl ec -des3`, OpenSSL 1.x `genrsa`).
//!
//! Any other cipher (Camellia, ARIA, SM4, single DES, RC2, RC4, the PBES1
//! schemes) is named in the error, which gives the command that re-encrypts
//! the key with AES. No message holds the password or any key material.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use md5::{Digest, Md5};
use pkcs8::der::asn1::{ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Reader, SliceReader, Tag, Tagged};
use pkcs8::spki::AlgorithmIdentifierRef;
use rcgen::KeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

use crate::cert::{DerShape, der_well_formed, looks_pem, pem_blocks};
use crate::error::{Error, Result};

/// Reads a private key in any format certGen.sh, openssl or `pki` writes.
///
/// `what` names the file in error messages (its path, so the re-encryption
/// command in a message can be pasted); `password_hint` names the option or
/// variable that supplies the password (for the "how to fix" part).
pub fn load_private_key(
    data: &[u8],
    password: Option<&str>,
    what: &str,
    password_hint: &str,
) -> Result<KeyPair> {
    let file = KeyFile {
        what,
        password_hint,
    };
    if !looks_pem(data) {
        return file.der(data, password);
    }
    let blocks = pem_blocks(data).map_err(|problem| {
        Error::input(format!(
            "{what} is not a valid private key: {problem}; copy the whole file again"
        ))
    })?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| {
            Error::input(format!(
                "{what} holds no private key (found {}); pass the key file, not the certificate",
                blocks
                    .iter()
                    .map(|b| format!("`{}`", b.tag()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    match block.tag() {
        "ENCRYPTED PRIVATE KEY" => file.encrypted_pkcs8(block.contents(), password),
        tag @ ("RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY") => {
            let dek = block.headers().get("DEK-Info");
            let contents = match dek {
                Some(dek) => file.traditional(block.contents(), dek, password)?,
                None => block.contents().to_vec(),
            };
            let der = match tag {
                "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(contents)),
                "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(contents)),
                _ => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(contents)),
            };
            file.key_pair(&der, dek.is_some())
        }
        other => Err(Error::input(format!(
            "{what} holds a `{other}` key, which pki cannot use; convert it with `openssl pkcs8 -topk8`"
        ))),
    }
}

/// The file being read, for messages.
struct KeyFile<'a> {
    what: &'a str,
    password_hint: &'a str,
}

impl KeyFile<'_> {
    fn need_password(&self) -> Error {
        Error::input(format!(
            "{} is encrypted: give its password with {}",
            self.what, self.password_hint
        ))
    }

    fn wrong_password(&self) -> Error {
        // A damaged ciphertext fails exactly as a wrong password does (bad
        // padding, or bytes that are no key), so both are named.
        Error::input(format!(
            "cannot decrypt {}: wrong password, or the file is damaged (set the right one with {})",
            self.what, self.password_hint
        ))
    }

    fn cut_short(&self) -> Error {
        Error::input(format!(
            "{} is cut short: the key in it ends too early; copy the whole file again",
            self.what
        ))
    }

    fn damaged(&self, problem: &str) -> Error {
        Error::input(format!(
            "{} is damaged: {problem}; copy the file again, or export the key again",
            self.what
        ))
    }

    fn unsupported_cipher(&self, cipher: &str) -> Error {
        let file = shell_word(self.what);
        Error::input(format!(
            "{} is encrypted with {cipher}, which pki cannot decrypt; re-encrypt it with AES: `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {file} -out {file}.new` (openssl asks for its password, then a new one) and use {}.new",
            self.what, self.what
        ))
    }

    /// What is wrong with DER bytes that did not parse, from their framing.
    fn unreadable(&self, der: &[u8]) -> Error {
        match DerShape::of(der) {
            DerShape::Truncated => self.cut_short(),
            DerShape::Empty => self.damaged("its key block holds no data"),
            DerShape::NotSequence => self.damaged("its key data is not DER"),
            DerShape::Trailing(n) => self.damaged(&format!("{n} stray bytes follow the key")),
            DerShape::Whole => self.damaged("its DER encoding is broken"),
        }
    }

    /// A key file that is not PEM: DER PKCS#8, PKCS#1, SEC1 or encrypted PKCS#8.
    fn der(&self, data: &[u8], password: Option<&str>) -> Result<KeyPair> {
        if data.is_empty() {
            return Err(Error::input(format!(
                "{} is empty; pass the private key file",
                self.what
            )));
        }
        if let Ok(key) = KeyPair::try_from(data) {
            return Ok(key);
        }
        // `openssl pkcs8 -topk8 -outform DER` (encrypted PKCS#8 as DER).
        if Encryption::of(data).is_some() {
            return self.encrypted_pkcs8(data, password);
        }
        if DerShape::of(data) == DerShape::Truncated {
            return Err(self.cut_short());
        }
        if let Ok(info) = pkcs8::PrivateKeyInfo::from_der(data) {
            return Err(self.unsupported_algorithm(info.algorithm.oid));
        }
        Err(Error::input(format!(
            "{} is not a private key (expected PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY`, `BEGIN EC PRIVATE KEY`, or DER)",
            self.what
        )))
    }

    /// The key pair of plain (or just decrypted) DER.
    fn key_pair(&self, der: &PrivateKeyDer<'_>, decrypted: bool) -> Result<KeyPair> {
        KeyPair::try_from(der).map_err(|_| {
            let bytes = der.secret_der();
            // A wrong password can decrypt to well-padded garbage (1 in
            // 256): for an encrypted key, unusable bytes still mean the password.
            if decrypted {
                return self.wrong_password();
            }
            if DerShape::of(bytes) != DerShape::Whole || !der_well_formed(bytes, 4) {
                return self.unreadable(bytes);
            }
            if let PrivateKeyDer::Pkcs8(_) = der {
                return match pkcs8::PrivateKeyInfo::from_der(bytes) {
                    Ok(info) => self.unsupported_algorithm(info.algorithm.oid),
                    Err(_) => self.damaged("its DER is not a PKCS#8 private key"),
                };
            }
            Error::input(format!(
                "{} is not a supported private key (pki uses RSA and ECDSA P-256/P-384 keys)",
                self.what
            ))
        })
    }

    fn unsupported_algorithm(&self, oid: ObjectIdentifier) -> Error {
        let kind = match oid.to_string().as_str() {
            "1.3.101.113" => "an Ed448 key".to_string(),
            "1.3.101.110" | "1.3.101.111" => "an X25519/X448 key-agreement key".to_string(),
            "1.2.840.10040.4.1" => "a DSA key".to_string(),
            "1.2.840.113549.1.1.10" => "an RSA-PSS key".to_string(),
            "1.2.840.10045.2.1" => "an EC key on a curve other than P-256 and P-384".to_string(),
            "1.2.840.113549.1.1.1" => {
                "an RSA key pki cannot load (smaller than 2048 bits, or damaged)".to_string()
            }
            other => format!("a key of algorithm {other}"),
        };
        Error::input(format!(
            "{} holds {kind}; pki uses RSA keys of 2048 bits or more and ECDSA P-256/P-384 keys",
            self.what
        ))
    }

    /// Encrypted PKCS#8 (PEM `ENCRYPTED PRIVATE KEY` or DER).
    fn encrypted_pkcs8(&self, der: &[u8], password: Option<&str>) -> Result<KeyPair> {
        let Some(enc) = Encryption::of(der) else {
            return Err(self.unreadable(der));
        };
        // Refused before asking for a password the user could not use anyway.
        if let Some(cipher) = enc.unsupported() {
            return Err(self.unsupported_cipher(&cipher));
        }
        let password = password.ok_or_else(|| self.need_password())?;
        let plain = if enc.scheme == PBES2 {
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(der)
                .map_err(|_| self.damaged("its encryption parameters are malformed"))?;
            match info.decrypt(password) {
                Ok(doc) => doc.as_bytes().to_vec(),
                Err(pkcs8::Error::EncryptedPrivateKey(
                    pkcs8::pkcs5::Error::AlgorithmParametersInvalid { .. },
                )) => return Err(self.damaged("its encryption parameters are malformed")),
                Err(pkcs8::Error::EncryptedPrivateKey(
                    pkcs8::pkcs5::Error::UnsupportedAlgorithm { .. },
                )) => {
                    let what = enc
                        .unsupported()
                        .unwrap_or_else(|| "encryption parameters pki does not support".into());
                    return Err(self.unsupported_cipher(&what));
                }
                Err(_) => return Err(self.wrong_password()),
            }
        } else {
            pkcs12_pbe_decrypt(der, password).ok_or_else(|| self.wrong_password())?
        };
        self.key_pair(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain)), true)
    }

    /// Decrypts OpenSSL's traditional PEM encryption (`DEK-Info: CIPHER,IV`),
    /// whose key is EVP_BytesToKey(MD5, password, IV[..8], 1 round).
    fn traditional(&self, data: &[u8], dek_info: &str, password: Option<&str>) -> Result<Vec<u8>> {
        let malformed = || self.damaged("its `DEK-Info:` header is malformed");
        let (cipher, iv_hex) = dek_info.split_once(',').ok_or_else(malformed)?;
        let cipher = cipher.trim();
        let (key_len, block) = match cipher.to_ascii_uppercase().as_str() {
            "AES-128-CBC" => (16, 16),
            "AES-192-CBC" => (24, 16),
            "AES-256-CBC" => (32, 16),
            "DES-EDE3-CBC" => (24, 8),
            _ => {
                return Err(
                    self.unsupported_cipher(&format!("{cipher} (traditional PEM encryption)"))
                );
            }
        };
        let iv = decode_hex(iv_hex.trim())
            .filter(|iv| iv.len() == block)
            .ok_or_else(malformed)?;
        if data.is_empty() || !data.len().is_multiple_of(block) {
            return Err(self.cut_short());
        }
        let password = password.ok_or_else(|| self.need_password())?;
        let mut key = Vec::with_capacity(48);
        let mut prev: Vec<u8> = Vec::new();
        while key.len() < key_len {
            let mut h = Md5::new();
            h.update(&prev);
            h.update(password.as_bytes());
            h.update(&iv[..8]);
            prev = h.finalize().to_vec();
            key.extend_from_slice(&prev);
        }
        key.truncate(key_len);
        let mut buf = data.to_vec();
        fn run<C: BlockDecryptMut + KeyIvInit>(
            key: &[u8],
            iv: &[u8],
            buf: &mut [u8],
        ) -> Option<Vec<u8>> {
            C::new_from_slices(key, iv)
                .ok()?
                .decrypt_padded_mut::<Pkcs7>(buf)
                .ok()
                .map(<[u8]>::to_vec)
        }
        let out = match (key_len, block) {
            (24, 8) => run::<cbc::Decryptor<des::TdesEde3>>(&key, &iv, &mut buf),
            (16, _) => run::<cbc::Decryptor<aes::Aes128>>(&key, &iv, &mut buf),
            (24, _) => run::<cbc::Decryptor<aes::Aes192>>(&key, &iv, &mut buf),
            _ => run::<cbc::Decryptor<aes::Aes256>>(&key, &iv, &mut buf),
        };
        // Bad padding: almost always a wrong password.
        out.ok_or_else(|| self.wrong_password())
    }
}

/// `s` as one shell word (quoted when it holds anything but safe characters).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-+:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The OIDs (dotted) the readers here look for.
const PBES2: &str = "1.2.840.113549.1.5.13";
const PBKDF2: &str = "1.2.840.113549.1.5.12";
const SCRYPT: &str = "1.3.6.1.4.1.11591.4.11";
/// PBKDF2's PRF when its parameters name none (RFC 8018).
const HMAC_SHA1: &str = "1.2.840.113549.2.7";
/// The PBES2 ciphers pkcs8 decrypts: AES-128/192/256-CBC, DES-EDE3-CBC.
const PBES2_CIPHERS: [&str; 4] = [
    "2.16.840.1.101.3.4.1.2",
    "2.16.840.1.101.3.4.1.22",
    "2.16.840.1.101.3.4.1.42",
    "1.2.840.113549.3.7",
];
/// The PBKDF2 PRFs pkcs8 computes: HMAC with SHA-1, -224, -256, -384, -512.
const PBKDF2_PRFS: [&str; 5] = [
    HMAC_SHA1,
    "1.2.840.113549.2.8",
    "1.2.840.113549.2.9",
    "1.2.840.113549.2.10",
    "1.2.840.113549.2.11",
];
/// The PKCS#12 PBE schemes p12-keystore decrypts: pbeWithSHAAnd3-KeyTripleDES-CBC
/// and pbeWithSHAAnd40BitRC2-CBC.
const PKCS12_PBES: [&str; 2] = ["1.2.840.113549.1.12.1.3", "1.2.840.113549.1.12.1.6"];

/// What an encrypted PKCS#8 key says about its encryption (dotted OIDs),
/// read without the pkcs5 crate, which refuses to parse what it does not
/// support and so could not name it.
struct Encryption {
    /// PBES2, a PKCS#12 PBE or a PBES1 scheme.
    scheme: String,
    /// PBES2 only: the key derivation function, its PRF (PBKDF2 only) and the cipher.
    kdf: Option<String>,
    prf: Option<String>,
    cipher: Option<String>,
}

impl Encryption {
    /// Reads `EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier,
    /// OCTET STRING }`; `None` unless `der` is exactly that.
    fn of(der: &[u8]) -> Option<Encryption> {
        let mut r = SliceReader::new(der).ok()?;
        let alg = r
            .sequence(|r| {
                let alg: AlgorithmIdentifierRef<'_> = r.decode()?;
                let _data: OctetStringRef<'_> = r.decode()?;
                Ok(alg)
            })
            .ok()?;
        if !r.is_finished() {
            return None;
        }
        let mut enc = Encryption {
            scheme: alg.oid.to_string(),
            kdf: None,
            prf: None,
            cipher: None,
        };
        if enc.scheme != PBES2 {
            return Some(enc);
        }
        // PBES2-params ::= SEQUENCE { keyDerivationFunc, encryptionScheme }
        let params = alg.parameters.filter(|p| p.tag() == Tag::Sequence)?;
        let mut p = SliceReader::new(params.value()).ok()?;
        let kdf: AlgorithmIdentifierRef<'_> = p.decode().ok()?;
        let cipher: AlgorithmIdentifierRef<'_> = p.decode().ok()?;
        enc.kdf = Some(kdf.oid.to_string());
        enc.cipher = Some(cipher.oid.to_string());
        if enc.kdf.as_deref() == Some(PBKDF2) {
            // PBKDF2-params ::= SEQUENCE { salt, iterationCount,
            //   keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT hmacWithSHA1 }
            let kp = kdf.parameters.filter(|p| p.tag() == Tag::Sequence)?;
            let mut k = SliceReader::new(kp.value()).ok()?;
            k.tlv_bytes().ok()?;
            k.tlv_bytes().ok()?;
            let mut prf = HMAC_SHA1.to_string();
            while !k.is_finished() {
                if k.peek_tag().ok()? == Tag::Sequence {
                    let a: AlgorithmIdentifierRef<'_> = k.decode().ok()?;
                    prf = a.oid.to_string();
                } else {
                    k.tlv_bytes().ok()?;
                }
            }
            enc.prf = Some(prf);
        }
        Some(enc)
    }

    /// The encryption in openssl's names, the part pki cannot decrypt
    /// first (`camellia-256-cbc (PBES2, PBKDF2 with hmacWithSHA256)`,
    /// `PBE-SHA1-RC4-128 (PKCS#12 …)`); `None` when pki can decrypt it.
    fn unsupported(&self) -> Option<String> {
        let name = |o: &Option<String>| o.as_deref().map(name_of).unwrap_or_default();
        let within =
            |o: &Option<String>, set: &[&str]| o.as_deref().is_some_and(|o| set.contains(&o));
        if self.scheme != PBES2 {
            if PKCS12_PBES.contains(&self.scheme.as_str()) {
                return None;
            }
            let family = if self.scheme.starts_with("1.2.840.113549.1.12.1.") {
                "PKCS#12 password-based encryption"
            } else {
                "PKCS#5 v1.5 password-based encryption"
            };
            return Some(format!("{} ({family})", name_of(&self.scheme)));
        }
        let kdf = match self.kdf.as_deref() {
            Some(PBKDF2) => format!("PBKDF2 with {}", name(&self.prf)),
            _ => name(&self.kdf),
        };
        if !within(&self.cipher, &PBES2_CIPHERS) {
            return Some(format!("{} (PBES2, {kdf})", name(&self.cipher)));
        }
        let kdf_readable = match self.kdf.as_deref() {
            Some(PBKDF2) => within(&self.prf, &PBKDF2_PRFS),
            Some(SCRYPT) => true,
            _ => false,
        };
        (!kdf_readable).then(|| format!("{kdf} (PBES2, {})", name(&self.cipher)))
    }
}

/// openssl's name for an encryption OID (dotted), or the OID.
fn name_of(oid: &str) -> String {
    let name = match oid {
        "2.16.840.1.101.3.4.1.2" => "aes-128-cbc",
        "2.16.840.1.101.3.4.1.22" => "aes-192-cbc",
        "2.16.840.1.101.3.4.1.42" => "aes-256-cbc",
        "2.16.840.1.101.3.4.1.6" => "aes-128-gcm",
        "2.16.840.1.101.3.4.1.26" => "aes-192-gcm",
        "2.16.840.1.101.3.4.1.46" => "aes-256-gcm",
        "1.2.840.113549.3.7" => "des-ede3-cbc",
        "1.3.14.3.2.7" => "des-cbc",
        "1.2.840.113549.3.2" => "rc2-cbc",
        "1.2.840.113549.3.9" => "rc5-cbc",
        "1.2.392.200011.61.1.1.1.2" => "camellia-128-cbc",
        "1.2.392.200011.61.1.1.1.3" => "camellia-192-cbc",
        "1.2.392.200011.61.1.1.1.4" => "camellia-256-cbc",
        "1.2.410.200046.1.1.2" => "aria-128-cbc",
        "1.2.410.200046.1.1.7" => "aria-192-cbc",
        "1.2.410.200046.1.1.12" => "aria-256-cbc",
        "1.2.156.10197.1.104.2" => "sm4-cbc",
        "1.2.410.200004.1.4" => "seed-cbc",
        "1.3.6.1.4.1.188.7.1.1.2" => "idea-cbc",
        "1.3.6.1.4.1.3029.1.2" => "bf-cbc",
        "1.2.840.113533.7.66.10" => "cast5-cbc",
        PBKDF2 => "PBKDF2",
        SCRYPT => "scrypt",
        "1.2.840.113549.2.7" => "hmacWithSHA1",
        "1.2.840.113549.2.8" => "hmacWithSHA224",
        "1.2.840.113549.2.9" => "hmacWithSHA256",
        "1.2.840.113549.2.10" => "hmacWithSHA384",
        "1.2.840.113549.2.11" => "hmacWithSHA512",
        "1.2.840.113549.2.12" => "hmacWithSHA512-224",
        "1.2.840.113549.2.13" => "hmacWithSHA512-256",
        "1.2.840.113549.2.5" => "hmacWithMD5",
        "1.2.156.10197.1.401.2" => "hmacWithSM3",
        "1.2.840.113549.1.12.1.1" => "PBE-SHA1-RC4-128",
        "1.2.840.113549.1.12.1.2" => "PBE-SHA1-RC4-40",
        "1.2.840.113549.1.12.1.3" => "PBE-SHA1-3DES",
        "1.2.840.113549.1.12.1.4" => "PBE-SHA1-2DES",
        "1.2.840.113549.1.12.1.5" => "PBE-SHA1-RC2-128",
        "1.2.840.113549.1.12.1.6" => "PBE-SHA1-RC2-40",
        "1.2.840.113549.1.5.1" => "PBE-MD2-DES",
        "1.2.840.113549.1.5.3" => "PBE-MD5-DES",
        "1.2.840.113549.1.5.4" => "PBE-MD2-RC2-64",
        "1.2.840.113549.1.5.6" => "PBE-MD5-RC2-64",
        "1.2.840.113549.1.5.10" => "PBE-SHA1-DES",
        "1.2.840.113549.1.5.11" => "PBE-SHA1-RC2-64",
        other => return format!("an algorithm pki does not know (OID {other})"),
    };
    name.to_string()
}

/// Decrypts an `EncryptedPrivateKeyInfo` under a PKCS#12 PBE scheme with
/// p12-keystore, which decrypts those only inside a PFX: the key goes into
/// a minimal one (no MAC, one pkcs8ShroudedKeyBag, RFC 7292), encoded with
/// yasna, so no cryptography and no DER is written by hand here. `None`:
/// wrong password (or damage).
fn pkcs12_pbe_decrypt(encrypted: &[u8], password: &str) -> Option<Vec<u8>> {
    use yasna::models::ObjectIdentifier;
    /// `ContentInfo { id-data, [0] EXPLICIT OCTET STRING content }`.
    fn content_info(w: yasna::DERWriter<'_>, content: &[u8]) {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(&[1, 2, 840, 113549, 1, 7, 1]));
            w.next()
                .write_tagged(yasna::Tag::context(0), |w| w.write_bytes(content));
        });
    }
    let shrouded_key_bag = ObjectIdentifier::from_slice(&[1, 2, 840, 113549, 1, 12, 10, 1, 2]);
    let safe_contents = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&shrouded_key_bag);
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_der(encrypted));
            });
        });
    });
    let auth_safe =
        yasna::construct_der(|w| w.write_sequence(|w| content_info(w.next(), &safe_contents)));
    let pfx = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(3);
            content_info(w.next(), &auth_safe);
        });
    });
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, password).ok()?;
    Some(archive.keys.first()?.key.as_der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("private/k.pem"), "private/k.pem");
        assert_eq!(shell_word("my key.pem"), "'my key.pem'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn damaged_keys_are_described() {
        let key = crate::keys::KeyType::EcP256.generate().unwrap();
        let der = key.serialized_der();
        let pem = crate::keys::pem_lf("PRIVATE KEY", der);
        let e = |data: &[u8]| load_private_key(data, None, "k.pem", "--pw").unwrap_err();
        let cut = e(&pem.as_bytes()[..pem.len() / 2]).to_string();
        assert!(cut.contains("`PRIVATE KEY` block has no END line"), "{cut}");
        let half = e(crate::keys::pem_lf("PRIVATE KEY", &der[..der.len() / 2]).as_bytes());
        assert!(half.to_string().contains("cut short"), "{half}");
        assert_eq!(half.exit_code(), 2);
        assert!(e(&der[..20]).to_string().contains("cut short"));
        let mut flipped = der.to_vec();
        flipped[0] = 0x04;
        let d = e(crate::keys::pem_lf("PRIVATE KEY", &flipped).as_bytes()).to_string();
        assert!(d.contains("damaged"), "{d}");
        let enc = crate::keys::private_key_pem(&key, Some("pw")).unwrap();
        let b64: String = enc.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let cut = crate::keys::pem_lf("ENCRYPTED PRIVATE KEY", &raw[..raw.len() - 30]);
        let c = load_private_key(cut.as_bytes(), Some("pw"), "k.pem", "--pw").unwrap_err();
        assert!(c.to_string().contains("cut short"), "{c}");
    }
}
