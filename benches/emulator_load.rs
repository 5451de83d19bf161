//! Load benchmark for `pki emulator` (reported in BENCHMARKS.md).
//!
//! Starts the release `pki emulator` binary on a free loopback port with an
//! on-disk database (every write is fsync-ed before it is acknowledged),
//! stores 10,000 X.509 enrollment groups, then measures from this process:
//!
//! 1. X.509 registrations per second: each one a fresh TCP connection and a
//!    full TLS handshake with the device certificate (no session
//!    resumption), `PUT …/register`, then `GET …/operations/{id}` on the same
//!    connection until `assigned`;
//!    The same over MQTT (port from `mqttListen`): a fresh TLS handshake,
//!    CONNECT, SUBSCRIBE, the register PUBLISH and the status-poll PUBLISH,
//!    each answered (PUBACK, then the reply) before the next is sent;
//! 2. service GETs per second (`GET /enrollmentGroups/{random id}` with a
//!    SAS token, keep-alive connections);
//! 3. p50/p99 latency of both;
//! 4. the cost of a 100-item query page with 1,000 and with 10,000 groups
//!    stored (first page and a page deep in the continuation chain).
//!
//! Run: `cargo bench --bench emulator_load` (optional env: BENCH_SECONDS=10,
//! BENCH_WORKERS=8). It asserts nothing about time; it prints the figures.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pki::issue::{Ca, issue};
use pki::keys::{KeyType, private_key_pem};
use pki::profile::Profile;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use support::{Child, client_config, connect, exchange, timed};

const GROUPS: usize = 10_000;
const DEVICE_GROUPS: usize = 200;

struct Target {
    addr: std::net::SocketAddr,
    mqtt: std::net::SocketAddr,
    scope: String,
    host: String,
    key: String,
    roots: rustls::RootCertStore,
}

fn sas(t: &Target) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    pki::dps::sas::create_token(
        &t.host,
        &t.key,
        Some("provisioningserviceowner"),
        now + 7200,
    )
    .unwrap()
}

/// The client's crypto: aws-lc-rs offering X25519 and P-256 key exchange,
/// like the devices and SDKs it stands for (OpenSSL 3.0 in Node 20, embedded
/// TLS stacks), rather than rustls's default post-quantum hybrid first.
/// One MQTT device session: CONNECT, SUBSCRIBE, register, poll, DISCONNECT.
async fn mqtt_register(t: &Target, id: &str, config: Arc<rustls::ClientConfig>) {
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
    let tcp = TcpStream::connect(t.mqtt).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut s = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut out = bytes::BytesMut::new();
    let mut c = Connect::new(id);
    c.set_login(
        format!(
            "{}/registrations/{id}/api-version=2019-03-31&ClientVersion=bench",
            t.scope
        ),
        "",
    );
    let mut send = async |p: Packet, s: &mut TlsStream<TcpStream>| {
        out.clear();
        p.write(&mut out, 1 << 20).unwrap();
        s.write_all(&out).await.unwrap();
    };
    let mut tmp = [0u8; 8192];
    let mut next = async |s: &mut TlsStream<TcpStream>, buf: &mut bytes::BytesMut| loop {
        if let Ok(p) = Packet::read(buf, 1 << 20) {
            return p;
        }
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "MQTT connection closed");
        buf.extend_from_slice(&tmp[..n]);
    };
    send(Packet::Connect(c), &mut s).await;
    assert!(matches!(next(&mut s, &mut buf).await, Packet::ConnAck(_)));
    send(
        Packet::Subscribe(Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce)),
        &mut s,
    )
    .await;
    assert!(matches!(next(&mut s, &mut buf).await, Packet::SubAck(_)));
    let mut p = Publish::new(
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        QoS::AtLeastOnce,
        format!("{{\"registrationId\":\"{id}\"}}"),
    );
    p.pkid = 1;
    send(Packet::Publish(p), &mut s).await;
    assert!(matches!(next(&mut s, &mut buf).await, Packet::PubAck(_)));
    let Packet::Publish(r) = next(&mut s, &mut buf).await else {
        panic!("no register reply")
    };
    assert!(
        r.topic.starts_with("$dps/registrations/res/202/"),
        "{}",
        r.topic
    );
    let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    let mut p = Publish::new(
        format!(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={}",
            v["operationId"].as_str().unwrap()
        ),
        QoS::AtLeastOnce,
        " ",
    );
    p.pkid = 2;
    send(Packet::Publish(p), &mut s).await;
    assert!(matches!(next(&mut s, &mut buf).await, Packet::PubAck(_)));
    let Packet::Publish(r) = next(&mut s, &mut buf).await else {
        panic!("no poll reply")
    };
    assert!(
        r.payload.windows(10).any(|w| w == b"\"assigned\""),
        "{}",
        String::from_utf8_lossy(&r.payload)
    );
    send(Packet::Disconnect, &mut s).await;
}

