//! DPS certificate issuance (issue 10) over raw HTTPS: enrollments with a
//! certificate policy (GA triple and preview alias), a register call with
//! `csr` at api-version 2026-11-01, the returned chain checked with openssl
//! against the exported root, every refusal as a DPS-shaped 400, and
//! re-registration with the issued certificate.

use std::path::Path;

use super::*;
use crate::support::{Run, openssl, p, s};

const GA: &str = "api-version=2026-11-01";
const PREVIEW: &str = "api-version=2025-07-01-preview";

async fn service(
    emu: &Emulator,
    method: Method,
    path: &str,
    version: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let c = emu.client(None);
    let mut rb = c
        .request(method, emu.url(&format!("{path}?{version}")))
        .header("authorization", emu.sas());
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json; charset=utf-8")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// PUT …/register with `body` at `version`; on 202, polls once.
async fn register_body(
    emu: &Emulator,
    identity: &str,
    reg_id: &str,
    version: &str,
    body: Value,
) -> (StatusCode, Value) {
    let c = emu.client(Some(identity));
    let scope = emu.id_scope();
    let r = c
        .put(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/register?{version}"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v = j(&r.text().await.unwrap());
    if status != StatusCode::ACCEPTED {
        return (status, v);
    }
    let op = v["operationId"].as_str().unwrap().to_string();
    let r = c
        .get(emu.url(&format!(
            "/{scope}/registrations/{reg_id}/operations/{op}?{version}"
        )))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, j(&r.text().await.unwrap()))
}

fn ok(run: Run) -> Run {
    run.ok()
}

/// An openssl key + CSR (`newkey` e.g. `ec` with P-384, or `rsa:2048`).
/// Returns (key PEM path, CSR base64 DER).
fn csr(dir: &Path, name: &str, cn: &str, newkey: &[&str]) -> (String, String) {
    let key = p(dir, &format!("{name}.key"));
    let out = p(dir, &format!("{name}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-subj", &subj, "-out", &out,
    ];
    args.extend_from_slice(newkey);
    ok(openssl(&args));
    let der = ok(openssl(&["req", "-in", &out, "-outform", "DER"])).raw_stdout;
    (key, base64::engine::general_purpose::STANDARD.encode(der))
}

const P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];

fn group(id: &str, chain: &TestChain, policy: Value) -> Value {
    let mut g = json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": chain.intermediate.cert.pem}}}},
    });
    if let (Some(g), Some(p)) = (g.as_object_mut(), policy.as_object()) {
        g.extend(p.clone());
    }
    g
}

/// Writes the base64 DER chain as PEM files leaf.pem, issuing.pem, root.pem in `dir`.
fn write_chain(dir: &Path, chain: &Value) -> [String; 3] {
    let items = chain
        .as_array()
        .expect("issuedCertificateChain is an array");
    assert_eq!(items.len(), 3, "leaf, issuing CA, root: {chain}");
    let names = ["leaf.pem", "issuing.pem", "root.pem"];
    let mut out = [String::new(), String::new(), String::new()];
    for (i, item) in items.iter().enumerate() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(item.as_str().unwrap())
            .expect("base64 DER");
        let path = dir.join(names[i]);
        std::fs::write(&path, pki::keys::pem_lf("CERTIFICATE", &der)).unwrap();
        out[i] = s(&path).to_string();
    }
    out
}

