//! Reading certificates: the one place a PEM or DER bundle is decoded and a
//! certificate's common name, CA flag, subject and thumbprints are read.
//! It also holds what every reader of PEM and DER shares (certificates,
//! keys, CSRs): PEM text and DER framing problems said in words
//! ([`pem_blocks`], [`DerShape`], [`der_problem`]).
//!
//! Thumbprints are in DPS's format: upper-case hex of the SHA-1 or SHA-256
//! of the DER, no separators (`sha1Thumbprint`, `sha256Thumbprint`, the
//! ARM `thumbprint`). Everything else that shows a certificate (`inspect`,
//! the manifest, `enroll`, `ca`, `register`, the emulator) goes through here.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::error::{Error, Result};

/// Upper-case hex, no separators (DPS's thumbprint spelling).
pub fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Upper-case hex with colons (openssl's key identifier spelling).
pub fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-1 and SHA-256 thumbprints of a DER certificate, as DPS shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbprints {
    /// Upper-case hex SHA-1 (DPS `sha1Thumbprint`, ARM `thumbprint`).
    pub sha1: String,
    /// Upper-case hex SHA-256 (DPS `sha256Thumbprint`).
    pub sha256: String,
}

impl Thumbprints {
    /// Thumbprints of `der`.
    pub fn of(der: &[u8]) -> Thumbprints {
        Thumbprints {
            sha1: sha1_thumbprint(der),
            sha256: sha256_thumbprint(der),
        }
    }

    /// Whether `thumbprint` (either hash, any case) names this certificate.
    pub fn matches(&self, thumbprint: &str) -> bool {
        self.sha1.eq_ignore_ascii_case(thumbprint) || self.sha256.eq_ignore_ascii_case(thumbprint)
    }
}

/// Upper-case hex SHA-1 of `der`.
pub fn sha1_thumbprint(der: &[u8]) -> String {
    hex_upper(digest(&SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

/// Upper-case hex SHA-256 of `der`.
pub fn sha256_thumbprint(der: &[u8]) -> String {
    hex_upper(&sha256(der))
}

/// Raw SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parses one DER certificate; `what` names it in errors.
pub fn parse_der<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| {
            Error::input(format!(
                "{what} is not a valid X.509 certificate: {}; check that the file holds a certificate (PEM `BEGIN CERTIFICATE` or DER) and was copied whole",
                der_problem(&e)
            ))
        })
}

/// x509-parser's errors print like Rust debug output (`NomError(Eof)`,
/// `Der(UnexpectedTag { … })`); this says what they mean. Also for CSRs
/// and the certificates the emulator receives, which x509-parser reads too.
pub fn der_problem(e: &x509_parser::nom::Err<x509_parser::error::X509Error>) -> String {
    use x509_parser::error::X509Error;
    use x509_parser::nom::Err;
    match e {
        Err::Incomplete(_) => "it ends too early (truncated)".into(),
        Err::Error(x) | Err::Failure(x) => match x {
            X509Error::NomError(x509_parser::nom::error::ErrorKind::Eof) => {
                "it ends too early (truncated)".into()
            }
            X509Error::NomError(_) | X509Error::Der(_) | X509Error::Generic => {
                "its DER encoding is damaged".into()
            }
            // The other variants already read as plain words ("invalid date").
            other => other.to_string(),
        },
    }
}

/// The subject common name of a parsed certificate, if it has one.
pub fn common_name(x509: &X509Certificate<'_>) -> Option<String> {
    x509.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Whether basicConstraints says CA:TRUE.
pub fn is_ca(x509: &X509Certificate<'_>) -> bool {
    x509.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
}

/// The subject as RFC 4514-style text (`CN=…`), as `pki inspect` shows it.
pub fn subject(x509: &X509Certificate<'_>) -> String {
    x509.subject().to_string()
}

/// A distinguished name the way .NET (and so DPS) prints it: most specific
/// RDN first, `, ` between them (contract §4.5, inferred).
pub fn dn_string(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(a.attr_type(), registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|_| format!("#{}", hex_upper(a.attr_value().data)));
                format!("{key}={value}")
            })
            .collect();
        parts.push(attrs.join(" + "));
    }
    parts.reverse();
    parts.join(", ")
}

/// Whether `data` looks like PEM text (has a `-----BEGIN` line).
pub fn looks_pem(data: &[u8]) -> bool {
    data.windows(10).any(|w| w == b"-----BEGIN")
}

