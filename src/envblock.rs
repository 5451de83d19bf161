//! Ready-to-paste environment blocks for the emulator's clients: the
//! variables the official SDK samples read (`DPS_CONNECTION_STRING`,
//! `PROVISIONING_HOST`, `PROVISIONING_IDSCOPE`, the trust settings of Node,
//! Python, OpenSSL and Java, and for one device `PROVISIONING_REGISTRATION_ID`,
//! `X509_CERT_FILE`, `X509_KEY_FILE`), rendered for sh, PowerShell or a
//! `.env` file with each format's quoting.
//!
//! Used by `pki emulator --print-env` and by its start-up text. The
//! connection string it prints holds the emulator's own local test key,
//! never an Azure one; the block says so.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsio;
use crate::layout::Layout;
use crate::regid::RegistrationId;

use crate::emulator::truststore;
/// The emulator's settings file in its data directory (ID scope, SAS key).
const SETTINGS_FILE: &str = "emulator.json";
/// The emulator's service policy.
const POLICY: &str = "provisioningserviceowner";

/// How to render the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `KEY=value` lines for a `.env` file (dotenv, docker compose, VS Code).
    Dotenv,
    /// `$env:KEY = 'value'` lines for PowerShell.
    Powershell,
    /// `export KEY='value'` lines for sh, bash and zsh (`eval "$(…)"`).
    Sh,
}

/// What clients need to reach one emulator.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Service connection string (holds the emulator's SAS key).
    pub connection_string: String,
    /// `localhost` or `localhost:PORT`: the connection string's HostName and
    /// the device endpoint.
    pub host: String,
    pub id_scope: String,
    /// The emulator's TLS CA (PEM), absolute.
    pub ca_file: PathBuf,
    /// The same CA as a PKCS#12 trust store for Java, absolute.
    pub java_truststore: PathBuf,
}

impl Endpoint {
    /// The endpoint of an emulator whose connection string, host and CA file
    /// are known (its start-up values); the Java trust store sits beside the CA.
    pub fn new(
        connection_string: String,
        host: String,
        id_scope: String,
        ca_file: PathBuf,
    ) -> Self {
        let java_truststore = ca_file.with_file_name(truststore::FILE);
        Endpoint {
            connection_string,
            host,
            id_scope,
            ca_file,
            java_truststore,
        }
    }

    /// The endpoint of the emulator that uses data directory `data` and
    /// listens on `listen`, read from its files without starting it (so it
    /// works beside a running emulator). `sas_key` and `id_scope` are the
    /// emulator's overrides, if it was started with them.
    pub fn from_data_dir(
        data: &Path,
        listen: &str,
        sas_key: Option<&str>,
        id_scope: Option<&str>,
    ) -> Result<Endpoint> {
        let settings_path = data.join(SETTINGS_FILE);
        let ca_file = data.join("ca.pem");
        if !settings_path.is_file() || !ca_file.is_file() {
            return Err(Error::input(format!(
                "no emulator data in {}: start `pki emulator --data {}` once first (it makes the CA, key and ID scope)",
                data.display(),
                data.display()
            )));
        }
        let text = fsio::read_input(&settings_path)?;
        let settings: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::input(format!("{} is damaged ({e})", settings_path.display())))?;
        let stored = |field: &str| {
            settings[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::input(format!("{} has no {field}", settings_path.display())))
        };
        let key = match sas_key {
            Some(k) => k.to_owned(),
            None => stored("sasKey")?,
        };
        let scope = match id_scope {
            Some(s) => s.to_owned(),
            None => stored("idScope")?,
        };
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            Error::input(format!(
                "--listen `{listen}` is not an address: give IP:PORT, e.g. 127.0.0.1:8443"
            ))
        })?;
        // The emulator's own rule: port 443 is left out, since the Node SDKs
        // cannot take a port in the host name.
        let host = match addr.port() {
            0 => {
                return Err(Error::input(
                    "--print-env needs the emulator's real port: pass the --listen it runs on, not port 0",
                ));
            }
            443 => "localhost".to_owned(),
            p => format!("localhost:{p}"),
        };
        let ca_file = std::path::absolute(&ca_file).unwrap_or(ca_file);
        Ok(Endpoint::new(
            format!("HostName={host};SharedAccessKeyName={POLICY};SharedAccessKey={key}"),
            host,
            scope,
            ca_file,
        ))
    }
}

