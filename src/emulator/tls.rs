//! TLS for the emulator's listeners (HTTPS and MQTT).
//!
//! Service clients and symmetric-key devices send no client certificate;
//! X.509 devices do, and their chain may belong to a group created a second
//! ago. A `WebPkiClientVerifier` with fixed roots would refuse those, so the
//! verifier here asks for a certificate, accepts any chain at the TLS layer
//! and only checks the handshake signature (proof that the peer holds the
//! leaf's key, contract §8.1 and §9). Chain, CN and enrollment checks happen
//! per request in [`super::attest`], where a precise message can be returned.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// Accepts any client chain; verifies only the handshake signature.
#[derive(Debug)]
pub struct AnyChainVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Node/OpenSSL clients send their certificate whatever the hint says (§9).
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 schemes can map to several algorithms: try each.
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        let spki = spki_of(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad_encoding())?;
        for alg in candidates {
            match key.verify_signature(*alg, message, dss.signature()) {
                Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
                Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
                Err(_) => break,
            }
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let spki = spki_of(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The SubjectPublicKeyInfo of `cert`, for checking handshake signatures.
///
/// rustls's certificate-based helpers parse the certificate with webpki,
/// which refuses X.509 v1 certificates (what `openssl x509 -req` makes
/// without an extensions file) and other shapes DPS accepts. Only the key
/// matters at this layer, so take it with x509-parser instead.
fn spki_of(
    cert: &CertificateDer<'_>,
) -> std::result::Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .map_err(|_| bad_encoding())?;
    Ok(SubjectPublicKeyInfoDer::from(
        parsed.public_key().raw.to_vec(),
    ))
}

fn bad_encoding() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
}

/// The crypto provider the emulator uses (aws-lc-rs, installed explicitly).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a server configuration: TLS 1.2 and 1.3, optional client
/// certificates, and the given ALPN protocols (`http/1.1` for HTTPS, none
/// for MQTT, whose SDKs send no ALPN).
///
/// `chain_pem` is the server certificate followed by the emulator CA, so
/// clients that trust only the CA can build the path. The same certificate is
/// served with and without SNI (Node sends none for IP literals, §9).
pub fn server_config(chain_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let certs: Vec<CertificateDer<'static>> =
        crate::cert::read_certificates(chain_pem.as_bytes(), "the server certificate")?
            .into_iter()
            .map(CertificateDer::from)
            .collect();
    let key = crate::keys::load_private_key(key_pem.as_bytes(), None, "the server key", "")?;
    let key = PrivateKeyDer::try_from(crate::keys::pkcs8_der(&key)?)
        .map_err(|_| Error::failed("the server key is not PKCS#8"))?;
    let verifier = Arc::new(AnyChainVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::failed(format!("cannot set TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                Error::failed("the server key does not belong to the server certificate")
            }
            e => Error::failed(format!("cannot use the server certificate: {e}")),
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
