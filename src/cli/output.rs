//! Status output: data goes to stdout, progress and notes to stderr.

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
