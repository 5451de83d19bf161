//! Validity windows (issue 11): `--not-before`/`--not-after` (RFC 3339 or
//! offsets), `--expired`, `--not-yet-valid`, `--epoch`, and the issuer rules
//! (`--allow-outliving-issuer`, `--allow-expired-issuer`) on every issuing
//! command, checked with `openssl verify` / `openssl x509 -dates`.

use std::path::Path;

use crate::support::*;

fn chain(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "chain",
        "new",
        "--out",
        s(dir),
        "-q",
        "--no-pfx",
        "--devices",
        "0",
    ];
    args.extend_from_slice(extra);
    pki(&args).ok();
}

/// `openssl verify` of a device's leaf against the directory's root and
/// intermediate, optionally at a given Unix time.
fn verify(dir: &Path, id: &str, attime: Option<&str>) -> Run {
    let root = p(dir, ROOT_CERT);
    let int = p(dir, INT_CERT);
    let leaf = p(dir, &format!("certs/{id}.cert.pem"));
    let mut args = vec!["verify", "-CAfile", &root, "-untrusted", &int];
    if let Some(t) = attime {
        args.extend_from_slice(&["-attime", t]);
    }
    args.push(&leaf);
    openssl(&args)
}

fn unix(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
        .to_string()
}

#[test]
fn expired_and_not_yet_valid_devices_fail_openssl_verify_for_the_right_reason() {
    let dir = tmp();
    chain(dir.path(), &[]);
    let ca = s(dir.path());
    pki(&["device", "new", "--ca-dir", ca, "--expired", "old-1", "-q"]).ok();
    pki(&[
        "device",
        "new",
        "--ca-dir",
        ca,
        "--not-yet-valid",
        "new-1",
        "-q",
    ])
    .ok();
    pki(&["device", "new", "--ca-dir", ca, "fresh-1", "-q"]).ok();
    let out = verify(dir.path(), "old-1", None);
    assert!(
        out.stdout.contains("certificate has expired")
            || out.stderr.contains("certificate has expired"),
        "{out:?}"
    );
    let out = verify(dir.path(), "new-1", None);
    assert!(
        out.stdout.contains("not yet valid") || out.stderr.contains("not yet valid"),
        "{out:?}"
    );
    verify(dir.path(), "fresh-1", None).ok();
}

#[test]
fn an_explicit_window_is_what_openssl_reads_and_verifies_inside_it() {
    let dir = tmp();
    // CAs made "at" 2025-12-01, so the 2026 window lies inside them.
    chain(dir.path(), &["--epoch", "2025-12-01T00:00:00Z"]);
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(dir.path()),
        "--not-before",
        "2026-01-01T00:00:00Z",
        "--not-after",
        "2026-02-01T00:00:00Z",
        "win-1",
        "-q",
    ])
    .ok();
    let cert = p(dir.path(), "certs/win-1.cert.pem");
    assert_eq!(x509_field(&cert, "startdate"), "Jan  1 00:00:00 2026 GMT");
    assert_eq!(x509_field(&cert, "enddate"), "Feb  1 00:00:00 2026 GMT");
    verify(dir.path(), "win-1", Some(&unix("2026-01-15T00:00:00Z"))).ok();
    let after = verify(dir.path(), "win-1", Some(&unix("2026-03-01T00:00:00Z")));
    assert_ne!(after.code, Some(0), "{after:?}");
    // The manifest records the same window.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p(dir.path(), MANIFEST)).unwrap()).unwrap();
    let e = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commonName"] == "win-1")
        .unwrap();
    assert_eq!(e["notBefore"], "2026-01-01T00:00:00Z");
    assert_eq!(e["notAfter"], "2026-02-01T00:00:00Z");
}

#[test]
fn offsets_are_relative_to_the_epoch() {
    let dir = tmp();
    chain(dir.path(), &["--epoch", "2026-01-01T00:00:00Z"]);
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(dir.path()),
        "--epoch",
        "2026-01-01T00:00:00Z",
        "--not-before",
        "-1d",
        "--not-after",
        "+10m",
        "off-1",
        "-q",
    ])
    .ok();
    let cert = p(dir.path(), "certs/off-1.cert.pem");
    // The root starts no later than the device (the chain covers it).
    assert_eq!(x509_field(&cert, "startdate"), "Dec 31 00:00:00 2025 GMT");
    assert_eq!(x509_field(&cert, "enddate"), "Jan  1 00:10:00 2026 GMT");
}

