//! `logflow check SPEC`: validate and explain.

use std::io::Write;
use std::path::PathBuf;

use crate::Error;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The job spec (TOML).
    spec: PathBuf,
}

pub fn check(args: CheckArgs) -> Result<(), Error> {
    let plan = crate::spec::load(&args.spec)?;
    let mut out = std::io::stdout().lock();
    let written = write!(out, "{}", plan.explain())
        .and_then(|()| writeln!(out, "{}: ok", args.spec.display()))
        .and_then(|()| out.flush());
    super::stdout_result(written)
}
