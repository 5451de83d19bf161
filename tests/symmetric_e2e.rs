//! Symmetric keys end to end against the emulator: `pki enroll GROUP
//! --symmetric-key` creates a group whose keys are printed only with
//! `--show-keys` (not in the summary, not in `--json`), `--primary-key` sets
//! the key, and `pki register --group-key | --symmetric-key` registers a
//! device of that group over HTTPS (key from the flag or the environment);
//! a wrong key is refused with DPS's 401 and a hint, never echoing the key.

use crate::support::{Emulator, Pki, Run, TempDir, pki, tmp};
use serde_json::Value;

const GIVEN_KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==";

struct Ctx {
    emu: Emulator,
    _dir: TempDir,
}

impl Ctx {
    fn new() -> Ctx {
        let dir = tmp();
        let emu = Emulator::start(&dir.path().join("data"), &["--in-memory"]);
        Ctx { emu, _dir: dir }
    }

    /// `pki ARGS --ca-file CA` with the connection string in the environment
    /// (the runner removes every `PKI_*` a caller could have set).
    #[track_caller]
    fn pki(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut p = Pki::new(args)
            .arg("--ca-file")
            .arg(self.emu.ca())
            .env("DPS_CONNECTION_STRING", &self.emu.cs());
        for (k, v) in env {
            p = p.env(k, v);
        }
        p.run()
    }

    fn register(&self, id: &str, key_args: &[&str], env: &[(&str, &str)]) -> Run {
        let host = format!("localhost:{}", self.emu.addr.port());
        let scope = self.emu.id_scope();
        let mut args = vec![
            "register",
            "--id-scope",
            &scope,
            "--registration-id",
            id,
            "--host",
            &host,
        ];
        args.extend_from_slice(key_args);
        self.pki(&args, env)
    }

    fn stored_keys(&self, group: &str) -> (String, String) {
        let run = self
            .pki(&["enroll", "show", group, "--json", "--show-keys"], &[])
            .ok();
        let v: Value = serde_json::from_str(&run.stdout).unwrap();
        let k = |w: &str| {
            v["attestation"]["symmetricKey"][w]
                .as_str()
                .unwrap()
                .to_string()
        };
        (k("primaryKey"), k("secondaryKey"))
    }
}

