//! The official Azure IoT DPS Java SDKs against `pki emulator`: the DPS
//! how-to's Java service sample (tests/java, `ServiceEnrollmentGroupSample`)
//! and an X.509 device registration over HTTPS of a device made by
//! `pki chain new` (`DeviceX509Registration`), and, on the fixed ports, over
//! MQTT (the SDK dials 8883) and MQTT over WebSockets (443, path `/mqtt`), with
//! provisioning-service-client 2.0.3, provisioning-device-client 2.1.3,
//! security-provider 2.0.1 and x509-provider 2.0.2 (pinned in
//! tests/java/pom.xml).
//!
//! Java trusts the emulator through the `truststore.p12` it writes
//! (`-Djavax.net.ssl.trustStore=…`). The Java SDKs refuse a port in
//! `HostName` and always dial 443, so:
//!
//! - as root (CI), [`java_sdks_against_the_emulator_on_port_443`] runs the
//!   emulator on 127.0.0.1:443 (and MQTT on :8883) with the connection
//!   string as printed, and registers the device over HTTPS, MQTT and
//!   MQTT_WS;
//! - as anyone, [`java_sdks_through_the_jvm_proxy_options`] runs it on a
//!   free port and points the JVM's standard proxy options
//!   (`-Dhttps.proxyHost/-Dhttps.proxyPort`, and an empty
//!   `-Dhttp.nonProxyHosts` so `localhost` is proxied too) at a
//!   CONNECT forwarder in this test that connects `localhost:443` to the
//!   emulator's port. Nothing in the SDK or the JVM is patched: TLS is end
//!   to end, host name and SNI are `localhost`; the forwarder only moves bytes.
//!   This one stays HTTPS: the SDK's MQTT client (Paho) ignores those options.
//!
//! The Maven build runs offline (`mvn -q -o`) once the dependencies are in
//! the local repository (.ci/run resolves them); otherwise it resolves them
//! from Maven Central itself.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::support::{
    Emulator, INT_CERT, can_bind_443, fixed_ports, require_tools, skip_unless, tmp,
};

/// The Maven project.
fn java_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java")
}

/// The compiled classes plus the SDKs' runtime class path.
fn classpath() -> &'static str {
    static CP: OnceLock<Result<String, String>> = OnceLock::new();
    CP.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("java");
        let build = |offline: bool| {
            let mut cmd = Command::new("mvn");
            cmd.args(["-q", "-B"]);
            if offline {
                cmd.arg("-o");
            }
            cmd.arg("compile")
                .arg(format!("-Dout={}", out.display()))
                .current_dir(java_dir())
                .output()
                .expect("run mvn")
        };
        let mut run = build(true);
        if !run.status.success() {
            // Not resolved yet (a fresh machine): let Maven fetch from Maven Central.
            run = build(false);
        }
        if !run.status.success() {
            return Err(format!(
                "`mvn compile` in tests/java failed (run `mvn -B dependency:go-offline -f tests/java/pom.xml` with Maven Central reachable):\n{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
        }
        let deps = std::fs::read_to_string(out.join("classpath.txt")).map_err(|e| e.to_string())?;
        Ok(format!("{}:{}", out.join("classes").display(), deps.trim()))
    })
    .as_deref()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the Java tests can run: javac, java and mvn, or a visible skip.
fn tools(test: &str) -> bool {
    require_tools(&["javac", "java", "mvn"], test)
}

/// How the JVM reaches the emulator.
struct Jvm {
    /// `-D` options: the trust store, and the proxy when there is one.
    options: Vec<String>,
}

impl Jvm {
    fn new(emu: &Emulator, proxy: Option<&ConnectProxy>) -> Jvm {
        let mut options = vec![
            format!(
                "-Djavax.net.ssl.trustStore={}",
                emu.info["trustStore"].as_str().unwrap()
            ),
            format!(
                "-Djavax.net.ssl.trustStorePassword={}",
                emu.info["trustStorePassword"].as_str().unwrap()
            ),
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".to_string(),
        ];
        if let Some(p) = proxy {
            options.push("-Dhttps.proxyHost=127.0.0.1".into());
            options.push(format!("-Dhttps.proxyPort={}", p.port));
            // The default (localhost|127.*|[::1]|…) would bypass the proxy for localhost.
            options.push("-Dhttp.nonProxyHosts=".into());
        }
        Jvm { options }
    }

