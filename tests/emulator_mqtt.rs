//! The emulator's MQTT transport (issue 9): the official Python and Node
//! MQTT device SDKs register over MQTT on port 8883 and over WebSockets on
//! 443; refusals read the same on MQTT and HTTPS for the same inputs; bad
//! MQTT input closes the connection and the emulator keeps serving.
//!
//! The SDKs dial fixed ports (Python 8883, or 443 for WebSockets; Node 8883
//! and 443), so that test binds 127.0.0.1:443 and :8883 (root or
//! CAP_NET_BIND_SERVICE), holding the fixed-port lock, and runs everything
//! in one function; without the right to bind 443 it prints `SKIPPED:`
//! unless PKI_TEST_NO_SKIP=1. The Python SDK comes from PyPI into
//! `tests/python/.venv` (`.ci/run` creates it; this test creates it, or
//! installs the SDK into it, when missing), the Node SDK from `tests/node`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{
    DEVICE_API, Emulator, Pki, TestChain, can_bind_443, ensure_node_modules, fixed_ports_async,
    node_dir, now, require_tool, run_tool, skip_unless,
};
use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The Python device SDK pinned in `.ci/run`.
const PY_SDK: &str = "azure-iot-device==2.14.0";

/// The venv's python with [`PY_SDK`] installed: made with `python3 -m venv`
/// and pip (from PyPI) when missing. False (after a visible `SKIPPED:` line)
/// only when PKI_TEST_SKIP lists python3 and it is missing.
#[track_caller]
fn python(test: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let py = root.join(".venv/bin/python");
    if !py.exists() {
        if !require_tool("python3", test) {
            return None;
        }
        let out = run_tool(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(root.join(".venv")),
            "python3",
        );
        assert!(
            out.status.success(),
            "python3 -m venv tests/python/.venv failed (apt-get install python3-venv): {}",
            out.stderr
        );
    }
    let has_sdk = run_tool(
        Command::new(&py).args(["-c", "import azure.iot.device"]),
        "tests/python/.venv/bin/python",
    );
    if !has_sdk.status.success() {
        let out = run_tool(
            Command::new(&py).args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PY_SDK,
            ]),
            "tests/python/.venv/bin/python",
        );
        assert!(
            out.status.success(),
            "pip install {PY_SDK} into tests/python/.venv failed (needs PyPI): {}",
            out.stderr
        );
    }
    Some(py)
}

