//! DPS certificate issuance (issue 10) and symmetric keys over MQTT:
//!
//! - a raw MQTT exchange (the rumqttc codec) sends `csr` in the register
//!   PUBLISH under api-version `2025-07-01-preview` and `2026-11-01` and gets
//!   `issuedCertificateChain`; a status poll carrying `csr` is the same 400
//!   as on HTTPS; PEM armour, a CN other than the registration ID and a P-256
//!   key are refused with the same status, code and message as on HTTPS; the
//!   issued certificate then registers over MQTT;
//! - `pki register --csr auto --transport mqtt|mqtt-ws` end to end, then
//!   re-registration with the issued certificate on the same transport, and
//!   the refusals of `--csr FILE` identical on every transport;
//! - `pki register --group-key` over mqtt and mqtt-ws (SAS token as the
//!   CONNECT password), and a wrong key refused with the same text as HTTPS.
//!
//! Everything runs on free ports (port 0): nothing here needs the fixed-port lock.

use std::path::Path;

use base64::Engine;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Subscribe};
use serde_json::{Value, json};

use crate::emulator_mqtt::{Device, pki_register};
use crate::support::*;

/// The certificate policy the tests' emulator declares.
const CERT_POLICY: &str = "mqtt-ns/mqtt-ca/devices";