    /// Runs a main class of tests/java; returns (exit 0, stdout + stderr).
    fn run(&self, main: &str, env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new("java")
            .args(&self.options)
            .arg("-cp")
            .arg(classpath())
            .arg(format!("pki.interop.{main}"))
            .envs(env.iter().copied())
            .output()
            .expect("run java");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// A local HTTP CONNECT forwarder: every tunnel goes to 127.0.0.1:`target`.
struct ConnectProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    tunnels: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start(target: u16) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let tunnels = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, tunnels2) = (stop.clone(), tunnels.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let tunnels = tunnels2.clone();
                std::thread::spawn(move || {
                    let _ = tunnel(client, target, &tunnels);
                });
            }
        });
        ConnectProxy {
            port,
            stop,
            tunnels,
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn tunnel(
    mut client: TcpStream,
    target: u16,
    tunnels: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    tunnels.lock().unwrap().push(line.clone());
    if !line.starts_with("CONNECT ") {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
    let upstream = TcpStream::connect(("127.0.0.1", target))?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, client);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// The connection string with `HostName=localhost` (what the Java SDK accepts).
fn connection_string_without_port(emu: &Emulator) -> String {
    let cs = emu.cs();
    cs.replace(&format!("HostName={}", emu.host()), "HostName=localhost")
}

/// The how-to's service sample for group `id` on the intermediate of `chain_dir`.
fn service_sample(jvm: &Jvm, cs: &str, chain_dir: &Path, id: &str) -> (bool, String) {
    let pem = chain_dir.join(INT_CERT);
    jvm.run(
        "ServiceEnrollmentGroupSample",
        &[
            ("DPS_CONNECTION_STRING", cs),
            ("GROUP_CERT_FILE", pem.to_str().unwrap()),
            ("ENROLLMENT_GROUP_ID", id),
        ],
    )
}

fn assert_service_sample(ok: bool, out: &str, id: &str) {
    assert!(
        ok && out.contains("java-service-sample: ok"),
        "service sample failed:\n{out}"
    );
    for step in [
        format!("step: created {id} status=ENABLED hub=java-hub.azure-devices.net etag="),
        format!("step: got {id} status=ENABLED subject=CN="),
        // Page size 1 and two groups: the SDK follows x-ms-continuation.
        "step: queried pages=2 found=1".to_string(),
        format!("step: deleted {id}"),
        "step: gone (ProvisioningServiceClientNotFoundException)".to_string(),
    ] {
        assert!(out.contains(&step), "missing `{step}` in:\n{out}");
    }
}

/// Registers `device-0001` of `chain_dir` (made by `pki chain new`) over HTTPS.
fn register(jvm: &Jvm, emu: &Emulator, chain_dir: &Path) -> Value {
    register_over(jvm, emu, chain_dir, "HTTPS")
}

/// Registers `device-0001` of `chain_dir` over `transport`, a
/// `ProvisioningDeviceClientTransportProtocol` name (HTTPS, MQTT, MQTT_WS).
fn register_over(jvm: &Jvm, emu: &Emulator, chain_dir: &Path, transport: &str) -> Value {
    let cert = chain_dir.join("certs/device-0001-full-chain.cert.pem");
    let key = chain_dir.join("private/device-0001.key.pem");
    let (ok, out) = jvm.run(
        "DeviceX509Registration",
        &[
            ("DPS_HOST", "localhost"),
            ("ID_SCOPE", &emu.id_scope()),
            ("CERT_FILE", cert.to_str().unwrap()),
            ("KEY_FILE", key.to_str().unwrap()),
            ("TRANSPORT", transport),
        ],
    );
    assert!(ok, "DeviceX509Registration over {transport} failed:\n{out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from DeviceX509Registration:\n{out}"));
    serde_json::from_str(line).unwrap()
}

/// The flow both tests run: another group (so the query pages), the sample,
/// then a group on the `pki chain new` intermediate and the device.
fn sample_then_device(emu: &Emulator, jvm: &Jvm, cs: &str, work: &Path) {
    let chain = work.join("chain");
    crate::support::pki(&["chain", "new", "--out", chain.to_str().unwrap()]).ok();
    let other = work.join("other");
    crate::support::pki(&["chain", "new", "--out", other.to_str().unwrap()]).ok();
    let int = chain.join(INT_CERT);
    emu.pki(&[
        "enroll",
        "java-other",
        "--cert",
        other.join(INT_CERT).to_str().unwrap(),
    ])
    .ok();

    let (ok, out) = service_sample(jvm, cs, &chain, "java-sample-group");
    assert_service_sample(ok, &out, "java-sample-group");

    emu.pki(&["enroll", "java-devices", "--cert", int.to_str().unwrap()])
        .ok();
    let v = register(jvm, emu, &chain);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], "PROVISIONING_DEVICE_STATUS_ASSIGNED", "{v}");
    assert_eq!(v["deviceId"], "device-0001", "{v}");
    assert_eq!(v["assignedHub"], "emulated-hub.azure-devices.net", "{v}");
}

