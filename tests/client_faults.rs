//! Fault injection for `pki enroll` (and the HTTP layer under every DPS
//! command) against a scripted HTTPS server: throttling honoured, 5xx past
//! the retry limit, etag races, unreachable hosts, untrusted TLS, wrong keys,
//! paging, and input refused before any request. Every run also checks that
//! the connection string's key never appears in the output.

use std::time::Duration;

use crate::support::{
    Fake, KEY, POLICY, Reply, TestChain, connection_string, pki_env, stderr, stdout,
};
use serde_json::json;

fn stored_group(id: &str, etag: &str) -> serde_json::Value {
    json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"info": {
            "subjectName": "CN=Old Root", "sha1Thumbprint": "AA", "sha256Thumbprint": "BB",
            "issuerName": "CN=Old Root", "notBeforeUtc": "2025-01-01T00:00:00Z",
            "notAfterUtc": "2035-01-01T00:00:00Z", "serialNumber": "01", "version": 3}}}}},
        "provisioningStatus": "enabled",
        "futureField": {"kept": true},
        "etag": etag,
        "createdDateTimeUtc": "2025-01-01T00:00:00.0000000Z",
        "lastUpdatedDateTimeUtc": "2025-01-01T00:00:00.0000000Z"
    })
}

/// Checks the SAS token of a request the way the emulator will.
fn assert_sas(seen: &crate::support::Seen, host: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = pki::dps::sas::verify_service(seen.header("authorization"), POLICY, &[KEY], host, now)
        .expect("pki's SAS token verifies");
    let se: u64 = t.se.parse().unwrap();
    assert!(se > now && se <= now + 3600, "short expiry, got {se}");
}

