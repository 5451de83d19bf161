//! `pki device new`: devices under a pki chain and under CAs made with the
//! openssl CLI the way certGen.sh makes them (every key format), self-signed
//! devices, overwrite refusal and bad input.

use std::path::Path;

use crate::support::*;

fn new_chain(dir: &Path, extra: &[&str]) {
    let mut args = vec!["chain", "new", "--out", s(dir), "-q", "--no-pfx"];
    args.extend_from_slice(extra);
    pki(&args).ok();
}

fn device_new(ca_dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["device", "new", "--ca-dir", s(ca_dir)];
    args.extend_from_slice(extra);
    pki(&args)
}

fn issuer_cn(cert: &str) -> String {
    facts(cert).issuer
}

#[test]
fn devices_under_a_pki_chain_default_to_the_lowest_intermediate() {
    let dir = tmp();
    new_chain(dir.path(), &["--intermediates", "2"]);
    device_new(dir.path(), &["sensor-1", "sensor-2"]).ok();
    let root = p(dir.path(), ROOT_CERT);
    let chain = p(dir.path(), CHAIN_CERT);
    for id in ["sensor-1", "sensor-2"] {
        let cert = p(dir.path(), &format!("certs/{id}.cert.pem"));
        let full = p(dir.path(), &format!("certs/{id}-full-chain.cert.pem"));
        assert_eq!(issuer_cn(&cert), "CN=pki Test Only Intermediate CA 2");
        assert_verifies(&root, Some(&chain), &cert);
        assert_verifies(&root, Some(&full), &cert);
        assert_eq!(read(&full), read(&cert) + &read(&chain));
        let text = x509_text(&cert);
        assert!(text.contains(&format!("Subject: CN = {id}\n")));
        assert!(text.contains("TLS Web Client Authentication"));
        assert!(
            read(&p(dir.path(), &format!("private/{id}.key.pem")))
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert_eq!(
            mode(&p(dir.path(), &format!("private/{id}.key.pem"))),
            0o600
        );
        // PFX with key + leaf + 2 intermediates + root, password 1234.
        let pfx = p(dir.path(), &format!("certs/{id}.cert.pfx"));
        let out = openssl(&["pkcs12", "-in", &pfx, "-passin", "pass:1234", "-nodes"]).ok();
        assert_eq!(out.stdout.matches("BEGIN CERTIFICATE").count(), 4);
        assert_eq!(out.stdout.matches("BEGIN PRIVATE KEY").count(), 1);
    }
    // The manifest gained both devices and kept the CA entries.
    let m: serde_json::Value = serde_json::from_str(&read(&p(dir.path(), MANIFEST))).unwrap();
    let names: Vec<&str> = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["commonName"].as_str().unwrap())
        .collect();
    for n in [
        "pki Test Only Root CA",
        "device-0001",
        "sensor-1",
        "sensor-2",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_no_temp_files(dir.path());
}

#[test]
fn issuer_root_and_rsa_device_keys() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    device_new(
        dir.path(),
        &["--issuer", "root", "--key", "rsa-2048", "--no-pfx", "r-1"],
    )
    .ok();
    let cert = p(dir.path(), "certs/r-1.cert.pem");
    let root = p(dir.path(), ROOT_CERT);
    assert_eq!(issuer_cn(&cert), "CN=pki Test Only Root CA");
    assert_verifies(&root, None, &cert);
    let text = x509_text(&cert);
    assert!(text.contains("Public-Key: (2048 bit)"));
    assert!(text.contains("Digital Signature, Key Encipherment"));
    // Full chain: leaf then root.
    let full = p(dir.path(), "certs/r-1-full-chain.cert.pem");
    assert_eq!(read(&full), read(&cert) + &read(&root));
}

#[test]
fn devices_n_and_prefix_and_encrypted_device_keys() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    pki_env(
        &[
            "device",
            "new",
            "--ca-dir",
            s(dir.path()),
            "--devices",
            "3",
            "--prefix",
            "bulk-",
            "--no-pfx",
        ],
        &[("PKI_KEY_PASSWORD", "devpw")],
    )
    .ok();
    for n in 1..=3 {
        let key = p(dir.path(), &format!("private/bulk-{n:04}.key.pem"));
        assert!(read(&key).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        openssl(&["pkey", "-in", &key, "-passin", "pass:devpw", "-noout"]).ok();
    }
}

#[test]
fn refuses_to_overwrite_an_existing_device_without_force() {
    let dir = tmp();
    new_chain(dir.path(), &["--device", "dup-1"]);
    let before = snapshot(dir.path());
    let line = device_new(dir.path(), &["dup-1", "--no-pfx"]).bad_input();
    assert!(line.contains("dup-1") && line.contains("--force"), "{line}");
    assert_eq!(snapshot(dir.path()), before);
    // A batch holding one existing device is refused as a whole.
    device_new(dir.path(), &["new-9", "dup-1", "--no-pfx"]).bad_input();
    assert_eq!(snapshot(dir.path()), before);

    device_new(dir.path(), &["dup-1", "--no-pfx", "--force"]).ok();
    let cert = p(dir.path(), "certs/dup-1.cert.pem");
    assert_ne!(
        before.get(Path::new("certs/dup-1.cert.pem")).unwrap(),
        read(&cert).as_bytes()
    );
    assert_verifies(
        &p(dir.path(), ROOT_CERT),
        Some(&p(dir.path(), CHAIN_CERT)),
        &cert,
    );
}