/// The base64 DER of a PEM CSR file (what DPS wants in `csr`).
fn csr_b64(path: &Path) -> String {
    let block = pem::parse(std::fs::read(path).unwrap()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(block.contents())
}

/// An emulator with [`CERT_POLICY`] and group `line` on a fresh chain's
/// intermediate, enrolled with that policy; the chain has `devices`.
fn issuing_emulator(devices: &[&str]) -> (Emulator, TestChain) {
    let emu = Emulator::start_in_temp(&["--certificate-policy", &format!("{CERT_POLICY}:14")]);
    let chain = TestChain::make(&emu.scratch().join("ca"), "MqttIssue", devices);
    emu.pki(&[
        "enroll",
        "line",
        "--cert",
        s(&chain.intermediate_cert()),
        "--certificate-policy",
        CERT_POLICY,
    ])
    .ok();
    (emu, chain)
}

fn policy_root(emu: &Emulator) -> String {
    emu.info["certificatePolicies"][0]["rootFile"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An MQTT device connected with api-version `api` and subscribed.
async fn mqtt_device(emu: &Emulator, identity: &str, reg: &str, api: &str) -> Device {
    let addr = emu.info["mqttListen"].as_str().unwrap();
    let ca = std::fs::read_to_string(emu.ca()).unwrap();
    let mut d = Device::open(addr, &ca, Some(identity)).await;
    let user = format!(
        "{}/registrations/{reg}/api-version={api}&ClientVersion=pki-test%2F1",
        emu.id_scope()
    );
    match d.connect(reg, &user, None).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    d.send(Packet::Subscribe(Subscribe::new(
        "$dps/registrations/res/#",
        QoS::AtLeastOnce,
    )))
    .await;
    assert!(matches!(d.next().await, Some(Packet::SubAck(_))));
    d
}

/// PUBLISH a register request with `csr` (if any): (status, body).
async fn mqtt_put(d: &mut Device, reg: &str, csr: Option<Value>, pkid: u16) -> (u16, Value) {
    let mut body = json!({ "registrationId": reg });
    if let Some(c) = csr {
        body["csr"] = c;
    }
    let (status, v, _) = d
        .request(
            &format!("$dps/registrations/PUT/iotdps-register/?$rid=put-{pkid}"),
            body.to_string().as_bytes(),
            pkid,
        )
        .await;
    (status, v)
}

/// PUBLISH a status poll with `body`: (status, body).
async fn mqtt_poll(d: &mut Device, op: &str, body: &[u8], pkid: u16) -> (u16, Value) {
    let (status, v, _) = d
        .request(
            &format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=get-{pkid}&operationId={op}"
            ),
            body,
            pkid,
        )
        .await;
    (status, v)
}

/// The same register request over HTTPS at api-version `api`: (status, body).
async fn https_put(
    emu: &Emulator,
    identity: &str,
    reg: &str,
    csr: Option<Value>,
    api: &str,
) -> (u16, Value) {
    let mut body = json!({ "registrationId": reg });
    if let Some(c) = csr {
        body["csr"] = c;
    }
    let r = emu
        .client(Some(identity))
        .put(emu.url(&format!(
            "/{}/registrations/{reg}/register?api-version={api}",
            emu.id_scope()
        )))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The parts of a DPS error that must match across transports.
fn refusal(r: &(u16, Value)) -> Value {
    json!({"status": r.0, "errorCode": r.1["errorCode"], "message": r.1["message"]})
}

#[tokio::test]
async fn mqtt_register_with_csr_issues_a_chain_and_refuses_like_https() {
    let (emu, chain) = issuing_emulator(&[]);
    let root = policy_root(&emu);
    let work = emu.scratch().join("work");
    let (identity, _) = chain.device("mq-01");
    let csrs = work.join("csrs");
    pki(&["csr", "new", "mq-01", "--out", s(&csrs)]).ok();
    let good = csr_b64(&csrs.join("csr/mq-01.csr.pem"));

    for (i, api) in ["2025-07-01-preview", "2026-11-01"].into_iter().enumerate() {
        let mut d = mqtt_device(&emu, &identity, "mq-01", api).await;
        let (status, v) = mqtt_put(&mut d, "mq-01", Some(json!(good)), 1).await;
        assert_eq!(status, 202, "{api}: {v}");
        let op = v["operationId"].as_str().unwrap().to_string();
        // A status poll that carries `csr`: the same 400 as HTTPS.
        let with_csr = json!({ "csr": good }).to_string();
        let m = mqtt_poll(&mut d, &op, with_csr.as_bytes(), 2).await;
        let h = emu
            .client(Some(&identity))
            .get(emu.url(&format!(
                "/{}/registrations/mq-01/operations/{op}?api-version={api}",
                emu.id_scope()
            )))
            .header("content-type", "application/json")
            .body(with_csr.clone())
            .send()
            .await
            .unwrap();
        let h = (h.status().as_u16(), h.json::<Value>().await.unwrap());
        assert_eq!(m.0, 400, "{api}: {}", m.1);
        assert_eq!(refusal(&m), refusal(&h), "{api}");
        assert!(
            m.1["message"]
                .as_str()
                .unwrap()
                .contains("must not carry `csr`"),
            "{}",
            m.1
        );

        let (status, poll) = mqtt_poll(&mut d, &op, b" ", 3).await;
        assert_eq!(status, 200, "{poll}");
        assert_eq!(poll["status"], "assigned", "{poll}");
        let issued = poll["registrationState"]["issuedCertificateChain"]
            .as_array()
            .unwrap_or_else(|| panic!("{api}: no issuedCertificateChain in {poll}"));
        assert_eq!(issued.len(), 3, "{poll}");
        let pems: Vec<String> = issued
            .iter()
            .map(|c| {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(c.as_str().unwrap())
                    .unwrap();
                pem::encode(&pem::Pem::new("CERTIFICATE", der))
            })
            .collect();
        let leaf = work.join(format!("issued-{i}.pem"));
        let full = work.join(format!("issued-{i}-full.pem"));
        std::fs::write(&leaf, &pems[0]).unwrap();
        std::fs::write(&full, pems.concat()).unwrap();
        assert_verifies(&root, Some(s(&full)), s(&leaf));
        assert!(x509_text(s(&leaf)).contains("Subject: CN = mq-01"));
        assert_eq!(
            openssl(&["x509", "-in", s(&leaf), "-noout", "-pubkey"])
                .ok()
                .stdout,
            openssl(&[
                "req",
                "-in",
                &p(&csrs, "csr/mq-01.csr.pem"),
                "-noout",
                "-pubkey"
            ])
            .ok()
            .stdout
        );
        d.send(Packet::Disconnect).await;

        // The issued certificate (and the CSR's key) is the device's credential now.
        let issued_identity = format!(
            "{}{}",
            std::fs::read_to_string(csrs.join("private/mq-01.key.pem")).unwrap(),
            pems.concat()
        );
        let mut d = mqtt_device(&emu, &issued_identity, "mq-01", api).await;
        let (status, v) = mqtt_put(&mut d, "mq-01", None, 1).await;
        assert_eq!(status, 202, "{v}");
        let op = v["operationId"].as_str().unwrap().to_string();
        let (_, poll) = mqtt_poll(&mut d, &op, b" ", 2).await;
        assert_eq!(poll["status"], "assigned", "{poll}");
        assert_eq!(
            poll["registrationState"]["x509"]["enrollmentGroupId"], "line",
            "{poll}"
        );
        d.send(Packet::Disconnect).await;
    }

    // Refusals of the CSR: the same status, code and message on both transports.
    let other = work.join("other");
    pki(&["csr", "new", "someone-else", "--out", s(&other)]).ok();
    let p256 = work.join("p256");
    pki(&["csr", "new", "mq-01", "--key", "ec-p256", "--out", s(&p256)]).ok();
    let armoured = std::fs::read_to_string(csrs.join("csr/mq-01.csr.pem")).unwrap();
    let cases = [
        ("PEM armour", json!(armoured), "armour"),
        (
            "CN is not the registration ID",
            json!(csr_b64(&other.join("csr/someone-else.csr.pem"))),
            "someone-else",
        ),
        (
            "P-256 key",
            json!(csr_b64(&p256.join("csr/mq-01.csr.pem"))),
            "P-384",
        ),
    ];
    let api = "2026-11-01";
    for (i, (what, csr, word)) in cases.into_iter().enumerate() {
        let mut d = mqtt_device(&emu, &identity, "mq-01", api).await;
        let m = mqtt_put(&mut d, "mq-01", Some(csr.clone()), 1 + i as u16).await;
        d.send(Packet::Disconnect).await;
        let h = https_put(&emu, &identity, "mq-01", Some(csr), api).await;
        assert_eq!(m.0, 400, "{what}: {}", m.1);
        assert_eq!(refusal(&m), refusal(&h), "{what}");
        let msg = m.1["message"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{what}: {msg}");
    }
}

/// `pki register` flags for the emulator over `transport`.
fn host_for(emu: &Emulator, transport: &str) -> String {
    let port = match transport {
        "mqtt" => emu.info["mqttListen"]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .port(),
        _ => emu.port(),
    };
    format!("localhost:{port}")
}

#[test]
fn pki_register_csr_auto_over_mqtt_and_websockets_then_the_issued_certificate() {
    let (emu, chain) = issuing_emulator(&["mq-02", "mq-03", "mq-04"]);
    let root = policy_root(&emu);
    let (scope, ca) = (emu.id_scope(), emu.ca());
    for (transport, id) in [("mqtt", "mq-02"), ("mqtt-ws", "mq-03")] {
        let host = host_for(&emu, transport);
        let out = emu.scratch().join(format!("issued-{transport}"));
        let cert_chain = chain.device_chain(id);
        let key = chain.device_key(id);
        let base = [
            "--transport",
            transport,
            "--host",
            &host,
            "--id-scope",
            &scope,
            "--ca-file",
            &ca,
        ];
        let mut args = base.to_vec();
        args.extend([
            "--cert",
            s(&cert_chain),
            "--key",
            s(&key),
            "--csr",
            "auto",
            "--out",
            s(&out),
        ]);
        let (code, stdout, stderr) = pki_register(&args);
        assert_eq!(code, 0, "{transport}: {stdout}{stderr}");
        let cert = out.join(format!("certs/{id}.issued.cert.pem"));
        let full = out.join(format!("certs/{id}.issued-full-chain.cert.pem"));
        let issued_key = out.join(format!("private/{id}.issued.key.pem"));
        for f in [&cert, &full, &issued_key] {
            assert!(stdout.contains(s(f)), "{transport}: {stdout}");
        }
        assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
        assert_eq!(mode(s(&issued_key)), 0o600);
        assert_verifies(&root, Some(s(&full)), s(&cert));
        assert!(x509_text(s(&cert)).contains(&format!("Subject: CN = {id}")));

        // Re-registration with the issued certificate, on the same transport.
        let mut args = base.to_vec();
        args.extend(["--cert", s(&full), "--key", s(&issued_key)]);
        let (code, stdout, stderr) = pki_register(&args);
        assert_eq!(code, 0, "{transport}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("assigned: device {id}"))
                && stdout.contains("enrollment group: line"),
            "{transport}: {stdout}"
        );
    }

    // --csr FILE refusals: exit 2, one line, the same on every transport.
    let csrs = emu.scratch().join("csrs");
    pki(&["csr", "new", "someone-else", "--out", s(&csrs)]).ok();
    let p256 = emu.scratch().join("p256");
    pki(&["csr", "new", "mq-04", "--key", "ec-p256", "--out", s(&p256)]).ok();
    let (cert_chain, key) = (chain.device_chain("mq-04"), chain.device_key("mq-04"));
    for (what, file, word) in [
        (
            "bad CN",
            p(&csrs, "csr/someone-else.csr.pem"),
            "not the registration ID",
        ),
        ("P-256", p(&p256, "csr/mq-04.csr.pem"), "only EC P-384"),
    ] {
        let mut seen = Vec::new();
        for transport in ["https", "mqtt", "mqtt-ws"] {
            let host = host_for(&emu, transport);
            let out = emu.scratch().join("refused");
            let r = pki_register(&[
                "--transport",
                transport,
                "--host",
                &host,
                "--id-scope",
                &scope,
                "--ca-file",
                &ca,
                "--cert",
                s(&cert_chain),
                "--key",
                s(&key),
                "--csr",
                &file,
                "--out",
                s(&out),
            ]);
            assert_eq!(r.0, 2, "{what} over {transport}: {r:?}");
            assert_eq!(r.2.trim().lines().count(), 1, "{what}: {r:?}");
            assert!(r.2.contains(word), "{what}: {r:?}");
            seen.push(r);
        }
        assert_eq!(seen[0], seen[1], "{what}: https vs mqtt");
        assert_eq!(seen[0], seen[2], "{what}: https vs mqtt-ws");
    }
}

#[tokio::test]
async fn pki_register_symmetric_keys_over_mqtt_and_websockets() {
    let dir = tmp();
    let emu = Emulator::start(&dir.path().join("data"), &["--in-memory"]);
    let (scope, ca) = (emu.id_scope(), emu.ca());
    let key = "c3ltbWV0cmljIGtleXMgb3ZlciBtcXR0IGZvciBwa2kgcmVnaXN0ZXI=";
    let wrong = "bm90IHRoZSBncm91cCBrZXkgYnV0IGEgdmFsaWQgYmFzZTY0IHN0cmluZw==";
    emu.put_group(
        "sym-mq",
        &json!({"enrollmentGroupId": "sym-mq", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key, "secondaryKey": key}}}),
    )
    .await;
    let device_key = pki::dps::sas::derive_device_key(key, "symmq-01").unwrap();
    let mut assigned = Vec::new();
    let mut refused = Vec::new();
    for transport in ["https", "mqtt", "mqtt-ws"] {
        let host = host_for(&emu, transport);
        let base = [
            "--transport",
            transport,
            "--host",
            &host,
            "--id-scope",
            &scope,
            "--ca-file",
            &ca,
            "--registration-id",
            "symmq-01",
        ];
        let mut args = base.to_vec();
        args.extend(["--group-key", key]);
        let ok = pki_register(&args);
        assert_eq!(ok.0, 0, "{transport}: {ok:?}");
        assert!(
            ok.1.contains("assigned: device symmq-01") && ok.1.contains("enrollment group: sym-mq"),
            "{transport}: {ok:?}"
        );
        // The device's own key, from PKI_DEVICE_KEY.
        let mut args = base.to_vec();
        args.push("--symmetric-key");
        let out = Pki::new(["register"])
            .args(&args)
            .env("PKI_DEVICE_KEY", &device_key)
            .secret(&device_key)
            .run();
        assert_eq!(out.code, Some(0), "{transport}: {}", out.stderr);
        assert!(out.stdout.contains("assigned: device symmq-01"));

        let mut args = base.to_vec();
        args.extend(["--group-key", wrong]);
        let bad = pki_register(&args);
        assert_eq!(bad.0, 1, "{transport}: {bad:?}");
        assert!(
            bad.2.contains("DPS error 401002")
                && bad.2.contains("DPS did not accept the device's SAS token"),
            "{transport}: {bad:?}"
        );
        for text in [&ok.1, &ok.2, &bad.1, &bad.2] {
            assert!(!text.contains(key) && !text.contains(wrong) && !text.contains(&device_key));
            assert!(!text.contains("sig="), "{text}");
        }
        assigned.push(ok);
        refused.push(bad);
    }
    assert_eq!(assigned[0], assigned[1], "https vs mqtt");
    assert_eq!(assigned[0], assigned[2], "https vs mqtt-ws");
    assert_eq!(refused[0], refused[1], "https vs mqtt");
    assert_eq!(refused[0], refused[2], "https vs mqtt-ws");
}
