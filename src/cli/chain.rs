//! `pki chain`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Subcommands of `pki chain`.
#[derive(Debug, clap::Subcommand)]
pub enum ChainCommand {
    /// Not built yet.
    Todo,
}

pub fn run(_cmd: ChainCommand) -> Result<()> {
    Err(Error::failed("pki chain is not built yet"))
}
