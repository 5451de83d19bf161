//! DPS certificate issuance end to end with the built binary (issue 10):
//! `pki enroll … --certificate-policy` sets the triple, `pki register --csr
//! auto` gets an issued chain from `pki emulator` and saves it certGen-style,
//! openssl verifies it to the policy's exported root, and a second
//! `pki register` with the issued certificate is assigned to the same group.

use std::path::Path;

use crate::support::*;

fn register(emu: &Emulator, cert: &Path, key: &Path, extra: &[&str]) -> Run {
    let (scope, host) = (emu.id_scope(), emu.host());
    let mut args = vec![
        "register",
        "--id-scope",
        &scope,
        "--cert",
        s(cert),
        "--key",
        s(key),
        "--host",
        &host,
    ];
    args.extend_from_slice(extra);
    emu.pki(&args)
}

#[test]
fn register_csr_auto_then_register_with_the_issued_certificate() {
    let emu =
        Emulator::start_in_temp(&["--certificate-policy", "factory-ns/factory-ca/devices:14"]);
    let dir = emu.scratch().join("ca");
    let chain = TestChain::make(&dir, "Line7", &["device-01"]);
    let run = emu
        .pki(&[
            "enroll",
            "line-7",
            "--cert",
            s(&chain.intermediate_cert()),
            "--certificate-policy",
            "factory-ns/factory-ca/devices",
        ])
        .ok();
    assert!(run.stdout.contains("line-7"), "{}", run.stdout);
    let shown = emu.pki(&["enroll", "show", "line-7", "--json"]).ok();
    let v = json(&shown);
    assert_eq!(v["namespaceName"], "factory-ns", "{v}");
    assert_eq!(v["certificateAuthorityName"], "factory-ca", "{v}");
    assert_eq!(v["certificatePolicyName"], "devices", "{v}");
    // The three-flag form and a malformed triple.
    emu.pki(&[
        "enroll",
        "line-8",
        "--cert",
        s(&chain.intermediate_cert()),
        "--namespace",
        "factory-ns",
        "--certificate-authority",
        "factory-ca",
        "--policy",
        "devices",
    ])
    .ok();
    let line = emu
        .pki(&[
            "enroll",
            "line-9",
            "--cert",
            s(&chain.intermediate_cert()),
            "--certificate-policy",
            "a/b",
        ])
        .bad_input();
    assert!(line.contains("NAMESPACE/CA/POLICY"), "{line}");

    let out = emu.scratch().join("issued");
    let run = register(
        &emu,
        &chain.device_chain("device-01"),
        &chain.device_key("device-01"),
        &["--csr", "auto", "--out", s(&out)],
    )
    .ok();
    let cert = out.join("certs/device-01.issued.cert.pem");
    let full = out.join("certs/device-01.issued-full-chain.cert.pem");
    let key = out.join("private/device-01.issued.key.pem");
    for f in [&cert, &full, &key] {
        assert!(
            run.stdout.contains(s(f)),
            "{} not printed:\n{}",
            f.display(),
            run.stdout
        );
    }
    assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    assert_eq!(mode(s(&key)), 0o600);
    let root = emu.info["certificatePolicies"][0]["rootFile"]
        .as_str()
        .unwrap()
        .to_string();
    assert_verifies(&root, Some(s(&full)), s(&cert));
    assert_eq!(pem_blocks(s(&full)).len(), 3);
    assert_eq!(
        openssl(&["x509", "-in", s(&cert), "-noout", "-pubkey"])
            .ok()
            .stdout,
        openssl(&["pkey", "-in", s(&key), "-pubout"]).ok().stdout
    );
    assert!(x509_text(s(&cert)).contains("Subject: CN = device-01"));
    // Existing issued files are not replaced without --force (before anything is sent).
    let line = register(
        &emu,
        &chain.device_chain("device-01"),
        &chain.device_key("device-01"),
        &["--csr", "auto", "--out", s(&out)],
    )
    .bad_input();
    assert!(line.contains("--force"), "{line}");

    // The issued certificate is the device's credential now.
    let run = register(&emu, &full, &key, &[]).ok();
    assert!(run.stdout.contains("assigned"), "{}", run.stdout);
    assert!(
        run.stdout.contains("enrollment group: line-7"),
        "{}",
        run.stdout
    );

    // --csr FILE: a `pki csr new` CSR whose CN is not the registration ID is refused up front.
    let csrs = emu.scratch().join("csrs");
    pki(&["csr", "new", "someone-else", "--out", s(&csrs)]).ok();
    let line = register(
        &emu,
        &chain.device_chain("device-01"),
        &chain.device_key("device-01"),
        &[
            "--csr",
            &p(&csrs, "csr/someone-else.csr.pem"),
            "--out",
            s(&out),
            "--force",
        ],
    )
    .bad_input();
    assert!(line.contains("not the registration ID"), "{line}");
}

/// With the emulator clock moved past a policy's issuing CA, a CSR
/// registration is refused naming the expired CA, the clock and the fix,
/// not the CLI's `pki ca roll` advice.
#[test]
fn issuance_after_the_policy_ca_expired_names_the_clock_and_the_fix() {
    let emu =
        Emulator::start_in_temp(&["--certificate-policy", "factory-ns/factory-ca/devices:14"]);
    let dir = emu.scratch().join("ca");
    // A fleet that outlives the policy's ten-year CAs.
    Pki::new([
        "chain",
        "new",
        "--out",
        s(&dir),
        "--devices",
        "1",
        "--ca-days",
        "7300",
        "--days",
        "7000",
        "--no-pfx",
    ])
    .run()
    .ok();
    emu.pki(&[
        "enroll",
        "long-line",
        "--cert",
        s(&dir.join("certs/azure-iot-test-only.intermediate.cert.pem")),
        "--certificate-policy",
        "factory-ns/factory-ca/devices",
    ])
    .ok();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = emu
            .client(None)
            .put(emu.url("/emulator/clock"))
            .header("authorization", emu.sas())
            .header("content-type", "application/json")
            .body(serde_json::json!({"offset": "+11y"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    });
    let out = emu.scratch().join("issued");
    let run = register(
        &emu,
        &dir.join("certs/device-0001-full-chain.cert.pem"),
        &dir.join("private/device-0001.key.pem"),
        &["--csr", "auto", "--out", s(&out), "--attempts", "1"],
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let line = run.stderr.trim();
    for needle in [
        "factory-ns/factory-ca/devices",
        "issuing CA expired at",
        "emulator clock",
        "PUT /emulator/clock",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    assert!(!line.contains("pki ca roll"), "{line}");
    assert!(!out.join("certs/device-0001.issued.cert.pem").exists());
}
