//! The integration tests: one binary (like ripgrep's `tests/tests.rs`), each
//! file a module, all sharing `support`.

// Shared harness: the `pki` runner, TestChain, Emulator, Node and openssl helpers.
mod support;

// `pki chain new`: files, profiles, key types, certGen.sh parity, failures.
mod chain;
// Peak memory of a bulk run stays flat in the number of devices.
mod chain_memory;
// `pki ca` against a scripted fake DPS: upload and proof of possession.
mod client_ca;
// The tutorial flow and Node service SDK interop against `pki emulator`.
mod client_e2e;
// DPS certificate issuance end to end: enroll --certificate-policy, register --csr auto.
mod client_issuance;
// DPS client faults: throttling, server errors, races, wrong keys.
mod client_faults;
// `pki register` against a scripted fake DPS.
mod client_register;
// `pki`'s SAS tokens equal the Node SDK's.
mod client_sas_node;
// `pki completions` (bash completes for real) and `pki man` (rendered by man-db).
mod completions;
// CSRs (issue 10): `pki csr new`, `pki device new --csr`, bad CSRs.
mod csr;
// `pki device new`: devices under pki, certGen.sh and openssl CAs.
mod device;
// `pki emulator` over real HTTPS, split by API.
mod emulator;
// `pki emulator --print-env`: the block is all the Node SDK, Python and Java need.
mod emulator_env;
// MQTT and MQTT over WebSockets: the Python and Node SDKs, the same refusals as HTTPS.
mod emulator_mqtt;
// `pki register` over MQTT: DPS certificate issuance (--csr) and symmetric keys.
mod register_mqtt;
// The emulator with the official Node device and service SDKs.
mod emulator_node;
// The emulator's status page in headless Chromium (playwright-core).
mod emulator_status_page;
// The emulator with the official Java service and device SDKs (tests/java).
mod java_sdk;
// `pki inspect`: certificate details and DPS chain checks.
mod inspect;
// `pki sas device-key` and `pki sas token` against the Node SDK, az's recipe and the emulator.
mod sas;
// Symmetric-key groups end to end: `pki enroll --symmetric-key`, `pki register --group-key`.
mod symmetric_e2e;
// `pki to-string` and `pki to-java-string`, compiled by each language's toolchain.
mod to_string;
// `pki verify-code`: proof-of-possession certificates.
mod verify_code;
// Validity windows: --not-before/--not-after, --expired, --not-yet-valid, issuer rules.
mod validity;
// `pki inspect --expiring-within`: the expiry CI guard.
mod expiry;
// CA rotation: pki ca roll, pki device renew, the README walkthrough on the emulator.
mod rotation;
// The emulator clock: --clock, PUT /emulator/clock, refusals naming the instant.
mod emulator_clock;
// Reproducible fixtures: --seed with --epoch, byte for byte.
mod seed;
// The command line itself: help, bare group commands, broken pipes.
mod cli;
// Reliability: no credentials over plain HTTP, key formats, checks before
// requests, refused inputs, and the all-or-nothing commit under kill points.
mod reliability;
