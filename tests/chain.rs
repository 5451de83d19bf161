//! `pki chain new`: every key type checked with the openssl CLI (verify,
//! profile extensions, keys, PFX), chain files, validity, safety and bad input.

use std::fs;
use std::path::Path;

use crate::support::*;

/// What one chain is expected to look like.
struct Expect<'a> {
    key: &'a str,
    intermediates: usize,
    devices: &'a [&'a str],
    root_cn: &'a str,
    intermediate_cn: &'a str,
    pfx: bool,
}

impl Default for Expect<'_> {
    fn default() -> Self {
        Expect {
            key: "ec-p256",
            intermediates: 1,
            devices: &["device-0001"],
            root_cn: "pki Test Only Root CA",
            intermediate_cn: "pki Test Only Intermediate CA",
            pfx: true,
        }
    }
}

fn intermediate_rel(n: usize) -> String {
    if n == 1 {
        INT_CERT.to_string()
    } else {
        format!("certs/azure-iot-test-only.intermediate{n}.cert.pem")
    }
}

fn intermediate_key_rel(n: usize) -> String {
    if n == 1 {
        INT_KEY.to_string()
    } else {
        format!("private/azure-iot-test-only.intermediate{n}.key.pem")
    }
}

/// The signature algorithm openssl names for certificates signed by a `key` CA.
fn sig_alg(key: &str) -> &'static str {
    match key {
        "ec-p256" => "ecdsa-with-SHA256",
        "ec-p384" => "ecdsa-with-SHA384",
        _ => "sha256WithRSAEncryption",
    }
}

/// What `openssl x509 -text` shows for a public key of type `key`.
fn key_line(key: &str) -> &'static str {
    match key {
        "ec-p256" => "NIST CURVE: P-256",
        "ec-p384" => "NIST CURVE: P-384",
        "rsa-2048" => "Public-Key: (2048 bit)",
        "rsa-3072" => "Public-Key: (3072 bit)",
        "rsa-4096" => "Public-Key: (4096 bit)",
        _ => unreachable!(),
    }
}

fn ski(text: &str) -> String {
    let (h, v) = extension(text, "X509v3 Subject Key Identifier").expect("SKI missing");
    assert!(!h.contains("critical"), "SKI must not be critical");
    assert!(!v.is_empty());
    v
}

fn aki(text: &str) -> String {
    let (_, v) = extension(text, "X509v3 Authority Key Identifier").expect("AKI missing");
    v.trim_start_matches("keyid:").to_string()
}

/// Checks the properties every certificate `pki` makes shares.
fn check_common(path: &str, text: &str, signer_key: &str, subject_key: &str) {
    assert!(text.contains("Version: 3 (0x2)"), "{path}: not X.509 v3");
    assert_eq!(
        text.matches(&format!("Signature Algorithm: {}", sig_alg(signer_key)))
            .count(),
        2,
        "{path}: signature algorithm should be {}\n{text}",
        sig_alg(signer_key)
    );
    assert!(
        text.contains(key_line(subject_key)),
        "{path}: expected {}",
        key_line(subject_key)
    );
    // 16-byte positive serial: 32 hex digits, top bit clear.
    let facts = facts(path);
    let serial = facts.serial;
    assert_eq!(serial.len(), 32, "{path}: serial {serial} is not 16 bytes");
    assert!(
        u8::from_str_radix(&serial[..2], 16).unwrap() < 0x80,
        "{path}: serial {serial} is negative"
    );
    // notBefore a few minutes in the past (clock skew allowance).
    let (nb, na) = (facts.not_before, facts.not_after);
    let now = now();
    assert!(
        nb <= now - 60 && nb >= now - 3600,
        "{path}: notBefore should be a few minutes in the past ({} s ago)",
        now - nb
    );
    assert!(na > now, "{path}: already expired");
}

fn check_ca_profile(text: &str, path_len: usize) {
    let (h, v) = extension(text, "X509v3 Basic Constraints").expect("basicConstraints");
    assert!(h.contains("critical"), "basicConstraints must be critical");
    assert_eq!(v, format!("CA:TRUE, pathlen:{path_len}"));
    let (h, v) = extension(text, "X509v3 Key Usage").expect("keyUsage");
    assert!(h.contains("critical"), "keyUsage must be critical");
    assert_eq!(v, "Digital Signature, Certificate Sign, CRL Sign");
    assert!(
        extension(text, "X509v3 Extended Key Usage").is_none(),
        "a CA has no EKU"
    );
}

