//! cargo-fuzz target `connection_string`: `pki::fuzz::connection_string` must never panic.
//! Run: `cargo +nightly fuzz run connection_string -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/connection_string` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::connection_string(data);
});
