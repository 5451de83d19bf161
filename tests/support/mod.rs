//! The one support module of the integration tests: one runner for the built
//! `pki` binary ([`Pki`], with the [`pki`], [`pki_in`] and [`pki_env`]
//! shorthands), one [`TestChain`], one [`Emulator`] handle, the Node SDK
//! helper, the `openssl` helpers, and a scripted fake DPS server ([`Fake`]).
//!
//! Every `pki` run goes through [`Pki::run`]: it removes every `PKI_*`
//! variable and `DPS_CONNECTION_STRING` from the child's environment, and
//! fails the test when a private key PEM or a SAS key (the tests' [`KEY`],
//! or any `SharedAccessKey=` given in an argument or variable) appears on
//! stdout or stderr, unless the test called [`Pki::allow_private_key`].
#![allow(dead_code)]

mod fake;
mod openssl;
mod tools;

pub use fake::*;
pub use openssl::*;
pub use tools::*;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pki::issue::{Ca, IssuedCert, issue};
use pki::keys::{KeyType, private_key_pem};
use pki::profile::Profile;
use serde_json::Value;
pub use tempfile::TempDir;

/// CA file names (certGen.sh's).
pub const ROOT_CERT: &str = "certs/azure-iot-test-only.root.ca.cert.pem";
pub const ROOT_KEY: &str = "private/azure-iot-test-only.root.ca.key.pem";
pub const INT_CERT: &str = "certs/azure-iot-test-only.intermediate.cert.pem";
pub const INT_KEY: &str = "private/azure-iot-test-only.intermediate.key.pem";
pub const CHAIN_CERT: &str = "certs/azure-iot-test-only.chain.ca.cert.pem";
pub const MANIFEST: &str = "certs/manifest.json";

/// Every key type `pki` makes.
pub const KEY_TYPES: [&str; 5] = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"];

/// The service key used by every test connection string (and by the
/// emulators the client tests start). [`Pki::run`] asserts it never appears
/// in `pki`'s output.
pub const KEY: &str = "dGVzdC1vbmx5LWtleS1kby1ub3QtdXNlLTAxMjM0NTY3ODk=";
pub const POLICY: &str = "provisioningserviceowner";

/// API versions of the emulator's service and device APIs.
pub const SERVICE_API: &str = "api-version=2021-10-01";
pub const DEVICE_API: &str = "api-version=2019-03-31";

/// A connection string for `host` with the tests' [`KEY`].
pub fn connection_string(host: &str) -> String {
    format!("HostName={host};SharedAccessKeyName={POLICY};SharedAccessKey={KEY}")
}

// ---------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------

/// The result of running a program.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    pub(crate) fn from(out: Output) -> Run {
        Run {
            status: out.status,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a `pki` bad-input failure: exit 2 and exactly one line on
    /// stderr, starting `pki: error:`. Returns that line.
    #[track_caller]
    pub fn bad_input(self) -> String {
        let run = self.code(2);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr, got:\n{}",
            run.stderr
        );
        assert!(
            lines[0].starts_with("pki: error: "),
            "stderr does not start with `pki: error:`: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
            "{}",
            run.stderr
        );
        lines[0].to_string()
    }
}

/// stderr of a run, as text.
pub fn stderr(o: &Run) -> String {
    o.stderr.clone()
}

/// stdout of a run, as text.
pub fn stdout(o: &Run) -> String {
    o.stdout.clone()
}

/// The built `pki` binary.
pub fn pki_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pki")
}

/// Every variable `pki` reads (or a test could leak into it) is removed:
/// all `PKI_*`, `DPS_CONNECTION_STRING`, `PROVISIONING_IDSCOPE` (`pki sas
/// token --id-scope`) and the `AZURE_*` of `pki ca`. A test sets what it needs.
fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PKI_") {
            c.env_remove(&k);
        }
    }
    for k in [
        "DPS_CONNECTION_STRING",
        "PROVISIONING_IDSCOPE",
        "AZURE_ACCESS_TOKEN",
        "AZURE_SUBSCRIPTION_ID",
    ] {
        c.env_remove(k);
    }
    c.env("NO_COLOR", "1");
}