/// Runs tests/python/device.py; returns its JSON line.
fn py_device(py: &Path, env: &[(&str, &str)]) -> Value {
    let out = run_tool(
        Command::new(py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/device.py"))
            .envs(env.iter().copied()),
        "tests/python/.venv/bin/python",
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.status.success(), "device.py failed: {text}");
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from device.py: {text}"));
    serde_json::from_str(line).unwrap()
}

/// Runs tests/node/device_mqtt.js; returns its JSON line.
fn node_device(env: &[(&str, &str)]) -> Value {
    let out = run_tool(
        Command::new("node")
            .arg(node_dir().join("device_mqtt.js"))
            .current_dir(node_dir())
            .env("NODE_OPTIONS", "--dns-result-order=ipv4first")
            .envs(env.iter().copied()),
        "node",
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from device_mqtt.js: {text}"));
    serde_json::from_str(line).unwrap()
}

pub(crate) fn x509_group(id: &str, pem: &str, status: &str) -> Value {
    json!({"enrollmentGroupId": id, "provisioningStatus": status,
        "attestation": {"type":"x509","x509":{"signingCertificates":{"primary":{"certificate": pem}}}}})
}

#[tokio::test]
async fn python_and_node_mqtt_sdks_register_on_8883_and_over_websockets_on_443() {
    const TEST: &str = "python_and_node_mqtt_sdks_register_on_8883_and_over_websockets_on_443";
    if !ensure_node_modules(TEST) {
        return;
    }
    let Some(py) = python(TEST) else {
        return;
    };
    if !skip_unless(
        can_bind_443(),
        "port-443",
        TEST,
        "binding 127.0.0.1:443 needs root or CAP_NET_BIND_SERVICE",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let _ports = fixed_ports_async().await;
    let emu = Emulator::start_on_443_logging(
        &dir.path().join("data"),
        &["--in-memory", "--mqtt-listen", "127.0.0.1:8883"],
        &dir.path().join("emulator.log"),
    );
    assert_eq!(emu.info["mqttListen"], "127.0.0.1:8883", "{}", emu.info);
    let ca = emu.ca();
    let scope = emu.id_scope();

    // The tutorial's chain: `pki chain new`, a group on its root.
    let pki = |args: &[&str], out: &Path| {
        Pki::new(args).arg("--out").arg(out).run().ok();
    };
    pki(&["chain", "new"], &work);
    let root =
        std::fs::read_to_string(work.join("certs/azure-iot-test-only.root.ca.cert.pem")).unwrap();
    emu.put_group(
        "mqtt-tutorial",
        &x509_group("mqtt-tutorial", &root, "enabled"),
    )
    .await;
    let cert = work.join("certs/device-0001-full-chain.cert.pem");
    let key = work.join("private/device-0001.key.pem");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let x509_env = |ws: &'static str| {
        vec![
            ("ID_SCOPE", scope.clone()),
            ("REGISTRATION_ID", "device-0001".to_string()),
            ("CA_FILE", ca.clone()),
            ("CERT_FILE", cert.to_string()),
            ("KEY_FILE", key.to_string()),
            ("WEBSOCKETS", ws.to_string()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { v.clone() };
    let run_py = |v: Vec<(&'static str, String)>| {
        let e: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        py_device(&py, &e)
    };

    // Python, X.509, MQTT on 8883.
    let v = run_py(as_refs(&x509_env("0")));
    assert_eq!(v["ok"], true, "{v}\n{}", emu.log());
    assert_eq!(v["assignedHub"], "emulated-hub.azure-devices.net", "{v}");
    assert_eq!(v["deviceId"], "device-0001", "{v}");
    // Python, X.509, MQTT over WebSockets on 443.
    let v = run_py(as_refs(&x509_env("1")));
    assert_eq!(v["ok"], true, "{v}\n{}", emu.log());

    // Python, symmetric-key device of a symmetric-key group.
    let group_key = "dGhpcyBpcyBhIHRlc3QgZ3JvdXAga2V5IGZvciBtcXR0IHRlc3Rz";
    emu.put_group(
        "mqtt-symkey",
        &json!({"enrollmentGroupId": "mqtt-symkey", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key, "secondaryKey": group_key}}}),
    )
    .await;
    let device_key = pki::dps::sas::derive_device_key(group_key, "sym-device-01").unwrap();
    for ws in ["0", "1"] {
        let v = run_py(vec![
            ("ID_SCOPE", scope.clone()),
            ("REGISTRATION_ID", "sym-device-01".into()),
            ("CA_FILE", ca.clone()),
            ("SYMMETRIC_KEY", device_key.clone()),
            ("WEBSOCKETS", ws.into()),
        ]);
        assert_eq!(v["ok"], true, "websockets={ws}: {v}\n{}", emu.log());
        assert_eq!(v["deviceId"], "sym-device-01", "{v}");
    }
    // A wrong device key: refused, the reason in the emulator's log.
    let v = run_py(vec![
        ("ID_SCOPE", scope.clone()),
        ("REGISTRATION_ID", "sym-device-02".into()),
        ("CA_FILE", ca.clone()),
        ("SYMMETRIC_KEY", device_key.clone()),
        ("WEBSOCKETS", "0".into()),
    ]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("401"), "{v}");
    assert!(
        emu.log().contains("MQTT register of `sym-device-02` -> 401 (401002): the SAS token's signature matches no enrollment"),
        "{}",
        emu.log()
    );

    // A device from a foreign CA (another `pki chain new`): refused with the reason.
    let other = dir.path().join("other");
    pki(&["chain", "new", "--root-cn", "Foreign Root CA"], &other);
    let foreign = vec![
        ("ID_SCOPE", scope.clone()),
        ("REGISTRATION_ID", "device-0001".to_string()),
        ("CA_FILE", ca.clone()),
        (
            "CERT_FILE",
            other
                .join("certs/device-0001-full-chain.cert.pem")
                .display()
                .to_string(),
        ),
        (
            "KEY_FILE",
            other
                .join("private/device-0001.key.pem")
                .display()
                .to_string(),
        ),
        ("WEBSOCKETS", "0".to_string()),
    ];
    let v = run_py(foreign.clone());
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("401"), "{v}");
    assert!(
        emu.log().contains("MQTT register of `device-0001` -> 401 (401002): no enrollment group matches this device"),
        "{}",
        emu.log()
    );

    // A disabled group: the device learns `disabled`, the log says why.
    let dis = dir.path().join("disabled");
    pki(&["chain", "new", "--root-cn", "Disabled Root CA"], &dis);
    let dis_root =
        std::fs::read_to_string(dis.join("certs/azure-iot-test-only.root.ca.cert.pem")).unwrap();
    emu.put_group(
        "mqtt-disabled",
        &x509_group("mqtt-disabled", &dis_root, "disabled"),
    )
    .await;
    let mut disabled = foreign.clone();
    disabled[3].1 = dis
        .join("certs/device-0001-full-chain.cert.pem")
        .display()
        .to_string();
    disabled[4].1 = dis
        .join("private/device-0001.key.pem")
        .display()
        .to_string();
    let v = run_py(disabled);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("status disabled"),
        "{v}"
    );
    assert!(
        emu.log().contains("registration `device-0001` via enrollment group `mqtt-disabled`: disabled (enrollment group `mqtt-disabled` is disabled"),
        "{}",
        emu.log()
    );

    // Node azure-iot-provisioning-device-mqtt: Mqtt (8883) and MqttWs (443), the same device.
    for transport in ["mqtt", "mqttws"] {
        let v = node_device(&[
            ("NODE_EXTRA_CA_CERTS", &ca),
            ("DPS_HOST", "localhost"),
            ("ID_SCOPE", &scope),
            ("REGISTRATION_ID", "device-0001"),
            ("CERT_FILE", cert),
            ("KEY_FILE", key),
            ("TRANSPORT", transport),
        ]);
        assert_eq!(v["ok"], true, "{transport}: {v}\n{}", emu.log());
        assert_eq!(
            v["result"]["x509"]["enrollmentGroupId"], "mqtt-tutorial",
            "{v}"
        );
    }
    // Node shows the emulator's reason in the reply body.
    let v = node_device(&[
        ("NODE_EXTRA_CA_CERTS", &ca),
        ("DPS_HOST", "localhost"),
        ("ID_SCOPE", &scope),
        ("REGISTRATION_ID", "device-0001"),
        ("CERT_FILE", &foreign[3].1),
        ("KEY_FILE", &foreign[4].1),
        ("TRANSPORT", "mqtt"),
    ]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["result"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no enrollment group matches this device"),
        "{v}"
    );
    // No key material in the log.
    assert!(!emu.log().contains(group_key) && !emu.log().contains(&device_key));
}

// ---------------------------------------------------------------------------
// A minimal MQTT device (rumqttc's codec on tokio-rustls), for exact checks.

pub(crate) fn client_config(ca_pem: &str, identity_pem: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for b in pem::parse_many(ca_pem).unwrap() {
        roots.add(CertificateDer::from(b.into_contents())).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity_pem {
        None => b.with_no_client_auth(),
        Some(id) => {
            let blocks = pem::parse_many(id).unwrap();
            let key = blocks
                .iter()
                .find(|b| b.tag().ends_with("PRIVATE KEY"))
                .unwrap();
            let certs = blocks
                .iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| CertificateDer::from(b.contents().to_vec()))
                .collect();
            b.with_client_auth_cert(
                certs,
                PrivateKeyDer::try_from(key.contents().to_vec()).unwrap(),
            )
            .unwrap()
        }
    })
}

/// A raw MQTT device on the rumqttc codec (shared with tests/register_mqtt.rs).
pub(crate) struct Device {
    tls: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Device {
    pub(crate) async fn open(addr: &str, ca_pem: &str, identity: Option<&str>) -> Device {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(ca_pem, identity))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Device {
            tls,
            buf: BytesMut::new(),
        }
    }

    pub(crate) async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.tls.write_all(bytes).await;
        let _ = self.tls.flush().await;
    }

    pub(crate) async fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        p.write(&mut b, 1 << 20).unwrap();
        self.raw(&b).await;
    }

    /// The next packet, or `None` when the emulator closed the connection.
    pub(crate) async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Ok(p) = Packet::read(&mut self.buf, 1 << 20) {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(20), self.tls.read(&mut chunk))
                .await
                .expect("the emulator neither answered nor closed within 20 s");
            match n {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub(crate) async fn connect(
        &mut self,
        client_id: &str,
        username: &str,
        password: Option<&str>,
    ) -> Option<Packet> {
        let mut c = Connect::new(client_id);
        c.keep_alive = 30;
        c.set_login(username, password.unwrap_or(""));
        self.send(Packet::Connect(c)).await;
        self.next().await
    }

    /// PUBLISH to `topic` at QoS 1 and return (status, body) of the reply (after its PUBACK).
    pub(crate) async fn request(
        &mut self,
        topic: &str,
        body: &[u8],
        pkid: u16,
    ) -> (u16, Value, String) {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, body.to_vec());
        p.pkid = pkid;
        self.send(Packet::Publish(p)).await;
        match self.next().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
            other => panic!("expected PUBACK first, got {other:?}"),
        }
        match self.next().await {
            Some(Packet::Publish(r)) => {
                let status = r.topic["$dps/registrations/res/".len()..]
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                (status, serde_json::from_slice(&r.payload).unwrap(), r.topic)
            }
            other => panic!("expected the reply PUBLISH, got {other:?}"),
        }
    }
}

