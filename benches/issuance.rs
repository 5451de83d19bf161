//! Certificate-issuance benchmark (issue 10, reported in BENCHMARKS.md).
//!
//! 1. P-384 signing in process: one raw ECDSA P-384/SHA-384 signature
//!    (aws-lc-rs, what rcgen signs with) and one whole issued certificate
//!    (`issue_for_public_key`: parameters, DER, signature) per second, beside
//!    `openssl speed -seconds 3 ecdsap384` run by this bench.
//! 2. `pki emulator` (release, on-disk database, fsync per write), one
//!    X.509 group with a certificate policy, DEVICES devices: registrations
//!    per second without `csr` (plain) and with `csr` (issuance: CSR
//!    signature check, P-384 leaf signed, chain returned), in the same run,
//!    both with a fresh TLS handshake per registration and on keep-alive
//!    connections (register + poll, no handshake).
//!
//! Run: `cargo bench --bench issuance` (env: BENCH_SECONDS=5, BENCH_WORKERS=8).
//! It asserts the replies, not the times; it prints the figures.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use pki::issue::{Ca, issue, issue_for_public_key};
use pki::keys::{KeyType, private_key_pem};
use pki::profile::Profile;
use pki::regid::RegistrationId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use support::{Child, client_config, connect, exchange, timed};

const DEVICES: usize = 64;

struct Target {
    addr: std::net::SocketAddr,
    scope: String,
    roots: rustls::RootCertStore,
}

struct Device {
    id: String,
    config: Arc<rustls::ClientConfig>,
    /// `{"registrationId":…}` and `{"registrationId":…,"csr":…}`.
    plain: String,
    with_csr: String,
}

/// Operations per second of `f` over about `secs` seconds, on one thread.
fn per_second(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn openssl_speed() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap384"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 384 bits ecdsa (nistp384)   0.0004s   0.0012s   2500.0    800.0"
    let line = text.lines().find(|l| l.contains("nistp384"))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    cols.get(cols.len().checked_sub(2)?)?.parse().ok()
}

