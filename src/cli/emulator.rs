//! `pki emulator`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {}

pub fn run(_args: EmulatorArgs) -> Result<()> {
    Err(Error::failed("pki emulator is not built yet"))
}
