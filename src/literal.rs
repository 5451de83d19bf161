//! PEM to source-code string literals (`pki to-string`, `pki to-java-string`).
//!
//! The DPS samples want the device certificate and key pasted into source
//! code, and the docs make those literals with sed one-liners. This module
//! does the same job without sed's pitfalls (a CRLF file puts a `\r` inside
//! every line of the literal) and for more languages:
//!
//! 1. [`Input::parse`] normalises the file: CRLF becomes LF, a UTF-8 BOM and
//!    trailing blank lines are dropped, and it checks that there is at least
//!    one complete PEM block (noting whether one of them is a private key).
//! 2. A [`Template`] (one per language, embedded from `templates/`, or the
//!    user's own file) says what goes before, around each line, around the
//!    last line and after; `templates/README.md` documents the format.
//! 3. [`render`] escapes every line for the template's language and fills
//!    the template in.
//!
//! Every built-in literal evaluates to the file's lines joined with `\n`,
//! without a final newline: that is what the docs' sed one-liners make, and
//! the Java and C output is byte-identical to theirs for LF PEM files.

use crate::error::{Error, Result};

/// The built-in templates: language name and template text.
const BUILTIN: &[(&str, &str)] = &[
    ("java", include_str!("../templates/java.tmpl")),
    ("c", include_str!("../templates/c.tmpl")),
    ("csharp", include_str!("../templates/csharp.tmpl")),
    ("python", include_str!("../templates/python.tmpl")),
    ("javascript", include_str!("../templates/javascript.tmpl")),
    ("go", include_str!("../templates/go.tmpl")),
    ("rust", include_str!("../templates/rust.tmpl")),
    ("json", include_str!("../templates/json.tmpl")),
    ("env", include_str!("../templates/env.tmpl")),
];

/// The names accepted by `pki to-string --lang`, in help order.
pub fn languages() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// The built-in template for `lang`; an unknown name is an input error that
/// lists the known ones.
pub fn builtin(lang: &str) -> Result<Template> {
    let wanted = lang.to_ascii_lowercase();
    let Some((name, text)) = BUILTIN.iter().find(|(name, _)| *name == wanted) else {
        let known: Vec<&str> = languages().collect();
        return Err(Error::input(format!(
            "unknown language '{lang}'; use one of: {} (or --template FILE for your own)",
            known.join(", ")
        )));
    };
    // The embedded templates are checked by unit tests, so a parse error
    // here is a build defect; still report it rather than panic.
    let mut t = Template::parse(text, &format!("built-in template '{name}'"))?;
    t.language = (*name).to_owned();
    Ok(t)
}

/// A normalised PEM input: its lines (without line endings) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    lines: Vec<String>,
    private_key: Option<String>,
}

impl Input {
    /// Normalises `data` (read from `origin`, used in messages) and checks
    /// that it holds at least one complete PEM block.
    pub fn parse(data: &[u8], origin: &str) -> Result<Input> {
        if data.is_empty() {
            return Err(Error::input(format!(
                "{origin} is empty; give a PEM certificate or key file (-----BEGIN ...)"
            )));
        }
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        let text = std::str::from_utf8(data).map_err(|_| {
            Error::input(format!(
                "{origin} is not text (not UTF-8); if it is DER, convert it first: \
                 openssl x509 -inform der -in FILE -out FILE.pem"
            ))
        })?;
        // Splitting on LF and dropping one CR per line makes CRLF and LF files
        // give the same literal; the sed one-liner would keep the CR.
        let mut lines: Vec<String> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        if lines.is_empty() {
            return Err(Error::input(format!(
                "{origin} holds only blank lines; give a PEM certificate or key file (-----BEGIN ...)"
            )));
        }
        let private_key = check_blocks(&lines, origin)?;
        Ok(Input { lines, private_key })
    }

    /// The normalised lines, without line endings.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The label of the first private-key block (e.g. `PRIVATE KEY`), if any.
    pub fn private_key(&self) -> Option<&str> {
        self.private_key.as_deref()
    }

