//! `pki sas`: symmetric-key material as `az iot dps` and the SDKs make it.
//!
//! `device-key` derives a group device's key (`az iot dps enrollment-group
//! compute-device-key`); `token` makes a SAS token for the service API (from
//! a connection string) or for the device API (from a device or group key).
//! The crypto is [`crate::dps::sas`], the same code the client and the
//! emulator use. Secrets can come from environment variables so they need not
//! sit in shell history; what these commands print is the secret the user
//! asked for, on stdout, and nothing else.

use std::time::{SystemTime, UNIX_EPOCH};

use super::output::{Output, write_stdout};
use crate::dps::connection_string::ConnectionString;
use crate::dps::sas;
use crate::error::{Error, Result};
use crate::regid::RegistrationId;

/// Environment variable holding a symmetric-key group's primary (or secondary) key.
pub const GROUP_KEY_ENV: &str = "PKI_GROUP_KEY";
/// Environment variable holding a device's symmetric key.
pub const DEVICE_KEY_ENV: &str = "PKI_DEVICE_KEY";
/// Environment variable holding the service connection string.
pub const CONNECTION_STRING_ENV: &str = "DPS_CONNECTION_STRING";
/// Policy name the device API expects in a device token (dps-protocol.md §6.6).
const DEVICE_POLICY: &str = "registration";

/// Symmetric keys and SAS tokens, as `az iot dps` and the SDKs make them.
#[derive(Debug, clap::Subcommand)]
pub enum SasCommand {
    /// Derive a device's key from its symmetric-key group's key.
    DeviceKey(DeviceKeyArgs),
    /// Make a SAS token for the service API or for a device registration.
    Token(TokenArgs),
}

/// Arguments of `pki sas device-key`.
///
/// Prints base64(HMAC-SHA256(base64decode(GROUP_KEY), REGISTRATION_ID)), the
/// key a device of a symmetric-key enrollment group signs its SAS token with;
/// the same as `az iot dps enrollment-group compute-device-key`. Either of
/// the group's keys works (DPS tries primary, then secondary).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki sas device-key --group-key \"$GROUP_KEY\" sensor-17\n  \
export PKI_GROUP_KEY=…   # then, out of shell history:\n  \
pki sas device-key sensor-17")]
pub struct DeviceKeyArgs {
    /// The group's primary or secondary key (base64) [env: PKI_GROUP_KEY].
    #[arg(long, value_name = "BASE64")]
    group_key: Option<String>,
    /// The device's registration ID (what it will register as).
    #[arg(value_name = "REGISTRATION_ID")]
    registration_id: String,
}

/// Arguments of `pki sas token`.
///
/// Service API (enrollments, registrations): `sr` is the connection string's
/// HostName, the policy its SharedAccessKeyName, as the service SDKs sign.
/// Device API (with --registration-id): `sr` is
/// `{ID scope}/registrations/{registration ID}` and the policy is
/// `registration`, signed with the device key (given, or derived from
/// --group-key), as the device SDKs sign. The token is printed on stdout, to
/// use as the HTTP `Authorization` header or the MQTT password.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki sas token --connection-string \"$DPS_CONNECTION_STRING\" --ttl 1h\n  \
pki sas token --device-key \"$KEY\" --registration-id sensor-17 --id-scope 0ne00000001\n  \
pki sas token --group-key \"$GROUP_KEY\" --registration-id sensor-17 --id-scope 0ne00000001\n  \
curl -H \"Authorization: $(pki sas token)\" …   # key from DPS_CONNECTION_STRING")]
pub struct TokenArgs {
    /// Service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)
    /// [env: DPS_CONNECTION_STRING].
    #[arg(long, value_name = "STRING", conflicts_with_all = ["registration_id", "device_key", "group_key"])]
    connection_string: Option<String>,
    /// Make a device token for this registration ID (needs a device or group key and the ID scope).
    #[arg(long, value_name = "ID")]
    registration_id: Option<String>,
    /// The device's symmetric key (base64) [env: PKI_DEVICE_KEY].
    #[arg(long, value_name = "BASE64", requires = "registration_id")]
    device_key: Option<String>,
    /// The device's group key (base64); the device key is derived from it [env: PKI_GROUP_KEY].
    #[arg(
        long,
        value_name = "BASE64",
        requires = "registration_id",
        conflicts_with = "device_key"
    )]
    group_key: Option<String>,
    /// The DPS ID scope, for a device token.
    #[arg(long, value_name = "SCOPE", env = "PROVISIONING_IDSCOPE")]
    id_scope: Option<String>,
    /// How long the token is valid: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_ttl)]
    ttl: u64,
}

/// Runs `pki sas …`.
pub fn run(command: SasCommand) -> Result<()> {
    match command {
        SasCommand::DeviceKey(a) => device_key(a),
        SasCommand::Token(a) => token(a),
    }
}

