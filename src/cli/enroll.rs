//! `pki enroll`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {}

pub fn run(_args: EnrollArgs) -> Result<()> {
    Err(Error::failed("pki enroll is not built yet"))
}
