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

/// The pids of the processes of the launcher's attempt `attempt` (0-based), once it has
/// named all `n` of them.
fn attempt_pids(err: &str, attempt: usize, n: usize) -> Option<Vec<String>> {
    let mine: Vec<String> = err
        .lines()
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
/// the job ends first (a kill that came after its end leaves no next attempt). Returns how many
/// kills were sent.
pub fn kill_attempts(
    launch: &mut Proc,
    n: usize,
    kills: usize,
    seed: u64,
    delay: impl Fn(usize, &mut Rng) -> u64,
) -> usize {
    let mut rng = Rng(seed);
    let mut sent = 0;
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
                return sent;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "attempt {attempt} did not start:\n{}",
                launch.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(delay(attempt, &mut rng)));
        let victim = &pids[(rng.next() % n as u64) as usize];
        let _ = Command::new("kill").args(["-KILL", victim]).status();
        sent += 1;
    }
    sent
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
    let started = Instant::now();
    while complete(ckpt).len() < 2 {
        assert!(
            first.child.try_wait().unwrap().is_none(),
            "the job ended before two checkpoints: make the input larger\n{}",
            first.stderr_text()
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
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
