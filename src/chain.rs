//! `pki chain new` and `pki device new`: making a root, intermediates and
//! devices, and writing them with certGen.sh's file names.
//!
//! Everything is checked before anything is written (IDs, existing files),
//! so bad input never leaves a half-made directory. Devices are issued on
//! every core; each file is written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use crate::ca_dir::{IssuerChoice, LoadedCa, load_issuer};
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, ensure_dir};
use crate::issue::{Ca, check_days, issue};
use crate::keys::{KeyType, private_key_pem};
use crate::layout::{FileKind, Layout};
use crate::manifest::{Entry, Manifest};
use crate::pfx::{self, PfxOptions};
use crate::profile::{Profile, Role};

/// certGen.sh's (sdk-c) root CN.
pub const CERTGEN_ROOT_CN: &str = "Azure IoT Hub CA Cert Test Only";
/// certGen.sh's (sdk-c) intermediate CN.
pub const CERTGEN_INTERMEDIATE_CN: &str = "Azure IoT Hub Intermediate Cert Test Only";

/// What `pki chain new` makes.
#[derive(Clone, Debug)]
pub struct ChainPlan {
    /// Directory holding `certs/` and `private/`.
    pub out: PathBuf,
    /// Number of intermediate CAs (0 = devices signed by the root).
    pub intermediates: usize,
    /// Key type of the CAs.
    pub ca_key: KeyType,
    /// Validity of the CAs in days.
    pub ca_days: u32,
    /// Root CN.
    pub root_cn: String,
    /// Intermediate CN (numbered from the second intermediate on).
    pub intermediate_cn: String,
    /// Encrypts CA keys (and device keys) with this password.
    pub key_password: Option<String>,
    /// Replace an existing CA.
    pub force: bool,
    /// The devices to issue under the lowest intermediate.
    pub devices: DevicePlan,
    /// An IoT Edge device CA to issue under the lowest intermediate.
    pub edge_ca: Option<String>,
}

/// What `pki device new` (and the device part of `chain new`) makes.
#[derive(Clone, Debug)]
pub struct DevicePlan {
    /// Registration IDs (already checked with [`crate::regid`]).
    pub ids: Vec<String>,
    /// Key type of the device keys.
    pub key: KeyType,
    /// Validity in days (capped at the issuer's).
    pub days: u32,
    /// Encrypt device keys with this password.
    pub key_password: Option<String>,
    /// Write `<id>.cert.pfx` with these settings.
    pub pfx: Option<PfxOptions>,
    /// Replace existing device files.
    pub force: bool,
}

/// What was written, for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Manifest entries of everything issued in this run.
    pub issued: Vec<Entry>,
    /// Notes for the user (e.g. validity capped at the issuer's).
    pub notes: Vec<String>,
}

/// Makes the device IDs `prefix0001` … for `--devices N`.
pub fn numbered_ids(prefix: &str, count: usize, start: usize) -> Vec<String> {
    let width = 4.max((start + count).to_string().len());
    (start..start + count)
        .map(|n| format!("{prefix}{n:0width$}"))
        .collect()
}

/// Refuses duplicate IDs in one run.
pub fn check_unique(ids: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.to_ascii_lowercase()) {
            return Err(Error::input(format!(
                "device `{id}` is listed twice (DPS compares IDs case-insensitively); list each device once"
            )));
        }
    }
    Ok(())
}

fn files(pairs: &[(FileKind, &Path)], layout: &Layout) -> BTreeMap<FileKind, String> {
    pairs
        .iter()
        .map(|(k, p)| (*k, layout.relative(p)))
        .collect()
}

