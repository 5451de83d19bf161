//! `pki emulator`: a local Azure IoT Hub Device Provisioning Service.
//!
//! An HTTPS listener serves the service API (enrollment groups, individual
//! enrollments, registration states), the device registration API and the
//! ARM CA-certificate (proof-of-possession) calls, following
//! `../shared/reference/dps-protocol.md`. The modules:
//!
//! - [`listener`]: the TLS accept loop every listener shares (handshake
//!   timeout, client-chain capture, one connection cap, graceful shutdown);
//! - [`router`]: HTTP request parsing, api-version and body limits, dispatch;
//! - [`http`]: the leaf request/response types handlers share (no circle);
//! - [`service`], [`arm`]: the service and certificate-store APIs (the
//!   service SAS check lives in `service`);
//! - [`registration`]: the transport-free device registration core
//!   (attestation, enrollment selection, allocation, reprovisioning, every
//!   refusal), which [`device`] (HTTPS) adapts;
//! - [`mqtt`], [`mqtt_session`]: the MQTT transport of the device API
//!   (MQTT 3.1.1 over TLS on `--mqtt-listen`, and over WebSockets at
//!   `/$iothub/websocket` on the HTTPS listener) over the same core;
//! - [`issuance`]: certificate issuance from a CSR (ADR certificate
//!   policies: a P-384 root and issuing CA each, durable under `--data`);
//! - [`attest`]: X.509 chain checks and DPS's enrollment selection rules;
//! - [`certs`]: certificate fields (PEM, base64 DER, base64 PEM) and `info`;
//! - [`store`]: the redb database (durable group commit, or in memory);
//! - [`tls`]: rustls with optional client certificates;
//! - [`model`], [`errors`]: JSON records and DPS-shaped errors.
//!
//! Start-up ([`prepare`]) creates or reuses, under `--data`, a TLS CA and
//! server certificate, the SAS key of policy `provisioningserviceowner` and
//! an ID scope; [`serve`] then runs until Ctrl-C or SIGTERM.

pub mod api_versions;
pub mod arm;
pub mod attest;
pub mod certs;
pub mod clock;
pub mod device;
pub mod errors;
pub mod http;
pub mod issuance;
pub mod listener;
pub mod model;
pub mod mqtt;
pub mod mqtt_session;
pub mod registration;
pub mod router;
pub mod service;
pub mod status;
pub mod store;
pub mod tls;
pub mod truststore;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{Mode, ensure_dir, write_atomic};
use crate::issue::{Ca, issue};
use crate::keys::{KeyType, private_key_pem};
use crate::profile::Profile;

/// The one SAS policy of the service API.
pub const POLICY: &str = "provisioningserviceowner";
/// The hub devices are assigned to when neither the enrollment nor `--iot-hub` names one.
pub const DEFAULT_HUB: &str = "emulated-hub.azure-devices.net";
/// Validity of the emulator's TLS CA and server certificate.
const TLS_DAYS: u32 = 3650;
/// Open connections at most; further clients wait in the kernel's backlog,
/// so stalled clients cannot exhaust file descriptors and wedge `accept`.
const MAX_CONNECTIONS: usize = 4096;
/// How long to wait for in-flight requests on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Most operation results remembered for polling; older ones are forgotten.
const MAX_OPERATIONS: usize = 200_000;

/// What `pki emulator` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Address of the MQTT listener (port 0 picks a free port); `None`: no MQTT.
    pub mqtt_listen: Option<String>,
    /// Extra host names for the server certificate.
    pub hostnames: Vec<String>,
    /// Directory for the TLS material, the settings and the database.
    pub data: PathBuf,
    /// Keep the database in memory (TLS material still lives in `data`).
    pub in_memory: bool,
    /// SAS key of `provisioningserviceowner` (base64); overrides the stored one.
    pub sas_key: Option<String>,
    /// ID scope; overrides the stored one.
    pub id_scope: Option<String>,
    /// Hubs for enrollments that name none.
    pub iot_hubs: Vec<String>,
    /// Require a verified CA certificate (certificate store) in every device chain.
    pub require_verified_ca: bool,
    /// Refuse api-versions the real service has retired (400), instead of warning.
    pub strict_api_versions: bool,
    /// Print one stderr line per refused request and per registration.
    pub log: bool,
    /// Certificate policies to create (or re-date) at start-up.
    pub certificate_policies: Vec<issuance::Declared>,
    /// `--clock`: the instant (or offset from real time) validity is checked at.
    pub clock: Option<crate::validity::TimeSpec>,
}

