//! `pki sas device-key` and `pki sas token`: known answers from the official
//! Node SDK (`azure-iot-common`'s `hmacHash` and `SharedAccessSignature.create`)
//! and from `az`'s documented derivation computed with the openssl CLI
//! (HMAC-SHA256 of the registration ID keyed with the base64-decoded group
//! key, base64); then the tokens against the running emulator: a service
//! token lists groups, a device token registers a symmetric-key group device.
//! Secrets come from flags or environment variables and never appear in errors.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::{
    DEVICE_API, Emulator, Pki, Run, SERVICE_API, bash, ensure_node_modules, node_dir, now,
    require_tools, run_tool, tmp,
};
use serde_json::{Value, json};

const GROUP_KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==";
/// A 64-byte key, as DPS generates them.
const LONG_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

/// `pki sas …` (the runner removes every secret variable a caller could
/// have set; `env` sets the ones the case needs).
#[track_caller]
fn sas(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut p = Pki::new(["sas"]);
    for a in args {
        p = p.arg(a);
    }
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run()
}

fn node(script: &str, args: &[&str]) -> String {
    let out = run_tool(
        Command::new("node").arg(node_dir().join(script)).args(args),
        "node",
    );
    assert!(out.status.success(), "{script}: {}", out.stderr);
    out.stdout
}

/// `az`'s documented derivation, computed with the openssl CLI.
fn openssl_device_key(group_key_b64: &str, id: &str) -> String {
    let key = base64_decode_hex(group_key_b64);
    let out = bash(
        "printf '%s' \"$2\" | openssl dgst -sha256 -mac HMAC -macopt hexkey:\"$1\" -binary | openssl base64 -A",
        &[&key, id],
    );
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout.trim().to_string()
}

fn base64_decode_hex(b64: &str) -> String {
    let out = bash(
        "printf '%s' \"$1\" | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \\n'",
        &[b64],
    );
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout
}

fn fields(token: &str) -> BTreeMap<String, String> {
    token
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .unwrap_or_else(|| panic!("not a SAS token: {token}"))
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn device_key_matches_node_sdk_and_az_recipe() {
    const TEST: &str = "device_key_matches_node_sdk_and_az_recipe";
    if !ensure_node_modules(TEST) || !require_tools(&["bash", "openssl"], TEST) {
        return;
    }
    for (key, id) in [
        (GROUP_KEY, "sensor-17"),
        (LONG_KEY, "device-0001"),
        (LONG_KEY, "a.b_c:d-"),
    ] {
        let ours = sas(&["device-key", "--group-key", key, id], &[]).ok();
        assert!(ours.stderr.is_empty(), "{}", ours.stderr);
        let ours = ours.stdout.trim_end_matches('\n');
        assert_eq!(ours, node("device_key.js", &[key, id]), "Node SDK, {id}");
        assert_eq!(ours, openssl_device_key(key, id), "az recipe, {id}");
        // From the environment, out of shell history: the same key.
        let env = sas(&["device-key", id], &[("PKI_GROUP_KEY", key)]).ok();
        assert_eq!(env.stdout.trim_end(), ours);
    }
}

#[test]
fn service_token_matches_node_sdk() {
    if !ensure_node_modules("service_token_matches_node_sdk") {
        return;
    }
    let cs = format!(
        "HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={LONG_KEY}"
    );
    let before = now();
    let run = sas(&["token", "--connection-string", &cs, "--ttl", "2h"], &[]).ok();
    let ours = fields(&run.stdout);
    let se: i64 = ours["se"].parse().unwrap();
    assert!((before + 7200..=now() + 7200).contains(&se), "se={se}");
    let theirs = node(
        "sas_token.js",
        &[
            "localhost:8443",
            "provisioningserviceowner",
            LONG_KEY,
            &se.to_string(),
        ],
    );
    assert_eq!(ours, fields(&theirs), "ours: {}node: {theirs}", run.stdout);

    // Default TTL is the SDKs' hour; the connection string may come from the environment.
    let before = now();
    let run = sas(&["token"], &[("DPS_CONNECTION_STRING", &cs)]).ok();
    let se: i64 = fields(&run.stdout)["se"].parse().unwrap();
    assert!((before + 3600..=now() + 3600).contains(&se), "se={se}");
}

#[test]
fn device_token_matches_node_sdk_with_device_or_group_key() {
    if !ensure_node_modules("device_token_matches_node_sdk_with_device_or_group_key") {
        return;
    }
    let id = "sensor-17";
    let scope = "0ne00C0FFEE";
    let device_key = node("device_key.js", &[LONG_KEY, id]);
    let runs = [
        sas(
            &[
                "token",
                "--device-key",
                &device_key,
                "--registration-id",
                id,
                "--id-scope",
                scope,
                "--ttl",
                "30m",
            ],
            &[],
        ),
        sas(
            &[
                "token",
                "--group-key",
                LONG_KEY,
                "--registration-id",
                id,
                "--ttl",
                "30m",
            ],
            &[("PROVISIONING_IDSCOPE", scope)],
        ),
        sas(
            &[
                "token",
                "--registration-id",
                id,
                "--id-scope",
                scope,
                "--ttl",
                "1800",
            ],
            &[("PKI_DEVICE_KEY", &device_key)],
        ),
        sas(
            &[
                "token",
                "--registration-id",
                id,
                "--id-scope",
                scope,
                "--ttl",
                "1800s",
            ],
            // The connection string in the environment does not get in the way.
            &[
                ("PKI_GROUP_KEY", LONG_KEY),
                (
                    "DPS_CONNECTION_STRING",
                    "HostName=x;SharedAccessKeyName=y;SharedAccessKey=bm90LXRoZS1ncm91cC1rZXk=",
                ),
            ],
        ),
    ];
    for run in runs {
        let run = run.ok();
        let ours = fields(&run.stdout);
        let se = ours["se"].clone();
        let sr = format!("{scope}/registrations/{id}");
        let theirs = node("sas_token.js", &[&sr, "registration", &device_key, &se]);
        assert_eq!(ours, fields(&theirs), "ours: {}node: {theirs}", run.stdout);
    }
}

/// Arguments, environment, a word the one-line error must contain.
type BadCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_input_is_one_line_exit_2_and_never_echoes_a_key() {
    let secret = "c2VjcmV0LW5vdC10by1iZS1wcmludGVk";
    let cases: Vec<BadCase> = vec![
        (vec!["device-key", "sensor-17"], vec![], "PKI_GROUP_KEY"),
        (
            vec!["device-key", "--group-key", "%%%", "sensor-17"],
            vec![],
            "base64",
        ),
        (
            vec!["device-key", "--group-key", secret, "bad/id"],
            vec![],
            "registration ID",
        ),
        (vec!["token"], vec![], "DPS_CONNECTION_STRING"),
        (
            vec![
                "token",
                "--connection-string",
                &"HostName=h;SharedAccessKey=c2VjcmV0LW5vdC10by1iZS1wcmludGVk",
            ],
            vec![],
            "SharedAccessKeyName",
        ),
        (
            vec!["token", "--registration-id", "d1", "--device-key", secret],
            vec![],
            "--id-scope",
        ),
        (
            vec!["token", "--registration-id", "d1", "--id-scope", "0ne1"],
            vec![],
            "--device-key",
        ),
        (
            vec!["token", "--registration-id", "d1", "--id-scope", "0ne1"],
            vec![("PKI_DEVICE_KEY", secret), ("PKI_GROUP_KEY", secret)],
            "both",
        ),
        (
            vec!["token", "--device-key", secret],
            vec![],
            "--registration-id",
        ),
        (
            vec![
                "token",
                "--connection-string",
                "x",
                "--registration-id",
                "d1",
            ],
            vec![],
            "cannot be used",
        ),
        (vec!["token", "--ttl", "1w"], vec![], "--ttl"),
        (vec!["token", "--ttl", "0"], vec![], "--ttl"),
    ];
    for (args, env, expect) in cases {
        let line = sas(&args, &env).bad_input();
        assert!(line.contains(expect), "{args:?}: {line}");
        assert!(!line.contains(secret), "{args:?} echoes the key: {line}");
    }
}

#[test]
fn upper_case_id_warns_that_the_spelling_matters() {
    let run = sas(&["device-key", "--group-key", GROUP_KEY, "Sensor-17"], &[]).ok();
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("pki: warning: "), "{}", run.stderr);
    assert!(!run.stderr.contains(GROUP_KEY));
}

