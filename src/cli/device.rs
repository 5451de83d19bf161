//! `pki device new`: devices under an existing CA directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{DeviceArgs, check_ids, progress};
use super::ca_select::CaSelectArgs;
use super::output::print_summary;
use crate::chain::{self, DeviceIds};
use crate::error::Result;
use crate::keys::KeyType;
use crate::layout::Layout;

/// Subcommands of `pki device`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Issue devices under an existing CA (pki, certGen.sh or openssl made).
    #[command(after_help = "Examples:
  Two more devices under the lowest intermediate of ./certs:
    pki device new sensor-17 sensor-18
  Under a certGen.sh directory (encrypted CA keys, password 1234), signed by its intermediate:
    pki device new --ca-dir ~/certGen --ca-key-password 1234 new-device-01
  A self-signed device for an individual enrollment:
    pki device new --self-signed lonely-device
  Sign CSRs from a factory line (keys stay in the devices), one file or a directory:
    pki device new --csr line7/sensor-17.csr.pem
    pki device new --csr line7/")]
    New(DeviceNewArgs),
    /// Re-issue existing devices under the current CA (after `pki ca roll`), keeping or
    /// replacing their keys; certificate, full chain and PFX are replaced together.
    #[command(after_help = "Examples:
  pki device renew device-0001 device-0002
  pki device renew --new-key --days 90 sensor-17")]
    Renew(DeviceRenewArgs),
}

/// Arguments of `pki device renew`.
#[derive(Debug, Args)]
pub struct DeviceRenewArgs {
    /// Registration IDs of the devices to renew.
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// The signing CA (default: the lowest intermediate, or the root when there is none).
    #[command(flatten)]
    pub ca: CaSelectArgs,
    /// Replace each device's key with a new one of this type.
    #[arg(long, value_name = "TYPE", num_args = 0..=1, default_missing_value = "ec-p256")]
    pub new_key: Option<KeyType>,
    /// Validity of the new certificates in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
    #[command(flatten)]
    pub validity: super::args::ValidityArgs,
    /// Password of the device keys.
    #[arg(
        long,
        env = "PKI_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub key_password: Option<String>,
    /// Password of the `<id>.cert.pfx` files.
    #[arg(long, value_name = "PASSWORD", default_value = super::args::DEFAULT_PFX_PASSWORD, hide_default_value = true)]
    pub pfx_password: String,
    /// Do not write `<id>.cert.pfx` files.
    #[arg(long)]
    pub no_pfx: bool,
}

/// Arguments of `pki device new`.
#[derive(Debug, Args)]
pub struct DeviceNewArgs {
    /// Registration IDs of the devices to issue.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,

    /// The signing CA (default: the lowest intermediate, or the root when there is none).
    #[command(flatten)]
    pub ca: CaSelectArgs,

    /// Key type of the devices.
    #[arg(long, value_name = "TYPE", default_value = "ec-p256")]
    pub key: KeyType,

    /// Self-signed device certificates (for individual enrollments); no CA needed.
    #[arg(long, conflicts_with_all = ["issuer", "ca_key", "ca_key_password"])]
    pub self_signed: bool,

    /// Re-issue devices whose files exist.
    #[arg(long)]
    pub force: bool,

    /// Sign these PKCS#10 CSRs (PEM or DER files, or directories of `*.csr`,
    /// `*.csr.pem`, `*.req`, `*.csr.der`) instead of making keys; no key or PFX is written.
    #[arg(long, value_name = "FILE|DIR", num_args = 1.., conflicts_with_all = ["ids", "self_signed", "key"])]
    pub csr: Vec<PathBuf>,

    /// With one --csr: the registration ID (certificate CN) to use instead of the CSR's CN.
    #[arg(long, value_name = "ID", requires = "csr")]
    pub cn: Option<String>,

    #[command(flatten)]
    pub devices: DeviceArgs,
}

