//! CA rotation: `pki ca roll intermediate|root` and `pki device renew`.
//!
//! A roll makes a new CA key and certificate beside the old one: the old
//! files move to a `…previous…` name (`certs/azure-iot-test-only.intermediate.previous.cert.pem`),
//! the new ones take the usual names, so `pki device new` signs under the
//! new CA at once while the old certificate stays at hand for the group's
//! secondary certificate during the overlap. The new CA's CN gets a
//! generation suffix (`… G2`) so both can sit in one trust bundle. A root
//! roll makes a new root and a new intermediate under it. Renewing re-issues
//! devices under the current CA, keeping or replacing their key. Every run is
//! one [`Staging`] batch: all files or none.

use std::path::{Path, PathBuf};

use crate::ca_dir::{self, CaFiles, LoadedCa};
use crate::cert;
use crate::chain::Summary;
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, read_input, recover};
use crate::issue::{Ca, CaKey, check_validity, issue};
use crate::keys::{KeyType, load_private_key, private_key_pem};
use crate::layout::{FileKind, Layout};
use crate::manifest::{Entry, Manifest};
use crate::pfx::{self, PfxOptions};
use crate::profile::{Profile, Role};
use crate::validity::Validity;

/// Which CA a roll replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RollKind {
    /// The lowest intermediate, re-signed by the same root.
    Intermediate,
    /// The root and the intermediate under it.
    Root,
}

/// What a roll did, for the summary.
#[derive(Debug, Default)]
pub struct Rolled {
    /// `(label, new certificate, previous certificate)`.
    pub files: Vec<(String, PathBuf, PathBuf)>,
    /// New manifest entries.
    pub issued: Vec<Entry>,
    /// Loud notes.
    pub notes: Vec<String>,
}

/// `x.cert.pem` → `x.previous.cert.pem`, `x.key.pem` → `x.previous.key.pem`.
pub fn previous(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name.rsplit_once(".cert.pem") {
        Some((stem, _)) => format!("{stem}.previous.cert.pem"),
        None => match name.rsplit_once(".key.pem") {
            Some((stem, _)) => format!("{stem}.previous.key.pem"),
            None => format!("{name}.previous"),
        },
    };
    path.with_file_name(renamed)
}

/// The next generation's CN: `X` → `X G2`, `X G2` → `X G3`.
pub fn next_cn(cn: &str) -> String {
    if let Some((base, generation)) = cn.rsplit_once(" G")
        && let Ok(n) = generation.parse::<u32>()
    {
        return format!("{base} G{}", n + 1);
    }
    format!("{cn} G2")
}

struct Old {
    files: CaFiles,
    cert_bytes: Vec<u8>,
    key_bytes: Vec<u8>,
    ca: Ca,
    path_len: u8,
    key_type: KeyType,
}

fn load_old(files: CaFiles, password: Option<&str>) -> Result<Old> {
    let cert_bytes = read_input(&files.cert)?;
    let key_bytes = read_input(&files.key)?;
    let ca = ca_dir::load(&files, password)?;
    let x509 = cert::parse_der(&ca.cert.der, &files.cert.display().to_string())?;
    let path_len = x509
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|b| b.value.path_len_constraint)
        .map_or(0, |n| n.min(255) as u8);
    let key_type = <KeyType as clap::ValueEnum>::from_str(crate::keys::describe(ca.key()), true)
        .unwrap_or(KeyType::EcP256);
    Ok(Old {
        files,
        cert_bytes,
        key_bytes,
        ca,
        path_len,
        key_type,
    })
}

