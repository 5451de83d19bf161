//! `pki register`: the device side of DPS over HTTPS or MQTT, like
//! `az iot device registration create`. An X.509 device authenticates with
//! its certificate chain in the TLS handshake (the registration ID defaults
//! to the leaf's CN); a symmetric-key device with a SAS token signed with its
//! key, given or derived from its group's key (`--symmetric-key`, `--group-key`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::args::{NetArgs, block_on, warn};
use crate::cert;
use crate::csr::Csr;
use crate::dps::client::{DeviceClient, Registration};
use crate::dps::http::ClientIdentity;
use crate::dps::mqtt::{Binding, MqttDevice};
use crate::dps::vocab::RegistrationStatus;
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, ensure_dir};
use crate::keys::{KeyType, private_key_pem};
use crate::regid::RegistrationId;

/// DPS's global device endpoint.
const GLOBAL_HOST: &str = "global.azure-devices-provisioning.net";

/// Register a device with DPS using its X.509 certificate chain or its symmetric key.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  pki register --id-scope 0ne00000001 \\\n    \
--cert certs/device-0001-full-chain.cert.pem --key private/device-0001.key.pem \\\n    \
--host localhost:8443 --ca-file dps-emulator/ca.pem\n  \
pki register --id-scope 0ne00000001 --registration-id sensor-17 \\\n    \
--group-key \"$GROUP_KEY\" --host localhost:8443 --ca-file dps-emulator/ca.pem\n  \
PKI_DEVICE_KEY=… pki register --id-scope 0ne00000001 \\\n    \
--registration-id sensor-17 --symmetric-key\n\
Certificate issuance (the enrollment has a certificate policy): a new P-384 key and CSR, then\n\
the issued chain in ./certs/<id>.issued*.cert.pem and its key in ./private:\n  \
pki register --id-scope 0ne00000001 --cert certs/device-0001-full-chain.cert.pem \\\n    \
--key private/device-0001.key.pem --csr auto --host localhost:8443 --ca-file dps-emulator/ca.pem"
)]
pub struct RegisterArgs {
    /// The DPS ID scope (e.g. 0ne00000001).
    #[arg(long, value_name = "SCOPE")]
    id_scope: String,
    /// The device's certificate chain, leaf first (…-full-chain.cert.pem).
    #[arg(long, value_name = "FULLCHAIN", required_unless_present_any = ["symmetric_key", "group_key"], requires = "key")]
    cert: Option<PathBuf>,
    /// The device's private key.
    #[arg(long, value_name = "KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Symmetric-key device: its key (base64); with no value (or `-`), read from PKI_DEVICE_KEY.
    #[arg(long, value_name = "BASE64", num_args = 0..=1, default_missing_value = "-", conflicts_with_all = ["cert", "group_key"], requires = "registration_id")]
    symmetric_key: Option<String>,
    /// Symmetric-key group device: the group's key (base64), from which the device's key is
    /// derived; with no value (or `-`), read from PKI_GROUP_KEY.
    #[arg(long, value_name = "BASE64", num_args = 0..=1, default_missing_value = "-", conflicts_with = "cert", requires = "registration_id")]
    group_key: Option<String>,
    /// Password of an encrypted --key.
    #[arg(
        long,
        env = "PKI_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    key_password: Option<String>,
    /// DPS device endpoint, HOST or HOST:PORT.
    #[arg(long, default_value = GLOBAL_HOST, value_name = "HOST[:PORT]")]
    host: String,
    /// Registration ID (default: the leaf certificate's CN, which DPS requires it to equal).
    #[arg(long, value_name = "ID")]
    registration_id: Option<String>,
    /// Custom payload (JSON) passed to a custom-allocation webhook.
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Give up if DPS has not finished within this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Print the whole registrationState as JSON.
    #[arg(long)]
    json: bool,
    /// Device transport: https (port 443 unless --host names one), mqtt (MQTT
    /// 3.1.1 over TLS, 8883) or mqtt-ws (MQTT over WebSockets, 443). The
    /// default stays https, because --host's port is the HTTPS port in
    /// existing scripts (the emulator's 8443); the MQTT SDKs' default is mqtt.
    #[arg(long, value_enum, default_value_t = Transport::Https)]
    transport: Transport,
    /// Ask DPS to issue an operational certificate: `auto` makes a P-384 key and CSR for the
    /// registration ID; FILE sends that CSR (PEM or DER; its key stays where it is).
    #[arg(long, value_name = "auto|FILE")]
    csr: Option<String>,
    /// With --csr: directory for certs/<id>.issued.cert.pem, certs/<id>.issued-full-chain.cert.pem
    /// and (with auto) private/<id>.issued.key.pem.
    #[arg(long, value_name = "DIR", default_value = ".", requires = "csr")]
    out: PathBuf,
    /// With --csr: replace existing issued files.
    #[arg(long, requires = "csr")]
    force: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// How `pki register` talks to DPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// HTTPS (the REST device API).
    Https,
    /// MQTT 3.1.1 over TLS (port 8883 by default).
    Mqtt,
    /// MQTT over WebSockets at /$iothub/websocket (port 443 by default).
    MqttWs,
}