fn check_device_profile(text: &str, id: &str, rsa: bool) {
    assert!(
        text.contains(&format!("Subject: CN = {id}\n")),
        "device subject should be CN = {id}\n{text}"
    );
    let (_, v) = extension(text, "X509v3 Basic Constraints").expect("basicConstraints");
    assert_eq!(v, "CA:FALSE");
    let (h, v) = extension(text, "X509v3 Key Usage").expect("keyUsage");
    assert!(h.contains("critical"), "keyUsage must be critical");
    if rsa {
        assert_eq!(v, "Digital Signature, Key Encipherment");
    } else {
        assert_eq!(v, "Digital Signature");
    }
    let (_, v) = extension(text, "X509v3 Extended Key Usage").expect("EKU");
    assert_eq!(v, "TLS Web Client Authentication");
}

/// Checks a whole `pki chain new` output directory with openssl.
fn check_chain_dir(dir: &Path, e: &Expect) {
    let root = p(dir, ROOT_CERT);
    let chain = p(dir, CHAIN_CERT);
    let root_text = x509_text(&root);
    check_common(&root, &root_text, e.key, e.key);
    check_ca_profile(&root_text, e.intermediates);
    assert!(root_text.contains(&format!("Subject: CN = {}\n", e.root_cn)));
    assert!(root_text.contains(&format!("Issuer: CN = {}\n", e.root_cn)));
    let mut parent_ski = ski(&root_text);
    let mut parent_cn = e.root_cn.to_string();

    // Intermediates: pathlen decreasing to 0, each signed by the one above.
    let mut expected_chain_ca = vec![read(&root)];
    for n in 1..=e.intermediates {
        let path = p(dir, &intermediate_rel(n));
        let text = x509_text(&path);
        check_common(&path, &text, e.key, e.key);
        check_ca_profile(&text, e.intermediates - n);
        let cn = if n == 1 {
            e.intermediate_cn.to_string()
        } else {
            format!("{} {n}", e.intermediate_cn)
        };
        assert!(text.contains(&format!("Subject: CN = {cn}\n")), "{text}");
        assert!(text.contains(&format!("Issuer: CN = {parent_cn}\n")));
        assert_eq!(aki(&text), parent_ski, "AKI of {path} != issuer SKI");
        parent_ski = ski(&text);
        parent_cn = cn;
        expected_chain_ca.insert(0, read(&path));
        assert_verifies(&root, Some(&chain), &path);
        let key = p(dir, &intermediate_key_rel(n));
        assert_eq!(mode(&key), 0o600);
    }
    // chain.ca = intermediates, lowest first, then the root.
    assert_eq!(read(&chain), expected_chain_ca.concat(), "chain.ca order");
    assert_eq!(pem_blocks(&chain).len(), e.intermediates + 1);

    for id in e.devices {
        let cert = p(dir, &format!("certs/{id}.cert.pem"));
        let full = p(dir, &format!("certs/{id}-full-chain.cert.pem"));
        let key = p(dir, &format!("private/{id}.key.pem"));
        let text = x509_text(&cert);
        check_common(&cert, &text, e.key, e.key);
        check_device_profile(&text, id, e.key.starts_with("rsa"));
        assert!(text.contains(&format!("Issuer: CN = {parent_cn}\n")));
        assert_eq!(aki(&text), parent_ski, "device AKI != issuer SKI");
        ski(&text);
        assert_verifies(&root, Some(&chain), &cert);
        assert_verifies(&root, Some(&full), &cert);
        // Full chain: leaf → intermediates → root.
        assert_eq!(read(&full), read(&cert) + &expected_chain_ca.concat());
        // A device never outlives its issuer.
        let issuer = if e.intermediates == 0 {
            root.clone()
        } else {
            p(dir, &intermediate_rel(e.intermediates))
        };
        assert!(validity(&cert).1 <= validity(&issuer).1);

        // Plain PKCS#8 key that belongs to the certificate.
        assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(mode(&full), 0o644);
        let pubkey = openssl(&["pkey", "-in", &key, "-pubout"]).ok().stdout;
        let cert_pub = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"])
            .ok()
            .stdout;
        assert_eq!(pubkey, cert_pub, "{key} does not match {cert}");

        let pfx = p(dir, &format!("certs/{id}.cert.pfx"));
        if e.pfx {
            check_pfx(&pfx, "1234", false, &cert, e.intermediates + 2);
        } else {
            assert!(!Path::new(&pfx).exists());
        }
    }
    assert_eq!(mode(&p(dir, ROOT_KEY)), 0o600);
    assert_eq!(mode(&p(dir, "private")), 0o700);
    assert_eq!(mode(&root), 0o644);
    assert_eq!(mode(&chain), 0o644);
    assert_no_temp_files(dir);
}