/// `pki chain new`: root → intermediates → devices (and an edge CA).
pub fn new_chain(plan: &ChainPlan, tick: &(dyn Fn() + Sync)) -> Result<Summary> {
    let layout = Layout::new(&plan.out);
    let existing: Vec<PathBuf> = [layout.root_cert(), layout.root_key()]
        .into_iter()
        .chain((1..=plan.intermediates.max(1)).map(|n| layout.intermediate_key(n)))
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !plan.force {
        return Err(Error::input(format!(
            "{} already holds a CA ({}); pass --force to replace it (devices issued by the old CA stop chaining to it), or add devices with `pki device new`",
            plan.out.display(),
            layout.relative(&existing[0])
        )));
    }
    check_devices_absent(&layout, &plan.devices)?;
    check_days(plan.ca_days)?;
    check_days(plan.devices.days)?;
    if let Some(edge) = &plan.edge_ca {
        crate::regid::check_registration_id(edge)?;
        if edge.chars().count() + ".ca".len() > crate::regid::MAX_CN_ID {
            return Err(Error::input(format!(
                "--edge-ca `{edge}` is too long: its CA's CN `{edge}.ca` must fit in {} characters",
                crate::regid::MAX_CN_ID
            )));
        }
    }
    ensure_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_dir(&layout.private_dir(), Mode::Secret)?;
    // Nothing replaces the old CA until every new file is written.
    let staging = Staging::new(layout.base())?;

    let mut summary = Summary::default();
    let password = plan.key_password.as_deref();

    // Root, then each intermediate signed by the one above. Path lengths
    // count the CAs below. An edge CA is one more CA below the lowest
    // intermediate, and it has to be able to sign (edgeHub's server and
    // workload certificates), so every CA above it allows one more level.
    let below = |n: usize| (n + usize::from(plan.edge_ca.is_some())).min(255) as u8;
    let root = Ca::create(
        &Profile::RootCa {
            path_len: below(plan.intermediates),
        },
        &plan.root_cn,
        plan.ca_days,
        plan.ca_key.generate()?,
        None,
    )?;
    staging.write(
        &layout.root_key(),
        private_key_pem(root.key(), password)?.as_bytes(),
        Mode::Secret,
    )?;
    staging.write(&layout.root_cert(), root.cert.pem.as_bytes(), Mode::Public)?;
    summary.issued.push(Entry::new(
        Role::RootCa,
        &root.cert.der,
        files(
            &[
                (FileKind::Cert, &layout.root_cert()),
                (FileKind::Key, &layout.root_key()),
            ],
            &layout,
        ),
    )?);

    let mut cas = vec![root];
    for n in 1..=plan.intermediates {
        let cn = if n == 1 {
            plan.intermediate_cn.clone()
        } else {
            format!("{} {n}", plan.intermediate_cn)
        };
        let parent = cas.last().ok_or_else(|| Error::failed("no parent CA"))?;
        let ca = Ca::create(
            &Profile::IntermediateCa {
                path_len: below(plan.intermediates - n),
            },
            &cn,
            plan.ca_days,
            plan.ca_key.generate()?,
            Some(parent),
        )?;
        let (cert_path, key_path) = (layout.intermediate_cert(n), layout.intermediate_key(n));
        staging.write(
            &key_path,
            private_key_pem(ca.key(), password)?.as_bytes(),
            Mode::Secret,
        )?;
        staging.write(&cert_path, ca.cert.pem.as_bytes(), Mode::Public)?;
        summary.issued.push(Entry::new(
            Role::IntermediateCa,
            &ca.cert.der,
            files(
                &[(FileKind::Cert, &cert_path), (FileKind::Key, &key_path)],
                &layout,
            ),
        )?);
        cas.push(ca);
    }
    // The CA chain file: intermediates, lowest first, then the root.
    let chain_pem: String = cas.iter().rev().map(|c| c.cert.pem.as_str()).collect();
    staging.write(&layout.chain_cert(), chain_pem.as_bytes(), Mode::Public)?;

    let issuer_chain: Vec<&Ca> = cas.iter().rev().collect();
    if let Some(name) = &plan.edge_ca {
        summary
            .issued
            .push(issue_edge_ca(&layout, &staging, name, plan, &issuer_chain)?);
    }
    let chain_pem: String = issuer_chain.iter().map(|c| c.cert.pem.as_str()).collect();
    let chain_der: Vec<&[u8]> = issuer_chain.iter().map(|c| c.cert.der.as_slice()).collect();
    let devices = issue_devices(
        &layout,
        &staging,
        &plan.devices,
        Signer {
            ca: Some(issuer_chain[0]),
            chain_pem: &chain_pem,
            chain_der: &chain_der,
        },
        tick,
        &mut summary.notes,
    )?;
    summary.issued.extend(devices);

    // A fresh CA: start a fresh manifest (old entries belong to the old CA).
    let manifest = Manifest {
        version: 1,
        certificates: summary.issued.clone(),
    };
    manifest.save(&layout, &staging)?;
    staging.commit()?;
    // Remove intermediates a previous, longer chain left behind (only reached with --force).
    for n in plan.intermediates + 1.. {
        let (c, k) = (layout.intermediate_cert(n), layout.intermediate_key(n));
        if !c.exists() && !k.exists() {
            break;
        }
        let _ = std::fs::remove_file(c);
        let _ = std::fs::remove_file(k);
    }
    Ok(summary)
}

