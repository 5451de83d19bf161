//! The MQTT 3.1.1 session of one DPS device connection, without I/O.
//!
//! [`Session::receive`] takes the bytes that arrived and returns what to do,
//! in order: packets to send, registrations and status polls to run through
//! [`super::registration`], or a close with its reason. Packets are decoded
//! and encoded by `rumqttc::mqttbytes::v4` (a kept codec); this module holds
//! only DPS's rules on top (contract §7.5, sdk-wire.md B.1/B.2):
//!
//! - CONNECT first, once: client id = registration ID, username
//!   `{idScope}/registrations/{registrationId}/api-version={v}&ClientVersion={ua}`
//!   (unknown keys ignored), password absent (X.509) or a SAS token. CONNACK
//!   return code 0 with session-present 0, even for clean=false.
//! - SUBSCRIBE → SUBACK granting QoS 1; UNSUBSCRIBE → UNSUBACK; PINGREQ →
//!   PINGRESP; a PUBACK (even id 0, from C#) is ignored; DISCONNECT closes.
//! - PUBLISH QoS 0/1 to `$dps/registrations/PUT/iotdps-register/?$rid={rid}`
//!   or `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`:
//!   PUBACK first (QoS 1), then the request; [`Session::reply`] encodes the
//!   answer on `$dps/registrations/res/{status}/?$rid={rid}&retry-after={n}`.
//!
//! Anything else (garbage, a packet before CONNECT, a second CONNECT, QoS 2,
//! wildcards, `$` or NUL in a topic, oversized packets) closes the session.
//! Never panics on input: the fuzz target `fuzz/fuzz_targets/mqtt_session.rs`
//! and its corpus replay test hold it to that.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};

use super::api_versions;

/// Largest packet accepted (remaining length): a 256 KiB body plus topic.
pub const MAX_PACKET: usize = 256 * 1024 + 4096;
/// Longest topic name accepted.
pub const MAX_TOPIC: usize = 1024;
/// Longest `$rid` echoed.
const MAX_RID: usize = 128;
const REGISTER: &str = "$dps/registrations/PUT/iotdps-register";
const POLL: &str = "$dps/registrations/GET/iotdps-get-operationstatus";

/// Who connected, from CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The ID scope of the username.
    pub scope: String,
    /// The registration ID of the username (checked against the DPS rule per request).
    pub registration_id: String,
    /// The CONNECT password: a SAS token, for symmetric-key devices.
    pub sas: Option<String>,
    /// Keep-alive in seconds (0: none).
    pub keep_alive: u16,
}

/// What the connection should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes (one encoded packet).
    Send(Bytes),
    /// Run a registration; answer with [`Session::reply`].
    Register { rid: String, body: Bytes },
    /// Run a status poll; answer with [`Session::reply`]. The body is kept
    /// so a `csr` in it can be refused, as on HTTPS.
    Poll {
        rid: String,
        operation_id: String,
        body: Bytes,
    },
    /// Answer a request the rules refused before it reached the core
    /// (unknown topic): status, DPS code and message.
    Refuse {
        rid: String,
        status: u16,
        code: u32,
        message: String,
    },
    /// Close the connection; the reason is for the log.
    Close(String),
}

/// One connection's MQTT state.
#[derive(Debug, Default)]
pub struct Session {
    buf: BytesMut,
    identity: Option<Identity>,
    closed: bool,
}

impl Session {
    /// A session waiting for CONNECT.
    pub fn new() -> Session {
        Session::default()
    }

