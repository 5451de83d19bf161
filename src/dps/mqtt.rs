//! The device registration over MQTT, for `pki register --transport mqtt|mqtt-ws`
//! (contract §7.5): what the Python, C, C#, Java and Node MQTT device SDKs do.
//!
//! CONNECT with client id = registration ID and the DPS username, SUBSCRIBE
//! `$dps/registrations/res/#`, PUBLISH the registration, then poll with
//! `iotdps-get-operationstatus` until the operation ends. An X.509 device
//! authenticates with its chain in the TLS handshake; a symmetric-key device
//! with a SAS token as the CONNECT password (`sr={scope}%2Fregistrations%2F{id}`,
//! `skn=registration`, one hour, signed over the encoded `sr` as the Python
//! and C SDKs do) and no client certificate. With a `csr` the username's
//! api-version is [`CSR_API_VERSION`] and the register body carries it
//! (DPS certificate issuance). Packets are
//! encoded by `rumqttc::mqttbytes::v4`; WebSockets (`/$iothub/websocket`,
//! subprotocol `mqtt`) by tokio-tungstenite. Replies and errors come back as
//! [`Registration`] and the same [`HttpError`] texts as HTTPS, so the
//! command's output does not depend on the transport.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{CSR_API_VERSION, Registration};
use super::http::{ErrorDetail, HttpError, USER_AGENT};
use super::vocab::RegistrationStatus;
use crate::error::{Error, Result};

/// api-version in the username (what Python, Node and C# send).
const API_VERSION: &str = "2019-03-31";
/// Largest reply accepted.
const MAX_PACKET: usize = 1 << 20;

/// Which MQTT binding to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// MQTT 3.1.1 over TLS, port 8883 unless the host names one.
    Tls,
    /// MQTT over WebSockets at `/$iothub/websocket`, port 443 unless the host names one.
    WebSocket,
}

/// A device (X.509 or symmetric key) that registers over MQTT.
pub struct MqttDevice {
    host: String,
    port: u16,
    binding: Binding,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    /// The device's symmetric key (base64), for a SAS-token CONNECT password.
    sas_key: Option<String>,
}

impl std::fmt::Debug for MqttDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TLS configuration holds the private key: never print it.
        write!(
            f,
            "MqttDevice({}:{}, {:?})",
            self.host, self.port, self.binding
        )
    }
}

enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl MqttDevice {
    /// An X.509 device. `host` is `HOST` or `HOST:PORT`; `ca_file` adds
    /// trusted roots (the emulator's CA) to the system's; `chain` is leaf first.
    pub fn new(
        host: &str,
        binding: Binding,
        ca_file: Option<&Path>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        timeout: Duration,
    ) -> Result<MqttDevice> {
        Self::build(host, binding, ca_file, Some((chain, key)), None, timeout)
    }

    /// A symmetric-key device: no client certificate, and a SAS token made
    /// with `device_key_b64` as the CONNECT password.
    pub fn with_symmetric_key(
        host: &str,
        binding: Binding,
        ca_file: Option<&Path>,
        device_key_b64: &str,
        timeout: Duration,
    ) -> Result<MqttDevice> {
        if super::sas::decode_key(device_key_b64).is_none() {
            return Err(Error::input("the device key is not valid base64"));
        }
        Self::build(
            host,
            binding,
            ca_file,
            None,
            Some(device_key_b64.to_owned()),
            timeout,
        )
    }

    fn build(
        host: &str,
        binding: Binding,
        ca_file: Option<&Path>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        sas_key: Option<String>,
        timeout: Duration,
    ) -> Result<MqttDevice> {
        super::http::install_crypto_provider();
        let default_port = match binding {
            Binding::Tls => 8883,
            Binding::WebSocket => 443,
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                let port =
                    p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                        Error::input(format!("--host `{host}`: `{p}` is not a port"))
                    })?;
                (h.trim_matches(['[', ']']).to_string(), port)
            }
            _ => (host.to_string(), default_port),
        };
        if name.is_empty() || name.contains(['/', ' ']) {
            return Err(Error::input(format!(
                "--host `{host}` is not a host name (HOST or HOST:PORT)"
            )));
        }
        let mut roots = Vec::new();
        if let Some(path) = ca_file {
            let data = crate::fsio::read_input(path)?;
            for b in pem::parse_many(&data).unwrap_or_default() {
                if b.tag() == "CERTIFICATE" {
                    roots.push(CertificateDer::from(b.into_contents()));
                }
            }
            if roots.is_empty() {
                return Err(Error::input(format!(
                    "{} holds no certificate (--ca-file wants the CA certificate in PEM)",
                    path.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| Error::failed(format!("cannot load the trusted roots: {e}")))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::failed(format!("cannot set TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|_| {
                Error::input("the device certificate chain or key cannot be used for TLS")
            })?,
            None => builder.with_no_client_auth(),
        };
        Ok(MqttDevice {
            host: name,
            port,
            binding,
            config: Arc::new(config),
            timeout,
            sas_key,
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn open(&self) -> Result<Stream> {
        let unreachable = |reason: String| {
            Error::from(HttpError::Unreachable {
                host: self.addr(),
                attempts: 1,
                reason,
            })
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| Error::input(format!("--host `{}` is not a host name", self.host)))?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(c)) => {
                        Error::from(HttpError::Untrusted {
                            host: self.addr(),
                            reason: crate::dps::http::certificate_problem(c),
                        })
                    }
                    Some(rustls::Error::InvalidMessage(_)) => {
                        Error::from(HttpError::NotTls { host: self.addr() })
                    }
                    _ => unreachable(format!("TLS handshake failed: {e}")),
                },
            )?;
        match self.binding {
            Binding::Tls => Ok(Stream::Tls(Box::new(tls))),
            Binding::WebSocket => {
                let mut req = format!("wss://{}/$iothub/websocket", self.addr())
                    .into_client_request()
                    .map_err(|e| Error::input(format!("--host: {e}")))?;
                req.headers_mut()
                    .insert("sec-websocket-protocol", "mqtt".parse().expect("static"));
                let (ws, _) = tokio_tungstenite::client_async(req, tls)
                    .await
                    .map_err(|e| unreachable(format!("WebSocket upgrade failed: {e}")))?;
                Ok(Stream::Ws(Box::new(ws)))
            }
        }
    }

    /// The CONNECT password: a SAS token for a symmetric-key device, as the
    /// SDKs sign it (the URL-encoded `sr`), valid one hour; empty for X.509.
    fn password(&self, id_scope: &str, registration_id: &str) -> String {
        let Some(key) = &self.sas_key else {
            return String::new();
        };
        let sr = percent_encoding::utf8_percent_encode(
            &format!("{id_scope}/registrations/{registration_id}"),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 3600;
        super::sas::create_token(&sr, key, Some("registration"), expiry).unwrap_or_default()
    }

    /// Registers and polls until the operation ends or `deadline` passes.
    /// With `csr` (base64 DER PKCS#10), asks for DPS certificate issuance:
    /// the result's `registrationState.issuedCertificateChain` holds the chain.
    pub async fn register(
        &self,
        id_scope: &str,
        registration_id: &str,
        payload: Option<&Value>,
        csr: Option<&str>,
        deadline: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Registration> {
        let start = Instant::now();
        let request = Request {
            id_scope,
            reg: registration_id,
            payload,
            csr,
            password: self.password(id_scope, registration_id),
            symmetric: self.sas_key.is_some(),
        };
        let io = async {
            let mut c = Session {
                stream: self.open().await?,
                buf: BytesMut::new(),
                host: self.addr(),
            };
            c.run(&request, start, deadline, progress).await
        };
        tokio::time::timeout(deadline.max(self.timeout), io)
            .await
            .unwrap_or_else(|_| {
                Err(Error::from(HttpError::Timeout {
                    host: self.addr(),
                    secs: deadline.max(self.timeout).as_secs(),
                    attempts: 1,
                }))
            })
    }
}

/// What one registration sends.
struct Request<'a> {
    id_scope: &'a str,
    reg: &'a str,
    payload: Option<&'a Value>,
    csr: Option<&'a str>,
    /// The CONNECT password (a SAS token, or empty).
    password: String,
    symmetric: bool,
}

struct Session {
    stream: Stream,
    buf: BytesMut,
    host: String,
}

impl Session {
    fn broken(&self, why: impl std::fmt::Display) -> Error {
        Error::from(HttpError::Other {
            host: self.host.clone(),
            reason: format!("MQTT: {why}"),
        })
    }

    async fn send(&mut self, p: Packet) -> Result<()> {
        let mut b = BytesMut::new();
        p.write(&mut b, MAX_PACKET)
            .map_err(|e| self.broken(e.to_string()))?;
        let ok = match &mut self.stream {
            Stream::Tls(s) => s.write_all(&b).await.is_ok() && s.flush().await.is_ok(),
            Stream::Ws(ws) => ws.send(Message::Binary(b.freeze())).await.is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(self.broken("the connection closed while sending"))
        }
    }

    async fn next(&mut self) -> Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(self.broken(format!("malformed packet: {e}"))),
            }
            let data: Option<Bytes> = match &mut self.stream {
                Stream::Tls(s) => {
                    let mut tmp = [0u8; 8192];
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => None,
                        Ok(n) => Some(Bytes::copy_from_slice(&tmp[..n])),
                    }
                }
                Stream::Ws(ws) => loop {
                    match ws.next().await {
                        Some(Ok(Message::Binary(b))) => break Some(b),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        _ => break None,
                    }
                },
            };
            match data {
                Some(d) => self.buf.extend_from_slice(&d),
                None => return Err(self.broken("the service closed the connection")),
            }
        }
    }

    /// PUBLISH at QoS 1 and return (status, retry-after, body) of the reply.
    async fn request(
        &mut self,
        topic: String,
        body: Vec<u8>,
        pkid: u16,
    ) -> Result<(u16, Option<u64>, String)> {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, body);
        p.pkid = pkid;
        self.send(Packet::Publish(p)).await?;
        let rid = format!("$rid={pkid}");
        loop {
            match self.next().await? {
                Packet::Publish(r) if r.topic.starts_with("$dps/registrations/res/") => {
                    let rest = &r.topic["$dps/registrations/res/".len()..];
                    let (status, query) = rest.split_once("/?").unwrap_or((rest, ""));
                    if !query.split('&').any(|kv| kv == rid) {
                        continue;
                    }
                    let status = status
                        .parse()
                        .map_err(|_| self.broken(format!("reply topic `{}`", r.topic)))?;
                    let retry = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("retry-after="))
                        .and_then(|v| v.parse().ok());
                    return Ok((
                        status,
                        retry,
                        String::from_utf8_lossy(&r.payload).into_owned(),
                    ));
                }
                // PUBACK, and anything else the service sends meanwhile.
                _ => {}
            }
        }
    }

    async fn run(
        &mut self,
        r: &Request<'_>,
        start: Instant,
        deadline: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Registration> {
        let (id_scope, reg) = (r.id_scope, r.reg);
        let ua: String =
            percent_encoding::utf8_percent_encode(USER_AGENT, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let api = if r.csr.is_some() {
            CSR_API_VERSION
        } else {
            API_VERSION
        };
        let mut c = Connect::new(reg);
        c.keep_alive = 60;
        c.set_login(
            format!("{id_scope}/registrations/{reg}/api-version={api}&ClientVersion={ua}"),
            r.password.as_str(),
        );
        self.send(Packet::Connect(c)).await?;
        match self.next().await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
            Packet::ConnAck(a) => {
                let why = match a.code {
                    ConnectReturnCode::NotAuthorized => "not authorized",
                    ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                    ConnectReturnCode::BadClientId => "client ID refused",
                    ConnectReturnCode::ServiceUnavailable => "service unavailable",
                    ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 refused",
                    ConnectReturnCode::Success => "success",
                };
                return Err(Error::Service(format!(
                    "DPS refused the MQTT connection ({why}); check --id-scope and that the registration ID is the certificate's CN"
                )));
            }
            other => {
                return Err(self.broken(format!(
                    "expected CONNACK, got a {} packet",
                    packet_name(&other)
                )));
            }
        }
        self.send(Packet::Subscribe(Subscribe::new(
            "$dps/registrations/res/#",
            QoS::AtLeastOnce,
        )))
        .await?;
        let mut body = serde_json::json!({ "registrationId": reg });
        if let Some(p) = r.payload {
            body["payload"] = p.clone();
        }
        if let Some(csr) = r.csr {
            body["csr"] = Value::String(csr.to_string());
        }
        let mut pkid = 1u16;
        let mut reply = self
            .request(
                "$dps/registrations/PUT/iotdps-register/?$rid=1".into(),
                body.to_string().into_bytes(),
                pkid,
            )
            .await?;
        loop {
            let (status, retry, text) = reply;
            if status >= 300 {
                let code = reqwest::StatusCode::from_u16(status)
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
                return Err(Error::from(HttpError::Status {
                    service: "DPS",
                    status: code,
                    detail: ErrorDetail::parse(&text),
                    hint: if r.symmetric {
                        super::client::symmetric_hint(code)
                    } else {
                        super::client::device_hint(code)
                    },
                    body: text,
                }));
            }
            let v: Value =
                serde_json::from_str(&text).map_err(|_| self.broken("the reply is not JSON"))?;
            let st =
                RegistrationStatus::parse(v.get("status").and_then(Value::as_str).unwrap_or(""));
            if st.is_final() {
                let _ = self.send(Packet::Disconnect).await;
                return Ok(Registration {
                    status: st,
                    body: v,
                });
            }
            progress(if st.as_str().is_empty() {
                "waiting"
            } else {
                st.as_str()
            });
            let wait = Duration::from_secs(retry.unwrap_or(2));
            if start.elapsed() + wait > deadline {
                return Err(Error::Service(format!(
                    "DPS was still `{st}` after {} s; try again later or raise --timeout",
                    deadline.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            let op = v.get("operationId").and_then(Value::as_str).unwrap_or("");
            pkid = pkid.wrapping_add(1).max(1);
            reply = self
                .request(
                    format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={pkid}&operationId={op}"),
                    b" ".to_vec(),
                    pkid,
                )
                .await?;
        }
    }
}

/// An MQTT packet's type, for messages (its Debug form holds the payload).
fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