fn issue_edge_ca(
    layout: &Layout,
    staging: &Staging,
    name: &str,
    plan: &ChainPlan,
    issuers: &[&Ca],
) -> Result<Entry> {
    let id = format!("iot-edge-device-ca-{name}");
    let key = plan.ca_key.generate()?;
    let issuer = issuers[0];
    let cert = issue(
        &Profile::EdgeCa,
        &format!("{name}.ca"),
        plan.devices.days,
        &key,
        Some(issuer),
    )?;
    let full: String = std::iter::once(cert.pem.as_str())
        .chain(issuers.iter().map(|c| c.cert.pem.as_str()))
        .collect();
    let (c, f, k) = (
        layout.device_cert(&id),
        layout.device_full_chain(&id),
        layout.device_key(&id),
    );
    staging.write(
        &k,
        private_key_pem(&key, plan.key_password.as_deref())?.as_bytes(),
        Mode::Secret,
    )?;
    staging.write(&c, cert.pem.as_bytes(), Mode::Public)?;
    staging.write(&f, full.as_bytes(), Mode::Public)?;
    Entry::new(
        Role::EdgeCa,
        &cert.der,
        files(
            &[
                (FileKind::Cert, &c),
                (FileKind::FullChain, &f),
                (FileKind::Key, &k),
            ],
            layout,
        ),
    )
}

fn check_devices_absent(layout: &Layout, plan: &DevicePlan) -> Result<()> {
    check_unique(&plan.ids)?;
    if plan.force {
        return Ok(());
    }
    // DPS compares registration IDs case-insensitively, so `SENSOR-1` is the
    // same device as an existing `sensor-1` even on a case-sensitive disk.
    let existing: std::collections::HashMap<String, PathBuf> =
        [layout.certs_dir(), layout.private_dir()]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().to_ascii_lowercase(),
                    e.path(),
                )
            })
            .collect();
    for id in &plan.ids {
        for p in [layout.device_cert(id), layout.device_key(id)] {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase());
            if let Some(found) = name.and_then(|n| existing.get(&n)) {
                return Err(Error::input(format!(
                    "device `{id}` already exists ({}; DPS compares IDs case-insensitively); pass --force to re-issue it, or choose another ID",
                    layout.relative(found)
                )));
            }
        }
    }
    Ok(())
}

/// The CA that signs devices and its chain up to the root (issuer first),
/// as PEM for full-chain files and DER for PFX files. No CA: self-signed.
#[derive(Clone, Copy)]
struct Signer<'a> {
    ca: Option<&'a Ca>,
    chain_pem: &'a str,
    chain_der: &'a [&'a [u8]],
}

