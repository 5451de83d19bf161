//! `pki completions` and `pki man`: the bash script parses (`bash -n`) and,
//! sourced into a real bash, completes `pki ch<TAB>` to `chain` through the
//! function it registers with `complete`; every shell gets a script; the
//! manual pages render with man-db's `man -l` and name the real options.

use std::fs;
use std::process::Command;

use crate::support::{bash, pki, require_tool, run_tool, s, tmp};

/// What bash offers for the command line `line` (cursor at the end), using
/// the function that the generated script registered for `pki`.
fn complete(script_file: &str, line: &str) -> Vec<String> {
    // Find the function through `complete -p pki` (as bash itself would), set
    // the COMP_* variables bash sets on <TAB>, call it, print COMPREPLY.
    let driver = r#"
source "$1" || exit 3
spec=$(complete -p pki) || exit 4
func=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$func" ] || { echo "no -F function in: $spec" >&2; exit 5; }
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
case "$COMP_LINE" in *' ') COMP_WORDS+=("") ;; esac
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
cur=${COMP_WORDS[COMP_CWORD]}
prev=${COMP_WORDS[COMP_CWORD-1]}
"$func" pki "$cur" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let run = bash(driver, &[script_file, line]).ok();
    run.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_script_parses_and_completes_subcommands_options_and_values() {
    if !require_tool(
        "bash",
        "bash_script_parses_and_completes_subcommands_options_and_values",
    ) {
        return;
    }
    let dir = tmp();
    let run = pki(&["completions", "bash"]).ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let file = dir.path().join("pki.bash");
    fs::write(&file, &run.stdout).unwrap();
    let file = s(&file);

    let syntax = bash("bash -n \"$1\"", &[file]);
    assert_eq!(syntax.code, Some(0), "bash -n: {}", syntax.stderr);

    assert_eq!(complete(file, "pki ch"), ["chain"]);
    let top = complete(file, "pki ");
    for sub in [
        "chain",
        "completions",
        "emulator",
        "enroll",
        "man",
        "register",
    ] {
        assert!(top.contains(&sub.to_string()), "{sub} not offered: {top:?}");
    }
    let opts = complete(file, "pki chain new --dev");
    for opt in ["--device", "--device-key", "--devices"] {
        assert!(opts.contains(&opt.to_string()), "{opt}: {opts:?}");
    }
    let shells = complete(file, "pki completions ");
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(shells.contains(&shell.to_string()), "{shell}: {shells:?}");
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pki"),
        ("fish", "complete -c pki"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[pki]"),
    ] {
        let run = pki(&["completions", shell]).ok();
        assert!(run.stdout.contains(marker), "{shell}: no {marker:?}");
        assert!(
            run.stdout.contains("verify-code"),
            "{shell}: no verify-code"
        );
    }
}

#[test]
fn unknown_shell_is_one_line_and_exit_2() {
    let line = pki(&["completions", "tcsh"]).bad_input();
    assert!(
        line.contains("bash, elvish, fish, powershell, zsh"),
        "{line}"
    );
    let line = pki(&["completions"]).bad_input();
    assert!(line.contains("<SHELL>"), "{line}");
}

/// Renders a page with man-db (`man -l`), as a user reading it would.
fn man_l(page: &str) -> String {
    let out = run_tool(
        Command::new("man")
            .args(["-l", page])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8"),
        "man",
    );
    assert!(out.status.success(), "man -l {page}: {}", out.stderr);
    // man's formatter marks bold and underline with backspaces off a tty.
    strip_overstrike(&out.stdout)
}

fn strip_overstrike(s: &str) -> String {
    // "c\bc" (bold) and "_\bc" (underline) → "c".
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && chars[i + 1] == '\u{8}' {
            out.push(chars[i + 2]);
            i += 3;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn man_pages_render_with_man_db() {
    if !require_tool("man", "man_pages_render_with_man_db") {
        return;
    }
    let dir = tmp();
    // To stdout: the top-level page.
    let run = pki(&["man"]).ok();
    let top = dir.path().join("top.1");
    fs::write(&top, &run.stdout).unwrap();
    let text = man_l(s(&top));
    assert!(
        text.contains("NAME") && text.contains("SUBCOMMANDS"),
        "{text}"
    );
    assert!(text.contains("completions"), "{text}");

    // Into a directory (created): one page per command.
    let out = dir.path().join("man1");
    let run = pki(&["man", s(&out)]).ok();
    for name in [
        "pki.1",
        "pki-chain.1",
        "pki-chain-new.1",
        "pki-completions.1",
        "pki-man.1",
    ] {
        let page = out.join(name);
        assert!(page.is_file(), "{name} missing; stderr: {}", run.stderr);
        assert!(
            run.stderr.contains(s(&page)),
            "{name} not listed: {}",
            run.stderr
        );
    }
    let page = out.join("pki-chain-new.1");
    let text = man_l(s(&page));
    assert!(text.contains("pki-chain-new"), "{text}");
    assert!(text.contains("--devices"), "{text}");
    assert!(text.contains("--intermediates"), "{text}");
    assert!(
        !out.join("pki-help.1").exists(),
        "a page for the help subcommand"
    );
}

#[test]
fn man_into_a_file_path_is_bad_input() {
    let dir = tmp();
    let file = dir.path().join("plain-file");
    fs::write(&file, "x").unwrap();
    let line = pki(&["man", s(&file)]).bad_input();
    assert!(line.contains("is a file"), "{line}");
}