/// Settings kept in `<data>/emulator.json` (mode 0600: it holds the SAS key).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    id_scope: String,
    sas_key: String,
    /// Host names the server certificate covers.
    hostnames: Vec<String>,
}

/// Everything a client needs to talk to the emulator; printed at start-up.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// Service connection string (holds the SAS key).
    pub connection_string: String,
    pub id_scope: String,
    /// The PEM file clients must trust.
    pub ca_file: PathBuf,
    /// The same CA as a Java trust store (PKCS#12, password [`truststore::PASSWORD`]).
    pub trust_store: PathBuf,
    pub trust_store_password: &'static str,
    /// The address actually bound.
    pub listen: SocketAddr,
    /// The MQTT listener's address (`null` with `--no-mqtt`).
    pub mqtt_listen: Option<SocketAddr>,
    /// `HostName` of the connection string (`localhost`, or `localhost:port`).
    pub service_host: String,
    /// Base URL of the device registration API.
    pub device_endpoint: String,
    /// The status page's ready link (its token is derived from the SAS
    /// key, not the key itself).
    pub status_page: String,
    /// Certificate policies (names, validity, exported root file).
    pub certificate_policies: Vec<issuance::PolicyInfo>,
    /// The emulator clock at start-up, when `--clock` moved it off real time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

/// A prepared emulator: listener bound, state open.
pub struct Prepared {
    pub started: Started,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mqtt: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
    state: Arc<State>,
    signals: Signals,
}

/// Shared state of a running emulator.
pub struct State {
    pub store: store::Store,
    pub sas_key: String,
    pub id_scope: String,
    pub iot_hubs: Vec<String>,
    pub require_verified_ca: bool,
    pub strict_api_versions: bool,
    pub api_warnings: api_versions::Warned,
    pub log: bool,
    pub operations: Mutex<Operations>,
    /// Recent registration attempts, for the status page.
    pub attempts: status::Attempts,
    pub issuance: issuance::Issuance,
    /// The one "now" of every validity check (`--clock`, `PUT /emulator/clock`).
    pub clock: clock::Clock,
}

/// Results of registrations, by operation id, for the status polls.
#[derive(Default)]
pub struct Operations {
    map: HashMap<String, registration::Operation>,
    order: VecDeque<String>,
}

impl Operations {
    /// Remembers an operation, forgetting the oldest beyond [`MAX_OPERATIONS`].
    pub fn insert(&mut self, id: String, op: registration::Operation) {
        if self.order.len() >= MAX_OPERATIONS
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(id.clone());
        self.map.insert(id, op);
    }

    /// Looks an operation up.
    pub fn get(&self, id: &str) -> Option<registration::Operation> {
        self.map.get(id).cloned()
    }
}

