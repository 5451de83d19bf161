//! Create-or-update with etags: read the record, build the body from it,
//! PUT it back with the etag in `If-Match`, and on a conflict (another
//! writer got there first) read again and retry a few times if asked.
//!
//! Used by `pki enroll` (groups) and `pki enroll disallow` (a disabled
//! individual enrollment).

use serde_json::Value;

use crate::dps::client::{Collection, PutOutcome, ServiceClient};
use crate::dps::enrollment::{CertInput, GroupSpec, build_disallow, build_group};
use crate::error::{Error, Result};
use crate::regid::RegistrationId;

/// How many times a conflicting write is read and written again.
pub const CONFLICT_RETRIES: u32 = 5;

/// How a group write went.
#[derive(Debug)]
pub struct Upserted {
    /// Whether the group was new.
    pub created: bool,
    /// The record as the service stored it.
    pub stored: Value,
}

/// How a group write handles etags.
#[derive(Clone, Copy, Debug, Default)]
pub struct Concurrency<'a> {
    /// Write only if the stored etag is this one (`*`: any).
    pub if_match: Option<&'a str>,
    /// On a conflict, read the group again and retry (not with `if_match`).
    pub retry_conflicts: bool,
}

fn etag_of(v: &Value) -> String {
    v.get("etag")
        .and_then(Value::as_str)
        .unwrap_or("*")
        .to_string()
}

/// Creates the group `id`, or updates it changing only what `spec` sets.
/// `on_retry` is told the retry number before each re-read.
pub async fn upsert_group(
    client: &ServiceClient,
    id: &str,
    spec: &GroupSpec,
    how: Concurrency<'_>,
    on_retry: &dyn Fn(u32),
) -> Result<Upserted> {
    let mut conflicts = 0;
    loop {
        let existing = client.get(Collection::Groups, id).await?;
        if existing.is_none() && how.if_match.is_some_and(|e| e != "*") {
            return Err(Error::Service(format!(
                "enrollment group `{id}` does not exist, so --if-match cannot match; drop --if-match to create it"
            )));
        }
        let body = build_group(id, spec, existing.as_ref())?;
        let etag = how
            .if_match
            .map(str::to_string)
            .or_else(|| existing.as_ref().map(etag_of));
        match client
            .put(Collection::Groups, id, &body, etag.as_deref())
            .await?
        {
            PutOutcome::Stored(stored) => {
                return Ok(Upserted {
                    created: existing.is_none(),
                    stored,
                });
            }
            PutOutcome::Conflict(e) => {
                if how.retry_conflicts && how.if_match.is_none() && conflicts < CONFLICT_RETRIES {
                    conflicts += 1;
                    on_retry(conflicts);
                    continue;
                }
                let why = if existing.is_some() {
                    format!(
                        "enrollment group `{id}` was changed by another writer after pki read it (its etag no longer matches)"
                    )
                } else {
                    format!(
                        "enrollment group `{id}` was created by another writer after pki checked for it"
                    )
                };
                let fix = if how.if_match.is_some() {
                    "read the current etag with `pki enroll show --json`"
                } else {
                    "run again, or pass --retry-conflicts"
                };
                return Err(Error::Service(format!("{why}: {e}; {fix}")));
            }
        }
    }
}

/// Writes a disabled individual enrollment for `device` (creating it or
/// disabling the existing one), retrying on conflicts.
pub async fn disallow(
    client: &ServiceClient,
    reg_id: &RegistrationId,
    device: &CertInput,
) -> Result<Value> {
    let id = reg_id.as_str();
    for _ in 0..=CONFLICT_RETRIES {
        let existing = client.get(Collection::Individual, id).await?;
        let body = build_disallow(id, device, existing.as_ref());
        let etag = existing.as_ref().map(etag_of);
        if let PutOutcome::Stored(v) = client
            .put(Collection::Individual, id, &body, etag.as_deref())
            .await?
        {
            return Ok(v);
        }
    }
    Err(Error::Service(format!(
        "the individual enrollment `{id}` kept changing while pki wrote it; run again"
    )))
}
