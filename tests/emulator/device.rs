//! The device API: registration with X.509 and symmetric keys, TLS 1.2 client certificates, CA references.

use super::*;

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
        &pki::validity::Validity::days(5),
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
        &pki::validity::Validity::days(5),
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