#[test]
fn java_sdks_through_the_jvm_proxy_options() {
    if !tools("java_sdks_through_the_jvm_proxy_options") {
        return;
    }
    let dir = tmp();
    let log = dir.path().join("emulator.log");
    let emu = Emulator::start_logging(&dir.path().join("data"), &["--in-memory"], &log);
    let proxy = ConnectProxy::start(emu.port());
    let jvm = Jvm::new(&emu, Some(&proxy));
    sample_then_device(
        &emu,
        &jvm,
        &connection_string_without_port(&emu),
        dir.path(),
    );

    // Every tunnel was asked for localhost:443, the address the SDKs dial.
    let tunnels = proxy.tunnels.lock().unwrap().clone();
    assert!(!tunnels.is_empty());
    assert!(
        tunnels
            .iter()
            .all(|t| t.starts_with("CONNECT localhost:443 ")),
        "{tunnels:?}"
    );

    // The Java service client sends the retired service api-version 2019-03-31:
    // one warning for it, however many requests it made; none for the device client.
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning:") && l.contains("api-version"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("provisioning-service-client/2.0.3")
            && warnings[0].contains("service api-version 2019-03-31")
            && warnings[0].contains("the current version is 2021-10-01"),
        "{}",
        warnings[0]
    );
}

#[test]
fn java_service_sample_is_refused_with_strict_api_versions() {
    if !tools("java_service_sample_is_refused_with_strict_api_versions") {
        return;
    }
    let dir = tmp();
    let emu = Emulator::start(
        &dir.path().join("data"),
        &["--in-memory", "--strict-api-versions"],
    );
    let proxy = ConnectProxy::start(emu.port());
    let jvm = Jvm::new(&emu, Some(&proxy));
    let chain = dir.path().join("chain");
    crate::support::pki(&["chain", "new", "--out", chain.to_str().unwrap()]).ok();
    let (ok, out) = service_sample(
        &jvm,
        &connection_string_without_port(&emu),
        &chain,
        "strict",
    );
    assert!(!ok, "the sample should fail:\n{out}");
    assert!(
        out.contains("ProvisioningServiceClient") && out.contains("Unknown api version"),
        "{out}"
    );
    assert!(!out.contains("step: created"), "{out}");
}

#[test]
fn java_sdks_against_the_emulator_on_port_443() {
    const TEST: &str = "java_sdks_against_the_emulator_on_port_443";
    if !tools(TEST) {
        return;
    }
    if !skip_unless(
        can_bind_443(),
        "port-443",
        TEST,
        "binding 127.0.0.1:443 needs root or CAP_NET_BIND_SERVICE; java_sdks_through_the_jvm_proxy_options ran the same flow",
    ) {
        return;
    }
    // Build first: holding the port while Maven runs would stall the Node test.
    let _ = classpath();
    let _port = fixed_ports();
    let dir = tmp();
    let log = dir.path().join("emulator.log");
    let emu = Emulator::start_on_443_logging(&dir.path().join("data"), &["--in-memory"], &log);
    assert_eq!(emu.host(), "localhost");
    assert_eq!(emu.info["mqttListen"], "127.0.0.1:8883", "{}", emu.info);
    let jvm = Jvm::new(&emu, None);
    // The connection string exactly as the emulator printed it.
    sample_then_device(&emu, &jvm, &emu.cs(), dir.path());
    // The same device over MQTT (the SDK dials 8883) and MQTT over WebSockets (443).
    for transport in ["MQTT", "MQTT_WS"] {
        let v = register_over(&jvm, &emu, &dir.path().join("chain"), transport);
        let ctx = || format!("{transport}: {v}\nemulator log:\n{}", emu.log());
        assert_eq!(v["ok"], true, "{}", ctx());
        assert_eq!(
            v["status"],
            "PROVISIONING_DEVICE_STATUS_ASSIGNED",
            "{}",
            ctx()
        );
        assert_eq!(v["deviceId"], "device-0001", "{}", ctx());
        assert_eq!(
            v["assignedHub"],
            "emulated-hub.azure-devices.net",
            "{}",
            ctx()
        );
    }
    // HTTPS, MQTT and MQTT over WebSockets (Paho's `/mqtt` path) each assigned the device.
    let text = emu.log();
    let assigned = text
        .lines()
        .filter(|l| l.contains("registration `device-0001`") && l.contains("assigned to"))
        .count();
    assert_eq!(assigned, 3, "{text}");
    for line in text
        .lines()
        .filter(|l| l.contains("MQTT") && l.contains("closed"))
    {
        assert!(line.contains("the client disconnected"), "{text}");
    }
}
