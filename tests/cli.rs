//! The command line itself, run as the built binary: a closed stdout is
//! success, bare group commands show their help, help examples never wrap.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::support::*;

/// Runs `pki ARGS` in `dir` with stdout a pipe that is closed after one
/// byte; returns (exit code, stderr).
fn with_stdout_closed_early(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(pki_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("DPS_CONNECTION_STRING")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pki");
    let mut out = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    out.read_exact(&mut one).expect("one byte of output");
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_closed_stdout_is_success_not_a_panic() {
    let dir = tmp();
    for args in [
        &["chain", "new", "--devices", "300", "--json", "--quiet"][..],
        &["--help"],
        &["inspect", "certs/device-0001-full-chain.cert.pem"],
        &[
            "to-string",
            "--lang",
            "java",
            "certs/azure-iot-test-only.chain.ca.cert.pem",
        ],
    ] {
        let (code, err) = with_stdout_closed_early(dir.path(), args);
        assert_eq!(code, Some(0), "pki {args:?}: {err}");
        assert!(!err.contains("panicked"), "pki {args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "pki {args:?}: {err}");
    }
}

#[test]
fn bare_group_commands_print_their_subcommands() {
    for (args, sub) in [
        (&[][..], "chain"),
        (&["chain"], "new"),
        (&["device"], "new"),
        (&["ca"], "verify"),
        (&["enroll"], "disallow"),
    ] {
        let run = pki(args).code(2);
        assert!(
            !run.stderr.starts_with("pki: error:"),
            "pki {args:?} printed an error instead of help: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Usage: pki"),
            "pki {args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("  {sub} ")),
            "pki {args:?} does not list `{sub}`: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Example"),
            "pki {args:?} shows no examples: {}",
            run.stderr
        );
    }
}

/// Every `pki … --help` (each command and subcommand, found from the
/// "Commands:" lists): no line over 100 columns, and every example command
/// (a line starting `pki `) is complete on its line: it was not broken by
/// clap's wrapping (which happens only when the next word would pass column
/// 100), or it ends with ` \` and the next line continues it explicitly.
#[test]
fn no_help_example_wraps() {
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = pki(&args).ok().stdout;
        seen += 1;
        let lines: Vec<&str> = help.lines().collect();
        let mut in_commands = false;
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with("Usage:") {
                assert!(
                    line.chars().count() <= 100,
                    "`pki {}` has a line over 100 columns:\n{line}",
                    args.join(" ")
                );
            }
            let t = line.trim_start();
            if t.starts_with("pki ")
                && !t.ends_with('\\')
                && let Some(next) = lines.get(i + 1)
            {
                {
                    // clap wraps greedily at 100 columns: a line was broken
                    // when the next line's first word would have fitted
                    // only past column 100.
                    let first = next.split_whitespace().next().unwrap_or("");
                    let wrapped =
                        !first.is_empty() && line.chars().count() + 1 + first.chars().count() > 100;
                    assert!(
                        !wrapped,
                        "`pki {}`: an example wraps:\n{line}\n{next}",
                        args.join(" ")
                    );
                }
            }
            if *line == "Commands:" {
                in_commands = true;
                continue;
            }
            if in_commands {
                if line.is_empty() {
                    in_commands = false;
                } else if let Some(name) = line
                    .strip_prefix("  ")
                    .and_then(|l| l.split_whitespace().next())
                    && !line.starts_with("   ")
                    && name != "help"
                {
                    {
                        let mut p = path.clone();
                        p.push(name.to_owned());
                        todo.push(p);
                    }
                }
            }
        }
    }
    assert!(seen >= 20, "only {seen} help pages walked");
}
