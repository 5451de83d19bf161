//! `pki verify-code`: a proof-of-possession certificate for a CA.

use std::path::PathBuf;

use clap::Args;

use super::args::ValidityArgs;
use super::ca_select::CaSelectArgs;
use crate::ca_dir::{self, CaFiles, IssuerChoice};
use crate::error::{Error, Result};
use crate::inspect::CertDetails;
use crate::keys::KeyType;
use crate::layout::Layout;
use crate::verify_code;

/// Arguments of `pki verify-code`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  Prove possession of the root CA of ./certs (the code comes from the portal or `pki ca`):
    pki verify-code 3A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F5A6B7
  Prove possession of the intermediate (for an enrollment group that uses it):
    pki verify-code --issuer intermediate 3A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F5A6B7
  Any CA given as files, with an encrypted key:
    pki verify-code --ca-cert ca.pem --ca-key ca.key.pem --ca-key-password 1234 \"$CODE\"
  Replace the verification certificate of an earlier run:
    pki verify-code --force 3A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F5A6B7

Then upload certs/verification-code.cert.pem (or the DER copy, certs/verification-code.cer).")]
pub struct VerifyCodeArgs {
    /// The verification code DPS or IoT Hub showed (surrounding spaces are ignored).
    #[arg(value_name = "CODE")]
    pub code: String,

    /// The signing CA (default: the root).
    #[command(flatten)]
    pub ca: CaSelectArgs,

    /// A CA certificate file to sign with (instead of --ca-dir/--issuer); needs --ca-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca_key",
        conflicts_with = "issuer"
    )]
    pub ca_cert: Option<PathBuf>,

    /// Key type of the verification certificate's own key.
    #[arg(long, value_name = "TYPE", default_value = "ec-p256")]
    pub key: KeyType,

    /// Validity in days (capped at the CA's).
    #[arg(long, value_name = "DAYS", default_value_t = verify_code::DEFAULT_DAYS)]
    pub days: u32,

    #[command(flatten)]
    pub validity: ValidityArgs,

    /// Where to write certs/ and private/ (default: the CA directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Replace an existing verification certificate (certs/verification-code.*).
    #[arg(long)]
    pub force: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyCodeArgs) -> Result<()> {
    let code = verify_code::check_code(&args.code)?;
    args.validity.check_seed(&[args.key], false)?;
    let out = Layout::new(args.out.clone().unwrap_or_else(|| args.ca.ca_dir.clone()));
    verify_code::check_replace(&out, args.force)?;
    let layout = Layout::new(&args.ca.ca_dir);
    let password = args.ca.ca_key_password.as_deref();
    let issuer = args.ca.issuer.clone().unwrap_or(IssuerChoice::Root);
    let files = match (&args.ca_cert, &args.ca.ca_key) {
        (Some(cert), Some(key)) => CaFiles {
            label: cert.display().to_string(),
            cert: cert.clone(),
            key: key.clone(),
        },
        (Some(_), None) => return Err(Error::input("--ca-cert needs --ca-key")),
        (None, key) => {
            if !matches!(issuer, IssuerChoice::Path(_)) {
                layout.require_ca()?;
            }
            ca_dir::resolve(&layout, Some(&issuer), key.as_deref())?.swap_remove(0)
        }
    };
    let ca = ca_dir::load(&files, password)?;
    let ca_file = files.cert.display().to_string();
    let v = verify_code::make(&code, &ca, args.key, &args.validity.validity(args.days))?;
    for w in &v.cert.warnings {
        super::args::warn(w);
    }
    let written = verify_code::write(&out, &v)?;
    let info = CertDetails::from_der(&v.cert.der, "the verification certificate")?;
    if args.json {
        let value = serde_json::json!({
            "certificate": written.certificate,
            "der": written.der,
            "key": written.key,
            "subject": info.subject,
            "issuer": info.issuer,
            "issuerFile": ca_file,
            "notAfter": info.not_after,
            "sha1Thumbprint": info.sha1_thumbprint,
            "sha256Thumbprint": info.sha256_thumbprint,
        });
        println!("{value:#}");
    } else {
        println!("Upload this:  {}", written.certificate.display());
        println!("DER copy:     {}", written.der.display());
        println!("Subject:      {}", info.subject);
        println!("Signed by:    {} ({ca_file})", info.issuer);
        println!("Valid until:  {}", info.not_after);
    }
    Ok(())
}
