//! The table of certificate profiles: which extensions each kind of
//! certificate `pki` makes carries. Every certificate goes through
//! [`Profile::apply`], so this file is the one place to read (or change)
//! what a root, an intermediate or a device certificate looks like.
//!
//! The profiles pass `openssl verify -x509_strict`: CAs carry critical
//! basicConstraints with a path length and critical keyUsage, everything
//! carries SKI, and everything but a self-signed root carries AKI.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType,
};

use crate::error::{Error, Result};

/// A certificate's role, as `certs/manifest.json` records it (`root-ca`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A device certificate (CN = registration ID).
    Device,
    /// An IoT Edge device CA.
    EdgeCa,
    /// An intermediate CA.
    IntermediateCa,
    /// The self-signed root CA.
    RootCa,
    /// The emulator's TLS server certificate.
    TlsServer,
    /// A proof-of-possession certificate.
    Verification,
}

impl Role {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::EdgeCa => "edge-ca",
            Role::IntermediateCa => "intermediate-ca",
            Role::RootCa => "root-ca",
            Role::TlsServer => "tls-server",
            Role::Verification => "verification",
        }
    }

    /// Whether certificates of this role sign others.
    pub fn is_ca(self) -> bool {
        matches!(self, Role::EdgeCa | Role::IntermediateCa | Role::RootCa)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Self-signed root CA; `path_len` = number of CAs allowed below it.
    RootCa { path_len: u8 },
    /// Intermediate CA; the last one before devices has `path_len` 0.
    IntermediateCa { path_len: u8 },
    /// IoT Edge device CA (certGen's `create_edge_device_certificate`): CA, path length 0.
    EdgeCa,
    /// A device (DPS X.509 attestation): CN = registration ID, TLS client.
    Device,
    /// A proof-of-possession certificate: CN = verification code.
    Verification,
    /// A TLS server (the emulator's HTTPS endpoint), with these DNS names / IPs.
    TlsServer { names: Vec<String> },
}

impl Profile {
    /// Whether certificates of this profile can sign others.
    pub fn is_ca(&self) -> bool {
        matches!(
            self,
            Profile::RootCa { .. } | Profile::IntermediateCa { .. } | Profile::EdgeCa
        )
    }

    /// The role of certificates made with this profile.
    pub fn role(&self) -> Role {
        match self {
            Profile::RootCa { .. } => Role::RootCa,
            Profile::IntermediateCa { .. } => Role::IntermediateCa,
            Profile::EdgeCa => Role::EdgeCa,
            Profile::Device => Role::Device,
            Profile::Verification => Role::Verification,
            Profile::TlsServer { .. } => Role::TlsServer,
        }
    }

    /// A short name for messages and manifest.json.
    pub fn name(&self) -> &'static str {
        self.role().as_str()
    }

    /// Sets subject, basicConstraints, keyUsage, EKU, SANs and key identifiers.
    ///
    /// `rsa_subject` adds keyEncipherment to leaf certificates with RSA keys
    /// (TLS key transport needs it; ECDSA keys cannot encipher).
    pub fn apply(
        &self,
        params: &mut CertificateParams,
        common_name: &str,
        rsa_subject: bool,
    ) -> Result<()> {
        if common_name.trim().is_empty() {
            return Err(Error::input(
                "the certificate's common name is empty; give a non-empty CN",
            ));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = !matches!(self, Profile::RootCa { .. });
        let ca_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let mut leaf_usages = vec![KeyUsagePurpose::DigitalSignature];
        if rsa_subject {
            leaf_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        match self {
            Profile::RootCa { path_len } | Profile::IntermediateCa { path_len } => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(*path_len));
                params.key_usages = ca_usages;
                params.extended_key_usages = Vec::new();
            }
            Profile::EdgeCa => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = ca_usages;
                params.extended_key_usages = Vec::new();
            }
            Profile::Device | Profile::Verification => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = leaf_usages;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Profile::TlsServer { names } => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = leaf_usages;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names =
                    names
                        .iter()
                        .map(|n| match n.parse::<std::net::IpAddr>() {
                            Ok(ip) => Ok(SanType::IpAddress(ip)),
                            Err(_) if !is_dns_name(n) => Err(Error::input(format!(
                                "`{n}` is not a valid host name (letters, digits, `-` and `.`; `*.` only as the first label)"
                            ))),
                            Err(_) => n.as_str().try_into().map(SanType::DnsName).map_err(|_| {
                                Error::input(format!("`{n}` is not a valid host name"))
                            }),
                        })
                        .collect::<Result<_>>()?;
            }
        }
        Ok(())
    }
}

/// A DNS name for a certificate: labels of letters, digits and `-`, not
/// starting or ending with `-`, at most 63 bytes each; a leading `*` label
/// for wildcards.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