    /// The device, once CONNECT was accepted.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Whether the session has ended (after a [`Action::Close`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feeds received bytes; returns the actions for every complete packet.
    pub fn receive(&mut self, data: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.buf.extend_from_slice(data);
        // Not MQTT at all (TLS to the wrong port, HTTP, noise): say so at
        // once instead of waiting for a "remaining length" that never comes.
        if self.identity.is_none()
            && let Some(&b) = self.buf.first()
            && b != 0x10
        {
            self.close(
                &mut out,
                format!("the first byte 0x{b:02x} is not an MQTT CONNECT"),
            );
            return out;
        }
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => {
                    self.on_packet(p, &mut out);
                    if self.closed {
                        self.buf.clear();
                        break;
                    }
                }
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(CodecError::PayloadSizeLimitExceeded(n)) => {
                    self.close(
                        &mut out,
                        format!("packet of {n} bytes is over the limit of {MAX_PACKET}"),
                    );
                    break;
                }
                Err(e) => {
                    self.close(&mut out, format!("malformed MQTT packet: {e}"));
                    break;
                }
            }
        }
        out
    }

    fn close(&mut self, out: &mut Vec<Action>, why: String) {
        self.closed = true;
        self.buf.clear();
        out.push(Action::Close(why));
    }

    fn on_packet(&mut self, p: Packet, out: &mut Vec<Action>) {
        if self.identity.is_none() {
            match p {
                Packet::Connect(c) => self.on_connect(c, out),
                other => self.close(out, format!("{} before CONNECT", packet_name(&other))),
            }
            return;
        }
        match p {
            Packet::Connect(_) => self.close(out, "a second CONNECT".into()),
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce))
                    .collect();
                out.push(send(Packet::SubAck(SubAck::new(s.pkid, codes))));
            }
            Packet::Unsubscribe(u) => out.push(send(Packet::UnsubAck(UnsubAck::new(u.pkid)))),
            Packet::PingReq => out.push(send(Packet::PingResp)),
            // C# acknowledges even QoS 0 replies, with packet id 0.
            Packet::PubAck(_) => {}
            Packet::Disconnect => self.close(out, "the client disconnected".into()),
            Packet::Publish(p) => self.on_publish(p, out),
            other => self.close(
                out,
                format!("unexpected {} from a device", packet_name(&other)),
            ),
        }
    }

    fn on_connect(&mut self, c: Connect, out: &mut Vec<Action>) {
        let refuse = |code: ConnectReturnCode| send(Packet::ConnAck(ConnAck::new(code, false)));
        let Some(login) = c.login else {
            out.push(refuse(ConnectReturnCode::BadUserNamePassword));
            return self.close(
                out,
                "CONNECT has no username; DPS devices send {idScope}/registrations/{registrationId}/api-version=…".into(),
            );
        };
        let parsed = match parse_username(&login.username) {
            Ok(u) => u,
            Err(why) => {
                out.push(refuse(ConnectReturnCode::BadUserNamePassword));
                return self.close(out, why);
            }
        };
        if !c.client_id.eq_ignore_ascii_case(&parsed.1) {
            out.push(refuse(ConnectReturnCode::BadClientId));
            return self.close(
                out,
                format!(
                    "CONNECT client id `{}` differs from registration ID `{}` of the username; DPS requires client id = registration ID",
                    c.client_id, parsed.1
                ),
            );
        }
        self.identity = Some(Identity {
            scope: parsed.0,
            registration_id: parsed.1,
            sas: (!login.password.is_empty()).then_some(login.password),
            keep_alive: c.keep_alive,
        });
        // Session-present 0 even for clean=false: C# refuses anything else.
        out.push(send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        ))));
    }

    fn on_publish(&mut self, p: Publish, out: &mut Vec<Action>) {
        if p.qos == QoS::ExactlyOnce {
            return self.close(
                out,
                "PUBLISH at QoS 2; DPS devices publish at QoS 0 or 1".into(),
            );
        }
        let topic = p.topic.as_str();
        if topic.len() > MAX_TOPIC {
            return self.close(
                out,
                format!(
                    "topic of {} bytes is over the limit of {MAX_TOPIC}",
                    topic.len()
                ),
            );
        }
        if topic.contains(['\0', '#', '+']) {
            return self.close(
                out,
                "the PUBLISH topic holds NUL or a wildcard (`#`, `+`)".into(),
            );
        }
        let Some((path, query)) = topic.split_once("/?") else {
            return self.close(
                out,
                format!("PUBLISH to `{topic}`, which has no `/?$rid=` part"),
            );
        };
        let mut rid = None;
        let mut operation_id = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "$rid" => rid = Some(v),
                "operationId" => operation_id = Some(v),
                _ => {}
            }
        }
        let rid = match rid {
            Some(r) if !r.is_empty() && r.len() <= MAX_RID && !r.contains('$') => r.to_string(),
            _ => {
                return self.close(
                    out,
                    format!(
                        "PUBLISH to `{path}` without a usable $rid (1-{MAX_RID} characters, no `$`)"
                    ),
                );
            }
        };
        if p.qos == QoS::AtLeastOnce {
            out.push(send(Packet::PubAck(PubAck::new(p.pkid))));
        }
        if path == REGISTER {
            out.push(Action::Register {
                rid,
                body: p.payload,
            });
        } else if path == POLL {
            match operation_id {
                Some(op) if !op.is_empty() => out.push(Action::Poll {
                    rid,
                    operation_id: op.to_string(),
                    body: p.payload,
                }),
                _ => out.push(Action::Refuse {
                    rid,
                    status: 400,
                    code: 400_004,
                    message: "the status poll names no operationId: publish to $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operationId}".into(),
                }),
            }
        } else {
            out.push(Action::Refuse {
                rid,
                status: 404,
                code: 404_000,
                message: format!(
                    "no such DPS topic `{path}`; devices publish to {REGISTER}/?$rid={{rid}} and {POLL}/?$rid={{rid}}&operationId={{id}}"
                ),
            });
        }
    }

    /// Encodes a reply PUBLISH (QoS 0) on `$dps/registrations/res/{status}/?$rid={rid}&retry-after={n}`.
    pub fn reply(&self, rid: &str, status: u16, retry_after: u32, body: Vec<u8>) -> Bytes {
        let topic =
            format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={retry_after}");
        encode(&Packet::Publish(Publish::new(topic, QoS::AtMostOnce, body)))
    }
}

