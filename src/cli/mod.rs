//! Command-line definition and dispatch.
//!
//! Each subcommand has its own file holding its clap arguments (whose doc
//! comments are the help text) and a `run` function that calls the library.
//! This file only lists the commands and turns errors into exit codes.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use clap::{Parser, error::ErrorKind};

use crate::error::Error;

mod args;
mod ca;
mod ca_select;
mod chain;
mod completions;
mod csr;
mod device;
mod emulator;
mod enroll;
mod inspect;
mod man;
mod output;
mod register;
mod sas;
mod to_string;
mod verify_code;

pub use output::Output;

/// A test PKI for Azure IoT Hub Device Provisioning Service, with no openssl needed.
///
/// Makes root, intermediate and device certificates with certGen.sh's file
/// names, proves possession of a CA, turns PEM into source-code literals,
/// manages DPS enrollment groups and runs a local DPS emulator.
#[derive(Debug, Parser)]
#[command(name = "pki", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Exit codes: 0 success, 1 operation failed, 2 usage or bad input.\n\n\
Examples:\n  \
pki chain new --devices 3                                   start here\n  \
pki inspect --chain certs/device-0001-full-chain.cert.pem   then check a device's chain\n  \
pki emulator --json                                         a local DPS to try it against"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate chains: root CA, intermediate CAs and devices.
    #[command(subcommand)]
    #[command(after_help = "Examples:
  pki chain new                          root, intermediate and device-0001 in ./certs
  pki chain new --devices 1000 --no-pfx  1000 devices, no PFX files
  pki chain new --certgen --out lab      what certGen.sh makes, into ./lab
See `pki chain new --help` for every option.")]
    Chain(chain::ChainCommand),
    /// Add devices to an existing chain (made by pki, certGen.sh or openssl).
    #[command(subcommand)]
    #[command(after_help = "Examples:
  pki device new sensor-17 sensor-18               two devices under ./certs's lowest CA
  pki device new --ca-dir ~/certGen new-device-01  under a certGen.sh directory
  pki device new --self-signed lonely-device       for an individual enrollment
See `pki device new --help` for every option.")]
    Device(device::DeviceCommand),
    /// Certificate signing requests: a device key and its PKCS#10 CSR.
    #[command(subcommand)]
    #[command(after_help = "Examples:
  pki csr new sensor-17                    P-384 key and CSR with CN=sensor-17
  pki device new --csr csr/sensor-17.csr.pem   sign it under ./certs's lowest CA
See `pki csr new --help` for every option.")]
    Csr(csr::CsrCommand),
    /// Show certificates, or check a device chain against DPS's rules.
    Inspect(inspect::InspectArgs),
    /// Make a proof-of-possession ("verification code") certificate.
    VerifyCode(verify_code::VerifyCodeArgs),
    /// Print a PEM file as a Java string literal (the DPS docs' sed one-liner).
    ToJavaString(to_string::ToJavaStringArgs),
    /// Print a PEM file as a string literal in a language from templates/.
    ToString(to_string::ToStringArgs),
    /// Run a local DPS (service API + device registration) over HTTPS.
    Emulator(emulator::EmulatorArgs),
    /// Create, update, show, list or delete DPS enrollment groups.
    Enroll(enroll::EnrollArgs),
    /// Register a device with DPS using its X.509 certificate chain.
    Register(register::RegisterArgs),
    /// The DPS CA certificate store: upload, prove possession, show, list, delete.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one page per command into a directory.
    Man(man::ManArgs),
    /// Symmetric keys and SAS tokens: derive a device key, make a token.
    #[command(subcommand)]
    Sas(sas::SasCommand),
}

/// The command line as clap sees it: [`Cli`] plus what the derive cannot say
/// (bare `pki enroll` shows its help, like the other group commands).
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("enroll", |c| c.arg_required_else_help(true))
}

/// Parses the process arguments, runs the command and returns the exit code.
///
/// A closed standard output (`pki … | head -c1`) is success for every
/// command: the reader has what it wanted.
pub fn main() -> ExitCode {
    exit_quietly_on_broken_stdout();
    let cli = match command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => {
            crate::seed::announce();
            ExitCode::SUCCESS
        }
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Chain(c) => chain::run(c),
        Command::Device(c) => device::run(c),
        Command::Csr(c) => csr::run(c),
        Command::Inspect(a) => inspect::run(a),
        Command::VerifyCode(a) => verify_code::run(a),
        Command::ToJavaString(a) => to_string::run_java(a),
        Command::ToString(a) => to_string::run(a),
        Command::Emulator(a) => emulator::run(a),
        Command::Enroll(a) => enroll::run(a),
        Command::Register(a) => register::run(a),
        Command::Ca(c) => ca::run(c),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Sas(c) => sas::run(c),
    }
}

