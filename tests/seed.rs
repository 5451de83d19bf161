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
    // chain new: RSA (CA or device key) and PFX, each refused before anything exists.
    for (name, extra) in [
        ("rsa", &["--no-pfx", "--key", "rsa-2048"][..]),
        ("rsa-ca", &["--no-pfx", "--ca-key", "rsa-2048"][..]),
        ("rsa-dev", &["--no-pfx", "--device-key", "rsa-2048"][..]),
        ("pfx", &[][..]),
    ] {
        let out = t.path().join(name);
        let mut args = vec!["chain", "new", "--out", s(&out), "--seed", "s"];
        args.extend_from_slice(extra);
        let run = pki(&args);
        assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        let line = run.bad_input();
        assert!(
            line.contains(if name == "pfx" { "--no-pfx" } else { "RSA" }),
            "{name}: {line}"
        );
        assert!(!out.exists(), "{name}: {:?}", walk(&out));
    }
    // In an existing chain: device new and device renew with PFX, verify-code
    // with RSA: one line, and the directory is exactly as it was.
    let dir = t.path().join("chain");
    seeded(&dir, "s");
    let before = snapshot(&dir);
    for args in [
        &["device", "new", "--ca-dir", s(&dir), "--seed", "s", "d-9"][..],
        &[
            "device",
            "new",
            "--ca-dir",
            s(&dir),
            "--seed",
            "s",
            "--no-pfx",
            "--key",
            "rsa-2048",
            "d-9",
        ][..],
        &[
            "device",
            "renew",
            "--ca-dir",
            s(&dir),
            "--seed",
            "s",
            "device-0001",
        ][..],
        &[
            "verify-code",
            "--ca-dir",
            s(&dir),
            "--seed",
            "s",
            "--key",
            "rsa-2048",
            "ABCDEF",
        ][..],
    ] {
        let run = pki(args);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        run.bad_input();
        assert_eq!(snapshot(&dir), before, "{args:?} changed the directory");
    }
}

/// Every path (files and directories) under `dir` with the files' bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.push((p.clone(), None));
                todo.push(p);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((p, Some(data)));
            }
        }
    }
    out.sort();
    out
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap()
}