fn username(scope: &str, reg: &str) -> String {
    format!("{scope}/registrations/{reg}/api-version=2019-03-31&ClientVersion=pki-test%2F1")
}

/// Registers over MQTT: (status of the register reply, its body, the poll body if 202).
async fn mqtt_register(
    addr: &str,
    ca: &str,
    scope: &str,
    reg: &str,
    identity: Option<&str>,
    sas: Option<&str>,
) -> (u16, Value, Option<Value>) {
    let mut d = Device::open(addr, ca, identity).await;
    match d.connect(reg, &username(scope, reg), sas).await {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
            assert!(!a.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    d.send(Packet::Subscribe(Subscribe::new(
        "$dps/registrations/res/#",
        QoS::AtLeastOnce,
    )))
    .await;
    assert!(matches!(d.next().await, Some(Packet::SubAck(_))));
    let body = json!({"registrationId": reg}).to_string();
    let (status, v, topic) = d
        .request(
            "$dps/registrations/PUT/iotdps-register/?$rid=abc-1",
            body.as_bytes(),
            1,
        )
        .await;
    assert_eq!(
        topic,
        format!("$dps/registrations/res/{status}/?$rid=abc-1&retry-after=1")
    );
    if status != 202 {
        return (status, v, None);
    }
    let op = v["operationId"].as_str().unwrap();
    let (s2, poll, _) = d
        .request(
            &format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=abc-2&operationId={op}"
            ),
            b" ",
            2,
        )
        .await;
    assert_eq!(s2, 200, "{poll}");
    d.send(Packet::Disconnect).await;
    (status, v, Some(poll))
}

/// Registers over HTTPS: the same triple.
async fn https_register(
    emu: &Emulator,
    reg: &str,
    identity: Option<&str>,
    sas: Option<&str>,
) -> (u16, Value, Option<Value>) {
    let c = emu.client(identity);
    let scope = emu.id_scope();
    let mut put = c
        .put(emu.url(&format!(
            "/{scope}/registrations/{reg}/register?{DEVICE_API}"
        )))
        .header("content-type", "application/json")
        .body(json!({"registrationId": reg}).to_string());
    if let Some(s) = sas {
        put = put.header("authorization", s);
    }
    let r = put.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    if status != 202 {
        return (status, v, None);
    }
    let op = v["operationId"].as_str().unwrap();
    let mut get = c.get(emu.url(&format!(
        "/{scope}/registrations/{reg}/operations/{op}?{DEVICE_API}"
    )));
    if let Some(s) = sas {
        get = get.header("authorization", s);
    }
    let poll: Value = get.send().await.unwrap().json().await.unwrap();
    (status, v, Some(poll))
}

/// The parts of an outcome that must match across transports.
fn outcome(r: &(u16, Value, Option<Value>)) -> Value {
    match &r.2 {
        None => json!({"status": r.0, "errorCode": r.1["errorCode"], "message": r.1["message"]}),
        Some(p) => json!({"status": r.0, "result": p["status"],
            "hub": p["registrationState"]["assignedHub"],
            "errorMessage": p["registrationState"]["errorMessage"]}),
    }
}

#[tokio::test]
async fn refusals_are_identical_on_mqtt_and_https() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let mqtt = emu.info["mqttListen"].as_str().unwrap().to_string();
    let ca = std::fs::read_to_string(emu.info["caFile"].as_str().unwrap()).unwrap();
    let scope = emu.id_scope();
    let chain = TestChain::new("Same");
    let disabled_chain = TestChain::new("Off");
    emu.put_group(
        "same",
        &x509_group("same", &chain.intermediate.cert.pem, "enabled"),
    )
    .await;
    emu.put_group(
        "off",
        &x509_group("off", &disabled_chain.intermediate.cert.pem, "disabled"),
    )
    .await;
    let key = "c2FtZSByZWZ1c2FscyBvbiBib3RoIHRyYW5zcG9ydHMgZm9yIHRlc3Rz";
    emu.put_group(
        "keys",
        &json!({"enrollmentGroupId": "keys", "attestation": {"type": "symmetricKey",
        "symmetricKey": {"primaryKey": key, "secondaryKey": key}}}),
    )
    .await;
    let foreign = TestChain::new("Foreign");

    let (ok_id, _) = chain.device("same-01");
    let (foreign_id, _) = foreign.device("same-02");
    let (cn_id, _) = chain.device("not-the-id");
    let (off_id, _) = disabled_chain.device("same-04");
    let dev_key = pki::dps::sas::derive_device_key(key, "same-05").unwrap();
    let good_sas = pki::dps::sas::create_token(
        &format!("{scope}/registrations/same-05"),
        &dev_key,
        Some("registration"),
        now() as u64 + 600,
    )
    .unwrap();
    let wrong_sas = pki::dps::sas::create_token(
        &format!("{scope}/registrations/same-05"),
        key,
        Some("registration"),
        now() as u64 + 600,
    )
    .unwrap();
    let cases: Vec<(&str, &str, Option<&str>, Option<&str>)> = vec![
        ("accepted", "same-01", Some(&ok_id), None),
        ("foreign CA", "same-02", Some(&foreign_id), None),
        ("CN differs", "same-03", Some(&cn_id), None),
        ("disabled group", "same-04", Some(&off_id), None),
        ("no credential", "same-06", None, None),
        ("good SAS", "same-05", None, Some(&good_sas)),
        ("wrong SAS key", "same-05", None, Some(&wrong_sas)),
        ("invalid registration ID", "bad*id", Some(&ok_id), None),
    ];
    for (what, reg, id, sas) in cases {
        let h = https_register(&emu, reg, id, sas).await;
        let m = mqtt_register(&mqtt, &ca, &scope, reg, id, sas).await;
        assert_eq!(outcome(&h), outcome(&m), "{what}: HTTPS {h:?} MQTT {m:?}");
        if what != "accepted" && what != "good SAS" {
            let text = outcome(&m).to_string();
            assert!(
                text.contains("message") || text.contains("errorMessage"),
                "{what}: {text}"
            );
        }
    }
    // A wrong ID scope in the username: the same 401 as a wrong scope in the path.
    let h = https_register(&emu, "same-01", Some(&ok_id), None).await;
    assert_eq!(h.0, 202);
    let m = mqtt_register(&mqtt, &ca, "0ne00000000", "same-01", Some(&ok_id), None).await;
    assert_eq!(m.0, 401);
    assert_eq!(
        m.1["message"],
        format!("ID scope `0ne00000000` is not this emulator's; use `{scope}`")
    );
}

