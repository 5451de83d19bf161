//! Status output: data goes to stdout, progress and notes to stderr; and
//! the summary `pki chain new` and `pki device new` print.

use std::io::Write;
use std::path::PathBuf;

use super::args::DEFAULT_PFX_PASSWORD;
use crate::chain::{DevicePlan, Summary};
use crate::error::{Error, Result};
use crate::layout::{FileKind, Layout};
use crate::profile::Role;

/// Where human-facing notes go, and whether they are wanted.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// `--quiet`: no notes, no progress bar.
    pub quiet: bool,
}

impl Output {
    /// Prints a note on stderr unless quiet.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Prints a warning on stderr (even when quiet: warnings matter).
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("pki: warning: {}", msg.as_ref());
    }
}

/// Writes `data` to stdout; a closed pipe (`| head`) is not a failure.
pub fn write_stdout(data: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(data).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(Error::Write {
            path: PathBuf::from("standard output"),
            source,
        }),
        Ok(()) => Ok(()),
    }
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
        let label = match e.role {
            Role::RootCa => "Root CA",
            Role::IntermediateCa => "Intermediate CA",
            Role::EdgeCa => "Edge device CA",
            _ => continue,
        };
        println!(
            "{label:<16} {}  ({}, {}, until {})",
            shown(e.files.get(&FileKind::Cert).cloned().unwrap_or_default()),
            e.subject,
            e.key,
            e.not_after.get(..10).unwrap_or(&e.not_after)
        );
    }
    if summary
        .issued
        .iter()
        .any(|e| matches!(e.role, Role::IntermediateCa | Role::RootCa))
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
            (FileKind::Cert, "certs/<id>.cert.pem"),
            (FileKind::FullChain, "certs/<id>-full-chain.cert.pem"),
            (FileKind::Pfx, "certs/<id>.cert.pfx"),
            (FileKind::Key, "private/<id>.key.pem"),
        ];
        let listed: Vec<&str> = kinds
            .iter()
            .filter(|(k, _)| first.files.contains_key(k))
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
        out.note(match first.files.get(&FileKind::FullChain) {
            Some(chain) => format!("Next: pki inspect --chain {}", shown(chain.clone())),
            None => format!(
                "Next: pki inspect {}",
                shown(
                    first
                        .files
                        .get(&FileKind::Cert)
                        .cloned()
                        .unwrap_or_default()
                )
            ),
        });
    }
    println!("{:<16} {}", "Manifest", layout.manifest().display());
    if summary.issued.iter().any(|e| e.seeded)
        || summary.first_device.as_ref().is_some_and(|e| e.seeded)
    {
        println!(
            "{:<16} yes: reproducible TEST keys (--seed; \"seeded\": true in the manifest)",
            "Seeded"
        );
    }
    out.note("These are test certificates: do not use them in production.");
    Ok(())
}
