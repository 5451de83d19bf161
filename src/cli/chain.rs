//! `pki chain new`: arguments, and the summary printed after a run.
//! Also the device options shared with `pki device new`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Output;
use crate::chain::{
    self, CERTGEN_INTERMEDIATE_CN, CERTGEN_ROOT_CN, ChainPlan, DevicePlan, Summary,
};
use crate::error::Result;
use crate::keys::KeyType;
use crate::layout::Layout;
use crate::pfx::PfxOptions;

/// The PFX password the DPS tutorial and certGen.sh use.
const DEFAULT_PFX_PASSWORD: &str = "1234";

/// Most devices one run issues (a bigger run is almost certainly a typo).
pub const MAX_DEVICES: i64 = 1_000_000;

/// Subcommands of `pki chain`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Make a root CA, intermediate CA(s) and device certificates.
    #[command(after_help = "Examples:
  Root, one intermediate and device-0001 (EC P-256) in ./certs and ./private:
    pki chain new
  1000 devices device-0001 … device-1000, no PFX files:
    pki chain new --devices 1000 --no-pfx
  Named devices with RSA-2048 keys under two intermediates:
    pki chain new --intermediates 2 --device-key rsa-2048 --device thermostat-1 --device thermostat-2
  Exactly what certGen.sh makes (RSA-4096, its CNs, 30 days), into ./lab:
    pki chain new --certgen --out lab

Files (certGen.sh and DPS tutorial names):
  certs/azure-iot-test-only.root.ca.cert.pem      private/azure-iot-test-only.root.ca.key.pem
  certs/azure-iot-test-only.intermediate.cert.pem private/azure-iot-test-only.intermediate.key.pem
  certs/azure-iot-test-only.chain.ca.cert.pem     (intermediates, then root)
  certs/<id>.cert.pem  certs/<id>-full-chain.cert.pem  certs/<id>.cert.pfx  private/<id>.key.pem
  certs/manifest.json  (every certificate: subject, serial, validity, thumbprints, files)")]
    New(ChainNewArgs),
}

/// Arguments of `pki chain new`.
#[derive(Debug, Args)]
pub struct ChainNewArgs {
    /// Directory to write `certs/` and `private/` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// Number of intermediate CAs between the root and the devices (0: devices signed by the root).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=8))]
    pub intermediates: u8,

    /// Key type of every certificate (CAs and devices).
    #[arg(long, value_name = "TYPE")]
    pub key: Option<KeyType>,

    /// Key type of the CAs (overrides --key).
    #[arg(long, value_name = "TYPE")]
    pub ca_key: Option<KeyType>,

    /// Validity of the CAs in days.
    #[arg(long, value_name = "DAYS")]
    pub ca_days: Option<u32>,

    /// Root CA common name.
    #[arg(long, value_name = "CN")]
    pub root_cn: Option<String>,

    /// Intermediate CA common name (further intermediates get " 2", " 3", …).
    #[arg(long, value_name = "CN")]
    pub intermediate_cn: Option<String>,

    /// certGen.sh parity: RSA-4096 keys, its CNs ("Azure IoT Hub CA Cert Test Only", …), 30-day certificates.
    /// Explicit options still win.
    #[arg(long)]
    pub certgen: bool,

    /// Also make an IoT Edge device CA (CN `NAME.ca`, CA:TRUE, pathlen 0) under the lowest intermediate
    /// (the CAs above it then allow one more level, so it can sign).
    #[arg(long, value_name = "NAME")]
    pub edge_ca: Option<String>,

    /// Replace an existing CA in --out (its devices stop chaining to the new one).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub devices: DeviceArgs,
}

