//! The tools the tests run, and the skip policy (README, "Tests").
//!
//! No test passes by skipping quietly:
//!
//! - [`require_tool`]: a missing tool fails the test with one line naming
//!   the tool and how to install it, unless the user listed the tool in
//!   `PKI_TEST_SKIP` (comma-separated, e.g. `PKI_TEST_SKIP=dotnet,node`);
//!   then the test prints a `SKIPPED: …` line and returns early.
//! - [`skip_unless`]: a part that needs something other than a tool (root,
//!   to bind port 443) prints `SKIPPED: …` when that is missing, or fails
//!   when `PKI_TEST_NO_SKIP=1` (CI sets it) and the part is not named in
//!   `PKI_TEST_SKIP`.
//!
//! `SKIPPED:` lines are written straight to the process's stderr
//! (`std::io::stderr().write_all`), which libtest does not capture (it
//! captures only the `print!`/`eprint!` macros), so they show in plain
//! `cargo test` output, next to the `ok` of the test that skipped.

use std::io::Write;
use std::process::{Command, Stdio};

/// How to install each tool the tests run (Debian package names).
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "openssl" => "apt-get install openssl",
        "javac" | "java" => "apt-get install openjdk-17-jdk-headless",
        "mvn" => "apt-get install maven",
        "go" => "apt-get install golang (or https://go.dev/dl)",
        "gcc" => "apt-get install gcc",
        "python3" => "apt-get install python3 python3-venv",
        "bash" => "apt-get install bash",
        "man" => "apt-get install man-db",
        "chromium" => "apt-get install chromium (tests/node/status_page.js runs /usr/bin/chromium)",
        "keytool" => "apt-get install openjdk-17-jdk-headless (keytool comes with the JDK)",
        "node" | "npm" => {
            "Node.js 20 or later with npm (Debian 12's nodejs is 18: see .ci/run for one way)"
        }
        "rustc" => "rustup (it comes with cargo)",
        "sed" => "apt-get install sed",
        "dotnet" => "the .NET 8 SDK (not in Debian's archive: packages.microsoft.com)",
        _ => "your package manager",
    }
}

/// The names listed in `PKI_TEST_SKIP`.
fn allowed_skips() -> Vec<String> {
    std::env::var("PKI_TEST_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `name` is listed in `PKI_TEST_SKIP`.
pub fn skip_allowed(name: &str) -> bool {
    allowed_skips().iter().any(|s| s == name)
}

/// Prints `SKIPPED: what (why)` where `cargo test` shows it without `--nocapture`.
pub fn report_skip(what: &str, why: &str) {
    let line = format!("SKIPPED: {what} ({why})\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether `tool` can be started (found on PATH and runnable). `chromium`
/// means `/usr/bin/chromium`, the path playwright-core is told to launch.
pub fn have_tool(tool: &str) -> bool {
    if tool == "chromium" {
        return std::path::Path::new("/usr/bin/chromium").is_file();
    }
    let arg = match tool {
        "go" => "version",
        "javac" | "java" => "-version",
        "keytool" => "-help",
        _ => "--version",
    };
    Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The one-line failure for a missing tool.
pub fn missing_tool_message(tool: &str) -> String {
    format!(
        "this test needs `{tool}` on PATH: install it ({}), or set PKI_TEST_SKIP={tool} to skip it visibly",
        install_hint(tool)
    )
}

/// True when `tool` runs. When it does not: fails with one line naming it
/// and how to install it, or, if `PKI_TEST_SKIP` lists it, reports the skip
/// of `test` and returns false.
#[track_caller]
pub fn require_tool(tool: &str, test: &str) -> bool {
    if have_tool(tool) {
        return true;
    }
    if skip_allowed(tool) {
        report_skip(
            test,
            &format!("`{tool}` is not installed; PKI_TEST_SKIP lists it"),
        );
        return false;
    }
    panic!("{}", missing_tool_message(tool));
}

/// `require_tool` for each tool, in order.
#[track_caller]
pub fn require_tools(tools: &[&str], test: &str) -> bool {
    tools.iter().all(|t| require_tool(t, test))
}

/// True when `ok`. Otherwise reports the skip of `what` (named `name` for
/// `PKI_TEST_SKIP`) and returns false, or fails when `PKI_TEST_NO_SKIP` is
/// set and `PKI_TEST_SKIP` does not list `name`.
#[track_caller]
pub fn skip_unless(ok: bool, name: &str, what: &str, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("PKI_TEST_NO_SKIP").is_some_and(|v| !v.is_empty() && v != "0")
        && !skip_allowed(name)
    {
        panic!("{what} cannot run: {why}; PKI_TEST_NO_SKIP forbids skipping it");
    }
    report_skip(what, why);
    false
}

/// Runs `cmd` (a `tool`) to completion; a `tool` that cannot be started
/// fails the test with [`missing_tool_message`].
#[track_caller]
pub fn run_tool(cmd: &mut Command, tool: &str) -> super::Run {
    super::Run::from(
        cmd.output()
            .unwrap_or_else(|_| panic!("{}", missing_tool_message(tool))),
    )
}

/// Runs `bash -c SCRIPT` with `args` as `$1…` (no `BASH_ENV`). Call
/// [`require_tool`]`("bash", …)` first.
#[track_caller]
pub fn bash(script: &str, args: &[&str]) -> super::Run {
    run_tool(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("bash")
            .args(args)
            .env_remove("BASH_ENV"),
        "bash",
    )
}

/// Whether this process may bind 127.0.0.1:443 (root, CAP_NET_BIND_SERVICE,
/// or `net.ipv4.ip_unprivileged_port_start` ≤ 443). A port already in use
/// counts as bindable: the test then waits for it.
pub fn can_bind_443() -> bool {
    match std::net::TcpListener::bind("127.0.0.1:443") {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied,
    }
}
