//! `pki emulator --print-env sh|powershell|dotenv`: the block, `eval`ed in
//! bash with nothing else set, is all the official Node SDKs need to enroll a
//! group and register a device against the emulator (on 127.0.0.1:443, where
//! the Node SDKs dial); with it Python (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`)
//! and Java (`JAVA_TOOL_OPTIONS` trust store) trust the emulator too. The
//! dotenv form reads back through Node's own `--env-file` parser with the
//! same values; the start-up text carries the same block.
//!
//! Needs bash, Node.js (PKI_SKIP_NODE_TESTS=1 skips the Node parts, saying
//! so), python3 with requests, and java; a missing one fails the test naming it.

mod common;
#[path = "emulator_support/mod.rs"]
mod emulator_support;
mod node_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use emulator_support::Emulator;
use serde_json::Value;

/// The variables a block may set; removed from every child's environment so
/// only the block provides them.
const BLOCK_VARS: [&str; 10] = [
    "DPS_CONNECTION_STRING",
    "PROVISIONING_HOST",
    "PROVISIONING_IDSCOPE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "JAVA_TOOL_OPTIONS",
    "PROVISIONING_REGISTRATION_ID",
    "X509_CERT_FILE",
    "X509_KEY_FILE",
];

/// Runs `bash -c SCRIPT` with `$PKI` set to the binary, in `dir`, without
/// any of the block's variables inherited.
fn bash_in(dir: &Path, script: &str) -> Run {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).current_dir(dir);
    c.env("PKI", pki_bin())
        .env("NODE_DIR", node_support::node_dir())
        .env(
            "JAVA_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java"),
        );
    for v in BLOCK_VARS {
        c.env_remove(v);
    }
    c.env_remove("NODE_OPTIONS").env_remove("BASH_ENV");
    let out = c.output().expect("this test needs bash on PATH");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
    }
}

fn require(tool: &str, probe: &[&str]) {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs `{tool}` on PATH ({tool} {})",
        probe.join(" ")
    );
}

/// `NAME=value` pairs printed by `env` after the block was applied.
fn env_of(run: &Run) -> BTreeMap<String, String> {
    run.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| BLOCK_VARS.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn sourced_sh_block_is_all_the_node_sdk_python_and_java_need() {
    if !node_support::ensure_node_modules() {
        return;
    }
    require("python3", &["-c", "import requests"]);
    require("java", &["-version"]);
    let dir = tmp();
    let work = dir.path();
    pki_in(
        work,
        &["chain", "new", "-q", "--no-pfx", "--device", "env-device-1"],
    )
    .ok();
    let emu = Emulator::start_on(&work.join("data"), "127.0.0.1:443", &["--in-memory"]);
    assert_eq!(emu.host(), "localhost");

    let script = r#"
set -eu
eval "$("$PKI" emulator --print-env sh --data data --listen 127.0.0.1:443 --device env-device-1)"
node "$NODE_DIR/sample_env.js"
python3 -c 'import os, requests
r = requests.get("https://" + os.environ["PROVISIONING_HOST"] + "/enrollmentGroups/env-group?api-version=2021-10-01")
print("python-requests", r.status_code)'
python3 -c 'import os, urllib.request, urllib.error
try:
    urllib.request.urlopen("https://" + os.environ["PROVISIONING_HOST"] + "/")
except urllib.error.HTTPError as e:
    print("python-urllib", e.code)'
java "$JAVA_DIR/TlsProbe.java" "https://$PROVISIONING_HOST/" 2>/dev/null
"#;
    let run = bash_in(work, script);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let json_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from sample_env.js:\n{}", run.stdout));
    let v: Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["result"]["registrationId"], "env-device-1", "{v}");
    assert_eq!(v["result"]["status"], "assigned", "{v}");
    // TLS verified; the emulator then refuses the unauthenticated calls (401).
    assert!(run.stdout.contains("python-requests 401"), "{}", run.stdout);
    assert!(run.stdout.contains("python-urllib 40"), "{}", run.stdout);
    assert!(run.stdout.contains("status 40"), "java: {}", run.stdout);
    assert!(!run.stdout.contains("tls-error"), "{}", run.stdout);
    drop(emu);
}