/// Device options shared by `pki chain new` and `pki device new`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// A device to issue, by registration ID (repeatable). Also its certificate CN.
    #[arg(long = "device", value_name = "ID")]
    pub device: Vec<String>,

    /// Issue N devices named PREFIX0001, PREFIX0002, … (0 for none).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(0..=MAX_DEVICES))]
    pub devices: Option<u32>,

    /// Name prefix for --devices.
    #[arg(long, value_name = "PREFIX", default_value = "device-")]
    pub prefix: String,

    /// Key type of the device keys (overrides --key).
    #[arg(long, value_name = "TYPE")]
    pub device_key: Option<KeyType>,

    /// Validity of device certificates in days (never beyond the issuer's).
    #[arg(long, value_name = "DAYS")]
    pub days: Option<u32>,

    /// Encrypt private keys (PKCS#8, PBES2 AES-256-CBC) with this password.
    #[arg(
        long,
        env = "PKI_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub key_password: Option<String>,

    /// Password of the `<id>.cert.pfx` files (default "1234", as in the DPS tutorial).
    #[arg(
        long,
        value_name = "PASSWORD",
        default_value = DEFAULT_PFX_PASSWORD,
        hide_default_value = true,
        conflicts_with = "no_pfx"
    )]
    pub pfx_password: String,

    /// Write PFX files with 3DES and a SHA-1 MAC, for Windows Server 2016 and Java 8.
    #[arg(long, conflicts_with = "no_pfx")]
    pub pfx_legacy: bool,

    /// Do not write `<id>.cert.pfx` files.
    #[arg(long)]
    pub no_pfx: bool,

    /// Print the manifest entries of what was issued as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No notes or progress bar on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl DeviceArgs {
    /// The registration IDs to issue, checked against DPS's rules, and the
    /// warnings to print once the run has succeeded.
    pub fn ids(&self, default: &[&str]) -> Result<(Vec<String>, Vec<String>)> {
        let mut ids = self.device.clone();
        if let Some(n) = self.devices {
            ids.extend(chain::numbered_ids(&self.prefix, n as usize, 1));
        }
        if self.device.is_empty() && self.devices.is_none() {
            ids.extend(default.iter().map(|s| s.to_string()));
        }
        let warnings = check_ids(&ids)?;
        Ok((ids, warnings))
    }

    /// The device plan, given resolved defaults.
    pub fn plan(&self, ids: Vec<String>, key: KeyType, days: u32, force: bool) -> DevicePlan {
        DevicePlan {
            ids,
            key,
            days,
            key_password: self.key_password.clone(),
            pfx: (!self.no_pfx).then(|| PfxOptions {
                password: self.pfx_password.clone(),
                legacy: self.pfx_legacy,
            }),
            force,
            keep_entries: self.json,
        }
    }

    /// Output settings.
    pub fn output(&self) -> Output {
        Output { quiet: self.quiet }
    }
}

/// Checks registration IDs against DPS's rules and for duplicates, and
/// returns the warnings (upper case) to print once every check has passed,
/// so a refused run prints only its one error line.
pub fn check_ids(ids: &[String]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for id in ids {
        if let Some(w) = crate::regid::check_registration_id(id)? {
            warnings.push(w);
        }
    }
    chain::check_unique(ids)?;
    Ok(warnings)
}

/// A progress bar on stderr for bulk runs, only when stderr is a terminal.
pub fn progress(total: usize, out: &Output) -> indicatif::ProgressBar {
    if out.quiet || total < 20 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} devices ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

pub fn run(cmd: ChainCommand) -> Result<()> {
    match cmd {
        ChainCommand::New(args) => new(args),
    }
}

