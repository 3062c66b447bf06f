//! Checkpoints (issue 6) without a broker: the full log-analysis job reads a generated file and
//! writes JSONL files, whose checkpoint state is each file's length, so a job restored from a
//! checkpoint cuts its files back and writes on: exactly once. Every comparison is against an
//! uninterrupted run without checkpoints, as multisets of lines (a duplicate or a missing row
//! fails).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::{accounting, bin, repo, run_file, tmpdir};

/// A small deterministic generator (xorshift) for the kill moments: reproducible failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The log-analysis spec with checkpoints in `ckpt` every `interval`.
fn spec(dir: &Path, ckpt: &Path, interval: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    text.push_str(&format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"{interval}\"\nkeep = 3\n",
        ckpt.display()
    ));
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn gen(events: &str, path: &Path) {
    let out = std::fs::File::create(path).unwrap();
    let status = bin()
        .args(["gen", "--events", events])
        .stdout(out)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every output file of `got` holds the same lines as in `want`, as many times.
fn assert_same_files(got: &Path, want: &Path, what: &str) {
    let mut names: Vec<_> = std::fs::read_dir(want)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{what}: {names:?}");
    for n in names {
        let lines = |d: &Path| {
            let text = std::fs::read_to_string(d.join(&n)).unwrap_or_default();
            let mut l: Vec<String> = text.lines().map(String::from).collect();
            l.sort();
            l
        };
        let (g, w) = (lines(got), lines(want));
        assert!(
            g == w,
            "{what}: {n:?} has {} lines, the uninterrupted run {} ({} of them differ)",
            g.len(),
            w.len(),
            g.iter().filter(|l| w.binary_search(l).is_err()).count()
                + w.iter().filter(|l| g.binary_search(l).is_err()).count()
        );
    }
}

/// Complete checkpoints in `ckpt`, oldest first.
fn complete(ckpt: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(ckpt)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("MANIFEST").exists());
    dirs.sort();
    dirs
}

/// A 2-process job (`launch --restart 5`) killed with SIGKILL at random moments 5 times comes
/// back from its checkpoints each time, and its files end up exactly like an uninterrupted
/// run's.
#[test]
fn a_job_killed_five_times_restores_its_checkpoints_and_writes_each_result_once() {
    let dir = tmpdir("checkpoint-kills");
    let logs = dir.join("logs.jsonl");
    gen("1000000", &logs);
    let want = dir.join("want");
    run_file("dataflows/log-analysis.toml", &logs, &want, "1");

    let ckpt = dir.join("ckpt");
    let spec = spec(&dir, &ckpt, "250ms");
    let out = dir.join("out");
    let mut cmd = bin();
    cmd.args(["launch", spec.to_str().unwrap(), "--processes", "2"])
        .args(["--input", logs.to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap()])
        .args(["--restart", "5", "--backoff", "200ms"]);
    let mut launch = Proc::spawn(cmd, &dir, "launch", Stdio::null());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut kills = 0;
    'kills: for attempt in 0..5 {
        let started = Instant::now();
        let pids = loop {
            let err = launch.stderr_text();
            let pids: Vec<String> = err
                .lines()
                .filter_map(|l| l.strip_prefix("logflow launch: process "))
                .filter_map(|l| l.split_once(" is pid "))
                .map(|(_, pid)| pid.trim().to_string())
                .skip(attempt * 2)
                .collect();
            if pids.len() == 2 && err.matches("runs workers").count() >= 2 * (attempt + 1) {
                break pids;
            }
            if launch.child.try_wait().unwrap().is_some() {
                break 'kills; // the job ended before this kill
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "attempt {attempt} did not start:\n{}",
                launch.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(400 + rng.next() % 900));
        let victim = &pids[(rng.next() % 2) as usize];
        let _ = std::process::Command::new("kill")
            .args(["-KILL", victim])
            .status();
        kills += 1;
    }
    let status = launch.wait(Duration::from_secs(300));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    let restarts = err.matches("starting the job again").count();
    let restored = err.matches("restoring checkpoint").count();
    assert!(
        restarts >= 3,
        "{kills} kills, only {restarts} restarts:\n{err}"
    );
    // Both processes of an attempt restore (process 0 names it first): most restarts come
    // after a checkpoint.
    assert!(restored >= 2 * 2, "{restored} restores:\n{err}");
    assert_same_files(&out, &want, &format!("after {restarts} restarts"));
    // A restored attempt reads only what its checkpoint had not: less than the whole input.
    eprintln!("checkpoint: {kills} kills, {restarts} restarts, {restored} process restores");
}

/// A damaged newest checkpoint is skipped with a warning naming it; the previous one is
/// restored and the results are still exact. A finished job started again writes nothing new;
/// started with another layout, it says why it cannot restore.
#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_one() {
    let dir = tmpdir("checkpoint-corrupt");
    let logs = dir.join("logs.jsonl");
    gen("1000000", &logs);
    let want = dir.join("want");
    run_file("dataflows/log-analysis.toml", &logs, &want, "1");

    let ckpt = dir.join("ckpt");
    let spec = spec(&dir, &ckpt, "200ms");
    let out = dir.join("out");
    let run_w = |workers: &str| {
        let mut cmd = bin();
        cmd.args(["run", spec.to_str().unwrap(), "-w", workers, "--quiet"])
            .args(["--input", logs.to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()]);
        cmd
    };
    let run = || run_w("1");
    // Killed once at least two checkpoints are complete.
    let mut first = Proc::spawn(run(), &dir, "first", Stdio::null());
    let started = Instant::now();
    while complete(&ckpt).len() < 2 {
        assert!(
            first.child.try_wait().unwrap().is_none(),
            "the job ended before two checkpoints: make the input larger\n{}",
            first.stderr_text()
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = first.child.kill();
    let _ = first.child.wait();
    let good = complete(&ckpt);
    let newest = good.last().unwrap().clone();
    let previous = good[good.len() - 2].clone();
    // One flipped byte in the newest checkpoint's part.
    let part = newest.join("worker-0.part");
    let mut bytes = std::fs::read(&part).unwrap();
    let i = bytes.len() - 1;
    bytes[i] ^= 0x40;
    std::fs::write(&part, bytes).unwrap();

    let second = run().output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{err}");
    let name = |d: &Path| d.file_name().unwrap().to_string_lossy().into_owned();
    let epoch = |d: &Path| {
        name(d)
            .trim_start_matches("epoch-")
            .trim_start_matches('0')
            .to_string()
    };
    assert!(
        err.contains(&format!("checkpoint {} skipped", epoch(&newest)))
            && err.contains("checksum mismatch"),
        "the damaged checkpoint was not named:\n{err}"
    );
    assert!(
        err.contains(&format!("restoring checkpoint {} ", epoch(&previous))),
        "not restored from the previous checkpoint:\n{err}"
    );
    assert!(accounting(&second.stderr)["read"] < 1_000_000, "{err}");
    assert_same_files(&out, &want, "after a corrupt checkpoint");

    // Finished: started again, it restores the last checkpoint and writes nothing new.
    let third = run().output().unwrap();
    assert!(third.status.success());
    assert_same_files(&out, &want, "started again after the end");

    // Another layout cannot restore this job's state: said plainly, nothing written.
    let other = run_w("2").output().unwrap();
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success());
    assert!(
        err.contains("taken with 1 workers, this run has 2"),
        "{err}"
    );
    assert_same_files(&out, &want, "after a refused restore");
}
