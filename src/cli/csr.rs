//! `pki csr new`: a device key and a PKCS#10 CSR for it, the way a factory
//! line or a secure element would make one, for `pki device new --csr` or
//! DPS certificate issuance (`pki register --csr FILE`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::Output;
use crate::csr;
use crate::error::{Error, Result};
use crate::fsio::{Mode, Staging, ensure_dir};
use crate::keys::{KeyType, private_key_pem};
use crate::regid::RegistrationId;

/// Subcommands of `pki csr`.
#[derive(Debug, Subcommand)]
pub enum CsrCommand {
    /// Make a key and a CSR with CN = the registration ID.
    #[command(after_help = "Examples:
  A P-384 key and CSR (what DPS certificate issuance wants) in ./csr and ./private:
    pki csr new sensor-17
  Also the one-line base64 DER form for a DPS register body's `csr` field:
    pki csr new sensor-17 --der
  Then sign it under a chain, as a factory line's CA would:
    pki device new --csr csr/sensor-17.csr.pem")]
    New(CsrNewArgs),
}

/// Arguments of `pki csr new`.
#[derive(Debug, Args)]
pub struct CsrNewArgs {
    /// Registration ID of the device: the CSR's CN.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Key type (DPS certificate issuance accepts only ec-p384).
    #[arg(long, value_name = "TYPE", default_value = "ec-p384")]
    pub key: KeyType,

    /// Directory to write `csr/<id>.csr.pem` and `private/<id>.key.pem` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// Encrypt the private key (PKCS#8, PBES2 AES-256-CBC) with this password.
    #[arg(
        long,
        env = "PKI_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub key_password: Option<String>,

    /// Also write `csr/<id>.csr.b64`: base64 DER on one line, as DPS's `csr` field wants.
    #[arg(long)]
    pub der: bool,

    /// Replace existing files for this ID.
    #[arg(long)]
    pub force: bool,

    /// No notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The files of one CSR under `base`.
pub struct CsrFiles {
    pub csr: PathBuf,
    pub b64: PathBuf,
    pub key: PathBuf,
}

impl CsrFiles {
    pub fn new(base: &Path, id: &str) -> CsrFiles {
        CsrFiles {
            csr: base.join("csr").join(format!("{id}.csr.pem")),
            b64: base.join("csr").join(format!("{id}.csr.b64")),
            key: base.join("private").join(format!("{id}.key.pem")),
        }
    }
}

pub fn run(cmd: CsrCommand) -> Result<()> {
    let CsrCommand::New(args) = cmd;
    let out = Output { quiet: args.quiet };
    let (id, warning) = RegistrationId::parse_cn(&args.id)?;
    let files = CsrFiles::new(&args.out, id.as_str());
    if !args.force
        && let Some(existing) = [&files.csr, &files.key, &files.b64]
            .into_iter()
            .find(|p| p.exists())
    {
        return Err(Error::input(format!(
            "{} already exists; pass --force to replace it, or choose another ID",
            existing.display()
        )));
    }
    let key = args.key.generate()?;
    let request = csr::build(&id, &key)?;
    let key_pem = private_key_pem(&key, args.key_password.as_deref())?;
    ensure_dir(&args.out.join("csr"), Mode::Public)?;
    ensure_dir(&args.out.join("private"), Mode::Secret)?;
    let staging = Staging::new(&args.out)?;
    staging.write(&files.key, key_pem.as_bytes(), Mode::Secret)?;
    staging.write(&files.csr, request.pem().as_bytes(), Mode::Public)?;
    if args.der {
        let line = format!("{}\n", request.base64_der());
        staging.write(&files.b64, line.as_bytes(), Mode::Public)?;
    }
    staging.commit()?;
    if let Some(w) = warning {
        out.warn(w);
    }
    println!("CSR      {}  (CN={id}, {})", files.csr.display(), args.key);
    if args.der {
        println!("CSR b64  {}", files.b64.display());
    }
    println!("Key      {}", files.key.display());
    out.note(format!(
        "Next: pki device new --csr {}   (or pki register --csr {})",
        files.csr.display(),
        files.csr.display()
    ));
    Ok(())
}
