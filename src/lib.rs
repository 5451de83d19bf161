//! `pki`: a test PKI for Azure IoT Hub Device Provisioning Service (DPS).
//!
//! The library holds everything the binary does, so tests and benchmarks can
//! call it directly:
//!
//! - [`keys`], [`profile`], [`issue`]: key types, the table of certificate
//!   profiles and the one function that signs a certificate.
//! - [`layout`], [`fsio`], [`pfx`], [`manifest`]: where files go and how they
//!   are written (atomically, keys 0600).
//! - [`chain`]: `pki chain new` and `pki device new`; [`chain_csr`]:
//!   `pki device new --csr` (signing external CSRs).
//! - [`cert`]: reading PEM/DER certificates, common names, thumbprints.
//! - [`keyfile`]: reading private key files, plain or encrypted, in every
//!   format openssl writes.
//! - [`ca_dir`]: finding the signing CA (certificate and key) in a CA directory.
//! - [`csr`]: certificate signing requests (PKCS#10): read, verify, make.
//! - [`inspect`]: describing certificates and checking chains against DPS's rules.
//! - [`regid`]: DPS registration and enrollment ID rules.
//! - [`verify_code`]: proof-of-possession certificates.
//! - [`literal`]: PEM to source-code string literals.
//! - [`dps`]: the DPS wire types, SAS tokens and the REST client.
//! - [`emulator`]: a local DPS.
//! - [`cli`]: argument parsing and the glue from arguments to the library.

pub mod ca_dir;
pub mod cert;
pub mod chain;
pub mod chain_csr;
pub mod cli;
pub mod csr;
pub mod dps;
pub mod emulator;
pub mod envblock;
pub mod error;
pub mod expiry;
pub mod fsio;
#[doc(hidden)]
pub mod fuzz;
pub mod inspect;
pub mod issue;
pub mod keyfile;
pub mod keys;
pub mod layout;
pub mod literal;
pub mod manifest;
pub mod pfx;
pub mod profile;
pub mod regid;
pub mod rotate;
pub mod seed;
pub mod validity;
pub mod verify_code;

pub use error::{Error, Result};
