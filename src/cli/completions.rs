//! `pki completions SHELL`: the shell completion script for `pki`, made by
//! clap_complete from the same command definition as `--help`, so the two
//! never disagree.

use clap::CommandFactory;
use clap_complete::Shell;

use super::output::write_stdout;
use crate::error::Result;

/// Arguments of `pki completions`.
///
/// Prints a completion script for SHELL on stdout. Install it where your
/// shell looks for completions, or source it from your shell's start-up file.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install:\n  \
bash:        pki completions bash > ~/.local/share/bash-completion/completions/pki\n  \
zsh:         pki completions zsh > ~/.zfunc/_pki   # with fpath+=(~/.zfunc) before compinit\n  \
fish:        pki completions fish > ~/.config/fish/completions/pki.fish\n  \
PowerShell:  pki completions powershell | Out-String | Invoke-Expression   # in $PROFILE\n  \
elvish:      pki completions elvish > ~/.config/elvish/lib/pki.elv   # then `use pki` in rc.elv")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Writes the completion script to stdout.
pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pki", &mut script);
    write_stdout(&script)
}