/// Feeds `data` to a fresh session in chunks whose sizes come from the data
/// itself, answering every request: the fuzz target's body, also replayed
/// from the corpus by a unit test. Panics only if the session misbehaves.
pub fn drive(data: &[u8]) {
    let mut s = Session::new();
    let (sizes, rest) = data.split_at(data.len().min(4));
    let mut rest = rest;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0)) + 1)
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        let was_closed = s.is_closed();
        for a in s.receive(chunk) {
            assert!(!was_closed, "a closed session acted again");
            match a {
                Action::Register { rid, .. }
                | Action::Poll { rid, .. }
                | Action::Refuse { rid, .. } => {
                    assert!(!rid.contains('$') && !rid.is_empty());
                    let _ = s.reply(&rid, 202, 1, b"{}".to_vec());
                }
                Action::Send(_) | Action::Close(_) => {}
            }
        }
    }
}

/// (ID scope, registration ID) from a DPS username; the reason when it is not one.
fn parse_username(username: &str) -> Result<(String, String), String> {
    let bad = |why: &str| {
        format!(
            "CONNECT username `{username}` {why}; DPS devices send {{idScope}}/registrations/{{registrationId}}/api-version={{v}}&ClientVersion={{ua}}"
        )
    };
    let mut parts = username.splitn(4, '/');
    let (Some(scope), Some(reg_word), Some(reg), rest) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("is not a DPS username"));
    };
    if scope.is_empty() || reg.is_empty() || !reg_word.eq_ignore_ascii_case("registrations") {
        return Err(bad("is not a DPS username"));
    }
    let query = rest.unwrap_or("");
    let version = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v);
    match version {
        None => Err(bad("names no api-version")),
        Some(v) if api_versions::status(api_versions::Api::Device, v).is_some() => {
            Ok((scope.to_string(), reg.to_string()))
        }
        Some(v) => Err(bad(&format!(
            "names api-version {v}, which the emulator does not know (it accepts {})",
            api_versions::VERSIONS
                .iter()
                .map(|(v, _, _)| *v)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

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

fn encode(p: &Packet) -> Bytes {
    let mut b = BytesMut::new();
    // Only the emulator's own small packets are encoded: nothing near the limit.
    let _ = p.write(&mut b, MAX_PACKET * 2);
    b.freeze()
}

fn send(p: Packet) -> Action {
    Action::Send(encode(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(client: &str, user: Option<&str>, pass: &str) -> Vec<u8> {
        let mut c = Connect::new(client);
        if let Some(u) = user {
            c.set_login(u, pass);
        }
        encode(&Packet::Connect(c)).to_vec()
    }

    const USER: &str =
        "0ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion=py%2F2";

    #[test]
    fn connect_subscribe_register_poll() {
        let mut s = Session::new();
        let a = s.receive(&connect("dev-1", Some(USER), ""));
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(s.identity().unwrap().registration_id, "dev-1");
        assert_eq!(s.identity().unwrap().sas, None);
        let sub =
            rumqttc::mqttbytes::v4::Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
        let a = s.receive(&encode(&Packet::Subscribe(sub)));
        assert!(matches!(a[..], [Action::Send(_)]));
        let mut p = Publish::new(
            format!("{REGISTER}/?$rid=7"),
            QoS::AtLeastOnce,
            b" ".to_vec(),
        );
        p.pkid = 3;
        let a = s.receive(&encode(&Packet::Publish(p)));
        assert!(
            matches!(&a[..], [Action::Send(_), Action::Register { rid, .. }] if rid == "7"),
            "{a:?}"
        );
        let p = Publish::new(
            format!("{POLL}/?$rid=8&operationId=op"),
            QoS::AtMostOnce,
            Vec::new(),
        );
        let a = s.receive(&encode(&Packet::Publish(p)));
        assert!(
            matches!(&a[..], [Action::Poll { rid, operation_id, .. }] if rid == "8" && operation_id == "op"),
            "{a:?}"
        );
        let r = s.reply("8", 200, 1, b"{}".to_vec());
        let mut b = BytesMut::from(&r[..]);
        match Packet::read(&mut b, MAX_PACKET).unwrap() {
            Packet::Publish(p) => {
                assert_eq!(p.topic, "$dps/registrations/res/200/?$rid=8&retry-after=1")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Replays the fuzz corpus (`fuzz/corpus/mqtt_session`) and a stable
    /// pseudo-random sweep, so the fuzz target's property holds under `cargo test`.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mqtt_session");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("fuzz/corpus/mqtt_session") {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            drive(&data);
            // And every prefix (truncated packets).
            for cut in 0..data.len().min(64) {
                drive(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 5, "the corpus holds {n} files");
        // xorshift: mutations of a valid session.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let seed = std::fs::read(dir.join("valid-session")).unwrap();
        for _ in 0..3000 {
            let mut d = seed.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % d.len();
                d[i] = (x >> 32) as u8;
            }
            drive(&d);
        }
    }

    #[test]
    fn bad_sessions_close() {
        let mut s = Session::new();
        let a = s.receive(&encode(&Packet::PingReq));
        assert!(matches!(&a[..], [Action::Close(w)] if w.contains("not an MQTT CONNECT")));
        let mut s = Session::new();
        let a = s.receive(&connect("other", Some(USER), ""));
        assert!(matches!(&a[..], [Action::Send(_), Action::Close(w)] if w.contains("client id")));
        let mut s = Session::new();
        // A 256 MiB remaining length.
        let a = s.receive(&[0x10, 0x80, 0x80, 0x80, 0x01]);
        assert!(
            matches!(&a[..], [Action::Close(w)] if w.contains("over the limit")),
            "{a:?}"
        );
        let mut s = Session::new();
        s.receive(&connect("dev-1", Some(USER), "SharedAccessSignature sr=x"));
        assert!(s.identity().unwrap().sas.is_some());
        let a = s.receive(&connect("dev-1", Some(USER), ""));
        assert!(matches!(&a[..], [Action::Close(w)] if w.contains("second CONNECT")));
    }
}
