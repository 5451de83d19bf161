//! `pki to-java-string` and `pki to-string`, run as the built binary.
//!
//! Fixtures are real PEMs made with the `openssl` CLI: a certificate, a
//! three-certificate chain and a PKCS#8 key. The Java and C output is
//! compared byte for byte with the DPS docs' sed one-liners (run with the
//! real `sed`), and every literal is compiled or parsed with its language's
//! toolchain and must evaluate back to the normalised PEM text. A toolchain
//! that is not installed fails the test with one line naming it, unless
//! PKI_TEST_SKIP lists it (then a visible `SKIPPED:` line; the README's test
//! command names `dotnet`, which Debian does not package).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Pki, require_tool};

/// The DPS docs' Java one-liner (`sed 's/^/"/;$ !s/$/\\n" +/;$ s/$/"/'`).
const SED_JAVA: &str = r#"s/^/"/;$ !s/$/\\n" +/;$ s/$/"/"#;
/// The DPS C sample's one-liner (`sed -e 's/^/"/;$ !s/$/""\\n"/;$ s/$/"/'`).
const SED_C: &str = r#"s/^/"/;$ !s/$/""\\n"/;$ s/$/"/"#;

/// Every built-in language.
const LANGS: &[&str] = &[
    "java",
    "c",
    "csharp",
    "python",
    "javascript",
    "go",
    "rust",
    "json",
    "env",
];

struct Fixtures {
    dir: tempfile::TempDir,
    cert: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|_| panic!("{}", crate::support::missing_tool_message("openssl")));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root CA, intermediate CA and device certificate (EC P-256, for speed),
/// the device's full chain, and a PKCS#8 key from `openssl genpkey`.
fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut req = vec!["req", "-x509", "-days", "1", "-subj", "/CN=Test Root"];
    req.extend(ec);
    req.extend(["-keyout", "root.key", "-out", "root.pem"]);
    openssl(d, &req);
    for (name, cn, ca, ext) in [
        ("int", "Test Intermediate", "root", true),
        ("dev", "device-0001", "int", false),
    ] {
        let subj = format!("/CN={cn}");
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let mut req = vec!["req", "-subj", &subj];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(d, &req);
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let mut sign = vec!["x509", "-req", "-days", "1", "-in", &csr, "-CA", &ca_pem];
        sign.extend(["-CAkey", &ca_key, "-CAcreateserial", "-out", &pem]);
        if ext {
            sign.extend(["-extfile", "ca.ext"]);
        }
        openssl(d, &sign);
    }
    let chain: Vec<u8> = ["dev.pem", "int.pem", "root.pem"]
        .iter()
        .flat_map(|f| fs::read(d.join(f)).unwrap())
        .collect();
    fs::write(d.join("chain.pem"), chain).unwrap();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "key.pem",
        ],
    );
    let (cert, chain, key) = (d.join("dev.pem"), d.join("chain.pem"), d.join("key.pem"));
    assert!(
        fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    assert_eq!(
        fs::read_to_string(&chain)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    Fixtures {
        dir,
        cert,
        chain,
        key,
    }
}

fn pki(args: &[&str]) -> Output {
    pki_stdin(args, None)
}

/// Runs the built pki through the shared runner. Converting a key file
/// prints that key as a literal on purpose, so a key PEM in the output is
/// allowed here (the key warning on stderr is checked by its own test).
fn pki_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut run = Pki::new(args).allow_private_key();
    if let Some(data) = stdin {
        run = run.stdin(data);
    }
    let run = run.run();
    Output {
        status: run.status,
        stdout: run.raw_stdout,
        stderr: run.stderr.into_bytes(),
    }
}