#[test]
fn self_signed_device_verifies_against_itself() {
    let dir = tmp();
    let run = pki_in(
        dir.path(),
        &["device", "new", "--self-signed", "lonely-1", "--no-pfx"],
    )
    .ok();
    assert!(!run.stdout.is_empty());
    let cert = p(dir.path(), "certs/lonely-1.cert.pem");
    let out = openssl(&["verify", "-CAfile", &cert, &cert]).ok();
    assert!(out.stdout.contains(": OK"));
    let f = facts(&cert);
    assert_eq!(f.subject, "CN=lonely-1");
    assert_eq!(f.issuer, "CN=lonely-1");
    let text = x509_text(&cert);
    assert!(text.contains("CA:FALSE"));
    assert!(text.contains("TLS Web Client Authentication"));
    let key = p(dir.path(), "private/lonely-1.key.pem");
    assert_eq!(mode(&key), 0o600);
    let pubkey = openssl(&["pkey", "-in", &key, "-pubout"]).ok().stdout;
    let cert_pub = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"])
        .ok()
        .stdout;
    assert_eq!(pubkey, cert_pub);
}

/// A certGen.sh-style CA made with openssl issues devices through pki, both
/// under the intermediate (default) and the root; openssl verifies them.
fn openssl_ca_issues_devices(kind: OsslKey, bits: u32) {
    let dir = tmp();
    make_openssl_ca(dir.path(), kind, bits);
    let pw: &[&str] = if kind.encrypted() {
        &["--ca-key-password", "1234"]
    } else {
        &[]
    };
    let mut args = vec!["--no-pfx", "cg-dev-1", "cg-dev-2"];
    args.extend_from_slice(pw);
    let run = device_new(dir.path(), &args).ok();
    assert!(run.stderr.contains("cut to the issuer"), "{}", run.stderr);
    let root = p(dir.path(), ROOT_CERT);
    let int = p(dir.path(), INT_CERT);
    for id in ["cg-dev-1", "cg-dev-2"] {
        let cert = p(dir.path(), &format!("certs/{id}.cert.pem"));
        assert_eq!(
            issuer_cn(&cert),
            "CN=Azure IoT Hub Intermediate Cert Test Only"
        );
        assert_verifies(&root, Some(&int), &cert);
        let full = p(dir.path(), &format!("certs/{id}-full-chain.cert.pem"));
        assert_verifies(&root, Some(&full), &cert);
        let blocks = pem_blocks(&full);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[1].trim(), read(&int).trim());
        assert_eq!(blocks[2].trim(), read(&root).trim());
        // A device never outlives its (30-day) issuer.
        assert!(facts(&cert).not_after <= facts(&int).not_after);
    }
    // Under the root, with a PFX.
    let mut args = vec!["--issuer", "root", "cg-root-1"];
    args.extend_from_slice(pw);
    device_new(dir.path(), &args).ok();
    let cert = p(dir.path(), "certs/cg-root-1.cert.pem");
    assert_eq!(issuer_cn(&cert), "CN=Azure IoT Hub CA Cert Test Only");
    assert_verifies(&root, None, &cert);
    let pfx = p(dir.path(), "certs/cg-root-1.cert.pfx");
    let out = openssl(&["pkcs12", "-in", &pfx, "-passin", "pass:1234", "-nodes"]).ok();
    assert_eq!(out.stdout.matches("BEGIN CERTIFICATE").count(), 2);
    // The openssl-made CA keys are untouched.
    assert!(read(&p(dir.path(), ROOT_KEY)).starts_with(kind.header()));
}

#[test]
fn openssl_ca_legacy_encrypted_rsa_key() {
    openssl_ca_issues_devices(OsslKey::RsaLegacyEncrypted, 2048);
}

/// What certGen.sh makes with OpenSSL 3: `genrsa -aes256 … 4096`.
#[test]
fn openssl_ca_pkcs8_encrypted_rsa_4096_key() {
    openssl_ca_issues_devices(OsslKey::RsaPkcs8Encrypted, 4096);
}

#[test]
fn openssl_ca_plain_pkcs1_rsa_key() {
    openssl_ca_issues_devices(OsslKey::RsaPkcs1Plain, 2048);
}

#[test]
fn openssl_ca_plain_sec1_ec_key() {
    openssl_ca_issues_devices(OsslKey::EcSec1Plain, 0);
}

