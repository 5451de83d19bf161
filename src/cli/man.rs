//! `pki man [DIR]`: manual pages made by clap_mangen from the command
//! definition, one page per command (`pki.1`, `pki-chain.1`,
//! `pki-chain-new.1`, …), so they always match `--help`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::error::{Error, Result};
use crate::fsio::{self, Mode};

/// Arguments of `pki man`.
///
/// Without DIR, prints the top-level page (pki.1) on stdout. With DIR, writes
/// a page for every command and subcommand into DIR (created if missing,
/// existing pages replaced) and lists the files written on stderr.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki man | man -l -                       # read the top-level page now\n  \
pki man ~/.local/share/man/man1          # install every page for `man pki-chain-new`\n  \
sudo pki man /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Directory to write every page into; omit to print pki.1 on stdout.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints or writes the manual pages.
pub fn run(args: ManArgs) -> Result<()> {
    let cmd = super::Cli::command().disable_help_subcommand(true);
    match args.dir {
        None => super::output::write_stdout(&render(&Man::new(cmd))?),
        Some(dir) => {
            fsio::ensure_dir(&dir, Mode::Public)?;
            let mut cmd = cmd;
            cmd.build();
            let mut written = Vec::new();
            write_pages(&cmd, &dir, &mut written)?;
            for path in &written {
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes the page of `cmd` and of every visible subcommand below it.
/// Pages are named after the full command path (`pki-chain-new.1`), which
/// clap_mangen takes from the built command's display name.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let man = Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    fsio::write_atomic(&path, &render(&man)?, Mode::Public)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

fn render(man: &Man) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    man.render(&mut out)
        .map_err(|e| Error::failed(format!("cannot render the manual page: {e}")))?;
    Ok(out)
}
