//! `pki inspect`: thumbprints and fields against openssl, `--json`, and
//! `--chain` with DPS's rules (good chain, and each way a chain goes wrong).

use std::fs;
use std::path::Path;

use crate::support::*;

fn new_chain(dir: &Path, extra: &[&str]) {
    let mut args = vec!["chain", "new", "--out", s(dir), "-q", "--no-pfx"];
    args.extend_from_slice(extra);
    pki(&args).ok();
}

/// Writes each certificate of a PEM bundle to its own file.
fn split(bundle: &str, dir: &Path) -> Vec<String> {
    pem_blocks(bundle)
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = dir.join(format!("split-{i}.pem"));
            fs::write(&f, b).unwrap();
            s(&f).to_string()
        })
        .collect()
}

#[test]
fn thumbprints_and_fields_match_openssl() {
    let dir = tmp();
    new_chain(dir.path(), &["--device", "dev-1"]);
    let full = p(dir.path(), "certs/dev-1-full-chain.cert.pem");
    let run = pki(&["inspect", &full]).ok();
    let parts = split(&full, dir.path());
    assert_eq!(parts.len(), 3);
    for part in &parts {
        let f = facts(part);
        let sha256 = fingerprint(part, "sha256");
        assert!(
            run.stdout
                .contains(&format!("SHA-1 thumbprint:  {}\n", f.sha1)),
            "SHA-1 {} not shown:\n{}",
            f.sha1,
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("SHA-256 thumbprint: {sha256}\n")),
            "SHA-256 {sha256} not shown"
        );
        assert!(
            run.stdout
                .contains(&format!("Serial:            {}\n", f.serial))
        );
        assert!(
            run.stdout
                .contains(&format!("Subject:           {}\n", f.subject))
        );
    }
    assert!(run.stdout.contains("Basic constraints: CA:TRUE, pathlen:1"));
    assert!(run.stdout.contains("Basic constraints: CA:FALSE"));
    assert!(run.stdout.contains("Extended usage:    clientAuth"));
    assert!(run.stdout.contains("(self-signed)"));
    assert!(run.stdout.contains("Key:               EC P-256"));
}

#[test]
fn json_parses_with_the_expected_fields() {
    let dir = tmp();
    new_chain(dir.path(), &["--device", "dev-1", "--key", "rsa-2048"]);
    let full = p(dir.path(), "certs/dev-1-full-chain.cert.pem");
    let v = json(&pki(&["inspect", "--json", &full]).ok());
    let list = v.as_array().expect("a JSON array");
    assert_eq!(list.len(), 3);
    let parts = split(&full, dir.path());
    for (e, part) in list.iter().zip(&parts) {
        let f = facts(part);
        assert_eq!(e["sha1Thumbprint"], f.sha1);
        assert_eq!(e["sha256Thumbprint"], fingerprint(part, "sha256"));
        assert_eq!(e["serialNumber"], f.serial);
        assert_eq!(e["subject"], f.subject);
        assert_eq!(e["issuer"], f.issuer);
        assert_eq!(e["version"], 3);
        assert_eq!(e["key"], "RSA 2048");
        for field in [
            "notBefore",
            "notAfter",
            "daysLeft",
            "isCa",
            "keyUsage",
            "extendedKeyUsage",
            "subjectKeyId",
            "selfSigned",
            "commonName",
        ] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
    }
    let (leaf, int, root) = (&list[0], &list[1], &list[2]);
    assert_eq!(leaf["commonName"], "dev-1");
    assert_eq!(leaf["isCa"], false);
    assert_eq!(
        leaf["keyUsage"],
        serde_json::json!(["digitalSignature", "keyEncipherment"])
    );
    assert_eq!(leaf["extendedKeyUsage"], serde_json::json!(["clientAuth"]));
    assert_eq!(leaf["authorityKeyId"], int["subjectKeyId"]);
    assert_eq!(int["isCa"], true);
    assert_eq!(int["pathLen"], 0);
    assert_eq!(root["pathLen"], 1);
    assert_eq!(root["selfSigned"], true);
    assert_eq!(leaf["selfSigned"], false);
    assert_eq!(
        int["keyUsage"],
        serde_json::json!(["digitalSignature", "keyCertSign", "cRLSign"])
    );
    let days = leaf["daysLeft"].as_i64().unwrap();
    assert!((363..=365).contains(&days), "{days}");
}

