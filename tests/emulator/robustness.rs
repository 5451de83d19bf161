//! Durability and robustness: bad and garbage input, stalled and oversized requests, kill -9, SIGTERM, new host names.

use super::*;

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", "{\"enrollmentGroupId\":".into(), 400, "not a valid"),
        ("wrong type", r#"{"enrollmentGroupId":"g","attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate":5}}}}}"#.into(), 400, "wrong type"),
        // serde would quote the value; a key sent in the wrong place must not come back.
        ("key in a wrong-typed field", r#"{"enrollmentGroupId":"g","attestation":{"type":"symmetricKey","symmetricKey":"S3CR3T-KEY-VALUE"}}"#.into(), 400, "line 1 column"),
        ("bad base64", x509_group("g", "@@@not-base64@@@"), 400, "neither PEM nor valid base64"),
        ("private key", x509_group("g", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"), 400, "never upload private keys"),
        ("hubs without policy", r#"{"enrollmentGroupId":"g","attestation":{"type":"symmetricKey"},"iotHubs":["h.azure-devices.net"]}"#.into(), 400, "allocationPolicy must be specified when iotHubs are specified"),
        ("tpm group", r#"{"enrollmentGroupId":"g","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}}}"#.into(), 400, "not valid for an enrollment group"),
        ("custom without webhook", r#"{"enrollmentGroupId":"g","attestation":{"type":"symmetricKey"},"allocationPolicy":"custom"}"#.into(), 400, "webhookUrl"),
        ("id mismatch", r#"{"enrollmentGroupId":"other","attestation":{"type":"symmetricKey"}}"#.into(), 400, "does not match"),
        ("array body", "[1,2]".into(), 400, "not a valid"),
        ("oversized", format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024)), 413, "larger than"),
    ];
    for (what, body, status, needle) in cases {
        let (s, h, text) = call(
            &emu,
            &c,
            Method::PUT,
            "/enrollmentGroups/g",
            &[],
            Some(body),
        )
        .await;
        assert_eq!(s.as_u16(), status, "{what}: {text}");
        assert_eq!(
            h["content-type"], "application/json; charset=utf-8",
            "{what}"
        );
        let v = j(&text);
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{what}: {text}"
        );
        assert_eq!(
            v["errorCode"].as_u64().unwrap() / 1000,
            u64::from(status),
            "{what}: {text}"
        );
        assert!(v["trackingId"].is_string() && v["timestampUtc"].is_string());
        assert!(
            !text.contains("S3CR3T"),
            "{what}: the body's value leaked: {text}"
        );
    }
    // Invalid id.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::GET,
        "/enrollmentGroups/bad%20id",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // SAS problems: all 401 401002.
    let url = emu.url(&format!("/enrollmentGroups/g?{SERVICE_API}"));
    for auth in [
        Some("SharedAccessSignature garbage".to_string()),
        Some("Bearer x".to_string()),
        None,
        Some(emu.sas().replace("sig=", "sig=A")),
        Some(
            pki::dps::sas::create_token(
                &emu.host(),
                &emu.key,
                Some("provisioningserviceowner"),
                1_000_000,
            )
            .unwrap(),
        ),
        Some(
            pki::dps::sas::create_token(&emu.host(), &emu.key, Some("otherpolicy"), 4_000_000_000)
                .unwrap(),
        ),
    ] {
        let mut rb = c.get(&url);
        if let Some(a) = &auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(j(&r.text().await.unwrap())["errorCode"], 401002);
    }

    // api-version: missing or unknown → 400 in the gateway shape.
    for q in ["", "?api-version=2000-01-01"] {
        let r = c
            .get(emu.url(&format!("/enrollmentGroups/g{q}")))
            .header("authorization", emu.sas())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(
            j(&r.text().await.unwrap())["Message"]
                .as_str()
                .unwrap()
                .starts_with("ErrorCode:ArgumentInvalid;")
        );
    }

    // Truncated TLS handshakes and non-TLS garbage: the connection dies, the server lives.
    for bytes in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00\xff\x13",
    ] {
        let mut s = std::net::TcpStream::connect(emu.addr).unwrap();
        s.write_all(bytes).unwrap();
        drop(s);
    }
    let (s, _, _) = call(&emu, &c, Method::POST, "/enrollmentGroups/query", &[], None).await;
    assert_eq!(s, StatusCode::OK, "still serving after bad input");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &[]);
    let c = emu.client(None);
    let chain = TestChain::new("Durable");
    for i in 0..20 {
        let id = format!("durable-{i}");
        let (s, _, _) = call(
            &emu,
            &c,
            Method::PUT,
            &format!("/enrollmentGroups/{id}"),
            &[],
            Some(x509_group(&id, &chain.root.cert.pem)),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (identity, _) = chain.device("durable-device");
    let (s, v) = register(&emu, &identity, "durable-device").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first = emu.info.clone();
    emu.kill9();

    let emu = Emulator::start(dir.path(), &[]);
    assert_eq!(emu.info["idScope"], first["idScope"], "ID scope reused");
    assert_eq!(emu.info["caFile"], first["caFile"]);
    assert_eq!(
        emu.key,
        first["connectionString"]
            .as_str()
            .unwrap()
            .rsplit("SharedAccessKey=")
            .next()
            .unwrap()
    );
    let c = emu.client(None);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollmentGroups/query",
        &[],
        Some("{}".into()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j(&body).as_array().unwrap().len(), 20);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::GET,
        "/registrations/durable-device",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // The stored group certificate still attests devices after the restart.
    let (identity, _) = chain.device("durable-device-2");
    let (s, v) = register(&emu, &identity, "durable-device-2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tmp();
    let mut emu = Emulator::start(dir.path(), &["--in-memory"]);
    let pid = emu.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = emu.child.try_wait().unwrap() {
            assert!(s.success(), "exit status after SIGTERM: {s}");
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test]
async fn new_hostnames_reissue_the_server_certificate_under_the_same_ca() {
    let dir = tmp();
    let first = Emulator::start(
        dir.path(),
        &["--in-memory", "--hostname", "dps-one.example"],
    );
    let ca1 = std::fs::read(first.info["caFile"].as_str().unwrap()).unwrap();
    drop(first);
    let emu = Emulator::start(
        dir.path(),
        &["--in-memory", "--hostname", "dps-two.example"],
    );
    let ca2 = std::fs::read(emu.info["caFile"].as_str().unwrap()).unwrap();
    assert_eq!(ca1, ca2, "the CA clients trust does not change");
    for name in ["dps-one.example", "dps-two.example", "localhost"] {
        let c = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca2).unwrap()])
            .resolve(name, emu.addr)
            .build()
            .unwrap();
        let r = c
            .post(format!(
                "https://{name}:{}/enrollmentGroups/query?{SERVICE_API}",
                emu.addr.port()
            ))
            .header("authorization", sas_for(&emu, name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
}

#[tokio::test]
async fn garbage_requests_never_take_the_server_down() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let scope = emu.id_scope();
    // A small deterministic generator: no extra dependency, reproducible failures.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let paths = [
        "/enrollmentGroups/g".to_string(),
        "/enrollmentGroups/query".into(),
        "/enrollments/e".into(),
        "/enrollments".into(),
        "/registrations/r/query".into(),
        format!("/{scope}/registrations/d/register"),
        format!("/{scope}/registrations/d/operations/x"),
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Devices/provisioningServices/p/certificates/c/verify".into(),
        "/%ff%fe/%00".into(),
    ];
    let bodies = [
        "",
        "{}",
        "[]",
        "null",
        "\"x\"",
        "{\"attestation\":7}",
        "{\"attestation\":{\"type\":\"x509\",\"x509\":{}}}",
        "{\"attestation\":{\"type\":\"x509\",\"x509\":{\"signingCertificates\":{\"primary\":{}}}}}",
        "{\"enrollmentGroups\":[{}],\"mode\":\"create\"}",
        "{\"properties\":{\"certificate\":\"AAAA\"}}",
        "{\"certificate\":\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"}",
        "\u{0}\u{1}\u{2}",
    ];
    let methods = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ];
    for _ in 0..300 {
        let path = &paths[(next() % paths.len() as u64) as usize];
        let body = bodies[(next() % bodies.len() as u64) as usize];
        let method = methods[(next() % methods.len() as u64) as usize].clone();
        let auth = if next() % 2 == 0 {
            emu.sas()
        } else {
            "Bearer t".into()
        };
        // Each API with an api-version it accepts, so requests reach the handlers.
        let version = if path.starts_with("/subscriptions") {
            "2022-02-05"
        } else {
            "2021-10-01"
        };
        let r = c
            .request(
                method.clone(),
                emu.url(&format!("{path}?api-version={version}")),
            )
            .header("authorization", auth)
            .header("if-match", "*")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} {body:?}: {e}"));
        assert!(
            r.status().as_u16() < 500,
            "{method} {path} {body:?}: {}",
            r.status()
        );
    }
    let (s, _, _) = call(&emu, &c, Method::POST, "/enrollmentGroups/query", &[], None).await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn a_stalled_request_body_gets_408_instead_of_holding_the_connection() {
    // A client that sends headers promising a body and then goes quiet.
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(emu.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let request = format!(
        "PUT /enrollmentGroups/g?{SERVICE_API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        emu.sas()
    );
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Keep stdin open (the body never completes) and read what comes back.
    let mut stdout = client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = client.kill();
    let _ = client.wait();
    drop(stdin);
    let text = reader.join().unwrap();
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 answer, got: {text}"
    );
    assert!(text.contains("did not arrive within"), "{text}");
}

#[tokio::test]
async fn oversized_device_payloads_are_refused() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let chain = TestChain::new("Payload");
    let c = emu.client(None);
    let (s, _, text) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/payload-group",
        &[],
        Some(x509_group("payload-group", &chain.intermediate.cert.pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let (identity, _) = chain.device("payload-device");
    let device = emu.client(Some(&identity));
    let url = emu.url(&format!(
        "/{}/registrations/payload-device/register?api-version=2019-03-31",
        emu.id_scope()
    ));
    let big =
        json!({"registrationId": "payload-device", "payload": {"blob": "x".repeat(16 * 1024)}});
    let r = device.put(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("payload is larger"));
    let small = json!({"registrationId": "payload-device", "payload": {"line": 7}});
    let r = device.put(&url).json(&small).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}