pub fn run(a: RegisterArgs) -> Result<()> {
    if a.id_scope.trim().is_empty() || a.id_scope.contains('/') {
        return Err(Error::input(
            "--id-scope is not an ID scope (e.g. 0ne00000001; see the DPS overview page)",
        ));
    }
    let payload = a
        .payload
        .as_deref()
        .map(|p| {
            serde_json::from_str::<Value>(p)
                .map_err(|e| Error::input(format!("--payload is not valid JSON: {e}")))
        })
        .transpose()?;
    let (credential, reg_id) = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => x509_credential(&a, cert, key)?,
        _ => symmetric_credential(&a)?,
    };
    let json = a.json;
    let progress = |s: &str| {
        if !json {
            eprintln!("{reg_id}: {s}…");
        }
    };
    let deadline = Duration::from_secs(a.timeout);
    let csr_request = match a.csr.as_deref() {
        None => None,
        Some(c) => Some(prepare_csr(c, &reg_id, &a.out, a.force)?),
    };
    let csr_b64 = csr_request.as_ref().map(|c| c.csr.base64_der());
    let result = match (a.transport, credential) {
        (Transport::Https, Credential::X509 { chain, key_pkcs8 }) => {
            // reqwest wants the key and the chain in one PEM buffer.
            let mut pem = crate::keys::pem_lf("PRIVATE KEY", &key_pkcs8).into_bytes();
            for der in &chain {
                pem.extend_from_slice(crate::keys::pem_lf("CERTIFICATE", der).as_bytes());
            }
            let client = DeviceClient::new(&a.host, ClientIdentity { pem }, a.net.options())?;
            block_on(client.register_csr(
                &a.id_scope,
                &reg_id,
                payload.as_ref(),
                csr_b64.as_deref(),
                deadline,
                &progress,
            ))??
        }
        (Transport::Https, Credential::Symmetric { device_key }) => {
            let client = DeviceClient::with_symmetric_key(&a.host, &device_key, a.net.options())?;
            block_on(client.register_csr(
                &a.id_scope,
                &reg_id,
                payload.as_ref(),
                csr_b64.as_deref(),
                deadline,
                &progress,
            ))??
        }
        (Transport::Mqtt | Transport::MqttWs, credential) => {
            let binding = if a.transport == Transport::Mqtt {
                Binding::Tls
            } else {
                Binding::WebSocket
            };
            let opts = a.net.options();
            let device = match credential {
                Credential::X509 { chain, key_pkcs8 } => {
                    let der_chain = chain
                        .into_iter()
                        .map(rustls::pki_types::CertificateDer::from)
                        .collect();
                    let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pkcs8.into());
                    MqttDevice::new(
                        &a.host,
                        binding,
                        opts.ca_file.as_deref(),
                        der_chain,
                        der_key,
                        opts.timeout,
                    )?
                }
                Credential::Symmetric { device_key } => MqttDevice::with_symmetric_key(
                    &a.host,
                    binding,
                    opts.ca_file.as_deref(),
                    &device_key,
                    opts.timeout,
                )?,
            };
            block_on(device.register(
                &a.id_scope,
                reg_id.as_str(),
                payload.as_ref(),
                csr_b64.as_deref(),
                deadline,
                &progress,
            ))??
        }
    };
    report(result, &reg_id, json, csr_request.as_ref())
}

/// What a device proves itself with.
enum Credential {
    /// The certificate chain (DER, leaf first) and the leaf's key (PKCS#8 DER).
    X509 {
        chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
    },
    /// The device's symmetric key (base64).
    Symmetric { device_key: String },
}

/// The credential of a symmetric-key device and its registration ID.
fn symmetric_credential(a: &RegisterArgs) -> Result<(Credential, RegistrationId)> {
    let rid = a.registration_id.as_deref().ok_or_else(|| {
        Error::input("a symmetric-key device needs --registration-id (it has no certificate to take it from)")
    })?;
    let (reg_id, _) = RegistrationId::parse(rid)?;
    let from = |flag: &str, value: &str, env: &str| -> Result<String> {
        let v = if value == "-" {
            std::env::var(env).unwrap_or_default()
        } else {
            value.to_owned()
        };
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Err(Error::input(format!(
                "{flag} is empty (with `-`, set {env})"
            )));
        }
        if crate::dps::sas::decode_key(&v).is_none() {
            return Err(Error::input(format!("{flag} is not valid base64")));
        }
        Ok(v)
    };
    let device_key = match (&a.symmetric_key, &a.group_key) {
        (Some(k), _) => from("--symmetric-key", k, "PKI_DEVICE_KEY")?,
        (None, Some(g)) => {
            let group = from("--group-key", g, "PKI_GROUP_KEY")?;
            crate::dps::sas::derive_device_key(&group, reg_id.as_str())
                .ok_or_else(|| Error::input("--group-key is not valid base64"))?
        }
        (None, None) => {
            return Err(Error::input(
                "pass --cert and --key (X.509), or --symmetric-key or --group-key (symmetric key)",
            ));
        }
    };
    Ok((Credential::Symmetric { device_key }, reg_id))
}

