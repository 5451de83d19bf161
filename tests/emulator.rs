//! End-to-end tests of `pki emulator`: the real binary on a loopback port,
//! real HTTPS (reqwest + rustls trusting only the emulator's CA), no mocks.

mod emulator_support;

use std::io::Write;

use base64::Engine;
use emulator_support::{DEVICE_API, Emulator, SERVICE_API, TestChain};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    emu: &Emulator,
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = emu.url(&format!("{path}{sep}{SERVICE_API}"));
    let mut rb = client
        .request(method, url)
        .header("authorization", emu.sas());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json; charset=utf-8")
            .body(b);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn x509_group(id: &str, pem: &str) -> String {
    json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": pem}}}},
        "provisioningStatus": "enabled"
    })
    .to_string()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn enrollment_group_lifecycle_etags_and_paging() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let chain = TestChain::new("Lifecycle");
    let pem = chain.intermediate.cert.pem.clone();

    // Create: 200 (never 201), info computed, certificate never returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    let created = j(&body);
    assert!(!body.contains("BEGIN CERTIFICATE"), "{body}");
    let info = &created["attestation"]["x509"]["signingCertificates"]["primary"]["info"];
    assert_eq!(info["subjectName"], "CN=Lifecycle Intermediate CA");
    assert_eq!(info["version"], 3);
    assert_eq!(info["sha256Thumbprint"].as_str().unwrap().len(), 64);
    let etag1 = created["etag"].as_str().unwrap().to_string();

    // Create again without If-Match: 409 409202.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(j(&body)["errorCode"], 409202);

    // PUT-back of the returned record (info only, no certificate) with If-Match: keeps the certificate.
    let mut back = created.clone();
    back["provisioningStatus"] = json!("disabled");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let updated = j(&body);
    let etag2 = updated["etag"].as_str().unwrap().to_string();
    assert_ne!(etag1, etag2);
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(updated["createdDateTimeUtc"], created["createdDateTimeUtc"]);
    assert_eq!(
        updated["attestation"]["x509"]["signingCertificates"]["primary"]["info"],
        *info
    );

    // Stale etag: 412. Quoted etag (C# v1 style) and `*`: accepted.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let quoted = format!("\"{etag2}\"");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &quoted)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", "*")],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // GET (case-insensitive collection, percent-encoded id) and 404 404204.
    let (s, _, body) = call(&emu, &c, Method::GET, "/enrollmentgroups/LINE-1", &[], None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["enrollmentGroupId"], "line-1");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::GET,
        "/enrollmentGroups/missing",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j(&body)["errorCode"], 404204);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/a%3Ab",
        &[],
        Some(x509_group("a:b", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // attestationmechanism (lower-case g, as Node sends it).
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollmentgroups/line-1/attestationmechanism",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["type"], "x509");

    // Symmetric-key group: keys generated and returned.
    let sym = json!({"enrollmentGroupId":"sym","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":null,"secondaryKey":null}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/sym",
        &[],
        Some(sym.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        j(&body)["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .len(),
        88
    );

    // Paging: 3 more groups, 6 in all, page size 4 → 4 + 2, no continuation on the last page.
    for i in 0..3 {
        let id = format!("page-{i}");
        let (s, _, _) = call(
            &emu,
            &c,
            Method::PUT,
            &format!("/enrollmentGroups/{id}"),
            &[],
            Some(x509_group(&id, &pem)),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut hdrs = vec![("x-ms-max-item-count", "4".to_string())];
        if let Some(t) = &token {
            hdrs.push(("x-ms-continuation", t.clone()));
        }
        let hdrs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, h, body) = call(
            &emu,
            &c,
            Method::POST,
            "/enrollmentGroups/query",
            &hdrs,
            Some(r#"{"query":"*"}"#.into()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(h["x-ms-item-type"], "EnrollmentGroup");
        let items = j(&body);
        for g in items.as_array().unwrap() {
            seen.push(g["enrollmentGroupId"].as_str().unwrap().to_string());
        }
        assert!(!body.contains("BEGIN CERTIFICATE"));
        pages += 1;
        match h.get("x-ms-continuation") {
            Some(t) => {
                assert!(!t.is_empty());
                token = Some(t.to_str().unwrap().to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 6, "{seen:?}");

    // DELETE: stale etag 412, then 204 with no body and no Content-Type, then 404.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, h, body) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert!(h.get("content-type").is_none());
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_if_match_updates_lose_nothing() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sym = json!({"enrollmentGroupId":"race","attestation":{"type":"symmetricKey"}});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/race",
        &[],
        Some(sym.to_string()),
    )
    .await;
    let rec = j(&body);
    let etag = rec["etag"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (emu_url, sas, c, etag) = (
            emu.url(&format!("/enrollmentGroups/race?{SERVICE_API}")),
            emu.sas(),
            c.clone(),
            etag.clone(),
        );
        let mut r = rec.clone();
        r["initialTwin"] = json!({"tags": {"writer": i}});
        tasks.push(tokio::spawn(async move {
            c.put(emu_url)
                .header("authorization", sas)
                .header("if-match", etag)
                .header("content-type", "application/json")
                .body(r.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer may win an If-Match race");
}

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

async fn register(emu: &Emulator, identity: &str, reg_id: &str) -> (StatusCode, Value) {
    let c = emu.client(Some(identity));
    register_with(emu, &c, reg_id, None).await
}

async fn register_with(
    emu: &Emulator,
    c: &Client,
    reg_id: &str,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let scope = emu.id_scope();
    let mut rb = c
        .put(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/register?{DEVICE_API}"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"registrationId": reg_id}).to_string());
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    if status != StatusCode::ACCEPTED {
        return (status, j(&r.text().await.unwrap()));
    }
    assert_eq!(r.headers()["retry-after"], "1");
    let op = j(&r.text().await.unwrap());
    assert_eq!(op["status"], "assigning");
    let op_id = op["operationId"].as_str().unwrap();
    // The Node device client sends `{}` on the status GET.
    let mut rb = c
        .get(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/operations/{op_id}?{DEVICE_API}"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .body("{}");
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    (status, j(&r.text().await.unwrap()))
}

#[tokio::test]
async fn x509_group_registration_succeeds_and_fails_precisely() {
    let dir = tmp();
    let emu = Emulator::start(
        dir.path(),
        &["--in-memory", "--iot-hub", "hub-a.azure-devices.net"],
    );
    let c = emu.client(None);
    let chain = TestChain::new("Factory");
    let other = TestChain::new("Other");
    // Group on the intermediate (sent as base64 of the PEM, as the Node e2e tests do).
    let b64pem = base64::engine::general_purpose::STANDARD.encode(&chain.intermediate.cert.pem);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/factory",
        &[],
        Some(x509_group("factory", &b64pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Success: leaf + intermediate.
    let (identity, _) = chain.device("device-01");
    let (s, v) = register(&emu, &identity, "device-01").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "assigned", "{v}");
    let st = &v["registrationState"];
    assert_eq!(st["assignedHub"], "hub-a.azure-devices.net");
    assert_eq!(st["deviceId"], "device-01");
    assert_eq!(st["substatus"], "initialAssignment");
    assert_eq!(st["x509"]["enrollmentGroupId"], "factory");

    // Visible through the service API, and in the group's registration query.
    let (s, _, body) = call(&emu, &c, Method::GET, "/registrations/device-01", &[], None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["assignedHub"], "hub-a.azure-devices.net");
    let (s, h, body) = call(
        &emu,
        &c,
        Method::POST,
        "/registrations/factory/query",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h["x-ms-item-type"], "DeviceRegistration");
    assert_eq!(j(&body).as_array().unwrap().len(), 1);

    // Leaf only (the group certificate issued it): also fine.
    let key = pki::keys::KeyType::EcP256.generate().unwrap();
    let leaf = pki::issue::issue(
        &pki::profile::Profile::Device,
        "device-02",
        5,
        &key,
        Some(&chain.intermediate),
    )
    .unwrap();
    let leaf_only = format!(
        "{}{}",
        pki::keys::private_key_pem(&key, None).unwrap(),
        leaf.pem
    );
    let (s, v) = register(&emu, &leaf_only, "device-02").await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Wrong CA.
    let (identity, _) = other.device("device-03");
    let (s, v) = register(&emu, &identity, "device-03").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errorCode"], 401002);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no enrollment group matches this device"),
        "{v}"
    );

    // CN ≠ registration ID.
    let (identity, _) = chain.device("device-04");
    let (s, v) = register(&emu, &identity, "device-05").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("does not match the registration ID"),
        "{v}"
    );

    // No credentials at all.
    let (s, v) = register_with(&emu, &emu.client(None), "device-06", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no device credential"),
        "{v}"
    );

    // Disabled group: a completed operation with status disabled and a reason.
    let (_, _, body) = call(
        &emu,
        &c,
        Method::GET,
        "/enrollmentGroups/factory",
        &[],
        None,
    )
    .await;
    let mut g = j(&body);
    g["provisioningStatus"] = json!("disabled");
    let etag = g["etag"].as_str().unwrap().to_string();
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/factory",
        &[("if-match", &etag)],
        Some(g.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (identity, _) = chain.device("device-07");
    let (s, v) = register(&emu, &identity, "device-07").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "disabled");
    assert!(
        v["registrationState"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("is disabled"),
        "{v}"
    );
}

#[tokio::test]
async fn symmetric_key_and_individual_enrollments() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let scope = emu.id_scope();
    let group = json!({"enrollmentGroupId":"sym","attestation":{"type":"symmetricKey"},
        "allocationPolicy":"hashed","iotHubs":["h1.azure-devices.net","h2.azure-devices.net"]});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/sym",
        &[],
        Some(group.to_string()),
    )
    .await;
    let gkey = j(&body)["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let device_key = pki::dps::sas::derive_device_key(&gkey, "sym-device").unwrap();
    let sr = format!("{scope}/registrations/sym-device");
    let token =
        pki::dps::sas::create_token(&sr, &device_key, Some("registration"), 4_000_000_000).unwrap();
    let (s, v) = register_with(&emu, &c, "sym-device", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["registrationState"]["symmetricKey"]["enrollmentGroupId"],
        "sym"
    );
    assert!(
        v["registrationState"]["assignedHub"]
            .as_str()
            .unwrap()
            .starts_with('h')
    );
    // Wrong key.
    let bad = pki::dps::sas::create_token(&sr, &gkey, Some("registration"), 4_000_000_000).unwrap();
    let (s, v) = register_with(&emu, &c, "sym-device", Some(&bad)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("matches no enrollment"),
        "{v}"
    );

    // Individual X.509 enrollment with the device's own certificate.
    let chain = TestChain::new("Individual");
    let (identity, leaf) = chain.device("solo-1");
    let e = json!({"registrationId":"solo-1","deviceId":"solo-device",
        "attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate": leaf.pem}}}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollments/solo-1",
        &[],
        Some(e.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollments/solo-1",
        &[],
        Some(e.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = register(&emu, &identity, "solo-1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["registrationState"]["deviceId"], "solo-device");
    // GET of the enrollment now carries registrationState.
    let (_, _, body) = call(&emu, &c, Method::GET, "/enrollments/solo-1", &[], None).await;
    assert_eq!(
        j(&body)["registrationState"]["status"],
        "assigned",
        "{body}"
    );
    let (s, _, body) = call(&emu, &c, Method::GET, "/enrollments/nobody", &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j(&body)["errorCode"], 404201);
    // Registration delete.
    let (s, _, _) = call(&emu, &c, Method::DELETE, "/registrations/solo-1", &[], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, body) = call(&emu, &c, Method::GET, "/registrations/solo-1", &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn ca_certificate_proof_of_possession() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory", "--require-verified-ca"]);
    let c = emu.client(None);
    let chain = TestChain::new("Pop");
    let base = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/dps/certificates/root";
    let arm = |m: Method, path: String, etag: Option<String>, body: Option<Value>| {
        let c = c.clone();
        let url = emu.url(&format!("{path}?api-version=2022-02-05"));
        async move {
            let mut rb = c
                .request(m, url)
                .header("authorization", "Bearer test-token");
            if let Some(e) = etag {
                rb = rb.header("if-match", e);
            }
            if let Some(b) = body {
                rb = rb
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let r = rb.send().await.unwrap();
            let s = r.status();
            let t = r.text().await.unwrap();
            (s, if t.is_empty() { Value::Null } else { j(&t) })
        }
    };
    // Group on the root; device registration fails until the root is verified.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/pop",
        &[],
        Some(x509_group("pop", &chain.root.cert.pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (identity, _) = chain.device("pop-device");
    let (s, v) = register(&emu, &identity, "pop-device").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["message"].as_str().unwrap().contains("verified CA"),
        "{v}"
    );

    let (s, v) = arm(
        Method::PUT,
        base.into(),
        None,
        Some(json!({"properties":{"certificate": chain.root.cert.pem}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["properties"]["isVerified"], false);
    let etag = v["etag"].as_str().unwrap().to_string();
    // generateVerificationCode needs If-Match.
    let (s, _) = arm(
        Method::POST,
        format!("{base}/generateVerificationCode"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = arm(
        Method::POST,
        format!("{base}/generateVerificationCode"),
        Some(etag.clone()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let code = v["properties"]["verificationCode"]
        .as_str()
        .unwrap()
        .to_string();
    let etag2 = v["etag"].as_str().unwrap().to_string();
    assert_ne!(etag, etag2);
    // A certificate with the wrong CN, or signed by another key, is refused.
    let key = pki::keys::KeyType::EcP256.generate().unwrap();
    let wrong_cn = pki::issue::issue(
        &pki::profile::Profile::Verification,
        "not-the-code",
        1,
        &key,
        Some(&chain.root),
    )
    .unwrap();
    let (s, v) = arm(
        Method::POST,
        format!("{base}/verify"),
        Some(etag2.clone()),
        Some(json!({"certificate": wrong_cn.pem})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"].as_str().unwrap().contains("verification code"),
        "{v}"
    );
    let wrong_key = pki::issue::issue(
        &pki::profile::Profile::Verification,
        &code,
        1,
        &key,
        Some(&chain.intermediate),
    )
    .unwrap();
    let (s, v) = arm(
        Method::POST,
        format!("{base}/verify"),
        Some(etag2.clone()),
        Some(json!({"certificate": wrong_key.pem})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not signed by the private key"),
        "{v}"
    );
    let proof = pki::issue::issue(
        &pki::profile::Profile::Verification,
        &code,
        1,
        &key,
        Some(&chain.root),
    )
    .unwrap();
    let b64der = base64::engine::general_purpose::STANDARD.encode(&proof.der);
    let (s, v) = arm(
        Method::POST,
        format!("{base}/verify"),
        Some(etag2),
        Some(json!({"certificate": b64der})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["properties"]["isVerified"], true);
    let (s, v) = arm(
        Method::GET,
        base.trim_end_matches("/root").into(),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"].as_array().unwrap().len(), 1);

    // Now the device registers.
    let (s, v) = register(&emu, &identity, "pop-device").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "assigned");

    // No bearer token: 401.
    let r = c
        .get(emu.url(&format!("{base}?api-version=2022-02-05")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
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

#[tokio::test]
async fn tls12_client_certificates_and_reprovisioning() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let chain = TestChain::new("Tls12");
    let group = json!({"enrollmentGroupId":"re","allocationPolicy":"static","iotHubs":["first.azure-devices.net"],
        "attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate": chain.root.cert.pem}}}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/re",
        &[],
        Some(group.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // A TLS 1.2 device (the Python MQTT client pins 1.2): the handshake signature is checked the 1.2 way.
    let (identity, _) = chain.device("moving-device");
    let ca = std::fs::read(emu.info["caFile"].as_str().unwrap()).unwrap();
    let tls12 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .resolve("localhost", emu.addr)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (s, v) = register_with(&emu, &tls12, "moving-device", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["registrationState"]["assignedHub"],
        "first.azure-devices.net"
    );
    let created = v["registrationState"]["createdDateTimeUtc"].clone();

    // Move the group to another hub: re-registering migrates the device (reprovisionPolicy defaults).
    let (_, _, body) = call(&emu, &c, Method::GET, "/enrollmentGroups/re", &[], None).await;
    let mut g = j(&body);
    g["iotHubs"] = json!(["second.azure-devices.net"]);
    let etag = g["etag"].as_str().unwrap().to_string();
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/re",
        &[("if-match", &etag)],
        Some(g.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, v) = register(&emu, &identity, "moving-device").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["registrationState"]["assignedHub"],
        "second.azure-devices.net"
    );
    assert_eq!(v["registrationState"]["substatus"], "deviceDataMigrated");
    assert_eq!(v["registrationState"]["createdDateTimeUtc"], created);

    // With updateHubAssignment false the device stays where it is.
    let (_, _, body) = call(&emu, &c, Method::GET, "/enrollmentGroups/re", &[], None).await;
    let mut g = j(&body);
    g["iotHubs"] = json!(["third.azure-devices.net"]);
    g["reprovisionPolicy"] = json!({"updateHubAssignment": false, "migrateDeviceData": false});
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/re",
        &[("if-match", "*")],
        Some(g.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = register(&emu, &identity, "moving-device").await;
    assert_eq!(
        v["registrationState"]["assignedHub"], "second.azure-devices.net",
        "{v}"
    );

    // An operation cannot be read with another device's certificate.
    let (other, _) = chain.device("other-device");
    let scope = emu.id_scope();
    let r = emu
        .client(Some(&identity))
        .put(emu.url(&format!(
            "/{scope}/registrations/moving-device/register?{DEVICE_API}"
        )))
        .body("{}")
        .send()
        .await
        .unwrap();
    let op = j(&r.text().await.unwrap())["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = emu
        .client(Some(&other))
        .get(emu.url(&format!(
            "/{scope}/registrations/moving-device/operations/{op}?{DEVICE_API}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
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
async fn bulk_operations_and_individual_enrollment_queries() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sk = |id: &str| json!({"registrationId": id, "attestation": {"type": "symmetricKey"}});
    let bulk = json!({"mode": "create", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    // Creating again reports a per-item 409201, still HTTP 200.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = j(&body);
    assert_eq!(v["isSuccessful"], false);
    assert_eq!(v["errors"][0]["errorCode"], 409201, "{body}");
    assert_eq!(v["errors"][0]["registrationId"], "bulk-1");
    // More than 10 items is refused.
    let many: Vec<Value> = (0..11).map(|i| sk(&format!("m-{i}"))).collect();
    let (s, _, _) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(json!({"mode":"create","enrollments": many}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Query of individual enrollments: item type Enrollment, keys returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments/query",
        &[],
        Some(r#"{"query":"SELECT *"}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-ms-item-type"], "Enrollment");
    let items = j(&body);
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert!(items[0]["attestation"]["symmetricKey"]["primaryKey"].is_string());
    assert!(h.get("x-ms-continuation").is_none());
    // Bulk delete.
    let del = json!({"mode": "delete", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(del.to_string()),
    )
    .await;
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    let (_, _, body) = call(&emu, &c, Method::POST, "/enrollments/query", &[], None).await;
    assert_eq!(body, "[]");
}

/// A service SAS token for resource `host` (as a client of that host name signs it).
fn sas_for(emu: &Emulator, host: &str) -> String {
    pki::dps::sas::create_token(
        host,
        &emu.key,
        Some("provisioningserviceowner"),
        4_000_000_000,
    )
    .unwrap()
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

#[tokio::test]
async fn ca_references_and_broken_chains() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let chain = TestChain::new("Referenced");
    // The CA lives in the certificate store (verified on upload); the group refers to it by name.
    let r = c
        .put(emu.url("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/dps/certificates/ref-root?api-version=2021-10-15"))
        .header("authorization", "Bearer t")
        .header("content-type", "application/json")
        .body(json!({"properties": {"certificate": chain.root.cert.pem, "isVerified": true}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let group = json!({"enrollmentGroupId": "by-reference",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "ref-root"}}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/by-reference",
        &[],
        Some(group.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        j(&body)["attestation"]["x509"]["caReferences"],
        json!({"primary": "ref-root"})
    );
    let (identity, _) = chain.device("ref-device");
    let (s, v) = register(&emu, &identity, "ref-device").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["registrationState"]["x509"]["enrollmentGroupId"], "by-reference",
        "{v}"
    );

    // Leaf followed by somebody else's intermediate: the broken link is named.
    let other = TestChain::new("Elsewhere");
    let key = pki::keys::KeyType::EcP256.generate().unwrap();
    let leaf = pki::issue::issue(
        &pki::profile::Profile::Device,
        "mixed-device",
        5,
        &key,
        Some(&chain.intermediate),
    )
    .unwrap();
    let mixed = format!(
        "{}{}{}",
        pki::keys::private_key_pem(&key, None).unwrap(),
        leaf.pem,
        other.intermediate.cert.pem
    );
    let (s, v) = register(&emu, &mixed, "mixed-device").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("certificate #0") && m.contains("but the next certificate in the chain is"),
        "{m}"
    );
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
