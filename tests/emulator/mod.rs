//! End-to-end tests of `pki emulator`: the real binary on a loopback port,
//! real HTTPS (reqwest + rustls trusting only the emulator's CA), no mocks.
//! Split by API; the request helpers shared by every part are here.

mod arm;
mod device;
mod issuance;
mod robustness;
mod service;

use std::io::Write;

use crate::support::{DEVICE_API, Emulator, SERVICE_API, TestChain};
use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    emu: &Emulator,
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = emu.url(&format!("{path}{sep}{SERVICE_API}"));
    let mut rb = client
        .request(method, url)
        .header("authorization", emu.sas());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json; charset=utf-8")
            .body(b);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn x509_group(id: &str, pem: &str) -> String {
    json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": pem}}}},
        "provisioningStatus": "enabled"
    })
    .to_string()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

async fn register(emu: &Emulator, identity: &str, reg_id: &str) -> (StatusCode, Value) {
    let c = emu.client(Some(identity));
    register_with(emu, &c, reg_id, None).await
}

async fn register_with(
    emu: &Emulator,
    c: &Client,
    reg_id: &str,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let scope = emu.id_scope();
    let mut rb = c
        .put(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/register?{DEVICE_API}"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"registrationId": reg_id}).to_string());
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    if status != StatusCode::ACCEPTED {
        return (status, j(&r.text().await.unwrap()));
    }
    assert_eq!(r.headers()["retry-after"], "1");
    let op = j(&r.text().await.unwrap());
    assert_eq!(op["status"], "assigning");
    let op_id = op["operationId"].as_str().unwrap();
    // The Node device client sends `{}` on the status GET.
    let mut rb = c
        .get(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/operations/{op_id}?{DEVICE_API}"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .body("{}");
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    (status, j(&r.text().await.unwrap()))
}

/// A service SAS token for resource `host` (as a client of that host name signs it).
fn sas_for(emu: &Emulator, host: &str) -> String {
    pki::dps::sas::create_token(
        host,
        &emu.key,
        Some("provisioningserviceowner"),
        4_000_000_000,
    )
    .unwrap()
}
