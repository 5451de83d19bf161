//! A tiny scripted HTTPS server standing in for DPS, for faults the emulator
//! cannot easily produce (429s, 500s, races, wrong keys).
//!
//! It speaks just enough HTTP/1.1: one request per connection
//! (`Connection: close`), bodies by `Content-Length`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pki::issue::{Ca, issue};
use pki::keys::KeyType;
use pki::profile::Profile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the fake server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-cased header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Certificates the client presented (device registration).
    pub peer_certs: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A scripted reply.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.to_string(),
        }
    }
    pub fn with(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn dps_error(status: u16, code: u32, message: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"errorCode": code, "trackingId": "track-123", "message": message,
                "timestampUtc": "2025-01-01T00:00:00.0000000Z"}),
        )
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A running fake HTTPS server.
pub struct Fake {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The CA that signed the server's certificate (for `--ca-file`).
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Fake {
    /// Starts a server on 127.0.0.1:0 whose replies come from `handler`
    /// (given the request and its 0-based index). `client_roots`: CA
    /// certificates (DER) accepted for optional TLS client authentication.
    pub fn start(
        client_roots: Vec<Vec<u8>>,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(
            &Profile::RootCa { path_len: 0 },
            "Fake DPS TLS CA",
            &pki::validity::Validity::days(2),
            KeyType::EcP256.generate().unwrap(),
            None,
        )
        .unwrap();
        let key = KeyType::EcP256.generate().unwrap();
        let cert = issue(
            &Profile::TlsServer {
                names: vec!["localhost".into(), "127.0.0.1".into()],
            },
            "localhost",
            &pki::validity::Validity::days(2),
            &key,
            Some(&ca),
        )
        .unwrap();
        let ca_file = dir.path().join("tls-ca.pem");
        std::fs::write(&ca_file, &ca.cert.pem).unwrap();

        let verifier = if client_roots.is_empty() {
            rustls::server::WebPkiClientVerifier::no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for r in client_roots {
                roots.add(r.into()).unwrap();
            }
            rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .unwrap()
        };
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der.clone().into()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialized_der().to_vec().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let seen2 = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer_certs = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.len())
                        .unwrap_or(0);
                    let Some(req) = read_request(&mut tls, peer_certs).await else {
                        return;
                    };
                    let index = {
                        let mut s = seen.lock().unwrap();
                        s.push(req.clone());
                        s.len() - 1
                    };
                    let reply = handler(&req, index);
                    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str(&format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                        reply.body.len(),
                        reply.body
                    ));
                    let _ = tls.write_all(out.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Fake {
            addr,
            seen,
            ca_file,
            _dir: dir,
            _rt: rt,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    peer_certs: usize,
) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
        at: Instant::now(),
        peer_certs,
    })
}
