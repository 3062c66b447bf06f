//! Helpers for multi-process runs: hostfiles, processes whose stderr goes to files, and the
//! check that losing one process stops the others with the lost peer named.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
