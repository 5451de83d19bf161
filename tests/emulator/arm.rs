//! The ARM certificate API: CA upload and proof of possession.

use super::*;

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
        &pki::validity::Validity::days(1),
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
        &pki::validity::Validity::days(1),
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
        &pki::validity::Validity::days(1),
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
