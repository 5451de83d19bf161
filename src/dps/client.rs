//! The DPS REST clients: the service API (enrollment groups and individual
//! enrollments, SAS-authenticated) and the device registration API (X.509
//! client certificate), per dps-protocol.md §3 and §7.
//!
//! Both take the base URL and the TLS trust as constructor arguments so the
//! same code talks to Azure and to `pki emulator`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::Value;

use crate::dps::connection_string::ConnectionString;
use crate::dps::http::{ClientIdentity, Http, HttpError, HttpOptions, Reply, encode_segment};
use crate::dps::vocab::RegistrationStatus;
use crate::error::{Error, Result};
use crate::regid::RegistrationId;

/// Service API version (what Node, Python and the az CLI send).
pub const SERVICE_API_VERSION: &str = "2021-10-01";
/// Service api-version that carries an enrollment's certificate policy
/// (`namespaceName`, `certificateAuthorityName`, `certificatePolicyName`).
pub const POLICY_API_VERSION: &str = "2026-11-01";
/// Device API version (what every device SDK sends).
pub const DEVICE_API_VERSION: &str = "2019-03-31";
/// Device api-version of a register call with `csr` (certificate issuance):
/// the preview the SDK branches use and the service has deployed; the
/// emulator also accepts the GA `2026-11-01`.
pub const CSR_API_VERSION: &str = "2025-07-01-preview";
/// SAS token lifetime: short, since a fresh token is signed per request.
const SAS_TTL_SECS: u64 = 300;
const JSON: &str = "application/json; charset=utf-8";

/// Turns a `HostName` (possibly `host:port`, possibly with a scheme) into a
/// base URL, refusing what is not a host (an empty name, a bad port).
pub fn base_url(host: &str) -> Result<String> {
    let trimmed = host.trim().trim_end_matches('/');
    let url = if trimmed.starts_with("https://") || trimmed.starts_with("http://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        _ => Err(Error::input(format!(
            "`{host}` is not a host name: give HOST or HOST:PORT, e.g. localhost:8443 or global.azure-devices-provisioning.net"
        ))),
    }
}

/// Hint for a 401 from the service API.
fn service_hint(status: StatusCode) -> Option<String> {
    match status.as_u16() {
        401 => Some(
            "DPS refused the SAS token: the connection string's SharedAccessKey or SharedAccessKeyName is wrong, or the clock is off; copy the connection string again from the DPS \"Shared access policies\" page".into(),
        ),
        403 => Some("the shared access policy lacks the EnrollmentWrite/EnrollmentRead right".into()),
        _ => None,
    }
}

/// A client for the DPS service API.
#[derive(Debug)]
pub struct ServiceClient {
    http: Http,
    base: String,
    host: String,
    cs: ConnectionString,
    api_version: &'static str,
}

/// The outcome of a write that may have raced another writer.
#[derive(Debug)]
pub enum PutOutcome {
    /// Stored; the service's record.
    Stored(Value),
    /// 412 (etag changed) or 409 (created meanwhile).
    Conflict(HttpError),
}

impl ServiceClient {
    /// Builds a client for the DPS named by the connection string.
    pub fn new(cs: ConnectionString, opts: HttpOptions) -> Result<Self> {
        let http = Http::new("DPS", opts, None)?;
        let base = base_url(&cs.host_name)?;
        Ok(ServiceClient {
            host: crate::dps::http::host_of(&base),
            http,
            base,
            cs,
            api_version: SERVICE_API_VERSION,
        })
    }

    /// Uses `version` instead of [`SERVICE_API_VERSION`] (e.g.
    /// [`POLICY_API_VERSION`], so the service keeps a certificate policy).
    pub fn with_api_version(mut self, version: &'static str) -> Self {
        self.api_version = version;
        self
    }

    fn token(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // The key was checked as base64 when the connection string was parsed.
        crate::dps::sas::create_token(
            &self.cs.host_name,
            &self.cs.key,
            Some(&self.cs.key_name),
            now + SAS_TTL_SECS,
        )
        .unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version={}", self.base, self.api_version)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Reply, HttpError> {
        let url = self.url(path);
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.http
            .send(
                &self.host,
                |c| {
                    let mut r = c
                        .request(method.clone(), &url)
                        .header("Authorization", self.token())
                        .header("Accept", "application/json");
                    for (k, v) in headers {
                        r = r.header(*k, v);
                    }
                    if let Some(b) = &body {
                        r = r.header("Content-Type", JSON).body(b.clone());
                    }
                    r
                },
                &service_hint,
            )
            .await
    }