#[test]
fn every_format_sets_the_same_values_and_the_startup_text_has_the_block() {
    if !node_support::ensure_node_modules() {
        return;
    }
    let dir = tmp();
    let work = dir.path();
    pki_in(
        work,
        &["chain", "new", "-q", "--no-pfx", "--device", "dev-2"],
    )
    .ok();

    // Before the emulator ever ran: one line, exit 2.
    let line = pki_in(work, &["emulator", "--print-env", "sh", "--data", "data"]).bad_input();
    assert!(line.contains("start `pki emulator --data data`"), "{line}");

    // The start-up text (not --json) prints the sh block.
    let mut child = Command::new(pki_bin())
        .current_dir(work)
        .args([
            "emulator",
            "--in-memory",
            "--quiet",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "data",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pki emulator");
    let mut startup = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    while !startup.contains("Press Ctrl-C") {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 {
            break;
        }
        startup.push_str(&l);
    }
    let _ = child.kill();
    let _ = child.wait();
    let port = startup
        .lines()
        .find_map(|l| l.strip_prefix("pki emulator listening on https://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{startup}"))
        .trim()
        .to_string();
    let listen = format!("127.0.0.1:{port}");
    let block_start = startup
        .find("# pki emulator at")
        .expect("block in start-up text");
    let startup_block: String = startup[block_start..]
        .lines()
        .take_while(|l| l.starts_with('#') || l.starts_with("export "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(startup_block.contains("local test key"), "{startup}");

    let print = |format: &str| {
        pki_in(
            work,
            &[
                "emulator",
                "--print-env",
                format,
                "--data",
                "data",
                "--listen",
                &listen,
                "--device",
                "dev-2",
            ],
        )
        .ok()
        .stdout
    };
    let sh = print("sh");
    let without_device: String = sh
        .lines()
        .take_while(|l| !l.contains("the device"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        without_device, startup_block,
        "start-up block differs from --print-env sh"
    );

    std::fs::write(work.join("block.sh"), &sh).unwrap();
    std::fs::write(work.join("block.env"), print("dotenv")).unwrap();
    let from_sh = env_of(&bash_in(work, "set -eu; bash -n block.sh; . ./block.sh; env").ok());
    let from_dotenv = env_of(&bash_in(work, "node --env-file=block.env -e 'for (const [k, v] of Object.entries(process.env)) console.log(k + \"=\" + v)'").ok());
    assert_eq!(from_sh.len(), BLOCK_VARS.len(), "{from_sh:?}");
    assert_eq!(from_sh, from_dotenv);
    assert_eq!(from_sh["PROVISIONING_HOST"], format!("localhost:{port}"));
    assert_eq!(from_sh["PROVISIONING_REGISTRATION_ID"], "dev-2");
    let ca = &from_sh["NODE_EXTRA_CA_CERTS"];
    assert!(
        ca.ends_with("/data/ca.pem") && Path::new(ca).is_absolute(),
        "{ca}"
    );
    assert_eq!(&from_sh["SSL_CERT_FILE"], ca);
    assert!(Path::new(&from_sh["X509_CERT_FILE"]).is_file());
    assert!(Path::new(&from_sh["X509_KEY_FILE"]).is_file());

    // PowerShell: one `$env:NAME = '…'` line per variable, values identical.
    let ps = print("powershell");
    let from_ps: BTreeMap<String, String> = ps
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.strip_prefix("$env:").unwrap().split_once(" = ").unwrap();
            let v = v
                .strip_prefix('\'')
                .unwrap()
                .strip_suffix('\'')
                .unwrap()
                .replace("''", "'");
            (k.to_string(), v)
        })
        .collect();
    assert_eq!(from_ps, from_sh);

    // The Java trust store holds the emulator's CA as a trusted entry (keytool).
    let store = from_sh["JAVA_TOOL_OPTIONS"]
        .split_whitespace()
        .find_map(|o| o.strip_prefix("-Djavax.net.ssl.trustStore="))
        .unwrap()
        .to_string();
    let out = Command::new("keytool")
        .args([
            "-list",
            "-keystore",
            &store,
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
        ])
        .output()
        .expect("this test needs keytool (from a JDK) on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("trustedCertEntry"), "{text}");

    // Bad input: port 0, an unknown device, an unknown format.
    let line = pki_in(
        work,
        &[
            "emulator",
            "--print-env",
            "sh",
            "--data",
            "data",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .bad_input();
    assert!(line.contains("port 0"), "{line}");
    let line = pki_in(
        work,
        &[
            "emulator",
            "--print-env",
            "sh",
            "--data",
            "data",
            "--listen",
            &listen,
            "--device",
            "nope",
        ],
    )
    .bad_input();
    assert!(line.contains("nope-full-chain.cert.pem"), "{line}");
    let line = pki_in(work, &["emulator", "--print-env", "csh", "--data", "data"]).bad_input();
    assert!(line.contains("dotenv, powershell, sh"), "{line}");
}
