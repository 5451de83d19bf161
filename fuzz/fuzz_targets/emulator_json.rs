//! cargo-fuzz target `emulator_json`: `pki::fuzz::emulator_json` must never panic.
//! Run: `cargo +nightly fuzz run emulator_json -- -jobs=1`. The seed corpus in
//! `fuzz/corpus/emulator_json` is replayed on stable by `pki::fuzz::tests::fuzz_corpora_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::fuzz::emulator_json(data);
});