/// Reads a PFX with `openssl pkcs12`: key + leaf + chain (`certs` certificates).
fn check_pfx(pfx: &str, password: &str, legacy: bool, leaf: &str, certs: usize) {
    let pass = format!("pass:{password}");
    let mut args = vec!["pkcs12", "-in", pfx, "-passin", &pass, "-nodes", "-info"];
    if legacy {
        args.push("-legacy");
    }
    let out = openssl(&args);
    assert_eq!(
        out.code,
        Some(0),
        "openssl pkcs12 cannot read {pfx}:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.matches("-----BEGIN CERTIFICATE-----").count(),
        certs,
        "PFX should hold leaf + chain"
    );
    assert_eq!(out.stdout.matches("-----BEGIN PRIVATE KEY-----").count(), 1);
    // The leaf is in it.
    let leaf_pem = read(leaf);
    assert!(out.stdout.contains(leaf_pem.trim()), "leaf not in PFX");
    if legacy {
        assert!(out.stderr.contains("MAC: sha1"), "{}", out.stderr);
        assert!(out.stderr.contains("TripleDES"), "{}", out.stderr);
    } else {
        assert!(out.stderr.contains("MAC: sha256"), "{}", out.stderr);
        assert!(out.stderr.contains("AES-256-CBC"), "{}", out.stderr);
    }
}

fn chain_new(dir: &Path, extra: &[&str]) -> Run {
    let out = p(dir, "");
    let mut args = vec!["chain", "new", "--out", &out];
    args.extend_from_slice(extra);
    pki(&args)
}

fn check_key_type(key: &str) {
    let dir = tmp();
    let run = chain_new(dir.path(), &["--key", key, "--device", "dev-1"]).ok();
    assert!(run.stdout.contains("PFX password"));
    check_chain_dir(
        dir.path(),
        &Expect {
            key,
            devices: &["dev-1"],
            ..Default::default()
        },
    );
}

#[test]
fn key_type_ec_p256() {
    check_key_type("ec-p256");
}

#[test]
fn key_type_ec_p384() {
    check_key_type("ec-p384");
}

#[test]
fn key_type_rsa_2048() {
    check_key_type("rsa-2048");
}

#[test]
fn key_type_rsa_3072() {
    check_key_type("rsa-3072");
}

/// RSA-4096 (slow to generate) is covered by this one run: `--certgen` makes
/// every key RSA-4096.
#[test]
fn certgen_parity_is_rsa_4096_with_its_cns_and_30_days() {
    let dir = tmp();
    let run = chain_new(dir.path(), &["--certgen"]).ok();
    // Devices and CAs all get 30 days: no "validity was cut" note for the
    // seconds between making the CA and the device.
    assert!(!run.stderr.contains("cut to the issuer"), "{}", run.stderr);
    check_chain_dir(
        dir.path(),
        &Expect {
            key: "rsa-4096",
            root_cn: "Azure IoT Hub CA Cert Test Only",
            intermediate_cn: "Azure IoT Hub Intermediate Cert Test Only",
            ..Default::default()
        },
    );
    for rel in [ROOT_CERT, INT_CERT, "certs/device-0001.cert.pem"] {
        let (nb, na) = validity(&p(dir.path(), rel));
        let days = (na - nb) as f64 / 86400.0;
        assert!(
            (29.9..=30.1).contains(&days),
            "{rel}: {days} days, certGen.sh makes 30"
        );
    }
}

#[test]
fn separate_ca_and_device_key_types() {
    let dir = tmp();
    chain_new(
        dir.path(),
        &[
            "--ca-key",
            "ec-p384",
            "--device-key",
            "rsa-2048",
            "--no-pfx",
        ],
    )
    .ok();
    let root = p(dir.path(), ROOT_CERT);
    let dev = p(dir.path(), "certs/device-0001.cert.pem");
    let text = x509_text(&dev);
    // Signed by a P-384 CA (SHA-384), holding an RSA key (keyEncipherment).
    check_common(&dev, &text, "ec-p384", "rsa-2048");
    check_device_profile(&text, "device-0001", true);
    assert_verifies(&root, Some(&p(dir.path(), CHAIN_CERT)), &dev);
}

