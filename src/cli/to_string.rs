//! `pki to-java-string` and `pki to-string`: PEM to source-code literals.
//!
//! Work in progress: see the issue tracker.

use crate::error::{Error, Result};

/// Arguments of `pki to-java-string`.
#[derive(Debug, clap::Args)]
pub struct ToJavaStringArgs {}

/// Arguments of `pki to-string`.
#[derive(Debug, clap::Args)]
pub struct ToStringArgs {}

pub fn run_java(_args: ToJavaStringArgs) -> Result<()> {
    Err(Error::failed("pki to-java-string is not built yet"))
}

pub fn run(_args: ToStringArgs) -> Result<()> {
    Err(Error::failed("pki to-string is not built yet"))
}
