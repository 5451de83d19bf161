//! `pki chain new` and `pki device new`: making a root, intermediates and
//! devices, and writing them with certGen.sh's file names.
//!
//! Everything is checked before anything is written (IDs, existing files),
//! so bad input never leaves a half-made directory. Devices are issued on
//! every core; each file is written atomically.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use crate::ca_dir::{IssuerChoice, LoadedCa, load_issuer};
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, ensure_own_dir, recover};
use crate::issue::{Ca, CaKey, check_validity, issue};
use crate::keys::{KeyType, pkcs8_pem, private_key_pem};
use crate::layout::{FileKind, Layout};
use crate::manifest::{Entry, Manifest, ManifestWriter};
use crate::pfx::{self, PfxOptions};
use crate::profile::{Profile, Role};
use crate::validity::{CLOCK_SKEW, TimeSpec, Validity};

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
    /// Registration IDs (already checked with [`crate::regid`]), listed
    /// ones then `--devices N` ones generated on demand.
    pub ids: DeviceIds,
    /// Key type of the device keys.
    pub key: KeyType,
    /// Validity (capped at the issuer's unless it says otherwise).
    pub validity: Validity,
    /// Encrypt device keys with this password.
    pub key_password: Option<String>,
    /// Write `<id>.cert.pfx` with these settings.
    pub pfx: Option<PfxOptions>,
    /// Replace existing device files.
    pub force: bool,
    /// Keep every device's manifest entry in [`Summary::issued`] (for
    /// `--json`), which costs memory in proportion to the devices.
    pub keep_entries: bool,
}

/// What was written, for the summary.
///
/// Device entries are kept only when [`DevicePlan::keep_entries`] asks for
/// them (`--json`): otherwise the first and last device stand for the batch,
/// so memory stays flat in the number of devices.
#[derive(Debug, Default)]
pub struct Summary {
    /// Manifest entries of the CAs issued in this run, then of the devices
    /// when they are kept.
    pub issued: Vec<Entry>,
    /// Number of devices issued.
    pub device_count: usize,
    /// The first device's entry (in ID order).
    pub first_device: Option<Entry>,
    /// The last device's entry.
    pub last_device: Option<Entry>,
    /// Notes for the user (e.g. validity capped at the issuer's).
    pub notes: Vec<String>,
}

/// Makes the device IDs `prefix0001` … for `--devices N`.
pub fn numbered_ids(prefix: &str, count: usize, start: usize) -> Vec<String> {
    DeviceIds::default()
        .with_numbered(prefix, count, start)
        .iter()
        .map(|id| id.into_owned())
        .collect()
}

/// The registration IDs of one run: the listed ones, then a numbered range
/// (`prefix0001` …) made on demand, so memory does not grow with `--devices N`.
#[derive(Clone, Debug, Default)]
pub struct DeviceIds {
    listed: Vec<String>,
    numbered: Option<Numbered>,
}

#[derive(Clone, Debug)]
struct Numbered {
    prefix: String,
    start: usize,
    count: usize,
    width: usize,
}

impl From<Vec<String>> for DeviceIds {
    fn from(listed: Vec<String>) -> Self {
        DeviceIds {
            listed,
            numbered: None,
        }
    }
}

impl DeviceIds {
    /// These IDs followed by [`numbered_ids`]`(prefix, count, start)`.
    pub fn with_numbered(mut self, prefix: &str, count: usize, start: usize) -> Self {
        self.numbered = Some(Numbered {
            prefix: prefix.to_string(),
            start,
            count,
            width: 4.max((start + count).to_string().len()),
        });
        self
    }

    /// How many IDs.
    pub fn len(&self) -> usize {
        self.listed.len() + self.numbered.as_ref().map_or(0, |n| n.count)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The listed IDs (those not generated from the numbering).
    pub fn listed(&self) -> &[String] {
        &self.listed
    }

    /// The `i`th ID.
    pub fn get(&self, i: usize) -> Option<Cow<'_, str>> {
        if let Some(id) = self.listed.get(i) {
            return Some(id.as_str().into());
        }
        let n = self.numbered.as_ref()?;
        let k = i - self.listed.len();
        (k < n.count).then(|| format!("{}{:0w$}", n.prefix, n.start + k, w = n.width).into())
    }

    /// Every ID, in order.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Every numbered ID, in order.
    pub fn numbered(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        (self.listed.len()..self.len()).filter_map(|i| self.get(i))
    }