/// Rolls the CA `kind` of `layout`. `validity.days` is the new CAs' length;
/// `password` opens the old keys and encrypts the new ones.
pub fn roll(
    layout: &Layout,
    kind: RollKind,
    validity: &Validity,
    password: Option<&str>,
    force: bool,
) -> Result<Rolled> {
    recover(layout.base())?;
    layout.require_ca()?;
    check_validity(validity)?;
    let n = layout.count_intermediates();
    if n == 0 && kind == RollKind::Intermediate {
        return Err(Error::input(
            "this CA directory has no intermediate to roll; roll the root with `pki ca roll root`",
        ));
    }
    if n > 1 && kind == RollKind::Root {
        return Err(Error::input(format!(
            "a root roll re-makes one intermediate, and this directory has {n}; roll the lowest with `pki ca roll intermediate`"
        )));
    }
    let root_files = CaFiles {
        label: "root".into(),
        cert: layout.root_cert(),
        key: layout.root_key(),
    };
    let inter_files = |i: usize| CaFiles {
        label: format!("intermediate {i}"),
        cert: layout.intermediate_cert(i),
        key: layout.intermediate_key(i),
    };
    // What moves aside.
    let mut moving: Vec<CaFiles> = Vec::new();
    if kind == RollKind::Root {
        moving.push(root_files.clone());
    }
    if n >= 1 {
        moving.push(inter_files(n));
    }
    if !force
        && let Some(p) = moving
            .iter()
            .flat_map(|f| [previous(&f.cert), previous(&f.key)])
            .find(|p| p.exists())
    {
        return Err(Error::input(format!(
            "{} is left from an earlier roll; once no device or group uses that CA, delete it, or pass --force to replace it",
            layout.relative(&p)
        )));
    }
    let old_root = load_old(root_files.clone(), password)?;
    let old_inter = if n >= 1 {
        Some(load_old(inter_files(n), password)?)
    } else {
        None
    };

    let staging = Staging::new(layout.base())?;
    let mut rolled = Rolled::default();
    let mut manifest = Manifest::load(layout)?;
    // Old entries now point at the previous files.
    for f in &moving {
        let (cert_rel, key_rel) = (layout.relative(&f.cert), layout.relative(&f.key));
        for e in &mut manifest.certificates {
            if e.files.get(&FileKind::Cert) == Some(&cert_rel) {
                e.files
                    .insert(FileKind::Cert, layout.relative(&previous(&f.cert)));
                if e.files.get(&FileKind::Key) == Some(&key_rel) {
                    e.files
                        .insert(FileKind::Key, layout.relative(&previous(&f.key)));
                }
            }
        }
    }
    let stage_old = |o: &Old| -> Result<()> {
        staging.write(&previous(&o.files.cert), &o.cert_bytes, Mode::Public)?;
        staging.write(&previous(&o.files.key), &o.key_bytes, Mode::Secret)
    };
    let stage_new = |ca: &Ca, files: &CaFiles, role: Role| -> Result<Entry> {
        staging.write(
            &files.key,
            private_key_pem(ca.key(), password)?.as_bytes(),
            Mode::Secret,
        )?;
        staging.write(&files.cert, ca.cert.pem.as_bytes(), Mode::Public)?;
        Entry::new(
            role,
            &ca.cert.der,
            [
                (FileKind::Cert, layout.relative(&files.cert)),
                (FileKind::Key, layout.relative(&files.key)),
            ]
            .into(),
        )
    };
    let new_root;
    let signer: &Ca = match kind {
        RollKind::Root => {
            new_root = Ca::create(
                &Profile::RootCa {
                    path_len: old_root.path_len,
                },
                &next_cn(&old_root.ca.cert.common_name),
                validity,
                CaKey::generate(
                    old_root.key_type,
                    "root-ca",
                    &next_cn(&old_root.ca.cert.common_name),
                )?,
                None,
            )?;
            stage_old(&old_root)?;
            rolled
                .issued
                .push(stage_new(&new_root, &root_files, Role::RootCa)?);
            rolled.files.push((
                "Root CA".into(),
                root_files.cert.clone(),
                previous(&root_files.cert),
            ));
            &new_root
        }
        RollKind::Intermediate => &old_root.ca,
    };
    // The CAs above the new lowest intermediate, nearest first.
    let mut above: Vec<Vec<u8>> = Vec::new();
    if let Some(old) = &old_inter {
        let parent_owned;
        let parent: &Ca = if n >= 2 {
            parent_owned = ca_dir::load(&inter_files(n - 1), password)?;
            &parent_owned
        } else {
            signer
        };
        let ca = Ca::create(
            &Profile::IntermediateCa {
                path_len: old.path_len,
            },
            &next_cn(&old.ca.cert.common_name),
            validity,
            CaKey::generate(
                old.key_type,
                "intermediate-ca",
                &next_cn(&old.ca.cert.common_name),
            )?,
            Some(parent),
        )?;
        rolled.notes.extend(ca.cert.warnings.iter().cloned());
        stage_old(old)?;
        rolled
            .issued
            .push(stage_new(&ca, &old.files, Role::IntermediateCa)?);
        rolled.files.push((
            "Intermediate CA".into(),
            old.files.cert.clone(),
            previous(&old.files.cert),
        ));
        above.push(ca.cert.der.clone());
        for i in (1..n).rev() {
            above.push(cert::read_first(
                &read_input(&layout.intermediate_cert(i))?,
                &layout.relative(&layout.intermediate_cert(i)),
            )?);
        }
    }
    above.push(signer_root(kind, signer, &old_root).cert.der.clone());
    let chain_pem: String = above
        .iter()
        .map(|d| crate::keys::pem_lf("CERTIFICATE", d))
        .collect();
    staging.write(&layout.chain_cert(), chain_pem.as_bytes(), Mode::Public)?;
    manifest.upsert(rolled.issued.iter().cloned());
    manifest.save(layout, &staging)?;
    staging.commit()?;
    Ok(rolled)
}

fn signer_root<'a>(kind: RollKind, signer: &'a Ca, old_root: &'a Old) -> &'a Ca {
    match kind {
        RollKind::Root => signer,
        RollKind::Intermediate => &old_root.ca,
    }
}