#[test]
fn no_intermediates_devices_signed_by_root() {
    let dir = tmp();
    chain_new(
        dir.path(),
        &["--intermediates", "0", "--device", "a-1", "--device", "a-2"],
    )
    .ok();
    assert!(!dir.path().join(INT_CERT).exists());
    assert!(!dir.path().join(INT_KEY).exists());
    check_chain_dir(
        dir.path(),
        &Expect {
            intermediates: 0,
            devices: &["a-1", "a-2"],
            ..Default::default()
        },
    );
}

#[test]
fn three_intermediates_pathlen_decreases() {
    let dir = tmp();
    chain_new(dir.path(), &["--intermediates", "3", "--no-pfx"]).ok();
    check_chain_dir(
        dir.path(),
        &Expect {
            intermediates: 3,
            pfx: false,
            ..Default::default()
        },
    );
    // Full chain = leaf, intermediate 3, 2, 1, root.
    assert_eq!(
        pem_blocks(&p(dir.path(), "certs/device-0001-full-chain.cert.pem")).len(),
        5
    );
}

#[test]
fn device_never_outlives_its_issuer() {
    let dir = tmp();
    let run = chain_new(
        dir.path(),
        &["--ca-days", "10", "--days", "365", "--no-pfx"],
    )
    .ok();
    assert!(
        run.stderr.contains("cut to the issuer"),
        "a note should say the validity was cut: {}",
        run.stderr
    );
    let dev = validity(&p(dir.path(), "certs/device-0001.cert.pem"));
    let int = validity(&p(dir.path(), INT_CERT));
    let root = validity(&p(dir.path(), ROOT_CERT));
    assert_eq!(dev.1, int.1, "device notAfter should equal the issuer's");
    assert!(int.1 <= root.1);
    let days = (int.1 - now()) as f64 / 86400.0;
    assert!(
        (9.9..=10.1).contains(&days),
        "CA should last 10 days: {days}"
    );
}

#[test]
fn default_validity_is_365_days_for_devices_3650_for_cas() {
    let dir = tmp();
    chain_new(dir.path(), &["--no-pfx"]).ok();
    let days = |rel: &str| {
        let (_, na) = validity(&p(dir.path(), rel));
        ((na - now()) as f64 / 86400.0).round() as i64
    };
    assert_eq!(days("certs/device-0001.cert.pem"), 365);
    assert_eq!(days(ROOT_CERT), 3650);
    assert_eq!(days(INT_CERT), 3650);
}

fn check_encrypted_keys(dir: &Path, password: &str) {
    let keys = [
        ROOT_KEY.to_string(),
        INT_KEY.to_string(),
        "private/device-0001.key.pem".to_string(),
    ];
    for rel in &keys {
        let key = p(dir, rel);
        assert!(
            read(&key).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{rel} is not encrypted PKCS#8"
        );
        let pass = format!("pass:{password}");
        let out = openssl(&["pkey", "-in", &key, "-passin", &pass, "-noout", "-text"]);
        assert_eq!(out.code, Some(0), "openssl pkey {rel}: {}", out.stderr);
        let bad = openssl(&["pkey", "-in", &key, "-passin", "pass:wrong", "-noout"]);
        assert_ne!(bad.code, Some(0), "{rel} opened with a wrong password");
        assert_eq!(mode(&key), 0o600);
    }
    // pki can sign with its own encrypted CA key.
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(dir),
        "--ca-key-password",
        password,
        "--no-pfx",
        "later-1",
    ])
    .ok();
    assert_verifies(
        &p(dir, ROOT_CERT),
        Some(&p(dir, CHAIN_CERT)),
        &p(dir, "certs/later-1.cert.pem"),
    );
}

#[test]
fn key_password_option_encrypts_every_key() {
    let dir = tmp();
    chain_new(dir.path(), &["--key-password", "s3cr3t pw", "--no-pfx"]).ok();
    check_encrypted_keys(dir.path(), "s3cr3t pw");
}

#[test]
fn key_password_env_encrypts_every_key() {
    let dir = tmp();
    pki_env(
        &["chain", "new", "--out", s(dir.path()), "--no-pfx"],
        &[("PKI_KEY_PASSWORD", "from-env")],
    )
    .ok();
    check_encrypted_keys(dir.path(), "from-env");
}

