//! End to end against `pki emulator` over real HTTPS, with the built binary:
//!
//! - the tutorial flow: `pki chain new` → `pki ca verify` (intermediate
//!   proof of possession) → `pki enroll` → `pki register` gets `assigned`,
//!   while a device from another chain is refused with the emulator's reason;
//! - interop both ways with the official Node service SDK
//!   (`azure-iot-provisioning-service`): a group made by `pki enroll` reads
//!   back with the same thumbprint, and a group made by the SDK (the docs'
//!   create-then-PUT-back sample) is updated by `pki enroll` without losing
//!   its certificate.
//!
//! The emulator runs with the tests' fixed SAS key so every `pki` run can
//! check the key never appears in its output.

use std::path::Path;
use std::process::Command;

use crate::support::{Emulator, Run, pki_env, stderr, stdout};
use serde_json::Value;

/// Runs `pki register` for `device` of the chain in `dir` against the emulator.
fn register(emu: &Emulator, dir: &Path, device: &str) -> Run {
    let cert = dir.join(format!("certs/{device}-full-chain.cert.pem"));
    let key = dir.join(format!("private/{device}.key.pem"));
    let (scope, host, ca) = (emu.id_scope(), emu.host(), emu.ca());
    pki_env(
        &[
            "register",
            "--id-scope",
            &scope,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--host",
            &host,
            "--ca-file",
            &ca,
        ],
        &[],
    )
}

fn chain_new(dir: &Path) {
    let out = pki_env(
        &[
            "chain",
            "new",
            "--out",
            dir.to_str().unwrap(),
            "--devices",
            "2",
        ],
        &[],
    );
    assert!(out.status.success(), "pki chain new: {}", stderr(&out));
}

fn sha1_of(path: &Path) -> String {
    pki::dps::enrollment::load_cert(&std::fs::read(path).unwrap(), "x", false)
        .unwrap()
        .sha1
}

const INTERMEDIATE: &str = "certs/azure-iot-test-only.intermediate.cert.pem";

#[test]
fn tutorial_flow_provisions_a_device_and_refuses_a_stranger() {
    // Devices must chain to a verified CA, so proof of possession matters.
    let emu = Emulator::start_in_temp(&["--require-verified-ca"]);
    let a = emu.scratch().join("chain-a");
    let b = emu.scratch().join("chain-b");
    chain_new(&a);
    chain_new(&b);

    let out = emu.arm(&["ca", "verify", "line-a", "--ca-dir", a.to_str().unwrap()]);
    assert!(out.status.success(), "ca verify: {}", stderr(&out));
    assert!(
        stdout(&out).contains("verified:    yes"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(&sha1_of(&a.join(INTERMEDIATE))));

    let out = emu.pki(&[
        "enroll",
        "line-a",
        "--cert",
        a.join(INTERMEDIATE).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "enroll: {}", stderr(&out));
    assert!(stdout(&out).contains("created enrollment group line-a"));

    let out = register(&emu, &a, "device-0001");
    assert!(out.status.success(), "register: {}", stderr(&out));
    assert!(
        stdout(&out).contains("assigned: device device-0001 on hub"),
        "{}",
        stdout(&out)
    );

    let out = register(&emu, &b, "device-0001");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("pki: error: DPS error 401"), "{err}");
    assert!(err.contains("no enrollment group matches"), "{err}");

    // A second run updates in place (GET, then PUT with If-Match).
    let out = emu.pki(&["enroll", "line-a", "--status", "disabled", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["provisioningStatus"], "disabled");
    assert_eq!(
        v.pointer("/attestation/x509/signingCertificates/primary/info/sha1Thumbprint")
            .and_then(Value::as_str),
        Some(sha1_of(&a.join(INTERMEDIATE)).as_str()),
        "the stored certificate survives an update that did not pass --cert"
    );
    let out = register(&emu, &a, "device-0002");
    assert_eq!(out.status.code(), Some(1), "group disabled");

    // disallow, list, delete.
    let out = emu.pki(&[
        "enroll",
        "disallow",
        a.join("certs/device-0001.cert.pem").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = emu.pki(&["enroll", "list"]);
    assert!(stdout(&out).contains("line-a"));
    let out = emu.pki(&["enroll", "delete", "line-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = emu.pki(&["enroll", "show", "line-a"]);
    assert_eq!(out.status.code(), Some(1));
}

fn node(emu: &Emulator, args: &[&str]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    // The SDK dials 443: HostName without the port, the preload redirects.
    let cs = emu
        .cs()
        .replace(&format!("HostName={}", emu.host()), "HostName=localhost");
    let out = Command::new("node")
        .arg(dir.join("client_interop.js"))
        .args(args)
        .env("DPS_CONNECTION_STRING", cs)
        .env("PKI_DPS_PORT", emu.port().to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require {}", dir.join("client_port_preload.js").display()),
        )
        .env("NODE_EXTRA_CA_CERTS", emu.ca())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn interop_with_the_node_service_sdk_both_ways() {
    if !crate::support::ensure_node_modules("interop_with_the_node_service_sdk_both_ways") {
        return;
    }
    let emu = Emulator::start_in_temp(&[]);
    let c = emu.scratch().join("chain-c");
    chain_new(&c);
    let inter = c.join(INTERMEDIATE);
    let root = c.join("certs/azure-iot-test-only.root.ca.cert.pem");

    // pki → Node: same thumbprint.
    let out = emu.pki(&["enroll", "by-pki", "--cert", inter.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g = node(&emu, &["get", "by-pki"]);
    assert_eq!(
        g.pointer("/attestation/x509/signingCertificates/primary/info/sha1Thumbprint")
            .and_then(Value::as_str),
        Some(sha1_of(&inter).as_str())
    );

    // Node → pki: the SDK's group keeps its certificate through pki's update.
    let g = node(&emu, &["create", "by-node", root.to_str().unwrap()]);
    assert_eq!(g["provisioningStatus"], "enabled");
    let out = emu.pki(&[
        "enroll",
        "by-node",
        "--iot-hub",
        "hub-b.azure-devices.net",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g = node(&emu, &["get", "by-node"]);
    assert_eq!(
        g.pointer("/attestation/x509/signingCertificates/primary/info/sha1Thumbprint")
            .and_then(Value::as_str),
        Some(sha1_of(&root).as_str())
    );
    assert_eq!(g["iotHubs"], serde_json::json!(["hub-b.azure-devices.net"]));

    // And the certificate still works: delete the intermediate's group so
    // the root's group is the match, and register a device.
    let out = emu.pki(&["enroll", "delete", "by-pki"]);
    assert!(out.status.success());
    let out = register(&emu, &c, "device-0001");
    assert!(out.status.success(), "register: {}", stderr(&out));
    assert!(
        stdout(&out).contains("hub-b.azure-devices.net"),
        "{}",
        stdout(&out)
    );
}