#[tokio::test]
async fn bad_mqtt_input_closes_the_connection_and_the_emulator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let mqtt = emu.info["mqttListen"].as_str().unwrap().to_string();
    let ca = std::fs::read_to_string(emu.info["caFile"].as_str().unwrap()).unwrap();
    let scope = emu.id_scope();
    let user = username(&scope, "dev-1");
    let connect = {
        let mut c = Connect::new("dev-1");
        c.set_login(user.as_str(), "");
        let mut b = BytesMut::new();
        Packet::Connect(c).write(&mut b, 1 << 20).unwrap();
        b.to_vec()
    };
    let publish = |topic: &str, body: &[u8]| {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, body.to_vec());
        p.pkid = 1;
        let mut b = BytesMut::new();
        Packet::Publish(p).write(&mut b, 1 << 22).unwrap();
        b.to_vec()
    };
    let mut invalid_utf8_topic = publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b"");
    invalid_utf8_topic[4] = 0xff;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "garbage",
            vec![],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "truncated CONNECT",
            vec![],
            connect[..connect.len() / 2].to_vec(),
        ),
        (
            "256 MiB remaining length",
            vec![],
            vec![0x10, 0x80, 0x80, 0x80, 0x01],
        ),
        ("unknown packet type 0", vec![], vec![0x00, 0x00]),
        ("unknown packet type 15", connect.clone(), vec![0xf0, 0x00]),
        (
            "PUBLISH before CONNECT",
            vec![],
            publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b""),
        ),
        ("second CONNECT", connect.clone(), connect.clone()),
        (
            "$ in $rid",
            connect.clone(),
            publish("$dps/registrations/PUT/iotdps-register/?$rid=a$b", b""),
        ),
        (
            "NUL in topic",
            connect.clone(),
            publish("$dps/registrations/PUT/iotdps-register/?$rid=a\0", b""),
        ),
        (
            "overlong topic",
            connect.clone(),
            publish(
                &format!(
                    "$dps/registrations/PUT/iotdps-register/?$rid=1&x={}",
                    "a".repeat(5000)
                ),
                b"",
            ),
        ),
        ("invalid UTF-8 topic", connect.clone(), invalid_utf8_topic),
        (
            "body over the limit",
            connect.clone(),
            publish(
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                &vec![b' '; 300 * 1024],
            ),
        ),
        ("QoS 2", connect.clone(), {
            let mut p = publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b"");
            p[0] = 0x34;
            p
        }),
    ];
    for (what, first, then) in cases {
        let mut d = Device::open(&mqtt, &ca, None).await;
        if !first.is_empty() {
            d.raw(&first).await;
            assert!(
                matches!(d.next().await, Some(Packet::ConnAck(_))),
                "{what}: no CONNACK"
            );
        }
        d.raw(&then).await;
        // Any reply, then the close; never a hang.
        let mut closed = false;
        for _ in 0..3 {
            if d.next().await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "{what}: the connection stayed open");
    }
    // A wrong client id: CONNACK refusal (identifier rejected), then the close.
    let mut d = Device::open(&mqtt, &ca, None).await;
    match d.connect("someone-else", &user, None).await {
        Some(Packet::ConnAck(a)) => assert_eq!(
            a.code,
            rumqttc::mqttbytes::v4::ConnectReturnCode::BadClientId
        ),
        other => panic!("{other:?}"),
    }
    assert!(d.next().await.is_none());
    // An unknown topic with a $rid: an error reply, and the session goes on.
    let mut d = Device::open(&mqtt, &ca, None).await;
    assert!(matches!(
        d.connect("dev-1", &user, None).await,
        Some(Packet::ConnAck(_))
    ));
    let (status, v, _) = d
        .request("$dps/registrations/POST/nothing/?$rid=9", b"", 5)
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no such DPS topic"),
        "{v}"
    );
    // A stray PUBACK with packet id 0 (C# acknowledges QoS 0 replies) is ignored.
    d.raw(&[0x40, 0x02, 0x00, 0x00]).await;
    d.send(Packet::PingReq).await;
    assert!(matches!(d.next().await, Some(Packet::PingResp)));
    // Keep-alive is enforced: 1 s asked, silence past 1.5 s closes.
    let mut d = Device::open(&mqtt, &ca, None).await;
    let mut c = Connect::new("dev-1");
    c.keep_alive = 1;
    c.set_login(user.as_str(), "");
    d.send(Packet::Connect(c)).await;
    assert!(matches!(d.next().await, Some(Packet::ConnAck(_))));
    let t0 = std::time::Instant::now();
    assert!(d.next().await.is_none());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Still serving both transports.
    let chain = TestChain::new("After");
    emu.put_group(
        "after",
        &x509_group("after", &chain.intermediate.cert.pem, "enabled"),
    )
    .await;
    let (id, _) = chain.device("after-01");
    let m = mqtt_register(&mqtt, &ca, &scope, "after-01", Some(&id), None).await;
    assert_eq!(m.2.unwrap()["status"], "assigned");
}

