//! The DPS service connection string:
//! `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
//!
//! Its key is a secret: [`ConnectionString`]'s `Debug` elides it, and no
//! error message built here quotes the input.

use std::fmt;

use crate::error::{Error, Result};

/// A parsed service connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`, possibly with a port (`localhost:8443`).
    pub host_name: String,
    /// `SharedAccessKeyName`, the policy (usually `provisioningserviceowner`).
    pub key_name: String,
    /// `SharedAccessKey`, base64. Secret.
    pub key: String,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &"[secret elided]")
            .finish()
    }
}

/// Refuses a `HostName` that is not a bare `host[:port]`: a scheme inside it
/// (`http://…` would send the SAS token in clear; DPS is HTTPS only).
/// Never quotes the value, which may be long or hold pasted secrets.
fn check_host_name(host: &str) -> Result<()> {
    if host.contains("://") {
        return Err(Error::input(
            "the connection string's HostName holds a URL scheme; give the host name only (e.g. HostName=my-dps.azure-devices-provisioning.net): pki always uses HTTPS",
        ));
    }
    Ok(())
}

impl ConnectionString {
    /// Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` (any order;
    /// split on the first `=` so base64 padding survives, as the Node SDK does).
    pub fn parse(s: &str) -> Result<Self> {
        let (mut host, mut name, mut key) = (None, None, None);
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::input(
                    "the connection string is malformed (expected `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`)",
                )
            })?;
            match k.trim() {
                "HostName" => host = Some(v.trim().to_string()),
                "SharedAccessKeyName" => name = Some(v.trim().to_string()),
                "SharedAccessKey" => key = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let missing = |what: &str| {
            Error::input(format!(
                "the connection string has no {what}; copy the whole string from the DPS \"Shared access policies\" page"
            ))
        };
        let host_name = host.ok_or_else(|| missing("HostName"))?;
        let key_name = name.ok_or_else(|| missing("SharedAccessKeyName"))?;
        let key = key.ok_or_else(|| missing("SharedAccessKey"))?;
        check_host_name(&host_name)?;
        if host_name.ends_with(".azure-devices.net") {
            return Err(Error::input(
                "this is an IoT Hub connection string (HostName ends in .azure-devices.net); use the DPS one (…azure-devices-provisioning.net)",
            ));
        }
        if crate::dps::sas::decode_key(&key).is_none() {
            return Err(Error::input(
                "the connection string's SharedAccessKey is not valid base64",
            ));
        }
        Ok(ConnectionString {
            host_name,
            key_name,
            key,
        })
    }

    /// Renders the connection string (contains the secret key: only for
    /// writing to files the user asked for, never for logs or errors).
    pub fn to_secret_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name, self.key_name, self.key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_order_and_keeps_padding() {
        let c = ConnectionString::parse(
            "SharedAccessKey=YWJjZA==;HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner",
        )
        .unwrap();
        assert_eq!(c.host_name, "localhost:8443");
        assert_eq!(c.key, "YWJjZA==");
        assert!(!format!("{c:?}").contains("YWJjZA"));
    }

    #[test]
    fn errors_never_quote_the_key() {
        let err = ConnectionString::parse("HostName=x;SharedAccessKey=c2VjcmV0").unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert_eq!(err.exit_code(), 2);
    }
}
