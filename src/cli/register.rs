//! `pki register`: the device side of DPS over HTTPS, like
//! `az iot device registration create`. The device authenticates with its
//! certificate chain in the TLS handshake; the registration ID defaults to
//! the leaf's CN.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::args::{NetArgs, block_on, warn};
use crate::cert;
use crate::dps::client::DeviceClient;
use crate::dps::http::ClientIdentity;
use crate::dps::vocab::RegistrationStatus;
use crate::error::{Error, Result};
use crate::regid::RegistrationId;

/// DPS's global device endpoint.
const GLOBAL_HOST: &str = "global.azure-devices-provisioning.net";

/// Register a device with DPS using its X.509 certificate chain.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  pki register --id-scope 0ne00000001 \\\n    \
--cert certs/device-0001-full-chain.cert.pem --key private/device-0001.key.pem \\\n    \
--host localhost:8443 --ca-file emulator-ca.pem"
)]
pub struct RegisterArgs {
    /// The DPS ID scope (e.g. 0ne00000001).
    #[arg(long, value_name = "SCOPE")]
    id_scope: String,
    /// The device's certificate chain, leaf first (…-full-chain.cert.pem).
    #[arg(long, value_name = "FULLCHAIN")]
    cert: PathBuf,
    /// The device's private key.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
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
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    timeout: u64,
    /// Print the whole registrationState as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

pub fn run(a: RegisterArgs) -> Result<()> {
    if a.id_scope.trim().is_empty() || a.id_scope.contains('/') {
        return Err(Error::input(
            "--id-scope is not an ID scope (e.g. 0ne00000001; see the DPS overview page)",
        ));
    }
    let what = a.cert.display().to_string();
    let data = crate::fsio::read_input(&a.cert)?;
    let chain = cert::read_bundle(&data, &what)?.certs;
    let leaf_der = chain.first().ok_or_else(|| {
        Error::input(format!(
            "{what} holds no PEM certificate; pass the device's full-chain PEM"
        ))
    })?;
    let leaf = cert::parse_der(leaf_der, &what)?;
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
    let (reg_id, _) = RegistrationId::parse(&reg_id)?;
    if chain.len() == 1 {
        warn(format!(
            "{what} holds only the leaf; DPS needs the chain up to a verified CA (use the …-full-chain.cert.pem file) unless the group certificate signed the leaf directly"
        ));
    }

    let key_what = a.key.display().to_string();
    let key = crate::keys::load_private_key(
        &crate::fsio::read_input(&a.key)?,
        a.key_password.as_deref(),
        &key_what,
        "--key-password or PKI_KEY_PASSWORD",
    )?;
    if leaf.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(Error::input(format!(
            "{key_what} does not belong to the leaf certificate of {what}; pass the device's own key"
        )));
    }
    let payload = a
        .payload
        .as_deref()
        .map(|p| {
            serde_json::from_str::<Value>(p)
                .map_err(|e| Error::input(format!("--payload is not valid JSON: {e}")))
        })
        .transpose()?;

    // reqwest wants the key and the chain in one PEM buffer.
    let mut pem = crate::keys::pem_lf("PRIVATE KEY", key.serialized_der()).into_bytes();
    for der in &chain {
        pem.extend_from_slice(crate::keys::pem_lf("CERTIFICATE", der).as_bytes());
    }
    let client = DeviceClient::new(&a.host, ClientIdentity { pem }, a.net.options())?;
    let json = a.json;
    let result = block_on(client.register(
        &a.id_scope,
        &reg_id,
        payload.as_ref(),
        Duration::from_secs(a.timeout),
        &|s| {
            if !json {
                eprintln!("{reg_id}: {s}…");
            }
        },
    ))??;

    let state = result
        .body
        .get("registrationState")
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| state.get(k).and_then(Value::as_str);
    if result.status == RegistrationStatus::Assigned {
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
                .and_then(Value::as_str)
            {
                println!("enrollment group: {g}");
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
