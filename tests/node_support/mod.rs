//! Node.js and the official DPS SDKs (tests/node) for the interoperability
//! tests. Missing packages are installed with `npm ci` from the committed
//! lock file; a missing Node.js fails the test (it never passes silently),
//! unless PKI_SKIP_NODE_TESTS=1 is set on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `tests/node`, holding package.json, package-lock.json and the scripts.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Makes sure `node` runs and tests/node/node_modules is installed.
/// Returns false only when PKI_SKIP_NODE_TESTS is set.
pub fn ensure_node_modules() -> bool {
    if std::env::var_os("PKI_SKIP_NODE_TESTS").is_some() {
        eprintln!("PKI_SKIP_NODE_TESTS is set: skipping a Node SDK test");
        return false;
    }
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "these tests need Node.js (20 or later) on PATH; install it, or set PKI_SKIP_NODE_TESTS=1"
    );
    let dir = node_dir();
    let installed = [
        "azure-iot-common",
        "azure-iot-provisioning-service",
        "azure-iot-provisioning-device",
        "azure-iot-provisioning-device-http",
        "azure-iot-security-x509",
    ]
    .iter()
    .all(|m| dir.join("node_modules").join(m).is_dir());
    if !installed {
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
