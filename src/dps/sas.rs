//! Shared access signature (SAS) tokens: making them (the client) and
//! checking them (the emulator), per dps-protocol.md §6.
//!
//! Token: `SharedAccessSignature sr=<resource>&sig=<sig>&se=<expiry>&skn=<policy>`
//! with `sig = base64(HMAC-SHA256(base64decode(key), sr + "\n" + se))`.
//! Every SDK signs the `sr` text exactly as it appears in the token, so the
//! verifier works on the raw `sr` and never re-encodes it first.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Characters left as they are in `sig`: what JavaScript's `encodeURIComponent`
/// keeps minus `!'()*`, which the Node SDK escapes as well.
const SIG_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Clock skew tolerated when checking expiry (the C# validator's 5 minutes).
pub const CLOCK_SKEW_SECS: u64 = 300;

/// Decodes a base64 SAS key; `None` if it is not base64.
pub fn decode_key(key_b64: &str) -> Option<Vec<u8>> {
    B64.decode(key_b64.trim()).ok().filter(|k| !k.is_empty())
}

/// `base64(HMAC-SHA256(key, message))`.
pub fn sign(key: &[u8], message: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    B64.encode(hmac::sign(&key, message.as_bytes()).as_ref())
}

/// Makes a token for resource `sr` (used as given), expiring at `expiry`
/// (Unix seconds), signed with the base64 `key_b64` of `policy`.
///
/// Returns `None` when the key is not base64.
pub fn create_token(sr: &str, key_b64: &str, policy: Option<&str>, expiry: u64) -> Option<String> {
    let key = decode_key(key_b64)?;
    let sig = sign(&key, &format!("{sr}\n{expiry}"));
    let sig = utf8_percent_encode(&sig, SIG_KEEP);
    Some(match policy {
        Some(p) => format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={p}"),
        None => format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"),
    })
}

/// The device key of `registration_id` in a symmetric-key group:
/// `base64(HMAC-SHA256(base64decode(group_key), registration_id))`.
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Option<String> {
    Some(sign(&decode_key(group_key_b64)?, registration_id))
}

/// The fields of a token, `sr` raw (as on the wire), the others URL-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Resource, exactly as it appeared in the token.
    pub sr: String,
    /// Signature, URL-decoded (still base64).
    pub sig: String,
    /// Expiry, raw digits as signed.
    pub se: String,
    /// Policy name, if present.
    pub skn: Option<String>,
}

/// Why a token was refused. The messages are safe to send back to clients:
/// they never include the key or the expected signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the Authorization header is missing")]
    Missing,
    #[error("the Authorization header is not a SharedAccessSignature token")]
    NotSas,
    #[error("the SAS token lacks the `{0}` field")]
    MissingField(&'static str),
    #[error("the SAS token's expiry `se` is not a number")]
    BadExpiry,
    #[error("the SAS token expired (se={0})")]
    Expired(u64),
    #[error("the SAS token names policy `{found}`, but this key belongs to `{expected}`")]
    WrongPolicy { found: String, expected: String },
    #[error(
        "the SAS token's signature does not match (wrong key, or sr was altered after signing)"
    )]
    BadSignature,
    #[error("the SAS token's resource `sr` does not cover `{0}`")]
    WrongResource(String),
}

impl Token {
    /// Parses `SharedAccessSignature k=v&k=v…` with fields in any order.
    pub fn parse(header: &str) -> Result<Token, SasError> {
        let mut parts = header.split_whitespace();
        if parts.next() != Some("SharedAccessSignature") {
            return Err(SasError::NotSas);
        }
        let rest = parts.next().ok_or(SasError::NotSas)?;
        if parts.next().is_some() {
            return Err(SasError::NotSas);
        }
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in rest.split('&') {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            let decoded = || percent_decode_str(v).decode_utf8_lossy().into_owned();
            match k.to_ascii_lowercase().as_str() {
                "sr" => sr = Some(v.to_string()),
                "sig" => sig = Some(decoded()),
                "se" => se = Some(decoded()),
                "skn" => skn = Some(decoded()),
                _ => {}
            }
        }
        Ok(Token {
            sr: sr.ok_or(SasError::MissingField("sr"))?,
            sig: sig.ok_or(SasError::MissingField("sig"))?,
            se: se.ok_or(SasError::MissingField("se"))?,
            skn,
        })
    }

    /// The resource, URL-decoded, without `https://` and trailing `/`, lower-cased.
    pub fn resource(&self) -> String {
        let r = percent_decode_str(&self.sr)
            .decode_utf8_lossy()
            .to_ascii_lowercase();
        let r = r.strip_prefix("https://").unwrap_or(&r);
        r.trim_end_matches('/').to_string()
    }

