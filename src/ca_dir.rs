//! Finding a signing CA in a CA directory (made by `pki chain new`,
//! certGen.sh or openssl): which certificate and key file `--issuer`
//! names, and loading them with the chain above.
//!
//! One resolver for `pki device new`, `pki verify-code` and `pki ca verify`,
//! so `--issuer root|intermediate|PATH` and `--ca-key` mean the same in each.

use std::path::{Path, PathBuf};

use crate::cert;
use crate::error::{Error, Result};
use crate::issue::Ca;
use crate::keys::load_private_key;
use crate::layout::Layout;

/// Which CA of an existing directory signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerChoice {
    /// The lowest intermediate (or the root when there is none).
    Intermediate,
    /// The root CA.
    Root,
    /// A CA certificate file; its key is found next to it in `private/`, or given.
    Path(PathBuf),
}

/// A CA's certificate and key files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    /// How messages name it: `root`, `intermediate`, `intermediate 2` or the path.
    pub label: String,
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
}

/// The CA files `choice` names in `layout`; `None` lists every CA of the
/// directory, lowest (closest to the devices) first, which is what
/// enrollment groups usually name. `key` overrides the key file.
///
/// Only files that exist are listed; an empty list is refused with the
/// files that were expected.
pub fn resolve(
    layout: &Layout,
    choice: Option<&IssuerChoice>,
    key: Option<&Path>,
) -> Result<Vec<CaFiles>> {
    let intermediates = layout.count_intermediates();
    let root = || CaFiles {
        label: "root".into(),
        cert: layout.root_cert(),
        key: layout.root_key(),
    };
    let inter = |n: usize| CaFiles {
        label: if n == 1 {
            "intermediate".into()
        } else {
            format!("intermediate {n}")
        },
        cert: layout.intermediate_cert(n),
        key: layout.intermediate_key(n),
    };
    let mut list: Vec<CaFiles> = match choice {
        None => (1..=intermediates)
            .rev()
            .map(inter)
            .chain(std::iter::once(root()))
            .collect(),
        Some(IssuerChoice::Root) => vec![root()],
        Some(IssuerChoice::Intermediate) if intermediates == 0 => vec![root()],
        Some(IssuerChoice::Intermediate) => vec![inter(intermediates)],
        Some(IssuerChoice::Path(p)) => vec![CaFiles {
            label: p.display().to_string(),
            cert: p.clone(),
            key: key_beside(p),
        }],
    };
    if let Some(k) = key {
        for c in &mut list {
            c.key = k.to_path_buf();
        }
    }
    list.retain(|c| c.cert.exists());
    if list.is_empty() {
        return Err(match choice {
            Some(IssuerChoice::Path(p)) => Error::input(format!(
                "the CA certificate {} does not exist; pass a root or intermediate certificate file",
                p.display()
            )),
            _ => Error::input(format!(
                "no CA in {}: {} is missing; create one with `pki chain new --out {}` or pass --ca-dir",
                layout.base().display(),
                layout.root_cert().display(),
                layout.base().display()
            )),
        });
    }
    Ok(list)
}

/// certGen.sh's key location for a CA certificate file:
/// `certs/x.cert.pem` → `private/x.key.pem`.
fn key_beside(cert: &Path) -> PathBuf {
    let stem = cert
        .file_name()
        .map(|f| {
            f.to_string_lossy()
                .replace(".cert.pem", "")
                .replace(".pem", "")
        })
        .unwrap_or_default();
    cert.parent()
        .and_then(Path::parent)
        .map(|d| d.join("private").join(format!("{stem}.key.pem")))
        .unwrap_or_default()
}

/// An existing CA loaded from disk, with its chain up to the root.
pub struct LoadedCa {
    /// The signing CA.
    pub ca: Ca,
    /// DER certificates above the signer, nearest first, ending at the root.
    pub above: Vec<Vec<u8>>,
    /// The files it was read from.
    pub files: CaFiles,
}