#[test]
fn generated_keys_stay_hidden_unless_asked_and_register_a_group_device() {
    let ctx = Ctx::new();
    let created = ctx
        .pki(&["enroll", "sym-line", "--symmetric-key"], &[])
        .ok();
    assert!(
        created.stdout.contains("created enrollment group sym-line"),
        "{}",
        created.stdout
    );
    assert!(
        created.stdout.contains("symmetricKey"),
        "{}",
        created.stdout
    );
    assert!(created.stderr.contains("--show-keys"), "{}", created.stderr);
    let (primary, secondary) = ctx.stored_keys("sym-line");
    assert_ne!(primary, secondary);
    for run in [
        created,
        ctx.pki(&["enroll", "show", "sym-line"], &[]).ok(),
        ctx.pki(&["enroll", "show", "sym-line", "--json"], &[]).ok(),
        ctx.pki(&["enroll", "list", "--json"], &[]).ok(),
        ctx.pki(
            &["enroll", "sym-line", "--status", "enabled", "--json"],
            &[],
        )
        .ok(),
    ] {
        for k in [&primary, &secondary] {
            assert!(
                !run.stdout.contains(k.as_str()) && !run.stderr.contains(k.as_str()),
                "key printed:\n{}{}",
                run.stdout,
                run.stderr
            );
        }
    }
    let shown = ctx
        .pki(&["enroll", "show", "sym-line", "--show-keys"], &[])
        .ok();
    assert!(
        shown.stdout.contains(&format!("primary key:  {primary}")),
        "{}",
        shown.stdout
    );
    // An update that does not touch the keys keeps them.
    assert_eq!(
        ctx.stored_keys("sym-line"),
        (primary.clone(), secondary.clone())
    );

    // Group key on the command line, then from the environment (bare flag).
    let run = ctx
        .register("sym-dev-1", &["--group-key", &primary], &[])
        .ok();
    assert!(
        run.stdout.contains("assigned: device sym-dev-1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("enrollment group: sym-line"),
        "{}",
        run.stdout
    );
    let run = ctx
        .register(
            "sym-dev-2",
            &["--group-key"],
            &[("PKI_GROUP_KEY", &secondary)],
        )
        .ok();
    assert!(
        run.stdout.contains("assigned: device sym-dev-2"),
        "{}",
        run.stdout
    );

    // The derived device key (pki sas device-key), from the flag and the environment.
    let dk = pki(&["sas", "device-key", "--group-key", &primary, "sym-dev-3"])
        .ok()
        .stdout;
    let dk = dk.trim();
    let run = ctx
        .register("sym-dev-3", &["--symmetric-key", dk, "--json"], &[])
        .ok();
    let state: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(state["registrationId"], "sym-dev-3");
    assert_eq!(
        state["symmetricKey"]["enrollmentGroupId"], "sym-line",
        "{state}"
    );
    ctx.register("sym-dev-3", &["--symmetric-key"], &[("PKI_DEVICE_KEY", dk)])
        .ok();

    // A device key used for another registration ID: 401, one line, key not echoed.
    let run = ctx
        .register("sym-dev-4", &["--symmetric-key", dk], &[])
        .code(1);
    let line = run.stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains("401") && line.contains("SAS token"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(dk) && !run.stderr.contains(&primary));
}

#[test]
fn primary_key_is_used_and_bad_keys_are_refused() {
    let ctx = Ctx::new();
    ctx.pki(
        &[
            "enroll",
            "sym-given",
            "--symmetric-key",
            "--primary-key",
            GIVEN_KEY,
        ],
        &[],
    )
    .ok();
    let (primary, _) = ctx.stored_keys("sym-given");
    assert_eq!(primary, GIVEN_KEY);
    let run = ctx
        .register("given-dev", &["--group-key", GIVEN_KEY], &[])
        .ok();
    assert!(run.stdout.contains("assigned"), "{}", run.stdout);

    // Dry run: the body, keys hidden unless --show-keys.
    let dry = ctx
        .pki(
            &[
                "enroll",
                "g2",
                "--symmetric-key",
                "--primary-key",
                GIVEN_KEY,
                "--dry-run",
            ],
            &[],
        )
        .ok();
    assert!(!dry.stdout.contains(GIVEN_KEY), "{}", dry.stdout);
    let v: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(v["attestation"]["type"], "symmetricKey");

    for (args, expect) in [
        (
            vec![
                "enroll",
                "g3",
                "--symmetric-key",
                "--primary-key",
                "c2hvcnQ=",
            ],
            "16 to 64 bytes",
        ),
        (
            vec!["enroll", "g3", "--symmetric-key", "--primary-key", "%%%"],
            "base64",
        ),
        (
            vec!["enroll", "g3", "--primary-key", GIVEN_KEY],
            "--symmetric-key",
        ),
        (
            vec!["enroll", "g3", "--symmetric-key", "--cert", "x.pem"],
            "cannot be used",
        ),
    ] {
        let line = ctx.pki(&args, &[]).bad_input();
        assert!(line.contains(expect), "{args:?}: {line}");
        assert!(!line.contains(GIVEN_KEY));
    }
    for (key_args, env, expect) in [
        (vec!["--group-key"], vec![], "PKI_GROUP_KEY"),
        (vec!["--symmetric-key", "%%%"], vec![], "base64"),
        (
            vec!["--symmetric-key", GIVEN_KEY, "--group-key", GIVEN_KEY],
            vec![],
            "cannot be used",
        ),
    ] {
        let line = ctx.register("d", &key_args, &env).bad_input();
        assert!(line.contains(expect), "{key_args:?}: {line}");
    }
    let scope = ctx.emu.id_scope();
    let line = ctx
        .pki(
            &["register", "--id-scope", &scope, "--group-key", GIVEN_KEY],
            &[],
        )
        .bad_input();
    assert!(line.contains("--registration-id"), "{line}");
}