/// The SAS key of a connection string (or of any text holding one).
fn shared_access_key(text: &str) -> Option<String> {
    text.split(';')
        .find_map(|p| p.trim().strip_prefix("SharedAccessKey="))
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// One run of the built `pki` binary: clean environment, leak checks.
pub struct Pki {
    cmd: Command,
    secrets: Vec<String>,
    allow_private_key: bool,
    stdin: Option<Vec<u8>>,
}

impl Pki {
    /// `pki ARGS` with a clean environment.
    pub fn new<I, S>(args: I) -> Pki
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(pki_bin());
        clean_env(&mut cmd);
        let mut p = Pki {
            cmd,
            secrets: vec![KEY.to_owned()],
            allow_private_key: false,
            stdin: None,
        };
        for a in args {
            let a: OsString = a.into();
            if let Some(k) = shared_access_key(&a.to_string_lossy()) {
                p.secrets.push(k);
            }
            p.cmd.arg(a);
        }
        p
    }

    /// One more argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Pki {
        let a: OsString = a.into();
        if let Some(k) = shared_access_key(&a.to_string_lossy()) {
            self.secrets.push(k);
        }
        self.cmd.arg(a);
        self
    }

    /// More arguments.
    pub fn args<I, S>(self, args: I) -> Pki
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        args.into_iter().fold(self, Pki::arg)
    }

    /// Sets a variable; a `SharedAccessKey=` in it becomes a checked secret.
    pub fn env(mut self, k: &str, v: &str) -> Pki {
        if let Some(key) = shared_access_key(v) {
            self.secrets.push(key);
        }
        self.cmd.env(k, v);
        self
    }

    /// Runs in `dir` (for the `.` defaults).
    pub fn current_dir(mut self, dir: &Path) -> Pki {
        self.cmd.current_dir(dir);
        self
    }

    /// Feeds `data` on standard input (otherwise stdin is empty).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Pki {
        self.stdin = Some(data.into());
        self
    }

    /// Another string that must never appear in the output.
    pub fn secret(mut self, s: &str) -> Pki {
        self.secrets.push(s.to_owned());
        self
    }

    /// This run is expected to print a private key (asked for on purpose).
    pub fn allow_private_key(mut self) -> Pki {
        self.allow_private_key = true;
        self
    }

    /// Runs to completion and checks nothing secret was printed.
    #[track_caller]
    pub fn run(mut self) -> Run {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("cannot run pki");
        if let Some(data) = self.stdin.take() {
            let mut sink = child.stdin.take().unwrap();
            // pki may exit before reading everything (a bad-input test).
            let _ = sink.write_all(&data);
        }
        let run = Run::from(child.wait_with_output().expect("cannot run pki"));
        let all = format!("{}{}", run.stdout, run.stderr);
        for s in &self.secrets {
            assert!(
                !all.contains(s.as_str()) && !all.contains(s.trim_end_matches('=')),
                "a SAS key leaked into pki's output:\n{all}"
            );
        }
        if !self.allow_private_key {
            assert!(
                !all.contains("PRIVATE KEY-----"),
                "a private key PEM leaked into pki's output:\n{all}"
            );
        }
        run
    }
}

/// Runs `pki ARGS`.
#[track_caller]
pub fn pki(args: &[&str]) -> Run {
    Pki::new(args).run()
}

/// Runs `pki ARGS` in `dir` (for the `.` defaults).
#[track_caller]
pub fn pki_in(dir: &Path, args: &[&str]) -> Run {
    Pki::new(args).current_dir(dir).run()
}

/// Runs `pki ARGS` with extra environment variables.
#[track_caller]
pub fn pki_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut p = Pki::new(args);
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run()
}

