//! Options and helpers shared by several commands: network flags
//! (`NetArgs`), the service connection string (`ConnArgs`), the device
//! options of `pki chain new` and `pki device new` (`DeviceArgs`), and
//! `block_on`/`warn`. Commands import them from here, never from each other.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Output;
use crate::chain::{self, DeviceIds, DevicePlan};
use crate::dps::connection_string::ConnectionString;
use crate::dps::http::HttpOptions;
use crate::error::{Error, Result};
use crate::keys::KeyType;
use crate::pfx::PfxOptions;
use crate::validity::{TimeSpec, Validity};

/// The PFX password the DPS tutorial and certGen.sh use.
pub const DEFAULT_PFX_PASSWORD: &str = "1234";

/// Most devices one run issues (a bigger run is almost certainly a typo).
pub const MAX_DEVICES: i64 = 1_000_000;

/// The service connection string.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// DPS service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…).
    #[arg(
        long,
        env = "DPS_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "STRING"
    )]
    connection_string: Option<String>,
}

impl ConnArgs {
    pub fn load(&self) -> Result<ConnectionString> {
        let s = self.connection_string.as_deref().ok_or_else(|| {
            Error::input(
                "no connection string: set DPS_CONNECTION_STRING (from the DPS \"Shared access policies\" page) or pass --connection-string",
            )
        })?;
        ConnectionString::parse(s)
    }
}

/// Network options shared by every command that talks to a server.
#[derive(Debug, Clone, clap::Args)]
pub struct NetArgs {
    /// Also trust this CA (PEM), e.g. the emulator's TLS CA. (SSL_CERT_FILE, if set, replaces the system trust store.)
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Attempts per request on throttling (429), 5xx and connection errors.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// Per-request timeout in seconds.
    #[arg(long = "request-timeout", default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout: u64,
}

impl NetArgs {
    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            ca_file: self.ca_file.clone(),
            attempts: self.attempts,
            timeout: Duration::from_secs(self.request_timeout),
            ..HttpOptions::default()
        }
    }
}

/// Runs a future on a small single-threaded runtime (the CLI is sequential).
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    Ok(rt.block_on(f))
}

pub fn warn(msg: impl AsRef<str>) {
    eprintln!("pki: warning: {}", msg.as_ref());
}

/// Warns (one line) when the manifest beside a CA certificate about to be
/// uploaded says `--seed` made its key: anyone with the seed has it.
pub fn warn_if_seeded(path: &std::path::Path, what: &str, subject: &str, sha1: &str) {
    if crate::manifest::seeded_beside(path, sha1) {
        warn(format!(
            "{what} ({subject}) is a seeded TEST CA (\"seeded\": true in its manifest): anyone with the seed has its key, so never upload it to a production DPS"
        ));
    }
}

/// Validity options shared by every command that issues (`chain new`,
/// `device new`, `device new --csr`, `device renew`, `verify-code`, `ca roll`).
#[derive(Clone, Debug, Default, Args)]
pub struct ValidityArgs {
    /// Start of validity: an RFC 3339 instant (2026-01-01T00:00:00Z) or an offset from now
    /// (-1d, +10m, 90d; units s m h d w y). Default: now minus 5 minutes.
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true, value_parser = clap::value_parser!(TimeSpec))]
    pub not_before: Option<TimeSpec>,

    /// End of validity, RFC 3339 or an offset from now (instead of --days).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true, value_parser = clap::value_parser!(TimeSpec), conflicts_with = "days")]
    pub not_after: Option<TimeSpec>,

    /// Issue certificates that are already expired: valid from 2 days ago until 1 day ago.
    #[arg(long, conflicts_with_all = ["not_before", "not_after", "not_yet_valid", "days"])]
    pub expired: bool,

    /// Issue certificates that are not valid yet: from tomorrow, for --days.
    #[arg(long, conflicts_with_all = ["not_before"])]
    pub not_yet_valid: bool,

    /// Let a certificate end after its issuer does (normally it is cut to the issuer's end),
    /// to test what a verifier does with it. Loud in the output.
    #[arg(long)]
    pub allow_outliving_issuer: bool,

    /// Let an expired CA sign. Loud in the output.
    #[arg(long)]
    pub allow_expired_issuer: bool,

    /// The instant that stands for "now" (RFC 3339): signing time and the base of every
    /// offset, for reproducible fixtures (with --seed).
    #[arg(long, value_name = "INSTANT", env = "PKI_EPOCH", value_parser = parse_instant)]
    pub epoch: Option<time::OffsetDateTime>,

    /// Reproducible TEST keys: the same --seed and --epoch write byte-identical keys, certificates and
    /// manifest. EC only (RSA's prime search is not seeded) and --no-pfx (PFX salts and IVs are random).
    #[arg(long, value_name = "TEXT", env = "PKI_SEED", hide_env_values = true, value_parser = parse_seed)]
    pub seed: Option<String>,
}

