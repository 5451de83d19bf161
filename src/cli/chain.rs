//! `pki chain new`: its arguments and the call to [`crate::chain::new_chain`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{DeviceArgs, progress};
use super::output::print_summary;
use crate::chain::{self, CERTGEN_INTERMEDIATE_CN, CERTGEN_ROOT_CN, ChainPlan};
use crate::error::Result;
use crate::keys::KeyType;
use crate::layout::Layout;

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
    pki chain new --intermediates 2 --device-key rsa-2048 \\
      --device thermostat-1 --device thermostat-2
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
    args.devices.validity.check_seed(
        &[
            args.ca_key.unwrap_or(key),
            args.devices.device_key.unwrap_or(key),
        ],
        !args.devices.no_pfx,
    )?;
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
