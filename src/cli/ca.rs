//! `pki ca`: the DPS CA certificate store on the management plane (ARM):
//! upload, proof of possession in one command (`verify`), show, list, delete.
//!
//! The bearer token comes only from `AZURE_ACCESS_TOKEN` (never a flag, so it
//! is not visible in the process list) and is never printed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::args::{NetArgs, block_on, warn};
use super::ca_select::CaSelectArgs;
use crate::ca_dir::{self, CaFiles, IssuerChoice};
use crate::dps::arm::{self, ArmClient, ArmTarget};
use crate::dps::enrollment::{CertInput, load_cert};
use crate::dps::pop;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Subcommands of `pki ca`.
#[derive(Debug, clap::Subcommand)]
#[command(
    after_help = "Authentication: export AZURE_ACCESS_TOKEN=$(az account get-access-token --query accessToken -o tsv)\n\n\
Examples:\n  \
pki ca upload my-root --cert certs/azure-iot-test-only.root.ca.cert.pem $ARM\n  \
pki ca verify my-intermediate --issuer intermediate $ARM   # proof of possession\n  \
pki ca list $ARM\n\
where ARM=\"--subscription $SUB --resource-group rg --dps-name my-dps\""
)]
pub enum CaCommand {
    /// Rotation rehearsal: a new CA key and certificate beside the old one (no network).
    ///
    /// `intermediate`: a new intermediate under the same root. `root`: a new root and a new
    /// intermediate under it. The old files move to `…previous.cert.pem` / `…previous.key.pem`,
    /// the manifest records both, and new devices are signed by the new CA.
    #[command(after_help = "Rotation walkthrough (see the README):
  pki ca roll intermediate
  pki enroll fleet --cert certs/azure-iot-test-only.intermediate.cert.pem \\
    --secondary-cert certs/azure-iot-test-only.intermediate.previous.cert.pem
  pki device renew device-0001      # re-issue under the new CA, same key
  pki register …                    # re-register with the new certificate
  pki enroll fleet --cert certs/azure-iot-test-only.intermediate.cert.pem \\
    --drop-secondary                # old-chain devices are refused from now on")]
    Roll(RollArgs),
    /// Upload (or replace) a CA certificate in the DPS certificate store.
    #[command(
        after_help = "Example (Azure; AZURE_ACCESS_TOKEN exported as `pki ca --help` shows):\n  pki ca upload my-root --cert certs/azure-iot-test-only.root.ca.cert.pem \\\n    --subscription $SUB --resource-group rg --dps-name my-dps"
    )]
    Upload {
        /// Name of the certificate in DPS.
        name: String,
        /// The CA certificate (PEM or DER; no private key).
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
        /// Mark it verified on upload (skips proof of possession).
        #[arg(long)]
        verified: bool,
        /// Accept an expired certificate.
        #[arg(long)]
        allow_expired: bool,
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        arm: ArmArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Prove possession: get a verification code, sign a certificate for it with the CA's key, submit it.
    ///
    /// Uploads the CA certificate first if NAME does not exist yet.
    #[command(
        after_help = "Example, against the emulator (it accepts any token):\n  AZURE_ACCESS_TOKEN=local pki ca verify my-intermediate --issuer intermediate \\\n    --arm-endpoint https://localhost:8443 --subscription sub --resource-group rg \\\n    --dps-name dps --ca-file dps-emulator/ca.pem"
    )]
    Verify {
        /// Name of the certificate in DPS.
        name: String,
        /// The CA to prove (default: the one in --ca-dir whose thumbprint matches NAME in DPS).
        #[command(flatten)]
        ca: CaSelectArgs,
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        arm: ArmArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Show one certificate of the store.
    #[command(
        after_help = "Example:\n  pki ca show my-root --subscription $SUB --resource-group rg --dps-name my-dps"
    )]
    Show {
        name: String,
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        arm: ArmArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List the certificates of the store.
    #[command(
        after_help = "Example:\n  pki ca list --json --subscription $SUB --resource-group rg --dps-name my-dps"
    )]
    List {
        /// Print the service's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        arm: ArmArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Delete a certificate from the store.
    #[command(
        after_help = "Example:\n  pki ca delete my-root --subscription $SUB --resource-group rg --dps-name my-dps"
    )]
    Delete {
        name: String,
        /// Delete only if its etag is still this one (default: the current etag).
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
        #[command(flatten)]
        arm: ArmArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// Which DPS resource to manage.
#[derive(Debug, clap::Args)]
pub struct ArmArgs {
    /// Management endpoint (the emulator's URL for local tests).
    #[arg(long, default_value = arm::DEFAULT_ENDPOINT, value_name = "URL")]
    arm_endpoint: String,
    /// Azure subscription ID.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID", value_name = "ID")]
    subscription: String,
    /// Resource group of the DPS.
    #[arg(long, value_name = "NAME")]
    resource_group: String,
    /// Name of the DPS resource.
    #[arg(long, value_name = "NAME")]
    dps_name: String,
    /// Allow an http:// --arm-endpoint on a loopback host (a local test server; the token travels in clear).
    #[arg(long)]
    insecure_http: bool,
}

impl ArmArgs {
    fn client(&self, net: &NetArgs) -> Result<ArmClient> {
        let token = std::env::var("AZURE_ACCESS_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::input(
                    "no bearer token: export AZURE_ACCESS_TOKEN=$(az account get-access-token --query accessToken -o tsv)",
                )
            })?;
        if let Some(w) = crate::dps::http::check_endpoint(
            &self.arm_endpoint,
            "--arm-endpoint",
            self.insecure_http,
        )? {
            warn(w);
        }
        ArmClient::new(
            ArmTarget {
                endpoint: self.arm_endpoint.clone(),
                subscription: self.subscription.clone(),
                resource_group: self.resource_group.clone(),
                dps_name: self.dps_name.clone(),
                token,
            },
            net.options(),
        )
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::input(format!(
            "`{name}` is not a valid certificate name: use letters, digits, - _ . (at most 256)"
        )));
    }
    Ok(())
}

