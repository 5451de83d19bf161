//! `pki verify-code`.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki verify-code`.
#[derive(Debug, clap::Args)]
pub struct VerifyCodeArgs {}

pub fn run(_args: VerifyCodeArgs) -> Result<()> {
    Err(Error::failed("pki verify-code is not built yet"))
}
