//! cargo-fuzz target `registration_id`: `pki::fuzz::registration_id` must never panic.
//! Run: `cargo +nightly fuzz run registration_id -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/registration_id` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::registration_id(data);
});
