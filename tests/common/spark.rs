//! Helpers of the Spark streaming tutorial's tests (`tests/spark_streaming.rs`): crafted log
//! lines, copies of the example specs, a job run in the background and watched through its
//! outputs and stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{bin, repo};

pub const T0: i64 = 1_795_514_400_000; // 2026-11-24T10:00:00Z

/// A crafted log event: (timestamp ms, service, status_code, ip_address).
pub type Log = (i64, &'static str, i64, &'static str);

/// One JSON log line.
pub fn log(ts: i64, service: &str, status: i64, ip: &str) -> String {
    json!({"timestamp": ts, "level": if status >= 500 { "ERROR" } else { "INFO" },
           "service": service, "message": "GET /", "ip_address": ip, "user_id": "u1",
           "request_id": "r", "response_time": 0.25, "status_code": status})
    .to_string()
}

/// A copy of an example spec in `dir`, with `replace` applied to its text (e.g. a test port).
pub fn example_copy(name: &str, dir: &Path, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("dataflows/examples").join(name)).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `logflow run SPEC --output-dir out` in `dir`, in the background.
pub fn spawn_in(dir: &Path, spec: &Path) -> Child {
    bin()
        .current_dir(dir)
        .args(["run", spec.to_str().unwrap(), "--output-dir", "out"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Rows of `file` once one of them passes `until` (the job writes as it goes).
pub fn wait_row(file: &Path, until: impl Fn(&Value) -> bool, limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let rows: Vec<Value> = text
                .lines()
                .filter(|l| l.ends_with('}'))
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if rows.iter().any(&until) {
                return rows;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no such row in {} after {limit:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job's stderr, line by line as it is written (to wait on a diagnostic), and all of it once
/// the job has ended.
pub struct StderrWatch {
    lines: std::sync::mpsc::Receiver<String>,
    all: std::thread::JoinHandle<Vec<u8>>,
}

impl StderrWatch {
    pub fn new(child: &mut Child) -> Self {
        let pipe = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        let all = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = Vec::new();
            let mut reader = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap() > 0 {
                let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
                all.append(&mut line);
            }
            all
        });
        StderrWatch { lines, all }
    }

    /// Waits until the job prints `want` (a whole line); panics after `limit`.
    pub fn wait_line(&self, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(l) => seen.push(l),
                Err(e) => panic!("no `{want}` on stderr after {limit:?} ({e}): {seen:#?}"),
            }
        }
    }

    /// Waits for the job to end (killing it after `limit`); panics unless it succeeded.
    /// Returns its whole stderr.
    pub fn finish(self, mut child: Child, limit: Duration) -> Vec<u8> {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let all = self.all.join().unwrap();
        let text = String::from_utf8_lossy(&all);
        match status {
            Some(s) => assert!(s.success(), "job failed ({s}): {text}"),
            None => panic!("job did not finish in {limit:?}: {text}"),
        }
        all
    }
}

/// Moves a file into a watched folder in one step (written under a hidden name first).
pub fn drop_file(dir: &Path, name: &str, lines: &[String]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn word_counts(lines: &[&str]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for l in lines {
        for w in l.split_whitespace() {
            *m.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Event times of crafted logs: 4 minutes, slightly out of order (never beyond 10 s).
pub fn crafted_logs(n: i64) -> Vec<Log> {
    let services = [
        "api-gateway",
        "auth-service",
        "payment-service",
        "order-service",
    ];
    let ips = ["10.0.0.1", "10.0.0.66", "10.0.0.2", "10.0.0.99", "10.0.0.3"];
    (0..n)
        .map(|i| {
            let ts = T0 + i * 240_000 / n + (i * 7919 % 9) * 1_000 - 4_000;
            let status = [200, 200, 404, 500, 200, 503][(i % 6) as usize];
            (
                ts,
                services[(i * i % 7 % 4) as usize],
                status,
                ips[(i % 5) as usize],
            )
        })
        .collect()
}

pub fn write_logs(path: &Path, logs: &[Log]) {
    let lines: Vec<String> = logs
        .iter()
        .map(|(t, s, c, ip)| log(*t, s, *c, ip))
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}