#[test]
fn pfx_password_and_legacy() {
    let dir = tmp();
    let run = chain_new(dir.path(), &["--pfx-password", "p@ss word"]).ok();
    // A password the user chose is never echoed (the tutorial's "1234" is named once).
    assert!(!run.stdout.contains("p@ss word") && !run.stderr.contains("p@ss word"));
    assert!(
        run.stdout.contains("as given with --pfx-password"),
        "{}",
        run.stdout
    );
    let pfx = p(dir.path(), "certs/device-0001.cert.pfx");
    let leaf = p(dir.path(), "certs/device-0001.cert.pem");
    assert_eq!(mode(&pfx), 0o600);
    check_pfx(&pfx, "p@ss word", false, &leaf, 3);
    let wrong = openssl(&[
        "pkcs12",
        "-in",
        &pfx,
        "-passin",
        "pass:1234",
        "-nodes",
        "-noout",
    ]);
    assert_ne!(
        wrong.code,
        Some(0),
        "the PFX opened with the default password"
    );

    let dir = tmp();
    chain_new(dir.path(), &["--pfx-legacy", "--intermediates", "2"]).ok();
    let pfx = p(dir.path(), "certs/device-0001.cert.pfx");
    let leaf = p(dir.path(), "certs/device-0001.cert.pem");
    check_pfx(&pfx, "1234", true, &leaf, 4);

    let dir = tmp();
    chain_new(dir.path(), &["--no-pfx"]).ok();
    assert!(!dir.path().join("certs/device-0001.cert.pfx").exists());
}

#[test]
fn running_twice_refuses_and_leaves_files_identical_force_replaces() {
    let dir = tmp();
    chain_new(dir.path(), &["--no-pfx"]).ok();
    let before = snapshot(dir.path());
    let line = chain_new(dir.path(), &["--no-pfx"]).bad_input();
    assert!(line.contains("--force"), "{line}");
    assert_eq!(snapshot(dir.path()), before, "a refused run changed files");
    // Even with other devices, and with --certgen: still refused up front.
    chain_new(dir.path(), &["--device", "x-1", "--intermediates", "0"]).bad_input();
    assert_eq!(snapshot(dir.path()), before);

    let run = chain_new(dir.path(), &["--no-pfx", "--force"]).ok();
    assert!(run.stdout.contains("Root CA"));
    let after = snapshot(dir.path());
    for rel in [ROOT_CERT, ROOT_KEY, INT_CERT, INT_KEY, CHAIN_CERT] {
        assert_ne!(
            after.get(Path::new(rel)),
            before.get(Path::new(rel)),
            "--force did not replace {rel}"
        );
    }
    check_chain_dir(
        dir.path(),
        &Expect {
            pfx: false,
            ..Default::default()
        },
    );
}

#[test]
fn force_with_fewer_intermediates_removes_the_old_ones() {
    let dir = tmp();
    chain_new(dir.path(), &["--intermediates", "2", "--no-pfx"]).ok();
    assert!(dir.path().join(intermediate_rel(2)).exists());
    chain_new(dir.path(), &["--intermediates", "1", "--no-pfx", "--force"]).ok();
    assert!(!dir.path().join(intermediate_rel(2)).exists());
    assert!(!dir.path().join(intermediate_key_rel(2)).exists());
    check_chain_dir(
        dir.path(),
        &Expect {
            pfx: false,
            ..Default::default()
        },
    );
}

#[test]
fn defaults_write_into_the_current_directory() {
    let dir = tmp();
    pki_in(dir.path(), &["chain", "new", "--no-pfx", "-q"]).ok();
    check_chain_dir(
        dir.path(),
        &Expect {
            pfx: false,
            ..Default::default()
        },
    );
}

/// Runs a bad `chain new` and checks nothing was written.
#[track_caller]
fn refused(extra: &[&str]) -> String {
    let dir = tmp();
    let out = dir.path().join("out");
    let mut args = vec!["chain", "new", "--out", s(&out)];
    args.extend_from_slice(extra);
    let line = pki(&args).bad_input();
    assert!(
        snapshot(dir.path()).is_empty(),
        "a refused run wrote {:?}",
        snapshot(dir.path()).keys().collect::<Vec<_>>()
    );
    line
}

#[test]
fn unknown_key_type_is_a_usage_error_naming_the_valid_values() {
    let dir = tmp();
    let out = dir.path().join("out");
    for opt in ["--key", "--ca-key", "--device-key"] {
        let run = pki(&["chain", "new", "--out", s(&out), opt, "rsa-1024"]).code(2);
        for kt in KEY_TYPES {
            assert!(
                run.stderr.contains(kt),
                "{opt}: {kt} not named:\n{}",
                run.stderr
            );
        }
        assert!(run.stderr.contains("rsa-1024"));
    }
    assert!(snapshot(dir.path()).is_empty());
    // Unknown flags are clap usage errors too.
    pki(&["chain", "new", "--out", s(&out), "--frobnicate"]).code(2);
    assert!(snapshot(dir.path()).is_empty());
}

