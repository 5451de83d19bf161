//! `pki ca` against a small stateful fake of the ARM certificate store that
//! enforces what Azure enforces: `If-Match` with the current etag on every
//! step, a new etag after each write, and a verification certificate whose
//! CN is the code and whose signature verifies with the uploaded CA's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::support::{Fake, Reply, Run, TestChain, pki_env, stderr, stdout};
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.test-bearer-token";
const BASE: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Devices/provisioningServices/dps-1/certificates";

#[derive(Default)]
struct Store {
    certs: HashMap<String, Entry>,
    counter: u32,
}

struct Entry {
    der: Vec<u8>,
    etag: String,
    verified: bool,
    code: Option<String>,
}

fn der_of(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().contents().to_vec()
}

fn resource(name: &str, e: &Entry) -> serde_json::Value {
    let (_, x) = X509Certificate::from_der(&e.der).unwrap();
    json!({"id": format!("{BASE}/{name}"), "name": name, "type": "Microsoft.Devices/provisioningServices/Certificates",
        "etag": e.etag, "properties": {"subject": x.subject().to_string(),
        "thumbprint": pki::dps::enrollment::thumbprint(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &e.der),
        "isVerified": e.verified, "verificationCode": e.code}})
}

fn arm_error(status: u16, code: &str, msg: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": msg}}))
}

fn fake_arm() -> Fake {
    let store: Arc<Mutex<Store>> = Arc::default();
    Fake::start(vec![], move |req, _| {
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return arm_error(401, "AuthenticationFailed", "bad token");
        }
        let mut st = store.lock().unwrap();
        st.counter += 1;
        let new_etag = format!("etag-{}", st.counter);
        let rest = req.path().strip_prefix(BASE).unwrap_or("").to_string();
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let if_match = req.header("if-match").map(str::to_string);
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", [""]) => {
                let list: Vec<_> = st.certs.iter().map(|(n, e)| resource(n, e)).collect();
                Reply::json(200, json!({"value": list}))
            }
            ("GET", [name]) => match st.certs.get(*name) {
                Some(e) => Reply::json(200, resource(name, e)),
                None => arm_error(404, "NotFound", "no such certificate"),
            },
            ("PUT", [name]) => {
                if let Some(e) = st.certs.get(*name)
                    && if_match.as_deref() != Some(e.etag.as_str())
                {
                    return arm_error(412, "PreconditionFailed", "etag mismatch");
                }
                let b = req.json();
                let e = Entry {
                    der: der_of(b["properties"]["certificate"].as_str().unwrap()),
                    etag: new_etag,
                    verified: b["properties"]["isVerified"].as_bool().unwrap_or(false),
                    code: None,
                };
                let r = resource(name, &e);
                st.certs.insert(name.to_string(), e);
                Reply::json(200, r)
            }
            ("DELETE", [name]) => match st.certs.get(*name) {
                Some(e) if if_match.as_deref() == Some(e.etag.as_str()) => {
                    st.certs.remove(*name);
                    Reply::json(200, json!({}))
                }
                Some(_) => arm_error(412, "PreconditionFailed", "etag mismatch"),
                None => arm_error(404, "NotFound", "no such certificate"),
            },
            ("POST", [name, "generateVerificationCode"]) => {
                let Some(e) = st.certs.get_mut(*name) else {
                    return arm_error(404, "NotFound", "no such certificate");
                };
                if if_match.as_deref() != Some(e.etag.as_str()) {
                    return arm_error(412, "PreconditionFailed", "etag mismatch");
                }
                e.code = Some("4D2F0E6A9B1C8E7F".into());
                e.etag = new_etag;
                Reply::json(200, resource(name, e))
            }
            ("POST", [name, "verify"]) => {
                let Some(e) = st.certs.get_mut(*name) else {
                    return arm_error(404, "NotFound", "no such certificate");
                };
                if if_match.as_deref() != Some(e.etag.as_str()) {
                    return arm_error(412, "PreconditionFailed", "etag mismatch");
                }
                let vder = der_of(req.json()["certificate"].as_str().unwrap());
                let (_, v) = X509Certificate::from_der(&vder).unwrap();
                let (_, ca) = X509Certificate::from_der(&e.der).unwrap();
                let cn = pki::issue::common_name_of(&v);
                if cn != e.code || v.verify_signature(Some(ca.public_key())).is_err() {
                    return arm_error(
                        400,
                        "IH400053",
                        "Proof-Of-Possession failed: wrong code or issuer",
                    );
                }
                e.verified = true;
                e.etag = new_etag;
                Reply::json(200, resource(name, e))
            }
            _ => arm_error(405, "MethodNotAllowed", "?"),
        }
    })
}

