//! `pki inspect --expiring-within` (issue 11): the CI guard over a directory
//! of fresh, expiring and expired certificates; exit codes, listing, JSON.

use crate::support::*;

#[test]
fn expiring_within_lists_expired_and_expiring_and_exits_1() {
    let dir = tmp();
    let ca = s(dir.path());
    pki(&[
        "chain",
        "new",
        "--out",
        ca,
        "-q",
        "--no-pfx",
        "--devices",
        "0",
    ])
    .ok();
    pki(&["device", "new", "--ca-dir", ca, "--expired", "gone-1", "-q"]).ok();
    pki(&[
        "device", "new", "--ca-dir", ca, "--days", "10", "soon-1", "-q",
    ])
    .ok();
    pki(&["device", "new", "--ca-dir", ca, "fresh-1", "-q"]).ok();
    // The expired one is really expired, the soon one really ends in 10 days.
    assert_ne!(
        openssl(&[
            "x509",
            "-in",
            &p(dir.path(), "certs/gone-1.cert.pem"),
            "-noout",
            "-checkend",
            "0"
        ])
        .code,
        Some(0)
    );
    let soon = p(dir.path(), "certs/soon-1.cert.pem");
    assert_ne!(
        openssl(&[
            "x509",
            "-in",
            &soon,
            "-noout",
            "-checkend",
            &(11 * 86400).to_string()
        ])
        .code,
        Some(0)
    );
    openssl(&[
        "x509",
        "-in",
        &soon,
        "-noout",
        "-checkend",
        &(9 * 86400).to_string(),
    ])
    .ok();

    let run = pki(&["inspect", "--expiring-within", "30d", ca]).code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("EXPIRED") && l.contains("CN=gone-1") && l.contains("-1d")),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("expiring") && l.contains("CN=soon-1") && l.contains("10d")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("fresh-1"), "{}", run.stdout);
    assert!(!run.stdout.contains("PRIVATE KEY"));
    assert!(
        run.stderr.contains("expired or expiring within 30d"),
        "{}",
        run.stderr
    );

    let j = pki(&["inspect", "--expiring-within", "30d", "--json", ca]).code(1);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    // Leaf and full-chain file for each of the two.
    assert_eq!(f.len(), 4, "{v:#}");
    assert!(
        f.iter()
            .any(|x| x["expired"] == true && x["subject"] == "CN=gone-1")
    );
    assert!(
        f.iter()
            .any(|x| x["daysLeft"] == 10 && x["subject"] == "CN=soon-1")
    );

    // Fresh files alone, or a shorter window: nothing listed, exit 0.
    pki(&[
        "inspect",
        "--expiring-within",
        "30d",
        &p(dir.path(), "certs/fresh-1.cert.pem"),
    ])
    .ok();
    let gone = p(dir.path(), "certs/gone-1.cert.pem");
    pki(&["inspect", "--expiring-within", "5d", &soon]).ok();
    pki(&["inspect", "--expiring-within", "5d", &gone]).code(1);
    // Against a clock two days back, the expired one was still valid.
    let back = (time::OffsetDateTime::now_utc() - time::Duration::hours(36))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    pki(&["inspect", "--expiring-within", "1h", "--at", &back, &gone]).ok();
}

#[test]
fn expiring_within_refuses_bad_input_with_one_line() {
    let dir = tmp();
    let line = pki(&["inspect", "--expiring-within", "soon", s(dir.path())]).bad_input();
    assert!(line.contains("30d"), "{line}");
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let line = pki(&[
        "inspect",
        "--expiring-within",
        "30d",
        &p(dir.path(), "notes.txt"),
    ])
    .bad_input();
    assert!(line.contains("notes.txt"), "{line}");
    // A directory with no certificates is fine: nothing expires.
    pki(&["inspect", "--expiring-within", "30d", s(dir.path())]).ok();
}
