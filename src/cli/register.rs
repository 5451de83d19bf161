//! `pki register`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {}

pub fn run(_args: RegisterArgs) -> Result<()> {
    Err(Error::failed("pki register is not built yet"))
}
