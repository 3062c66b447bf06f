//! Helpers of the recovery tests: killing a launched job's processes at random moments, and
//! damaging a checkpoint while a job is down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::Proc;

/// A small deterministic generator (xorshift) for the kill moments: reproducible failures.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The kill -9 check of a job's state: `spec` (spec text) runs once over `input` with one
/// worker into `<dir>/want`, and with checkpoints every 200 ms in `<dir>/ckpt` through
/// [`launch_killed_and_restored`] into `<dir>/out`. Returns (out, want, kills, restores) for
/// the caller to compare with its own reader.
pub fn killed_and_whole_runs(
    dir: &Path,
    spec: &str,
    input: &Path,
    seed: u64,
) -> (PathBuf, PathBuf, usize, usize) {
    let (plain_spec, job) = (dir.join("plain.toml"), dir.join("job.toml"));
    std::fs::write(&plain_spec, spec).unwrap();
    let checkpointed = format!(
        "{spec}\n[checkpoint]\ndir = \"{}\"\ninterval = \"200ms\"\nkeep = 3\n",
        dir.join("ckpt").display()
    );
    std::fs::write(&job, checkpointed).unwrap();
    let want = dir.join("want");
    super::run_file(plain_spec.to_str().unwrap(), input, &want, "1");
    let out = dir.join("out");
    let (kills, restored) = launch_killed_and_restored(&job, input, &out, dir, seed);
    (out, want, kills, restored)
}

/// Runs `job` (a spec with checkpoints) over `input` as `launch --processes 2 --restart 4`
/// into `out`, killing a process with SIGKILL 0.2-0.5 s into each of the first 4 attempts
/// (after a checkpoint, taken every 200 ms, has been written); asserts that the launch
/// succeeds after at least 2 kills and 2 restores, and returns (kills, restores).
pub fn launch_killed_and_restored(
    job: &Path,
    input: &Path,
    out: &Path,
    dir: &Path,
    seed: u64,
) -> (usize, usize) {
    let mut cmd = super::bin();
    cmd.args(["launch", &job.to_string_lossy(), "--processes", "2"])
        .args(["--input", &input.to_string_lossy()])
        .args(["--output-dir", &out.to_string_lossy()])
        .args(["--restart", "4", "--backoff", "200ms"]);
    let mut launch = Proc::spawn(cmd, dir, "launch", Stdio::null());
    let kills = kill_attempts(&mut launch, 2, 4, seed, |_, rng| 200 + rng.next() % 300);
    let status = launch.wait(Duration::from_secs(300));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    assert!(kills >= 2, "only {kills} kills hit a running job:\n{err}");
    let restored = err.matches("restoring checkpoint").count();
    assert!(restored >= 2, "{restored} restores:\n{err}");
    (kills, restored)
}

/// The pids of the processes of the launcher's attempt `attempt` (0-based), once it has
/// named all `n` of them.
fn attempt_pids(err: &str, attempt: usize, n: usize) -> Option<Vec<String>> {
    let mine: Vec<String> = super::messages(err)
        .filter_map(|l| l.strip_prefix("logflow launch: process "))
        .filter_map(|l| l.split_once(" is pid "))
        .map(|(_, pid)| pid.trim().to_string())
        .skip(attempt * n)
        .take(n)
        .collect();
    (mine.len() == n).then_some(mine)
}

