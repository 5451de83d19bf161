//! Reading certificates back: [`CertDetails`] describes one certificate the
//! way DPS and openssl show it, and [`check_chain`] applies DPS's X.509 rules to
//! a device's full chain (dps-protocol.md §8), explaining each failure.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::cert::{self, Thumbprints, hex_colons, hex_upper, parse_der};
use crate::error::{Error, Result};

/// Everything `pki inspect` shows about one certificate.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertDetails {
    /// `CN=…` (RFC 4514 style, as DPS shows `subjectName`).
    pub subject: String,
    /// `CN=…` of the issuer.
    pub issuer: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Serial number, upper-case hex.
    pub serial_number: String,
    /// X.509 version (3 for every certificate pki makes).
    pub version: u32,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    /// Key algorithm and size, e.g. `EC P-256`, `RSA 4096`.
    pub key: String,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage names, openssl spelling.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage names.
    pub extended_key_usage: Vec<String>,
    /// Subject key identifier, upper-case hex with colons.
    pub subject_key_id: Option<String>,
    /// Authority key identifier, upper-case hex with colons.
    pub authority_key_id: Option<String>,
    /// SHA-1 of the DER, upper-case hex (DPS `sha1Thumbprint`, Hub x509 thumbprint).
    pub sha1_thumbprint: String,
    /// SHA-256 of the DER, upper-case hex (DPS `sha256Thumbprint`).
    pub sha256_thumbprint: String,
    /// Issuer equals subject and the signature verifies with its own key.
    pub self_signed: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Describes a PEM or DER key type from a parsed certificate.
fn key_description(x509: &X509Certificate<'_>) -> String {
    let spki = x509.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC P-256".into(),
                Some("1.3.132.0.34") => "EC P-384".into(),
                Some("1.3.132.0.35") => "EC P-521".into(),
                Some("1.3.132.0.10") => "EC secp256k1 (not supported by most TLS stacks)".into(),
                Some(other) => format!("EC {other}"),
                None => "EC".into(),
            }
        }
        Ok(_) | Err(_) => spki.algorithm.algorithm.to_id_string(),
    }
}

impl CertDetails {
    /// Describes a DER certificate.
    pub fn from_der(der: &[u8], what: &str) -> Result<CertDetails> {
        let x509 = parse_der(der, what)?;
        Ok(Self::from_parsed(&x509, der))
    }

    /// Describes an already parsed certificate (`der` is its encoding).
    pub fn from_parsed(x509: &X509Certificate<'_>, der: &[u8]) -> CertDetails {
        let Thumbprints { sha1, sha256 } = Thumbprints::of(der);
        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();
        let days_left = (not_after - OffsetDateTime::now_utc()).whole_days();
        let mut info = CertDetails {
            subject: cert::subject(x509),
            issuer: x509.issuer().to_string(),
            common_name: cert::common_name(x509),
            serial_number: hex_upper(x509.raw_serial())
                .trim_start_matches("00")
                .to_string(),
            version: x509.version().0 + 1,
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
            days_left,
            key: key_description(x509),
            is_ca: false,
            path_len: None,
            key_usage: Vec::new(),
            extended_key_usage: Vec::new(),
            subject_key_id: None,
            authority_key_id: None,
            sha1_thumbprint: sha1,
            sha256_thumbprint: sha256,
            self_signed: x509.subject() == x509.issuer() && x509.verify_signature(None).is_ok(),
        };
        for ext in x509.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    let names = [
                        (ku.digital_signature(), "digitalSignature"),
                        (ku.non_repudiation(), "nonRepudiation"),
                        (ku.key_encipherment(), "keyEncipherment"),
                        (ku.data_encipherment(), "dataEncipherment"),
                        (ku.key_agreement(), "keyAgreement"),
                        (ku.key_cert_sign(), "keyCertSign"),
                        (ku.crl_sign(), "cRLSign"),
                    ];
                    info.key_usage = names
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, n)| n.to_string())
                        .collect();
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let names = [
                        (eku.any, "anyExtendedKeyUsage"),
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                    ];
                    info.extended_key_usage = names
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, n)| n.to_string())
                        .collect();
                    info.extended_key_usage
                        .extend(eku.other.iter().map(|o| o.to_id_string()));
                }
                ParsedExtension::SubjectKeyIdentifier(ski) => {
                    info.subject_key_id = Some(hex_colons(ski.0));
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    info.authority_key_id = aki.key_identifier.as_ref().map(|k| hex_colons(k.0));
                }
                _ => {}
            }
        }
        info
    }

    /// The human-readable block `pki inspect` prints.
    pub fn render(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(", ")
            }
        };
        let expiry = if self.days_left < 0 {
            format!("EXPIRED {} days ago", -self.days_left)
        } else {
            format!("{} days left", self.days_left)
        };
        let bc = match (self.is_ca, self.path_len) {
            (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
            (true, None) => "CA:TRUE".into(),
            (false, _) => "CA:FALSE".into(),
        };
        format!(
            "Subject:           {}\n\
             Issuer:            {}{}\n\
             Serial:            {}\n\
             Validity:          {} to {} ({expiry})\n\
             Key:               {}\n\
             Basic constraints: {bc}\n\
             Key usage:         {}\n\
             Extended usage:    {}\n\
             Subject key id:    {}\n\
             Authority key id:  {}\n\
             SHA-1 thumbprint:  {}\n\
             SHA-256 thumbprint: {}\n",
            self.subject,
            self.issuer,
            if self.self_signed {
                " (self-signed)"
            } else {
                ""
            },
            self.serial_number,
            self.not_before,
            self.not_after,
            self.key,
            list(&self.key_usage),
            list(&self.extended_key_usage),
            opt(&self.subject_key_id),
            opt(&self.authority_key_id),
            self.sha1_thumbprint,
            self.sha256_thumbprint,
        )
    }
}