/// Runs `openssl ARGS`.
pub fn openssl(args: &[&str]) -> Run {
    Run::from(
        Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|_| panic!("{}", missing_tool_message("openssl"))),
    )
}

/// Runs `openssl ARGS` in `dir`.
pub fn openssl_in(dir: &Path, args: &[&str]) -> Run {
    Run::from(
        Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap_or_else(|_| panic!("{}", missing_tool_message("openssl"))),
    )
}

/// A fresh temporary directory.
pub fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("pki-test-")
        .tempdir()
        .expect("tempdir")
}

/// `path` as &str (tests only use UTF-8 paths).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `dir/rel` as a String.
pub fn p(dir: &Path, rel: &str) -> String {
    s(&dir.join(rel)).to_string()
}

/// Parses stdout as JSON.
#[track_caller]
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout))
}

// ---------------------------------------------------------------------------
// Certificate chains
// ---------------------------------------------------------------------------

/// A test PKI made with pki's library: root → intermediate (EC P-256, 30
/// days), optionally written to a directory in `pki chain new`'s layout.
pub struct TestChain {
    pub root: Ca,
    pub intermediate: Ca,
    pub root_key_pem: String,
    pub intermediate_key_pem: String,
    /// Where [`TestChain::make`] wrote the files (empty for [`TestChain::new`]).
    pub dir: PathBuf,
}

impl TestChain {
    /// Root "`name` Root CA" and intermediate "`name` Intermediate CA", in memory.
    pub fn new(name: &str) -> TestChain {
        let rk = KeyType::EcP256.generate().unwrap();
        let root_key_pem = private_key_pem(&rk, None).unwrap();
        let root = Ca::create(
            &Profile::RootCa { path_len: 1 },
            &format!("{name} Root CA"),
            &pki::validity::Validity::days(30),
            rk,
            None,
        )
        .unwrap();
        let ik = KeyType::EcP256.generate().unwrap();
        let intermediate_key_pem = private_key_pem(&ik, None).unwrap();
        let intermediate = Ca::create(
            &Profile::IntermediateCa { path_len: 0 },
            &format!("{name} Intermediate CA"),
            &pki::validity::Validity::days(30),
            ik,
            Some(&root),
        )
        .unwrap();
        TestChain {
            root,
            intermediate,
            root_key_pem,
            intermediate_key_pem,
            dir: PathBuf::new(),
        }
    }

    /// A chain with the given devices, written under `dir` in `pki chain new`'s layout.
    pub fn make(dir: &Path, name: &str, devices: &[&str]) -> TestChain {
        let mut chain = TestChain::new(name);
        chain.dir = dir.to_path_buf();
        fs::create_dir_all(dir.join("certs")).unwrap();
        fs::create_dir_all(dir.join("private")).unwrap();
        let w = |p: &str, s: &str| fs::write(dir.join(p), s).unwrap();
        w(ROOT_CERT, &chain.root.cert.pem);
        w(ROOT_KEY, &chain.root_key_pem);
        w(INT_CERT, &chain.intermediate.cert.pem);
        w(INT_KEY, &chain.intermediate_key_pem);
        for id in devices {
            let k = KeyType::EcP256.generate().unwrap();
            let c: IssuedCert = issue(
                &Profile::Device,
                id,
                &pki::validity::Validity::days(30),
                &k,
                Some(&chain.intermediate),
            )
            .unwrap();
            w(&format!("certs/{id}.cert.pem"), &c.pem);
            w(
                &format!("certs/{id}-full-chain.cert.pem"),
                &format!(
                    "{}{}{}",
                    c.pem, chain.intermediate.cert.pem, chain.root.cert.pem
                ),
            );
            w(
                &format!("private/{id}.key.pem"),
                &private_key_pem(&k, None).unwrap(),
            );
        }
        chain
    }

