//! `pki to-java-string` and `pki to-string`: PEM to source-code literals.
//!
//! Argument parsing and I/O only; the rendering is in [`crate::literal`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::Output;
use crate::error::{Error, Result};
use crate::literal::{self, Input, Template};

/// Arguments of `pki to-java-string`.
///
/// Prints FILE as a Java string literal, byte for byte what the DPS docs'
/// one-liner `sed 's/^/"/;$ !s/$/\\n" +/;$ s/$/"/' FILE` prints for a file
/// with LF line endings: each line becomes `"line\n" +`, the last `"line"`.
///
/// Unlike sed, a file with CRLF (Windows) line endings gives the same output
/// as its LF form (sed would put a `\r` inside every line of the literal),
/// and trailing blank lines are ignored. Bundles of several PEM blocks work.
/// A private key works too (the Java sample needs the device key), with a
/// warning on stderr that the output is a secret. `\` and `"` in the input
/// (never in PEM itself) are escaped. Same as `pki to-string --lang java`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
pki to-java-string certs/device-0001-full-chain.cert.pem\n  \
pki to-java-string --name leafPublicPem certs/device-0001.cert.pem\n  \
openssl x509 -in cert.der -inform der | pki to-java-string -")]
pub struct ToJavaStringArgs {
    /// Declare a constant: `private static final String VAR = ...;`.
    #[arg(long, value_name = "VAR")]
    name: Option<String>,
    /// The PEM file (certificate, chain or key), or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

/// Arguments of `pki to-string`.
///
/// Prints FILE as a string literal in a programming language (or a one-line
/// form for environment variables). Every literal evaluates to the file's
/// lines joined with `\n`, without a final newline, as the DPS samples'
/// sed one-liners make. CRLF input gives the same output as LF input,
/// trailing blank lines are ignored, and `\`, `"` and control characters are
/// escaped the way the language needs. A private key prints a warning.
///
/// Each language is a small text template embedded in pki (see
/// templates/README.md in the source); `--template FILE` uses your own.
#[derive(Debug, clap::Args)]
#[command(after_help = "Languages (--lang):\n  \
java        \"line\\n\" + per line (the DPS docs' sed form); --name: private static final String\n  \
c           \"line\"\"\\n\" adjacent literals (the DPS C sample's sed form); --name: static const char VAR[]\n  \
csharp      \"line\\n\" + per line; --name: const string\n  \
python      adjacent literals in ( ); --name: VAR = (...)\n  \
javascript  \"line\\n\" + per line; --name: const\n  \
go          \"line\\n\" + per line; --name: const\n  \
rust        concat!(...); --name: pub const VAR: &str\n  \
json        one JSON string; --name: {\"VAR\": \"...\"}\n  \
env         one line with \\n escapes; --name: VAR=\"...\" for a .env file\n\n\
Examples:\n  \
pki to-string --lang c certs/device-0001-full-chain.cert.pem\n  \
pki to-string --lang python --name DEVICE_KEY private/device-0001.key.pem\n  \
pki to-string --lang env --name DPS_DEVICE_CERT certs/device-0001-full-chain.cert.pem >> .env\n  \
pki to-string --template my-lang.tmpl certs/device-0001.cert.pem")]
pub struct ToStringArgs {
    /// The language: java, c, csharp, python, javascript, go, rust, json or env.
    #[arg(long, value_name = "LANG", required_unless_present = "template")]
    lang: Option<String>,
    /// Use your own template file instead of a built-in language.
    #[arg(long, value_name = "FILE", conflicts_with = "lang")]
    template: Option<PathBuf>,
    /// Declare a variable named VAR (what that looks like depends on the
    /// language; see the list below). json and env use it as the key.
    #[arg(long, value_name = "VAR")]
    name: Option<String>,
    /// The PEM file (certificate, chain or key), or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

pub fn run_java(args: ToJavaStringArgs) -> Result<()> {
    convert(&literal::builtin("java")?, &args.file, args.name.as_deref())
}

pub fn run(args: ToStringArgs) -> Result<()> {
    let template = match (&args.template, &args.lang) {
        (Some(path), _) => {
            let data = crate::fsio::read_input(path)?;
            let origin = format!("template {}", path.display());
            let text = String::from_utf8(data).map_err(|_| {
                Error::input(format!("{origin} is not UTF-8 text; save it as UTF-8"))
            })?;
            Template::parse(&text, &origin)?
        }
        (None, Some(lang)) => literal::builtin(lang)?,
        // clap enforces one of the two; keep a message rather than a panic.
        (None, None) => return Err(Error::input("give --lang LANG or --template FILE")),
    };
    convert(&template, &args.file, args.name.as_deref())
}

/// Reads, renders and prints; the key warning comes before any output so it
/// is seen even when stdout goes to a file.
fn convert(template: &Template, file: &Path, name: Option<&str>) -> Result<()> {
    let data = crate::fsio::read_input_or_stdin(file)?;
    let origin = if file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let input = Input::parse(&data, &origin)?;
    let text = literal::render(template, &input, name)?;
    if let Some(label) = input.private_key() {
        Output { quiet: false }.warn(format!(
            "{origin} holds a private key ({label}); the output contains that secret, \
             so keep it out of source control, logs and shared screens"
        ));
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `| head` closing the pipe is not a failure worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(Error::Write {
            path: PathBuf::from("standard output"),
            source,
        }),
        Ok(()) => Ok(()),
    }
}
