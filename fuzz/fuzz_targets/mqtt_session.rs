//! Fuzzes the emulator's MQTT session state machine
//! (`pki::emulator::mqtt_session::Session`): arbitrary bytes, fed in
//! arbitrary chunks, must never panic, and once closed a session stays closed.
//! Run: `cargo +nightly fuzz run mqtt_session` (needs cargo-fuzz). The corpus
//! in `fuzz/corpus/mqtt_session` is replayed on stable by the unit test
//! `emulator::mqtt_session::tests::fuzz_corpus_replays`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pki::emulator::mqtt_session::drive(data);
});