/// Runs pki, asserts success with nothing on stderr, returns stdout.
fn ok(args: &[&str]) -> String {
    let out = pki(args);
    assert!(
        out.status.success(),
        "pki {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "pki {args:?} stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sed(script: &str, file: &Path) -> Vec<u8> {
    let out = Command::new("sed")
        .arg(script)
        .arg(file)
        .output()
        .expect("run sed");
    assert!(out.status.success());
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What every built-in literal must evaluate to: the lines joined with LF.
fn normalised(file: &Path) -> String {
    fs::read_to_string(file)
        .unwrap()
        .replace("\r\n", "\n")
        .trim_end_matches('\n')
        .to_owned()
}

/// Runs a command that must succeed and returns its stdout.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A PEM file whose first lines hold what PEM never has but text around a
/// block can: quotes, backslashes, a tab, control characters (a lone CR is
/// the one Java's `\u000d` would break on), a C trigraph,
/// a `{{placeholder}}` and non-ASCII text.
fn nasty(f: &Fixtures) -> PathBuf {
    let p = f.dir.path().join("nasty.pem");
    let mut text = String::from(
        "subject=CN = \"quoted\", O = back\\slash \\n not-a-newline\n\
         tab\there, ctrl\u{1}char, lone\rCR, trigraph ??/ ??= and {{name}} héllo ünïcode\n",
    );
    text.push_str(&fs::read_to_string(&f.cert).unwrap());
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn java_is_byte_identical_to_the_sed_one_liner() {
    let f = fixtures();
    for file in [&f.cert, &f.chain] {
        let out = pki(&["to-java-string", s(file)]);
        assert!(out.status.success() && out.stderr.is_empty());
        assert_eq!(out.stdout, sed(SED_JAVA, file), "{}", file.display());
        // The same through to-string and through stdin.
        assert_eq!(
            out.stdout,
            pki(&["to-string", "--lang", "java", s(file)]).stdout
        );
        let stdin = pki_stdin(&["to-java-string", "-"], Some(&fs::read(file).unwrap()));
        assert_eq!(out.stdout, stdin.stdout);
    }
    // The key too, with the warning on stderr and the same literal.
    let out = pki(&["to-java-string", s(&f.key)]);
    assert!(out.status.success());
    assert_eq!(out.stdout, sed(SED_JAVA, &f.key));
}

#[test]
fn c_is_byte_identical_to_the_sed_one_liner() {
    let f = fixtures();
    for file in [&f.cert, &f.chain, &f.key] {
        let out = pki(&["to-string", "--lang", "c", s(file)]);
        assert!(out.status.success());
        assert_eq!(out.stdout, sed(SED_C, file), "{}", file.display());
    }
}

#[test]
fn crlf_and_trailing_blank_lines_give_the_lf_result() {
    let f = fixtures();
    let lf = fs::read_to_string(&f.chain).unwrap();
    let crlf = f.dir.path().join("crlf.pem");
    fs::write(&crlf, format!("{}\r\n\r\n", lf.replace('\n', "\r\n"))).unwrap();
    for lang in LANGS {
        assert_eq!(
            ok(&["to-string", "--lang", lang, s(&crlf)]),
            ok(&["to-string", "--lang", lang, s(&f.chain)]),
            "{lang}"
        );
    }
    assert_eq!(
        pki_stdin(
            &["to-java-string", "-"],
            Some(lf.replace('\n', "\r\n").as_bytes())
        )
        .stdout,
        sed(SED_JAVA, &f.chain)
    );
    // What the sed one-liner would do with it: a CR inside the literal.
    assert!(
        String::from_utf8(sed(SED_JAVA, &crlf))
            .unwrap()
            .contains("\r\\n\" +")
    );
}

/// The files every language must round-trip: certificate, chain, key, and
/// a file with characters that need escaping.
fn inputs(f: &Fixtures) -> Vec<PathBuf> {
    vec![f.cert.clone(), f.chain.clone(), f.key.clone(), nasty(f)]
}

/// For each input: renders it in `lang` plain and with `--name X`, writes
/// `wrap(plain, named)` to `src` in a fresh directory, builds and runs it
/// with `exec(dir, src)`, and checks that it printed the normalised file
/// twice (once per form).
fn check_roundtrip(
    f: &Fixtures,
    lang: &str,
    src: &str,
    wrap: impl Fn(&str, &str) -> String,
    exec: impl Fn(&Path, &Path) -> Vec<u8>,
) {
    for file in inputs(f) {
        // The key prints a warning, so don't use ok() (which wants stderr empty).
        let render = |extra: &[&str]| {
            let mut args = vec!["to-string", "--lang", lang];
            args.extend(extra);
            args.push(s(&file));
            let out = pki(&args);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let (plain, named) = (render(&[]), render(&["--name", "X"]));
        let dir = tempfile::tempdir_in(f.dir.path()).unwrap();
        let path = dir.path().join(src);
        fs::write(&path, wrap(&plain, &named)).unwrap();
        let printed = exec(dir.path(), &path);
        assert_eq!(
            String::from_utf8(printed).unwrap(),
            normalised(&file).repeat(2),
            "{lang} {}\n{plain}\n{named}",
            file.display()
        );
    }
}

#[test]
fn java_literals_compile_and_evaluate_to_the_pem() {
    let f = fixtures();
    if !(require_tool("javac", "java_literals_compile_and_evaluate_to_the_pem")
        && require_tool("java", "java_literals_compile_and_evaluate_to_the_pem"))
    {
        return;
    }
    check_roundtrip(
        &f,
        "java",
        "Main.java",
        |plain, named| {
            format!(
                "public class Main {{\n{named}static final String Y =\n{plain};\n\
                 public static void main(String[] a) throws Exception {{\n\
                 System.out.write((X + Y).getBytes(java.nio.charset.StandardCharsets.UTF_8));\n\
                 System.out.flush();\n}}\n}}\n"
            )
        },
        |dir, src| {
            run(Command::new("javac")
                .args(["-encoding", "UTF-8", "-d"])
                .arg(dir)
                .arg(src));
            run(Command::new("java").arg("-cp").arg(dir).arg("Main"))
        },
    );
}

#[test]
fn c_literals_compile_and_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("gcc", "c_literals_compile_and_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "c",
        "main.c",
        |plain, named| {
            format!(
                "#include <stdio.h>\n{named}static const char *y =\n{plain};\n\
                 int main(void) {{ fputs(X, stdout); fputs(y, stdout); return 0; }}\n"
            )
        },
        |dir, src| {
            // -std=c11 turns trigraphs on, so an unescaped "??/" would show.
            let exe = dir.join("main");
            run(Command::new("gcc")
                .args(["-std=c11", "-Wall", "-Werror", "-o"])
                .arg(&exe)
                .arg(src));
            run(&mut Command::new(exe))
        },
    );
}

#[test]
fn python_literals_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("python3", "python_literals_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "python",
        "main.py",
        |plain, named| {
            format!("import sys\n{named}Y = {plain}sys.stdout.buffer.write((X + Y).encode())\n")
        },
        |_, src| run(Command::new("python3").arg(src)),
    );
}

#[test]
fn javascript_literals_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("node", "javascript_literals_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "javascript",
        "main.js",
        |plain, named| format!("{named}const Y =\n{plain};\nprocess.stdout.write(X + Y);\n"),
        |_, src| run(Command::new("node").arg(src)),
    );
}

#[test]
fn rust_literals_compile_and_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("rustc", "rust_literals_compile_and_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "rust",
        "main.rs",
        |plain, named| {
            format!("{named}const Y: &str = {plain};\nfn main() {{ print!(\"{{X}}{{Y}}\"); }}\n")
        },
        |dir, src| {
            let exe = dir.join("main");
            run(Command::new("rustc")
                .args(["--edition", "2021", "-o"])
                .arg(&exe)
                .arg(src));
            run(&mut Command::new(exe))
        },
    );
}

#[test]
fn go_literals_compile_and_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("go", "go_literals_compile_and_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "go",
        "main.go",
        |plain, named| {
            format!(
                "package main\n\nimport \"os\"\n\n{named}\nvar y =\n{plain}\n\
                 func main() {{ os.Stdout.WriteString(X + y) }}\n"
            )
        },
        |dir, src| {
            run(Command::new("go")
                .arg("run")
                .arg(src)
                .current_dir(dir)
                .env("GOFLAGS", "-mod=mod"))
        },
    );
}