    /// Whether `lower` (lower case) is one of the numbered IDs, as DPS
    /// compares them (case-insensitively).
    fn is_numbered(&self, lower: &str) -> bool {
        let Some(n) = &self.numbered else {
            return false;
        };
        let prefix = n.prefix.to_ascii_lowercase();
        lower
            .strip_prefix(prefix.as_str())
            .filter(|digits| digits.len() == n.width && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<usize>().ok())
            .is_some_and(|v| v >= n.start && v < n.start + n.count)
    }
}

/// Refuses duplicate IDs in one run. Listed IDs are compared through a set;
/// numbered ones cannot clash with each other, and a listed one clashes with
/// them only if it matches the numbering, so no set of them is built.
pub fn check_unique(ids: &DeviceIds) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in &ids.listed {
        let lower = id.to_ascii_lowercase();
        if ids.is_numbered(&lower) || !seen.insert(lower) {
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

/// The CN of the `n`th intermediate: the base name, then " 2", " 3", ….
fn intermediate_cn(base: &str, n: usize) -> String {
    if n == 1 {
        base.to_string()
    } else {
        format!("{base} {n}")
    }
}

/// `pki chain new`: root → intermediates → devices (and an edge CA).
pub fn new_chain(plan: &ChainPlan, tick: &(dyn Fn() + Sync)) -> Result<Summary> {
    let layout = Layout::new(&plan.out);
    // A run killed mid-commit is rolled back before anything is checked.
    recover(layout.base())?;
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
    crate::profile::check_common_name(&plan.root_cn)?;
    for n in 1..=plan.intermediates {
        crate::profile::check_common_name(&intermediate_cn(&plan.intermediate_cn, n))?;
    }
    let ca_validity = ca_validity(plan)?;
    check_validity(&plan.devices.validity)?;
    if let Some(edge) = &plan.edge_ca {
        crate::regid::check_registration_id(edge)?;
        if edge.chars().count() + ".ca".len() > crate::regid::MAX_CN_ID {
            return Err(Error::input(format!(
                "--edge-ca `{edge}` is too long: its CA's CN `{edge}.ca` must fit in {} characters",
                crate::regid::MAX_CN_ID
            )));
        }
    }
    ensure_own_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_own_dir(&layout.private_dir(), Mode::Secret)?;
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
        &ca_validity,
        CaKey::generate(plan.ca_key, "root-ca", &plan.root_cn)?,
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
        let cn = intermediate_cn(&plan.intermediate_cn, n);
        let parent = cas.last().ok_or_else(|| Error::failed("no parent CA"))?;
        let ca = Ca::create(
            &Profile::IntermediateCa {
                path_len: below(plan.intermediates - n),
            },
            &cn,
            &ca_validity,
            CaKey::generate(plan.ca_key, "intermediate-ca", &cn)?,
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
    // A fresh CA: start a fresh manifest (old entries belong to the old CA),
    // streamed: CAs first, then each device as it is made.
    let mut writer = ManifestWriter::create(&layout, &staging)?;
    for e in &summary.issued {
        writer.push(e)?;
    }
    let writer = Mutex::new(writer);
    issue_devices(
        &layout,
        &staging,
        &plan.devices,
        Signer {
            ca: Some(issuer_chain[0]),
            chain_pem: &chain_pem,
            chain_der: &chain_der,
        },
        tick,
        &|i, e| {
            let json = crate::manifest::encode_entry(e)?;
            lock(&writer)?.push_encoded_at(i, json)
        },
        &mut summary,
    )?;
    writer
        .into_inner()
        .map_err(|_| Error::failed("a device worker panicked"))?
        .finish()?;
    // Intermediates a previous, longer chain left behind go in the same
    // batch (only reached with --force).
    for n in plan.intermediates + 1.. {
        let (c, k) = (layout.intermediate_cert(n), layout.intermediate_key(n));
        if !c.exists() && !k.exists() {
            break;
        }
        staging.remove(&c)?;
        staging.remove(&k)?;
    }
    staging.commit()?;
    Ok(summary)
}

/// The CAs of a new chain: `ca_days` from now, starting early enough for
/// the devices' window (an `--expired` device still has an issuer that
/// covers it), with the devices' clock.
fn ca_validity(plan: &ChainPlan) -> Result<Validity> {
    let dev = &plan.devices.validity;
    let devices = dev.window()?;
    let ends = Validity::days(plan.ca_days);
    let ends = Validity {
        now: dev.now,
        ..ends
    }
    .window()?;
    Ok(Validity {
        now: dev.now,
        not_before: Some(TimeSpec::At(devices.not_before.min(dev.now - CLOCK_SKEW))),
        not_after: Some(TimeSpec::At(ends.not_after)),
        days: plan.ca_days,
        allow_outliving_issuer: false,
        allow_expired_issuer: false,
    })
}

fn issue_edge_ca(
    layout: &Layout,
    staging: &Staging,
    name: &str,
    plan: &ChainPlan,
    issuers: &[&Ca],
) -> Result<Entry> {
    let id = format!("iot-edge-device-ca-{name}");
    let key = plan.ca_key.generate_fresh_for("edge-ca", &id)?;
    let issuer = issuers[0];
    let cert = issue(
        &Profile::EdgeCa,
        &format!("{name}.ca"),
        &plan.devices.validity,
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
    if existing.is_empty() {
        // A fresh directory (the bulk case): no per-device paths to build.
        return Ok(());
    }
    for id in plan.ids.iter() {
        let id = id.as_ref();
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

/// Locks `m`; a poisoned lock means a worker panicked.
fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::failed("a device worker panicked"))
}

/// Receives each device's manifest entry with its index in the plan, from
/// any worker thread, in any order.
type Emit<'a> = dyn Fn(usize, &Entry) -> Result<()> + Sync + 'a;

/// Issues `plan.ids` under `signer` on every core, handing each entry to
/// `emit` and recording the batch in `summary` (see [`Summary`]).
fn issue_devices(
    layout: &Layout,
    staging: &Staging,
    plan: &DevicePlan,
    signer: Signer<'_>,
    tick: &(dyn Fn() + Sync),
    emit: &Emit<'_>,
    summary: &mut Summary,
) -> Result<()> {
    if plan.ids.is_empty() {
        return Ok(());
    }
    let n = plan.ids.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n);
    // The issuer's subject as the manifest shows it, worked out once: every
    // device entry is made without parsing the device's certificate.
    let issuer_subject = match signer.ca {
        Some(ca) => Some(
            crate::cert::parse_der(&ca.cert.der, "the issuing CA")?
                .subject()
                .to_string(),
        ),
        None => None,
    };
    let device = DeviceCtx {
        layout,
        staging,
        plan,
        signer,
        issuer_subject: issuer_subject.as_deref(),
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let capped = AtomicBool::new(false);
    let kept: Mutex<Vec<Option<Entry>>> = Mutex::new(if plan.keep_entries {
        vec![None; n]
    } else {
        Vec::new()
    });
    let ends: Mutex<(Option<Entry>, Option<Entry>)> = Mutex::new((None, None));
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let warnings: Mutex<Vec<String>> = Mutex::new(Vec::new());

    // Workers take devices a chunk at a time and do the chunk's
    // cryptography back to back before writing its files: interleaving a
    // file creation (kernel work) between every key generation and
    // signature evicts the backend's precomputed tables from the cache.
    let chunk = (n / (threads * 8)).clamp(1, CHUNK);
    let fail = |e: Error| {
        failed.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = first_error.lock() {
            slot.get_or_insert(e);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut signed = Vec::with_capacity(chunk);
                while !failed.load(Ordering::Relaxed) {
                    let start = next.fetch_add(chunk, Ordering::Relaxed);
                    if start >= n {
                        break;
                    }
                    signed.clear();
                    let made = (start..(start + chunk).min(n)).try_for_each(|i| {
                        let id = plan.ids.get(i).unwrap_or_default();
                        let done = device.sign(&id)?;
                        signed.push((i, id, done));
                        Ok(())
                    });
                    if let Err(e) = made {
                        fail(e);
                        break;
                    }
                    for (i, id, done) in signed.drain(..) {
                        let done =
                            device
                                .store(&id, done)
                                .and_then(|(entry, was_capped, warned)| {
                                    emit(i, &entry)?;
                                    if i == 0 && !warned.is_empty() {
                                        // The same window and issuer for every device: say it once.
                                        *lock(&warnings)? = warned;
                                    }
                                    if was_capped {
                                        capped.store(true, Ordering::Relaxed);
                                    }
                                    if i == 0 || i == n - 1 {
                                        let mut ends = lock(&ends)?;
                                        let slot = if i == 0 { &mut ends.0 } else { &mut ends.1 };
                                        *slot = Some(entry.clone());
                                    }
                                    if plan.keep_entries {
                                        lock(&kept)?[i] = Some(entry);
                                    }
                                    Ok(())
                                });
                        match done {
                            Ok(()) => tick(),
                            Err(e) => {
                                fail(e);
                                break;
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
    summary.notes.extend(
        warnings
            .into_inner()
            .map_err(|_| Error::failed("a device worker panicked"))?,
    );
    if capped.load(Ordering::Relaxed) {
        summary.notes.push(format!(
            "device validity was cut to the issuer's expiry ({}): a certificate cannot outlive its CA",
            signer
                .ca
                .map(|c| c.cert.not_after.date().to_string())
                .unwrap_or_default()
        ));
    }
    let (first, last) = ends
        .into_inner()
        .map_err(|_| Error::failed("a device worker panicked"))?;
    summary.device_count += n;
    summary.first_device = first.clone();
    // With one device it is both first and last.
    summary.last_device = last.or(first);
    summary.issued.extend(
        kept.into_inner()
            .map_err(|_| Error::failed("a device worker panicked"))?
            .into_iter()
            .flatten(),
    );
    Ok(())
}

/// What every device of a batch shares.
struct DeviceCtx<'a> {
    layout: &'a Layout,
    staging: &'a Staging,
    plan: &'a DevicePlan,
    signer: Signer<'a>,
    /// The signer's subject (`None`: self-signed, the device's own).
    issuer_subject: Option<&'a str>,
}

/// The most devices a worker signs before writing their files (see
/// [`issue_devices`]): enough to keep the backend's tables warm, few enough
/// that a chunk's keys and certificates are a few tens of kilobytes.
const CHUNK: usize = 32;

/// A device's key and certificate, made but not yet written.
struct Signed {
    key: crate::keys::GeneratedKey,
    cert: crate::issue::IssuedCert,
}

impl DeviceCtx<'_> {
    /// The cryptography of one device: its key and its signed certificate.
    fn sign(&self, id: &str) -> Result<Signed> {
        let key = self.plan.key.generate_fresh_for("device", id)?;
        let cert = issue(
            &Profile::Device,
            id,
            &self.plan.validity,
            &key,
            self.signer.ca,
        )?;
        Ok(Signed { key, cert })
    }

    /// Stages a signed device's files and makes its manifest entry.
    fn store(&self, id: &str, signed: Signed) -> Result<(Entry, bool, Vec<String>)> {
        let DeviceCtx {
            layout,
            staging,
            plan,
            ..
        } = *self;
        let Signer {
            ca: issuer,
            chain_pem,
            chain_der,
        } = self.signer;
        let Signed { key, cert } = signed;
        let (c, f, k) = (
            layout.device_cert(id),
            layout.device_full_chain(id),
            layout.device_key(id),
        );
        // Only built when written: most bulk runs have no PFX.
        let p;
        staging.write(
            &k,
            pkcs8_pem(key.pkcs8_der(), plan.key_password.as_deref())?.as_bytes(),
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
            let pfx = pfx::build(id, key.pkcs8_der(), &ders, opts)?;
            p = layout.device_pfx(id);
            staging.write(&p, &pfx, Mode::Secret)?;
            file_list.push((FileKind::Pfx, p.as_path()));
        }
        let self_subject;
        let issuer_subject = match self.issuer_subject {
            Some(s) => s,
            None => {
                self_subject = format!("CN={id}");
                &self_subject
            }
        };
        let entry = Entry::for_issued(
            Role::Device,
            &cert,
            issuer_subject,
            plan.key.cert_description(),
            files(&file_list, layout),
        );
        Ok((entry, cert.capped, cert.warnings))
    }
}

/// `pki device new`: devices under an existing CA.
pub fn new_devices(
    layout: &Layout,
    loaded: &LoadedCa,
    plan: &DevicePlan,
    tick: &(dyn Fn() + Sync),
) -> Result<Summary> {
    recover(layout.base())?;
    check_devices_absent(layout, plan)?;
    check_validity(&plan.validity)?;
    ensure_own_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_own_dir(&layout.private_dir(), Mode::Secret)?;
    let staging = Staging::new(layout.base())?;
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
    add_devices(
        layout,
        staging,
        plan,
        Signer {
            ca: Some(&loaded.ca),
            chain_pem: &chain_pem,
            chain_der: &chain_der,
        },
        tick,
    )
}

/// Issues devices into a directory that may hold a manifest already: the
/// old entries are kept and the new ones appended, streamed; when devices
/// are re-issued (`--force`), their entries replace the old ones in place,
/// which needs every new entry in memory first.
fn add_devices(
    layout: &Layout,
    staging: Staging,
    plan: &DevicePlan,
    signer: Signer<'_>,
    tick: &(dyn Fn() + Sync),
) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut manifest = Manifest::load(layout)?;
    let replaces = {
        let old = manifest.cert_files();
        !old.is_empty()
            && plan
                .ids
                .iter()
                .any(|id| old.contains(layout.relative(&layout.device_cert(&id)).as_str()))
    };
    if replaces {
        let all = DevicePlan {
            keep_entries: true,
            ..plan.clone()
        };
        issue_devices(
            layout,
            &staging,
            &all,
            signer,
            tick,
            &|_, _| Ok(()),
            &mut summary,
        )?;
        manifest.upsert(summary.issued.iter().cloned());
        if !plan.keep_entries {
            summary.issued.clear();
        }
        manifest.save(layout, &staging)?;
    } else {
        let mut writer = ManifestWriter::create(layout, &staging)?;
        for e in &manifest.certificates {
            writer.push(e)?;
        }
        drop(manifest);
        let writer = Mutex::new(writer);
        issue_devices(
            layout,
            &staging,
            plan,
            signer,
            tick,
            &|i, e| {
                let json = crate::manifest::encode_entry(e)?;
                lock(&writer)?.push_encoded_at(i, json)
            },
            &mut summary,
        )?;
        writer
            .into_inner()
            .map_err(|_| Error::failed("a device worker panicked"))?
            .finish()?;
    }
    staging.commit()?;
    Ok(summary)
}

/// `pki device new --self-signed`: devices with self-signed certificates,
/// for individual enrollments.
pub fn new_self_signed(layout: &Layout, plan: &DevicePlan) -> Result<Summary> {
    recover(layout.base())?;
    check_devices_absent(layout, plan)?;
    check_validity(&plan.validity)?;
    ensure_own_dir(&layout.certs_dir(), Mode::Public)?;
    ensure_own_dir(&layout.private_dir(), Mode::Secret)?;
    let staging = Staging::new(layout.base())?;
    add_devices(
        layout,
        staging,
        plan,
        Signer {
            ca: None,
            chain_pem: "",
            chain_der: &[],
        },
        &|| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_ids_are_made_on_demand_and_checked_against_listed_ones() {
        let ids = DeviceIds::from(vec!["gate".to_string()]).with_numbered("dev-", 3, 1);
        let all: Vec<String> = ids.iter().map(|c| c.into_owned()).collect();
        assert_eq!(all, ["gate", "dev-0001", "dev-0002", "dev-0003"]);
        assert_eq!(
            numbered_ids("dev-", 3, 1),
            ["dev-0001", "dev-0002", "dev-0003"]
        );
        assert_eq!(numbered_ids("d", 2, 9999), ["d09999", "d10000"]);
        assert_eq!(ids.len(), 4);
        assert!(ids.get(4).is_none());
        assert_eq!(ids.numbered().count(), 3);
        check_unique(&ids).unwrap();

        // A listed ID equal to a numbered one, in any case, is a duplicate.
        let dup = DeviceIds::from(vec!["DEV-0002".to_string()]).with_numbered("dev-", 3, 1);
        let err = check_unique(&dup).unwrap_err();
        assert!(
            err.to_string().contains("`DEV-0002` is listed twice"),
            "{err}"
        );
        let dup = DeviceIds::from(vec!["dev-0003".to_string()]).with_numbered("DEV-", 3, 1);
        assert!(check_unique(&dup).is_err());
        // Outside the numbered range, or another width, it is not.
        for other in [
            "dev-0004",
            "dev-0000",
            "dev-02",
            "dev-00002",
            "dev-+002",
            "dev-",
        ] {
            let ok = DeviceIds::from(vec![other.to_string()]).with_numbered("dev-", 3, 1);
            check_unique(&ok).unwrap();
        }
        let twice = DeviceIds::from(vec!["a".to_string(), "A".to_string()]);
        assert!(check_unique(&twice).is_err());
        let none = DeviceIds::from(vec!["dev-0001".to_string()]).with_numbered("dev-", 0, 1);
        assert!(none.numbered().next().is_none());
        check_unique(&none).unwrap();
    }
}
