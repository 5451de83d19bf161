//! `pki inspect`: show certificates, or check a device chain against DPS's rules.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cert::{read_certificates, read_first};
use crate::error::{Error, Result};
use crate::fsio::read_input_or_stdin;
use crate::inspect::{CertDetails, check_chain};

/// Arguments of `pki inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  Every certificate in a bundle, with DPS-style thumbprints:
    pki inspect certs/device-0001-full-chain.cert.pem
  Check a device chain the way DPS will (order, signatures, validity, CN):
    pki inspect --chain certs/device-0001-full-chain.cert.pem \\
      --root certs/azure-iot-test-only.root.ca.cert.pem
  For scripts:
    pki inspect --json certs/azure-iot-test-only.root.ca.cert.pem | jq -r '.[0].sha256Thumbprint'

Exit codes: 0 fine, 1 a --chain check failed, 2 unreadable or non-certificate input.")]
pub struct InspectArgs {
    /// PEM bundles or DER files (`-` for stdin); with --expiring-within, also directories.
    #[arg(value_name = "FILE", required_unless_present = "chain")]
    pub files: Vec<PathBuf>,

    /// CI guard: list every certificate under FILE… (directories recursively) that is
    /// expired or expires within this window (30d, 12h, 1w), with days left; exit 1 if any.
    #[arg(long, value_name = "DURATION", value_parser = crate::validity::parse_duration, conflicts_with = "chain")]
    pub expiring_within: Option<time::Duration>,

    /// With --expiring-within: compare against this instant instead of now (RFC 3339).
    #[arg(long, value_name = "INSTANT", requires = "expiring_within", value_parser = super::args::parse_instant)]
    pub at: Option<time::OffsetDateTime>,

    /// Check this full chain (leaf → intermediates → root) against DPS's rules.
    #[arg(long, value_name = "FULLCHAIN", conflicts_with = "files")]
    pub chain: Option<PathBuf>,

    /// The trusted root for --chain (when the chain file does not end with it).
    #[arg(long, value_name = "ROOT", requires = "chain")]
    pub root: Option<PathBuf>,

    /// JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    if let Some(within) = args.expiring_within {
        return run_expiring(&args, within);
    }
    if let Some(chain) = &args.chain {
        return run_chain(chain, args.root.as_ref(), args.json);
    }
    // (file, JSON, text) per certificate or CSR.
    let mut infos: Vec<(String, serde_json::Value, String)> = Vec::new();
    for file in &args.files {
        let what = file.display().to_string();
        let data = read_input_or_stdin(file)?;
        if crate::csr::looks_like_csr(&data) {
            let csr = crate::csr::Csr::parse(&data, &what)?;
            infos.push((what.clone(), csr.details(), csr.render()));
            continue;
        }
        for der in read_certificates(&data, &what)? {
            let info = CertDetails::from_der(&der, &what)?;
            let mut value = serde_json::to_value(&info)
                .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
            let mut text = info.render();
            // The manifest beside the file says whether `--seed` made the key.
            if file.as_os_str() != "-"
                && crate::manifest::seeded_beside(file, &info.sha1_thumbprint)
            {
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("seeded".into(), serde_json::Value::Bool(true));
                }
                text.push_str(SEEDED_LINE);
                text.push('\n');
            }
            infos.push((what.clone(), value, text));
        }
    }
    if args.json {
        let list: Vec<_> = infos.iter().map(|(_, v, _)| v).collect();
        println!("{}", to_json(&list)?);
    } else {
        for (n, (file, _, text)) in infos.iter().enumerate() {
            if n > 0 {
                println!();
            }
            println!("== {file} [{}]", n + 1);
            print!("{text}");
        }
    }
    Ok(())
}

/// What `pki inspect` adds for a certificate the manifest marks seeded.
const SEEDED_LINE: &str = "Seeded:            yes: a reproducible TEST key made with --seed (anyone with the seed has it); never use it in production";

fn run_chain(chain: &Path, root: Option<&PathBuf>, json: bool) -> Result<()> {
    let what = chain.display().to_string();
    let data = read_input_or_stdin(chain)?;
    if crate::cert::read_bundle(&data, &what)?.has_private_key() {
        return Err(Error::input(format!(
            "{what} contains a private key; a device chain file holds certificates only: pass the …-full-chain.cert.pem file, and keep the key out of files you share"
        )));
    }
    let certs = read_certificates(&data, &what)?;
    let root_der = match root {
        Some(r) => Some(read_first(
            &read_input_or_stdin(r)?,
            &r.display().to_string(),
        )?),
        None => None,
    };
    let checks = check_chain(&certs, root_der.as_deref())?;
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        println!("{}", to_json(&checks)?);
    } else {
        for c in &checks {
            match &c.problem {
                None => println!("ok    {}", c.check),
                Some(p) => println!("FAIL  {}\n      {p}", c.check),
            }
        }
        println!(
            "{}",
            if failed == 0 {
                format!(
                    "{what}: DPS will accept this chain ({} checks passed)",
                    checks.len()
                )
            } else {
                format!("{what}: {failed} of {} checks failed", checks.len())
            }
        );
    }
    if failed > 0 {
        return Err(Error::failed(format!(
            "{failed} chain check(s) failed for {what}"
        )));
    }
    Ok(())
}

fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))
}

/// `--expiring-within`: the listing (stdout), exit 1 when anything is listed.
fn run_expiring(args: &InspectArgs, within: time::Duration) -> Result<()> {
    let now = args.at.unwrap_or_else(crate::validity::now_utc);
    let report = crate::expiry::scan(&args.files, now, within)?;
    let shown = crate::validity::show_duration(within);
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", report.render(&shown));
    }
    if report.findings.is_empty() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "{} certificate(s) expired or expiring within {shown}: renew them (`pki device renew ID…`, `pki ca roll`) or regenerate the fixtures",
        report.findings.len()
    )))
}
