//! `logflow checkpoints DIR`: the checkpoints of a job's directory, newest first, one block
//! each: epoch, layout, key groups, barrier, input positions, size, and whether it is the
//! newest (the one a restart restores) or a savepoint.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use crate::checkpoint::process::{counted, list, Summary};
use crate::runtime::ingest::{IngestState, INGEST_SLOT};
use crate::Error;

#[derive(clap::Args, Debug)]
pub struct CheckpointsArgs {
    /// The checkpoint directory (the spec's `checkpoint.dir` or `--checkpoint-dir`).
    dir: PathBuf,
}

pub fn checkpoints(args: CheckpointsArgs) -> Result<(), Error> {
    let listed = list(&args.dir)?;
    let mut out = String::new();
    if listed.is_empty() {
        let _ = writeln!(out, "no checkpoints in {}", args.dir.display());
    }
    // The newest good one is what a restart restores.
    let newest = listed.iter().find(|s| s.read.is_ok()).map(|s| s.epoch);
    for s in &listed {
        describe(s, newest == Some(s.epoch), &mut out);
    }
    crate::cli::stdout_result(std::io::stdout().lock().write_all(out.as_bytes()))
}

fn describe(s: &Summary, newest: bool, out: &mut String) {
    let mut flags = Vec::new();
    if newest {
        flags.push("latest");
    }
    if s.savepoint {
        flags.push("savepoint");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", flags.join(", "))
    };
    let (m, parts) = match &s.read {
        Ok(r) => r,
        Err(why) => {
            let _ = writeln!(
                out,
                "checkpoint {}: not usable: {why} ({} bytes){flags}",
                s.epoch, s.bytes
            );
            return;
        }
    };
    let workers = |n| counted(n, "worker", "workers");
    let layout = match m.processes {
        0 => workers(parts.len()),
        p => format!(
            "{} x {}",
            counted(p as usize, "process", "processes"),
            workers(parts.len() / (p as usize).max(1))
        ),
    };
    let groups = match m.key_groups {
        Some(g) => format!("{g} key groups"),
        None => "no key groups (same layout only)".into(),
    };
    let _ = writeln!(
        out,
        "checkpoint {}: {layout}, {groups}, barrier {}, taken {}, {} bytes{flags}",
        s.epoch,
        crate::time::rfc3339(s.epoch as i64),
        crate::time::rfc3339(m.at_ms as i64),
        s.bytes,
    );
    let suffix = format!(":{INGEST_SLOT}");
    for (worker, part) in parts.iter().enumerate() {
        for (_, bytes) in part.iter().filter(|(n, _)| n.ends_with(&suffix)) {
            let Ok(state) = crate::checkpoint::codec::decode::<IngestState>(bytes) else {
                let _ = writeln!(out, "  worker {worker}: source positions do not decode");
                continue;
            };
            for p in state {
                let at = p.resume.map_or("none".into(), |r| r.to_string());
                let _ = writeln!(out, "  {}: position {at} (worker {worker})", p.name);
            }
        }
    }
}
