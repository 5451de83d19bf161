//! Reproducible fixtures (issue 11): `--seed` with `--epoch` writes
//! byte-identical files twice; another seed gives other keys; the chain
//! verifies at the epoch; RSA and PFX under a seed are refused.

use std::path::Path;

use crate::support::*;

const EPOCH: &str = "2026-01-01T00:00:00Z";

fn seeded(dir: &Path, seed: &str) {
    pki(&[
        "chain",
        "new",
        "--out",
        s(dir),
        "-q",
        "--no-pfx",
        "--devices",
        "2",
        "--seed",
        seed,
        "--epoch",
        EPOCH,
    ])
    .ok();
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["certs", "private"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            out.push(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_seed_and_epoch_write_byte_identical_files_and_another_seed_other_keys() {
    let t = tmp();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    seeded(&a, "s");
    seeded(&b, "s");
    seeded(&c, "other");
    let names = files(&a);
    assert_eq!(names, files(&b));
    assert!(names.len() >= 10, "{names:?}");
    for f in &names {
        let cmp = std::process::Command::new("cmp")
            .arg(a.join(f))
            .arg(b.join(f))
            .status()
            .unwrap();
        assert!(cmp.success(), "{f} differs between two runs");
    }
    for f in names.iter().filter(|f| f.ends_with(".key.pem")) {
        assert_ne!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(c.join(f)).unwrap(),
            "{f}: another seed gave the same key"
        );
    }
    // Different IDs: different keys.
    assert_ne!(
        std::fs::read(a.join("private/device-0001.key.pem")).unwrap(),
        std::fs::read(a.join("private/device-0002.key.pem")).unwrap()
    );
    // openssl verifies the chain at the epoch (plus a minute).
    let at = (time::OffsetDateTime::parse(EPOCH, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
        + 60)
        .to_string();
    openssl(&[
        "verify",
        "-attime",
        &at,
        "-CAfile",
        &p(&a, ROOT_CERT),
        "-untrusted",
        &p(&a, INT_CERT),
        &p(&a, "certs/device-0001.cert.pem"),
    ])
    .ok();
}

#[test]
fn adding_a_device_to_a_seeded_chain_leaves_the_existing_files_alone() {
    let t = tmp();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    seeded(&a, "s");
    seeded(&b, "s");
    let before: Vec<(String, Vec<u8>)> = files(&a)
        .into_iter()
        .filter(|f| !f.ends_with("manifest.json"))
        .map(|f| {
            let d = std::fs::read(a.join(&f)).unwrap();
            (f, d)
        })
        .collect();
    for dir in [&a, &b] {
        pki(&[
            "device",
            "new",
            "--ca-dir",
            s(dir),
            "-q",
            "--no-pfx",
            "--seed",
            "s",
            "--epoch",
            EPOCH,
            "extra-1",
        ])
        .ok();
    }
    for (f, d) in &before {
        assert_eq!(&std::fs::read(a.join(f)).unwrap(), d, "{f} changed");
    }
    for f in ["certs/extra-1.cert.pem", "private/extra-1.key.pem"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn rsa_and_pfx_under_a_seed_are_one_line_and_exit_2_with_nothing_written() {
    let t = tmp();
    let out = t.path().join("rsa");
    let line = pki(&[
        "chain",
        "new",
        "--out",
        s(&out),
        "-q",
        "--no-pfx",
        "--key",
        "rsa-2048",
        "--seed",
        "s",
    ])
    .bad_input();
    assert!(line.contains("RSA"), "{line}");
    assert!(walk(&out).is_empty(), "{:?}", walk(&out));
    let out = t.path().join("pfx");
    let run = pki(&["chain", "new", "--out", s(&out), "-q", "--seed", "s"]).code(2);
    let line = run.stderr.lines().last().unwrap_or_default().to_string();
    assert!(line.contains("--no-pfx"), "{line}");
    let written: Vec<_> = walk(&out);
    assert!(written.is_empty(), "{written:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