fn etag_of(v: &Value) -> Option<String> {
    v.get("etag").and_then(Value::as_str).map(str::to_string)
}

pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Roll(a) => roll(a),
        CaCommand::Upload {
            name,
            cert,
            verified,
            allow_expired,
            json,
            arm,
            net,
        } => {
            check_name(&name)?;
            let c = read_ca_cert(&cert, allow_expired)?;
            let client = arm.client(&net)?;
            let stored = block_on(async {
                let existing = client.get(&name).await?;
                let etag = existing.as_ref().and_then(etag_of);
                client
                    .upload(&name, &c.pem, verified, etag.as_deref())
                    .await
            })??;
            show(&stored, json);
            Ok(())
        }
        CaCommand::Verify {
            name,
            ca,
            json,
            arm,
            net,
        } => {
            check_name(&name)?;
            let candidates = issuer_candidates(&ca)?;
            let client = arm.client(&net)?;
            let stored = block_on(pop::prove(
                &client,
                &name,
                &candidates,
                ca.ca_key_password.as_deref(),
                &|msg| eprintln!("{msg}"),
            ))??;
            show(&stored, json);
            Ok(())
        }
        CaCommand::Show {
            name,
            json,
            arm,
            net,
        } => {
            check_name(&name)?;
            let client = arm.client(&net)?;
            match block_on(client.get(&name))?? {
                Some(v) => show(&v, json),
                None => {
                    return Err(Error::Service(format!(
                        "certificate `{name}` is not in the DPS certificate store"
                    )));
                }
            }
            Ok(())
        }
        CaCommand::List { json, arm, net } => {
            let client = arm.client(&net)?;
            let certs = block_on(client.list())??;
            if json {
                print_json(&Value::Array(certs));
            } else if certs.is_empty() {
                eprintln!("no certificates");
            } else {
                for c in &certs {
                    let s = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or("-");
                    let v = c.pointer("/properties/isVerified") == Some(&Value::Bool(true));
                    println!(
                        "{:<32} {:<10} {:<40} {}",
                        s("/name"),
                        if v { "verified" } else { "unverified" },
                        s("/properties/thumbprint"),
                        s("/properties/subject")
                    );
                }
            }
            Ok(())
        }
        CaCommand::Delete {
            name,
            if_match,
            arm,
            net,
        } => {
            check_name(&name)?;
            let client = arm.client(&net)?;
            block_on(async {
                let etag = match if_match {
                    Some(e) => e,
                    None => {
                        let v = client.get(&name).await?.ok_or_else(|| {
                            Error::Service(format!(
                                "certificate `{name}` is not in the DPS certificate store"
                            ))
                        })?;
                        etag_of(&v).unwrap_or_else(|| "*".into())
                    }
                };
                client.delete(&name, &etag).await
            })??;
            println!("deleted certificate {name}");
            Ok(())
        }
    }
}