/// Creates or loads the TLS material and settings, opens the store and binds the listener.
pub async fn prepare(opts: &Options) -> Result<Prepared> {
    // Install aws-lc-rs as the process default too, so nothing else picks another provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ensure_dir(&opts.data, Mode::Secret)?;
    let mut settings = load_or_create_settings(&opts.data)?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in &opts.hostnames {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.clone());
        }
    }
    let (chain_pem, key_pem) = tls_material(&opts.data, &mut settings, &names)?;
    if let Some(k) = &opts.sas_key {
        if crate::dps::sas::decode_key(k).is_none() {
            return Err(Error::input("--sas-key is not valid base64"));
        }
        settings.sas_key = k.clone();
    }
    if let Some(s) = &opts.id_scope {
        if !valid_id_scope(s) {
            return Err(Error::input(format!(
                "--id-scope `{s}` is not an ID scope: expected `0ne` followed by 8 hex digits, e.g. 0ne00023C3C"
            )));
        }
        settings.id_scope = s.clone();
    }
    let tls = tls::server_config(&chain_pem, &key_pem, &[b"http/1.1"])?;
    let trust_store = truststore::write(&opts.data)?;
    let store = if opts.in_memory {
        store::Store::in_memory()?
    } else {
        store::Store::open(&opts.data.join("dps.redb"))?
    };
    let listen: SocketAddr = opts.listen.parse().map_err(|_| {
        Error::input(format!(
            "--listen `{}` is not an address: give IP:PORT, e.g. 127.0.0.1:8443 (port 0 picks a free one)",
            opts.listen
        ))
    })?;
    let listener = bind(listen, "--listen").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::failed(format!("cannot read the bound address: {e}")))?;
    let mqtt = match &opts.mqtt_listen {
        None => None,
        Some(m) => {
            let a: SocketAddr = m.parse().map_err(|_| {
                Error::input(format!(
                    "--mqtt-listen `{m}` is not an address: give IP:PORT, e.g. 127.0.0.1:8883 (port 0 picks a free one)"
                ))
            })?;
            let l = bind(a, "--mqtt-listen").await?;
            Some((l, tls::server_config(&chain_pem, &key_pem, &[])?))
        }
    };
    let mqtt_addr = match &mqtt {
        Some((l, _)) => Some(
            l.local_addr()
                .map_err(|e| Error::failed(format!("cannot read the bound address: {e}")))?,
        ),
        None => None,
    };
    if !addr.ip().is_loopback() {
        // The management (ARM) calls accept any bearer token: fine for a test
        // tool on loopback, not on a network others can reach.
        log_line(&format!(
            "warning: listening on {addr}, not a loopback address: anyone who can reach it can use the certificate-store calls, which accept any bearer token"
        ));
    }
    let service_host = if addr.port() == 443 {
        "localhost".to_string()
    } else {
        format!("localhost:{}", addr.port())
    };
    let issuance = issuance::Issuance::open(&opts.data, &opts.certificate_policies)?;
    let clock = clock::Clock::new(opts.clock)?;
    let ca_file = std::path::absolute(opts.data.join("ca.pem")).unwrap_or(opts.data.join("ca.pem"));
    let started = Started {
        connection_string: format!(
            "HostName={service_host};SharedAccessKeyName={POLICY};SharedAccessKey={}",
            settings.sas_key
        ),
        id_scope: settings.id_scope.clone(),
        ca_file,
        trust_store,
        trust_store_password: truststore::PASSWORD,
        listen: addr,
        mqtt_listen: mqtt_addr,
        device_endpoint: format!("https://{service_host}"),
        status_page: format!(
            "https://{service_host}/?token={}",
            status::token_for(&settings.sas_key)
        ),
        service_host,
        certificate_policies: issuance.list(),
        clock: clock.is_set().then(|| crate::validity::show(clock.now())),
    };
    let state = Arc::new(State {
        store,
        sas_key: settings.sas_key,
        id_scope: settings.id_scope,
        iot_hubs: opts.iot_hubs.clone(),
        require_verified_ca: opts.require_verified_ca,
        strict_api_versions: opts.strict_api_versions,
        api_warnings: api_versions::Warned::default(),
        log: opts.log,
        operations: Mutex::new(Operations::default()),
        attempts: status::Attempts::default(),
        issuance,
        clock,
    });
    Ok(Prepared {
        started,
        listener,
        tls,
        mqtt,
        state,
        signals: Signals::register()?,
    })
}

/// The default MQTT address for `--listen`: 8883 on the same IP, or a free
/// port when `--listen` asks for one (throwaway instances must not collide).
pub fn default_mqtt_listen(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => SocketAddr::new(a.ip(), 0).to_string(),
        Ok(a) => SocketAddr::new(a.ip(), 8883).to_string(),
        Err(_) => "127.0.0.1:8883".into(),
    }
}

/// Binds a listener; `flag` names the option in the message.
async fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024, such as 443 for the Node SDKs, need root or CAP_NET_BIND_SERVICE)"
            }
            std::io::ErrorKind::AddrInUse if flag == "--mqtt-listen" => {
                " (another emulator or MQTT broker? pass --mqtt-listen 127.0.0.1:0 or --no-mqtt)"
            }
            _ => "",
        };
        Error::failed(format!("cannot listen on {addr} ({flag}): {e}{hint}"))
    })
}

