//! Shared harness for the emulator's integration tests: start the real
//! `pki emulator` binary on a free loopback port, read its `--json` start-up
//! line, and talk to it over real HTTPS with reqwest (rustls, trusting only
//! the emulator's CA). Also makes test certificate chains with pki's library.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use pki::issue::{Ca, IssuedCert, issue};
use pki::keys::{KeyType, private_key_pem};
use pki::profile::Profile;
use serde_json::Value;

pub const SERVICE_API: &str = "api-version=2021-10-01";
pub const DEVICE_API: &str = "api-version=2019-03-31";

/// A running emulator process; killed on drop.
pub struct Emulator {
    pub child: Child,
    pub info: Value,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub key: String,
}

impl Emulator {
    /// Starts `pki emulator` with `--data data --listen 127.0.0.1:0 --json` plus `extra`.
    pub fn start(data: &Path, extra: &[&str]) -> Emulator {
        Self::start_on(data, "127.0.0.1:0", extra)
    }

    pub fn start_on(data: &Path, listen: &str, extra: &[&str]) -> Emulator {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pki"))
            .args([
                "emulator", "--json", "--quiet", "--listen", listen, "--data",
            ])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pki emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read start-up line");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("start-up line is not JSON ({e}): {line:?}"));
        for field in [
            "connectionString",
            "idScope",
            "caFile",
            "listen",
            "serviceHost",
        ] {
            assert!(
                info.get(field).is_some(),
                "start-up JSON lacks {field}: {info}"
            );
        }
        let addr: SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
        let cs = info["connectionString"].as_str().unwrap();
        let key = cs
            .split(';')
            .find_map(|p| p.strip_prefix("SharedAccessKey="))
            .unwrap()
            .to_string();
        Emulator {
            child,
            info,
            addr,
            data: data.to_path_buf(),
            key,
        }
    }

    pub fn id_scope(&self) -> String {
        self.info["idScope"].as_str().unwrap().to_string()
    }

    pub fn host(&self) -> String {
        self.info["serviceHost"].as_str().unwrap().to_string()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://localhost:{}{path_and_query}", self.addr.port())
    }

    /// A client that trusts only the emulator's CA, optionally with a client identity (key + chain PEM).
    pub fn client(&self, identity_pem: Option<&str>) -> reqwest::Client {
        let ca = std::fs::read(self.info["caFile"].as_str().unwrap()).unwrap();
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

/// A test PKI: root → intermediate → devices.
pub struct TestChain {
    pub root: Ca,
    pub intermediate: Ca,
}

impl TestChain {
    pub fn new(name: &str) -> TestChain {
        let root = Ca::create(
            &Profile::RootCa { path_len: 1 },
            &format!("{name} Root CA"),
            30,
            KeyType::EcP256.generate().unwrap(),
            None,
        )
        .unwrap();
        let intermediate = Ca::create(
            &Profile::IntermediateCa { path_len: 0 },
            &format!("{name} Intermediate CA"),
            30,
            KeyType::EcP256.generate().unwrap(),
            Some(&root),
        )
        .unwrap();
        TestChain { root, intermediate }
    }

    /// A device certificate with CN `cn` issued by the intermediate; returns
    /// (key PEM + leaf + intermediate PEM, leaf).
    pub fn device(&self, cn: &str) -> (String, IssuedCert) {
        let key = KeyType::EcP256.generate().unwrap();
        let leaf = issue(&Profile::Device, cn, 30, &key, Some(&self.intermediate)).unwrap();
        let identity = format!(
            "{}{}{}",
            private_key_pem(&key, None).unwrap(),
            leaf.pem,
            self.intermediate.cert.pem
        );
        (identity, leaf)
    }
}
