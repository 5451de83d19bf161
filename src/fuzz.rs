//! Entry points of the cargo-fuzz targets in `fuzz/` (one function per
//! target: arbitrary bytes in, never a panic out), and the stable replay of
//! each target's seed corpus under `fuzz/corpus/<target>/`.
//!
//! Run a target: `cd fuzz && cargo +nightly fuzz run <target> -- -jobs=1`
//! (needs `cargo install cargo-fuzz`); see FUZZING.md for the recorded runs.

use crate::cert;
use crate::csr::Csr;
use crate::dps::connection_string::ConnectionString;
use crate::dps::sas;
use crate::emulator::errors::parse_json;
use crate::emulator::model::{EnrollmentGroup, IndividualEnrollment};
use crate::emulator::registration::parse_body;
use crate::inspect::CertDetails;
use crate::keys::load_private_key;
use crate::regid::{self, RegistrationId};

/// A fuzz entry point: arbitrary bytes in, never a panic out.
pub type Target = fn(&[u8]);

/// The targets, as named in `fuzz/Cargo.toml` and `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("cert_read", cert_read),
    ("key_read", key_read),
    ("connection_string", connection_string),
    ("sas_token", sas_token),
    ("registration_id", registration_id),
    ("emulator_json", emulator_json),
    ("csr_read", csr_read),
];

/// PEM or DER certificates: bundles, the first certificate, each parsed.
pub fn cert_read(data: &[u8]) {
    let _ = cert::read_bundle(data, "fuzz input");
    let _ = cert::read_first(data, "fuzz input");
    if let Ok(ders) = cert::read_certificates(data, "fuzz input") {
        for der in ders {
            let _ = cert::parse_der(&der, "fuzz input");
            let _ = CertDetails::from_der(&der, "fuzz input");
        }
    }
    let _ = cert::parse_der(data, "fuzz input");
    let _ = CertDetails::from_der(data, "fuzz input");
}

/// Private keys in every format, plain and encrypted: without a password,
/// then with one (the first line of the input, if it has several).
pub fn key_read(data: &[u8]) {
    let _ = load_private_key(data, None, "fuzz input", "--key-password");
    let (password, key) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if i < 64 => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        _ => ("1234".to_owned(), data),
    };
    let _ = load_private_key(key, Some(&password), "fuzz input", "--key-password");
}

/// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
pub fn connection_string(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cs) = ConnectionString::parse(s) {
        let _ = format!("{cs:?}");
    }
}

/// SAS tokens: parse, then verify against a fixed key, as a service and a
/// device token would be.
pub fn sas_token(data: &[u8]) {
    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==";
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = sas::Token::parse(s) {
        let _ = t.resource();
        let _ = t.verify(&[KEY, "not base64!"], 1_700_000_000);
        let _ = t.covers("localhost:8443/0ne00000001/registrations/device-01");
    }
    for host in ["localhost:8443", "[::1]:8443", "localhost"] {
        let _ = sas::verify_service(
            Some(s),
            "provisioningserviceowner",
            &[KEY],
            host,
            1_700_000_000,
        );
    }
}

/// Registration IDs, as X.509 CNs and as symmetric-key IDs.
pub fn registration_id(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = regid::check_registration_id(s);
    let _ = regid::check_id(s, "registration ID");
    if let Ok((id, _)) = RegistrationId::parse(s) {
        let _ = id.as_str();
    }
    let _ = RegistrationId::parse_cn(s);
}

/// The emulator's JSON bodies: enrollment groups and enrollments (parsed,
/// redacted and serialised back) and the device's registration body.
pub fn emulator_json(data: &[u8]) {
    if let Ok(g) = parse_json::<EnrollmentGroup>(data, "enrollment group") {
        let _ = serde_json::to_vec(&g.redacted());
    }
    if let Ok(e) = parse_json::<IndividualEnrollment>(data, "enrollment") {
        let _ = serde_json::to_vec(&e.redacted());
    }
    if let Ok((id, _)) = RegistrationId::parse("device-01") {
        let _ = parse_body(&id, data);
    }
}

/// CSRs: PEM or DER files, and the base64 `csr` field of a registration.
pub fn csr_read(data: &[u8]) {
    let _ = Csr::read(data, "fuzz input");
    let _ = Csr::parse(data, "fuzz input");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Csr::from_dps_field(s);
    }
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every target's seed corpus replays without a panic, whole, truncated
    /// and with a few bytes flipped (what CI runs on stable).
    #[test]
    fn fuzz_corpora_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, run) in TARGETS {
            let dir = root.join(name);
            let mut n = 0;
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for e in entries {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                run(&data);
                for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
                    run(&data[..cut.min(data.len())]);
                }
                for _ in 0..20 {
                    if data.is_empty() {
                        break;
                    }
                    let mut d = data.clone();
                    for _ in 0..3 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = (x as usize) % d.len();
                        d[i] = (x >> 32) as u8;
                    }
                    run(&d);
                }
                n += 1;
            }
            assert!(n >= 3, "fuzz/corpus/{name} holds {n} files");
        }
    }
}
