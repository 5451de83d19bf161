//! `pki emulator --print-env sh|powershell|dotenv`: the block, `eval`ed in
//! bash with nothing else set, is all the official Node SDKs need to enroll a
//! group and register a device against the emulator (on 127.0.0.1:443, where
//! the Node SDKs dial); with it Python (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`)
//! and Java (`JAVA_TOOL_OPTIONS` trust store) trust the emulator too. The
//! dotenv form reads back through Node's own `--env-file` parser with the
//! same values; the start-up text carries the same block.
//!
//! Needs bash, Node.js 20 or later, python3 with requests, java and keytool;
//! a missing one fails the test naming it, or skips it visibly when
//! PKI_TEST_SKIP names it. The Node SDK flow binds 127.0.0.1:443 (and the
//! emulator's MQTT 8883): it holds the fixed-port lock, and without the
//! right to bind 443 it prints `SKIPPED:` unless PKI_TEST_NO_SKIP=1.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::{
    Emulator, Run, StartupText, can_bind_443, ensure_node_modules, fixed_ports_async, node_dir,
    pki_bin, pki_in, require_tools, run_tool, skip_unless, tmp,
};
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
/// any of the block's variables inherited. Call `require_tool("bash", …)` first.
fn bash_in(dir: &Path, script: &str) -> Run {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).current_dir(dir);
    c.env("PKI", pki_bin()).env("NODE_DIR", node_dir()).env(
        "JAVA_DIR",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java"),
    );
    for v in BLOCK_VARS {
        c.env_remove(v);
    }
    // The emulator's own variables must not reach the `pki` the script runs.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PKI_") {
            c.env_remove(&k);
        }
    }
    c.env_remove("NODE_OPTIONS").env_remove("BASH_ENV");
    run_tool(&mut c, "bash")
}

/// python3 can `import requests` (Debian's python3-requests).
fn require_python_requests() {
    let out = run_tool(
        Command::new("python3").args(["-c", "import requests"]),
        "python3",
    );
    assert!(
        out.status.success(),
        "this test needs python3's `requests` (apt-get install python3-requests): {}",
        out.stderr
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
    const TEST: &str = "sourced_sh_block_is_all_the_node_sdk_python_and_java_need";
    if !ensure_node_modules(TEST) || !require_tools(&["bash", "python3", "java"], TEST) {
        return;
    }
    require_python_requests();
    if !skip_unless(
        can_bind_443(),
        "port-443",
        TEST,
        "binding 127.0.0.1:443 needs root or CAP_NET_BIND_SERVICE",
    ) {
        return;
    }
    let dir = tmp();
    let work = dir.path();
    pki_in(
        work,
        &["chain", "new", "-q", "--no-pfx", "--device", "env-device-1"],
    )
    .ok();
    let _ports = fixed_ports_async().await;
    let emu = Emulator::start_on_443(&work.join("data"), &["--in-memory"]);
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
    const TEST: &str = "every_format_sets_the_same_values_and_the_startup_text_has_the_block";
    if !ensure_node_modules(TEST) || !require_tools(&["bash", "keytool"], TEST) {
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
    let startup = StartupText::start(work, &["--quiet", "--data", "data"]);
    let startup = {
        let text = startup.text.clone();
        drop(startup);
        text
    };
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
    // `truststore.p12` beside `ca.pem` (the one the start-up text and --json name).
    assert_eq!(
        Path::new(&store),
        Path::new(ca).with_file_name("truststore.p12"),
        "{}",
        from_sh["JAVA_TOOL_OPTIONS"]
    );
    assert!(
        from_sh["JAVA_TOOL_OPTIONS"].contains("-Djavax.net.ssl.trustStorePassword=changeit"),
        "{}",
        from_sh["JAVA_TOOL_OPTIONS"]
    );
    let out = run_tool(
        Command::new("keytool").args([
            "-list",
            "-keystore",
            &store,
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
        ]),
        "keytool",
    );
    let text = &out.stdout;
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