fn ca(fake: &Fake, args: &[&str]) -> Run {
    let endpoint = format!("https://{}", fake.host());
    let mut all = vec!["ca"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--arm-endpoint",
        &endpoint,
        "--subscription",
        "sub-1",
        "--resource-group",
        "rg-1",
        "--dps-name",
        "dps-1",
        "--ca-file",
        fake.ca_file.to_str().unwrap(),
    ]);
    let out = pki_env(&all, &[("AZURE_ACCESS_TOKEN", TOKEN)]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(TOKEN), "bearer token leaked: {text}");
    out
}

#[test]
fn verify_proves_possession_of_the_intermediate_in_one_command() {
    let fake = fake_arm();
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "PoP", &[]);
    let dir = tmp.path().to_str().unwrap();

    // Not uploaded yet: verify uploads the intermediate, then proves it.
    let out = ca(&fake, &["verify", "line-7", "--ca-dir", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("verified:    yes"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("PoP Intermediate"),
        "{}",
        stdout(&out)
    );
    let seen = fake.seen();
    let generate = seen
        .iter()
        .find(|s| s.path().ends_with("/generateVerificationCode"))
        .unwrap();
    assert_eq!(
        generate.header("if-match"),
        Some("etag-2"),
        "etag from the upload"
    );
    let ver = seen.iter().find(|s| s.path().ends_with("/verify")).unwrap();
    assert_eq!(ver.header("if-match"), Some("etag-3"), "etag from generate");

    // Already verified: says so, exits 0.
    let out = ca(&fake, &["verify", "line-7", "--ca-dir", dir]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("already verified"));

    // The root, uploaded separately, is found by thumbprint.
    let out = ca(
        &fake,
        &[
            "upload",
            "root",
            "--cert",
            chain.root_cert().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("verified:    no"));
    let out = ca(&fake, &["verify", "root", "--ca-dir", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("root CA's key"), "{}", stderr(&out));

    // Forcing the wrong issuer is refused before any code is generated.
    let out = ca(
        &fake,
        &[
            "verify",
            "root",
            "--ca-dir",
            dir,
            "--issuer",
            "intermediate",
        ],
    );
    assert!(!out.status.success());

    let out = ca(&fake, &["list"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).matches(" verified ").count(),
        2,
        "{}",
        stdout(&out)
    );

    let out = ca(&fake, &["delete", "root"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ca(&fake, &["show", "root"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn upload_verified_and_missing_token() {
    let fake = fake_arm();
    let tmp = tempfile::tempdir().unwrap();
    let chain = TestChain::make(tmp.path(), "Up", &[]);
    let out = ca(
        &fake,
        &[
            "upload",
            "inter",
            "--cert",
            chain.intermediate_cert().to_str().unwrap(),
            "--verified",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["properties"]["isVerified"], true);
    // Re-upload replaces with If-Match.
    let out = ca(
        &fake,
        &[
            "upload",
            "inter",
            "--cert",
            chain.root_cert().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = pki_env(
        &[
            "ca",
            "list",
            "--subscription",
            "s",
            "--resource-group",
            "r",
            "--dps-name",
            "d",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("AZURE_ACCESS_TOKEN"));
}
