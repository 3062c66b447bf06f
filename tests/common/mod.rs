//! Helpers shared by the integration tests: run the real binary, read its JSONL outputs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logflow"));
    c.current_dir(repo());
    c
}

/// A fresh temporary directory under target/test-tmp, removed when the test that made it
/// passes (the whole suite writes gigabytes of inputs, checkpoints and outputs; CI machines
/// have a shared, sometimes nearly full disk) and kept when it fails, for its files.
pub fn tmpdir(name: &str) -> TmpDir {
    let dir = repo().join("target").join("test-tmp").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TmpDir {
        root: dir.clone(),
        path: dir,
    }
}

/// See [`tmpdir`]; derefs to its path.
#[derive(Debug)]
pub struct TmpDir {
    /// What goes when the test passes.
    root: PathBuf,
    path: PathBuf,
}

impl TmpDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The guard of the whole directory, dereferencing to `rel` inside it: for a helper that
    /// returns one file or directory of what it wrote there.
    pub fn into_sub(mut self, rel: &str) -> TmpDir {
        let path = self.path.join(rel);
        // `self` is left with nothing to remove.
        let root = std::mem::take(&mut self.root);
        TmpDir { root, path }
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TmpDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !self.root.as_os_str().is_empty() {
            oracle::remove_unless_failed(&self.root);
        }
    }
}

/// Runs `logflow` with arguments; panics with its stderr when it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("run logflow");
    assert!(
        out.status.success(),
        "logflow {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `logflow run SPEC --input INPUT --output-dir OUT -w WORKERS`; panics with its stderr when
/// it fails.
pub fn run_file(spec: &str, input: &Path, out: &Path, workers: &str) -> Output {
    run_ok(&[
        "run",
        spec,
        "--input",
        input.to_str().expect("UTF-8 path"),
        "--output-dir",
        out.to_str().expect("UTF-8 path"),
        "-w",
        workers,
    ])
}

/// The message of a diagnostic line in the text form `TIME LEVEL target: message`
/// (docs/operations.md); a line of another form (a panic message, a line still being written)
/// as it is.
pub fn message(line: &str) -> &str {
    let parts = line.split_once(' ').and_then(|(time, rest)| {
        let (level, rest) = rest.trim_start().split_once(' ')?;
        let (target, message) = rest.split_once(": ")?;
        let ok = time.ends_with('Z')
            && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
            && target.starts_with("logflow");
        ok.then_some(message)
    });
    parts.unwrap_or(line)
}

/// The messages of the diagnostic lines of a run's stderr, in order.
pub fn messages(stderr: &str) -> impl DoubleEndedIterator<Item = &str> {
    stderr.lines().map(message)
}

/// Parses `accounting: read=.. parsed=.. dead_letter=.. on_time=.. late=..` from stderr.
pub fn accounting(stderr: &[u8]) -> BTreeMap<String, u64> {
    let text = String::from_utf8_lossy(stderr);
    let line = messages(&text)
        .rev()
        .find(|l| l.starts_with("accounting:"))
        .unwrap_or_else(|| panic!("no accounting line in:\n{text}"));
    line["accounting:".len()..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

/// Reads a JSONL file into JSON values.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON {l}: {e}", path.display()))
        })
        .collect()
}

/// Epoch milliseconds as logflow writes times: RFC 3339 UTC, milliseconds only when not zero.
pub fn rfc3339(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("a representable time");
    let fmt = if ms % 1000 == 0 {
        chrono::SecondsFormat::Secs
    } else {
        chrono::SecondsFormat::Millis
    };
    t.to_rfc3339_opts(fmt, true)
}

/// Window starts of `ts` for windows of `size` sliding by `slide` (aligned to the epoch).
pub fn starts(ts: i64, size: i64, slide: i64) -> Vec<i64> {
    let last = ts - ts.rem_euclid(slide);
    (0..)
        .map(|k| last - k * slide)
        .take_while(|s| s + size > ts)
        .collect()
}

/// Records that the running test cannot check what it claims because `reason` (a prerequisite
/// is missing): prints it and appends it to a marker under target/test-skips/, which
/// `scripts/test` lists in its summary and CI fails on. A test that skips calls this, then
/// returns: it never passes silently.
pub fn skip(reason: &str) {
    skip_into(&repo().join("target").join("test-skips"), reason);
}

/// [`skip`] with the marker directory given (its test uses a temporary one).
pub fn skip_into(dir: &Path, reason: &str) {
    use std::io::Write;
    // libtest names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_string();
    // The binary's file name without cargo's hash: `bad_input-0123abcd` -> `bad_input`.
    let exe = std::env::current_exe().expect("the test binary's path");
    let stem = exe.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_default();
    let binary = stem.rsplit_once('-').map_or(stem.as_str(), |(b, _)| b);
    let reason = reason.replace(['\n', '\t'], " ");
    eprintln!("SKIPPED {binary} {test}: {reason}");
    std::fs::create_dir_all(dir).expect("create the skip marker directory");
    let mut marker = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(binary))
        .expect("open the skip marker");
    // One write per line: tests of one binary skip concurrently.
    marker
        .write_all(format!("{test}\t{reason}\n").as_bytes())
        .expect("write the skip marker");
}

/// Runs a service script of the project (`scripts/kafka`, `scripts/prometheus`) with its state
/// directory in `state_var`; returns the last line of its stdout (what `up` and `address`
/// print).
pub fn service_script(script: &str, state_var: &str, state: &Path, args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts").join(script))
        .args(args)
        .env(state_var, state)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(out.status.success(), "scripts/{script} {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub mod cluster;
pub mod kafka;
pub mod oracle;
pub mod prometheus;
pub mod recovery;
pub mod rows;
pub mod spark;
pub mod tmux;

/// `GET path` from a logflow metrics listener at `addr`: (status code, body); `None` while
/// nothing listens there.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The sum of every sample of metric `name` (any labels) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
