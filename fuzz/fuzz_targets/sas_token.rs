//! cargo-fuzz target `sas_token`: `pki::fuzz::sas_token` must never panic.
//! Run: `cargo +nightly fuzz run sas_token -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/sas_token` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::sas_token(data);
});
