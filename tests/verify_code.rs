//! `pki verify-code`: proof-of-possession certificates for root and
//! intermediate, EC and RSA, pki and openssl/certGen-style CAs, checked with
//! `openssl verify -partial_chain`; output files, JSON and bad input.

use std::fs;
use std::path::Path;

use crate::support::*;

const CODE: &str = "3A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F5A6B7";
/// More realistic codes (DPS shows 48 upper-case hex digits).
const CODE_1: &str = "C0DE0001A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E";
const CODE_2: &str = "C0DE0002A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E";
const CODE_3: &str = "C0DE0003A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E";

fn new_chain(dir: &Path, extra: &[&str]) {
    let mut args = vec!["chain", "new", "--out", s(dir), "-q", "--no-pfx"];
    args.extend_from_slice(extra);
    pki(&args).ok();
}

fn verify_code(ca_dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify-code", "--ca-dir", s(ca_dir)];
    args.extend_from_slice(extra);
    pki(&args)
}

/// Checks the verification certificate in `out` for `code`, signed by `ca`.
fn check_verification(out: &Path, code: &str, ca: &str) {
    let cert = p(out, "certs/verification-code.cert.pem");
    let der = p(out, "certs/verification-code.cer");
    let key = p(out, "private/verification-code.key.pem");
    let f = facts(&cert);
    assert_eq!(
        f.subject,
        format!("CN={code}"),
        "subject must be exactly CN=CODE"
    );
    assert_eq!(f.issuer, facts(ca).subject, "issuer must be the chosen CA");
    let v = openssl(&["verify", "-partial_chain", "-CAfile", ca, &cert]);
    assert!(
        v.code == Some(0) && v.stdout.contains(": OK"),
        "openssl verify -partial_chain -CAfile {ca}: {}{}",
        v.stdout,
        v.stderr
    );
    // An ordinary leaf with a fresh serial (not the CA's, unlike the Java DICE tool).
    let text = x509_text(&cert);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"));
    assert!(text.contains("Digital Signature"));
    assert_ne!(f.serial, facts(ca).serial);
    assert_eq!(f.serial.len(), 32);
    // Short validity, never past the CA.
    let days = (f.not_after - now()) as f64 / 86400.0;
    assert!(days <= 30.01, "{days}");
    assert!(f.not_after <= facts(ca).not_after);
    // DER copy: openssl reads it and it is the same certificate.
    let from_der = openssl(&["x509", "-inform", "DER", "-in", &der])
        .ok()
        .stdout;
    assert_eq!(from_der.trim(), read(&cert).trim());
    // Key: plain PKCS#8, 0600, belongs to the certificate.
    assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    let pubkey = openssl(&["pkey", "-in", &key, "-pubout"]).ok().stdout;
    let cert_pub = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"])
        .ok()
        .stdout;
    assert_eq!(pubkey, cert_pub);
    assert_no_temp_files(out);
}

fn root_and_intermediate(key: &str) {
    let dir = tmp();
    new_chain(dir.path(), &["--key", key]);
    let run = verify_code(dir.path(), &[CODE]).ok();
    assert!(run.stdout.contains("verification-code.cert.pem"));
    assert!(run.stdout.contains("CN=pki Test Only Root CA"));
    check_verification(dir.path(), CODE, &p(dir.path(), ROOT_CERT));
    // The intermediate; the code is trimmed.
    let padded = format!("  {CODE}\n");
    verify_code(
        dir.path(),
        &["--issuer", "intermediate", "--force", &padded],
    )
    .ok();
    check_verification(dir.path(), CODE, &p(dir.path(), INT_CERT));
    // A root-signed verification certificate does not pass for the intermediate.
    let cert = p(dir.path(), "certs/verification-code.cert.pem");
    let wrong = openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        &p(dir.path(), ROOT_CERT),
        &cert,
    ]);
    assert_ne!(wrong.code, Some(0));
}

#[test]
fn ec_p256_root_and_intermediate() {
    root_and_intermediate("ec-p256");
}

#[test]
fn ec_p384_root_and_intermediate() {
    root_and_intermediate("ec-p384");
}