#[test]
fn bad_registration_ids_are_refused_quoting_the_rule() {
    let long = "x".repeat(65);
    for id in ["bad id", "-x", long.as_str(), "dev.", "dév", ""] {
        let arg = format!("--device={id}");
        let line = refused(&[&arg]);
        assert!(line.contains("DPS allows"), "{id:?}: {line}");
    }
    // 64 characters is the limit.
    let dir = tmp();
    let ok = "y".repeat(64);
    chain_new(dir.path(), &["--device", &ok, "--no-pfx"]).ok();
    assert_verifies(
        &p(dir.path(), ROOT_CERT),
        Some(&p(dir.path(), CHAIN_CERT)),
        &p(dir.path(), &format!("certs/{ok}.cert.pem")),
    );
}

#[test]
fn duplicate_ids_are_refused() {
    let line = refused(&["--device", "dup-1", "--device", "dup-1"]);
    assert!(line.contains("dup-1"), "{line}");
    // DPS compares case-insensitively.
    refused(&["--device", "dup-1", "--device", "DUP-1"]);
    // --device and --devices overlap.
    refused(&["--device", "device-0002", "--devices", "3"]);
}

#[test]
fn zero_or_huge_validity_is_refused_before_anything_is_written() {
    refused(&["--days", "0"]);
    refused(&["--ca-days", "0"]);
    refused(&["--days", "4000000000"]);
    refused(&["--ca-days", "4000000"]);
}

#[test]
fn upper_case_id_is_accepted_with_a_warning() {
    let dir = tmp();
    let run = chain_new(dir.path(), &["--device", "Sensor-A", "--no-pfx"]).ok();
    assert!(
        run.stderr.contains("pki: warning:") && run.stderr.contains("Sensor-A"),
        "{}",
        run.stderr
    );
    let cert = p(dir.path(), "certs/Sensor-A.cert.pem");
    assert!(x509_text(&cert).contains("Subject: CN = Sensor-A\n"));
}

#[test]
fn devices_n_with_prefix_names_them_in_order() {
    let dir = tmp();
    let run = chain_new(
        dir.path(),
        &["--devices", "3", "--prefix", "p-", "--no-pfx", "--json"],
    )
    .ok();
    let v = json(&run);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["role"] == "device")
        .map(|e| e["commonName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p-0001", "p-0002", "p-0003"]);
    for id in names {
        assert!(dir.path().join(format!("certs/{id}.cert.pem")).exists());
    }
    assert!(!dir.path().join("certs/device-0001.cert.pem").exists());
}

/// Checks every manifest entry against openssl and the files on disk.
/// `thorough`: one openssl x509 call per certificate for serial, names,
/// validity and both fingerprints; otherwise (bulk runs) the thumbprints are
/// checked with one batched `openssl dgst` per algorithm.
fn check_manifest(
    dir: &Path,
    expect_devices: usize,
    expect_cas: usize,
    thorough: bool,
) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&p(dir, MANIFEST))).expect("manifest.json parses");
    assert_eq!(manifest["version"], 1);
    let certs = manifest["certificates"].as_array().unwrap();
    let count = |role: &str| certs.iter().filter(|e| e["role"] == role).count();
    assert_eq!(count("device"), expect_devices);
    assert_eq!(count("root-ca") + count("intermediate-ca"), expect_cas);
    let mut cert_files = Vec::new();
    for e in certs {
        let files = e["files"].as_object().unwrap();
        for (kind, rel) in files {
            assert!(
                dir.join(rel.as_str().unwrap()).exists(),
                "manifest {kind} file {rel} does not exist"
            );
        }
        assert!(files.contains_key("key"));
        if e["role"] == "device" {
            assert!(files.contains_key("fullChain"));
        }
        assert_eq!(
            e["subject"].as_str().unwrap(),
            format!("CN={}", e["commonName"].as_str().unwrap())
        );
        for field in ["notBefore", "notAfter"] {
            let t = e[field].as_str().unwrap();
            assert!(t.ends_with('Z') && t.len() == 20, "not RFC 3339 UTC: {t}");
        }
        let cert = p(dir, files["cert"].as_str().unwrap());
        cert_files.push(cert.clone());
        if !thorough {
            continue;
        }
        let f = facts(&cert);
        assert_eq!(e["sha1Thumbprint"], fingerprint(&cert, "sha1"), "{cert}");
        assert_eq!(e["sha1Thumbprint"], f.sha1, "{cert}");
        assert_eq!(
            e["sha256Thumbprint"],
            fingerprint(&cert, "sha256"),
            "{cert}"
        );
        assert_eq!(e["serialNumber"], f.serial, "{cert}");
        assert_eq!(e["subject"], f.subject);
        assert_eq!(e["issuer"], f.issuer);
        // Validity in RFC 3339, matching openssl's dates.
        let to_epoch = |t: &str| {
            let months = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let mon = months[t[5..7].parse::<usize>().unwrap() - 1];
            let day: i64 = t[8..10].parse().unwrap();
            parse_openssl_time(&format!("{mon} {day} {} {} GMT", &t[11..19], &t[0..4]))
        };
        assert_eq!(to_epoch(e["notBefore"].as_str().unwrap()), f.not_before);
        assert_eq!(to_epoch(e["notAfter"].as_str().unwrap()), f.not_after);
    }
    if !thorough {
        for (alg, field) in [("sha1", "sha1Thumbprint"), ("sha256", "sha256Thumbprint")] {
            let digests = der_digests(&cert_files, alg);
            for (e, d) in certs.iter().zip(digests) {
                assert_eq!(e[field], d, "{alg} of {}", e["commonName"]);
            }
        }
    }
    manifest
}

