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

mod client_support;
mod node_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use client_support::{KEY, pki, stderr, stdout};
use serde_json::Value;

/// A `pki emulator` child process, stopped on drop.
struct Emulator {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    info: Value,
    dir: tempfile::TempDir,
}

impl Emulator {
    fn start(extra: &[&str]) -> Emulator {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pki"))
            .args([
                "emulator",
                "--in-memory",
                "--listen",
                "127.0.0.1:0",
                "--json",
            ])
            .arg("--data")
            .arg(dir.path().join("emu"))
            .args(["--sas-key", KEY])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let info: Value = serde_json::from_str(&line).expect("the emulator's start-up JSON");
        Emulator {
            child,
            _stdout: out,
            info,
            dir,
        }
    }
    fn s(&self, k: &str) -> String {
        self.info[k].as_str().unwrap().to_string()
    }
    fn host(&self) -> String {
        self.s("serviceHost")
    }
    fn ca(&self) -> String {
        self.s("caFile")
    }
    fn cs(&self) -> String {
        self.s("connectionString")
    }
    fn port(&self) -> u16 {
        self.info["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
    /// Runs `pki` with the connection string and the emulator's CA.
    fn pki(&self, args: &[&str]) -> std::process::Output {
        let ca = self.ca();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--ca-file", &ca]);
        pki(&all, &[("DPS_CONNECTION_STRING", &self.cs())])
    }
    fn arm(&self, args: &[&str]) -> std::process::Output {
        let ca = self.ca();
        let endpoint = format!("https://{}", self.host());
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--arm-endpoint",
            &endpoint,
            "--subscription",
            "sub",
            "--resource-group",
            "rg",
            "--dps-name",
            "dps",
            "--ca-file",
            &ca,
        ]);
        pki(
            &all,
            &[("AZURE_ACCESS_TOKEN", "emulator-accepts-any-token")],
        )
    }
    fn register(&self, dir: &Path, device: &str) -> std::process::Output {
        let cert = dir.join(format!("certs/{device}-full-chain.cert.pem"));
        let key = dir.join(format!("private/{device}.key.pem"));
        let (scope, host, ca) = (self.s("idScope"), self.host(), self.ca());
        pki(
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
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chain_new(dir: &Path) {
    let out = pki(
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
    let emu = Emulator::start(&["--require-verified-ca"]);
    let a = emu.dir.path().join("chain-a");
    let b = emu.dir.path().join("chain-b");
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

    let out = emu.register(&a, "device-0001");
    assert!(out.status.success(), "register: {}", stderr(&out));
    assert!(
        stdout(&out).contains("assigned: device device-0001 on hub"),
        "{}",
        stdout(&out)
    );

    let out = emu.register(&b, "device-0001");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("pki: error: DPS error 401"), "{err}");
    assert!(err.contains("no enrollment group matches"), "{err}");

    // A second run updates in place (GET, then PUT with If-Match).
    let out = emu.pki(&["enroll", "line-a", "--status", "disabled", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provisioningStatus"], "disabled");
    assert_eq!(
        v.pointer("/attestation/x509/signingCertificates/primary/info/sha1Thumbprint")
            .and_then(Value::as_str),
        Some(sha1_of(&a.join(INTERMEDIATE)).as_str()),
        "the stored certificate survives an update that did not pass --cert"
    );
    let out = emu.register(&a, "device-0002");
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
    if !node_support::ensure_node_modules() {
        return;
    }
    let emu = Emulator::start(&[]);
    let c = emu.dir.path().join("chain-c");
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
    let out = emu.register(&c, "device-0001");
    assert!(out.status.success(), "register: {}", stderr(&out));
    assert!(
        stdout(&out).contains("hub-b.azure-devices.net"),
        "{}",
        stdout(&out)
    );
}