    /// The text every built-in literal evaluates to: lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Checks that every `-----BEGIN X-----` has its `-----END X-----` and that
/// there is at least one block; returns the first private-key label.
fn check_blocks(lines: &[String], origin: &str) -> Result<Option<String>> {
    let mut open: Option<(String, usize)> = None;
    let mut blocks = 0;
    let mut private_key = None;
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if let Some(label) = pem_label(line, "BEGIN") {
            if let Some((prev, at)) = &open {
                return Err(unterminated(origin, prev, *at));
            }
            open = Some((label.to_owned(), i + 1));
        } else if let Some(label) = pem_label(line, "END") {
            match open.take() {
                Some((begun, _)) if begun == label => {
                    blocks += 1;
                    if private_key.is_none() && begun.contains("PRIVATE KEY") {
                        private_key = Some(begun);
                    }
                }
                Some((begun, at)) => {
                    return Err(Error::input(format!(
                        "{origin}: the '{begun}' block starting on line {at} ends with \
                         'END {label}' on line {}; fix the END line",
                        i + 1
                    )));
                }
                None => {
                    return Err(Error::input(format!(
                        "{origin}: line {} has 'END {label}' without a BEGIN line; \
                         is the file cut off at the start?",
                        i + 1
                    )));
                }
            }
        }
    }
    if let Some((label, at)) = open {
        return Err(unterminated(origin, &label, at));
    }
    if blocks == 0 {
        return Err(Error::input(format!(
            "{origin} has no PEM block (no -----BEGIN ...----- line); give a PEM \
             certificate or key, e.g. certs/azure-iot-test-only.root.ca.cert.pem"
        )));
    }
    Ok(private_key)
}

fn unterminated(origin: &str, label: &str, at: usize) -> Error {
    Error::input(format!(
        "{origin}: the '{label}' block starting on line {at} has no END line; \
         is the file truncated?"
    ))
}

/// `-----BEGIN CERTIFICATE-----` with `kind` "BEGIN" gives `CERTIFICATE`.
fn pem_label<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")
}

/// How text is escaped inside a language's double-quoted string literal.
///
/// All styles except `None` escape `\`, `"` and control characters; they
/// differ in the numeric escape, chosen so that it can never swallow the
/// next character or be decoded before lexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Nothing is escaped (for formats that take raw text).
    None,
    /// C: octal escapes (`\x` would swallow following hex digits) and `?\?`
    /// so that `??` never forms a trigraph.
    C,
    /// Java: octal escapes, because `\u000a` is decoded before lexing and
    /// would end the literal.
    Java,
    /// C#: `\u00XX` (`\x` takes up to four hex digits); also escapes the
    /// characters C# treats as line breaks (U+0085, U+2028, U+2029).
    CSharp,
    /// JSON (also used for `env`): `\u00XX`, the only numeric escape JSON has.
    Json,
    /// Python, JavaScript, Go and Rust: `\xHH`, exactly two digits in all four.
    Hex,
}

impl Escape {
    /// The style named in a template's `escape =` line.
    fn from_name(name: &str) -> Option<Escape> {
        Some(match name {
            "none" => Escape::None,
            "c" => Escape::C,
            "java" => Escape::Java,
            "csharp" => Escape::CSharp,
            "json" | "env" => Escape::Json,
            "python" | "javascript" | "go" | "rust" => Escape::Hex,
            _ => return None,
        })
    }

    const NAMES: &'static str = "none, c, java, csharp, json, env, python, javascript, go, rust";

    /// Escapes one line for this style.
    pub fn apply(self, line: &str) -> String {
        if self == Escape::None {
            return line.to_owned();
        }
        let mut out = String::with_capacity(line.len() + 8);
        let mut prev = '\0';
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\t' => out.push_str("\\t"),
                '?' if self == Escape::C && prev == '?' => out.push_str("\\?"),
                '\u{85}' | '\u{2028}' | '\u{2029}' if self == Escape::CSharp => {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c if c.is_ascii_control() => {
                    let n = u32::from(c);
                    out.push_str(&match self {
                        Escape::C | Escape::Java => format!("\\{n:03o}"),
                        Escape::CSharp | Escape::Json => format!("\\u{n:04x}"),
                        Escape::Hex | Escape::None => format!("\\x{n:02x}"),
                    });
                }
                c => out.push(c),
            }
            prev = c;
        }
        out
    }
}

/// One piece of a template section after parsing its placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `{{line}}`: the escaped line.
    Line,
    /// `{{name}}`: the `--name` value.
    Name,
}

/// The four parts of a rendering: before, each line but the last, the last
/// line, after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sections {
    header: Option<Vec<Piece>>,
    line: Option<Vec<Piece>>,
    last: Option<Vec<Piece>>,
    footer: Option<Vec<Piece>>,
}

