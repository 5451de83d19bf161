//! The official Azure IoT DPS Node SDKs against `pki emulator`.
//!
//! The Node service and device HTTP clients always dial port 443, so the
//! emulator listens on 127.0.0.1:443 (this needs root or
//! CAP_NET_BIND_SERVICE) and everything runs in one test function, in
//! sequence, because the port is shared. Node trusts the emulator's CA
//! through NODE_EXTRA_CA_CERTS. The SDKs come from `tests/node` (package.json
//! and package-lock.json are committed; CI runs `npm ci --prefix tests/node`,
//! and this test runs `npm ci` itself when node_modules is missing).
//!
//! One device chain comes from `pki chain new` (the tutorial flow), one from
//! the openssl CLI, the rest from the library.
//!
//! Without the right to bind port 443 (not root, no CAP_NET_BIND_SERVICE)
//! the test prints `SKIPPED: …` and passes, unless PKI_TEST_NO_SKIP=1 (CI)
//! makes that a failure; PKI_TEST_SKIP=node skips it when Node.js is missing.

use std::path::Path;
use std::process::Command;

use crate::support::{Emulator, SERVICE_API, TestChain};
use crate::support::{can_bind_443, ensure_node_modules, fixed_ports_async, node_dir, skip_unless};
use serde_json::{Value, json};

/// Runs a Node script with the emulator's CA trusted and IPv4 first
/// (`localhost` must reach 127.0.0.1, where the emulator listens).
fn node(script: &str, ca: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new("node")
        .arg(node_dir().join(script))
        .current_dir(node_dir())
        .env("NODE_EXTRA_CA_CERTS", ca)
        .env("NODE_OPTIONS", "--dns-result-order=ipv4first")
        .envs(env.iter().copied())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn device(emu: &Emulator, dir: &Path, reg_id: &str, cert_pem: &str, key_pem: &str) -> Value {
    let cert = dir.join(format!("{reg_id}.cert.pem"));
    let key = dir.join(format!("{reg_id}.key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let ca = emu.info["caFile"].as_str().unwrap();
    let (ok, out) = node(
        "device.js",
        ca,
        &[
            ("DPS_HOST", "localhost"),
            ("ID_SCOPE", &emu.id_scope()),
            ("REGISTRATION_ID", reg_id),
            ("CERT_FILE", cert.to_str().unwrap()),
            ("KEY_FILE", key.to_str().unwrap()),
        ],
    );
    assert!(ok, "device.js failed: {out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from device.js: {out}"));
    serde_json::from_str(line).unwrap()
}

async fn put_group(emu: &Emulator, id: &str, pem: &str, status: &str) {
    let c = emu.client(None);
    let body = json!({"enrollmentGroupId": id, "provisioningStatus": status,
        "attestation": {"type":"x509","x509":{"signingCertificates":{"primary":{"certificate": pem}}}}});
    let r = c
        .put(emu.url(&format!("/enrollmentGroups/{id}?{SERVICE_API}")))
        .header("authorization", emu.sas())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A device certificate made by the openssl CLI under its own root, for the "another CA" case.
fn openssl_device(dir: &Path, cn: &str) -> (String, String) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|_| panic!("{}", crate::support::missing_tool_message("openssl")));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other-root.key",
        "-out",
        "other-root.pem",
        "-subj",
        "/CN=OpenSSL Other Root",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other-dev.key",
        "-out",
        "other-dev.csr",
        "-subj",
        &format!("/CN={cn}"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "other-dev.csr",
        "-CA",
        "other-root.pem",
        "-CAkey",
        "other-root.key",
        "-CAcreateserial",
        "-out",
        "other-dev.pem",
        "-days",
        "2",
    ]);
    (
        std::fs::read_to_string(dir.join("other-dev.pem")).unwrap(),
        std::fs::read_to_string(dir.join("other-dev.key")).unwrap(),
    )
}

fn error_text(v: &Value) -> String {
    // The SDK's error, the emulator's body and (for completed operations) the registration state.
    format!("{} {} {}", v["message"], v["responseBody"], v["result"])
}