/// Loads the CA `files` names: its certificate, and its key decrypted with
/// `password`. Refuses a missing key file, a non-CA and a key that does not
/// belong to the certificate.
pub fn load(files: &CaFiles, password: Option<&str>) -> Result<Ca> {
    let what = files.cert.display().to_string();
    let cert_der = cert::read_first(&crate::fsio::read_input(&files.cert)?, &what)?;
    if !files.key.exists() {
        return Err(Error::input(format!(
            "the CA key {} is missing; pass it with --ca-key",
            files.key.display()
        )));
    }
    let key = load_private_key(
        &crate::fsio::read_input(&files.key)?,
        password,
        &files.key.display().to_string(),
        "--ca-key-password or PKI_CA_KEY_PASSWORD (certGen.sh uses 1234)",
    )?;
    Ca::from_parts(&cert_der, key, &what)
}

/// Loads the signing CA of a pki or certGen.sh directory, with the chain
/// above it.
///
/// `key_path` overrides where the key is read from; `password` decrypts it.
pub fn load_issuer(
    layout: &Layout,
    choice: &IssuerChoice,
    key_path: Option<&Path>,
    password: Option<&str>,
) -> Result<LoadedCa> {
    if !matches!(choice, IssuerChoice::Path(_)) {
        layout.require_ca()?;
    }
    let files = resolve(layout, Some(choice), key_path)?.swap_remove(0);
    let ca = load(&files, password)?;
    let above = match choice {
        IssuerChoice::Path(_) => chain_above(&ca.cert.der, layout),
        IssuerChoice::Root => Vec::new(),
        IssuerChoice::Intermediate => {
            let intermediates = layout.count_intermediates();
            let mut above = Vec::new();
            if intermediates > 0 {
                for n in (1..intermediates).rev() {
                    above.push(read_first_cert(&layout.intermediate_cert(n), layout)?);
                }
                above.push(read_first_cert(&layout.root_cert(), layout)?);
            }
            above
        }
    };
    Ok(LoadedCa { ca, above, files })
}

/// The certificates above `cert` among the directory's CAs (intermediates
/// and root), nearest first, found by issuer name and signature; stops at a
/// self-signed certificate or when no issuer is found.
fn chain_above(cert: &[u8], layout: &Layout) -> Vec<Vec<u8>> {
    let candidates: Vec<Vec<u8>> = (1..=layout.count_intermediates())
        .map(|n| layout.intermediate_cert(n))
        .chain(std::iter::once(layout.root_cert()))
        .filter_map(|p| read_first_cert(&p, layout).ok())
        .collect();
    let mut above: Vec<Vec<u8>> = Vec::new();
    let mut current = cert.to_vec();
    while above.len() < candidates.len() {
        let Ok(cur) = cert::parse_der(&current, "a CA certificate") else {
            break;
        };
        if cur.subject() == cur.issuer() {
            break;
        }
        let parent = candidates.iter().find(|c| {
            cert::parse_der(c, "a CA certificate").is_ok_and(|p| {
                p.subject() == cur.issuer()
                    && c.as_slice() != current.as_slice()
                    && cur.verify_signature(Some(p.public_key())).is_ok()
            })
        });
        match parent {
            Some(p) if !above.contains(p) => {
                above.push(p.clone());
                current = p.clone();
            }
            _ => break,
        }
    }
    above
}

fn read_first_cert(path: &Path, layout: &Layout) -> Result<Vec<u8>> {
    cert::read_first(&crate::fsio::read_input(path)?, &layout.relative(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_each_choice_to_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(resolve(&layout, None, None).unwrap_err().exit_code(), 2);
        std::fs::create_dir_all(layout.certs_dir()).unwrap();
        std::fs::write(layout.root_cert(), b"x").unwrap();
        // No intermediate: `intermediate` means the root.
        let r = resolve(&layout, Some(&IssuerChoice::Intermediate), None).unwrap();
        assert_eq!(r[0].label, "root");
        std::fs::write(layout.intermediate_cert(1), b"x").unwrap();
        std::fs::write(layout.intermediate_cert(2), b"x").unwrap();
        let all = resolve(&layout, None, None).unwrap();
        let labels: Vec<_> = all.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["intermediate 2", "intermediate", "root"]);
        let k = Path::new("/k.pem");
        let r = resolve(&layout, Some(&IssuerChoice::Root), Some(k)).unwrap();
        assert_eq!(r[0].key, k);
        let p = layout.intermediate_cert(1);
        let r = resolve(&layout, Some(&IssuerChoice::Path(p)), None).unwrap();
        assert_eq!(r[0].key, layout.intermediate_key(1));
    }
}