fn show(v: &Value, json: bool) {
    if json {
        print_json(v);
    } else {
        print!("{}", arm::summary(v));
    }
}

fn read_ca_cert(path: &Path, allow_expired: bool) -> Result<CertInput> {
    let what = path.display().to_string();
    let c = load_cert(&crate::fsio::read_input(path)?, &what, allow_expired)?;
    if !c.is_ca {
        warn(format!(
            "{what} ({}) is not a CA certificate; DPS expects the root or intermediate that signs devices",
            c.subject
        ));
    }
    super::args::warn_if_seeded(path, &what, &c.subject, &c.sha1);
    Ok(c)
}

/// The CAs `--ca-dir`/`--issuer`/`--ca-key` name (every CA of the
/// directory when no `--issuer` is given).
fn issuer_candidates(ca: &CaSelectArgs) -> Result<Vec<CaFiles>> {
    if matches!(ca.issuer, Some(IssuerChoice::Path(_))) && ca.ca_key.is_none() {
        return Err(Error::input(
            "--issuer PATH needs the CA's key as --ca-key KEY",
        ));
    }
    ca_dir::resolve(
        &Layout::new(&ca.ca_dir),
        ca.issuer.as_ref(),
        ca.ca_key.as_deref(),
    )
}

/// Arguments of `pki ca roll`.
#[derive(Debug, clap::Args)]
pub struct RollArgs {
    /// Which CA to replace.
    pub kind: crate::rotate::RollKind,
    /// The CA directory.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Validity of the new CA certificates in days.
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    pub days: u32,
    #[command(flatten)]
    pub validity: super::args::ValidityArgs,
    /// Password of the CA keys (old ones are opened with it, new ones encrypted with it).
    #[arg(
        long,
        env = "PKI_CA_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub ca_key_password: Option<String>,
    /// Replace `…previous…` files left by an earlier roll.
    #[arg(long)]
    pub force: bool,
}

fn roll(a: RollArgs) -> Result<()> {
    // The new keys are of the old CAs' types: an RSA CA is refused when its key is made.
    a.validity.check_seed(&[], false)?;
    let layout = Layout::new(&a.ca_dir);
    let rolled = crate::rotate::roll(
        &layout,
        a.kind,
        &a.validity.validity(a.days),
        a.ca_key_password.as_deref(),
        a.force,
    )?;
    for n in &rolled.notes {
        warn(n);
    }
    for (label, new, old) in &rolled.files {
        println!("{label:<16} {} (new)", new.display());
        println!(
            "{:<16} {} (previous, kept for the overlap)",
            "",
            old.display()
        );
    }
    println!("{:<16} {}", "CA chain", layout.chain_cert().display());
    println!("{:<16} {}", "Manifest", layout.manifest().display());
    eprintln!(
        "Next: give the group the new certificate as primary and the previous one as secondary, then `pki device renew ID…`"
    );
    Ok(())
}