#[test]
fn csharp_literals_compile_and_evaluate_to_the_pem() {
    let f = fixtures();
    if !require_tool("dotnet", "csharp_literals_compile_and_evaluate_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "csharp",
        "Program.cs",
        |plain, named| {
            format!(
                "class Program {{\n{named}static readonly string Y =\n{plain};\n\
                 static void Main() {{ var o = System.Console.OpenStandardOutput();\n\
                 var b = System.Text.Encoding.UTF8.GetBytes(X + Y); o.Write(b, 0, b.Length); }}\n}}\n"
            )
        },
        |dir, _| {
            fs::write(
                dir.join("t.csproj"),
                "<Project Sdk=\"Microsoft.NET.Sdk\"><PropertyGroup><OutputType>Exe</OutputType>\
                 <TargetFramework>net8.0</TargetFramework></PropertyGroup></Project>",
            )
            .unwrap();
            run(Command::new("dotnet")
                .args(["run", "--nologo"])
                .current_dir(dir))
        },
    );
}

#[test]
fn json_parses_to_the_pem() {
    let f = fixtures();
    if !require_tool("python3", "json_parses_to_the_pem") {
        return;
    }
    check_roundtrip(
        &f,
        "json",
        "check.py",
        |plain, named| {
            // Both are exactly one line; the check reads them back from this script.
            assert_eq!(plain.lines().count(), 1);
            assert_eq!(named.lines().count(), 1);
            format!(
                "import json, sys\nplain = {plain:?}\nnamed = {named:?}\n\
                 v = json.loads(named)\nassert list(v) == ['X']\n\
                 sys.stdout.buffer.write((v['X'] + json.loads(plain)).encode())\n",
                plain = plain.trim_end(),
                named = named.trim_end()
            )
        },
        |_, src| run(Command::new("python3").arg(src)),
    );
}

