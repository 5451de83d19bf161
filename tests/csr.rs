//! CSRs (issue 10): `pki csr new`, and `pki device new --csr` signing
//! openssl-made CSRs, checked with the openssl CLI (verify, public keys,
//! extensions); bad CSRs exit 2 with one line and write nothing.

use std::fs;
use std::path::Path;

use crate::support::*;

fn chain(dir: &Path) {
    pki(&[
        "chain",
        "new",
        "--out",
        s(dir),
        "-q",
        "--no-pfx",
        "--devices",
        "0",
    ])
    .ok();
}

/// An openssl P-384 key and CSR with CN = `cn` (plus `extra` req options).
fn openssl_csr(dir: &Path, cn: &str, extra: &[&str]) -> String {
    let key = p(dir, &format!("{cn}.key"));
    let csr = p(dir, &format!("{cn}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subj,
        "-out",
        &csr,
    ];
    args.extend_from_slice(extra);
    openssl(&args).ok();
    csr
}

#[test]
fn device_new_csr_signs_an_openssl_p384_csr_with_the_device_profile() {
    let ca = tmp();
    chain(ca.path());
    let work = tmp();
    // The CSR asks to be a CA with a SAN: the device profile must not copy either.
    let csr = openssl_csr(
        work.path(),
        "sensor-17",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "subjectAltName=DNS:evil.example",
        ],
    );
    let run = pki(&["device", "new", "--ca-dir", s(ca.path()), "--csr", &csr]).ok();
    assert!(run.stdout.contains("sensor-17"), "{}", run.stdout);
    let cert = p(ca.path(), "certs/sensor-17.cert.pem");
    let full = p(ca.path(), "certs/sensor-17-full-chain.cert.pem");
    assert_verifies(
        &p(ca.path(), "certs/azure-iot-test-only.root.ca.cert.pem"),
        Some(&p(
            ca.path(),
            "certs/azure-iot-test-only.intermediate.cert.pem",
        )),
        &cert,
    );
    // The full chain is leaf, intermediate, root.
    assert_eq!(pem_blocks(&full).len(), 3);
    // Public key equality, by openssl on both sides.
    let csr_key = openssl(&["req", "-in", &csr, "-noout", "-pubkey"])
        .ok()
        .stdout;
    let cert_key = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"])
        .ok()
        .stdout;
    assert_eq!(csr_key, cert_key);
    let text = x509_text(&cert);
    assert!(text.contains("Subject: CN = sensor-17"), "{text}");
    let (_, eku) = extension(&text, "X509v3 Extended Key Usage").unwrap();
    assert_eq!(eku, "TLS Web Client Authentication");
    let (_, bc) = extension(&text, "X509v3 Basic Constraints").unwrap();
    assert_eq!(bc, "CA:FALSE");
    assert!(!text.contains("evil.example"), "{text}");
    // No key and no PFX: pki never had the key.
    assert!(!ca.path().join("private/sensor-17.key.pem").exists());
    assert!(!ca.path().join("certs/sensor-17.cert.pfx").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(ca.path().join("certs/manifest.json")).unwrap()).unwrap();
    let entry = manifest["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commonName"] == "sensor-17")
        .expect("manifest entry");
    assert_eq!(entry["role"], "device");
    assert!(entry["files"].get("key").is_none(), "{entry}");
    assert_eq!(
        entry["files"]["fullChain"],
        "certs/sensor-17-full-chain.cert.pem"
    );

    // Again: refused without --force; --cn signs the same CSR for another ID.
    let line = pki(&["device", "new", "--ca-dir", s(ca.path()), "--csr", &csr]).bad_input();
    assert!(line.contains("--force"), "{line}");
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(ca.path()),
        "--csr",
        &csr,
        "--cn",
        "sensor-99",
    ])
    .ok();
    assert!(x509_text(&p(ca.path(), "certs/sensor-99.cert.pem")).contains("CN = sensor-99"));
}