#[test]
fn bulk_fifty_devices_all_verify_and_the_manifest_lists_them() {
    let dir = tmp();
    chain_new(dir.path(), &["--devices", "50", "--no-pfx", "-q"]).ok();
    let root = p(dir.path(), ROOT_CERT);
    let chain = p(dir.path(), CHAIN_CERT);
    let certs: Vec<String> = (1..=50)
        .map(|n| p(dir.path(), &format!("certs/device-{n:04}.cert.pem")))
        .collect();
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-CAfile",
        &root,
        "-untrusted",
        &chain,
    ];
    args.extend(certs.iter().map(String::as_str));
    let out = openssl(&args).ok();
    assert_eq!(out.stdout.matches(": OK").count(), 50, "{}", out.stdout);
    let m = check_manifest(dir.path(), 50, 2, false);
    // Serial numbers are unique.
    let mut serials: Vec<&str> = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["serialNumber"].as_str().unwrap())
        .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 52);
    assert_no_temp_files(dir.path());
}

#[test]
fn manifest_lists_pfx_and_chain_files() {
    let dir = tmp();
    chain_new(dir.path(), &["--device", "m-1", "--edge-ca", "gw"]).ok();
    let m = check_manifest(dir.path(), 1, 2, true);
    let dev = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commonName"] == "m-1")
        .unwrap();
    assert_eq!(dev["files"]["pfx"], "certs/m-1.cert.pfx");
    assert_eq!(dev["files"]["cert"], "certs/m-1.cert.pem");
    assert_eq!(dev["files"]["key"], "private/m-1.key.pem");
    assert_eq!(dev["files"]["fullChain"], "certs/m-1-full-chain.cert.pem");
    assert_eq!(dev["issuer"], "CN=pki Test Only Intermediate CA");
}

#[test]
fn edge_ca_is_a_pathlen_0_ca_under_the_chain() {
    let dir = tmp();
    chain_new(dir.path(), &["--edge-ca", "gateway-1", "--no-pfx"]).ok();
    let certs: Vec<_> = fs::read_dir(dir.path().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let edge = certs
        .iter()
        .find(|n| n.contains("gateway-1") && n.ends_with(".cert.pem") && !n.contains("full-chain"))
        .unwrap_or_else(|| panic!("no edge CA certificate in {certs:?}"));
    let edge = p(dir.path(), &format!("certs/{edge}"));
    let text = x509_text(&edge);
    assert!(text.contains("Subject: CN = gateway-1.ca\n"), "{text}");
    assert!(text.contains("Issuer: CN = pki Test Only Intermediate CA\n"));
    check_ca_profile(&text, 0);
    ski(&text);
    aki(&text);
    let root = p(dir.path(), ROOT_CERT);
    assert_verifies(&root, Some(&p(dir.path(), CHAIN_CERT)), &edge);
    // The CAs above it allow one more level, so the edge CA can sign.
    check_ca_profile(&x509_text(&p(dir.path(), INT_CERT)), 1);
    check_ca_profile(&x509_text(&root), 2);
    // A device certificate issued by the edge CA verifies under the chain too.
    let key = edge
        .replace("/certs/", "/private/")
        .replace(".cert.pem", ".key.pem");
    assert_eq!(mode(&key), 0o600);
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(dir.path()),
        "--issuer",
        &edge,
        "--ca-key",
        &key,
        "--no-pfx",
        "leaf-under-edge",
    ])
    .ok();
    let leaf = p(dir.path(), "certs/leaf-under-edge.cert.pem");
    let untrusted = read(&edge) + &read(&p(dir.path(), CHAIN_CERT));
    let bundle = dir.path().join("edge-bundle.pem");
    fs::write(&bundle, untrusted).unwrap();
    assert_verifies(&root, Some(s(&bundle)), &leaf);
    // Its full chain goes all the way up: leaf, edge CA, intermediate, root.
    let full = p(dir.path(), "certs/leaf-under-edge-full-chain.cert.pem");
    assert_eq!(
        read(&full),
        read(&leaf) + &read(&edge) + &read(&p(dir.path(), CHAIN_CERT))
    );
}