/// One log line on stderr, with a UTC timestamp.
pub fn log_line(text: &str) {
    eprintln!("{} pki emulator: {text}", model::now_utc_string());
}

fn valid_id_scope(s: &str) -> bool {
    s.len() == 11
        && s.is_ascii()
        && s[..3].eq_ignore_ascii_case("0ne")
        && s[3..].chars().all(|c| c.is_ascii_hexdigit())
}

fn load_or_create_settings(data: &Path) -> Result<Settings> {
    let path = data.join("emulator.json");
    if let Ok(text) = std::fs::read(&path) {
        return serde_json::from_slice(&text).map_err(|e| {
            Error::input(format!(
                "{} is damaged ({e}); delete it to start a fresh emulator",
                path.display()
            ))
        });
    }
    let scope = model::random_bytes::<4>();
    let settings = Settings {
        id_scope: format!("0ne{}", model::hex_upper(&scope)),
        sas_key: base64::engine::general_purpose::STANDARD.encode(model::random_bytes::<32>()),
        hostnames: Vec::new(),
    };
    save_settings(data, &settings)?;
    Ok(settings)
}

fn save_settings(data: &Path, settings: &Settings) -> Result<()> {
    let text = serde_json::to_vec_pretty(settings).map_err(|e| Error::failed(e.to_string()))?;
    write_atomic(&data.join("emulator.json"), &text, Mode::Secret)
}

/// Returns (server certificate + CA chain PEM, server key PEM), creating the
/// CA on first start and re-issuing the server certificate when new host
/// names appear, or when the stored one is damaged.
///
/// The two kinds of files are treated differently on purpose. `server.pem`
/// and `server.key.pem` are derived: clients trust the CA (`ca.pem`,
/// `truststore.p12`), never the server certificate, and the emulator already
/// re-issues it whenever a host name is added. So a damaged, truncated or
/// empty one is replaced, with a warning naming the file, and nothing a
/// client trusts changes (rustls used to fail on it with "peer sent no
/// certificates"). A damaged CA is refused instead: a new one would silently
/// break every client configured to trust the old `ca.pem`, so the user decides.
fn tls_material(
    data: &Path,
    settings: &mut Settings,
    names: &[String],
) -> Result<(String, String)> {
    let ca_path = data.join("ca.pem");
    let ca_key_path = data.join("ca.key.pem");
    let server_path = data.join("server.pem");
    let server_key_path = data.join("server.key.pem");
    let covered = names
        .iter()
        .all(|n| settings.hostnames.iter().any(|h| h.eq_ignore_ascii_case(n)));
    if covered
        && let (Ok(chain), Ok(key)) = (
            std::fs::read_to_string(&server_path),
            std::fs::read_to_string(&server_key_path),
        )
    {
        let problem = if crate::cert::read_certificates(chain.as_bytes(), "").is_err() {
            format!("{} is damaged or empty", server_path.display())
        } else if crate::keys::load_private_key(key.as_bytes(), None, "", "").is_err() {
            format!("{} is damaged or empty", server_key_path.display())
        } else if tls::server_config(&chain, &key, &[]).is_err() {
            format!(
                "{} does not belong to {}",
                server_key_path.display(),
                server_path.display()
            )
        } else {
            return Ok((chain, key));
        };
        log_line(&format!(
            "warning: {problem}; issuing a new server certificate under the same CA ({}), which clients already trust",
            ca_path.display()
        ));
    }
    let ca = match (std::fs::read(&ca_path), std::fs::read(&ca_key_path)) {
        (Ok(cert_pem), Ok(key_pem)) => {
            let what = ca_path.display().to_string();
            let der = crate::cert::read_first(&cert_pem, &what).map_err(|e| damaged_ca(data, e))?;
            crate::keys::load_private_key(&key_pem, None, &ca_key_path.display().to_string(), "")
                .and_then(|key| Ca::from_parts(&der, key, &what))
                .map_err(|e| damaged_ca(data, e))?
        }
        _ => {
            let key = KeyType::EcP256.generate()?;
            let ca = Ca::create(
                &Profile::RootCa { path_len: 0 },
                "pki emulator TLS CA",
                &crate::validity::Validity::days(TLS_DAYS),
                key,
                None,
            )?;
            write_atomic(
                &ca_key_path,
                private_key_pem(ca.key(), None)?.as_bytes(),
                Mode::Secret,
            )?;
            write_atomic(&ca_path, ca.cert.pem.as_bytes(), Mode::Public)?;
            ca
        }
    };
    let mut all: Vec<String> = settings.hostnames.clone();
    for n in names {
        if !all.iter().any(|h| h.eq_ignore_ascii_case(n)) {
            all.push(n.clone());
        }
    }
    let key = KeyType::EcP256.generate()?;
    let cert = issue(
        &Profile::TlsServer { names: all.clone() },
        "localhost",
        &crate::validity::Validity::days(TLS_DAYS),
        &key,
        Some(&ca),
    )?;
    let chain = format!("{}{}", cert.pem, ca.cert.pem);
    let key_pem = private_key_pem(&key, None)?;
    write_atomic(&server_key_path, key_pem.as_bytes(), Mode::Secret)?;
    write_atomic(&server_path, chain.as_bytes(), Mode::Public)?;
    settings.hostnames = all;
    save_settings(data, settings)?;
    Ok((chain, key_pem))
}