/// The credential of an X.509 device (its chain in the TLS handshake) and its registration ID.
fn x509_credential(
    a: &RegisterArgs,
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<(Credential, RegistrationId)> {
    let what = cert_path.display().to_string();
    let data = crate::fsio::read_input(cert_path)?;
    let chain = cert::read_bundle(&data, &what)?.certs;
    cert::require_device_first(&chain, &what)?;
    let leaf_der = chain.first().ok_or_else(|| {
        Error::input(format!(
            "{what} holds no PEM certificate; pass the device's full-chain PEM"
        ))
    })?;
    let leaf = cert::parse_der(leaf_der, &what)?;
    if leaf.version() != x509_parser::x509::X509Version::V3 {
        return Err(Error::input(format!(
            "the leaf certificate of {what} is X.509 v{}; TLS client authentication needs a v3 certificate (with extensions): issue the device with `pki device new`",
            leaf.version().0 + 1
        )));
    }
    let cn = cert::common_name(&leaf);
    let reg_id = match (&a.registration_id, &cn) {
        (Some(r), Some(cn)) if r != cn => {
            warn(format!(
                "--registration-id `{r}` differs from the certificate's CN `{cn}`; DPS will refuse the device"
            ));
            r.clone()
        }
        (Some(r), _) => r.clone(),
        (None, Some(cn)) => cn.clone(),
        (None, None) => {
            return Err(Error::input(format!(
                "{what} has no subject CN; pass --registration-id"
            )));
        }
    };
    // An X.509 registration ID is the leaf's CN: at most 64 characters.
    let (reg_id, _) = RegistrationId::parse_cn(&reg_id)?;
    if chain.len() == 1 {
        warn(format!(
            "{what} holds only the leaf; DPS needs the chain up to a verified CA (use the …-full-chain.cert.pem file) unless the group certificate signed the leaf directly"
        ));
    }

    let key_what = key_path.display().to_string();
    let key = crate::keys::load_private_key(
        &crate::fsio::read_input(key_path)?,
        a.key_password.as_deref(),
        &key_what,
        "--key-password or PKI_KEY_PASSWORD",
    )?;
    if leaf.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(Error::input(format!(
            "{key_what} does not belong to the leaf certificate of {what}; pass the device's own key"
        )));
    }
    Ok((
        Credential::X509 {
            chain,
            key_pkcs8: crate::keys::pkcs8_der(&key)?,
        },
        reg_id,
    ))
}

/// Prints the outcome; anything but `assigned` is an error.
fn report(
    result: Registration,
    reg_id: &RegistrationId,
    json: bool,
    csr_request: Option<&CsrRequest>,
) -> Result<()> {
    let state = result
        .body
        .get("registrationState")
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| state.get(k).and_then(Value::as_str);
    if result.status == RegistrationStatus::Assigned {
        let written = match csr_request {
            Some(c) => Some(save_issued(&state, c, reg_id)?),
            None => None,
        };
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&state).unwrap_or_default()
            );
        } else {
            println!(
                "assigned: device {} on hub {}",
                s("deviceId").unwrap_or(reg_id.as_str()),
                s("assignedHub").unwrap_or("?")
            );
            if let Some(g) = state
                .pointer("/x509/enrollmentGroupId")
                .or_else(|| state.pointer("/symmetricKey/enrollmentGroupId"))
                .and_then(Value::as_str)
            {
                println!("enrollment group: {g}");
            }
        }
        for (label, path) in written.iter().flatten() {
            if json {
                eprintln!("{label}: {}", path.display());
            } else {
                println!("{label}: {}", path.display());
            }
        }
        return Ok(());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result.body).unwrap_or_default()
        );
    }
    let detail = match (state.get("errorCode"), s("errorMessage")) {
        (Some(code), Some(msg)) => format!(": DPS error {code}: {msg}"),
        (None, Some(msg)) => format!(": {msg}"),
        _ => String::new(),
    };
    let hint = match result.status {
        RegistrationStatus::Disabled => {
            "; the device's enrollment (group or individual) is disabled"
        }
        RegistrationStatus::Unassigned => {
            "; no IoT hub could be assigned (check the group's hubs and allocation)"
        }
        _ => "",
    };
    Err(Error::Service(format!(
        "registration of `{reg_id}` ended `{}`{detail}{hint}",
        result.status
    )))
}

