//! The emulator's status page in a real browser: Debian's headless Chromium
//! driven by playwright-core (tests/node). The page, opened from the ready
//! link in the start-up text, shows a group created through the service API
//! (`pki enroll`), the registration state of an assigned device and a refused
//! registration with the exact reason the emulator gave the device; it never
//! shows a symmetric key; nothing loads from outside the emulator; without
//! the token it is refused with 401. The screenshot is kept as
//! target/tmp/status-page.png.
//!
//! Needs /usr/bin/chromium (`apt-get install chromium`), Node.js with
//! tests/node's packages, bash and the openssl CLI; a missing one fails the
//! test naming it (or skips it visibly when PKI_TEST_SKIP names it).

use std::path::Path;
use std::process::Command;

use crate::support::{
    Pki, StartupText, TestChain, bash, ensure_node_modules, node_dir, require_tools, run_tool, s,
    tmp,
};
use serde_json::Value;

/// base64(SHA-256(SubjectPublicKeyInfo)) of a certificate, by the openssl CLI.
fn spki_sha256(cert: &Path) -> String {
    let out = bash(
        "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64 -A",
        &[s(cert)],
    );
    assert_eq!(out.code, Some(0), "openssl: {}", out.stderr);
    out.stdout.trim().to_string()
}

#[test]
fn status_page_in_chromium_shows_groups_registrations_and_refusals() {
    const TEST: &str = "status_page_in_chromium_shows_groups_registrations_and_refusals";
    // ensure_node_modules installs every package of tests/node, playwright-core too.
    if !ensure_node_modules(TEST) || !require_tools(&["chromium", "bash", "openssl"], TEST) {
        return;
    }
    let dir = tmp();
    let work = dir.path();
    let data = work.join("data");
    let emu = StartupText::start(work, &["--data", s(&data)]);
    let link = emu.field("status page:");
    let cs = emu.field("service connection string:");
    let scope = emu.field("ID scope:");
    let endpoint = emu.field("device endpoint:");
    let host = endpoint.strip_prefix("https://").unwrap().to_string();
    let ca = data.join("ca.pem");
    let ca = s(&ca);
    assert!(link.starts_with(&format!("{endpoint}/?token=")), "{link}");

    let pki_env = |args: &[&str]| {
        Pki::new(args)
            .args(["--ca-file", ca])
            .env("DPS_CONNECTION_STRING", &cs)
            .run()
    };

    // A group through the service API, and a symmetric-key group whose keys must stay off the page.
    let chain = TestChain::new("Page");
    let group_cert = work.join("group.pem");
    std::fs::write(&group_cert, &chain.intermediate.cert.pem).unwrap();
    pki_env(&[
        "enroll",
        "page-group",
        "--cert",
        s(&group_cert),
        "--iot-hub",
        "page-hub.azure-devices.net",
    ])
    .ok();
    pki_env(&["enroll", "page-sym-group", "--symmetric-key"]).ok();
    let keys = pki_env(&["enroll", "show", "page-sym-group", "--json", "--show-keys"]).ok();
    let keys: Value = serde_json::from_str(&keys.stdout).unwrap();
    let primary = keys["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();

    // One device assigned, one refused (a device key that is not derived from the group's key).
    let (identity, _) = chain.device("page-dev-ok");
    let id_file = work.join("dev.pem");
    std::fs::write(&id_file, &identity).unwrap();
    let chain_file = work.join("dev-chain.pem");
    let leaf_and_chain: String = identity
        .split_inclusive("-----END PRIVATE KEY-----\n")
        .skip(1)
        .collect();
    std::fs::write(&chain_file, leaf_and_chain).unwrap();
    pki_env(&[
        "register",
        "--id-scope",
        &scope,
        "--host",
        &host,
        "--cert",
        s(&chain_file),
        "--key",
        s(&id_file),
    ])
    .ok();
    let refused = pki_env(&[
        "register",
        "--id-scope",
        &scope,
        "--host",
        &host,
        "--registration-id",
        "page-dev-refused",
        "--symmetric-key",
        "d3JvbmctZGV2aWNlLWtleS0wMTIzNDU2Nzg5",
    ])
    .code(1);

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let spki = spki_sha256(&data.join("server.pem"));
    let no_token = format!("{endpoint}/");
    let profile = work.join("chromium-profile");
    let out = run_tool(
        Command::new("node")
            .arg(node_dir().join("status_page.js"))
            .args([&link, &no_token, &spki, s(&shot), s(&profile)])
            .args([
                "page-group",
                "page-sym-group",
                "page-dev-ok",
                "page-hub.azure-devices.net",
                "page-dev-refused",
                "refused (HTTP 401)",
            ]),
        "node",
    );
    assert_eq!(out.code, Some(0), "node: {}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["noTokenStatus"], 401, "{v:#}");
    assert!(
        !v["noTokenText"].as_str().unwrap().contains("page-group"),
        "{v:#}"
    );
    assert_eq!(v["status"], 200);
    assert!(
        v["csp"].as_str().unwrap().contains("default-src 'none'"),
        "{v:#}"
    );
    let text = v["text"].as_str().unwrap();
    assert!(text.contains(&scope), "{text}");
    assert!(text.contains("X.509: CN=Page Intermediate CA"), "{text}");
    assert!(
        !text.contains(&primary),
        "a symmetric key is on the page:\n{text}"
    );
    assert!(
        !cs.is_empty() && !text.contains(cs.split("SharedAccessKey=").last().unwrap()),
        "the SAS key is on the page"
    );

    // Newest first: the refusal, then the assignment; the reason is the one the device got.
    let rows: Vec<&str> = v["attemptRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("page-dev-refused") && rows[0].contains("refused (HTTP 401)"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("page-dev-ok")
            && rows[1].contains("assigned")
            && rows[1].contains("page-hub.azure-devices.net"),
        "{rows:?}"
    );
    let reason = rows[0].rsplit('\t').next().unwrap().trim();
    assert!(reason.len() > 20, "{rows:?}");
    assert!(
        refused.stderr.contains(reason),
        "the device was told:\n{}\nthe page says:\n{reason}",
        refused.stderr
    );

    // Nothing from outside the emulator.
    for u in v["requests"].as_array().unwrap() {
        assert!(
            u.as_str().unwrap().starts_with(&endpoint),
            "external request: {u}"
        );
    }
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    drop(emu);
}