#[test]
fn throttled_then_success_honours_retry_after() {
    let fake = Fake::start(vec![], |req, i| match (req.method.as_str(), i) {
        ("GET", 0) => Reply::dps_error(429, 429001, "Too many requests").with("Retry-After", "1"),
        ("GET", _) => Reply::dps_error(404, 404204, "Enrollment group not found"),
        _ => {
            let mut v = req.json();
            v["etag"] = json!("e1");
            Reply::json(200, v)
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "T", &[]);
    let cs = connection_string(&fake.host());
    let out = pki_env(
        &[
            "enroll",
            "grp-1",
            "--cert",
            chain.intermediate_cert().to_str().unwrap(),
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created enrollment group grp-1"));
    let seen = fake.seen();
    assert_eq!(seen.len(), 3, "429'd GET, GET, PUT");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {:?}",
        seen[1].at - seen[0].at
    );
    let put = &seen[2];
    assert_eq!(put.method, "PUT");
    assert!(
        put.target
            .starts_with("/enrollmentGroups/grp-1?api-version=2021-10-01")
    );
    assert_eq!(put.header("if-match"), None, "a create sends no If-Match");
    assert!(
        put.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = put.json();
    assert!(
        body.pointer("/attestation/x509/signingCertificates/primary/certificate")
            .and_then(|c| c.as_str())
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    for s in &seen {
        assert_sas(s, &fake.host());
    }
}

#[test]
fn server_errors_past_the_retry_limit_fail_clearly() {
    let fake = Fake::start(vec![], |_, _| {
        Reply::dps_error(500, 500001, "Internal error in the backend")
    });
    let cs = connection_string(&fake.host());
    let out = pki_env(
        &[
            "enroll",
            "show",
            "grp-1",
            "--attempts",
            "3",
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("DPS error 500001: Internal error in the backend (tracking id track-123)"),
        "{err}"
    );
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(fake.seen().len(), 3);
}

#[test]
fn etag_race_is_reported_or_retried() {
    // Every PUT loses the race (412) unless it is the second PUT.
    let fake = Fake::start(vec![], |req, _| match req.method.as_str() {
        "GET" => Reply::json(200, stored_group("grp-1", "etag-1")),
        _ => Reply::dps_error(412, 412001, "ETag mismatch"),
    });
    let cs = connection_string(&fake.host());
    let ca = fake.ca_file.to_str().unwrap().to_string();
    let out = pki_env(
        &["enroll", "grp-1", "--status", "disabled", "--ca-file", &ca],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("changed by another writer"), "{err}");
    assert!(err.contains("--retry-conflicts"), "{err}");
    let seen = fake.seen();
    let put = seen.iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!(put.header("if-match"), Some("etag-1"));
    // Fields the user did not set survive, including unknown ones and the
    // info-only certificate slot (DPS keeps the stored certificate).
    let body = put.json();
    assert_eq!(body["provisioningStatus"], "disabled");
    assert_eq!(body["futureField"], json!({"kept": true}));
    assert_eq!(
        body.pointer("/attestation/x509/signingCertificates/primary/info/sha1Thumbprint"),
        Some(&json!("AA"))
    );

    // With --retry-conflicts the second round wins.
    let fake = Fake::start(vec![], |req, i| match req.method.as_str() {
        "GET" if i == 0 => Reply::json(200, stored_group("grp-1", "etag-1")),
        "GET" => Reply::json(200, stored_group("grp-1", "etag-2")),
        _ if req.header("if-match") == Some("etag-2") => {
            let mut v = req.json();
            v["etag"] = json!("etag-3");
            Reply::json(200, v)
        }
        _ => Reply::dps_error(412, 412001, "ETag mismatch"),
    });
    let cs = connection_string(&fake.host());
    let ca = fake.ca_file.to_str().unwrap().to_string();
    let out = pki_env(
        &[
            "enroll",
            "grp-1",
            "--status",
            "disabled",
            "--retry-conflicts",
            "--ca-file",
            &ca,
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated enrollment group grp-1"));
    assert!(stdout(&out).contains("etag-3"));
    assert_eq!(fake.seen().len(), 4);
}

#[test]
fn unreachable_host_is_an_operation_failure() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cs = connection_string(&format!("127.0.0.1:{port}"));
    let out = pki_env(
        &["enroll", "list", "--attempts", "2"],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach 127.0.0.1:{port} after 2 attempt(s)")),
        "{err}"
    );
}

#[test]
fn untrusted_tls_certificate_says_to_pass_ca_file() {
    let fake = Fake::start(vec![], |_, _| Reply::json(200, json!([])));
    let cs = connection_string(&fake.host());
    let out = pki_env(&["enroll", "list"], &[("DPS_CONNECTION_STRING", &cs)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    assert!(fake.seen().is_empty());

    // SSL_CERT_FILE works as well as --ca-file.
    let out = pki_env(
        &["enroll", "list"],
        &[
            ("DPS_CONNECTION_STRING", &cs),
            ("SSL_CERT_FILE", fake.ca_file.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn wrong_key_401_is_explained() {
    let fake = Fake::start(vec![], |_, _| Reply::dps_error(401, 401002, "Unauthorized"));
    let cs = connection_string(&fake.host());
    let out = pki_env(
        &[
            "enroll",
            "show",
            "grp-1",
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("pki: error: DPS error 401002: Unauthorized (tracking id track-123)"),
        "{err}"
    );
    assert!(err.contains("SharedAccessKey"), "{err}");
    assert_eq!(fake.seen().len(), 1, "a 401 is not retried");
}

#[test]
fn list_follows_continuation_tokens() {
    let fake = Fake::start(vec![], |req, _| {
        let group = |id: &str| stored_group(id, "e");
        match req.header("x-ms-continuation") {
            None => Reply::json(200, json!([group("a"), group("b")]))
                .with("x-ms-continuation", "page2")
                .with("x-ms-item-type", "EnrollmentGroup"),
            Some("page2") => Reply::json(200, json!([group("c")])),
            Some(_) => Reply::dps_error(400, 400004, "bad token"),
        }
    });
    let cs = connection_string(&fake.host());
    let out = pki_env(
        &[
            "enroll",
            "list",
            "--json",
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["enrollmentGroupId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let seen = fake.seen();
    assert_eq!(seen[0].path(), "/enrollmentGroups/query");
    assert_eq!(seen[0].json(), json!({"query": "*"}));
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let fake = Fake::start(vec![], |_, _| Reply::json(200, json!({})));
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "T", &["dev-1"]);
    let cs = connection_string(&fake.host());
    let env = [("DPS_CONNECTION_STRING", cs.as_str())];
    let inter = chain.intermediate_cert();
    let inter = inter.to_str().unwrap();

    let out = pki_env(&["enroll", "bad id!", "--cert", inter], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("pki: error: the group ID `bad id!`"));

    let out = pki_env(&["enroll", "ends-with.", "--cert", inter], &env);
    assert_eq!(out.status.code(), Some(2));

    // A PEM holding a private key must never be sent.
    let combined = tmp.path().join("combined.pem");
    let key = std::fs::read_to_string(chain.device_key("dev-1")).unwrap();
    std::fs::write(&combined, format!("{}{key}", chain.intermediate.cert.pem)).unwrap();
    let out = pki_env(
        &["enroll", "grp", "--cert", combined.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("private key"), "{}", stderr(&out));

    let key_only = chain.device_key("dev-1");
    let out = pki_env(
        &["enroll", "grp", "--cert", key_only.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));

    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let out = pki_env(&["enroll", "grp", "--cert", empty.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds no certificate"),
        "{}",
        stderr(&out)
    );

    // An expired certificate (made directly with rcgen: pki never makes one).
    let expired = tmp.path().join("expired.pem");
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let k = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&expired, params.self_signed(&k).unwrap().pem()).unwrap();
    let out = pki_env(
        &["enroll", "grp", "--cert", expired.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--allow-expired"), "{}", stderr(&out));

    // A new group without any certificate.
    let out = pki_env(&["enroll", "grp", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(2));

    // No connection string at all.
    let out = pki_env(&["enroll", "grp", "--cert", inter], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("DPS_CONNECTION_STRING"));

    // A malformed connection string does not echo the key.
    let out = pki_env(
        &["enroll", "list"],
        &[("DPS_CONNECTION_STRING", &format!("SharedAccessKey={KEY}"))],
    );
    assert_eq!(out.status.code(), Some(2));

    assert!(fake.seen().is_empty(), "nothing reached the server");
}

#[test]
fn dry_run_prints_the_body_and_needs_no_connection_string() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "T", &["dev-1"]);
    let out = pki_env(
        &[
            "enroll",
            "grp-1",
            "--cert",
            chain.root_cert().to_str().unwrap(),
            "--iot-hub",
            "hub-a.azure-devices.net",
            "--reprovision",
            "reset",
            "--edge",
            "--initial-twin",
            r#"{"tags":{"line":"7"},"properties":{"desired":{"interval":30}}}"#,
            "--dry-run",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["enrollmentGroupId"], "grp-1");
    assert_eq!(v["allocationPolicy"], "hashed");
    assert_eq!(v["iotHubs"], json!(["hub-a.azure-devices.net"]));
    assert_eq!(
        v["reprovisionPolicy"],
        json!({"updateHubAssignment": true, "migrateDeviceData": false})
    );
    assert_eq!(v["capabilities"], json!({"iotEdge": true}));
    assert_eq!(v["initialTwin"]["tags"]["line"], "7");

    // A device (non-CA) certificate is accepted with a warning.
    let out = pki_env(
        &[
            "enroll",
            "grp-1",
            "--cert",
            chain.device_cert("dev-1").to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    assert!(out.status.success());
    assert!(stderr(&out).contains("not a CA certificate"));
}

#[test]
fn disallow_writes_a_disabled_individual_enrollment() {
    let fake = Fake::start(vec![], |req, _| match req.method.as_str() {
        "GET" => Reply::dps_error(404, 404201, "Enrollment not found"),
        _ => {
            let mut v = req.json();
            v["etag"] = json!("e1");
            Reply::json(200, v)
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "T", &["dev-7"]);
    let cs = connection_string(&fake.host());
    let out = pki_env(
        &[
            "enroll",
            "disallow",
            chain.device_cert("dev-7").to_str().unwrap(),
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[("DPS_CONNECTION_STRING", &cs)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = fake.seen();
    assert_eq!(seen[0].path(), "/enrollments/dev-7");
    let put = &seen[1];
    assert_eq!(put.path(), "/enrollments/dev-7");
    let b = put.json();
    assert_eq!(b["registrationId"], "dev-7");
    assert_eq!(b["provisioningStatus"], "disabled");
    assert!(
        b.pointer("/attestation/x509/clientCertificates/primary/certificate")
            .is_some()
    );
}