/// Whether an error is a write to a closed pipe (`| head`).
fn is_broken_pipe(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::BrokenPipe;
        }
        source = s.source();
    }
    false
}

/// `print!`/`println!` panic when stdout is a closed pipe (Rust ignores
/// SIGPIPE, so the write fails with EPIPE). Every command prints that way,
/// so the panic hook turns exactly that panic into a silent exit 0; any
/// other panic is reported as before.
fn exit_quietly_on_broken_stdout() {
    let previous = std::panic::take_hook();
    let epipe = format!("(os error {})", libc::EPIPE);
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains(&epipe) {
            std::process::exit(0);
        }
        previous(info);
    }));
}

/// `--help` and `--version` print as clap renders them; a bare group command
/// (`pki`, `pki chain`, …) prints its help on stderr and exits 2; any other
/// usage error is folded into one line (clap's message and its hint, without
/// the usage block) and exits 2, like every other bad input.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(clap::error::ContextValue::String(arg)) =
            e.get(clap::error::ContextKind::InvalidArg)
        && arg.len() > 1
        && arg[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        // clap reads `-1` as an unknown flag: say what it is.
        let args: Vec<String> = std::env::args().collect();
        let option = args
            .iter()
            .position(|a| a == arg)
            .and_then(|i| i.checked_sub(1))
            .map(|i| args[i].as_str())
            .filter(|o| o.starts_with("--"));
        match option {
            Some(o) => eprintln!(
                "pki: error: {o} {arg}: negative numbers are not allowed; give a positive number"
            ),
            None => eprintln!(
                "pki: error: {arg} is a negative number, which no option or argument here takes; give a positive number"
            ),
        }
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    eprintln!("pki: error: {}; see `pki --help`", parts.join(" "));
    ExitCode::from(2)
}

/// Prints an error as one line: the message, then each cause not already in it.
fn report(e: &Error) {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    eprintln!("pki: error: {}", msg.replace('\n', " "));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, with its path (`pki chain new`).
    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut cmd = command();
        cmd.build();
        let mut out = Vec::new();
        walk(&cmd, "pki".to_owned(), &mut out);
        out
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    /// No example wraps at the help width (100 columns): every line of every
    /// command's after-help text fits in 100 columns, and rendered help shows
    /// each such line unchanged, as one line. A command split over lines on
    /// purpose ends its line with ` \` (a shell continuation).
    #[test]
    fn help_examples_never_wrap_at_100_columns() {
        let mut checked = 0;
        let mut wrapped = Vec::new();
        for (path, mut cmd) in all_commands() {
            let rendered = cmd.render_help().to_string();
            let rendered_long = cmd.render_long_help().to_string();
            for text in [cmd.get_after_help(), cmd.get_after_long_help()]
                .into_iter()
                .flatten()
            {
                for line in text.to_string().lines() {
                    let shown = rendered.lines().any(|l| l == line)
                        || rendered_long.lines().any(|l| l == line);
                    if line.chars().count() > 100 || !shown {
                        wrapped.push(format!("`{path} --help`: {line}"));
                    }
                    checked += 1;
                }
            }
            // Usage lines never wrap; any example-looking line must fit.
            for line in rendered.lines().chain(rendered_long.lines()) {
                if line.trim_start().starts_with("pki ") && line.chars().count() > 100 {
                    wrapped.push(format!("`{path} --help` (over 100 columns): {line}"));
                }
            }
        }
        assert!(
            wrapped.is_empty(),
            "help lines that wrap at 100 columns:\n{}",
            wrapped.join("\n")
        );
        assert!(checked > 50, "only {checked} help lines checked");
    }

    /// `pki`, `pki chain`, `pki device`, `pki ca` and `pki enroll` alone show
    /// their subcommands (help), not their description as an error; and every
    /// group command has examples.
    #[test]
    fn bare_group_commands_show_help_with_examples() {
        for args in [
            &["pki"][..],
            &["pki", "chain"],
            &["pki", "device"],
            &["pki", "csr"],
            &["pki", "ca"],
            &["pki", "enroll"],
        ] {
            let e = command().try_get_matches_from(args).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
                "{args:?}"
            );
            let text = e.render().to_string();
            assert!(text.contains("Usage:"), "{args:?}: {text}");
            assert!(
                text.contains("Commands:") || text.contains("show"),
                "{args:?} lists no subcommands: {text}"
            );
            assert!(
                text.contains("Example"),
                "{args:?} help has no examples: {text}"
            );
        }
    }
}