    /// `GET /{collection}/{id}`; `None` on 404.
    pub async fn get(&self, collection: Collection, id: &str) -> Result<Option<Value>> {
        let path = format!("/{}/{}", collection.path(), encode_segment(id));
        match self.call(reqwest::Method::GET, &path, None, &[]).await {
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT /{collection}/{id}` with an optional `If-Match`.
    pub async fn put(
        &self,
        collection: Collection,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<PutOutcome> {
        let path = format!("/{}/{}", collection.path(), encode_segment(id));
        let headers: Vec<(&str, String)> = if_match
            .map(|e| vec![("If-Match", e.to_string())])
            .unwrap_or_default();
        match self
            .call(reqwest::Method::PUT, &path, Some(body), &headers)
            .await
        {
            Ok(r) => Ok(PutOutcome::Stored(r.json()?)),
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT)
                ) =>
            {
                Ok(PutOutcome::Conflict(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /{collection}/{id}` with an optional `If-Match`; `false` on 404.
    pub async fn delete(
        &self,
        collection: Collection,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<bool> {
        let path = format!("/{}/{}", collection.path(), encode_segment(id));
        let headers: Vec<(&str, String)> = if_match
            .map(|e| vec![("If-Match", e.to_string())])
            .unwrap_or_default();
        match self
            .call(reqwest::Method::DELETE, &path, None, &headers)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /{collection}/query`, following `x-ms-continuation` to the end.
    pub async fn query_all(&self, collection: Collection) -> Result<Vec<Value>> {
        let path = format!("/{}/query", collection.path());
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let query = serde_json::json!({"query": "*"});
        // Bounded so a server that keeps sending the same token cannot loop forever.
        for _ in 0..10_000 {
            let headers: Vec<(&str, String)> = token
                .iter()
                .map(|t| ("x-ms-continuation", t.clone()))
                .collect();
            let r = self
                .call(reqwest::Method::POST, &path, Some(&query), &headers)
                .await?;
            match r.json()? {
                Value::Array(items) => out.extend(items),
                Value::Null => {}
                _ => {
                    return Err(Error::Service(
                        "the query answer is not a JSON array".into(),
                    ));
                }
            }
            let next = r
                .header("x-ms-continuation")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next.is_none() || next == token {
                return Ok(out);
            }
            token = next;
        }
        Err(Error::Service(
            "the query did not end after 10000 pages".into(),
        ))
    }
}

/// The service API collections `pki` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    /// `/enrollmentGroups`.
    Groups,
    /// `/enrollments` (individual enrollments).
    Individual,
}

impl Collection {
    fn path(self) -> &'static str {
        match self {
            Collection::Groups => "enrollmentGroups",
            Collection::Individual => "enrollments",
        }
    }
}

/// Result of a device registration.
#[derive(Debug)]
pub struct Registration {
    /// Final `status`: `assigned`, `failed`, `disabled`, `unassigned`.
    pub status: RegistrationStatus,
    /// The whole operation body (with `registrationState`).
    pub body: Value,
}

/// A client for the device registration API, authenticated by the device's
/// X.509 chain in the TLS handshake, or by a SAS token signed with its
/// symmetric key.
#[derive(Debug)]
pub struct DeviceClient {
    http: Http,
    base: String,
    host: String,
    /// The device's symmetric key (base64), for symmetric-key attestation.
    sas_key: Option<DeviceKey>,
}

/// A device's symmetric key; `Debug` elides it.
struct DeviceKey(String);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey([secret elided])")
    }
}

/// The hint after a symmetric-key device's request failed with `status`.
pub(crate) fn symmetric_hint(status: StatusCode) -> Option<String> {
    match status.as_u16() {
        401 => Some(
            "DPS did not accept the device's SAS token: check the key (for a group device, the key derived from the group's key and this registration ID), the registration ID and --id-scope".into(),
        ),
        404 => Some("check --id-scope and --host".into()),
        _ => None,
    }
}

/// The hint after an X.509 device's request failed with `status`.
pub(crate) fn device_hint(status: StatusCode) -> Option<String> {
    match status.as_u16() {
        401 => Some(
            "DPS did not accept the device certificate: check that the chain reaches a verified CA of an enrollment group, that the leaf's CN is the registration ID, and that --key belongs to the leaf".into(),
        ),
        404 => Some("check --id-scope and --host".into()),
        _ => None,
    }
}

impl DeviceClient {
    /// `host` is the global endpoint or the emulator's `host:port`.
    pub fn new(host: &str, identity: ClientIdentity, opts: HttpOptions) -> Result<Self> {
        let http = Http::new("DPS", opts, Some(identity))?;
        let base = base_url(host)?;
        Ok(DeviceClient {
            host: crate::dps::http::host_of(&base),
            http,
            base,
            sas_key: None,
        })
    }

    /// A client for a symmetric-key device: every request carries a SAS
    /// token (`sr={scope}/registrations/{id}`, policy `registration`, one
    /// hour, as the SDKs sign) made with `device_key_b64`.
    pub fn with_symmetric_key(host: &str, device_key_b64: &str, opts: HttpOptions) -> Result<Self> {
        if crate::dps::sas::decode_key(device_key_b64).is_none() {
            return Err(crate::error::Error::input(
                "the device key is not valid base64",
            ));
        }
        let http = Http::new("DPS", opts, None)?;
        let base = base_url(host)?;
        Ok(DeviceClient {
            host: crate::dps::http::host_of(&base),
            http,
            base,
            sas_key: Some(DeviceKey(device_key_b64.to_owned())),
        })
    }

    /// The `Authorization` header for registration `sr`, if symmetric-key.
    fn authorization(&self, sr: &str) -> Option<String> {
        let key = self.sas_key.as_ref()?;
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 3600;
        crate::dps::sas::create_token(sr, &key.0, Some("registration"), expiry)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        api_version: &str,
    ) -> Result<Reply, HttpError> {
        let url = format!("{}{path}?api-version={api_version}", self.base);
        let body = serde_json::to_vec(body).unwrap_or_default();
        // The resource is `{scope}/registrations/{id}`: the path's first three segments.
        let sr: Vec<&str> = path
            .trim_start_matches('/')
            .splitn(4, '/')
            .take(3)
            .collect();
        let auth = self.authorization(&sr.join("/"));
        let hint: &dyn Fn(StatusCode) -> Option<String> = if self.sas_key.is_some() {
            &symmetric_hint
        } else {
            &device_hint
        };
        self.http
            .send(
                &self.host,
                |c| {
                    let r = c
                        .request(method.clone(), &url)
                        .header("Accept", "application/json")
                        .header("Content-Type", JSON)
                        .body(body.clone());
                    match &auth {
                        Some(a) => r.header("Authorization", a),
                        None => r,
                    }
                },
                hint,
            )
            .await
    }

    /// Registers and polls until the operation ends or `deadline` passes.
    /// `progress` is told each intermediate status.
    pub async fn register(
        &self,
        id_scope: &str,
        registration_id: &RegistrationId,
        payload: Option<&Value>,
        deadline: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Registration> {
        self.register_csr(id_scope, registration_id, payload, None, deadline, progress)
            .await
    }

    /// [`DeviceClient::register`] with a `csr` (base64 DER) for DPS
    /// certificate issuance, at [`CSR_API_VERSION`]; the result's
    /// `registrationState.issuedCertificateChain` holds the issued chain.
    pub async fn register_csr(
        &self,
        id_scope: &str,
        registration_id: &RegistrationId,
        payload: Option<&Value>,
        csr: Option<&str>,
        deadline: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Registration> {
        let api = if csr.is_some() {
            CSR_API_VERSION
        } else {
            DEVICE_API_VERSION
        };
        let start = Instant::now();
        let scope = encode_segment(id_scope);
        let reg = encode_segment(registration_id.as_str());
        let mut body = serde_json::json!({ "registrationId": registration_id.as_str() });
        if let Some(p) = payload {
            body["payload"] = p.clone();
        }
        if let Some(c) = csr {
            body["csr"] = Value::String(c.to_string());
        }
        let put_path = format!("/{scope}/registrations/{reg}/register");
        let mut reply = self
            .call(reqwest::Method::PUT, &put_path, &body, api)
            .await?;
        loop {
            let v = reply.json()?;
            let status =
                RegistrationStatus::parse(v.get("status").and_then(Value::as_str).unwrap_or(""));
            if status.is_final() {
                return Ok(Registration { status, body: v });
            }
            progress(if status.as_str().is_empty() {
                "waiting"
            } else {
                status.as_str()
            });
            let wait = reply.retry_after().unwrap_or(Duration::from_secs(2));
            if start.elapsed() + wait > deadline {
                return Err(Error::Service(format!(
                    "DPS was still `{status}` after {} s; try again later or raise --timeout",
                    deadline.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            reply = match v.get("operationId").and_then(Value::as_str) {
                Some(op) => {
                    let path = format!(
                        "/{scope}/registrations/{reg}/operations/{}",
                        encode_segment(op)
                    );
                    self.call(reqwest::Method::GET, &path, &serde_json::json!({}), api)
                        .await?
                }
                // No operation to poll (as the Node client does): register again.
                None => {
                    self.call(reqwest::Method::PUT, &put_path, &body, api)
                        .await?
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("localhost:8443").unwrap(),
            "https://localhost:8443"
        );
        assert_eq!(base_url("https://x/").unwrap(), "https://x");
        assert_eq!(
            base_url("mydps.azure-devices-provisioning.net").unwrap(),
            "https://mydps.azure-devices-provisioning.net"
        );
        for bad in ["", "localhost:99999", "a b:1"] {
            assert_eq!(base_url(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
