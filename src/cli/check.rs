//! `logflow check SPEC`: validate and explain.

use std::path::PathBuf;

use crate::Error;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The job spec (TOML).
    spec: PathBuf,
}

pub fn check(args: CheckArgs) -> Result<(), Error> {
    let plan = crate::spec::load(&args.spec)?;
    print!("{}", plan.explain());
    println!("{}: ok", args.spec.display());
    Ok(())
}
