//! The CA rotation walkthrough of the README (issue 11) against `pki
//! emulator`: roll → group gets the new primary with the old secondary →
//! devices of both chains provision → renew a device → re-register (its
//! substatus follows the group's reprovision policy) → drop the secondary →
//! an old-chain device is refused, naming why. The files are checked with
//! `openssl verify` and `cmp`-style byte comparisons.

use std::path::Path;

use crate::support::*;

const INTERMEDIATE: &str = "certs/azure-iot-test-only.intermediate.cert.pem";
const PREVIOUS: &str = "certs/azure-iot-test-only.intermediate.previous.cert.pem";

fn register(emu: &Emulator, dir: &Path, device: &str) -> Run {
    let cert = p(dir, &format!("certs/{device}-full-chain.cert.pem"));
    let key = p(dir, &format!("private/{device}.key.pem"));
    let (scope, host, ca) = (emu.id_scope(), emu.host(), emu.ca());
    pki_env(
        &[
            "register",
            "--id-scope",
            &scope,
            "--cert",
            &cert,
            "--key",
            &key,
            "--host",
            &host,
            "--ca-file",
            &ca,
            "--json",
        ],
        &[],
    )
}

fn verifies(dir: &Path, leaf: &str, intermediate: &str) -> bool {
    openssl(&[
        "verify",
        "-CAfile",
        &p(dir, ROOT_CERT),
        "-untrusted",
        &p(dir, intermediate),
        &p(dir, leaf),
    ])
    .code
        == Some(0)
}

#[test]
fn rotation_walkthrough_against_the_emulator() {
    let emu = Emulator::start_in_temp(&[]);
    let a = emu.scratch().join("fleet");
    pki(&["chain", "new", "--out", s(&a), "-q", "--devices", "2"]).ok();
    let old_intermediate = std::fs::read(a.join(INTERMEDIATE)).unwrap();
    let old_key = std::fs::read(a.join("private/device-0001.key.pem")).unwrap();
    let out = emu.pki(&["enroll", "fleet", "--cert", &p(&a, INTERMEDIATE)]);
    assert!(out.status.success(), "{}", out.stderr);
    let r = register(&emu, &a, "device-0001").ok();
    assert_eq!(json(&r)["substatus"], "initialAssignment", "{}", r.stdout);

    // 1. Roll: the old intermediate is kept, byte for byte, under `previous`.
    let out = pki(&["ca", "roll", "intermediate", "--ca-dir", s(&a)]).ok();
    assert!(out.stdout.contains("previous"), "{}", out.stdout);
    assert_eq!(std::fs::read(a.join(PREVIOUS)).unwrap(), old_intermediate);
    assert_ne!(
        std::fs::read(a.join(INTERMEDIATE)).unwrap(),
        old_intermediate
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join(MANIFEST)).unwrap()).unwrap();
    let inters: Vec<&serde_json::Value> = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["role"] == "intermediate-ca")
        .collect();
    assert_eq!(inters.len(), 2, "{m:#}");
    assert!(inters.iter().any(|e| e["files"]["cert"] == PREVIOUS));
    // `pki chain new` still refuses to overwrite.
    pki(&["chain", "new", "--out", s(&a)]).bad_input();

    // 2. The group: new primary, old secondary. Devices of both chains provision.
    let out = emu.pki(&[
        "enroll",
        "fleet",
        "--cert",
        &p(&a, INTERMEDIATE),
        "--secondary-cert",
        &p(&a, PREVIOUS),
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    pki(&["device", "new", "--ca-dir", s(&a), "new-0001", "-q"]).ok();
    assert!(verifies(&a, "certs/new-0001.cert.pem", INTERMEDIATE));
    register(&emu, &a, "new-0001").ok();
    register(&emu, &a, "device-0002").ok();

    // 3. Renew device-0001 under the new CA, same key; re-register.
    assert!(verifies(&a, "certs/device-0001.cert.pem", PREVIOUS));
    pki(&["device", "renew", "--ca-dir", s(&a), "device-0001"]).ok();
    assert!(verifies(&a, "certs/device-0001.cert.pem", INTERMEDIATE));
    assert!(!verifies(&a, "certs/device-0001.cert.pem", PREVIOUS));
    assert_eq!(
        std::fs::read(a.join("private/device-0001.key.pem")).unwrap(),
        old_key
    );
    let pfx = p(&a, "certs/device-0001.cert.pfx");
    let pfx_cert = openssl(&[
        "pkcs12",
        "-in",
        &pfx,
        "-passin",
        "pass:1234",
        "-nokeys",
        "-clcerts",
    ])
    .ok();
    let leaf = std::fs::read_to_string(a.join("certs/device-0001.cert.pem")).unwrap();
    assert!(
        pfx_cert.stdout.contains(leaf.trim()),
        "the PFX holds the renewed certificate"
    );
    let r = register(&emu, &a, "device-0001").ok();
    // Same hub (one hub): the default policy keeps the assignment.
    assert_eq!(json(&r)["substatus"], "initialAssignment", "{}", r.stdout);
    assert_eq!(json(&r)["status"], "assigned");

    // 4. Drop the secondary: the old-chain device that was never renewed is refused.
    let out = emu.pki(&[
        "enroll",
        "fleet",
        "--cert",
        &p(&a, INTERMEDIATE),
        "--drop-secondary",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let refused = register(&emu, &a, "device-0002");
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("no enrollment group matches"),
        "{}",
        refused.stderr
    );
    register(&emu, &a, "device-0001").ok();
    // Renewing with a new key fixes it.
    pki(&[
        "device",
        "renew",
        "--ca-dir",
        s(&a),
        "device-0002",
        "--new-key",
    ])
    .ok();
    let r = register(&emu, &a, "device-0002").ok();
    assert_eq!(json(&r)["status"], "assigned");
}

#[test]
fn roll_and_renew_refuse_bad_input_and_write_nothing() {
    let dir = tmp();
    pki(&[
        "chain",
        "new",
        "--out",
        s(dir.path()),
        "-q",
        "--no-pfx",
        "--devices",
        "1",
    ])
    .ok();
    let line = pki(&["device", "renew", "--ca-dir", s(dir.path()), "ghost-1"]).bad_input();
    assert!(line.contains("pki device new ghost-1"), "{line}");
    pki(&["ca", "roll", "intermediate", "--ca-dir", s(dir.path())]).ok();
    let before = std::fs::read(dir.path().join(PREVIOUS)).unwrap();
    let line = pki(&["ca", "roll", "intermediate", "--ca-dir", s(dir.path())]).bad_input();
    assert!(line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(dir.path().join(PREVIOUS)).unwrap(), before);
    // A root roll makes a new root and intermediate; the new chain verifies.
    pki(&["ca", "roll", "root", "--ca-dir", s(dir.path()), "--force"]).ok();
    pki(&[
        "device",
        "renew",
        "--ca-dir",
        s(dir.path()),
        "device-0001",
        "--no-pfx",
    ])
    .ok();
    assert!(verifies(
        dir.path(),
        "certs/device-0001.cert.pem",
        INTERMEDIATE
    ));
    assert!(x509_field(&p(dir.path(), ROOT_CERT), "subject").contains("G2"));
}
