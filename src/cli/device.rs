//! `pki device`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Subcommands of `pki device`.
#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Not built yet.
    Todo,
}

pub fn run(_cmd: DeviceCommand) -> Result<()> {
    Err(Error::failed("pki device is not built yet"))
}