/// One check of [`check_chain`].
#[derive(Clone, Debug, Serialize)]
pub struct ChainCheck {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, in DPS's terms, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Applies DPS's X.509 rules to a device chain (leaf first) and an optional
/// trusted root. Returns every check, passed or failed.
pub fn check_chain(chain_der: &[Vec<u8>], root_der: Option<&[u8]>) -> Result<Vec<ChainCheck>> {
    let mut out = Vec::new();
    let mut push = |check: String, problem: Option<String>| {
        out.push(ChainCheck {
            check,
            ok: problem.is_none(),
            problem,
        });
    };
    let certs = chain_der
        .iter()
        .enumerate()
        .map(|(i, d)| parse_der(d, &format!("certificate {} of the chain", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let root = root_der
        .map(|d| parse_der(d, "the root certificate"))
        .transpose()?;
    let Some(leaf) = certs.first() else {
        return Err(Error::input("the chain file holds no certificate"));
    };
    let name = |c: &X509Certificate<'_>| c.subject().to_string();

    // The leaf's CN is the registration ID.
    let cn = cert::common_name(leaf);
    push(
        format!(
            "leaf CN is a valid registration ID ({})",
            cn.as_deref().unwrap_or("no CN")
        ),
        match &cn {
            None => Some("the leaf has no CN; DPS uses the CN as the registration ID".into()),
            Some(cn) => crate::regid::check_registration_id(cn)
                .err()
                .map(|e| e.to_string()),
        },
    );
    push(
        "leaf is not a CA".into(),
        leaf.is_ca().then(|| {
            "the first certificate is a CA: DPS says \"Signing certificate info did not match chain elements\" when a device presents a CA as its own; put the device certificate first".to_string()
        }),
    );
    if !leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .is_none_or(|e| e.value.client_auth || e.value.any)
    {
        push(
            "leaf allows TLS client authentication".into(),
            Some("the leaf's extendedKeyUsage lacks clientAuth; TLS stacks refuse it as a client certificate".into()),
        );
    }
    let now = x509_parser::time::ASN1Time::now();
    for c in certs.iter().chain(root.iter()) {
        let v = c.validity();
        push(
            format!("{} is within its validity period", name(c)),
            (!v.is_valid_at(now)).then(|| {
                format!(
                    "valid from {} to {}, which does not include now; DPS refuses expired or not-yet-valid certificates with 401002",
                    v.not_before, v.not_after
                )
            }),
        );
    }
    for pair in certs.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        push(
            format!(
                "{} is issued by the next certificate, {}",
                name(child),
                name(parent)
            ),
            if child.issuer() != parent.subject() {
                Some(format!(
                    "{} is issued by {}, not by {}: the chain is out of order or incomplete; order it leaf → intermediates → root",
                    name(child),
                    child.issuer(),
                    name(parent)
                ))
            } else if child.verify_signature(Some(parent.public_key())).is_err() {
                Some(format!(
                    "the signature on {} does not verify with {}'s key: they come from different chains of the same name; regenerate the device from this CA",
                    name(child),
                    name(parent)
                ))
            } else {
                None
            },
        );
        push(
            format!("{} is a CA", name(parent)),
            (!parent.is_ca()).then(|| {
                format!("{} signs another certificate but is not a CA (basicConstraints CA:TRUE missing)", name(parent))
            }),
        );
    }
    let last = certs.last().unwrap_or(leaf);
    let last_self_signed = last.subject() == last.issuer() && last.verify_signature(None).is_ok();
    match &root {
        Some(root) => {
            let ok = if last.as_raw() == root.as_raw() {
                None
            } else if last.issuer() != root.subject() {
                Some(format!(
                    "the chain ends at {}, issued by {}, not by the given root {}: either a certificate is missing between them (append the intermediate(s) to the chain file, leaf first) or the device belongs to another CA",
                    name(last),
                    last.issuer(),
                    name(root)
                ))
            } else if last.verify_signature(Some(root.public_key())).is_err() {
                Some(format!(
                    "the chain ends at {}, which the given root {} did not sign (same name, different key): this device belongs to another CA; DPS answers 401002 because no enrollment group's certificate is in its chain",
                    name(last),
                    name(root)
                ))
            } else {
                None
            };
            push(format!("chain reaches the root {}", name(root)), ok);
        }
        None if last_self_signed => {
            push(
                format!("chain ends at the self-signed root {}", name(last)),
                None,
            );
        }
        None => push(
            format!("chain ends at {}", name(last)),
            Some(format!(
                "the chain stops at {} without a root; DPS accepts that only if {} or a group certificate in the chain is verified; pass --root to check the last link",
                name(last),
                name(last)
            )),
        ),
    }
    Ok(out)
}
