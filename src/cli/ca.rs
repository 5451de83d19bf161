//! `pki ca`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Subcommands of `pki ca`.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Not built yet.
    Todo,
}

pub fn run(_cmd: CaCommand) -> Result<()> {
    Err(Error::failed("pki ca is not built yet"))
}
