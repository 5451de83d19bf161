//! `pki to-java-string` and `pki to-string`: PEM to source-code literals.
//!
//! Argument parsing and I/O only; the rendering is in [`crate::literal`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::Output;
use crate::error::{Error, Result};
use crate::literal::{self, Input, Template};

const JAVA_HELP: &str = r#"Prints FILE byte for byte as the DPS docs' one-liner does for a file with LF
line endings:  sed 's/^/"/;$ !s/$/\\n" +/;$ s/$/"/' FILE
Each line becomes "line\n" +, the last one "line"; the string holds the
lines joined with \n, without a final newline.

Unlike sed, a file with CRLF (Windows) line endings gives the same output as
its LF form (sed would put a \r inside every line of the literal), and
trailing blank lines are ignored. Bundles of several PEM blocks work. A
private key works too (the Java sample needs the device key), with a warning
on stderr that the output is a secret. \ and " in the input (never in PEM
itself, but possible in text around it) are escaped.
Same as: pki to-string --lang java

Examples:
  pki to-java-string certs/device-0001-full-chain.cert.pem
  pki to-java-string --name leafPublicPem certs/device-0001.cert.pem
  openssl x509 -in cert.der -inform der | pki to-java-string -"#;

const TO_STRING_HELP: &str = r#"Every literal evaluates to FILE's lines joined with \n, without a final
newline, as the DPS samples' sed one-liners make; the java and c forms are
byte-identical to those for LF files. CRLF input gives the same output as LF
input, trailing blank lines are ignored, and \, " and control characters are
escaped the way each language needs. A private key prints a warning on stderr.
Each language is a small text template embedded in pki (format:
templates/README.md in the source); --template FILE uses your own.

Languages (--lang)                                   and what --name VAR declares
  java        "line\n" + per line (DPS docs' sed)    private static final String VAR = ...;
  c           "line""\n" literals (DPS C sample)     static const char VAR[] = ...;
  csharp      "line\n" + per line                    const string VAR = ...;
  python      adjacent literals in ( )               VAR = (...)
  javascript  "line\n" + per line                    const VAR = ...;
  go          "line\n" + per line                    const VAR = ...
  rust        concat!(...)                           pub const VAR: &str = concat!(...);
  json        one JSON string on one line            {"VAR": "..."}
  env         one line, newlines as \n               VAR="..." (for a .env file)

Examples:
  pki to-string --lang c certs/device-0001-full-chain.cert.pem
  pki to-string --lang python --name DEVICE_KEY private/device-0001.key.pem
  pki to-string --lang env --name DPS_DEVICE_CERT certs/device-0001-full-chain.cert.pem >> .env
  pki to-string --template my-lang.tmpl certs/device-0001.cert.pem"#;

/// Arguments of `pki to-java-string`.
///
/// The subcommand's one-line summary comes from its doc comment in
/// `cli/mod.rs`, which replaces this struct's; so the long explanation lives
/// in `after_help` ([`JAVA_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = JAVA_HELP)]
pub struct ToJavaStringArgs {
    /// Declare a constant: `private static final String VAR = ...;`.
    #[arg(long, value_name = "VAR")]
    name: Option<String>,
    /// The PEM file (certificate, chain or key), or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

/// Arguments of `pki to-string` (long explanation in [`TO_STRING_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = TO_STRING_HELP)]
pub struct ToStringArgs {
    /// The language: java, c, csharp, python, javascript, go, rust, json or env.
    #[arg(long, value_name = "LANG", required_unless_present = "template")]
    lang: Option<String>,
    /// Use your own template file instead of a built-in language.
    #[arg(long, value_name = "FILE", conflicts_with = "lang")]
    template: Option<PathBuf>,
    /// Declare a variable named VAR (the form depends on the language; see
    /// the list below). json and env use it as the key.
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