#[tokio::test]
async fn tokens_are_accepted_by_the_emulator() {
    let dir = tmp();
    let emu = Emulator::start(&dir.path().join("data"), &["--in-memory"]);
    let cs = emu.info["connectionString"].as_str().unwrap().to_string();
    let c = emu.client(None);

    // A service token from the connection string creates a symmetric-key group.
    let token = sas(&["token"], &[("DPS_CONNECTION_STRING", &cs)])
        .ok()
        .stdout;
    let body = json!({"enrollmentGroupId": "sym-group", "attestation": {"type": "symmetricKey"}});
    let r = c
        .put(emu.url(&format!("/enrollmentGroups/sym-group?{SERVICE_API}")))
        .header("authorization", token.trim())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let group: Value = r.json().await.unwrap();
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("generated primary key")
        .to_string();

    // A device token signed with the derived key registers the device.
    let scope = emu.id_scope();
    let token = sas(
        &["token", "--registration-id", "sym-dev-1"],
        &[
            ("PKI_GROUP_KEY", &group_key),
            ("PROVISIONING_IDSCOPE", &scope),
        ],
    )
    .ok()
    .stdout;
    let r = c
        .put(emu.url(&format!(
            "/{scope}/registrations/sym-dev-1/register?{DEVICE_API}"
        )))
        .header("authorization", token.trim())
        .header("content-type", "application/json")
        .body(json!({"registrationId": "sym-dev-1"}).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status == 200 || status == 202, "{status}: {text}");

    // A token for another device is refused: the emulator checks the key.
    let wrong = sas(
        &[
            "token",
            "--registration-id",
            "sym-dev-1",
            "--id-scope",
            &scope,
            "--group-key",
            GROUP_KEY,
        ],
        &[],
    )
    .ok()
    .stdout;
    let r = c
        .put(emu.url(&format!(
            "/{scope}/registrations/sym-dev-1/register?{DEVICE_API}"
        )))
        .header("authorization", wrong.trim())
        .header("content-type", "application/json")
        .body(json!({"registrationId": "sym-dev-1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