#[test]
fn rsa_root_and_intermediate() {
    root_and_intermediate("rsa-2048");
}

#[test]
fn openssl_certgen_style_ca_with_password() {
    let dir = tmp();
    make_openssl_ca(dir.path(), OsslKey::RsaLegacyEncrypted, 2048);
    for issuer in ["root", "intermediate"] {
        verify_code(
            dir.path(),
            &[
                "--issuer",
                issuer,
                "--ca-key-password",
                "1234",
                "--force",
                CODE_1,
            ],
        )
        .ok();
        let ca = if issuer == "root" {
            ROOT_CERT
        } else {
            INT_CERT
        };
        check_verification(dir.path(), CODE_1, &p(dir.path(), ca));
    }
    // Wrong or missing password: exit 2, one line naming the option, nothing written.
    fs::remove_file(dir.path().join("certs/verification-code.cert.pem")).unwrap();
    fs::remove_file(dir.path().join("certs/verification-code.cer")).unwrap();
    fs::remove_file(dir.path().join("private/verification-code.key.pem")).unwrap();
    let before = snapshot(dir.path());
    let line = verify_code(dir.path(), &["--ca-key-password", "0000", CODE_1]).bad_input();
    assert!(line.contains("--ca-key-password"), "{line}");
    let line = verify_code(dir.path(), &[CODE_1]).bad_input();
    assert!(line.contains("--ca-key-password"), "{line}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn openssl_pkcs8_encrypted_and_sec1_cas() {
    for kind in [OsslKey::RsaPkcs8Encrypted, OsslKey::EcSec1Plain] {
        let dir = tmp();
        make_openssl_ca(dir.path(), kind, 2048);
        let mut args = vec!["--issuer", "intermediate", CODE_1];
        if kind.encrypted() {
            args.extend(["--ca-key-password", "1234"]);
        }
        verify_code(dir.path(), &args).ok();
        check_verification(dir.path(), CODE_1, &p(dir.path(), INT_CERT));
    }
}

#[test]
fn ca_cert_and_ca_key_files_with_out_dir_and_json() {
    let ca = tmp();
    make_openssl_ca(ca.path(), OsslKey::RsaPkcs8Encrypted, 2048);
    let out = tmp();
    let run = pki(&[
        "verify-code",
        "--ca-cert",
        &p(ca.path(), INT_CERT),
        "--ca-key",
        &p(ca.path(), INT_KEY),
        "--ca-key-password",
        "1234",
        "--out",
        s(out.path()),
        "--json",
        CODE_2,
    ])
    .ok();
    check_verification(out.path(), CODE_2, &p(ca.path(), INT_CERT));
    // Nothing was written into the CA directory.
    assert!(!ca.path().join("certs/verification-code.cert.pem").exists());
    let v = json(&run);
    let cert = p(out.path(), "certs/verification-code.cert.pem");
    assert_eq!(v["certificate"], cert);
    assert_eq!(v["der"], p(out.path(), "certs/verification-code.cer"));
    assert_eq!(v["key"], p(out.path(), "private/verification-code.key.pem"));
    assert_eq!(v["subject"], format!("CN={CODE_2}"));
    assert_eq!(v["issuer"], "CN=Azure IoT Hub Intermediate Cert Test Only");
    assert_eq!(v["issuerFile"], p(ca.path(), INT_CERT));
    assert_eq!(v["sha1Thumbprint"], fingerprint(&cert, "sha1"));
    assert_eq!(v["sha256Thumbprint"], fingerprint(&cert, "sha256"));
    assert!(v["notAfter"].as_str().unwrap().ends_with('Z'));

    // A pki CA given as files, from the current directory's defaults.
    let pki_ca = tmp();
    new_chain(pki_ca.path(), &[]);
    pki_in(
        pki_ca.path(),
        &[
            "verify-code",
            "--ca-cert",
            ROOT_CERT,
            "--ca-key",
            ROOT_KEY,
            CODE_3,
        ],
    )
    .ok();
    check_verification(pki_ca.path(), CODE_3, &p(pki_ca.path(), ROOT_CERT));
}

#[test]
fn bad_codes_are_refused() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let before = snapshot(dir.path());
    let long = "A".repeat(65);
    for code in ["", "   ", long.as_str(), "AB\tCD", "AB\nCD", "AB\u{7}CD"] {
        let line = verify_code(dir.path(), &[code]).bad_input();
        assert!(line.contains("verification code"), "{code:?}: {line}");
        assert_eq!(snapshot(dir.path()), before, "{code:?} wrote files");
    }
    // 64 characters fit in a CN.
    let max = "B".repeat(64);
    verify_code(dir.path(), &[&max]).ok();
    check_verification(dir.path(), &max, &p(dir.path(), ROOT_CERT));
}

