//! cargo-fuzz target `cert_read`: `pki::fuzz::cert_read` must never panic.
//! Run: `cargo +nightly fuzz run cert_read -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/cert_read` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::cert_read(data);
});