#[tokio::test]
async fn official_node_sdks_against_the_emulator_on_port_443() {
    const TEST: &str = "official_node_sdks_against_the_emulator_on_port_443";
    if !ensure_node_modules(TEST) {
        return;
    }
    if !skip_unless(
        can_bind_443(),
        "port-443",
        TEST,
        "binding 127.0.0.1:443 needs root or CAP_NET_BIND_SERVICE",
    ) {
        return;
    }
    let _port = fixed_ports_async().await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let emu = Emulator::start_on_443(&dir.path().join("data"), &["--in-memory"]);
    assert_eq!(
        emu.host(),
        "localhost",
        "on port 443 the connection string's HostName has no port"
    );
    let ca = emu.info["caFile"].as_str().unwrap().to_string();

    // 1. Service SDK: create, update with the returned record, get, query with paging, delete.
    let chain = TestChain::new("Node");
    let group_cert = work.join("group.pem");
    std::fs::write(&group_cert, &chain.intermediate.cert.pem).unwrap();
    let (ok, out) = node(
        "service.js",
        &ca,
        &[
            (
                "DPS_CONNECTION_STRING",
                emu.info["connectionString"].as_str().unwrap(),
            ),
            ("GROUP_CERT_FILE", group_cert.to_str().unwrap()),
        ],
    );
    assert!(
        ok && out.contains("service-sdk: ok"),
        "service SDK run failed:\n{out}"
    );
    assert!(out.contains("updated enrollment record returned"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("error")), "{out}");

    // 2. Device SDK, X.509 over HTTPS.
    put_group(
        &emu,
        "node-devices",
        &chain.intermediate.cert.pem,
        "enabled",
    )
    .await;
    let (identity, leaf) = chain.device("node-device-01");
    let key_pem = identity
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .unwrap()
        .to_string();
    let cert_chain = format!("{}{}", leaf.pem, chain.intermediate.cert.pem);
    let v = device(&emu, &work, "node-device-01", &cert_chain, &key_pem);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["result"]["assignedHub"], "emulated-hub.azure-devices.net",
        "{v}"
    );
    assert_eq!(v["result"]["deviceId"], "node-device-01", "{v}");
    assert_eq!(
        v["result"]["x509"]["enrollmentGroupId"], "node-devices",
        "{v}"
    );

    // A chain made by `pki chain new` (the tutorial's flow): group on its root,
    // the device sends its full chain.
    let out = crate::support::Pki::new(["chain", "new", "--out"])
        .arg(&work)
        .run();
    assert!(out.status.success(), "pki chain new: {}", out.stderr);
    let root =
        std::fs::read_to_string(work.join("certs/azure-iot-test-only.root.ca.cert.pem")).unwrap();
    put_group(&emu, "node-pki-chain", &root, "enabled").await;
    let full = std::fs::read_to_string(work.join("certs/device-0001-full-chain.cert.pem")).unwrap();
    let key = std::fs::read_to_string(work.join("private/device-0001.key.pem")).unwrap();
    let v = device(&emu, &work, "device-0001", &full, &key);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["result"]["x509"]["enrollmentGroupId"], "node-pki-chain",
        "{v}"
    );

    // A device from another CA (made with openssl): refused with the emulator's reason.
    let (other_cert, other_key) = openssl_device(&work, "node-device-02");
    let v = device(&emu, &work, "node-device-02", &other_cert, &other_key);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["name"], "UnauthorizedError", "{v}");
    assert!(
        error_text(&v).contains("no enrollment group matches this device"),
        "{v}"
    );

    // CN ≠ registration ID.
    let (identity, leaf) = chain.device("node-device-03");
    let key_pem = identity
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .unwrap()
        .to_string();
    let v = device(
        &emu,
        &work,
        "node-device-04",
        &format!("{}{}", leaf.pem, chain.intermediate.cert.pem),
        &key_pem,
    );
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        error_text(&v).contains("does not match the registration ID"),
        "{v}"
    );

    // A disabled group: the SDK reports `status is disabled`, the state says why.
    let disabled = TestChain::new("Disabled");
    put_group(
        &emu,
        "node-disabled",
        &disabled.intermediate.cert.pem,
        "disabled",
    )
    .await;
    let (identity, leaf) = disabled.device("node-device-05");
    let key_pem = identity
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .unwrap()
        .to_string();
    let v = device(
        &emu,
        &work,
        "node-device-05",
        &format!("{}{}", leaf.pem, disabled.intermediate.cert.pem),
        &key_pem,
    );
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("status is disabled"),
        "{v}"
    );
    assert!(
        error_text(&v).contains("enrollment group `node-disabled` is disabled"),
        "{v}"
    );
}