#[test]
fn the_manifest_inspect_and_the_summary_say_seeded_keys_are_test_keys() {
    let t = tmp();
    let a = t.path().join("a");
    let run = pki(&[
        "chain",
        "new",
        "--out",
        s(&a),
        "--no-pfx",
        "--seed",
        "s",
        "--epoch",
        EPOCH,
    ])
    .ok();
    // The note once, and the summary says so.
    assert_eq!(run.stderr.matches("TEST keys").count(), 1, "{}", run.stderr);
    assert!(run.stdout.contains("Seeded"), "{}", run.stdout);
    let m = manifest(&a);
    let certs = m["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 3);
    for c in certs {
        assert_eq!(c["seeded"], true, "{c}");
    }
    // A device added without --seed is not seeded: no field at all.
    pki(&[
        "device",
        "new",
        "--ca-dir",
        s(&a),
        "-q",
        "--no-pfx",
        "plain-1",
    ])
    .ok();
    let m = manifest(&a);
    let plain = m["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["commonName"] == "plain-1")
        .unwrap()
        .clone();
    assert!(plain.get("seeded").is_none(), "{plain}");
    // pki inspect says it, in text and JSON; not for the unseeded device.
    let text = pki(&["inspect", &p(&a, ROOT_CERT)]).ok().stdout;
    assert!(
        text.contains("Seeded:") && text.contains("TEST key"),
        "{text}"
    );
    let v = json(&pki(&["inspect", "--json", &p(&a, INT_CERT)]).ok());
    assert_eq!(v[0]["seeded"], true, "{v}");
    let text = pki(&["inspect", &p(&a, "certs/plain-1.cert.pem")])
        .ok()
        .stdout;
    assert!(!text.contains("Seeded"), "{text}");
    // An unseeded chain: the manifest has no "seeded" anywhere, no note, no line.
    let b = t.path().join("b");
    let run = pki(&["chain", "new", "--out", s(&b), "--no-pfx"]).ok();
    assert!(!run.stderr.contains("TEST keys"), "{}", run.stderr);
    assert!(!run.stdout.contains("Seeded"), "{}", run.stdout);
    let raw = std::fs::read_to_string(b.join(MANIFEST)).unwrap();
    assert!(!raw.contains("seeded"), "{raw}");
}

#[test]
fn enroll_warns_once_before_uploading_a_seeded_ca() {
    let t = tmp();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    seeded(&a, "s");
    pki(&["chain", "new", "--out", s(&b), "-q", "--no-pfx"]).ok();
    let run = pki_env(
        &["enroll", "grp-1", "--cert", &p(&a, INT_CERT), "--dry-run"],
        &[],
    )
    .ok();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("pki: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains("seeded"), "{}", warnings[0]);
    assert!(!run.stderr.contains("pki: error"), "{}", run.stderr);
    let body: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(body["enrollmentGroupId"], "grp-1");
    // An unseeded CA: no such warning.
    let run = pki_env(
        &["enroll", "grp-1", "--cert", &p(&b, INT_CERT), "--dry-run"],
        &[],
    )
    .ok();
    assert!(!run.stderr.contains("seeded"), "{}", run.stderr);
}

/// Every file under certs/ and private/ of `a` and `b` is the same (cmp).
fn assert_same_files(a: &Path, b: &Path) -> Vec<String> {
    let names = files(a);
    assert_eq!(names, files(b));
    for f in &names {
        let cmp = std::process::Command::new("cmp")
            .arg(a.join(f))
            .arg(b.join(f))
            .status()
            .unwrap();
        assert!(cmp.success(), "{f} differs between two runs");
    }
    names
}

const LATER: &str = "2026-01-02T00:00:00Z";

#[test]
fn verify_code_ca_roll_and_device_renew_are_reproducible_under_a_seed() {
    let t = tmp();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    seeded(&a, "s");
    seeded(&b, "s");
    let key_before = std::fs::read(a.join("private/device-0001.key.pem")).unwrap();
    for dir in [&a, &b] {
        let ca = s(dir);
        let seed = ["--seed", "s", "--epoch", LATER];
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend_from_slice(&seed);
            pki(&all).ok()
        };
        run(&["verify-code", "--ca-dir", ca, "0123456789ABCDEF"]);
        run(&["ca", "roll", "intermediate", "--ca-dir", ca]);
        run(&[
            "device",
            "renew",
            "--ca-dir",
            ca,
            "--no-pfx",
            "--new-key",
            "ec-p256",
            "device-0001",
        ]);
        run(&["device", "renew", "--ca-dir", ca, "--no-pfx", "device-0002"]);
    }
    let names = assert_same_files(&a, &b);
    assert!(
        names.iter().any(|f| f.contains("verification-code")),
        "{names:?}"
    );
    assert!(names.iter().any(|f| f.contains("previous")), "{names:?}");
    // The new key is a new key, and seeded; the kept one is as before.
    assert_ne!(
        std::fs::read(a.join("private/device-0001.key.pem")).unwrap(),
        key_before
    );
    let m = manifest(&a);
    for c in m["certificates"].as_array().unwrap() {
        assert_eq!(c["seeded"], true, "{c}");
    }
    // The renewed device chains to the new intermediate at the later epoch.
    let at = (time::OffsetDateTime::parse(LATER, &time::format_description::well_known::Rfc3339)
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
    // A root roll, too.
    for dir in [&a, &b] {
        pki(&[
            "ca",
            "roll",
            "root",
            "--ca-dir",
            s(dir),
            "--force",
            "--seed",
            "s",
            "--epoch",
            LATER,
        ])
        .ok();
    }
    assert_same_files(&a, &b);
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

#[test]
fn the_readme_reproducible_fixtures_commands_work_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Reproducible fixtures\n")
        .nth(1)
        .expect("README has a Reproducible fixtures section");
    let section = section.split("\n## ").next().unwrap();
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block in the section");
    assert!(script.contains("pki chain new"), "{script}");
    let t = tmp();
    let bin = Path::new(pki_bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(t.path())
        .env("PATH", path)
        .env_remove("PKI_SEED")
        .env_remove("PKI_EPOCH")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("byte-identical"), "{stdout}");
    assert!(stdout.contains(": OK"), "{stdout}");
    assert!(
        t.path().join("fixtures-a/certs/sensor-1.cert.pem").exists(),
        "{stderr}"
    );
}