/// The one line for an unusable TLS CA in `data` (`problem` says what is
/// wrong): restore it, or delete both files for a new CA, which every
/// client must then trust again; never replaced silently (see [`tls_material`]).
pub(crate) fn damaged_ca(data: &Path, problem: Error) -> Error {
    Error::input(format!(
        "the emulator's TLS CA is unusable: {problem}; restore it, or delete {} and {} so the emulator makes a new CA (clients must then trust the new ca.pem)",
        data.join("ca.pem").display(),
        data.join("ca.key.pem").display()
    ))
}

/// Serves until Ctrl-C or SIGTERM, then lets in-flight requests finish.
pub async fn serve(prepared: Prepared) -> Result<()> {
    let Prepared {
        listener,
        tls,
        mqtt,
        state,
        signals,
        ..
    } = prepared;
    let server = listener::Server::new(MAX_CONNECTIONS);
    let mut tasks = Vec::new();
    if let Some((l, config)) = mqtt {
        let state = state.clone();
        tasks.push(server.listen(
            l,
            tokio_rustls::TlsAcceptor::from(config),
            move |tls, peer, stop| mqtt::serve_tls(tls, peer, state.clone(), stop),
        ));
    }
    tasks.push(server.listen(
        listener,
        tokio_rustls::TlsAcceptor::from(tls),
        move |tls, peer, stop| serve_https(tls, peer, state.clone(), stop),
    ));
    signals.wait().await;
    for t in tasks {
        t.abort();
    }
    server.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Serves HTTP/1.1 on one TLS connection, and MQTT over WebSockets on
/// [`mqtt::WEBSOCKET_PATH`] (and Paho's `/mqtt`, see [`mqtt::is_websocket`]).
async fn serve_https(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: http::PeerChain,
    state: Arc<State>,
    mut stop: listener::Stop,
) {
    // Each WebSocket session holds a sender; the connection's slot is
    // released only when the last one is dropped.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let ws_stop = stop.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        let peer = peer.clone();
        let upgrade = req
            .headers()
            .get(hyper::header::UPGRADE)
            .and_then(|v| v.to_str().ok());
        let ws = mqtt::is_websocket(req.uri().path(), upgrade)
            .then(|| (ws_stop.clone(), done_tx.clone()));
        async move {
            let resp = match ws {
                Some((stop, done)) => mqtt::websocket(req, peer, state, stop, done).await,
                None => router::handle(state, peer, req).await,
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
        .with_upgrades();
    let mut conn = Box::pin(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
    // The service (and its sender) goes with the connection.
    drop(conn);
    let _ = done_rx.recv().await;
}

/// Ctrl-C and SIGTERM listeners, registered before the start-up line is
/// printed: a supervisor may signal as soon as it has read that line, and a
/// handler installed later would let the default action kill the process.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let err =
                |e: std::io::Error| Error::failed(format!("cannot install signal handlers: {e}"));
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).map_err(err)?,
                terminate: signal(SignalKind::terminate()).map_err(err)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