#[test]
fn der_files_and_several_files_and_stdin() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let root = p(dir.path(), ROOT_CERT);
    let der = dir.path().join("root.cer");
    openssl(&["x509", "-in", &root, "-outform", "DER", "-out", s(&der)]).ok();
    let v = json(
        &pki(&[
            "inspect",
            "--json",
            s(&der),
            &root,
            &p(dir.path(), INT_CERT),
        ])
        .ok(),
    );
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["sha1Thumbprint"], fingerprint(&root, "sha1"));
    assert_eq!(list[0], list[1]);
    // `-` reads standard input.
    let out = Pki::new(["inspect", "--json", "-"])
        .stdin(fs::read(&root).unwrap())
        .run();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.raw_stdout).unwrap();
    assert_eq!(v[0]["sha256Thumbprint"], fingerprint(&root, "sha256"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let text = dir.path().join("notes.txt");
    fs::write(&text, "just some text, no PEM here\n").unwrap();
    let empty = dir.path().join("empty.pem");
    fs::write(&empty, "").unwrap();
    let garbage = dir.path().join("garbage.cer");
    fs::write(&garbage, [0x30u8, 0x82, 0x01, 0x00, 0xde, 0xad]).unwrap();
    let bad_pem = dir.path().join("bad.pem");
    fs::write(
        &bad_pem,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let key = p(dir.path(), ROOT_KEY);
    let missing = p(dir.path(), "missing.pem");
    let before = snapshot(dir.path());
    for file in [
        s(&text),
        s(&empty),
        s(&garbage),
        s(&bad_pem),
        key.as_str(),
        missing.as_str(),
        s(dir.path()),
    ] {
        let line = pki(&["inspect", file]).bad_input();
        assert!(
            line.contains(&*Path::new(file).file_name().unwrap().to_string_lossy()),
            "the message should name the file: {line}"
        );
        pki(&["inspect", "--json", file]).bad_input();
        pki(&["inspect", "--chain", file]).bad_input();
    }
    // A key file: says it holds no certificate.
    let line = pki(&["inspect", &key]).bad_input();
    assert!(line.contains("no certificate"), "{line}");
    // No file at all: clap usage error.
    pki(&["inspect"]).code(2);
    assert_eq!(snapshot(dir.path()), before);
}

/// Runs `pki inspect --chain` and expects a failure explained in DPS terms.
#[track_caller]
fn chain_fails(args: &[&str], expect: &[&str]) -> String {
    let mut all = vec!["inspect", "--chain"];
    all.extend_from_slice(args);
    let run = pki(&all).code(1);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    for e in expect {
        assert!(
            run.stdout.contains(e),
            "expected {e:?} in the explanation:\n{}",
            run.stdout
        );
    }
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].starts_with("pki: error: "));
    // --json: every check, the failed ones with a problem.
    let mut all = vec!["inspect", "--json", "--chain"];
    all.extend_from_slice(args);
    let run = pki(&all).code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let failed: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|c| c["problem"].is_string()));
    run.stdout
}