impl Sections {
    fn slot(&mut self, part: &str) -> Option<&mut Option<Vec<Piece>>> {
        Some(match part {
            "header" => &mut self.header,
            "line" => &mut self.line,
            "last" => &mut self.last,
            "footer" => &mut self.footer,
            _ => return None,
        })
    }
}

/// A parsed template (format: `templates/README.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    origin: String,
    /// The target language, for messages: the built-in's name, else `origin`.
    language: String,
    /// `reserved = ...` words: a `--name` equal to one would not compile.
    reserved: Vec<String>,
    escape: Escape,
    plain: Sections,
    named: Sections,
}

impl Template {
    /// Parses template text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Template> {
        let bad = |n: usize, what: String| {
            Error::input(format!(
                "{origin}, line {n}: {what}; see templates/README.md for the format"
            ))
        };
        let mut escape = None;
        let mut reserved = Vec::new();
        let mut plain = Sections::default();
        let mut named = Sections::default();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = raw.split_once('=') else {
                return Err(bad(n, "expected 'key = value'".into()));
            };
            let key = key.trim();
            // One space after '=' separates; further leading spaces are
            // indentation and belong to the value. Trailing whitespace is
            // invisible in an editor, so it never counts (use {{sp}}).
            let value = value.strip_prefix(' ').unwrap_or(value).trim_end();
            if key == "escape" {
                if escape.is_some() {
                    return Err(bad(n, "'escape' is set twice".into()));
                }
                let style = Escape::from_name(value.trim()).ok_or_else(|| {
                    bad(
                        n,
                        format!("unknown escape '{value}' (known: {})", Escape::NAMES),
                    )
                })?;
                escape = Some(style);
                continue;
            }
            if key == "reserved" {
                // May repeat: the words of every `reserved` line add up.
                reserved.extend(value.split_whitespace().map(str::to_owned));
                continue;
            }
            let (set, part) = match key.strip_prefix("named.") {
                Some(part) => (&mut named, part),
                None => (&mut plain, key),
            };
            let Some(slot) = set.slot(part) else {
                return Err(bad(
                    n,
                    format!(
                        "unknown key '{key}' (known: escape, reserved, header, line, last, footer, \
                         and named.header, named.line, named.last, named.footer)"
                    ),
                ));
            };
            if slot.is_some() {
                return Err(bad(n, format!("'{key}' is set twice")));
            }
            let pieces = parse_pieces(value).map_err(|e| bad(n, e))?;
            if pieces.contains(&Piece::Line) && !matches!(part, "line" | "last") {
                return Err(bad(
                    n,
                    format!("{{{{line}}}} can only be used in line and last, not in '{key}'"),
                ));
            }
            *slot = Some(pieces);
        }
        let Some(escape) = escape else {
            return Err(Error::input(format!(
                "{origin} has no 'escape = ...' line (known: {}); see templates/README.md",
                Escape::NAMES
            )));
        };
        if plain.line.is_none() {
            return Err(Error::input(format!(
                "{origin} has no 'line = ...' entry; see templates/README.md"
            )));
        }
        Ok(Template {
            origin: origin.to_owned(),
            language: origin.to_owned(),
            reserved,
            escape,
            plain,
            named,
        })
    }

    /// The section to use for `part`: with `--name`, `named.part` when the
    /// template has it; otherwise (or as fallback) the plain one.
    fn pick(&self, named: bool, get: fn(&Sections) -> &Option<Vec<Piece>>) -> &[Piece] {
        let plain = get(&self.plain).as_deref();
        let chosen = if named {
            get(&self.named).as_deref().or(plain)
        } else {
            plain
        };
        chosen.unwrap_or(&[])
    }
}

