//! `logflow check SPEC`: validate and explain.

use std::io::Write;
use std::path::PathBuf;

use crate::spec::overrides::Overrides;
use crate::Error;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The job spec (TOML).
    spec: PathBuf,
    /// The flags `run` would be given: the explanation is of the job they make.
    #[command(flatten)]
    overrides: Overrides,
}

pub fn check(args: CheckArgs) -> Result<(), Error> {
    let mut plan = crate::spec::load(&args.spec)?;
    let env_brokers = std::env::var(crate::kafka::BROKERS_ENV)
        .ok()
        .filter(|b| !b.is_empty());
    let mut notes = args.overrides.describe(&plan, env_brokers.as_deref());
    // A spec meant to be completed on the command line is valid: say what it needs.
    let undecided = plan.checkpoint.take_if(|c| {
        c.dir.is_empty()
            && args.overrides.checkpoint_dir.is_none()
            && args.overrides.from_checkpoint.is_none()
    });
    args.overrides.apply(&mut plan, env_brokers.as_deref())?;
    if let Some(c) = undecided {
        if let Some(why) = plan.source.kind.checkpoint_refusal() {
            return Err(Error::Usage(why.into()));
        }
        notes.push("checkpoint.dir is not in the spec: `run` needs --checkpoint-dir DIR".into());
        plan.checkpoint = Some(c);
    }
    let mut out = std::io::stdout().lock();
    let mut text = plan.explain();
    if !notes.is_empty() {
        text.push_str("from the command line:\n");
        for n in &notes {
            text.push_str(&format!("  {n}\n"));
        }
    }
    let written = write!(out, "{text}")
        .and_then(|()| writeln!(out, "{}: ok", args.spec.display()))
        .and_then(|()| out.flush());
    super::stdout_result(written)
}