/// How `pki device renew` treats keys and files.
#[derive(Clone, Debug)]
pub struct RenewPlan {
    /// Registration IDs of existing devices.
    pub ids: Vec<String>,
    /// Replace each key with a new one of this type (`None`: keep the key).
    pub new_key: Option<KeyType>,
    /// Validity of the new certificates.
    pub validity: Validity,
    /// Password of the device keys (read, and for new keys written).
    pub key_password: Option<String>,
    /// Write `<id>.cert.pfx` with these settings.
    pub pfx: Option<PfxOptions>,
}

/// Re-issues devices under `loaded`: certificate, full chain, PFX and (with
/// a new key) key, all in one batch.
pub fn renew(layout: &Layout, loaded: &LoadedCa, plan: &RenewPlan) -> Result<Summary> {
    recover(layout.base())?;
    check_validity(&plan.validity)?;
    for id in &plan.ids {
        let cert = layout.device_cert(id);
        if !cert.exists() {
            return Err(Error::input(format!(
                "{} does not exist: `{id}` is not a device of this directory; issue it with `pki device new {id}`",
                layout.relative(&cert)
            )));
        }
        if plan.new_key.is_none() && !layout.device_key(id).exists() {
            return Err(Error::input(format!(
                "{} is missing, so `{id}` cannot keep its key; pass --new-key",
                layout.relative(&layout.device_key(id))
            )));
        }
    }
    let chain_pem: String = std::iter::once(loaded.ca.cert.pem.clone())
        .chain(
            loaded
                .above
                .iter()
                .map(|d| crate::keys::pem_lf("CERTIFICATE", d)),
        )
        .collect();
    let chain_der: Vec<&[u8]> = std::iter::once(loaded.ca.cert.der.as_slice())
        .chain(loaded.above.iter().map(Vec::as_slice))
        .collect();
    let old_manifest = Manifest::load(layout)?;
    let staging = Staging::new(layout.base())?;
    let mut summary = Summary::default();
    let password = plan.key_password.as_deref();
    for id in &plan.ids {
        let key_path = layout.device_key(id);
        let key = match plan.new_key {
            Some(kt) => {
                // Under --seed, a new key must differ from the one it replaces (which came
                // from `device` and the ID): its label also holds the old certificate's digest.
                let old = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    &read_input(&layout.device_cert(id))?,
                );
                let label = format!("{id}/renewed-from/{}", hex_lower(old.as_ref()));
                let key = CaKey::generate(kt, "device-renewed", &label)?;
                staging.write(
                    &key_path,
                    private_key_pem(&key, password)?.as_bytes(),
                    Mode::Secret,
                )?;
                key
            }
            None => CaKey::Pair(load_private_key(
                &read_input(&key_path)?,
                password,
                &layout.relative(&key_path),
                "--key-password or PKI_KEY_PASSWORD",
            )?),
        };
        let cert = issue(&Profile::Device, id, &plan.validity, &key, Some(&loaded.ca))?;
        for w in &cert.warnings {
            if !summary.notes.contains(w) {
                summary.notes.push(w.clone());
            }
        }
        let (c, f, p) = (
            layout.device_cert(id),
            layout.device_full_chain(id),
            layout.device_pfx(id),
        );
        staging.write(&c, cert.pem.as_bytes(), Mode::Public)?;
        staging.write(
            &f,
            format!("{}{chain_pem}", cert.pem).as_bytes(),
            Mode::Public,
        )?;
        let mut files = vec![
            (FileKind::Cert, layout.relative(&c)),
            (FileKind::FullChain, layout.relative(&f)),
            (FileKind::Key, layout.relative(&key_path)),
        ];
        if let Some(opts) = &plan.pfx {
            let mut ders: Vec<&[u8]> = vec![&cert.der];
            ders.extend_from_slice(&chain_der);
            let der = key.pkcs8_der()?;
            staging.write(&p, &pfx::build(id, &der, &ders, opts)?, Mode::Secret)?;
            files.push((FileKind::Pfx, layout.relative(&p)));
        }
        let mut entry = Entry::new(Role::Device, &cert.der, files.into_iter().collect())?;
        // A kept key is as seeded as it was; a new one is seeded under --seed.
        entry.seeded = match plan.new_key {
            Some(_) => crate::seed::active(),
            None => old_manifest.certificates.iter().any(|e| {
                e.seeded && e.files.get(&FileKind::Key) == Some(&layout.relative(&key_path))
            }),
        };
        summary.issued.push(entry);
    }
    let mut manifest = old_manifest;
    manifest.upsert(summary.issued.iter().cloned());
    manifest.save(layout, &staging)?;
    staging.commit()?;
    summary.device_count = summary.issued.len();
    summary.first_device = summary.issued.first().cloned();
    summary.last_device = summary.issued.last().cloned();
    Ok(summary)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