fn parse_seed(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() {
        Err("the seed is empty: give some text, e.g. --seed fixtures-v1".into())
    } else {
        Ok(s.to_string())
    }
}

/// An RFC 3339 instant, for --epoch and --clock.
pub fn parse_instant(s: &str) -> std::result::Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 instant (2026-01-01T00:00:00Z)"))
}

impl ValidityArgs {
    /// Turns `--seed` on (when given) and refuses what it cannot reproduce
    /// (RSA among `keys`, PFX files when `pfx`), before anything is made or
    /// written, so a refusal is one line and leaves nothing behind.
    pub fn check_seed(&self, keys: &[KeyType], pfx: bool) -> Result<()> {
        if let Some(s) = &self.seed {
            crate::seed::activate(s)?;
        }
        crate::seed::check(keys, pfx)
    }

    /// The request, with `days` as the length when no end is given.
    pub fn validity(&self, days: u32) -> Validity {
        if let Some(s) = &self.seed {
            // An empty seed is refused by clap; one seed per run.
            let _ = crate::seed::activate(s);
        }
        let day = time::Duration::days(1);
        let (not_before, not_after) = if self.expired {
            (
                Some(TimeSpec::Offset(-2 * day)),
                Some(TimeSpec::Offset(-day)),
            )
        } else if self.not_yet_valid {
            (Some(TimeSpec::Offset(day)), self.not_after)
        } else {
            (self.not_before, self.not_after)
        };
        Validity {
            now: self.epoch.unwrap_or_else(crate::validity::now_utc),
            not_before,
            not_after,
            days,
            allow_outliving_issuer: self.allow_outliving_issuer,
            allow_expired_issuer: self.allow_expired_issuer,
        }
    }
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
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "device-",
        requires = "devices"
    )]
    pub prefix: String,

    /// Key type of the device keys (overrides --key).
    #[arg(long, value_name = "TYPE")]
    pub device_key: Option<KeyType>,

    /// Validity of device certificates in days (never beyond the issuer's).
    #[arg(long, value_name = "DAYS")]
    pub days: Option<u32>,

    #[command(flatten)]
    pub validity: ValidityArgs,

    /// Encrypt private keys (PKCS#8, PBES2 AES-256-CBC) with this password.
    #[arg(
        long,
        env = "PKI_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
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
    pub fn ids(&self, default: &[&str]) -> Result<(DeviceIds, Vec<String>)> {
        let mut listed = self.device.clone();
        if self.device.is_empty() && self.devices.is_none() {
            listed.extend(default.iter().map(|s| s.to_string()));
        }
        let ids = self.with_numbered(DeviceIds::from(listed));
        let warnings = check_ids(&ids)?;
        Ok((ids, warnings))
    }

    /// `ids` followed by the `--devices N` IDs, if asked for (made on demand).
    pub fn with_numbered(&self, ids: DeviceIds) -> DeviceIds {
        match self.devices {
            Some(n) => ids.with_numbered(&self.prefix, n as usize, 1),
            None => ids,
        }
    }

    /// The device plan, given resolved defaults.
    pub fn plan(&self, ids: DeviceIds, key: KeyType, days: u32, force: bool) -> DevicePlan {
        DevicePlan {
            ids,
            key,
            validity: self.validity.validity(days),
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
///
/// Numbered IDs all share the prefix and the width of their digits, so one
/// of them stands for all in DPS's rule; its warning (upper case is the
/// prefix's) is repeated for each.
pub fn check_ids(ids: &DeviceIds) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for id in ids.listed() {
        if let Some(w) = crate::regid::check_registration_id(id)? {
            warnings.push(w);
        }
    }
    let mut numbered = ids.numbered();
    if let Some(first) = numbered.next()
        && let Some(w) = crate::regid::check_registration_id(&first)?
    {
        warnings.push(w);
        for id in numbered {
            warnings.extend(crate::regid::check_registration_id(&id)?);
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