/// Splits a template value into text and placeholders.
fn parse_pieces(value: &str) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("'{{' without a closing '}}'".into());
        };
        match &after[..end] {
            "nl" => text.push('\n'),
            "sp" => text.push(' '),
            placeholder @ ("line" | "name") => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(if placeholder == "line" {
                    Piece::Line
                } else {
                    Piece::Name
                });
            }
            other => {
                return Err(format!(
                    "unknown placeholder '{{{{{other}}}}}' (known: {{{{line}}}}, {{{{name}}}}, {{{{nl}}}}, {{{{sp}}}})"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Renders `input` with `template`; `name` is the `--name` value.
///
/// Errors when `--name` is given to a template without a declaration form,
/// when a template needs a name and none was given, or when the name is not
/// an identifier (it is pasted into code unescaped).
pub fn render(template: &Template, input: &Input, name: Option<&str>) -> Result<String> {
    if let Some(name) = name {
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !ok {
            return Err(Error::input(format!(
                "--name '{name}' is not an identifier; use letters, digits and _, \
                 not starting with a digit (e.g. --name DEVICE_CERT)"
            )));
        }
        if template.reserved.iter().any(|w| w == name) {
            return Err(Error::input(format!(
                "--name '{name}' is a reserved word in {}, so the literal would not compile; \
                 choose another name (e.g. --name {}_PEM)",
                template.language,
                name.to_ascii_uppercase()
            )));
        }
    }
    let named = name.is_some();
    let header = template.pick(named, |s| &s.header);
    let line = template.pick(named, |s| &s.line);
    let last = match template.pick(named, |s| &s.last) {
        [] => line,
        last => last,
    };
    let footer = template.pick(named, |s| &s.footer);
    let uses_name = [header, line, last, footer]
        .iter()
        .any(|p| p.contains(&Piece::Name));
    match (name, uses_name) {
        (Some(_), false) => {
            return Err(Error::input(format!(
                "{} has no declaration form, so --name does not apply; drop --name",
                template.origin
            )));
        }
        (None, true) => {
            return Err(Error::input(format!(
                "{} needs a variable name; add --name VAR",
                template.origin
            )));
        }
        _ => {}
    }
    let name = name.unwrap_or("");
    let mut out = String::new();
    let fill = |out: &mut String, pieces: &[Piece], text: &str| {
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Line => out.push_str(text),
                Piece::Name => out.push_str(name),
            }
        }
    };
    fill(&mut out, header, "");
    let lines = input.lines();
    for (i, l) in lines.iter().enumerate() {
        let escaped = template.escape.apply(l);
        let pieces = if i + 1 == lines.len() { last } else { line };
        fill(&mut out, pieces, &escaped);
    }
    fill(&mut out, footer, "");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\nAbC=\n-----END CERTIFICATE-----\n";

    fn input(text: &str) -> Input {
        Input::parse(text.as_bytes(), "test").unwrap()
    }

    fn lang(l: &str, name: Option<&str>) -> String {
        render(&builtin(l).unwrap(), &input(PEM), name).unwrap()
    }

    #[test]
    fn every_builtin_template_parses_and_renders() {
        for l in languages() {
            let t = builtin(l).unwrap();
            // Each template either works without a name, or needs one.
            let plain = render(&t, &input(PEM), None);
            let named = render(&t, &input(PEM), Some("X"));
            assert!(plain.is_ok() || named.is_ok(), "{l}");
        }
    }

    #[test]
    fn java_matches_the_sed_one_liner() {
        assert_eq!(
            lang("java", None),
            "\"-----BEGIN CERTIFICATE-----\\n\" +\n\"MIIB\\n\" +\n\"AbC=\\n\" +\n\"-----END CERTIFICATE-----\"\n"
        );
    }

    #[test]
    fn java_with_name_declares_a_constant() {
        let out = lang("java", Some("LEAF"));
        assert!(
            out.starts_with("private static final String LEAF =\n"),
            "{out}"
        );
        assert!(
            out.ends_with("    \"-----END CERTIFICATE-----\";\n"),
            "{out}"
        );
    }

    #[test]
    fn c_matches_the_sed_one_liner() {
        assert_eq!(
            lang("c", None),
            "\"-----BEGIN CERTIFICATE-----\"\"\\n\"\n\"MIIB\"\"\\n\"\n\"AbC=\"\"\\n\"\n\"-----END CERTIFICATE-----\"\n"
        );
    }

    #[test]
    fn env_is_one_line() {
        assert_eq!(
            lang("env", None),
            "-----BEGIN CERTIFICATE-----\\nMIIB\\nAbC=\\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            lang("env", Some("CERT")),
            "CERT=\"-----BEGIN CERTIFICATE-----\\nMIIB\\nAbC=\\n-----END CERTIFICATE-----\"\n"
        );
    }

    #[test]
    fn crlf_bom_and_trailing_blank_lines_are_normalised() {
        let crlf = format!("\u{feff}{}\r\n\r\n  \n", PEM.replace('\n', "\r\n"));
        assert_eq!(input(&crlf), input(PEM));
        assert_eq!(input(PEM).text(), PEM.trim_end());
    }

    #[test]
    fn private_keys_are_flagged() {
        let key = "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(input(key).private_key(), Some("PRIVATE KEY"));
        assert_eq!(input(PEM).private_key(), None);
        let bundle =
            format!("{PEM}-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n");
        assert_eq!(input(&bundle).private_key(), Some("EC PRIVATE KEY"));
    }

    #[test]
    fn bad_inputs_are_input_errors() {
        for (data, needle) in [
            (&b""[..], "is empty"),
            (b"\n\n \n", "only blank lines"),
            (b"hello\n", "no PEM block"),
            (b"\x30\x82\x01\xff\xfe", "not UTF-8"),
            (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "no END line"),
            (b"MIIB\n-----END CERTIFICATE-----\n", "without a BEGIN"),
            (
                b"-----BEGIN CERTIFICATE-----\n-----END PRIVATE KEY-----\n",
                "fix the END",
            ),
        ] {
            let e = Input::parse(data, "f.pem").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(msg.contains(needle) && msg.contains("f.pem"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn escapes_per_language() {
        let s = "a\\b\"c\td\u{1}e??/f";
        assert_eq!(Escape::C.apply(s), "a\\\\b\\\"c\\td\\001e?\\?/f");
        assert_eq!(Escape::Java.apply(s), "a\\\\b\\\"c\\td\\001e??/f");
        assert_eq!(Escape::CSharp.apply(s), "a\\\\b\\\"c\\td\\u0001e??/f");
        assert_eq!(Escape::Json.apply(s), "a\\\\b\\\"c\\td\\u0001e??/f");
        assert_eq!(Escape::Hex.apply(s), "a\\\\b\\\"c\\td\\x01e??/f");
        assert_eq!(Escape::None.apply(s), s);
        assert_eq!(Escape::CSharp.apply("x\u{2028}é"), "x\\u2028é");
    }

    #[test]
    fn placeholders_in_user_data_are_not_expanded() {
        let pem = format!("{{{{name}}}}\n{PEM}");
        let out = render(&builtin("java").unwrap(), &input(&pem), Some("V")).unwrap();
        assert!(out.contains("\"{{name}}\\n\" +"), "{out}");
    }

    #[test]
    fn template_format() {
        let t = Template::parse(
            "# comment\nescape = json\nheader = [{{nl}}\nline =   <{{line}}>,{{nl}}\nlast = <{{line}}>{{sp}}\nfooter = ]{{nl}}\nnamed.header = {{name}}: [{{nl}}\n",
            "t",
        )
        .unwrap();
        let i = input("-----BEGIN A-----\n\"\n-----END A-----\n");
        assert_eq!(
            render(&t, &i, None).unwrap(),
            "[\n  <-----BEGIN A----->,\n  <\\\">,\n<-----END A-----> ]\n"
        );
        assert!(render(&t, &i, Some("x")).unwrap().starts_with("x: [\n"));
    }

    #[test]
    fn name_rules() {
        let t = builtin("c").unwrap();
        assert!(render(&t, &input(PEM), Some("ok_1")).is_ok());
        for bad in ["1x", "a-b", "a b", "", "x;y"] {
            assert!(
                render(&t, &input(PEM), Some(bad))
                    .unwrap_err()
                    .to_string()
                    .contains("identifier")
            );
        }
        let t = Template::parse("escape = none\nline = {{line}}\n", "t").unwrap();
        let e = render(&t, &input(PEM), Some("X")).unwrap_err().to_string();
        assert!(e.contains("drop --name"), "{e}");
        let t = Template::parse("escape = none\nline = {{name}}{{line}}\n", "t").unwrap();
        let e = render(&t, &input(PEM), None).unwrap_err().to_string();
        assert!(e.contains("add --name"), "{e}");
    }

    #[test]
    fn bad_templates_are_input_errors() {
        for (text, needle) in [
            ("line = x\n", "no 'escape"),
            ("escape = none\n", "no 'line"),
            ("escape = klingon\nline = x\n", "unknown escape"),
            ("escape = none\nline = {{lin}}\n", "unknown placeholder"),
            ("escape = none\nline = {{line\n", "without a closing"),
            ("escape = none\nline = x\nline = y\n", "set twice"),
            ("escape = none\nline = x\nbody = y\n", "unknown key"),
            (
                "escape = none\nline = x\nheader = {{line}}\n",
                "only be used",
            ),
            ("escape = none\njust text\n", "key = value"),
        ] {
            let e = Template::parse(text, "my.tmpl").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn unknown_language_lists_the_known_ones() {
        let e = builtin("cobol").unwrap_err().to_string();
        for l in languages() {
            assert!(e.contains(l), "{e}");
        }
        assert!(builtin("Java").is_ok());
    }
}
