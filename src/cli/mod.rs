//! The command line (DESIGN.md section 6). Exit codes: 0 success, 2 bad usage or spec,
//! 1 runtime failure, always with a one-line cause on stderr.

mod check;
mod run;

use clap::{Parser, Subcommand};

use crate::Error;

/// Real-time log analytics on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "logflow", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job spec.
    Run(run::RunArgs),
    /// Validate a job spec and explain what it computes.
    Check(check::CheckArgs),
}

/// Parses arguments, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("logflow: {e}");
            e.exit_code()
        }
    }
}

/// Wraps a usage problem found after argument parsing.
pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}