/// One device's identity files, from a `pki chain new` directory.
#[derive(Clone, Debug)]
pub struct DeviceFiles {
    pub registration_id: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl DeviceFiles {
    /// The full chain and key of device `id` under `ca_dir` (certGen.sh /
    /// tutorial names); both files must exist.
    pub fn find(ca_dir: &Path, id: &str) -> Result<DeviceFiles> {
        let (id, _) = RegistrationId::parse_cn(id)?;
        let layout = Layout::new(ca_dir);
        let cert = layout.device_full_chain(id.as_str());
        let key = layout.device_key(id.as_str());
        for f in [&cert, &key] {
            if !f.is_file() {
                return Err(Error::input(format!(
                    "{} does not exist; make the device with `pki device new {id} --ca-dir {}` or pass the right --ca-dir",
                    f.display(),
                    ca_dir.display()
                )));
            }
        }
        Ok(DeviceFiles {
            registration_id: id.as_str().to_owned(),
            cert_file: std::path::absolute(&cert).unwrap_or(cert),
            key_file: std::path::absolute(&key).unwrap_or(key),
        })
    }
}

/// One variable, with an optional comment line printed above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub value: String,
    pub note: Option<&'static str>,
}

/// The variables, in the order they are printed.
pub fn vars(endpoint: &Endpoint, device: Option<&DeviceFiles>) -> Vec<Var> {
    let ca = endpoint.ca_file.display().to_string();
    let var = |name, value: String, note| Var { name, value, note };
    let mut v = vec![
        var(
            "DPS_CONNECTION_STRING",
            endpoint.connection_string.clone(),
            Some("the emulator's own local test key, not an Azure secret"),
        ),
        var("PROVISIONING_HOST", endpoint.host.clone(), None),
        var("PROVISIONING_IDSCOPE", endpoint.id_scope.clone(), None),
        var(
            "NODE_EXTRA_CA_CERTS",
            ca.clone(),
            Some("trust the emulator's CA: Node, Python requests, OpenSSL-based tools, Java"),
        ),
        var("REQUESTS_CA_BUNDLE", ca.clone(), None),
        var("SSL_CERT_FILE", ca, None),
        var(
            "JAVA_TOOL_OPTIONS",
            format!(
                "-Djavax.net.ssl.trustStore={} -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword={}",
                endpoint.java_truststore.display(),
                truststore::PASSWORD
            ),
            None,
        ),
    ];
    if let Some(d) = device {
        v.push(var(
            "PROVISIONING_REGISTRATION_ID",
            d.registration_id.clone(),
            Some("the device (Python and C samples' names)"),
        ));
        v.push(var(
            "X509_CERT_FILE",
            d.cert_file.display().to_string(),
            None,
        ));
        v.push(var("X509_KEY_FILE", d.key_file.display().to_string(), None));
    }
    v
}

/// Renders `vars` in `format`, ending with a newline. The first line is a
/// comment naming the emulator.
pub fn render(format: Format, endpoint: &Endpoint, vars: &[Var]) -> String {
    let mut out = format!(
        "# pki emulator at https://{} (ID scope {}); SSL_CERT_FILE makes OpenSSL tools in this shell trust only the emulator\n",
        endpoint.host, endpoint.id_scope
    );
    for v in vars {
        if let Some(note) = v.note {
            out.push_str(&format!("# {note}\n"));
        }
        let line = match format {
            Format::Sh => format!("export {}={}", v.name, sh_quote(&v.value)),
            Format::Powershell => format!("$env:{} = {}", v.name, ps_quote(&v.value)),
            Format::Dotenv => format!("{}={}", v.name, dotenv_quote(&v.value)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// POSIX single quotes: everything literal; `'` becomes `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// PowerShell single quotes: everything literal; `'` is doubled.
fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Bare when every dotenv reader takes it literally, else double quotes with
/// `\` and `"` escaped (python-dotenv, Node dotenv, docker compose).
fn dotenv_quote(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/:;=+@%".contains(c));
    if bare {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new(
            "HostName=localhost:8443;SharedAccessKeyName=p;SharedAccessKey=ab+c/d==".into(),
            "localhost:8443".into(),
            "0ne00000001".into(),
            "/tmp/it's here/ca.pem".into(),
        )
    }

    #[test]
    fn quoting_per_format() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(dotenv_quote("HostName=a;K=b+/=="), "HostName=a;K=b+/==");
        assert_eq!(dotenv_quote("a b\"c\\"), r#""a b\"c\\""#);
    }

    #[test]
    fn every_line_is_a_comment_or_an_assignment() {
        let e = endpoint();
        let v = vars(&e, None);
        for f in [Format::Sh, Format::Powershell, Format::Dotenv] {
            let text = render(f, &e, &v);
            let assignments = text.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(assignments, v.len(), "{text}");
            assert!(text.contains("local test key"), "{text}");
        }
    }
}