#[test]
fn wrong_or_missing_ca_password_is_refused_and_nothing_is_written() {
    for kind in [OsslKey::RsaLegacyEncrypted, OsslKey::RsaPkcs8Encrypted] {
        let dir = tmp();
        make_openssl_ca(dir.path(), kind, 2048);
        let before = snapshot(dir.path());
        for issuer in ["intermediate", "root"] {
            let line = device_new(
                dir.path(),
                &["--issuer", issuer, "--ca-key-password", "4321", "dev-x"],
            )
            .bad_input();
            assert!(
                line.contains("password") && line.contains("--ca-key-password"),
                "{kind:?}: {line}"
            );
            let line = device_new(dir.path(), &["--issuer", issuer, "dev-x"]).bad_input();
            assert!(line.contains("--ca-key-password"), "{kind:?}: {line}");
            // Same through the environment variable.
            pki_env(
                &[
                    "device",
                    "new",
                    "--ca-dir",
                    s(dir.path()),
                    "--issuer",
                    issuer,
                    "dev-x",
                ],
                &[("PKI_CA_KEY_PASSWORD", "nope")],
            )
            .bad_input();
            assert_eq!(snapshot(dir.path()), before, "{kind:?}: files changed");
        }
        // The environment variable with the right password works.
        pki_env(
            &[
                "device",
                "new",
                "--ca-dir",
                s(dir.path()),
                "--no-pfx",
                "dev-x",
            ],
            &[("PKI_CA_KEY_PASSWORD", "1234")],
        )
        .ok();
    }
}

#[test]
fn missing_ca_directory_is_refused() {
    let dir = tmp();
    let missing = dir.path().join("nope");
    let line = device_new(&missing, &["dev-1"]).bad_input();
    assert!(line.contains("pki chain new"), "{line}");
    assert!(
        !missing.exists(),
        "device new created the missing directory"
    );
    // An empty directory: same.
    let line = device_new(dir.path(), &["dev-1"]).bad_input();
    assert!(line.contains("--ca-dir"), "{line}");
    assert!(snapshot(dir.path()).is_empty());
    // --issuer with a file that does not exist.
    device_new(dir.path(), &["--issuer", "/nonexistent/ca.pem", "dev-1"]).bad_input();
    assert!(snapshot(dir.path()).is_empty());
}

#[test]
fn bad_ids_and_duplicates_are_refused() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let before = snapshot(dir.path());
    let long = "x".repeat(65);
    for args in [
        vec!["bad id"],
        vec!["--", "-x"],
        vec![long.as_str()],
        vec!["ok-1", "ok-1"],
        vec!["ok-1", "OK-1"],
        vec!["dev.", "ok-2"],
    ] {
        let line = device_new(dir.path(), &args).bad_input();
        assert!(
            line.contains("DPS") || line.contains("twice"),
            "{args:?}: {line}"
        );
        assert_eq!(snapshot(dir.path()), before, "{args:?} wrote files");
    }
    // No ID at all.
    device_new(dir.path(), &[]).bad_input();
    // Unknown key type: clap names the valid values.
    let run = device_new(dir.path(), &["--key", "dsa", "k-1"]).code(2);
    for kt in KEY_TYPES {
        assert!(run.stderr.contains(kt), "{}", run.stderr);
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn upper_case_id_is_accepted_with_one_warning() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let run = device_new(dir.path(), &["Mixed-Case", "--no-pfx", "-q"]).ok();
    assert_eq!(
        run.stderr.matches("pki: warning:").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Mixed-Case"));
    assert_eq!(
        facts(&p(dir.path(), "certs/Mixed-Case.cert.pem")).subject,
        "CN=Mixed-Case"
    );
}

#[test]
fn json_output_lists_what_was_issued() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let run = device_new(dir.path(), &["j-1", "--json", "--no-pfx"]).ok();
    let v = json(&run);
    let e = &v.as_array().unwrap()[0];
    assert_eq!(e["role"], "device");
    assert_eq!(e["commonName"], "j-1");
    let cert = p(dir.path(), "certs/j-1.cert.pem");
    assert_eq!(e["sha1Thumbprint"], fingerprint(&cert, "sha1"));
    assert_eq!(e["sha256Thumbprint"], fingerprint(&cert, "sha256"));
}

#[test]
fn an_id_differing_only_in_case_is_the_same_device() {
    let dir = tmp();
    pki(&[
        "chain",
        "new",
        "--out",
        s(dir.path()),
        "--device",
        "sensor-17",
    ])
    .ok();
    let line = pki(&["device", "new", "--ca-dir", s(dir.path()), "SENSOR-17"]).bad_input();
    assert!(line.contains("case-insensitively"), "{line}");
    assert!(!dir.path().join("certs/SENSOR-17.cert.pem").exists());
}

#[test]
fn self_signed_summary_lists_only_what_was_written() {
    let dir = tmp();
    let run = pki(&[
        "device",
        "new",
        "--self-signed",
        "--ca-dir",
        s(dir.path()),
        "lonely-1",
    ])
    .ok();
    assert!(!run.stdout.contains("full-chain"), "{}", run.stdout);
    assert!(
        !dir.path()
            .join("certs/lonely-1-full-chain.cert.pem")
            .exists()
    );
    let line = pki(&[
        "device",
        "new",
        "--self-signed",
        "--issuer",
        "root",
        "lonely-2",
    ])
    .bad_input();
    assert!(line.contains("--self-signed"), "{line}");
}
