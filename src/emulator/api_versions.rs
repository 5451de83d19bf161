//! api-versions of the service and device APIs, and what each one's status is.
//!
//! The real DPS refuses a version it has retired with a 400 in the gateway
//! shape (`{"Message":"ErrorCode:ArgumentInvalid;Unknown api version; uri: …"}`,
//! contract §2.2, seen for the C# v1 service client's `2019-03-31` in
//! December 2024). The emulator accepts retired versions, because the SDKs
//! people still run send them, and logs one warning per client (User-Agent)
//! and version; `--strict-api-versions` refuses them as the cloud does.
//! Transport-neutral: HTTPS passes the query parameter, MQTT the username's.

use std::collections::HashSet;
use std::sync::Mutex;

use super::errors::{DpsError, DpsResult};

/// Which API a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// Enrollment groups, individual enrollments, registration states.
    Service,
    /// Device registration and operation status.
    Device,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Service => "service",
            Api::Device => "device",
        }
    }

    /// The version a client should move to.
    pub fn current(self) -> &'static str {
        match self {
            Api::Service => "2021-10-01",
            Api::Device => "2021-06-01",
        }
    }
}

/// What the real service does with a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The current stable version.
    Current,
    /// Still served.
    Supported,
    /// A preview the emulator accepts (it implements no preview-only feature).
    Preview,
    /// Refused by the real service since the given month.
    Retired(&'static str),
}

/// Every version the emulator knows: (version, service API status, device API status).
/// The README's api-version table lists the same rows.
pub const VERSIONS: &[(&str, Status, Status)] = &[
    (
        "2018-09-01-preview",
        Status::Retired("December 2024"),
        Status::Supported,
    ),
    (
        "2018-11-01",
        Status::Retired("December 2024"),
        Status::Supported,
    ),
    (
        "2019-03-31",
        Status::Retired("December 2024"),
        Status::Supported,
    ),
    ("2021-06-01", Status::Supported, Status::Current),
    ("2021-10-01", Status::Current, Status::Supported),
    ("2021-11-01-preview", Status::Preview, Status::Preview),
    ("2025-07-01-preview", Status::Preview, Status::Preview),
    // Certificate issuance (docs/certificate-issuance.md).
    ("2026-04-01", Status::Supported, Status::Supported),
    ("2026-11-01", Status::Supported, Status::Supported),
    ("2026-11-02-preview", Status::Preview, Status::Preview),
];

/// The status of `version` on `api`, or `None` for a version the emulator does not know.
pub fn status(api: Api, version: &str) -> Option<Status> {
    VERSIONS
        .iter()
        .find(|(v, _, _)| *v == version)
        .map(|(_, s, d)| if api == Api::Service { *s } else { *d })
}

/// Clients already warned, by (API, version, client).
#[derive(Default)]
pub struct Warned(Mutex<HashSet<(Api, String, String)>>);

/// What a retired version gets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Refuse retired versions with the cloud's 400 instead of warning.
    pub strict: bool,
    /// Log the one warning per client (off with `--quiet`).
    pub log: bool,
}

/// Checks the api-version of one request to `api` at `uri` (for the message),
/// sent by `client` (its User-Agent, or a transport-specific id).
pub fn check(
    api: Api,
    version: Option<&str>,
    uri: &str,
    client: &str,
    policy: Policy,
    warned: &Warned,
) -> DpsResult<()> {
    let Some(v) = version else {
        return Err(DpsError::api_version(format!(
            "the api-version query parameter is missing (for example ?api-version={})",
            api.current()
        )));
    };
    match status(api, v) {
        None => Err(DpsError::api_version(format!(
            "Unknown api version; uri: {uri}?api-version={v} (the emulator accepts {})",
            VERSIONS
                .iter()
                .map(|(v, _, _)| *v)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Some(Status::Retired(since)) if policy.strict => Err(DpsError::api_version(format!(
            "Unknown api version; uri: {uri}?api-version={v} (the {} API retired {v} in {since}; use {}; refused because of --strict-api-versions)",
            api.name(),
            api.current()
        ))),
        Some(Status::Retired(since)) => {
            let first = warned.0.lock().unwrap_or_else(|e| e.into_inner()).insert((
                api,
                v.to_string(),
                client.to_string(),
            ));
            if first && policy.log {
                super::log_line(&format!(
                    "warning: {client} uses {} api-version {v}, which the real DPS retired in {since} (it answers 400 \"Unknown api version\"); the current version is {}. Accepted here; --strict-api-versions refuses it as the cloud does",
                    api.name(),
                    api.current()
                ));
            }
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_versions_warn_once_per_client_and_fail_when_strict() {
        let w = Warned::default();
        let lax = Policy {
            strict: false,
            log: false,
        };
        let strict = Policy {
            strict: true,
            ..lax
        };
        let uri = "/enrollmentGroups/g";
        assert!(check(Api::Service, Some("2019-03-31"), uri, "java", lax, &w).is_ok());
        assert!(check(Api::Service, Some("2019-03-31"), uri, "java", lax, &w).is_ok());
        assert_eq!(w.0.lock().unwrap().len(), 1);
        assert!(check(Api::Service, Some("2019-03-31"), uri, "c#", lax, &w).is_ok());
        assert_eq!(w.0.lock().unwrap().len(), 2);
        let e = check(Api::Service, Some("2019-03-31"), uri, "java", strict, &w).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.starts_with(
                "Unknown api version; uri: /enrollmentGroups/g?api-version=2019-03-31"
            ),
            "{}",
            e.message
        );
        assert!(check(Api::Service, Some("2021-10-01"), uri, "java", strict, &w).is_ok());
        assert!(check(Api::Device, Some("2019-03-31"), uri, "java", strict, &w).is_ok());
        assert!(check(Api::Device, Some("1999-01-01"), uri, "java", lax, &w).is_err());
        assert!(check(Api::Device, None, uri, "java", lax, &w).is_err());
    }
}