/// One registration (PUT, then polls until final) on `conn`; asserts the result.
async fn register(conn: &mut TlsStream<TcpStream>, t: &Target, d: &Device, csr: bool, close: bool) {
    let api = if csr { "2026-11-01" } else { "2019-03-31" };
    let (s, b) = exchange(
        conn,
        "PUT",
        &format!(
            "/{}/registrations/{}/register?api-version={api}",
            t.scope, d.id
        ),
        "",
        if csr { &d.with_csr } else { &d.plain },
    )
    .await;
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
    let op: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let op = op["operationId"].as_str().unwrap();
    let (s, b) = exchange(
        conn,
        "GET",
        &format!(
            "/{}/registrations/{}/operations/{op}?api-version={api}",
            t.scope, d.id
        ),
        if close { "Connection: close\r\n" } else { "" },
        "{}",
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["status"], "assigned", "{v}");
    assert_eq!(
        v["registrationState"]["issuedCertificateChain"].is_array(),
        csr,
        "{v}"
    );
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);

    // 1. Signing in process.
    let ca_key = KeyType::EcP384.generate().unwrap();
    let ca = Ca::create(
        &Profile::RootCa { path_len: 0 },
        "Bench P-384 CA",
        &pki::validity::Validity::days(30),
        ca_key,
        None,
    )
    .unwrap();
    let raw_key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ca.key().serialized_der(),
    )
    .unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let msg = [7u8; 300];
    let raw = per_second(3.0, || {
        raw_key.sign(&rng, &msg).unwrap();
    });
    let device_key = KeyType::EcP384.generate().unwrap();
    let spki = rcgen::SubjectPublicKeyInfo::from_der(
        &rcgen::PublicKeyData::subject_public_key_info(&device_key),
    )
    .unwrap();
    let certs = per_second(3.0, || {
        issue_for_public_key(
            &Profile::Device,
            "bench-device",
            &pki::validity::Validity::days(30),
            &spki,
            &ca,
        )
        .unwrap();
    });
    let (id, _) = RegistrationId::parse_cn("bench-device").unwrap();
    let csr = pki::csr::build(&id, &device_key).unwrap();
    let verify = per_second(3.0, || {
        pki::csr::Csr::from_dps_field(&csr.base64_der()).unwrap();
    });
    println!(
        "P-384 raw ECDSA sign (aws-lc-rs, 1 thread): {raw:.0}/s = {:.3} ms",
        1000.0 / raw
    );
    println!(
        "P-384 certificate issued from a public key (issue_for_public_key): {certs:.0}/s = {:.3} ms",
        1000.0 / certs
    );
    println!(
        "DPS csr field decoded + parsed + signature verified: {verify:.0}/s = {:.3} ms",
        1000.0 / verify
    );
    match openssl_speed() {
        Some(o) => println!(
            "openssl speed ecdsap384 sign: {o:.0}/s = {:.3} ms; pki raw sign / openssl = {:.2}",
            1000.0 / o,
            raw / o
        ),
        None => println!("openssl speed ecdsap384: not available"),
    }

    // 2. The emulator.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_pki"))
            .args([
                "emulator",
                "--json",
                "--quiet",
                "--listen",
                "127.0.0.1:0",
                "--certificate-policy",
                "bench/bench/devices",
                "--data",
            ])
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let ca_pem = std::fs::read(info["caFile"].as_str().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            pem::parse(&ca_pem).unwrap().into_contents(),
        ))
        .unwrap();
    let cs = info["connectionString"].as_str().unwrap().to_string();
    let host = info["serviceHost"].as_str().unwrap().to_string();
    let key = cs.rsplit("SharedAccessKey=").next().unwrap().to_string();
    let t = Arc::new(Target {
        addr: info["listen"].as_str().unwrap().parse().unwrap(),
        scope: info["idScope"].as_str().unwrap().to_string(),
        roots,
    });
    let group_ca = Ca::create(
        &Profile::RootCa { path_len: 0 },
        "Bench group CA",
        &pki::validity::Validity::days(30),
        KeyType::EcP256.generate().unwrap(),
        None,
    )
    .unwrap();
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            let id = format!("bench-device-{i:03}");
            let key = KeyType::EcP256.generate().unwrap();
            let leaf = issue(
                &Profile::Device,
                &id,
                &pki::validity::Validity::days(30),
                &key,
                Some(&group_ca),
            )
            .unwrap();
            let chain = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::try_from(
                pem::parse(private_key_pem(&key, None).unwrap())
                    .unwrap()
                    .into_contents(),
            )
            .unwrap();
            let (rid, _) = RegistrationId::parse_cn(&id).unwrap();
            let csr = pki::csr::build(&rid, &KeyType::EcP384.generate().unwrap()).unwrap();
            Device {
                plain: serde_json::json!({"registrationId": id}).to_string(),
                with_csr: serde_json::json!({"registrationId": id, "csr": csr.base64_der()})
                    .to_string(),
                id,
                config: client_config(&t.roots, Some((chain, key))),
            }
        })
        .collect();
    let devices = Arc::new(devices);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut conn = connect(t.addr, client_config(&t.roots, None)).await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let sas = pki::dps::sas::create_token(&host, &key, Some("provisioningserviceowner"), now + 3600).unwrap();
        let body = serde_json::json!({"enrollmentGroupId": "bench",
            "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": group_ca.cert.pem}}}},
            "namespaceName": "bench", "certificateAuthorityName": "bench", "certificatePolicyName": "devices"}).to_string();
        let (s, b) = exchange(&mut conn, "PUT", "/enrollmentGroups/bench?api-version=2026-11-01", &format!("Authorization: {sas}\r\n"), &body).await;
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        for (csr, label) in [(false, "plain"), (true, "with csr (issuance)")] {
            let (tt, dd) = (t.clone(), devices.clone());
            let run = timed(workers, secs, move |w, i| {
                let (t, devices) = (tt.clone(), dd.clone());
                async move {
                    let d = &devices[(w * 7919 + i as usize) % devices.len()];
                    let mut conn = connect(t.addr, d.config.clone()).await;
                    register(&mut conn, &t, d, csr, true).await;
                }
            })
            .await;
            run.report(&format!("registrations {label}, new TLS handshake each, durable"));
        }
        for (csr, label) in [(false, "plain"), (true, "with csr (issuance)")] {
            let conns: Vec<_> = {
                let mut v = Vec::new();
                for w in 0..workers {
                    let d = &devices[w % devices.len()];
                    v.push(Arc::new(tokio::sync::Mutex::new(connect(t.addr, d.config.clone()).await)));
                }
                v
            };
            let (tt, dd, conns) = (t.clone(), devices.clone(), Arc::new(conns));
            let run = timed(workers, secs, move |w, _| {
                let (t, devices, conns) = (tt.clone(), dd.clone(), conns.clone());
                async move {
                    let d = &devices[w % devices.len()];
                    let mut conn = conns[w].lock().await;
                    register(&mut conn, &t, d, csr, false).await;
                }
            })
            .await;
            run.report(&format!("registrations {label}, keep-alive connection, durable"));
        }
    });
    drop(child);
}