/// Every PEM block of `data`, or what is wrong with its PEM text, in words
/// (`its `PRIVATE KEY` block has no END line: the file is cut short`), for
/// the caller to prefix with the file's name and follow with the fix. The
/// words never hold a whole armour line (`-----END … KEY-----`), which
/// would read as a leaked key.
///
/// The `pem` crate silently drops a block that has no END line (a file cut
/// short reads as "no certificate found") and prints its other errors in
/// its own terms (`malformedframing`, `Invalid symbol 33, offset 0.`), so
/// every reader of PEM (certificates, keys, CSRs, the emulator's files)
/// goes through here instead.
pub fn pem_blocks(data: &[u8]) -> std::result::Result<Vec<pem::Pem>, String> {
    let blocks = pem::parse_many(data).map_err(|e| match e {
        pem::PemError::MismatchedTags(begin, end) => format!(
            "its `BEGIN {begin}` line is closed by an `END {end}` line: a block was cut short or two were mixed up"
        ),
        pem::PemError::InvalidData(_) => {
            "the base64 text between its BEGIN and END lines is damaged (a character was changed, added or removed)".to_string()
        }
        pem::PemError::InvalidHeader(_) => {
            "a header line of its PEM block (such as `DEK-Info:`) is malformed".to_string()
        }
        pem::PemError::NotUtf8(_) => "its PEM block is not plain text".to_string(),
        _ => "its `-----BEGIN`/`-----END` lines are broken".to_string(),
    })?;
    // Each BEGIN line starts a block; one more BEGIN than blocks is a block
    // whose END line is missing: the file was cut short.
    let begins: Vec<&[u8]> = data
        .windows(11)
        .enumerate()
        .filter(|(_, w)| *w == b"-----BEGIN ")
        .map(|(i, _)| &data[i + 11..])
        .collect();
    if let Some(rest) = begins.get(blocks.len()) {
        let label = rest
            .split(|&b| b == b'-' || b == b'\n')
            .next()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        return Err(format!(
            "its `{label}` block has no END line: the file is cut short"
        ));
    }
    Ok(blocks)
}

/// How a DER value's outer tag and length fit the bytes around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DerShape {
    /// No bytes at all.
    Empty,
    /// Not a DER SEQUENCE (every certificate, key and CSR is one).
    NotSequence,
    /// A SEQUENCE whose length runs past the end of the data: cut short.
    Truncated,
    /// A whole SEQUENCE followed by this many more bytes.
    Trailing(usize),
    /// Exactly one SEQUENCE.
    Whole,
}

impl DerShape {
    /// The shape of `der`, from its first tag and length only.
    pub fn of(der: &[u8]) -> DerShape {
        if der.is_empty() {
            return DerShape::Empty;
        }
        if der[0] != 0x30 {
            return DerShape::NotSequence;
        }
        match tlv_header(der) {
            Header::Incomplete => DerShape::Truncated,
            Header::Invalid => DerShape::NotSequence,
            Header::Tlv { header, len } => match (der.len() - header).cmp(&len) {
                std::cmp::Ordering::Less => DerShape::Truncated,
                std::cmp::Ordering::Greater => DerShape::Trailing(der.len() - header - len),
                std::cmp::Ordering::Equal => DerShape::Whole,
            },
        }
    }
}

/// The start of a DER TLV.
enum Header {
    /// The bytes end inside the tag or length.
    Incomplete,
    /// A high tag number or an indefinite or over-long length: not DER
    /// any certificate, key or CSR uses.
    Invalid,
    /// Header length and value length.
    Tlv { header: usize, len: usize },
}

fn tlv_header(der: &[u8]) -> Header {
    use pkcs8::der::{Decode as _, ErrorKind, Reader as _, SliceReader};
    let Ok(mut reader) = SliceReader::new(der) else {
        return Header::Invalid;
    };
    match pkcs8::der::Header::decode(&mut reader) {
        Ok(h) => match (
            usize::try_from(reader.position()),
            usize::try_from(h.length),
        ) {
            (Ok(header), Ok(len)) => Header::Tlv { header, len },
            _ => Header::Invalid,
        },
        Err(e) if matches!(e.kind(), ErrorKind::Incomplete { .. }) => Header::Incomplete,
        Err(_) => Header::Invalid,
    }
}

/// Whether `der` is a sequence of complete DER TLVs whose constructed
/// values (SEQUENCE, SET, context tags) are complete TLVs in turn, down to
/// `depth` levels: a damaged byte inside a key or CSR almost always breaks
/// this, while an intact value the parser refuses is unsupported, not damaged.
pub fn der_well_formed(mut der: &[u8], depth: u8) -> bool {
    while !der.is_empty() {
        let Header::Tlv { header, len } = tlv_header(der) else {
            return false;
        };
        let Some(value) = der.get(header..header + len) else {
            return false;
        };
        if der[0] & 0x20 != 0 && depth > 0 && !der_well_formed(value, depth - 1) {
            return false;
        }
        der = &der[header + len..];
    }
    true
}

/// What a file holds: its certificates (DER, in file order) and whether it
/// also holds a private key.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// Every certificate, in file order.
    pub certs: Vec<Vec<u8>>,
    /// The labels of the PEM blocks that are not certificates.
    pub other_labels: Vec<String>,
}

impl Bundle {
    /// Whether a PEM block of the file holds a private key.
    pub fn has_private_key(&self) -> bool {
        self.other_labels.iter().any(|l| l.contains("PRIVATE KEY"))
    }
}

