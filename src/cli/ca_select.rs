//! The options that pick a CA to sign with (`--ca-dir`, `--issuer`,
//! `--ca-key`, `--ca-key-password`), shared by `pki device new`,
//! `pki verify-code` and `pki ca verify`. Each command applies its own
//! default issuer.

use std::path::PathBuf;

use clap::Args;

use crate::chain::{self, IssuerChoice, LoadedCa};
use crate::error::Result;
use crate::layout::Layout;

/// Which CA of a directory signs, and how to read its key.
#[derive(Debug, Args)]
pub struct CaSelectArgs {
    /// The CA directory (certs/ and private/ from `pki chain new` or certGen.sh).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub ca_dir: PathBuf,

    /// Which CA signs: `root`, `intermediate` (the lowest one), or a CA certificate file.
    #[arg(long, value_name = "root|intermediate|PATH", value_parser = parse_issuer)]
    pub issuer: Option<IssuerChoice>,

    /// The signing CA's key file, when it is not in private/ next to its certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,

    /// Password of the CA key (certGen.sh uses 1234).
    #[arg(
        long,
        env = "PKI_CA_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub ca_key_password: Option<String>,
}

impl CaSelectArgs {
    /// Loads the chosen CA of `layout`, the lowest intermediate unless
    /// `--issuer` says otherwise (the default of the device commands).
    pub fn load_device_issuer(&self, layout: &Layout) -> Result<LoadedCa> {
        chain::load_issuer(
            layout,
            self.issuer.as_ref().unwrap_or(&IssuerChoice::Intermediate),
            self.ca_key.as_deref(),
            self.ca_key_password.as_deref(),
        )
    }
}

/// Parses `--issuer`.
pub fn parse_issuer(s: &str) -> Result<IssuerChoice, String> {
    Ok(match s {
        "intermediate" => IssuerChoice::Intermediate,
        "root" => IssuerChoice::Root,
        "" => return Err("give `root`, `intermediate` or a CA certificate file".into()),
        path => IssuerChoice::Path(PathBuf::from(path)),
    })
}