/// Issues `plan.ids` under `signer` on every core. Returns manifest entries
/// in ID order.
fn issue_devices(
    layout: &Layout,
    staging: &Staging,
    plan: &DevicePlan,
    signer: Signer<'_>,
    tick: &(dyn Fn() + Sync),
    notes: &mut Vec<String>,
) -> Result<Vec<Entry>> {
    if plan.ids.is_empty() {
        return Ok(Vec::new());
    }
    let n = plan.ids.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let capped = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Entry>>> = Mutex::new(vec![None; n]);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match issue_device(layout, staging, &plan.ids[i], plan, signer) {
                        Ok((entry, was_capped)) => {
                            if was_capped {
                                capped.store(true, Ordering::Relaxed);
                            }
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(entry);
                            }
                            tick();
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if capped.load(Ordering::Relaxed) {
        notes.push(format!(
            "device validity was cut to the issuer's expiry ({}): a certificate cannot outlive its CA",
            signer
                .ca
                .map(|c| c.cert.not_after.date().to_string())
                .unwrap_or_default()
        ));
    }
    Ok(results
        .into_inner()
        .map_err(|_| Error::failed("a device worker panicked"))?
        .into_iter()
        .flatten()
        .collect())
}

fn issue_device(
    layout: &Layout,
    staging: &Staging,
    id: &str,
    plan: &DevicePlan,
    signer: Signer<'_>,
) -> Result<(Entry, bool)> {
    let Signer {
        ca: issuer,
        chain_pem,
        chain_der,
    } = signer;
    let key = plan.key.generate()?;
    let cert = issue(&Profile::Device, id, plan.days, &key, issuer)?;
    let (c, f, k, p) = (
        layout.device_cert(id),
        layout.device_full_chain(id),
        layout.device_key(id),
        layout.device_pfx(id),
    );
    staging.write(
        &k,
        private_key_pem(&key, plan.key_password.as_deref())?.as_bytes(),
        Mode::Secret,
    )?;
    staging.write(&c, cert.pem.as_bytes(), Mode::Public)?;
    let mut file_list = vec![(FileKind::Cert, c.as_path()), (FileKind::Key, k.as_path())];
    if issuer.is_some() {
        let mut full = String::with_capacity(cert.pem.len() + chain_pem.len());
        full.push_str(&cert.pem);
        full.push_str(chain_pem);
        staging.write(&f, full.as_bytes(), Mode::Public)?;
        file_list.push((FileKind::FullChain, f.as_path()));
    }
    if let Some(opts) = &plan.pfx {
        let mut ders: Vec<&[u8]> = vec![&cert.der];
        if issuer.is_some() {
            ders.extend_from_slice(chain_der);
        }
        let pfx = pfx::build(id, key.serialized_der(), &ders, opts)?;
        staging.write(&p, &pfx, Mode::Secret)?;
        file_list.push((FileKind::Pfx, p.as_path()));
    }
    Ok((
        Entry::new(Role::Device, &cert.der, files(&file_list, layout))?,
        cert.capped,
    ))
}

/// `pki device new`: devices under an existing CA.
pub fn new_devices(
    layout: &Layout,
    loaded: &LoadedCa,
    plan: &DevicePlan,
    tick: &(dyn Fn() + Sync),
) -> Result<Summary> {
    check_devices_absent(layout, plan)?;
    check_days(plan.days)?;
    ensure_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_dir(&layout.private_dir(), Mode::Secret)?;
    let staging = Staging::new(layout.base())?;
    let mut summary = Summary::default();
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
    summary.issued = issue_devices(
        layout,
        &staging,
        plan,
        Signer {
            ca: Some(&loaded.ca),
            chain_pem: &chain_pem,
            chain_der: &chain_der,
        },
        tick,
        &mut summary.notes,
    )?;
    let mut manifest = Manifest::load(layout)?;
    manifest.upsert(summary.issued.clone());
    manifest.save(layout, &staging)?;
    staging.commit()?;
    Ok(summary)
}

/// `pki device new --self-signed`: devices with self-signed certificates,
/// for individual enrollments.
pub fn new_self_signed(layout: &Layout, plan: &DevicePlan) -> Result<Summary> {
    check_devices_absent(layout, plan)?;
    check_days(plan.days)?;
    ensure_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_dir(&layout.private_dir(), Mode::Secret)?;
    let staging = Staging::new(layout.base())?;
    let mut summary = Summary::default();
    summary.issued = issue_devices(
        layout,
        &staging,
        plan,
        Signer {
            ca: None,
            chain_pem: "",
            chain_der: &[],
        },
        &|| {},
        &mut summary.notes,
    )?;
    let mut manifest = Manifest::load(layout)?;
    manifest.upsert(summary.issued.clone());
    manifest.save(layout, &staging)?;
    staging.commit()?;
    Ok(summary)
}