/// Runs `pki register`; returns (exit code, stdout, stderr without tracking ids).
pub(crate) fn pki_register(args: &[&str]) -> (i32, String, String) {
    let out = Pki::new(["register"]).args(args).run();
    let stderr = out
        .stderr
        .split("(tracking id ")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                part.split_once(')')
                    .map(|x| x.1.to_string())
                    .unwrap_or_default()
            }
        })
        .collect::<String>();
    (out.code.unwrap_or(-1), out.stdout, stderr)
}

#[tokio::test]
async fn pki_register_gives_the_same_output_over_https_mqtt_and_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&dir.path().join("data"), &["--in-memory"]);
    let https = emu.addr.port().to_string();
    let mqtt: std::net::SocketAddr = emu.info["mqttListen"].as_str().unwrap().parse().unwrap();
    let ca = emu.info["caFile"].as_str().unwrap().to_string();
    let scope = emu.id_scope();
    let chain = TestChain::new("Register");
    emu.put_group(
        "reg-group",
        &x509_group("reg-group", &chain.intermediate.cert.pem, "enabled"),
    )
    .await;
    let write = |name: &str, identity: &str| {
        let blocks = pem::parse_many(identity).unwrap();
        let key: String = blocks
            .iter()
            .filter(|b| b.tag().ends_with("PRIVATE KEY"))
            .map(pem::encode)
            .collect();
        let certs: String = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(pem::encode)
            .collect();
        let (c, k) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, certs).unwrap();
        std::fs::write(&k, key).unwrap();
        (c.display().to_string(), k.display().to_string())
    };
    let (good, _) = chain.device("reg-01");
    let (foreign, _) = TestChain::new("Stranger").device("reg-02");
    let good = write("good", &good);
    let foreign = write("foreign", &foreign);
    let mut seen: Vec<Vec<(i32, String, String)>> = Vec::new();
    for (transport, port) in [
        ("https", https.clone()),
        ("mqtt", mqtt.port().to_string()),
        ("mqtt-ws", https.clone()),
    ] {
        let host = format!("localhost:{port}");
        let mut outcomes = Vec::new();
        for (c, k) in [&good, &foreign] {
            outcomes.push(pki_register(&[
                "--transport",
                transport,
                "--host",
                &host,
                "--id-scope",
                &scope,
                "--cert",
                c,
                "--key",
                k,
                "--ca-file",
                &ca,
            ]));
        }
        assert_eq!(outcomes[0].0, 0, "{transport}: {outcomes:?}");
        assert!(
            outcomes[0].1.contains("assigned: device reg-01"),
            "{transport}: {outcomes:?}"
        );
        assert_eq!(outcomes[1].0, 1, "{transport}: {outcomes:?}");
        assert!(
            outcomes[1]
                .2
                .contains("DPS error 401002: no enrollment group matches this device"),
            "{transport}: {outcomes:?}"
        );
        seen.push(outcomes);
    }
    assert_eq!(seen[0], seen[1], "https vs mqtt");
    assert_eq!(seen[0], seen[2], "https vs mqtt-ws");
    // Bad input: exit 2, one line.
    let (code, _, err) = pki_register(&[
        "--transport",
        "mqtt",
        "--host",
        "localhost:0",
        "--id-scope",
        &scope,
        "--cert",
        &good.0,
        "--key",
        &good.1,
        "--ca-file",
        &ca,
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn no_mqtt_turns_the_listener_off_and_a_bad_address_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&dir.path().join("a"), &["--in-memory", "--no-mqtt"]);
    assert!(emu.info["mqttListen"].is_null(), "{}", emu.info);
    let out = Pki::new([
        "emulator",
        "--in-memory",
        "--listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "nowhere",
        "--data",
    ])
    .arg(dir.path().join("b"))
    .run();
    assert_eq!(out.code, Some(2));
    let err = &out.stderr;
    assert!(
        err.contains("--mqtt-listen `nowhere` is not an address"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