fn new(args: ChainNewArgs) -> Result<()> {
    let out = args.devices.output();
    let (default_key, default_days, default_ca_days) = if args.certgen {
        (KeyType::Rsa4096, 30, 30)
    } else {
        (KeyType::EcP256, 365, 3650)
    };
    let key = args.key.unwrap_or(default_key);
    let (ids, warnings) = args.devices.ids(&["device-0001"])?;
    let plan = ChainPlan {
        out: args.out.clone(),
        intermediates: usize::from(args.intermediates),
        ca_key: args.ca_key.unwrap_or(key),
        ca_days: args.ca_days.unwrap_or(default_ca_days),
        root_cn: args.root_cn.clone().unwrap_or_else(|| {
            if args.certgen {
                CERTGEN_ROOT_CN.into()
            } else {
                "pki Test Only Root CA".into()
            }
        }),
        intermediate_cn: args.intermediate_cn.clone().unwrap_or_else(|| {
            if args.certgen {
                CERTGEN_INTERMEDIATE_CN.into()
            } else {
                "pki Test Only Intermediate CA".into()
            }
        }),
        key_password: args.devices.key_password.clone(),
        force: args.force,
        devices: args.devices.plan(
            ids,
            args.devices.device_key.unwrap_or(key),
            args.devices.days.unwrap_or(default_days),
            args.force,
        ),
        edge_ca: args.edge_ca.clone(),
    };
    let bar = progress(plan.devices.ids.len(), &out);
    let mut summary = chain::new_chain(&plan, &|| bar.inc(1))?;
    bar.finish_and_clear();
    summary.notes.splice(0..0, warnings);
    print_summary(
        &summary,
        &Layout::new(&args.out),
        &plan.devices,
        args.devices.json,
        &out,
    )
}

/// Prints what was issued: a short table, or JSON with --json.
pub fn print_summary(
    summary: &Summary,
    layout: &Layout,
    devices: &DevicePlan,
    json: bool,
    out: &Output,
) -> Result<()> {
    for note in &summary.notes {
        out.warn(note);
    }
    if json {
        let text = serde_json::to_string_pretty(&summary.issued)
            .map_err(|e| crate::Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let shown = |p: String| layout.base().join(p).display().to_string();
    let device_count = summary.device_count;
    for e in &summary.issued {
        let label = match e.role.as_str() {
            "root-ca" => "Root CA",
            "intermediate-ca" => "Intermediate CA",
            "edge-ca" => "Edge device CA",
            _ => continue,
        };
        println!(
            "{label:<16} {}  ({}, {}, until {})",
            shown(e.files.get("cert").cloned().unwrap_or_default()),
            e.subject,
            e.key,
            e.not_after.get(..10).unwrap_or(&e.not_after)
        );
    }
    if summary
        .issued
        .iter()
        .any(|e| e.role == "intermediate-ca" || e.role == "root-ca")
    {
        println!("{:<16} {}", "CA chain", layout.chain_cert().display());
    }
    if let (Some(first), Some(last)) = (&summary.first_device, &summary.last_device) {
        let range = if device_count == 1 {
            first.common_name.clone()
        } else {
            format!("{} … {}", first.common_name, last.common_name)
        };
        // List the files each device actually got (self-signed ones have no chain).
        let kinds = [
            ("cert", "certs/<id>.cert.pem"),
            ("fullChain", "certs/<id>-full-chain.cert.pem"),
            ("pfx", "certs/<id>.cert.pfx"),
            ("key", "private/<id>.key.pem"),
        ];
        let listed: Vec<&str> = kinds
            .iter()
            .filter(|(k, _)| first.files.contains_key(*k))
            .map(|(_, name)| *name)
            .collect();
        println!(
            "{:<16} {device_count} ({range}, {}, until {}): {}",
            "Devices",
            first.key,
            first.not_after.get(..10).unwrap_or(&first.not_after),
            listed.join(", ")
        );
        if let Some(pfx) = &devices.pfx {
            // Say the tutorial's well-known default once; never echo a password the user chose.
            let password = if pfx.password == DEFAULT_PFX_PASSWORD {
                format!(
                    "\"{DEFAULT_PFX_PASSWORD}\" (the tutorial's default; set your own with --pfx-password)"
                )
            } else {
                "as given with --pfx-password".to_string()
            };
            let legacy = if pfx.legacy {
                ", legacy 3DES/SHA-1"
            } else {
                ""
            };
            println!("{:<16} {password}{legacy}", "PFX password");
        }
        out.note(match first.files.get("fullChain") {
            Some(chain) => format!("Next: pki inspect --chain {}", shown(chain.clone())),
            None => format!(
                "Next: pki inspect {}",
                shown(first.files.get("cert").cloned().unwrap_or_default())
            ),
        });
    }
    println!("{:<16} {}", "Manifest", layout.manifest().display());
    out.note("These are test certificates: do not use them in production.");
    Ok(())
}