    pub fn root_cert(&self) -> PathBuf {
        self.dir.join(ROOT_CERT)
    }
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join(INT_CERT)
    }
    pub fn device_chain(&self, id: &str) -> PathBuf {
        self.dir.join(format!("certs/{id}-full-chain.cert.pem"))
    }
    pub fn device_cert(&self, id: &str) -> PathBuf {
        self.dir.join(format!("certs/{id}.cert.pem"))
    }
    pub fn device_key(&self, id: &str) -> PathBuf {
        self.dir.join(format!("private/{id}.key.pem"))
    }

    /// A device certificate with CN `cn` issued by the intermediate; returns
    /// (key PEM + leaf + intermediate PEM, leaf).
    pub fn device(&self, cn: &str) -> (String, IssuedCert) {
        let key = KeyType::EcP256.generate().unwrap();
        let leaf = issue(
            &Profile::Device,
            cn,
            &pki::validity::Validity::days(30),
            &key,
            Some(&self.intermediate),
        )
        .unwrap();
        let identity = format!(
            "{}{}{}",
            private_key_pem(&key, None).unwrap(),
            leaf.pem,
            self.intermediate.cert.pem
        );
        (identity, leaf)
    }
}

// ---------------------------------------------------------------------------
// The emulator
// ---------------------------------------------------------------------------

/// A running `pki emulator` process (the real binary on a free loopback
/// port, `--json --quiet`); killed on drop.
pub struct Emulator {
    pub child: Child,
    /// The parsed `--json` start-up line.
    pub info: Value,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// The service SAS key (from the connection string).
    pub key: String,
    /// Kept open so a later write by the emulator never hits a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// A scratch directory owned by this handle ([`Emulator::start_in_temp`]).
    scratch: Option<TempDir>,
    /// Where the emulator's log (stderr) goes, when started with one.
    log: Option<PathBuf>,
}

impl Emulator {
    /// Starts `pki emulator` with `--data data --listen 127.0.0.1:0 --json` plus `extra`.
    pub fn start(data: &Path, extra: &[&str]) -> Emulator {
        Self::start_on(data, "127.0.0.1:0", extra)
    }

    /// An in-memory emulator with the tests' fixed [`KEY`] (so every
    /// [`Emulator::pki`] run checks it never leaks), plus a scratch directory.
    pub fn start_in_temp(extra: &[&str]) -> Emulator {
        let dir = tmp();
        let mut args = vec!["--in-memory", "--sas-key", KEY];
        args.extend_from_slice(extra);
        let mut emu = Self::start(&dir.path().join("emu"), &args);
        emu.scratch = Some(dir);
        emu
    }