    /// Checks expiry (with [`CLOCK_SKEW_SECS`]) and the signature against any
    /// of `keys_b64` (primary, then secondary).
    pub fn verify(&self, keys_b64: &[&str], now_unix: u64) -> Result<(), SasError> {
        let se: u64 = self.se.parse().map_err(|_| SasError::BadExpiry)?;
        if se.saturating_add(CLOCK_SKEW_SECS) < now_unix {
            return Err(SasError::Expired(se));
        }
        let message = format!("{}\n{}", self.sr, self.se);
        let ok = keys_b64.iter().filter_map(|k| decode_key(k)).any(|key| {
            let expected = sign(&key, &message);
            constant_time::verify_slices_are_equal(expected.as_bytes(), self.sig.as_bytes()).is_ok()
        });
        if ok {
            Ok(())
        } else {
            Err(SasError::BadSignature)
        }
    }

    /// Whether the token's resource is `target` or a path-segment prefix of it
    /// (case-insensitive), e.g. `sr=localhost:8443` covers the whole service.
    pub fn covers(&self, target: &str) -> bool {
        let r = self.resource();
        let t = target.to_ascii_lowercase();
        t == r || (t.starts_with(&r) && t[r.len()..].starts_with('/'))
    }
}

/// Verifies a service-API `Authorization` header against a policy.
///
/// `host` is the host (with port, if any) the client used; the token's
/// resource must cover it, with or without the port, since clients sign the
/// `HostName` of their connection string.
pub fn verify_service(
    header: Option<&str>,
    policy: &str,
    keys_b64: &[&str],
    host: &str,
    now_unix: u64,
) -> Result<Token, SasError> {
    let token = Token::parse(header.ok_or(SasError::Missing)?)?;
    // Real DPS refuses a service token without `skn` (the policy name): it
    // picks the key by it. (Device tokens may omit it, as the SDKs send them.)
    let Some(skn) = &token.skn else {
        return Err(SasError::MissingField("skn"));
    };
    if !skn.eq_ignore_ascii_case(policy) {
        return Err(SasError::WrongPolicy {
            found: skn.clone(),
            expected: policy.to_string(),
        });
    }
    token.verify(keys_b64, now_unix)?;
    let bare = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .filter(|h| !h.contains(']') || h.ends_with(']'));
    if !(token.covers(host) || bare.is_some_and(|h| token.covers(h))) {
        return Err(SasError::WrongResource(host.to_string()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==";

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key, "localhost\n1700000000"), cross-checked with
        // `printf 'localhost\n1700000000' | openssl dgst -sha256 -mac HMAC -macopt hexkey:…`.
        let t = create_token(
            "localhost",
            KEY,
            Some("provisioningserviceowner"),
            1_700_000_000,
        )
        .unwrap();
        let parsed = Token::parse(&t).unwrap();
        assert_eq!(parsed.sr, "localhost");
        assert_eq!(parsed.se, "1700000000");
        assert!(parsed.verify(&[KEY], 1_699_999_000).is_ok());
        assert_eq!(
            parsed.verify(&[KEY], 1_800_000_000),
            Err(SasError::Expired(1_700_000_000))
        );
    }

    #[test]
    fn fields_in_any_order_and_raw_sr() {
        let sig = sign(&decode_key(KEY).unwrap(), "localhost%3A8443\n4000000000");
        let sig = utf8_percent_encode(&sig, SIG_KEEP).to_string();
        let header = format!(
            "SharedAccessSignature skn=provisioningserviceowner&se=4000000000&sig={sig}&sr=localhost%3A8443"
        );
        let t = verify_service(
            Some(&header),
            "provisioningserviceowner",
            &[KEY],
            "localhost:8443",
            1,
        )
        .unwrap();
        assert_eq!(t.sr, "localhost%3A8443");
    }

    #[test]
    fn refuses_tampering_and_wrong_policy() {
        let t = create_token(
            "localhost",
            KEY,
            Some("provisioningserviceowner"),
            4_000_000_000,
        )
        .unwrap();
        let tampered = t.replace("sr=localhost", "sr=otherhost");
        assert_eq!(
            verify_service(
                Some(&tampered),
                "provisioningserviceowner",
                &[KEY],
                "otherhost",
                1
            ),
            Err(SasError::BadSignature)
        );
        assert!(matches!(
            verify_service(Some(&t), "registration", &[KEY], "localhost", 1),
            Err(SasError::WrongPolicy { .. })
        ));
        assert_eq!(
            verify_service(Some(&t), "provisioningserviceowner", &[KEY], "elsewhere", 1),
            Err(SasError::WrongResource("elsewhere".into()))
        );
        assert_eq!(Token::parse("Bearer abc"), Err(SasError::NotSas));
    }

    #[test]
    fn derived_device_key_matches_docs_recipe() {
        let k = derive_device_key(KEY, "device-0001").unwrap();
        assert_eq!(k, sign(&decode_key(KEY).unwrap(), "device-0001"));
    }
}