#[test]
fn device_new_csr_takes_a_directory_and_csr_new_output() {
    let ca = tmp();
    chain(ca.path());
    let line = tmp();
    // `pki csr new` as the factory line: key stays in its own directory.
    for id in ["line-a", "line-b"] {
        let run = pki(&["csr", "new", id, "--out", s(line.path()), "--der"]).ok();
        assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    }
    let key = p(line.path(), "private/line-a.key.pem");
    assert_eq!(mode(&key), 0o600);
    let csr = p(line.path(), "csr/line-a.csr.pem");
    let verify = openssl(&["req", "-in", &csr, "-noout", "-verify", "-subject"]).ok();
    assert!(
        verify.stdout.contains("CN = line-a") || verify.stdout.contains("CN=line-a"),
        "{}",
        verify.stdout
    );
    let text = openssl(&["req", "-in", &csr, "-noout", "-text"])
        .ok()
        .stdout;
    assert!(
        text.contains("NIST CURVE: P-384") || text.contains("secp384r1"),
        "{text}"
    );
    // The one-line base64 DER is the same request.
    let b64 = fs::read_to_string(line.path().join("csr/line-a.csr.b64")).unwrap();
    assert_eq!(b64.lines().count(), 1);
    let der = openssl(&["req", "-in", &csr, "-outform", "DER"])
        .ok()
        .raw_stdout;
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
        der
    );
    // The key in private/ belongs to the CSR.
    let from_key = openssl(&["pkey", "-in", &key, "-pubout"]).ok().stdout;
    let from_csr = openssl(&["req", "-in", &csr, "-noout", "-pubkey"])
        .ok()
        .stdout;
    assert_eq!(from_key, from_csr);

    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(ca.path()),
        "--csr",
        &p(line.path(), "csr"),
    ])
    .ok();
    for id in ["line-a", "line-b"] {
        assert_verifies(
            &p(ca.path(), "certs/azure-iot-test-only.root.ca.cert.pem"),
            Some(&p(
                ca.path(),
                "certs/azure-iot-test-only.intermediate.cert.pem",
            )),
            &p(ca.path(), &format!("certs/{id}.cert.pem")),
        );
    }
    // An existing ID is refused.
    let line_err = pki(&["csr", "new", "line-a", "--out", s(line.path())]).bad_input();
    assert!(line_err.contains("--force"), "{line_err}");
}

#[test]
fn bad_csrs_exit_2_with_one_line_and_write_nothing() {
    let ca = tmp();
    chain(ca.path());
    let work = tmp();
    let good = openssl_csr(work.path(), "good-1", &[]);
    // A broken signature: flip a byte of the signature in the DER.
    let mut der = openssl(&["req", "-in", &good, "-outform", "DER"])
        .ok()
        .raw_stdout;
    let n = der.len();
    der[n - 3] ^= 0x55;
    let broken = work.path().join("broken.csr.der");
    fs::write(&broken, &der).unwrap();
    // A CN that is not a registration ID.
    let bad_cn = {
        let key = p(work.path(), "badcn.key");
        let out = p(work.path(), "badcn.csr");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            "/CN=bad id!",
            "-out",
            &out,
        ])
        .ok();
        out
    };
    // A PEM that is not a CSR (the root certificate), and a key.
    let not_csr = p(ca.path(), "certs/azure-iot-test-only.root.ca.cert.pem");
    let key_file = p(work.path(), "good-1.key");
    let before = snapshot(ca.path());
    for (file, expect) in [
        (s(&broken).to_string(), "does not verify"),
        (bad_cn.clone(), "not a valid registration ID"),
        (not_csr.clone(), "holds no CSR (found `CERTIFICATE`)"),
        (key_file.clone(), "holds no CSR"),
    ] {
        // Alone, and in a batch after a good CSR: nothing is written either way.
        for args in [vec![file.as_str()], vec![good.as_str(), file.as_str()]] {
            let mut all = vec!["device", "new", "--ca-dir", s(ca.path()), "--csr"];
            all.extend(args);
            let line = pki(&all).bad_input();
            assert!(line.contains(expect), "{file}: {line}");
            assert_eq!(
                snapshot(ca.path()),
                before,
                "{file} changed the CA directory"
            );
        }
    }
    // --cn fixes the bad CN.
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(ca.path()),
        "--csr",
        &bad_cn,
        "--cn",
        "fixed-1",
    ])
    .ok();
    // An invalid ID for `pki csr new` writes nothing either.
    let out = tmp();
    let line = pki(&["csr", "new", "bad id", "--out", s(out.path())]).bad_input();
    assert!(line.contains("DPS allows"), "{line}");
    assert!(snapshot(out.path()).is_empty());
}

#[test]
fn inspect_shows_csrs_subject_key_signature_and_requested_extensions() {
    let work = tmp();
    let csr = openssl_csr(
        work.path(),
        "ask-1",
        &[
            "-addext",
            "subjectAltName=DNS:a.example",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let run = pki(&["inspect", &csr]).ok();
    for want in [
        "certificate signing request",
        "CN=ask-1",
        "ec-p384",
        "Signature:            valid",
        "subjectAltName, basicConstraints (critical)",
    ] {
        assert!(run.stdout.contains(want), "{want}: {}", run.stdout);
    }
    let mut der = openssl(&["req", "-in", &csr, "-outform", "DER"])
        .ok()
        .raw_stdout;
    let n = der.len();
    der[n - 3] ^= 0x55;
    let broken = work.path().join("broken.csr.der");
    fs::write(&broken, &der).unwrap();
    let v = json(&pki(&["inspect", "--json", s(&broken)]).ok());
    assert_eq!(v[0]["type"], "csr");
    assert_eq!(v[0]["signatureValid"], false);
    assert_eq!(v[0]["requestedExtensions"][0]["name"], "subjectAltName");
}