async fn seed(t: &Arc<Target>, from: usize, to: usize, ca_pems: &Arc<Vec<String>>) {
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (t, ca_pems) = (t.clone(), ca_pems.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(t.addr, client_config(&t.roots, None)).await;
            let auth = format!("Authorization: {}\r\n", sas(&t));
            let mut i = from + w;
            while i < to {
                let id = format!("group-{i:05}");
                let body = serde_json::json!({"enrollmentGroupId": id,
                    "attestation": {"type":"x509","x509":{"signingCertificates":{"primary":{"certificate": ca_pems[i % ca_pems.len()]}}}}})
                .to_string();
                let (s, b) = exchange(&mut conn, "PUT", &format!("/enrollmentGroups/{id}?api-version=2021-10-01"), &auth, &body).await;
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn query_cost(t: &Target, label: &str, deep_after: &str) {
    let mut conn = connect(t.addr, client_config(&t.roots, None)).await;
    let auth = sas(t);
    let n = 300;
    // First page.
    let t0 = Instant::now();
    for _ in 0..n {
        let (s, _) = exchange(
            &mut conn,
            "POST",
            "/enrollmentGroups/query?api-version=2021-10-01",
            &format!("Authorization: {auth}\r\nx-ms-max-item-count: 100\r\n"),
            r#"{"query":"*"}"#,
        )
        .await;
        assert_eq!(s, 200);
    }
    let first = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    // A page deep in the chain: continue after `deep_after` (ids sort by number).
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        deep_after,
    );
    let t0 = Instant::now();
    for _ in 0..n {
        let (s, _) = exchange(&mut conn, "POST", "/enrollmentGroups/query?api-version=2021-10-01",
            &format!("Authorization: {auth}\r\nx-ms-max-item-count: 100\r\nx-ms-continuation: {token}\r\n"), r#"{"query":"*"}"#).await;
        assert_eq!(s, 200);
    }
    let deep = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    println!(
        "query, 100-item page, {label}: first page {first:.2} ms, page after {deep_after} {deep:.2} ms (mean of {n})"
    );
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_pki"))
            .args([
                "emulator",
                "--json",
                "--quiet",
                "--listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let ca_pem = std::fs::read(info["caFile"].as_str().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            pem::parse(&ca_pem).unwrap().into_contents(),
        ))
        .unwrap();
    let cs = info["connectionString"].as_str().unwrap();
    let t = Arc::new(Target {
        addr: info["listen"].as_str().unwrap().parse().unwrap(),
        mqtt: info["mqttListen"].as_str().unwrap().parse().unwrap(),
        scope: info["idScope"].as_str().unwrap().to_string(),
        host: info["serviceHost"].as_str().unwrap().to_string(),
        key: cs.rsplit("SharedAccessKey=").next().unwrap().to_string(),
        roots,
    });

    // Test PKI: DEVICE_GROUPS intermediate CAs under one root (the first
    // DEVICE_GROUPS groups use them), one device each; the other groups reuse them.
    let root = Ca::create(
        &Profile::RootCa { path_len: 1 },
        "Bench Root",
        &pki::validity::Validity::days(30),
        KeyType::EcP256.generate().unwrap(),
        None,
    )
    .unwrap();
    let mut cas = Vec::new();
    let mut devices = Vec::new();
    for i in 0..DEVICE_GROUPS {
        let ca = Ca::create(
            &Profile::IntermediateCa { path_len: 0 },
            &format!("Bench CA {i}"),
            &pki::validity::Validity::days(30),
            KeyType::EcP256.generate().unwrap(),
            Some(&root),
        )
        .unwrap();
        let key = KeyType::EcP256.generate().unwrap();
        let id = format!("bench-device-{i:03}");
        let leaf = issue(
            &Profile::Device,
            &id,
            &pki::validity::Validity::days(30),
            &key,
            Some(&ca),
        )
        .unwrap();
        let chain = vec![
            CertificateDer::from(leaf.der.clone()),
            CertificateDer::from(ca.cert.der.clone()),
        ];
        let key = PrivateKeyDer::try_from(
            pem::parse(private_key_pem(&key, None).unwrap())
                .unwrap()
                .into_contents(),
        )
        .unwrap();
        devices.push((id, client_config(&t.roots, Some((chain, key)))));
        cas.push(ca.cert.pem.clone());
    }
    let cas = Arc::new(cas);
    let devices = Arc::new(devices);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let t0 = Instant::now();
        seed(&t, 0, 1_000, &cas).await;
        println!("stored 1,000 groups in {:.1} s", t0.elapsed().as_secs_f64());
        query_cost(&t, "1,000 groups stored", "group-00899").await;
        let t0 = Instant::now();
        seed(&t, 1_000, GROUPS, &cas).await;
        println!(
            "stored 9,000 more groups in {:.1} s ({:.0} creates/s, each durable)",
            t0.elapsed().as_secs_f64(),
            9_000.0 / t0.elapsed().as_secs_f64()
        );
        query_cost(&t, "10,000 groups stored", "group-09899").await;

        // X.509 registrations, fresh TLS handshake each.
        let (tt, dd) = (t.clone(), devices.clone());
        let reg = timed(workers, secs, move |w, i| {
            let (t, devices) = (tt.clone(), dd.clone());
            async move {
                let (id, config) = &devices[(w * 7919 + i as usize) % devices.len()];
                let mut conn = connect(t.addr, config.clone()).await;
                let (s, b) = exchange(
                    &mut conn,
                    "PUT",
                    &format!(
                        "/{}/registrations/{id}/register?api-version=2019-03-31",
                        t.scope
                    ),
                    "",
                    &format!("{{\"registrationId\":\"{id}\"}}"),
                )
                .await;
                assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
                let op: serde_json::Value = serde_json::from_slice(&b).unwrap();
                let op = op["operationId"].as_str().unwrap();
                let (s, b) = exchange(
                    &mut conn,
                    "GET",
                    &format!(
                        "/{}/registrations/{id}/operations/{op}?api-version=2019-03-31",
                        t.scope
                    ),
                    "Connection: close\r\n",
                    "{}",
                )
                .await;
                assert_eq!(s, 200);
                assert!(
                    b.windows(10).any(|w| w == b"\"assigned\""),
                    "{}",
                    String::from_utf8_lossy(&b)
                );
            }
        })
        .await;
        reg.report("X.509 registrations (new TLS handshake + register + poll, durable)");

        // The same over MQTT: fresh TLS handshake, CONNECT, SUBSCRIBE, register, poll.
        let (tt, dd) = (t.clone(), devices.clone());
        let mqtt = timed(workers, secs, move |w, i| {
            let (t, devices) = (tt.clone(), dd.clone());
            async move {
                let (id, config) = &devices[(w * 7919 + i as usize) % devices.len()];
                mqtt_register(&t, id, config.clone()).await;
            }
        })
        .await;
        mqtt.report("X.509 registrations over MQTT (new TLS handshake + CONNECT + SUBSCRIBE + register + poll, durable)");

        // Service GETs on keep-alive connections.
        let conns: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..workers {
                v.push(Arc::new(tokio::sync::Mutex::new(
                    connect(t.addr, client_config(&t.roots, None)).await,
                )));
            }
            v
        };
        let conns = Arc::new(conns);
        let auth = Arc::new(format!("Authorization: {}\r\n", sas(&t)));
        let get = timed(workers, secs, move |w, i| {
            let (conns, auth) = (conns.clone(), auth.clone());
            async move {
                let id = (i as usize * 7919 + w * 104_729) % GROUPS;
                let mut conn = conns[w].lock().await;
                let (s, _) = exchange(
                    &mut conn,
                    "GET",
                    &format!("/enrollmentGroups/group-{id:05}?api-version=2021-10-01"),
                    &auth,
                    "",
                )
                .await;
                assert_eq!(s, 200);
            }
        })
        .await;
        get.report("service GET /enrollmentGroups/{id} (keep-alive, SAS checked each time)");
    });
    drop(child);
}