#[test]
fn env_is_one_line_with_newline_escapes() {
    let f = fixtures();
    for file in [&f.cert, &f.chain] {
        let text = normalised(file);
        let plain = ok(&["to-string", "--lang", "env", s(file)]);
        assert_eq!(plain, format!("{}\n", text.replace('\n', "\\n")));
        let named = ok(&["to-string", "--lang", "env", "--name", "DPS_CERT", s(file)]);
        assert_eq!(
            named,
            format!("DPS_CERT=\"{}\"\n", text.replace('\n', "\\n"))
        );
    }
    // Characters that need escaping survive a JSON-style decode.
    if require_tool("python3", "env_is_one_line_with_newline_escapes") {
        check_roundtrip(
            &f,
            "env",
            "check.py",
            |plain, named| {
                let value = named.trim_end().strip_prefix("X=").unwrap();
                format!(
                    "import json, sys\nsys.stdout.buffer.write((json.loads({value:?}) + \
                     json.loads('\"' + {plain:?} + '\"')).encode())\n",
                    plain = plain.trim_end()
                )
            },
            |_, src| run(Command::new("python3").arg(src)),
        );
    }
}

#[test]
fn own_template_is_used() {
    let f = fixtures();
    let tmpl = f.dir.path().join("yaml.tmpl");
    fs::write(&tmpl, "# YAML block scalar\nescape = none\nnamed.header = {{name}}: |-{{nl}}\nline =   {{line}}{{nl}}\n")
        .unwrap();
    let out = ok(&[
        "to-string",
        "--template",
        s(&tmpl),
        "--name",
        "cert",
        s(&f.cert),
    ]);
    let indented: String = normalised(&f.cert)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    assert_eq!(out, format!("cert: |-\n{indented}"));
}

