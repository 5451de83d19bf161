//! DPS's rules for registration IDs and enrollment IDs (dps-protocol.md §4.3).
//!
//! IDs are case-insensitive, alphanumerics plus `- . _ :`, with a last
//! character that is alphanumeric or `-`, at most 128 characters; an X.509
//! registration ID is also a certificate CN, so at most 64.

use crate::error::{Error, Result};

/// The rule, quoted in every refusal so users can fix the ID in one go.
pub const RULE: &str = "alphanumerics and `- . _ :` only, starting with an alphanumeric and ending with an alphanumeric or `-`";

/// Longest X.509 registration ID (the X.520 upper bound for a CN).
pub const MAX_CN_ID: usize = 64;
/// Longest enrollment group or registration ID DPS accepts.
pub const MAX_ID: usize = 128;

/// Checks an ID against DPS's rules; `max` is [`MAX_CN_ID`] or [`MAX_ID`],
/// `kind` names it in the message ("registration ID", "group ID").
///
/// Returns a warning for upper-case letters (DPS compares IDs
/// case-insensitively, and some older SDKs lower-case them).
pub fn check(id: &str, max: usize, kind: &str) -> Result<Option<String>> {
    let refuse = |why: &str| {
        Error::input(format!(
            "the {kind} `{id}` is invalid: {why}; DPS allows {RULE}, at most {max} characters"
        ))
    };
    if id.is_empty() {
        return Err(Error::input(format!(
            "the {kind} is empty; DPS allows {RULE}"
        )));
    }
    if id.chars().count() > max {
        return Err(refuse(&format!("it has {} characters", id.chars().count())));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:".contains(*c)))
    {
        return Err(refuse(&format!("character {c:?} is not allowed")));
    }
    let first = id.chars().next().unwrap_or('-');
    if !first.is_ascii_alphanumeric() {
        return Err(refuse(&format!("it starts with {first:?}")));
    }
    let last = id.chars().last().unwrap_or('.');
    if !(last.is_ascii_alphanumeric() || last == '-') {
        return Err(refuse(&format!("it ends with {last:?}")));
    }
    Ok(id.chars().any(|c| c.is_ascii_uppercase()).then(|| {
        format!(
            "{kind} `{id}` has upper-case letters: DPS compares IDs case-insensitively, so `{}` is the same device; prefer lower case",
            id.to_ascii_lowercase()
        )
    }))
}

/// Checks an enrollment group ID (or another 128-character DPS ID);
/// `kind` names it in the message.
pub fn check_id(id: &str, kind: &str) -> Result<()> {
    check(id, MAX_ID, kind).map(|_| ())
}

/// Checks an X.509 registration ID (also a certificate CN: at most 64 characters).
pub fn check_registration_id(id: &str) -> Result<Option<String>> {
    check(id, MAX_CN_ID, "registration ID")
}

/// A registration ID that passed DPS's rule: the only way to make one is
/// [`RegistrationId::parse`] (or [`RegistrationId::parse_cn`] for an X.509
/// device, whose ID is also a 64-character CN), so an unchecked ID cannot
/// reach the registration engine or a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(String);

impl RegistrationId {
    /// Checks `id` as a registration ID (at most [`MAX_ID`] characters);
    /// the second value is the upper-case warning of [`check`], if any.
    pub fn parse(id: &str) -> Result<(Self, Option<String>)> {
        let warning = check(id, MAX_ID, "registration ID")?;
        Ok((RegistrationId(id.to_owned()), warning))
    }

    /// Checks `id` as an X.509 registration ID (also a CN: at most [`MAX_CN_ID`]).
    pub fn parse_cn(id: &str) -> Result<(Self, Option<String>)> {
        let warning = check_registration_id(id)?;
        Ok((RegistrationId(id.to_owned()), warning))
    }

    /// The ID as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key DPS compares by: IDs are case-insensitive.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl std::fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RegistrationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dps_ids() {
        for id in ["device-01", "a", "a:b.c_d-", "0123", &"x".repeat(64)] {
            assert_eq!(check_registration_id(id).unwrap(), None, "{id}");
        }
        assert!(check_registration_id("Device-01").unwrap().is_some());
    }

    #[test]
    fn refuses_bad_ids_quoting_the_rule() {
        for id in [
            "",
            "dev ice",
            "-dev",
            "dev.",
            "dev_",
            "dév",
            &"x".repeat(65),
        ] {
            let e = check_registration_id(id).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("DPS allows"), "{e}");
        }
        assert!(check(&"x".repeat(128), MAX_ID, "group ID").is_ok());
    }

    #[test]
    fn registration_id_only_from_the_rule() {
        let (id, warn) = RegistrationId::parse("Dev-1").unwrap();
        assert_eq!(id.as_str(), "Dev-1");
        assert_eq!(id.folded(), "dev-1");
        assert!(warn.is_some());
        assert!(RegistrationId::parse("bad id").is_err());
        assert!(RegistrationId::parse(&"x".repeat(100)).is_ok());
        assert!(RegistrationId::parse_cn(&"x".repeat(100)).is_err());
    }
}