#[test]
fn bad_windows_are_refused_with_one_line_and_nothing_written() {
    let dir = tmp();
    chain(dir.path(), &[]);
    let ca = s(dir.path());
    for (args, needle) in [
        (vec!["--not-before", "+2d", "--not-after", "+1d"], "ends"),
        (vec!["--not-after", "tomorrow"], "RFC 3339"),
        (vec!["--not-before", "10"], "offset"),
        (vec!["--expired", "--days", "3"], "--days"),
    ] {
        let mut a = vec!["device", "new", "--ca-dir", ca, "bad-1"];
        a.extend_from_slice(&args);
        let line = pki(&a).bad_input();
        assert!(line.contains(needle), "{args:?}: {line}");
        assert!(!dir.path().join("certs/bad-1.cert.pem").exists());
        assert!(!dir.path().join("private/bad-1.key.pem").exists());
    }
}

#[test]
fn an_expired_issuer_refuses_unless_allowed_and_says_so() {
    let dir = tmp();
    chain(
        dir.path(),
        &["--epoch", "2020-01-01T00:00:00Z", "--ca-days", "30"],
    );
    let ca = s(dir.path());
    let line = pki(&["device", "new", "--ca-dir", ca, "late-1"]).bad_input();
    assert!(line.contains("expired at 2020-01-31T00:00:00Z"), "{line}");
    assert!(line.contains("--allow-expired-issuer"), "{line}");
    assert!(!dir.path().join("certs/late-1.cert.pem").exists());
    let run = pki(&[
        "device",
        "new",
        "--ca-dir",
        ca,
        "late-1",
        "--allow-expired-issuer",
        "--allow-outliving-issuer",
    ])
    .ok();
    assert!(run.stderr.contains("expired CA"), "{}", run.stderr);
    assert!(run.stderr.contains("outlives its issuer"), "{}", run.stderr);
}

#[test]
fn a_child_is_cut_to_its_issuer_unless_outliving_is_allowed() {
    let dir = tmp();
    chain(dir.path(), &["--ca-days", "10"]);
    let ca = s(dir.path());
    let run = pki(&[
        "device",
        "new",
        "--ca-dir",
        ca,
        "--not-after",
        "+1y",
        "cut-1",
    ])
    .ok();
    assert!(run.stderr.contains("cut to the issuer"), "{}", run.stderr);
    let int_end = x509_field(&p(dir.path(), INT_CERT), "enddate");
    assert_eq!(
        x509_field(&p(dir.path(), "certs/cut-1.cert.pem"), "enddate"),
        int_end
    );
    let run = pki(&[
        "device",
        "new",
        "--ca-dir",
        ca,
        "--not-after",
        "+1y",
        "long-1",
        "--allow-outliving-issuer",
    ])
    .ok();
    assert!(run.stderr.contains("outlives its issuer"), "{}", run.stderr);
    assert_ne!(
        x509_field(&p(dir.path(), "certs/long-1.cert.pem"), "enddate"),
        int_end
    );
}

#[test]
fn chain_new_verify_code_and_csr_signing_take_the_same_flags() {
    let dir = tmp();
    pki(&[
        "chain",
        "new",
        "--out",
        s(dir.path()),
        "-q",
        "--no-pfx",
        "--device",
        "exp-0",
        "--expired",
    ])
    .ok();
    let out = verify(dir.path(), "exp-0", None);
    assert!(
        format!("{out:?}").contains("certificate has expired"),
        "{out:?}"
    );
    // The CAs cover the expired device's window, so it verifies back then.
    let two_days_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(36))
        .unix_timestamp()
        .to_string();
    verify(dir.path(), "exp-0", Some(&two_days_ago)).ok();

    pki(&[
        "verify-code",
        "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        "--ca-dir",
        s(dir.path()),
        "--not-yet-valid",
    ])
    .ok();
    let v = p(dir.path(), "certs/verification-code.cert.pem");
    let start = openssl(&["x509", "-in", &v, "-noout", "-checkend", "0"]);
    assert_eq!(start.code, Some(0), "valid until later");
    let text = x509_field(&v, "startdate");
    assert!(!text.is_empty());

    let key = p(dir.path(), "csr.key");
    let csr = p(dir.path(), "csr-1.csr");
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
        "/CN=csr-1",
        "-out",
        &csr,
    ])
    .ok();
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(dir.path()),
        "--csr",
        &csr,
        "--expired",
        "-q",
    ])
    .ok();
    let out = verify(dir.path(), "csr-1", None);
    assert!(
        format!("{out:?}").contains("certificate has expired"),
        "{out:?}"
    );
}