#[test]
fn private_key_warns_and_certificate_does_not() {
    let f = fixtures();
    for args in [
        vec!["to-java-string"],
        vec!["to-string", "--lang", "python"],
    ] {
        let mut a = args.clone();
        a.push(s(&f.key));
        let out = pki(&a);
        assert!(out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("pki: warning: ") && err.contains("private key"),
            "{err}"
        );
        assert!(err.contains("secret"), "{err}");
        // The key itself never lands on stderr.
        assert!(!err.contains("BEGIN"), "{err}");

        let mut a = args.clone();
        a.push(s(&f.cert));
        assert!(pki(&a).stderr.is_empty());
        let mut a = args;
        a.push(s(&f.chain));
        assert!(pki(&a).stderr.is_empty());
    }
}

/// Runs pki and asserts exit code 2, empty stdout and exactly one
/// `pki: error:` line on stderr containing every `needles` entry.
fn bad(args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let out = pki_stdin(args, stdin);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("pki: error: ") && err.ends_with('\n'),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err} lacks {n}");
    }
}

/// `cmd` followed by the file argument.
fn with<'a>(cmd: &[&'a str], file: &'a Path) -> Vec<&'a str> {
    let mut args = cmd.to_vec();
    args.push(s(file));
    args
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let f = fixtures();
    let d = f.dir.path();
    let missing = d.join("missing.pem");
    let empty = d.join("empty.pem");
    fs::write(&empty, "").unwrap();
    let blank = d.join("blank.pem");
    fs::write(&blank, "\n\r\n  \n").unwrap();
    let text = d.join("text.txt");
    fs::write(&text, "just some text\n").unwrap();
    let der = d.join("cert.der");
    openssl(
        d,
        &[
            "x509",
            "-in",
            s(&f.cert),
            "-outform",
            "der",
            "-out",
            "cert.der",
        ],
    );
    let truncated = d.join("truncated.pem");
    let cert = fs::read_to_string(&f.cert).unwrap();
    fs::write(&truncated, &cert[..cert.len() / 2]).unwrap();
    let bad_tmpl = d.join("bad.tmpl");
    fs::write(&bad_tmpl, "escape = none\nline = {{lin}}\n").unwrap();

    for cmd in [vec!["to-java-string"], vec!["to-string", "--lang", "c"]] {
        bad(&with(&cmd, &missing), None, &["missing.pem"]);
        bad(&with(&cmd, &empty), None, &["empty.pem is empty", "PEM"]);
        bad(&with(&cmd, &blank), None, &["blank lines"]);
        bad(&with(&cmd, &text), None, &["no PEM block"]);
        bad(
            &with(&cmd, &der),
            None,
            &["not UTF-8", "openssl x509 -inform der"],
        );
        bad(&with(&cmd, &truncated), None, &["no END line", "truncated"]);
        bad(
            &with(&cmd, Path::new("-")),
            Some(b""),
            &["standard input is empty"],
        );
        let mut named = cmd.clone();
        named.extend(["--name", "not-an-id", s(&f.cert)]);
        bad(&named, None, &["not an identifier"]);
    }
    let mut unknown = vec!["unknown language 'cobol'"];
    unknown.extend(LANGS);
    bad(
        &["to-string", "--lang", "cobol", s(&f.cert)],
        None,
        &unknown,
    );
    bad(
        &[
            "to-string",
            "--template",
            s(&d.join("nope.tmpl")),
            s(&f.cert),
        ],
        None,
        &["nope.tmpl"],
    );
    bad(
        &["to-string", "--template", s(&bad_tmpl), s(&f.cert)],
        None,
        &["bad.tmpl", "line 2", "{{lin}}"],
    );
}

#[test]
fn help_lists_languages_and_examples() {
    let help = ok(&["to-string", "--help"]);
    for lang in LANGS {
        assert!(help.contains(lang), "{lang}");
    }
    assert!(help.contains("Examples:") && help.contains("pki to-string --lang c"));
    let help = ok(&["to-java-string", "--help"]);
    assert!(help.contains("Examples:") && help.contains("pki to-java-string certs/"));
    assert!(help.contains("CRLF") && help.contains("\\r"), "{help}");
}