#[tokio::test]
async fn register_with_csr_issues_a_chain_to_the_exported_root_and_refuses_precisely() {
    let dir = tmp();
    let work = tmp();
    let emu = Emulator::start(
        &dir.path().join("emu"),
        &["--in-memory", "--certificate-policy", "ns1/ca1/p1:7"],
    );
    let policies = emu.info["certificatePolicies"].as_array().unwrap().clone();
    assert_eq!(policies.len(), 1, "{}", emu.info);
    assert_eq!(policies[0]["certificatePolicyName"], "p1");
    assert_eq!(policies[0]["validityDays"], 7);
    let root_file = policies[0]["rootFile"].as_str().unwrap().to_string();
    assert!(Path::new(&root_file).starts_with(dir.path().join("emu")));

    let chain = TestChain::new("Factory");
    let triple = json!({"namespaceName": "ns1", "certificateAuthorityName": "ca1", "certificatePolicyName": "p1"});
    let (st, v) = service(
        &emu,
        Method::PUT,
        "/enrollmentGroups/factory",
        GA,
        Some(group("factory", &chain, triple.clone())),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Round trip: GET and query return the triple.
    let (st, v) = service(&emu, Method::GET, "/enrollmentGroups/factory", GA, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for k in [
        "namespaceName",
        "certificateAuthorityName",
        "certificatePolicyName",
    ] {
        assert_eq!(v[k], triple[k], "{v}");
    }
    let (st, v) = service(
        &emu,
        Method::POST,
        "/enrollmentGroups/query",
        GA,
        Some(json!({"query": "*"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[0]["certificatePolicyName"], "p1", "{v}");
    // A partial triple is refused; so is an alias that contradicts the triple.
    let (st, v) = service(
        &emu,
        Method::PUT,
        "/enrollmentGroups/partial",
        GA,
        Some(group(
            "partial",
            &chain,
            json!({"namespaceName": "ns1", "certificatePolicyName": "p1"}),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("go together")
            && v["message"]
                .as_str()
                .unwrap()
                .contains("certificateAuthorityName"),
        "{v}"
    );
    let mut both = triple.clone();
    both["credentialPolicyName"] = json!("other");
    let (st, v) = service(
        &emu,
        Method::PUT,
        "/enrollmentGroups/both",
        GA,
        Some(group("both", &chain, both)),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("contradicts"),
        "{v}"
    );
    // The preview alias round-trips and creates its policy on first use.
    let other = TestChain::new("Preview");
    let (st, v) = service(
        &emu,
        Method::PUT,
        "/enrollmentGroups/preview",
        PREVIEW,
        Some(group(
            "preview",
            &other,
            json!({"credentialPolicyName": "p2"}),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["credentialPolicyName"], "p2", "{v}");
    assert!(v.get("certificatePolicyName").is_none(), "{v}");
    assert!(
        dir.path()
            .join("emu/certificate-policies/default/default/p2/root.cert.pem")
            .exists()
    );

    // A device with a bootstrap X.509 chain and an openssl P-384 CSR.
    let (identity, _) = chain.device("device-01");
    let (key, csr_b64) = csr(work.path(), "d1", "device-01", P384);
    let (st, v) = register_body(
        &emu,
        &identity,
        "device-01",
        GA,
        json!({"registrationId": "device-01", "csr": csr_b64}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "assigned", "{v}");
    let state = &v["registrationState"];
    assert_eq!(state["x509"]["enrollmentGroupId"], "factory");
    let [leaf, issuing, root] = write_chain(work.path(), &state["issuedCertificateChain"]);
    // The returned root is the exported one; the chain verifies with openssl.
    assert_eq!(
        ok(openssl(&["x509", "-in", &root, "-outform", "DER"])).raw_stdout,
        ok(openssl(&["x509", "-in", &root_file, "-outform", "DER"])).raw_stdout
    );
    crate::support::assert_verifies(&root_file, Some(&issuing), &leaf);
    let text = crate::support::x509_text(&leaf);
    assert!(text.contains("Subject: CN = device-01"), "{text}");
    assert!(text.contains("ecdsa-with-SHA384"), "{text}");
    assert!(text.contains("NIST CURVE: P-384"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    let (nb, na) = crate::support::validity(&leaf);
    assert!(
        (7 * 86400..7 * 86400 + 600).contains(&(na - nb)),
        "{nb} {na}"
    );
    // Leaf key = CSR key.
    assert_eq!(
        ok(openssl(&["x509", "-in", &leaf, "-noout", "-pubkey"])).stdout,
        ok(openssl(&["pkey", "-in", &key, "-pubout"])).stdout
    );
    // The service-side record and a device status lookup do not carry the chain.
    let (_, v) = service(&emu, Method::GET, "/registrations/device-01", GA, None).await;
    assert!(v.get("issuedCertificateChain").is_none(), "{v}");

    // Every refusal is a 400 with a DPS body naming the rule.
    let pem_csr = std::fs::read_to_string(work.path().join("d1.csr")).unwrap();
    let (_, rsa) = csr(work.path(), "rsa", "device-01", &["-newkey", "rsa:2048"]);
    let (_, p256) = csr(
        work.path(),
        "p256",
        "device-01",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (_, wrong_cn) = csr(work.path(), "cn", "someone-else", P384);
    let mut broken = base64::engine::general_purpose::STANDARD
        .decode(&csr_b64)
        .unwrap();
    let n = broken.len();
    broken[n - 3] ^= 0x55;
    let broken = base64::engine::general_purpose::STANDARD.encode(broken);
    let oversize = "A".repeat(16 * 1024);
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("PEM armour", pem_csr, 400012, "PEM armour"),
        (
            "bad base64",
            "not base64!!".into(),
            400012,
            "not valid base64",
        ),
        ("bad signature", broken, 400004, "does not verify"),
        (
            "CN",
            wrong_cn,
            400004,
            "is not the registration ID `device-01`",
        ),
        (
            "RSA",
            rsa,
            400004,
            "is rsa-2048: DPS certificate issuance accepts only EC P-384",
        ),
        (
            "P-256",
            p256,
            400004,
            "is ec-p256: DPS certificate issuance accepts only EC P-384",
        ),
        ("oversize", oversize, 400004, "at most 8192 bytes"),
    ];
    for (what, field, code, expect) in cases {
        let (st, v) = register_body(&emu, &identity, "device-01", GA, json!({"csr": field})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["errorCode"], code, "{what}: {v}");
        assert!(v["trackingId"].is_string(), "{what}: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(expect), "{what}: {m}");
    }
    // A CSR on an enrollment without a policy.
    let plain = TestChain::new("Plain");
    let (st, v) = service(
        &emu,
        Method::PUT,
        "/enrollmentGroups/plain",
        GA,
        Some(group("plain", &plain, json!({}))),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (plain_identity, _) = plain.device("plain-01");
    let (_, plain_csr) = csr(work.path(), "plain", "plain-01", P384);
    let (st, v) = register_body(
        &emu,
        &plain_identity,
        "plain-01",
        GA,
        json!({"csr": plain_csr}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("has no certificate policy"),
        "{v}"
    );
    // A status lookup with csr.
    let c = emu.client(Some(&identity));
    let r = c
        .post(emu.url(&format!("/{}/registrations/device-01?{GA}", emu.id_scope())))
        .header("content-type", "application/json")
        .body(json!({"registrationId": "device-01", "csr": csr_b64}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = j(&r.text().await.unwrap());
    assert!(
        v["message"].as_str().unwrap().contains("status lookup"),
        "{v}"
    );

    // The issued certificate is now the device's credential: re-register
    // with it (no bootstrap chain), then renew with a new CSR.
    let issued_identity = format!(
        "{}{}{}",
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&leaf).unwrap(),
        std::fs::read_to_string(&issuing).unwrap()
    );
    let (st, v) = register_body(
        &emu,
        &issued_identity,
        "device-01",
        GA,
        json!({"registrationId": "device-01"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "assigned", "{v}");
    assert_eq!(
        v["registrationState"]["x509"]["enrollmentGroupId"], "factory",
        "{v}"
    );
    assert!(
        v["registrationState"]
            .get("issuedCertificateChain")
            .is_none(),
        "{v}"
    );
    let (_, renew_csr) = csr(work.path(), "d1b", "device-01", P384);
    let (st, v) = register_body(
        &emu,
        &issued_identity,
        "device-01",
        GA,
        json!({"csr": renew_csr}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let renewed = v["registrationState"]["issuedCertificateChain"][0].clone();
    assert!(renewed.is_string(), "{v}");
    assert_ne!(renewed, state["issuedCertificateChain"][0]);
    // A leaf from the policy presented for another device is refused.
    let (st, v) = register_body(&emu, &issued_identity, "device-02", GA, json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
}

#[tokio::test]
async fn policies_are_durable_and_validity_is_checked() {
    let dir = tmp();
    let data = dir.path().join("emu");
    let root = {
        let emu = Emulator::start(&data, &["--certificate-policy", "ns/ca/p:30"]);
        emu.info["certificatePolicies"][0]["rootFile"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = std::fs::read(&root).unwrap();
    assert_eq!(
        crate::support::mode(&p(Path::new(&root).parent().unwrap(), "issuing.key.pem")),
        0o600
    );
    // Restarted without the flag: the same root, still listed.
    let emu = Emulator::start(&data, &[]);
    assert_eq!(
        emu.info["certificatePolicies"][0]["rootFile"],
        root.as_str()
    );
    assert_eq!(emu.info["certificatePolicies"][0]["validityDays"], 30);
    assert_eq!(std::fs::read(&root).unwrap(), first);
    drop(emu);
    // Out-of-range validity: one line, exit 2.
    for (flag, extra) in [
        ("ns/ca/p:3", None),
        ("ns/ca/p:91", Some("--short-certificate-validity")),
        ("a/b", None),
    ] {
        let mut args = vec![
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--data",
            s(&data),
            "--certificate-policy",
            flag,
        ];
        args.extend(extra);
        let line = crate::support::pki(&args).bad_input();
        assert!(line.contains("--certificate-policy"), "{line}");
    }
    let emu = Emulator::start(
        &data,
        &[
            "--certificate-policy",
            "ns/ca/short:1",
            "--short-certificate-validity",
        ],
    );
    let list = emu.info["certificatePolicies"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|p| p["certificatePolicyName"] == "short" && p["validityDays"] == 1),
        "{list:?}"
    );
}
