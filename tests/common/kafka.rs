//! A real Kafka broker for tests (`scripts/kafka`), an independent client to read and write
//! topics (`tests/kafka_client.py`), and helpers to run jobs against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rows::{assert_same_rows, dir_results, same_row};
use super::{bin, read_jsonl, repo};

/// The test broker's port: `LOGFLOW_IT_KAFKA_PORT` (so several checkouts can test at once).
pub fn port() -> String {
    std::env::var("LOGFLOW_IT_KAFKA_PORT").unwrap_or_else(|_| "19392".to_string())
}

fn kafka_script(state: &Path, args: &[&str]) -> String {
    super::service_script("kafka", "KAFKA_STATE_DIR", state, args)
}

/// The broker, stopped (and its data wiped) when dropped.
pub struct Broker {
    pub address: String,
    python: PathBuf,
    /// `KAFKA_STATE_DIR` of this broker (each test binary has its own).
    state: PathBuf,
    host: String,
}

impl Broker {
    /// A broker on 127.0.0.1 with its state in `target/<state>`.
    pub fn start(state: &str) -> Broker {
        Broker::start_on(state, "127.0.0.1")
    }

    /// A broker bound to a local address `host`, with its state in `target/<state>`.
    pub fn start_on(state: &str, host: &str) -> Broker {
        let state = repo().join("target").join(state);
        let _ = kafka_script(&state, &["down", "--wipe"]);
        let address = kafka_script(&state, &["up", "--port", &port(), "--host", host]);
        assert!(address.starts_with(&format!("{host}:")), "{address}");
        let py = Command::new(repo().join("scripts/pyenv"))
            .output()
            .expect("scripts/pyenv");
        assert!(
            py.status.success(),
            "scripts/pyenv: {}",
            String::from_utf8_lossy(&py.stderr)
        );
        let python = PathBuf::from(
            String::from_utf8_lossy(&py.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .trim(),
        );
        Broker {
            address,
            python,
            state,
            host: host.to_string(),
        }
    }

    /// Stops the broker, keeping its data.
    pub fn stop(&self) {
        kafka_script(&self.state, &["down"]);
    }

    /// Starts it again on the same address.
    pub fn restart(&self) {
        kafka_script(
            &self.state,
            &["up", "--port", &port(), "--host", &self.host],
        );
    }

    pub fn topic(&self, name: &str, partitions: u32) {
        self.topics(&[(name.to_string(), partitions)]);
    }

    /// Creates topics in one admin request (a JVM start per topic would cost seconds each).
    pub fn topics(&self, topics: &[(String, u32)]) {
        let mut args = vec!["create".to_string(), self.address.clone()];
        args.extend(topics.iter().map(|(n, p)| format!("{n}:{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.client(&args);
    }

    pub fn client(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(repo().join("tests/kafka_client.py"))
            .args(args)
            .output()
            .expect("run kafka_client.py");
        assert!(
            out.status.success(),
            "kafka_client.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn produce(&self, topic: &str, file: &Path) -> u64 {
        self.client(&["produce", &self.address, topic, file.to_str().unwrap()])
            .parse()
            .unwrap()
    }

    pub fn produce_to(&self, topic: &str, file: &Path, partition: u32) -> u64 {
        self.client(&[
            "produce",
            &self.address,
            topic,
            file.to_str().unwrap(),
            &partition.to_string(),
        ])
        .parse()
        .unwrap()
    }

    /// `logflow run SPEC --brokers <this broker> --stop-at-end EXTRA`, to its end.
    pub fn run_to_end(&self, spec: &Path, extra: &[&str]) -> std::process::Output {
        bin()
            .args(["run", spec.to_str().unwrap(), "--brokers", &self.address])
            .arg("--stop-at-end")
            .args(extra)
            .output()
            .unwrap()
    }

    /// Partition -> (end offset, offset `group` committed or -1), read by the independent
    /// Python client.
    pub fn group_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
        self.client(&["offsets", &self.address, group, topic])
            .lines()
            .map(|l| {
                let v: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                (v[0] as i32, (v[1], v[2]))
            })
            .collect()
    }

    pub fn count(&self, topic: &str) -> u64 {
        self.client(&["count", &self.address, topic])
            .parse()
            .unwrap()
    }

    /// Every record of a topic: (key, value).
    pub fn dump(&self, topic: &str, dir: &Path) -> Vec<(Option<String>, Value)> {
        let out = dir.join(format!("{topic}.dump.jsonl"));
        self.client(&["dump", &self.address, topic, out.to_str().unwrap()]);
        read_jsonl(&out)
            .into_iter()
            .map(|r| {
                // A tombstone (null value) reads as Value::Null.
                let value: Value = r["value"]
                    .as_str()
                    .map_or(Value::Null, |v| serde_json::from_str(v).unwrap());
                (r["key"].as_str().map(String::from), value)
            })
            .collect()
    }
}

/// The tests of one test binary that start a broker on the one test port: one at a time.
static BROKER_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A broker with its state in `target/<state>`, started once the other tests of this binary
/// that hold one are done with the port (keep the guard as long as the broker).
pub fn serial_broker(state: &str) -> (std::sync::MutexGuard<'static, ()>, Broker) {
    let guard = BROKER_PORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (guard, Broker::start(state))
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/kafka"))
            .args(["down", "--wipe"])
            .env("KAFKA_STATE_DIR", &self.state)
            .status();
    }
}

pub const LOG_ANALYSES: [&str; 11] = [
    "response_time",
    "error_rate",
    "ip_patterns",
    "ddos",
    "sla",
    "user_activity",
    "service_popularity",
    "system_health",
    "response_time_anomalies",
    "error_rate_spikes",
    "suspicious_ips",
];
pub const USER_ANALYSES: [&str; 4] = [
    "user_activity_sliding",
    "action_metrics",
    "user_anomalies",
    "user_sessions",
];

/// The group key field of each log analysis (the part of the Kafka key after the window).
pub fn log_keys() -> BTreeMap<&'static str, &'static str> {
    [
        ("response_time", "service"),
        ("error_rate", "service"),
        ("ip_patterns", "ip_address"),
        ("ddos", "ip_address"),
        ("sla", "service"),
        ("user_activity", "user_id"),
        ("service_popularity", "service"),
        ("response_time_anomalies", "service"),
        ("error_rate_spikes", "service"),
        ("suspicious_ips", "ip_address"),
    ]
    .into_iter()
    .collect()
}

/// Creates a job's output topics: one per analysis (named `<prefix>.<analysis>` with a
/// prefix), plus its dead-letter, late and alerts topics.
pub fn create_outputs(b: &Broker, job: &str, prefix: Option<&str>, analyses: &[&str]) {
    let name = |a: &str| prefix.map_or_else(|| a.to_string(), |p| format!("{p}.{a}"));
    let mut t: Vec<(String, u32)> = analyses.iter().map(|a| (name(a), 2)).collect();
    t.push((format!("{job}.dead-letter"), 1));
    t.push((format!("{job}.late"), 1));
    t.push((format!("{job}.alerts"), 1));
    b.topics(&t);
}

pub fn gen(kind: &str, events: &str, extra: &[&str], path: &Path) {
    let out = bin()
        .args([
            "gen",
            "--kind",
            kind,
            "--events",
            events,
            "--output",
            path.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// File-mode results: analysis -> sorted JSON rows.
pub fn file_results(
    spec: &str,
    format: &str,
    input: &Path,
    dir: &Path,
) -> BTreeMap<String, Vec<String>> {
    let out = bin()
        .args([
            "run",
            spec,
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
            "--output-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir_results(dir)
}

pub fn run_job(b: &Broker, spec: &str, topic: &str, workers: &str, extra: &[&str]) -> Child {
    bin()
        .args([
            "run",
            spec,
            "--brokers",
            &b.address,
            "--topic",
            topic,
            "-w",
            workers,
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn finish(child: Child, limit: Duration) -> Vec<u8> {
    let started = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "job failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return out.stderr;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "job did not finish in {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of `dataflows/log-analysis.toml` as job `job`, writing analysis `a` to topic
/// `<job>.<a>`, with the given idle timeout.
pub fn variant_spec(job: &str, idle_timeout: &str, dir: &Path) -> PathBuf {
    variant_of("dataflows/log-analysis.toml", job, idle_timeout, dir)
}

/// A copy of spec `base` as job `job`, writing analysis `a` to topic `<job>.<a>`, with the
/// given idle timeout.
pub fn variant_of(base: &str, job: &str, idle_timeout: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(base)).unwrap();
    let mut out = String::new();
    let mut in_analysis = false;
    for line in text.lines() {
        if line.trim() == "[[analysis]]" {
            in_analysis = true;
        }
        if line.starts_with("name = ") && !in_analysis {
            out.push_str(&format!("name = \"{job}\"\n"));
            continue;
        }
        if line.starts_with("idle_timeout = ") {
            out.push_str(&format!("idle_timeout = \"{idle_timeout}\"\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if in_analysis && line.starts_with("name = ") {
            let name = line.trim_start_matches("name = ").trim_matches('"');
            out.push_str(&format!("topic = \"{job}.{name}\"\n"));
        }
    }
    let path = dir.join(format!("{job}.toml"));
    std::fs::write(&path, out).unwrap();
    path
}

/// A copy of the log-analysis spec as job `job` with `delivery = "exactly_once"` and
/// checkpoints every 300 ms in `dir/<job>.ckpt`, its output topics and its commits topic
/// created.
pub fn exactly_once_job(b: &Broker, job: &str, dir: &Path) -> PathBuf {
    let spec = variant_spec(job, "30s", dir);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("\n[sink]\ndelivery = \"exactly_once\"\n");
    text.push_str(&format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"300ms\"\n",
        dir.join(format!("{job}.ckpt")).display()
    ));
    std::fs::write(&spec, text).unwrap();
    create_outputs(b, job, Some(job), &LOG_ANALYSES);
    b.topic(&format!("{job}.commits"), 1);
    spec
}

/// Every analysis topic (`<prefix>.<analysis>` with a prefix) equals the file-mode rows (see [`same_row`]); keys are
/// `window_start|keys` (`session_start|keys` for sessions).
pub fn assert_topics_equal_files(
    b: &Broker,
    prefix: Option<&str>,
    analyses: &[&str],
    key_fields: &BTreeMap<&str, &str>,
    expected: &BTreeMap<String, Vec<String>>,
    dir: &Path,
    what: &str,
) {
    for a in analyses {
        let topic = prefix.map_or_else(|| a.to_string(), |p| format!("{p}.{a}"));
        let records = b.dump(&topic, dir);
        let rows: Vec<Value> = records.iter().map(|(_, v)| v.clone()).collect();
        assert_same_rows(&rows, &expected[*a], &format!("{what}: {a}"));
        for (key, v) in &records {
            let start = v.get("window_start").or_else(|| v.get("session_start"));
            let mut k = start.and_then(Value::as_str).unwrap().to_string();
            if let Some(f) = key_fields.get(a) {
                k.push('|');
                match &v[*f] {
                    Value::String(s) => k.push_str(s),
                    Value::Null => k.push_str("null"),
                    other => k.push_str(&other.to_string()),
                }
            }
            assert_eq!(key.as_deref(), Some(k.as_str()), "{what}: {a}: key of {v}");
        }
    }
}

/// Dead letters, late events and alerts of job `job` against those of `expected_job` in `expected`:
/// compared without their positions (file line vs offset).
pub fn assert_side_outputs(
    b: &Broker,
    job: &str,
    expected_job: &str,
    expected: &BTreeMap<String, Vec<String>>,
    dir: &Path,
    what: &str,
) {
    // Alerts too, when the job has them (their records carry no position).
    let alerts = expected.contains_key(&format!("{expected_job}.alerts"));
    let suffixes: &[&str] = if alerts {
        &["dead-letter", "late", "alerts"]
    } else {
        &["dead-letter", "late"]
    };
    for suffix in suffixes {
        let topic = format!("{job}.{suffix}");
        // Positions differ (file line vs partition offset), and so do the watermarks late events
        // missed: each partition has its own event-time progress. What was late, and for which
        // analyses, must not differ.
        let strip = |mut v: Value| {
            let o = v.as_object_mut().unwrap();
            o.remove("position");
            o.remove("watermark");
            if let Some(Value::Array(missed)) = o.get_mut("missed") {
                for m in missed {
                    m.as_object_mut().unwrap().remove("watermark");
                }
            }
            v.to_string()
        };
        let mut got: Vec<String> = b
            .dump(&topic, dir)
            .into_iter()
            .map(|(_, v)| strip(v))
            .collect();
        let mut want: Vec<String> = expected[&format!("{expected_job}.{suffix}")]
            .iter()
            .map(|s| strip(serde_json::from_str(s).unwrap()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "{what}: {topic}: count");
        assert!(
            got == want,
            "{what}: {topic}: records differ from file mode"
        );
    }
}

/// Rows of `need` that `have` lacks, as a multiset: each row of `have` matches at most one.
fn missing_rows<'a>(need: &'a [Value], have: &[Value]) -> Vec<&'a Value> {
    let mut left: Vec<&Value> = have.iter().collect();
    need.iter()
        .filter(|n| match left.iter().position(|h| same_row(n, h)) {
            Some(i) => {
                left.swap_remove(i);
                false
            }
            None => true,
        })
        .collect()
}

fn parse_rows(rows: &[String]) -> Vec<Value> {
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// Each of `got` equals a row of `want`, a different one each (a partial run's results: each
/// is right, none is twice).
pub fn assert_rows_among(got: &[Value], want: &[String], what: &str) {
    let extra = missing_rows(got, &parse_rows(want));
    assert!(
        extra.is_empty(),
        "{what}: {} of {} rows are not reference rows, e.g. {}",
        extra.len(),
        got.len(),
        extra[0]
    );
}

/// Every row of `need` is among `got`.
pub fn assert_rows_present(got: &[Value], need: &[String], what: &str) {
    let need = parse_rows(need);
    let lacking = missing_rows(&need, got);
    assert!(
        lacking.is_empty(),
        "{what}: {} of {} required rows missing, e.g. {}",
        lacking.len(),
        need.len(),
        lacking[0]
    );
}
