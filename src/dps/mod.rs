//! Talking DPS: the connection string, SAS tokens and the REST clients used
//! by `pki enroll`, `pki register` and `pki ca`.
//!
//! `../shared/reference/dps-protocol.md` is the wire contract.

pub mod arm;
pub mod client;
pub mod connection_string;
pub mod enrollment;
pub mod http;
pub mod pop;
pub mod sas;
pub mod upsert;
pub mod vocab;
