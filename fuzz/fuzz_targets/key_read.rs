//! cargo-fuzz target `key_read`: `pki::fuzz::key_read` must never panic.
//! Run: `cargo +nightly fuzz run key_read -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/key_read` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::key_read(data);
});
