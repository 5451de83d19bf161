//! `pki inspect`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {}

pub fn run(_args: InspectArgs) -> Result<()> {
    Err(Error::failed("pki inspect is not built yet"))
}
