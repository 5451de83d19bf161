//! The MQTT transport of the device API: MQTT 3.1.1 over TLS (port 8883)
//! and over WebSockets (`/$iothub/websocket` on the HTTPS listener,
//! subprotocol `mqtt`; also `/mqtt` with a WebSocket upgrade, Paho's default
//! path, which the Java device SDK asks for).
//!
//! Each connection runs a [`Session`] (the packet rules, no I/O) and carries
//! out its actions: packets are written as they come, so a PUBACK always
//! precedes its reply; registrations and status polls go through the same
//! [`super::registration`] core as HTTPS, with the CONNECT password as the
//! SAS token and the TLS chain as the X.509 credential, so refusals read the
//! same on both transports. A register body's `csr` reaches the core as it
//! does over HTTPS (DPS certificate issuance: the reply carries
//! `issuedCertificateChain`); a status poll carrying `csr` is a 400, as on HTTPS. Timeouts: CONNECT within [`CONNECT_TIMEOUT`];
//! then silence longer than 1.5 × keep-alive (or [`IDLE_TIMEOUT`] when the
//! client asks for none) closes the connection, and so does a peer that
//! stops reading for [`WRITE_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{Request, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::State;
use super::errors::DpsError;
use super::http::{PeerChain, error_response};
use super::listener::Stop;
use super::mqtt_session::{Action, Identity, MAX_PACKET, Session};
use super::registration::{self, Presented, RETRY_AFTER, parse_registration_id};

/// The WebSocket path of MQTT over WebSockets (what the SDKs dial on 443).
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
/// Eclipse Paho's default WebSocket path, taken when the URI names none:
/// the Java device SDK (2.x) dials `wss://{host}:443` and so asks for `/mqtt`.
pub const PAHO_WEBSOCKET_PATH: &str = "/mqtt";

