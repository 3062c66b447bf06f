//! Checkpoints (issue 6) without a broker: the full log-analysis job reads a generated file and
//! writes JSONL files, whose checkpoint state is each file's length, so a job restored from a
//! checkpoint cuts its files back and writes on: exactly once. Every comparison is against an
//! uninterrupted run without checkpoints, as multisets of lines (a duplicate or a missing row
//! fails).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::cluster::Proc;
use common::kafka::gen;
use common::oracle::{self, Reference};
use common::recovery::{assert_fell_back, kill_and_damage, kill_attempts};
use common::rows::assert_same_files;
use common::{accounting, bin, repo, run_file, tmpdir, TmpDir};

/// A test's directory: 1M generated events, their results from a run without checkpoints
/// (`want`), and the log-analysis spec with checkpoints in `ckpt` every `interval`, to write
/// into `out`.
struct Setup {
    dir: TmpDir,
    logs: PathBuf,
    want: PathBuf,
    ckpt: PathBuf,
    spec: PathBuf,
    out: PathBuf,
}

fn setup(name: &str, interval: &str, events: &str) -> Setup {
    let dir = tmpdir(name);
    let logs = dir.join("logs.jsonl");
    gen("logs", events, &[], &logs);
    let want = dir.join("want");
    run_file("dataflows/log-analysis.toml", &logs, &want, "1");
    Reference::new(&oracle::log_analysis(), &logs).assert_matches(&want, "log-analysis");
    let ckpt = dir.join("ckpt");
    let mut text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    text.push_str(&format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"{interval}\"\nkeep = 3\n",
        ckpt.display()
    ));
    let spec = dir.join("job.toml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.join("out");
    Setup {
        dir,
        logs,
        want,
        ckpt,
        spec,
        out,
    }
}

/// Lines of the killed job's input: enough that it still runs when the later kills come (each
/// 0.4-1.3 s after its attempt starts); the test fails, not passes, when fewer than 3 land.
const KILLED_EVENTS: &str = "4000000";

/// A 2-process job (`launch --restart 5`) killed with SIGKILL at random moments 5 times comes
/// back from its checkpoints each time, and its files end up exactly like an uninterrupted
/// run's.
#[test]
fn a_job_killed_five_times_restores_its_checkpoints_and_writes_each_result_once() {
    let Setup {
        dir,
        logs,
        want,
        spec,
        out,
        ..
    } = setup("checkpoint-kills", "250ms", KILLED_EVENTS);
    let mut cmd = bin();
    cmd.args(["launch", spec.to_str().unwrap(), "--processes", "2"])
        .args(["--input", logs.to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap()])
        .args(["--restart", "5", "--backoff", "200ms"]);
    let mut launch = Proc::spawn(cmd, &dir, "launch", Stdio::null());
    let kills = kill_attempts(&mut launch, 2, 5, 0x2545_F491_4F6C_DD1D, |_, rng| {
        400 + rng.next() % 900
    });
    let status = launch.wait(Duration::from_secs(300));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    let restarts = err.matches("starting the job again").count();
    let restored = err.matches("restoring checkpoint").count();
    // Every kill that landed (on a running process) cost one restart, and nothing else did.
    assert_eq!(restarts, kills, "{kills} kills landed:\n{err}");
    assert!(
        kills >= 3,
        "only {kills} of 5 kills hit a running job: make the input larger\n{err}"
    );
    // Both processes of an attempt restore (process 0 names it first): most restarts come
    // after a checkpoint.
    assert!(restored >= 2 * 2, "{restored} restores:\n{err}");
    assert_same_files(&out, &want, 10, &format!("after {restarts} restarts"));
    eprintln!("checkpoint: {kills} kills, {restarts} restarts, {restored} process restores");
}

/// A damaged newest checkpoint is skipped with a warning naming it; the previous one is
/// restored and the results are still exact. A finished job started again writes nothing new,
/// on its own layout or another.
#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_one() {
    let Setup {
        dir,
        logs,
        want,
        ckpt,
        spec,
        out,
    } = setup("checkpoint-corrupt", "200ms", "1000000");
    let run_w = |workers: &str| {
        let mut cmd = bin();
        cmd.args(["run", spec.to_str().unwrap(), "-w", workers, "--quiet"])
            .args(["--input", logs.to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()]);
        cmd
    };
    let run = || run_w("1");
    // Killed once two checkpoints are complete; the newest is then damaged.
    let (damaged, previous) = kill_and_damage(run(), &dir, &ckpt, "worker-0.part");
    let second = run().output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{err}");
    assert_fell_back(&err, &damaged, &previous);
    assert!(accounting(&second.stderr)["read"] < 1_000_000, "{err}");
    assert_same_files(&out, &want, 10, "after a corrupt checkpoint");

    // Finished: started again, it restores the last checkpoint and writes nothing new.
    let third = run().output().unwrap();
    assert!(third.status.success());
    assert_same_files(&out, &want, 10, "started again after the end");

    // Another layout restores it too (its state split by key group, tests/rescale.rs), and
    // writes nothing new either. (A checkpoint from before key groups is refused another
    // layout with the reason: checkpoint::process's unit tests.)
    let other = run_w("2").output().unwrap();
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(other.status.success(), "{err}");
    assert!(
        err.contains("from 1 worker to 2 workers: each worker takes the state of the key groups"),
        "{err}"
    );
    assert_same_files(&out, &want, 10, "after a restore on another layout");

    // A forged part: a valid frame and checksum around a state whose first length field
    // claims 2^64-1 elements. Refused with the reason, without a panic or a huge allocation.
    let newest = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("epoch-")
        })
        .max()
        .unwrap();
    let payload = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let mut forged = b"LFCKPT01".to_vec();
    forged.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    forged.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    forged.extend_from_slice(&payload);
    std::fs::write(newest.join("worker-0.part"), forged).unwrap();
    let refused = run().output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    let epoch: u64 = newest.file_name().unwrap().to_str().unwrap()["epoch-".len()..]
        .parse()
        .unwrap();
    assert!(
        err.contains(&format!("checkpoint {epoch} in {}: part: ", ckpt.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_same_files(&out, &want, 10, "after a forged checkpoint");
}