    pub fn start_on(data: &Path, listen: &str, extra: &[&str]) -> Emulator {
        Self::try_start(data, listen, extra, Stdio::inherit(), true)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `pki emulator` without `--quiet`, its log (stderr) going to `log`.
    pub fn start_logging(data: &Path, extra: &[&str], log: &Path) -> Emulator {
        let file = fs::File::create(log).unwrap();
        let mut emu = Self::try_start(data, "127.0.0.1:0", extra, Stdio::from(file), false)
            .unwrap_or_else(|e| panic!("{e}"));
        emu.log = Some(log.to_path_buf());
        emu
    }

    /// Starts the emulator on 127.0.0.1:443 (and, unless `extra` says
    /// otherwise, MQTT on 127.0.0.1:8883), waiting (up to two minutes) while
    /// another test or process holds a port. Hold [`fixed_ports`] first.
    pub fn start_on_443(data: &Path, extra: &[&str]) -> Emulator {
        Self::start_fixed(data, extra, None)
    }

    /// [`Emulator::start_on_443`] without `--quiet`, the log going to `log`.
    pub fn start_on_443_logging(data: &Path, extra: &[&str], log: &Path) -> Emulator {
        Self::start_fixed(data, extra, Some(log))
    }

    fn start_fixed(data: &Path, extra: &[&str], log: Option<&Path>) -> Emulator {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        // The bind error goes to stderr: a file, read on failure.
        let start_log = data.with_extension("start.log");
        let log_file = log.unwrap_or(&start_log);
        loop {
            let file = fs::File::create(log_file).unwrap();
            match Self::try_start(
                data,
                "127.0.0.1:443",
                extra,
                Stdio::from(file),
                log.is_none(),
            ) {
                Ok(mut emu) => {
                    emu.log = log.map(Path::to_path_buf);
                    return emu;
                }
                Err(e) => {
                    let why = fs::read_to_string(log_file).unwrap_or_default();
                    if !why.contains("in use") || std::time::Instant::now() > deadline {
                        panic!("{e}\n{why}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }

    /// The emulator's log so far (started with a log file; empty otherwise).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    fn try_start(
        data: &Path,
        listen: &str,
        extra: &[&str],
        stderr: Stdio,
        quiet: bool,
    ) -> Result<Emulator, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut cmd = Command::new(pki_bin());
        clean_env(&mut cmd);
        let mut child = cmd
            .args(["emulator", "--json", "--listen", listen, "--data"])
            .arg(data)
            .args(quiet.then_some("--quiet"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start pki emulator");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read start-up line");
        let info: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "pki emulator on {listen}: start-up line is not JSON ({e}): {line:?}"
                ));
            }
        };
        for field in [
            "connectionString",
            "idScope",
            "caFile",
            "trustStore",
            "trustStorePassword",
            "listen",
            "serviceHost",
        ] {
            assert!(
                info.get(field).is_some(),
                "start-up JSON lacks {field}: {info}"
            );
        }
        let addr: SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
        let key = shared_access_key(info["connectionString"].as_str().unwrap()).unwrap();
        Ok(Emulator {
            child,
            info,
            addr,
            data: data.to_path_buf(),
            key,
            _stdout: stdout,
            scratch: None,
            log: None,
        })
    }

    fn s(&self, k: &str) -> String {
        self.info[k].as_str().unwrap().to_string()
    }

    pub fn id_scope(&self) -> String {
        self.s("idScope")
    }

    pub fn host(&self) -> String {
        self.s("serviceHost")
    }

    /// The CA file clients must trust.
    pub fn ca(&self) -> String {
        self.s("caFile")
    }

    /// The service connection string.
    pub fn cs(&self) -> String {
        self.s("connectionString")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The scratch directory of [`Emulator::start_in_temp`].
    pub fn scratch(&self) -> &Path {
        self.scratch
            .as_ref()
            .expect("started with start_in_temp")
            .path()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://localhost:{}{path_and_query}", self.addr.port())
    }

    /// Runs `pki ARGS --ca-file CA` with `DPS_CONNECTION_STRING` set to the
    /// emulator's (whose key must not leak).
    #[track_caller]
    pub fn pki(&self, args: &[&str]) -> Run {
        let ca = self.ca();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--ca-file", &ca]);
        pki_env(&all, &[("DPS_CONNECTION_STRING", &self.cs())])
    }

    /// Runs `pki ARGS` against the emulator's ARM API (it accepts any token).
    #[track_caller]
    pub fn arm(&self, args: &[&str]) -> Run {
        let ca = self.ca();
        let endpoint = format!("https://{}", self.host());
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--arm-endpoint",
            &endpoint,
            "--subscription",
            "sub",
            "--resource-group",
            "rg",
            "--dps-name",
            "dps",
            "--ca-file",
            &ca,
        ]);
        Pki::new(&all)
            .env("AZURE_ACCESS_TOKEN", "emulator-accepts-any-token")
            .secret(&self.key)
            .run()
    }

    /// A client that trusts only the emulator's CA, optionally with a client identity (key + chain PEM).
    pub fn client(&self, identity_pem: Option<&str>) -> reqwest::Client {
        let ca = fs::read(self.ca()).unwrap();
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .resolve("localhost", self.addr)
            .http1_only()
            .pool_max_idle_per_host(0);
        if let Some(id) = identity_pem {
            b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// Creates or replaces enrollment group `id` through the service API
    /// with `body`; asserts 200 and returns the stored record.
    pub async fn put_group(&self, id: &str, body: &Value) -> Value {
        let r = self
            .client(None)
            .put(self.url(&format!("/enrollmentGroups/{id}?{SERVICE_API}")))
            .header("authorization", self.sas())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "PUT enrollmentGroups/{id}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A fresh service SAS token (policy provisioningserviceowner, sr = serviceHost).
    pub fn sas(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        pki::dps::sas::create_token(
            &self.host(),
            &self.key,
            Some("provisioningserviceowner"),
            now + 3600,
        )
        .unwrap()
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `pki emulator --in-memory --listen 127.0.0.1:0` started for its
/// human start-up text (not `--json`), read up to "Press Ctrl-C"; stdout is
/// drained afterwards so the emulator never blocks. Killed on drop.
pub struct StartupText {
    pub child: Child,
    /// The start-up text, up to and including the "Press Ctrl-C" line.
    pub text: String,
}

impl StartupText {
    /// Runs in `dir` (so a relative `--data` is under it) with `args` after
    /// the listen address; stderr is discarded.
    pub fn start(dir: &Path, args: &[&str]) -> StartupText {
        let mut cmd = Command::new(pki_bin());
        clean_env(&mut cmd);
        let mut child = cmd
            .current_dir(dir)
            .args(["emulator", "--in-memory", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pki emulator");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        while !text.contains("Press Ctrl-C") {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap() == 0 {
                break;
            }
            text.push_str(&l);
        }
        std::thread::spawn(move || for _ in reader.lines() {});
        StartupText { child, text }
    }

    /// The rest of the first line whose trimmed text starts with `label`.
    pub fn field(&self, label: &str) -> String {
        self.text
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in start-up text:\n{}", self.text))
            .trim()
            .to_string()
    }
}

impl Drop for StartupText {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Node.js and the official DPS SDKs
// ---------------------------------------------------------------------------

/// `tests/node`, holding package.json, package-lock.json and the scripts.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Held by every test that listens on a fixed port: 127.0.0.1:443 (the Node,
/// Java and Python SDKs dial it; an emulator there also takes MQTT's 8883 by
/// default) or 127.0.0.1:8883 (the MQTT SDKs).
static FIXED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serialises the tests of this binary that bind 443 or 8883 (from a plain `#[test]`).
pub fn fixed_ports() -> tokio::sync::MutexGuard<'static, ()> {
    FIXED_PORTS.blocking_lock()
}

/// [`fixed_ports`] from an async test.
pub async fn fixed_ports_async() -> tokio::sync::MutexGuard<'static, ()> {
    FIXED_PORTS.lock().await
}

/// Makes sure `node` (20 or later) runs and tests/node/node_modules is
/// installed (with `npm ci` from the committed lock file). A missing Node.js
/// fails the test with one line; returns false (after a visible `SKIPPED:`
/// line) only when `PKI_TEST_SKIP` lists `node`.
#[track_caller]
pub fn ensure_node_modules(test: &str) -> bool {
    if !require_tool("node", test) {
        return false;
    }
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let version = Command::new("node").arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    let major: u32 = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "these tests need Node.js 20 or later, found {}: {}",
        text.trim(),
        missing_tool_message("node")
    );
    let dir = node_dir();
    // Every dependency of package.json (the SDKs, their MQTT transport, playwright-core).
    let package: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let installed = package["dependencies"]
        .as_object()
        .expect("tests/node/package.json has dependencies")
        .keys()
        .all(|m| dir.join("node_modules").join(m).is_dir());
    if !installed {
        assert!(
            require_tool("npm", test),
            "npm is listed in PKI_TEST_SKIP but node is not"
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "tests/node/node_modules is missing and `npm ci` in tests/node failed; run `npm ci --prefix tests/node` (needs the npm registry)"
        );
    }
    true
}
