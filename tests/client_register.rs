//! `pki register` against a scripted HTTPS server that asks for a TLS client
//! certificate: the device's chain is presented in the handshake, the
//! operation is polled honouring Retry-After, and failures exit 1 with DPS's
//! status and message.

use std::time::Duration;

use crate::support::{Fake, Reply, TestChain, pki_env, stderr, stdout};
use serde_json::json;

fn assigned(reg: &str) -> serde_json::Value {
    json!({"operationId": "op-1", "status": "assigned", "registrationState": {
        "x509": {"enrollmentGroupId": "grp-1"}, "registrationId": reg,
        "assignedHub": "hub-a.azure-devices.net", "deviceId": reg,
        "status": "assigned", "substatus": "initialAssignment", "etag": "e"}})
}

#[test]
fn registers_with_the_chain_and_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "Reg", &["dev-1"]);
    let fake = Fake::start(vec![chain.root.cert.der.clone()], |req, _| {
        match req.method.as_str() {
            "PUT" => Reply::json(202, json!({"operationId": "op-1", "status": "assigning"}))
                .with("Retry-After", "1"),
            _ => Reply::json(200, assigned("dev-1")),
        }
    });
    let out = pki_env(
        &[
            "register",
            "--id-scope",
            "0ne00000001",
            "--cert",
            chain.device_chain("dev-1").to_str().unwrap(),
            "--key",
            chain.device_key("dev-1").to_str().unwrap(),
            "--host",
            &fake.host(),
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("assigned: device dev-1 on hub hub-a.azure-devices.net"),
        "{}",
        stdout(&out)
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].target,
        "/0ne00000001/registrations/dev-1/register?api-version=2019-03-31"
    );
    assert_eq!(seen[0].json(), json!({"registrationId": "dev-1"}));
    assert_eq!(
        seen[0].peer_certs, 3,
        "leaf + intermediate + root presented"
    );
    assert_eq!(
        seen[1].path(),
        "/0ne00000001/registrations/dev-1/operations/op-1"
    );
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));

    // --json prints the registrationState.
    let out = pki_env(
        &[
            "register",
            "--id-scope",
            "0ne00000001",
            "--cert",
            chain.device_chain("dev-1").to_str().unwrap(),
            "--key",
            chain.device_key("dev-1").to_str().unwrap(),
            "--host",
            &fake.host(),
            "--ca-file",
            fake.ca_file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["assignedHub"], "hub-a.azure-devices.net");
}

#[test]
fn failures_show_dps_status_and_message() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "Reg", &["dev-1", "dev-2"]);
    let fake = Fake::start(vec![chain.root.cert.der.clone()], |req, _| {
        if req.target.contains("/dev-1/") {
            Reply::dps_error(401, 401002, "Certificate not found")
        } else {
            Reply::json(
                200,
                json!({"operationId": "op", "status": "failed", "registrationState": {
                "registrationId": "dev-2", "status": "failed", "errorCode": 400209,
                "errorMessage": "Custom allocation failed"}}),
            )
        }
    });
    let run = |id: &str| {
        pki_env(
            &[
                "register",
                "--id-scope",
                "0ne00000001",
                "--cert",
                chain.device_chain(id).to_str().unwrap(),
                "--key",
                chain.device_key(id).to_str().unwrap(),
                "--host",
                &fake.host(),
                "--ca-file",
                fake.ca_file.to_str().unwrap(),
            ],
            &[],
        )
    };
    let out = run("dev-1");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("DPS error 401002: Certificate not found (tracking id track-123)"),
        "{err}"
    );
    assert!(err.contains("verified CA"), "{err}");

    let out = run("dev-2");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ended `failed`"), "{err}");
    assert!(err.contains("400209: Custom allocation failed"), "{err}");
}

#[test]
fn wrong_key_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "Reg", &["dev-1", "dev-2"]);
    let out = pki_env(
        &[
            "register",
            "--id-scope",
            "0ne00000001",
            "--cert",
            chain.device_chain("dev-1").to_str().unwrap(),
            "--key",
            chain.device_key("dev-2").to_str().unwrap(),
            "--host",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not belong"), "{}", stderr(&out));
}