pub fn run(cmd: DeviceCommand) -> Result<()> {
    let args = match cmd {
        DeviceCommand::New(args) => args,
        DeviceCommand::Renew(args) => return renew(&args),
    };
    if !args.csr.is_empty() {
        return run_csr(&args);
    }
    let out = args.devices.output();
    let mut listed = args.ids.clone();
    listed.extend(args.devices.device.iter().cloned());
    let ids = args.devices.with_numbered(DeviceIds::from(listed));
    let warnings = check_ids(&ids)?;
    if ids.is_empty() {
        return Err(crate::Error::input(
            "no devices named: give registration IDs (`pki device new sensor-1`) or --devices N",
        ));
    }
    args.devices.validity.check_seed(
        &[args.devices.device_key.unwrap_or(args.key)],
        !args.devices.no_pfx,
    )?;
    let layout = Layout::new(&args.ca.ca_dir);
    let plan = args.devices.plan(
        ids,
        args.devices.device_key.unwrap_or(args.key),
        args.devices.days.unwrap_or(365),
        args.force,
    );
    let mut summary = if args.self_signed {
        chain::new_self_signed(&layout, &plan)?
    } else {
        let loaded = args.ca.load_device_issuer(&layout)?;
        let bar = progress(plan.ids.len(), &out);
        let s = chain::new_devices(&layout, &loaded, &plan, &|| bar.inc(1))?;
        bar.finish_and_clear();
        s
    };
    summary.notes.splice(0..0, warnings);
    print_summary(&summary, &layout, &plan, args.devices.json, &out)
}

/// `pki device new --csr`: signs external CSRs; every CSR and option is
/// checked before anything is written.
fn run_csr(args: &DeviceNewArgs) -> Result<()> {
    let d = &args.devices;
    if !d.device.is_empty() || d.devices.is_some() || d.device_key.is_some() {
        return Err(crate::Error::input(
            "--csr signs the CSRs' own keys: drop --device, --devices and --device-key",
        ));
    }
    if d.key_password.is_some() {
        return Err(crate::Error::input(
            "--csr writes no private key, so --key-password has nothing to encrypt; drop it",
        ));
    }
    // The keys are the CSRs' own and no PFX is written: only the serials are seeded.
    d.validity.check_seed(&[], false)?;
    let out = d.output();
    let (requests, warnings) = crate::chain_csr::collect(&args.csr, args.cn.as_deref())?;
    let days = d.days.unwrap_or(365);
    let validity = d.validity.validity(days);
    crate::issue::check_validity(&validity)?;
    let layout = Layout::new(&args.ca.ca_dir);
    let loaded = args.ca.load_device_issuer(&layout)?;
    let mut summary = crate::chain_csr::sign(&layout, &loaded, &requests, &validity, args.force)?;
    summary.notes.splice(0..0, warnings);
    let mut plan = d.plan(DeviceIds::default(), KeyType::EcP384, days, args.force);
    plan.pfx = None;
    print_summary(&summary, &layout, &plan, d.json, &out)
}

/// `pki device renew`.
fn renew(args: &DeviceRenewArgs) -> Result<()> {
    check_ids(&DeviceIds::from(args.ids.clone()))?;
    args.validity
        .check_seed(args.new_key.as_slice(), !args.no_pfx)?;
    let layout = Layout::new(&args.ca.ca_dir);
    let loaded = args.ca.load_device_issuer(&layout)?;
    let plan = crate::rotate::RenewPlan {
        ids: args.ids.clone(),
        new_key: args.new_key,
        validity: args.validity.validity(args.days),
        key_password: args.key_password.clone(),
        pfx: (!args.no_pfx).then(|| crate::pfx::PfxOptions {
            password: args.pfx_password.clone(),
            legacy: false,
        }),
    };
    let summary = crate::rotate::renew(&layout, &loaded, &plan)?;
    for n in &summary.notes {
        super::args::warn(n);
    }
    for e in &summary.issued {
        println!(
            "renewed {} under {} (until {}{})",
            e.common_name,
            e.issuer,
            e.not_after,
            if args.new_key.is_some() {
                ", new key"
            } else {
                ", same key"
            }
        );
    }
    Ok(())
}
