//! The crate's error type and its mapping to exit codes.
//!
//! Library code returns [`Error`]; the CLI prints it as one line and exits
//! with [`Error::exit_code`]. Messages name the problem and, where there is
//! one, the fix. They never contain key material, passwords or SAS keys.

use std::path::PathBuf;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `pki`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's input (an argument, a file's content, an ID) is unusable.
    /// Exit code 2.
    #[error("{0}")]
    Input(String),

    /// A file that the user named could not be read. Exit code 2.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing output failed (disk full, permissions). Exit code 1.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A cryptographic operation failed unexpectedly. Exit code 1.
    #[error("{0}")]
    Crypto(String),

    /// An operation against a DPS endpoint (or the emulator) failed. Exit code 1.
    #[error("{0}")]
    Service(String),

    /// Anything else that failed while the input was fine. Exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Builds an input error (exit code 2).
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input(message.into())
    }

    /// Builds an operation failure (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) | Error::Read { .. } => 2,
            _ => 1,
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Crypto(format!("certificate generation failed: {e}"))
    }
}