#[test]
fn mismatched_ca_cert_and_key_are_refused() {
    let a = tmp();
    let b = tmp();
    new_chain(a.path(), &[]);
    new_chain(b.path(), &[]);
    let out = tmp();
    let line = pki(&[
        "verify-code",
        "--ca-cert",
        &p(a.path(), ROOT_CERT),
        "--ca-key",
        &p(b.path(), ROOT_KEY),
        "--out",
        s(out.path()),
        CODE,
    ])
    .bad_input();
    assert!(line.contains("does not belong"), "{line}");
    assert!(snapshot(out.path()).is_empty());
    // The intermediate's key with the root certificate, in one directory.
    let before = snapshot(a.path());
    verify_code(a.path(), &["--ca-key", &p(a.path(), INT_KEY), CODE]).bad_input();
    // A device certificate is not a CA.
    verify_code(
        a.path(),
        &[
            "--issuer",
            &p(a.path(), "certs/device-0001.cert.pem"),
            "--ca-key",
            &p(a.path(), "private/device-0001.key.pem"),
            CODE,
        ],
    )
    .bad_input();
    // --ca-cert without --ca-key is a usage error.
    pki(&["verify-code", "--ca-cert", &p(a.path(), ROOT_CERT), CODE]).code(2);
    assert_eq!(snapshot(a.path()), before);
}

#[test]
fn missing_ca_directory_is_refused() {
    let dir = tmp();
    let missing = dir.path().join("nope");
    for issuer in ["root", "intermediate"] {
        let line = verify_code(&missing, &["--issuer", issuer, CODE]).bad_input();
        assert!(line.contains("pki chain new"), "{line}");
    }
    assert!(!missing.exists());
    verify_code(dir.path(), &[CODE]).bad_input();
    assert!(snapshot(dir.path()).is_empty());
}

// Issue 13 (8): DPS codes are hex; the README's old placeholder, words and
// short codes are refused; lower case is accepted (shown upper case); an
// earlier verification certificate is only replaced with --force.
#[test]
fn codes_must_be_hex_and_earlier_certificates_are_kept() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let before = snapshot(dir.path());
    for code in [
        "3A1B2C…",
        "ABC123",
        "CODE-1",
        "not-a-code",
        "3A1B2C3D4E5F6071829G",
    ] {
        let line = verify_code(dir.path(), &[code]).bad_input();
        assert!(line.contains("verification code"), "{code:?}: {line}");
        assert!(line.contains("hex"), "{code:?}: {line}");
        assert_eq!(snapshot(dir.path()), before, "{code:?} wrote files");
    }
    let lower = CODE.to_ascii_lowercase();
    verify_code(dir.path(), &[&format!(" {lower} ")]).ok();
    check_verification(dir.path(), CODE, &p(dir.path(), ROOT_CERT));
    let first = snapshot(dir.path());
    let line = verify_code(dir.path(), &[CODE_1]).bad_input();
    assert!(line.contains("--force"), "{line}");
    assert!(line.contains("verification-code"), "{line}");
    assert_eq!(snapshot(dir.path()), first, "replaced without --force");
    verify_code(dir.path(), &["--force", CODE_1]).ok();
    check_verification(dir.path(), CODE_1, &p(dir.path(), ROOT_CERT));
    // The README's verify-code commands work when pasted (no placeholder code).
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in readme.lines().filter(|l| l.contains("pki verify-code ")) {
        assert!(!line.contains('…'), "README placeholder: {line}");
    }
}