/// Reads a PEM bundle (every `CERTIFICATE` block) or a single DER
/// certificate, checking that each certificate parses. Refuses empty input
/// and input that is neither; an empty `certs` is left to the caller (so it
/// can say what to pass instead).
pub fn read_bundle(data: &[u8], what: &str) -> Result<Bundle> {
    if looks_pem(data) {
        let blocks = pem_blocks(data).map_err(|problem| {
            Error::input(format!(
                "{what} is not valid PEM: {problem}; copy the whole file again"
            ))
        })?;
        let mut bundle = Bundle::default();
        for b in blocks {
            if b.tag() == "CERTIFICATE" || b.tag() == "TRUSTED CERTIFICATE" {
                bundle.certs.push(b.into_contents());
            } else {
                bundle.other_labels.push(b.tag().to_string());
            }
        }
        for (i, der) in bundle.certs.iter().enumerate() {
            parse_der(der, &format!("certificate {} in {what}", i + 1))?;
        }
        return Ok(bundle);
    }
    if data.is_empty() {
        return Err(Error::input(format!(
            "{what} is empty; pass a PEM or DER certificate file"
        )));
    }
    parse_der(data, what).map_err(|_| {
        if DerShape::of(data) == DerShape::Truncated {
            return Error::input(format!(
                "{what} is cut short: as DER it ends too early; copy the whole file again"
            ));
        }
        Error::input(format!(
            "{what} is neither PEM nor a DER certificate; pass a `.cert.pem` or `.cer` file"
        ))
    })?;
    Ok(Bundle {
        certs: vec![data.to_vec()],
        other_labels: Vec::new(),
    })
}

/// Every certificate in a PEM bundle, or the single certificate of a DER file.
///
/// Refuses input with no certificate, naming what was found instead.
pub fn read_certificates(data: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let bundle = read_bundle(data, what)?;
    if bundle.certs.is_empty() {
        let found: Vec<_> = bundle
            .other_labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect();
        return Err(Error::input(format!(
            "{what} holds no certificate (found {}); pass a `.cert.pem` file",
            if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            }
        )));
    }
    Ok(bundle.certs)
}

/// Refuses a device chain (`certs`, in file order, read from `what`) whose
/// first certificate is a CA. A chain file in the wrong order (intermediate
/// first) used to fail later as "the registration ID `… CA` is invalid",
/// since the first certificate's CN is taken as the device's.
pub fn require_device_first(certs: &[Vec<u8>], what: &str) -> Result<()> {
    let Some(first) = certs.first() else {
        return Ok(());
    };
    let leaf = parse_der(first, what)?;
    if !is_ca(&leaf) {
        return Ok(());
    }
    let device = certs.iter().enumerate().skip(1).find_map(|(i, der)| {
        let x = X509Certificate::from_der(der).ok()?.1;
        (!is_ca(&x)).then(|| (i + 1, subject(&x)))
    });
    let found = match (certs.len(), device) {
        (1, _) => "it holds only that CA: pass the device's certificate or its full chain".to_string(),
        (_, Some((n, subject))) => format!(
            "certificate {n} ({subject}) is: put it first, then its issuers (intermediate, then root), as `<id>-full-chain.cert.pem` does"
        ),
        (_, None) => "no certificate in it is a device's: pass the device's full chain (`<id>-full-chain.cert.pem`)".to_string(),
    };
    Err(Error::input(format!(
        "the first certificate in {what} is a CA ({}), not the device's; {found}",
        subject(&leaf)
    )))
}

/// The first certificate of a file (see [`read_certificates`]).
pub fn read_first(data: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut certs = read_certificates(data, what)?;
    Ok(certs.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::issue;
    use crate::keys::KeyType;
    use crate::profile::Profile;

    #[test]
    fn reads_pem_and_der_and_describes() {
        let key = KeyType::EcP256.generate().unwrap();
        let root = issue(
            &Profile::RootCa { path_len: 0 },
            "root",
            &crate::validity::Validity::days(2),
            &key,
            None,
        )
        .unwrap();
        let two = format!("{}{}", root.pem, root.pem);
        assert_eq!(read_certificates(two.as_bytes(), "x").unwrap().len(), 2);
        assert_eq!(read_first(&root.der, "x").unwrap(), root.der);
        let x = parse_der(&root.der, "x").unwrap();
        assert!(is_ca(&x));
        assert_eq!(common_name(&x).as_deref(), Some("root"));
        assert_eq!(subject(&x), "CN=root");
        assert_eq!(dn_string(x.subject()), "CN=root");
        let t = Thumbprints::of(&root.der);
        assert_eq!(t.sha1.len(), 40);
        assert_eq!(t.sha256.len(), 64);
        assert!(
            t.sha1
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert!(t.matches(&t.sha256.to_ascii_lowercase()));
        let e = read_certificates(b"", "x").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = read_certificates(
            b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`PRIVATE KEY`"), "{e}");
    }
}