fn device_key(a: DeviceKeyArgs) -> Result<()> {
    let group_key = secret(a.group_key, "--group-key", GROUP_KEY_ENV)?.ok_or_else(|| {
        Error::input(format!(
            "no group key: pass --group-key or set {GROUP_KEY_ENV} (the group's primary or secondary key)"
        ))
    })?;
    let id = registration_id(&a.registration_id)?;
    let key = derive(&group_key, "--group-key", &id)?;
    write_stdout(format!("{key}\n").as_bytes())
}

fn token(a: TokenArgs) -> Result<()> {
    let expiry = now_unix()
        .checked_add(a.ttl)
        .ok_or_else(|| Error::input("--ttl is too long"))?;
    let token = match a.registration_id {
        None => {
            let cs = secret(a.connection_string, "--connection-string", CONNECTION_STRING_ENV)?
                .ok_or_else(|| {
                    Error::input(format!(
                        "no connection string: pass --connection-string or set {CONNECTION_STRING_ENV}, \
                         or pass --registration-id for a device token"
                    ))
                })?;
            let cs = ConnectionString::parse(&cs)?;
            sas::create_token(&cs.host_name, &cs.key, Some(&cs.key_name), expiry).ok_or_else(
                || Error::input("the connection string's SharedAccessKey is not valid base64"),
            )?
        }
        Some(rid) => {
            let id = registration_id(&rid)?;
            let scope = a.id_scope.as_deref().map(str::trim).unwrap_or_default();
            if scope.is_empty() || scope.contains('/') || scope.contains(char::is_whitespace) {
                return Err(Error::input(
                    "a device token needs the ID scope: pass --id-scope (e.g. 0ne00000001) or set PROVISIONING_IDSCOPE",
                ));
            }
            let key = device_signing_key(a.device_key, a.group_key, &id)?;
            let sr = format!("{scope}/registrations/{}", id.as_str());
            sas::create_token(&sr, &key, Some(DEVICE_POLICY), expiry)
                .ok_or_else(|| Error::input("--device-key is not valid base64"))?
        }
    };
    write_stdout(format!("{token}\n").as_bytes())
}

/// The key a device signs with: `--device-key`, else the key derived from
/// `--group-key`, else the same from the environment. Flags win over the
/// environment; two keys from the environment are ambiguous.
fn device_signing_key(
    device_key: Option<String>,
    group_key: Option<String>,
    id: &RegistrationId,
) -> Result<String> {
    if let Some(k) = device_key {
        return nonempty(k, "--device-key");
    }
    if let Some(k) = group_key {
        return derive(&nonempty(k, "--group-key")?, "--group-key", id);
    }
    let device = secret(None, "", DEVICE_KEY_ENV)?;
    let group = secret(None, "", GROUP_KEY_ENV)?;
    match (device, group) {
        (Some(_), Some(_)) => Err(Error::input(format!(
            "both {DEVICE_KEY_ENV} and {GROUP_KEY_ENV} are set; unset one, or pass --device-key or --group-key"
        ))),
        (Some(k), None) => Ok(k),
        (None, Some(k)) => derive(&k, GROUP_KEY_ENV, id),
        (None, None) => Err(Error::input(format!(
            "no key for the device token: pass --device-key or --group-key, or set {DEVICE_KEY_ENV} or {GROUP_KEY_ENV}"
        ))),
    }
}

/// A secret from its flag, else from the environment variable `env`
/// (empty counts as unset). Never echoes the value.
fn secret(flag: Option<String>, flag_name: &str, env: &str) -> Result<Option<String>> {
    if let Some(v) = flag {
        return nonempty(v, flag_name).map(Some);
    }
    match std::env::var(env) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_owned())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::input(format!("{env} is not valid UTF-8")))
        }
    }
}

fn nonempty(v: String, what: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(Error::input(format!("{what} is empty")));
    }
    Ok(v.to_owned())
}

fn derive(group_key: &str, what: &str, id: &RegistrationId) -> Result<String> {
    sas::derive_device_key(group_key, id.as_str()).ok_or_else(|| {
        Error::input(format!(
            "{what} is not valid base64 (copy the group's primary or secondary key)"
        ))
    })
}

/// Checks the ID against DPS's rule; warns (stderr) about upper case, since
/// the derived key depends on the exact spelling the device registers with.
fn registration_id(id: &str) -> Result<RegistrationId> {
    let (id, warning) = RegistrationId::parse(id)?;
    if let Some(w) = warning {
        Output { quiet: false }.warn(format!(
            "{w}; the key is derived from `{id}` exactly as spelled, so the device must register with that spelling"
        ));
    }
    Ok(id)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `3600`, `90s`, `30m`, `1h` or `7d` into seconds (more than zero).
fn parse_ttl(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("expected seconds or a number with s, m, h or d (e.g. 1h)".into()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected seconds or a number with s, m, h or d (e.g. 1h)".to_string())?;
    match n.checked_mul(scale) {
        Some(0) => Err("the duration must be more than zero".into()),
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(secs),
        _ => Err("the duration is longer than 100 years".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        for bad in [
            "",
            "h",
            "0",
            "0h",
            "1w",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
