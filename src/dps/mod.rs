//! Talking DPS: the connection string, SAS tokens and (in `client`) the
//! REST client used by `pki enroll`, `pki register` and `pki ca`.
//!
//! `../shared/reference/dps-protocol.md` is the wire contract.

pub mod connection_string;
pub mod sas;
