//! Helpers for multi-process runs: hostfiles, processes whose stderr goes to files, and the
//! check that losing one process stops the others with the lost peer named.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Writes `addresses` as a hostfile.
pub fn hostfile(dir: &Path, addresses: &[String]) -> PathBuf {
    let path = dir.join("hosts");
    std::fs::write(&path, addresses.join("\n") + "\n").unwrap();
    path
}

/// `n` free ports on 127.0.0.1.
pub fn local_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// dataflows/log-analysis.toml reading the line server at 127.0.0.1:`port` (the `socket`
/// source: its input ends only when the server closes), written into `dir`.
pub fn socket_spec(dir: &Path, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(super::repo().join("dataflows/log-analysis.toml")).unwrap();
    let kafka = "[source]\nkind = \"kafka\"\ntopic = \"logs\"\n";
    assert!(text.contains(kafka), "the spec's source changed");
    let spec = dir.join(format!("socket-{port}.toml"));
    let socket = format!("[source]\nkind = \"socket\"\nport = {port}\n");
    std::fs::write(&spec, text.replace(kafka, &socket)).unwrap();
    spec
}

/// A started process whose stderr is written to a file.
pub struct Proc {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stderr to `<dir>/<name>.err` and the given stdin.
    pub fn spawn(mut cmd: Command, dir: &Path, name: &str, stdin: Stdio) -> Proc {
        let stderr = dir.join(format!("{name}.err"));
        let file = std::fs::File::create(&stderr).unwrap();
        let child = cmd
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Proc { child, stderr }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether one of its stderr messages (see [`super::messages`]) contains `text`.
    pub fn says(&self, text: &str) -> bool {
        super::messages(&self.stderr_text()).any(|m| m.contains(text))
    }

    /// Waits until stderr contains `text`; panics after `limit` or when the process exits.
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.stderr_text().contains(text) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({s}) before saying {text:?}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                started.elapsed() < limit,
                "no {text:?} within {limit:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit; `None` if still running after `limit` (then it is killed).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills `procs[lost]` (all are running one job) and checks that every other process exits
/// within `limit` with status 1, naming the lost process and its address.
pub fn assert_loss_is_named(procs: &mut [Proc], lost: usize, address: &str, limit: Duration) {
    procs[lost].child.kill().unwrap();
    let _ = procs[lost].child.wait();
    let started = Instant::now();
    let named = format!("lost process {lost} ({address})");
    for (i, p) in procs.iter_mut().enumerate() {
        if i == lost {
            continue;
        }
        let status = p.wait(limit.saturating_sub(started.elapsed()));
        let err = p.stderr_text();
        let status = status.unwrap_or_else(|| {
            panic!("process {i} still ran {limit:?} after process {lost} was killed:\n{err}")
        });
        assert_eq!(status.code(), Some(1), "process {i}: {status}\n{err}");
        assert!(
            err.contains(&named),
            "process {i} does not say {named:?}:\n{err}"
        );
    }
}

/// The control endpoint's port: `LOGFLOW_IT_CONTROL_PORT` (so several checkouts can test at
/// once), plus `offset` for each test of this file (they run in parallel).
pub fn control(offset: u16) -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + offset)
}

/// `logflow cluster start -n PROCESSES -w 1`, once its control endpoint answers.
pub fn start_cluster(addr: &str, dir: &Path, name: &str, processes: usize) -> Proc {
    let mut c = super::bin();
    let n = processes.to_string();
    c.args(["cluster", "start", "-n", &n, "-w", "1", "--control", addr]);
    let mut cluster = Proc::spawn(c, dir, name, Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    cluster
}

/// `logflow <args> --cluster ADDR`.
pub fn cli(addr: &str, args: &[&str]) -> Output {
    super::bin()
        .args(args)
        .args(["--cluster", addr])
        .output()
        .unwrap()
}

pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `logflow jobs --json`, by id.
pub fn jobs(addr: &str) -> BTreeMap<u64, Value> {
    ok(cli(addr, &["jobs", "--json"]), "jobs")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), v)
        })
        .collect()
}

/// Polls `jobs` until `done` holds for job `id`; returns its last status.
pub fn wait_job(addr: &str, id: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let all = jobs(addr);
        let j = all[&id].clone();
        if done(&j) {
            return j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "job {id} never {what}: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