/// Kills a random one of the `n` processes of each of the launcher's first `kills` attempts
/// with SIGKILL, `delay(attempt, rng)` ms after all of them run the dataflow. Stops early when
/// the job ends first. Returns how many kills landed: sent to a live pid (`kill` succeeded)
/// and reported by the launcher as that process's end (`was stopped by SIGKILL`). A kill that
/// came after the process had ended (its attempt over, or it finished and awaits reaping)
/// does not count.
pub fn kill_attempts(
    launch: &mut Proc,
    n: usize,
    kills: usize,
    seed: u64,
    delay: impl Fn(usize, &mut Rng) -> u64,
) -> usize {
    let mut rng = Rng(seed);
    let mut landed = 0;
    for attempt in 0..kills {
        let started = Instant::now();
        let pids = loop {
            let err = launch.stderr_text();
            if let Some(p) = attempt_pids(&err, attempt, n) {
                if err.matches("runs workers").count() >= n * (attempt + 1) {
                    break p;
                }
            }
            if launch.child.try_wait().unwrap().is_some() {
                return landed;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "attempt {attempt} did not start:\n{}",
                launch.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(delay(attempt, &mut rng)));
        let victim = (rng.next() % n as u64) as usize;
        let sent = Command::new("kill")
            .args(["-KILL", &pids[victim]])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !sent.success() {
            // The pid is gone: this attempt had ended.
            continue;
        }
        // How the launcher saw the victim end in this attempt: its (attempt + 1)-th status
        // line. Every process of an attempt gets one before the next attempt starts.
        let started = Instant::now();
        let end = loop {
            // (Exited first, read after: then the stderr read is complete.)
            let exited = launch.child.try_wait().unwrap().is_some();
            let err = launch.stderr_text();
            if let Some(line) = status_lines(&err, victim).nth(attempt) {
                break line.to_string();
            }
            assert!(
                !exited,
                "the launcher exited without saying how process {victim} ended:\n{err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "process {victim} of attempt {attempt} did not end after SIGKILL:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if end.contains("was stopped by SIGKILL") {
            landed += 1;
        }
    }
    landed
}

/// The launcher's lines on how process `i` ended (`process i was stopped by SIGKILL`,
/// `process i finished`, ...), one per attempt, oldest first.
fn status_lines(err: &str, i: usize) -> impl Iterator<Item = &str> {
    let prefix = format!("logflow launch: process {i} ");
    super::messages(err)
        .filter(move |l| l.starts_with(&prefix) && !l[prefix.len()..].starts_with("is pid "))
}

/// Waits (up to `limit`, generous) until the launcher's stderr holds `text` `count` times;
/// panics if it exits first.
pub fn wait_for_count(launch: &mut Proc, text: &str, count: usize, limit: Duration) {
    let started = Instant::now();
    loop {
        let exited = launch.child.try_wait().unwrap();
        let err = launch.stderr_text();
        if err.matches(text).count() >= count {
            return;
        }
        assert!(
            exited.is_none(),
            "ended ({exited:?}) before saying {text:?} {count} times:\n{err}"
        );
        assert!(
            started.elapsed() < limit,
            "no {count} times {text:?} within {limit:?}:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids of the `n` processes of the launcher's latest attempt.
pub fn latest_pids(err: &str, n: usize) -> Vec<String> {
    let attempts = super::messages(err)
        .filter(|l| l.starts_with("logflow launch: process ") && l.contains(" is pid "))
        .count()
        / n;
    assert!(attempts > 0, "no process started:\n{err}");
    attempt_pids(err, attempts - 1, n).unwrap()
}

/// Sends `sig` (`-STOP`, `-CONT`) to each of `pids`; asserts it reached every one (a pid that
/// is gone means the process ended before the fault it was frozen for).
pub fn signal_all(pids: &[String], sig: &str) {
    for pid in pids {
        let sent = Command::new("kill").args([sig, pid]).status().unwrap();
        assert!(sent.success(), "kill {sig} {pid}: the process had ended");
    }
}

/// Lines in which the job reports that it could not reach the broker: its Kafka producers'
/// client errors (a broker down, a refused connection), or, for an attempt started during the
/// outage, its output topics' metadata request failing to connect. The job's own evidence that
/// it met a broker outage.
pub fn broker_errors(err: &str) -> usize {
    err.lines()
        .filter(|l| {
            l.contains("logflow: kafka producer of worker")
                || (l.contains("logflow: output kafka metadata for topic")
                    && l.contains("BrokerTransportFailure"))
        })
        .count()
}

/// Waits (up to `limit`, generous) until the job reports more than `before` Kafka client
/// errors, asserting it is still running then: it met the outage alive.
pub fn wait_for_broker_errors(launch: &mut Proc, before: usize, limit: Duration, what: &str) {
    let started = Instant::now();
    loop {
        let exited = launch.child.try_wait().unwrap();
        let err = launch.stderr_text();
        assert!(
            exited.is_none(),
            "{what}: the job ended ({exited:?}) before it saw the broker outage:\n{err}"
        );
        if broker_errors(&err) > before {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: no Kafka client error within {limit:?} of the broker stopping:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Complete checkpoints (with a manifest) in `ckpt`, oldest first.
pub fn complete(ckpt: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(ckpt)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("MANIFEST").exists());
    dirs.sort();
    dirs
}

/// Waits until `n` checkpoints in `ckpt` are complete while `job` runs (it must not end first).
pub fn wait_for_checkpoints(job: &mut Proc, ckpt: &Path, n: usize) {
    let started = Instant::now();
    while complete(ckpt).len() < n {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "the job ended before {n} checkpoints: make the input larger\n{}",
            job.stderr_text()
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The epoch of checkpoint directory `d` (`epoch-000…42` -> `42`).
fn epoch_of(d: &Path) -> String {
    let name = d.file_name().unwrap().to_string_lossy().into_owned();
    name.trim_start_matches("epoch-")
        .trim_start_matches('0')
        .to_string()
}

/// Runs `job` until two checkpoints in `ckpt` are complete, kills it (SIGKILL), and flips one
/// byte of the newest one's `part`. Returns the epochs of the damaged and the previous
/// checkpoint.
pub fn kill_and_damage(job: Command, dir: &Path, ckpt: &Path, part: &str) -> (String, String) {
    let mut first = Proc::spawn(job, dir, "damaged", Stdio::null());
    wait_for_checkpoints(&mut first, ckpt, 2);
    let _ = first.child.kill();
    let _ = first.child.wait();
    let good = complete(ckpt);
    let (newest, previous) = (&good[good.len() - 1], &good[good.len() - 2]);
    let part = newest.join(part);
    let mut bytes = std::fs::read(&part).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&part, bytes).unwrap();
    (epoch_of(newest), epoch_of(previous))
}

/// The stderr of a restarted run names the damaged checkpoint and restores the previous one.
pub fn assert_fell_back(err: &str, damaged: &str, previous: &str) {
    assert!(
        err.contains(&format!("checkpoint {damaged} skipped")) && err.contains("checksum mismatch"),
        "the damaged checkpoint was not named:\n{err}"
    );
    assert!(
        err.contains(&format!("restoring checkpoint {previous} ")),
        "not restored from the previous checkpoint:\n{err}"
    );
}

/// The epoch of the newest complete checkpoint in `ckpt` (0: none).
pub fn newest(ckpt: &Path) -> u64 {
    complete(ckpt).last().map_or(0, |d| {
        let name = d.file_name().unwrap().to_str().unwrap();
        name["epoch-".len()..].parse().unwrap()
    })
}

/// Waits (at most `limit`) until `n` checkpoints newer than epoch `after` are complete while
/// `job` runs.
pub fn wait_for_new_checkpoints(
    job: &mut Proc,
    ckpt: &Path,
    after: u64,
    n: usize,
    name: &str,
    limit: Duration,
) {
    let started = Instant::now();
    let mut seen = vec![after];
    while seen.len() <= n {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "{name}: ended before {n} checkpoints (make the input larger):\n{}",
            job.stderr_text()
        );
        assert!(
            started.elapsed() < limit,
            "{name}: no checkpoints:\n{}",
            job.stderr_text()
        );
        let e = newest(ckpt);
        if e > *seen.last().unwrap() {
            seen.push(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `job` until `n` checkpoints after epoch `after` are complete, then stops it: with
/// SIGTERM (a graceful stop: one more, final, checkpoint; exit 0), or with SIGKILL to its
/// `processes` (a crash: the newest complete checkpoint is where it goes on).
pub fn stop_after_checkpoints(
    job: Command,
    dir: &Path,
    name: &str,
    ckpt: &Path,
    after: u64,
    n: usize,
    kill: Option<usize>,
) {
    let mut p = Proc::spawn(job, dir, name, Stdio::null());
    wait_for_new_checkpoints(&mut p, ckpt, after, n, name, Duration::from_secs(120));
    let Some(processes) = kill else {
        signal_all(&[p.child.id().to_string()], "-TERM");
        let status = p.wait(Duration::from_secs(60));
        let err = p.stderr_text();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{name}:\n{err}");
        return;
    };
    signal_all(&latest_pids(&p.stderr_text(), processes), "-KILL");
    let status = p.wait(Duration::from_secs(60));
    assert!(status.is_some_and(|s| !s.success()), "{name}: {status:?}");
}

/// The newest checkpoint's listing line and its file input position.
pub fn latest(ckpt: &Path, logs: &Path) -> (String, u64) {
    let out = super::run_ok(&["checkpoints", ckpt.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.contains("[latest"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no latest:\n{text}"))
        .to_string();
    let source = format!("  file {}: position ", logs.display());
    let at = lines
        .take_while(|l| l.starts_with("  "))
        .find_map(|l| l.strip_prefix(&source))
        .unwrap_or_else(|| panic!("no position of {}:\n{text}", logs.display()));
    let at: u64 = at.split(' ').next().unwrap().parse().unwrap();
    (head, at)
}
