//! Command-line definition and dispatch.
//!
//! Each subcommand has its own file holding its clap arguments (whose doc
//! comments are the help text) and a `run` function that calls the library.
//! This file only lists the commands and turns errors into exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;

mod args;
mod ca;
mod ca_select;
mod chain;
mod completions;
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
Start with:  pki chain new --devices 3\nThen see:    pki inspect --chain certs/device-0001-full-chain.cert.pem"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate chains: root CA, intermediate CAs and devices.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Add devices to an existing chain (made by pki, certGen.sh or openssl).
    #[command(subcommand)]
    Device(device::DeviceCommand),
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

/// Parses the process arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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

/// `--help` and `--version` print as clap renders them; a usage error is
/// folded into one line (clap's message and its hint, without the usage
/// block) and exits 2, like every other bad input.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
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
