//! The emulator's clock (issue 11): `pki emulator --clock` and the
//! authenticated `PUT /emulator/clock` decide the instant device chains (on
//! HTTPS and MQTT alike) are checked at; a refusal names the certificate,
//! its window and the clock; `openssl verify -attime` agrees.

use std::path::Path;

use serde_json::json;

use crate::support::*;

/// `pki register` of `device` of the chain in `dir` over `transport`.
fn register(emu: &Emulator, dir: &Path, device: &str, transport: &str) -> Run {
    let cert = p(dir, &format!("certs/{device}-full-chain.cert.pem"));
    let key = p(dir, &format!("private/{device}.key.pem"));
    let port = match transport {
        "mqtt" => emu.info["mqttListen"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .unwrap()
            .to_string(),
        _ => emu.port().to_string(),
    };
    let host = format!("localhost:{port}");
    let (scope, ca) = (emu.id_scope(), emu.ca());
    pki_env(
        &[
            "register",
            "--transport",
            transport,
            "--id-scope",
            &scope,
            "--cert",
            &cert,
            "--key",
            &key,
            "--host",
            &host,
            "--ca-file",
            &ca,
            "--json",
        ],
        &[],
    )
}

/// An expired chain (`pki chain new --expired`) enrolled as group `fleet`.
fn expired_fleet(emu: &Emulator) -> std::path::PathBuf {
    let dir = emu.scratch().join("fleet");
    pki(&[
        "chain",
        "new",
        "--out",
        s(&dir),
        "-q",
        "--no-pfx",
        "--devices",
        "1",
        "--expired",
    ])
    .ok();
    let out = emu.pki(&["enroll", "fleet", "--cert", &p(&dir, INT_CERT)]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    dir
}

/// 36 hours ago: inside `--expired`'s window (valid from 2 days to 1 day ago).
fn inside_window() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::hours(36)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn an_expired_device_is_refused_naming_the_certificate_and_the_clock_on_https_and_mqtt() {
    let emu = Emulator::start_in_temp(&[]);
    assert!(emu.info.get("clock").is_none(), "{}", emu.info);
    let dir = expired_fleet(&emu);
    for transport in ["https", "mqtt"] {
        let out = register(&emu, &dir, "device-0001", transport);
        assert_ne!(out.code, Some(0), "{transport}: {}", out.stdout);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("CN=device-0001") && text.contains("has expired"),
            "{transport}: {text}"
        );
        assert!(
            text.contains("notAfter") && text.contains("against the emulator clock"),
            "{transport}: {text}"
        );
    }
    // openssl agrees: expired now, valid inside the window.
    let verify = |attime: Option<i64>| {
        let mut args = vec![
            "verify".to_string(),
            "-CAfile".into(),
            p(&dir, ROOT_CERT),
            "-untrusted".into(),
            p(&dir, INT_CERT),
        ];
        if let Some(t) = attime {
            args.push("-attime".into());
            args.push(t.to_string());
        }
        args.push(p(&dir, "certs/device-0001.cert.pem"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&refs)
    };
    assert_ne!(verify(None).code, Some(0));
    assert_eq!(verify(Some(inside_window().unix_timestamp())).code, Some(0));
}

#[test]
fn clock_inside_the_window_accepts_and_put_moves_it() {
    let at = rfc3339(inside_window());
    let emu = Emulator::start_in_temp(&["--clock", &at]);
    assert_eq!(emu.info["clock"], at.as_str(), "{}", emu.info);
    let dir = expired_fleet(&emu);
    for transport in ["https", "mqtt"] {
        let out = register(&emu, &dir, "device-0001", transport).ok();
        assert_eq!(
            json(&out)["status"],
            "assigned",
            "{transport}: {}",
            out.stdout
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = emu.client(None);
        let url = emu.url("/emulator/clock");
        let get: serde_json::Value = c
            .get(&url)
            .header("authorization", emu.sas())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(get["now"].as_str().unwrap().starts_with(&at[..13]), "{get}");
        assert_eq!(get["realTime"], false, "{get}");
        // No SAS, a wrong SAS: 401, and the clock does not move.
        let wrong = pki::dps::sas::create_token(
            &emu.host(),
            "d3JvbmcgcGFzc3dvcmQgZm9yIHRoZSBlbXVsYXRvcg==",
            Some("provisioningserviceowner"),
            4_000_000_000,
        )
        .unwrap();
        for auth in [None, Some(wrong.as_str()), Some("Bearer x")] {
            let mut put = c
                .put(&url)
                .header("content-type", "application/json")
                .body(json!({"offset": "0s"}).to_string());
            if let Some(a) = auth {
                put = put.header("authorization", a);
            }
            let r = put.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{auth:?}");
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401);
        }
        // A bad body: 400 naming what to send.
        let r = c
            .put(&url)
            .header("authorization", emu.sas())
            .body(json!({"now": "tomorrow"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        // Back to real time: the same device is refused now, naming the clock.
        let r = c
            .put(&url)
            .header("authorization", emu.sas())
            .body(json!({"offset": "0s"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["realTime"], true, "{v}");
    });
    for transport in ["https", "mqtt"] {
        let out = register(&emu, &dir, "device-0001", transport);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            out.code != Some(0) && text.contains("has expired") && text.contains("(real time)"),
            "{transport}: {text}"
        );
    }
    // And into the window again, by an instant.
    rt.block_on(async {
        let r = emu
            .client(None)
            .put(emu.url("/emulator/clock"))
            .header("authorization", emu.sas())
            .body(json!({ "now": at }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let out = register(&emu, &dir, "device-0001", "https").ok();
    assert_eq!(json(&out)["status"], "assigned", "{}", out.stdout);
}

#[test]
fn a_bad_clock_is_one_line_and_exit_2() {
    let dir = tmp();
    let out = pki(&[
        "emulator",
        "--in-memory",
        "--data",
        s(&dir.path().join("emu")),
        "--listen",
        "127.0.0.1:0",
        "--clock",
        "yesterday",
    ]);
    let line = out.bad_input();
    assert!(line.contains("--clock"), "{line}");
}