#[test]
fn chain_check_passes_for_a_good_full_chain() {
    let dir = tmp();
    new_chain(dir.path(), &["--intermediates", "2"]);
    let full = p(dir.path(), "certs/device-0001-full-chain.cert.pem");
    let root = p(dir.path(), ROOT_CERT);
    let run = pki(&["inspect", "--chain", &full]).ok();
    assert!(
        run.stdout.contains("DPS will accept this chain"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("FAIL"));
    pki(&["inspect", "--chain", &full, "--root", &root]).ok();
    let v = json(&pki(&["inspect", "--chain", &full, "--json"]).ok());
    assert!(v.as_array().unwrap().iter().all(|c| c["ok"] == true));
    // Leaf + intermediates only, with --root: the last link is checked against it.
    let parts = split(&full, dir.path());
    let no_root = dir.path().join("no-root.pem");
    fs::write(
        &no_root,
        read(&parts[0]) + &read(&parts[1]) + &read(&parts[2]),
    )
    .unwrap();
    pki(&["inspect", "--chain", s(&no_root), "--root", &root]).ok();
    // … and without --root it says the chain stops short.
    chain_fails(&[s(&no_root)], &["without a root", "--root"]);
}

#[test]
fn chain_check_fails_for_wrong_order() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    let parts = split(
        &p(dir.path(), "certs/device-0001-full-chain.cert.pem"),
        dir.path(),
    );
    // Leaf, root, intermediate.
    let swapped = dir.path().join("swapped.pem");
    fs::write(
        &swapped,
        read(&parts[0]) + &read(&parts[2]) + &read(&parts[1]),
    )
    .unwrap();
    chain_fails(
        &[s(&swapped)],
        &["out of order", "leaf → intermediates → root"],
    );
    // Root first (reversed): the first certificate is a CA.
    let reversed = dir.path().join("reversed.pem");
    fs::write(
        &reversed,
        read(&parts[2]) + &read(&parts[1]) + &read(&parts[0]),
    )
    .unwrap();
    chain_fails(&[s(&reversed)], &["first certificate is a CA", "DPS"]);
}

#[test]
fn chain_check_fails_for_a_leaf_from_another_ca() {
    let ours = tmp();
    let theirs = tmp();
    new_chain(ours.path(), &[]);
    new_chain(theirs.path(), &[]);
    // Same CNs, different keys.
    let full = p(theirs.path(), "certs/device-0001-full-chain.cert.pem");
    let root = p(ours.path(), ROOT_CERT);
    chain_fails(&[&full, "--root", &root], &["another CA", "401002"]);
    // Their leaf glued onto our intermediate and root: signature mismatch.
    let mixed = ours.path().join("mixed.pem");
    fs::write(
        &mixed,
        read(&p(theirs.path(), "certs/device-0001.cert.pem")) + &read(&p(ours.path(), CHAIN_CERT)),
    )
    .unwrap();
    chain_fails(&[s(&mixed)], &["does not verify", "regenerate"]);
}

#[test]
fn chain_check_fails_for_a_ca_as_the_leaf() {
    let dir = tmp();
    new_chain(dir.path(), &[]);
    chain_fails(
        &[&p(dir.path(), CHAIN_CERT)],
        &[
            "first certificate is a CA",
            "put the device certificate first",
        ],
    );
}

#[test]
fn chain_check_fails_for_a_missing_intermediate() {
    let dir = tmp();
    new_chain(dir.path(), &["--intermediates", "2"]);
    let parts = split(
        &p(dir.path(), "certs/device-0001-full-chain.cert.pem"),
        dir.path(),
    );
    assert_eq!(parts.len(), 4);
    // Leaf, intermediate 1 (skipping intermediate 2), root.
    let gap = dir.path().join("gap.pem");
    fs::write(&gap, read(&parts[0]) + &read(&parts[2]) + &read(&parts[3])).unwrap();
    chain_fails(&[s(&gap)], &["incomplete"]);
    // Just the leaf and the root.
    let short = dir.path().join("short.pem");
    fs::write(&short, read(&parts[0]) + &read(&parts[3])).unwrap();
    chain_fails(&[s(&short)], &["incomplete"]);
    // Just the leaf, checked against the root: the intermediates are missing.
    chain_fails(
        &[&parts[0], "--root", &p(dir.path(), ROOT_CERT)],
        &["missing between them"],
    );
}
