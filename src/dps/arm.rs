//! The management-plane (ARM) client for the DPS CA certificate store and
//! proof of possession (dps-protocol.md §10): upload, get, list, delete,
//! `generateVerificationCode` and `verify`, with the etag handed from each
//! step to the next (a stale etag is the classic failure).
//!
//! Authenticated by a bearer token (`AZURE_ACCESS_TOKEN`), which is sent only
//! in the `Authorization` header and never appears in messages.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dps::http::{Http, HttpError, HttpOptions, Reply, encode_segment, host_of};
use crate::error::{Error, Result};

/// Default management endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// `Microsoft.Devices/provisioningServices` api-version.
pub const API_VERSION: &str = "2022-02-05";

/// Which provisioning service, and how to reach it.
#[derive(Clone)]
pub struct ArmTarget {
    pub endpoint: String,
    pub subscription: String,
    pub resource_group: String,
    pub dps_name: String,
    /// Bearer token. Secret.
    pub token: String,
}

impl std::fmt::Debug for ArmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmTarget")
            .field("endpoint", &self.endpoint)
            .field("dps_name", &self.dps_name)
            .field("token", &"[secret elided]")
            .finish_non_exhaustive()
    }
}

fn hint(status: StatusCode) -> Option<String> {
    match status.as_u16() {
        401 => Some("the bearer token was refused: refresh it with `export AZURE_ACCESS_TOKEN=$(az account get-access-token --query accessToken -o tsv)`".into()),
        403 => Some("the signed-in identity lacks rights on this DPS (needs Contributor or IoT Hub Data Contributor)".into()),
        404 => Some("check --subscription, --resource-group, --dps-name and the certificate name".into()),
        412 => Some("the certificate changed since its etag was read; run the command again".into()),
        _ => None,
    }
}

/// A client for one DPS's certificate store.
#[derive(Debug)]
pub struct ArmClient {
    http: Http,
    target: ArmTarget,
    host: String,
}

impl ArmClient {
    pub fn new(target: ArmTarget, opts: HttpOptions) -> Result<Self> {
        let http = Http::new("Azure management API", opts, None)?;
        Ok(ArmClient {
            host: host_of(&target.endpoint),
            http,
            target,
        })
    }

    fn url(&self, suffix: &str) -> String {
        let t = &self.target;
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Devices/provisioningServices/{}/certificates{suffix}?api-version={API_VERSION}",
            t.endpoint.trim_end_matches('/'),
            encode_segment(&t.subscription),
            encode_segment(&t.resource_group),
            encode_segment(&t.dps_name),
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        suffix: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, HttpError> {
        let url = self.url(suffix);
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.http
            .send(
                &self.host,
                |c| {
                    let mut r = c
                        .request(method.clone(), &url)
                        .bearer_auth(&self.target.token)
                        .header("Accept", "application/json");
                    if let Some(e) = if_match {
                        r = r.header("If-Match", e);
                    }
                    match &body {
                        Some(b) => r.header("Content-Type", "application/json").body(b.clone()),
                        // ARM wants an explicit zero length on bodiless POSTs.
                        None => r.header("Content-Length", "0"),
                    }
                },
                &hint,
            )
            .await
    }

    fn name_suffix(name: &str) -> String {
        format!("/{}", encode_segment(name))
    }

    /// `GET …/certificates/{name}`; `None` on 404.
    pub async fn get(&self, name: &str) -> Result<Option<Value>> {
        match self
            .call(reqwest::Method::GET, &Self::name_suffix(name), None, None)
            .await
        {
            Ok(r) => Ok(Some(r.json()?)),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET …/certificates` (the `value` array).
    pub async fn list(&self) -> Result<Vec<Value>> {
        let v = self
            .call(reqwest::Method::GET, "", None, None)
            .await?
            .json()?;
        Ok(v.get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `PUT …/certificates/{name}`; `if_match` only to replace an existing one.
    pub async fn upload(
        &self,
        name: &str,
        pem: &str,
        verified: bool,
        if_match: Option<&str>,
    ) -> Result<Value> {
        let body = json!({"properties": {"certificate": pem, "isVerified": verified}});
        self.call(
            reqwest::Method::PUT,
            &Self::name_suffix(name),
            Some(&body),
            if_match,
        )
        .await?
        .json()
    }

    /// `DELETE …/certificates/{name}` (ARM requires `If-Match`).
    pub async fn delete(&self, name: &str, etag: &str) -> Result<()> {
        self.call(
            reqwest::Method::DELETE,
            &Self::name_suffix(name),
            None,
            Some(etag),
        )
        .await?;
        Ok(())
    }

    /// `POST …/generateVerificationCode` with the current etag; returns the
    /// code and the new etag.
    pub async fn generate_code(&self, name: &str, etag: &str) -> Result<(String, String)> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{}/generateVerificationCode", Self::name_suffix(name)),
                None,
                Some(etag),
            )
            .await?
            .json()?;
        let code = v
            .pointer("/properties/verificationCode")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::Service(
                    "the answer to generateVerificationCode has no properties.verificationCode"
                        .into(),
                )
            })?
            .to_string();
        let new_etag = v
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or(etag)
            .to_string();
        Ok((code, new_etag))
    }

    /// `POST …/verify` with the etag from [`generate_code`](Self::generate_code).
    pub async fn verify(&self, name: &str, etag: &str, pem: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            &format!("{}/verify", Self::name_suffix(name)),
            Some(&json!({ "certificate": pem })),
            Some(etag),
        )
        .await?
        .json()
    }
}

/// A short human summary of a certificate resource.
pub fn summary(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("-");
    let verified = v
        .pointer("/properties/isVerified")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    format!(
        "name:        {}\nsubject:     {}\nthumbprint:  {}\nexpiry:      {}\nverified:    {}\netag:        {}\n",
        s("/name"),
        s("/properties/subject"),
        s("/properties/thumbprint"),
        s("/properties/expiry"),
        if verified { "yes" } else { "no" },
        s("/etag"),
    )
}
