//! cargo-fuzz target `csr_read`: `pki::fuzz::csr_read` must never panic.
//! Run: `cargo +nightly fuzz run csr_read -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/csr_read` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::csr_read(data);
});