#[test]
fn bad_edge_ca_name_is_refused() {
    refused(&["--edge-ca", "bad name"]);
    // NAME.ca must still fit in a 64-character CN.
    let long = "e".repeat(62);
    let line = refused(&["--edge-ca", &long]);
    assert!(line.contains("--edge-ca"), "{line}");
}

#[test]
fn unknown_device_in_empty_out_dir_creates_only_the_expected_files() {
    let dir = tmp();
    chain_new(dir.path(), &["--device", "only-1"]).ok();
    let mut names: Vec<String> = snapshot(dir.path())
        .keys()
        .map(|k| k.display().to_string())
        .collect();
    names.sort();
    let mut expected = vec![
        "certs/",
        ROOT_CERT,
        INT_CERT,
        CHAIN_CERT,
        MANIFEST,
        "certs/only-1.cert.pem",
        "certs/only-1-full-chain.cert.pem",
        "certs/only-1.cert.pfx",
        "private/",
        ROOT_KEY,
        INT_KEY,
        "private/only-1.key.pem",
    ];
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn absurd_device_counts_and_files_as_directories_are_input_errors() {
    let dir = tmp();
    // A typo'd count is refused before any work, not an allocation failure.
    let line = chain_new(dir.path(), &["--devices", "99999999999"]).bad_input();
    assert!(line.contains("--devices"), "{line}");
    assert!(!dir.path().join("certs").exists());
    // --out naming a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let line = pki(&["chain", "new", "--out", s(&file)]).bad_input();
    assert!(line.contains("is a file, not a directory"), "{line}");
    // An empty CN.
    let line = chain_new(&dir.path().join("empty-cn"), &["--root-cn", ""]).bad_input();
    assert!(line.contains("common name is empty"), "{line}");
    // Usage errors are one line too, and name the valid values.
    let line = chain_new(dir.path(), &["--key", "dsa"]).bad_input();
    assert!(
        line.contains("ec-p256") && line.contains("rsa-4096"),
        "{line}"
    );
}

#[test]
fn a_failed_force_run_leaves_the_old_ca_and_devices_untouched() {
    let dir = tmp();
    chain_new(dir.path(), &["--devices", "2"]).ok();
    let root = p(dir.path(), "certs/azure-iot-test-only.root.ca.cert.pem");
    let root_key = p(dir.path(), "private/azure-iot-test-only.root.ca.key.pem");
    let device = p(dir.path(), "certs/device-0001.cert.pem");
    let manifest = p(dir.path(), "certs/manifest.json");
    let before: Vec<Vec<u8>> = [&root, &root_key, &device, &manifest]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    // Something in the way of one of the new files: the run must fail before
    // replacing anything.
    let blocker = dir.path().join("certs/device-0002.cert.pfx");
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    let line = chain_new(dir.path(), &["--devices", "2", "--force"]).bad_input();
    assert!(line.contains("is a directory"), "{line}");
    let after: Vec<Vec<u8>> = [&root, &root_key, &device, &manifest]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        before == after,
        "the old CA, a device or the manifest was replaced"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pki-staging"))
        .collect();
    assert!(leftovers.is_empty(), "staging directory left behind");
    // With the obstacle gone, --force works.
    std::fs::remove_dir(&blocker).unwrap();
    chain_new(dir.path(), &["--devices", "2", "--force"]).ok();
    assert_ne!(std::fs::read(&root).unwrap(), before[0]);
}
