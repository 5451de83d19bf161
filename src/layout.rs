//! Where files live in a CA directory: certGen.sh's names and the DPS
//! tutorial's per-device names, so existing instructions keep working.
//!
//! ```text
//! certs/azure-iot-test-only.root.ca.cert.pem       private/azure-iot-test-only.root.ca.key.pem
//! certs/azure-iot-test-only.intermediate.cert.pem  private/azure-iot-test-only.intermediate.key.pem
//! certs/azure-iot-test-only.intermediate2.cert.pem (with --intermediates 2, and so on)
//! certs/azure-iot-test-only.chain.ca.cert.pem      (intermediates, lowest first, then root)
//! certs/<id>.cert.pem  certs/<id>-full-chain.cert.pem  certs/<id>.cert.pfx  private/<id>.key.pem
//! certs/manifest.json
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const ROOT: &str = "azure-iot-test-only.root.ca";
const INTERMEDIATE: &str = "azure-iot-test-only.intermediate";
const CHAIN: &str = "azure-iot-test-only.chain.ca";

/// The kinds of file a certificate has, as `certs/manifest.json` names
/// them (`files.cert`, `files.fullChain`, …). Declared in the order of
/// their spellings, so the manifest lists them alphabetically.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum FileKind {
    /// The certificate (PEM).
    Cert,
    /// The CA chain file.
    Chain,
    /// The leaf followed by its issuers up to the root.
    FullChain,
    /// The private key.
    Key,
    /// The PKCS#12 file.
    Pfx,
}

/// The files of one CA directory.
#[derive(Clone, Debug)]
pub struct Layout {
    base: PathBuf,
}

impl Layout {
    /// A layout rooted at `base` (`certs/` and `private/` below it).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Layout { base: base.into() }
    }

    /// The directory holding `certs/` and `private/`.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `base/dir/{id}{suffix}`, the path `base.join(dir).join(id + suffix)`
    /// makes, in one allocation: this runs for every file of every device.
    fn device_file(&self, dir: &str, id: &str, suffix: &str) -> PathBuf {
        if id.is_empty() || id.contains('/') {
            // Not a registration ID; `join` decides what it means.
            return self.base.join(dir).join(format!("{id}{suffix}"));
        }
        let base = self.base.as_os_str();
        let mut p = PathBuf::with_capacity(base.len() + dir.len() + id.len() + suffix.len() + 2);
        p.push(base);
        p.push(dir);
        p.push(id);
        p.as_mut_os_string().push(suffix);
        p
    }

    /// `certs/`.
    pub fn certs_dir(&self) -> PathBuf {
        self.base.join("certs")
    }

    /// `private/` (mode 0700).
    pub fn private_dir(&self) -> PathBuf {
        self.base.join("private")
    }

    /// The root CA certificate.
    pub fn root_cert(&self) -> PathBuf {
        self.certs_dir().join(format!("{ROOT}.cert.pem"))
    }

    /// The root CA key.
    pub fn root_key(&self) -> PathBuf {
        self.private_dir().join(format!("{ROOT}.key.pem"))
    }

    fn intermediate_prefix(n: usize) -> String {
        if n <= 1 {
            INTERMEDIATE.to_string()
        } else {
            format!("{INTERMEDIATE}{n}")
        }
    }

    /// The `n`th intermediate's certificate, counting from 1 below the root.
    pub fn intermediate_cert(&self, n: usize) -> PathBuf {
        self.certs_dir()
            .join(format!("{}.cert.pem", Self::intermediate_prefix(n)))
    }

    /// The `n`th intermediate's key.
    pub fn intermediate_key(&self, n: usize) -> PathBuf {
        self.private_dir()
            .join(format!("{}.key.pem", Self::intermediate_prefix(n)))
    }

    /// The CA chain file (intermediates, lowest first, then the root).
    pub fn chain_cert(&self) -> PathBuf {
        self.certs_dir().join(format!("{CHAIN}.cert.pem"))
    }

    /// A device's (or edge CA's) certificate.
    pub fn device_cert(&self, id: &str) -> PathBuf {
        self.device_file("certs", id, ".cert.pem")
    }

    /// A device's full chain: leaf, intermediates, root.
    pub fn device_full_chain(&self, id: &str) -> PathBuf {
        self.device_file("certs", id, "-full-chain.cert.pem")
    }

    /// A device's private key.
    pub fn device_key(&self, id: &str) -> PathBuf {
        self.device_file("private", id, ".key.pem")
    }

    /// A device's PKCS#12 file.
    pub fn device_pfx(&self, id: &str) -> PathBuf {
        self.device_file("certs", id, ".cert.pfx")
    }

    /// The manifest of everything issued.
    pub fn manifest(&self) -> PathBuf {
        self.certs_dir().join("manifest.json")
    }

    /// How many intermediates exist on disk (1, 2, … with no gaps).
    pub fn count_intermediates(&self) -> usize {
        (1..)
            .take_while(|n| self.intermediate_cert(*n).exists())
            .count()
    }

    /// Refuses a directory with no root certificate, saying how to make one.
    pub fn require_ca(&self) -> Result<()> {
        if !self.root_cert().exists() {
            return Err(Error::input(format!(
                "no CA in {}: {} is missing; create one with `pki chain new --out {}` or pass --ca-dir",
                self.base.display(),
                self.root_cert().display(),
                self.base.display()
            )));
        }
        Ok(())
    }

    /// Path relative to the base, for manifest.json and messages.
    pub fn relative(&self, path: &Path) -> String {
        // Paths made by joining onto the base start with its text: a string
        // prefix test skips `strip_prefix`'s component walk and `display`'s
        // formatting (this runs for every file of every device).
        if let (Some(p), Some(b)) = (path.to_str(), self.base.to_str())
            && !b.is_empty()
            && let Some(rest) = p.strip_prefix(b).and_then(|r| r.strip_prefix('/'))
            && !rest.is_empty()
            && !rest.starts_with('/')
        {
            return rest.to_string();
        }
        path.strip_prefix(&self.base)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_paths_equal_join_and_strip_prefix() {
        for base in ["", ".", "out", "out/", "/tmp/x", "./a//b", "/"] {
            let l = Layout::new(base);
            for id in ["dev-1", "a.b", "..", "x/y", "/abs"] {
                let cert = l.base.join("certs").join(format!("{id}.cert.pem"));
                assert_eq!(l.device_cert(id), cert, "{base:?} {id:?}");
                assert_eq!(
                    l.device_key(id),
                    l.base.join("private").join(format!("{id}.key.pem"))
                );
                let slow = cert
                    .strip_prefix(&l.base)
                    .unwrap_or(&cert)
                    .display()
                    .to_string();
                assert_eq!(l.relative(&cert), slow, "{base:?} {id:?}");
            }
        }
    }
}