/// A CSR to send, and where its issued chain (and, for `auto`, key) go.
struct CsrRequest {
    csr: Csr,
    /// The key `auto` made (written only after DPS issued).
    key: Option<rcgen::KeyPair>,
    cert: PathBuf,
    full_chain: PathBuf,
    key_file: PathBuf,
}

/// `--csr auto|FILE`: the CSR, checked before anything is sent, and the
/// output paths, refused if they exist (unless --force).
fn prepare_csr(
    choice: &str,
    reg_id: &RegistrationId,
    out: &Path,
    force: bool,
) -> Result<CsrRequest> {
    let (csr, key) = if choice == "auto" {
        let (cn_id, _) = RegistrationId::parse_cn(reg_id.as_str())?;
        let key = KeyType::EcP384.generate()?;
        (crate::csr::build(&cn_id, &key)?, Some(key))
    } else {
        let path = Path::new(choice);
        let what = path.display().to_string();
        let csr = Csr::read(&crate::fsio::read_input(path)?, &what)?;
        if csr.common_name.as_deref() != Some(reg_id.as_str()) {
            return Err(Error::input(format!(
                "the CN of {what} is `{}`, not the registration ID `{reg_id}`: DPS issues only for CN = registration ID; make one with `pki csr new {reg_id}`",
                csr.common_name.as_deref().unwrap_or("")
            )));
        }
        if csr.key != crate::csr::CsrKey::EcP384 {
            return Err(Error::input(format!(
                "{what} has a {} key; DPS certificate issuance accepts only EC P-384 (`pki csr new --key ec-p384`)",
                csr.key
            )));
        }
        (csr, None)
    };
    let id = reg_id.as_str();
    let req = CsrRequest {
        csr,
        cert: out.join("certs").join(format!("{id}.issued.cert.pem")),
        full_chain: out
            .join("certs")
            .join(format!("{id}.issued-full-chain.cert.pem")),
        key_file: out.join("private").join(format!("{id}.issued.key.pem")),
        key,
    };
    if !force
        && let Some(p) = [&req.cert, &req.full_chain, &req.key_file]
            .into_iter()
            .find(|p| p.exists())
    {
        return Err(Error::input(format!(
            "{} already exists; pass --force to replace the issued files",
            p.display()
        )));
    }
    Ok(req)
}

/// Writes the issued chain (and the `auto` key, 0600) after checking that
/// DPS certified the CSR's key for this registration ID.
fn save_issued(
    state: &Value,
    req: &CsrRequest,
    reg_id: &RegistrationId,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let items = state
        .get("issuedCertificateChain")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Error::Service(format!(
                "DPS assigned `{reg_id}` but returned no issuedCertificateChain: give its enrollment a certificate policy (pki enroll … --certificate-policy NAMESPACE/CA/POLICY)"
            ))
        })?;
    let mut ders = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let der = item
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| {
                Error::Service(format!(
                    "issuedCertificateChain[{i}] from DPS is not base64 DER"
                ))
            })?;
        cert::parse_der(&der, &format!("issuedCertificateChain[{i}]"))
            .map_err(|e| Error::Service(e.to_string()))?;
        ders.push(der);
    }
    let leaf = cert::parse_der(&ders[0], "the issued certificate")
        .map_err(|e| Error::Service(e.to_string()))?;
    if leaf.public_key().raw != req.csr.public_key_der.as_slice() {
        return Err(Error::Service(
            "the issued certificate does not certify the CSR's key; nothing was written".into(),
        ));
    }
    let leaf_pem = crate::keys::pem_lf("CERTIFICATE", &ders[0]);
    let full: String = ders
        .iter()
        .map(|d| crate::keys::pem_lf("CERTIFICATE", d))
        .collect();
    let base = req
        .cert
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    ensure_dir(&base.join("certs"), Mode::Public)?;
    let staging = Staging::new(base)?;
    let mut written = vec![("issued certificate", req.cert.clone())];
    staging.write(&req.cert, leaf_pem.as_bytes(), Mode::Public)?;
    staging.write(&req.full_chain, full.as_bytes(), Mode::Public)?;
    written.push(("issued full chain", req.full_chain.clone()));
    if let Some(key) = &req.key {
        ensure_dir(&base.join("private"), Mode::Secret)?;
        staging.write(
            &req.key_file,
            private_key_pem(key, None)?.as_bytes(),
            Mode::Secret,
        )?;
        written.push(("key", req.key_file.clone()));
    }
    staging.commit()?;
    Ok(written)
}
