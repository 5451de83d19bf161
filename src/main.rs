//! The `pki` binary: parse the command line, run it, and turn any error into
//! one line on stderr and an exit code (0 success, 1 operation failed,
//! 2 usage or bad input). Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    pki::cli::main()
}