/// Whether `path` is MQTT over WebSockets: [`WEBSOCKET_PATH`], or
/// [`PAHO_WEBSOCKET_PATH`] when the request asks for a WebSocket upgrade.
pub fn is_websocket(path: &str, upgrade: Option<&str>) -> bool {
    path == WEBSOCKET_PATH
        || (path == PAHO_WEBSOCKET_PATH
            && upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")))
}
/// How long a client may take to send CONNECT after the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that asked for no keep-alive may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a write may wait for a peer that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A byte stream (TLS) or a message stream (WebSocket) carrying MQTT.
enum Transport {
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
    Ws(Box<WebSocket>),
}

impl Transport {
    /// The next bytes received; `None` at the end of the stream.
    async fn recv(&mut self, buf: &mut [u8]) -> Option<Bytes> {
        match self {
            Transport::Tls(s) => match s.read(buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
            },
            Transport::Ws(ws) => loop {
                match ws.recv().await? {
                    Ok(Message::Binary(b)) => return Some(b),
                    // Ping/pong are answered by the WebSocket layer.
                    Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                    Ok(Message::Text(_) | Message::Close(_)) | Err(_) => return None,
                }
            },
        }
    }

    async fn send(&mut self, data: Bytes) -> bool {
        let write = async {
            match self {
                Transport::Tls(s) => s.write_all(&data).await.is_ok() && s.flush().await.is_ok(),
                Transport::Ws(ws) => ws.send(Message::Binary(data)).await.is_ok(),
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .unwrap_or(false)
    }
}

/// Serves MQTT on one TLS connection of the MQTT listener.
pub async fn serve_tls(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: PeerChain,
    state: Arc<State>,
    stop: Stop,
) {
    serve(Transport::Tls(Box::new(tls)), peer, state, stop).await;
}

/// Answers a request for [`WEBSOCKET_PATH`] (or Paho's `/mqtt`): the WebSocket upgrade
/// (subprotocol `mqtt`), then MQTT on it. `done` is held until the session
/// ends, so the HTTPS connection's slot stays taken meanwhile.
pub async fn websocket(
    req: Request<hyper::body::Incoming>,
    peer: PeerChain,
    state: Arc<State>,
    stop: Stop,
    done: tokio::sync::mpsc::Sender<()>,
) -> Response<Body> {
    let (mut parts, _) = req.into_parts();
    let path = parts.uri.path().to_string();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws
            .protocols(["mqtt"])
            .max_message_size(MAX_PACKET + 16)
            .on_upgrade(move |socket| async move {
                let _done = done;
                serve(Transport::Ws(Box::new(socket)), peer, state, stop).await;
            }),
        Err(rejection) => {
            let e = DpsError::bad_request(format!(
                "{path} is MQTT over WebSockets and needs a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Protocol: mqtt): {rejection}"
            ));
            if state.log {
                super::log_line(&format!("GET {path} -> {e}"));
            }
            error_response(&e)
        }
    }
}

async fn serve(mut t: Transport, peer: PeerChain, state: Arc<State>, mut stop: Stop) {
    let mut session = Session::new();
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let wait = match session.identity() {
            None => CONNECT_TIMEOUT,
            Some(id) if id.keep_alive > 0 => Duration::from_millis(u64::from(id.keep_alive) * 1500),
            Some(_) => IDLE_TIMEOUT,
        };
        let data = tokio::select! {
            r = tokio::time::timeout(wait, t.recv(&mut buf)) => match r {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(_) => {
                    if state.log {
                        let what = if session.identity().is_none() { "no CONNECT" } else { "silence past the keep-alive" };
                        super::log_line(&format!("MQTT {}: closed after {} s of {what}", who(&session), wait.as_secs()));
                    }
                    break;
                }
            },
            () = stop.stopped() => break,
        };
        // One write per batch: a PUBACK and its reply go out in one TLS
        // record, in order (PUBACK first, as C# requires).
        let mut out = bytes::BytesMut::new();
        let mut close = false;
        for action in session.receive(&data) {
            let reply = match action {
                Action::Send(b) => b,
                Action::Close(why) => {
                    if state.log {
                        super::log_line(&format!("MQTT {}: closed: {why}", who(&session)));
                    }
                    close = true;
                    break;
                }
                Action::Register { rid, body } => {
                    let id = session.identity().cloned().unwrap_or_else(unknown);
                    let r = register(&state, &id, &peer, &body).await;
                    answer(&state, &session, &rid, "register", &id, r)
                }
                Action::Poll {
                    rid,
                    operation_id,
                    body,
                } => {
                    let id = session.identity().cloned().unwrap_or_else(unknown);
                    let r = poll(&state, &id, &peer, &operation_id, &body);
                    answer(&state, &session, &rid, "operation status", &id, r)
                }
                Action::Refuse {
                    rid,
                    status,
                    code,
                    message,
                } => {
                    let id = session.identity().cloned().unwrap_or_else(unknown);
                    let e = DpsError {
                        status,
                        code,
                        message,
                        gateway: false,
                    };
                    answer(&state, &session, &rid, "request", &id, Err(e))
                }
            };
            out.extend_from_slice(&reply);
        }
        if !out.is_empty() && !t.send(out.freeze()).await {
            break 'conn;
        }
        if close {
            break;
        }
        if session.is_closed() {
            break;
        }
    }
    if let Transport::Tls(mut s) = t {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    }
}

fn unknown() -> Identity {
    Identity {
        scope: String::new(),
        registration_id: String::new(),
        sas: None,
        keep_alive: 0,
    }
}

fn who(session: &Session) -> String {
    session
        .identity()
        .map(|i| format!("`{}`", i.registration_id))
        .unwrap_or_else(|| "client".into())
}

/// (status, retry-after, body) of a successful request.
type Reply = (u16, u32, serde_json::Value);

async fn register(
    state: &State,
    id: &Identity,
    peer: &PeerChain,
    body: &[u8],
) -> Result<Reply, DpsError> {
    let reg = parse_registration_id(&id.registration_id)?;
    let presented = Presented {
        sas: id.sas.as_deref(),
        chain: &peer.0,
    };
    let a = registration::register(state, &id.scope, &reg, presented, body).await?;
    Ok((202, a.retry_after, a.body()))
}

fn poll(
    state: &State,
    id: &Identity,
    peer: &PeerChain,
    operation_id: &str,
    body: &[u8],
) -> Result<Reply, DpsError> {
    let reg = parse_registration_id(&id.registration_id)?;
    registration::refuse_csr_in_status_lookup(body)?;
    let presented = Presented {
        sas: id.sas.as_deref(),
        chain: &peer.0,
    };
    let s = registration::operation_status(state, &id.scope, &reg, operation_id, presented)?;
    Ok((200, RETRY_AFTER, s.body()))
}

/// Encodes the reply PUBLISH; refusals are logged as HTTPS logs them.
fn answer(
    state: &State,
    session: &Session,
    rid: &str,
    what: &str,
    id: &Identity,
    r: Result<Reply, DpsError>,
) -> Bytes {
    match r {
        Ok((status, retry, body)) => {
            session.reply(rid, status, retry, body.to_string().into_bytes())
        }
        Err(e) => {
            if state.log {
                super::log_line(&format!("MQTT {what} of `{}` -> {e}", id.registration_id));
            }
            let body = e
                .body(&DpsError::new_tracking_id())
                .to_string()
                .into_bytes();
            session.reply(rid, e.status, RETRY_AFTER, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_paths() {
        assert!(is_websocket(WEBSOCKET_PATH, None));
        assert!(is_websocket("/mqtt", Some("WebSocket")));
        assert!(!is_websocket("/mqtt", None));
        assert!(!is_websocket("/mqtt/x", Some("websocket")));
        assert!(!is_websocket(
            "/0ne00000001/registrations/x/register",
            Some("websocket")
        ));
    }
}
