//! Status output: data goes to stdout, progress and notes to stderr.

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

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
