//! End to end against a real Apache Kafka broker started by `scripts/kafka` on 127.0.0.1
//! (and stopped by its pid at the end, even on failure). Inputs are produced and outputs read
//! by an independent client (Python confluent-kafka, `tests/kafka_client.py`), and every
//! output topic is compared with the results of the same input in file mode.
//!
//! One test function runs the scenarios in order: they share the broker, and one of them
//! restarts it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{accounting, bin, read_jsonl, repo, tmpdir};
use serde_json::Value;

/// The test broker's port: `LOGFLOW_IT_KAFKA_PORT` (so several checkouts can test at once).
fn port() -> String {
    std::env::var("LOGFLOW_IT_KAFKA_PORT").unwrap_or_else(|_| "19392".to_string())
}

fn kafka_script(args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/kafka"))
        .args(args)
        .env("KAFKA_STATE_DIR", repo().join("target/kafka-it"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kafka");
    assert!(out.status.success(), "scripts/kafka {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The broker, stopped (and its data wiped) when dropped.
struct Broker {
    address: String,
    python: PathBuf,
}

impl Broker {
    fn start() -> Broker {
        let _ = kafka_script(&["down", "--wipe"]);
        let address = kafka_script(&["up", "--port", &port()]);
        assert!(address.starts_with("127.0.0.1:"), "{address}");
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
        Broker { address, python }
    }

    fn topic(&self, name: &str, partitions: u32) {
        self.topics(&[(name.to_string(), partitions)]);
    }

    /// Creates topics in one admin request (a JVM start per topic would cost seconds each).
    fn topics(&self, topics: &[(String, u32)]) {
        let mut args = vec!["create".to_string(), self.address.clone()];
        args.extend(topics.iter().map(|(n, p)| format!("{n}:{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.client(&args);
    }

    fn client(&self, args: &[&str]) -> String {
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

    fn produce(&self, topic: &str, file: &Path) -> u64 {
        self.client(&["produce", &self.address, topic, file.to_str().unwrap()])
            .parse()
            .unwrap()
    }

    fn produce_to(&self, topic: &str, file: &Path, partition: u32) -> u64 {
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

    fn count(&self, topic: &str) -> u64 {
        self.client(&["count", &self.address, topic])
            .parse()
            .unwrap()
    }

    /// Every record of a topic: (key, value).
    fn dump(&self, topic: &str, dir: &Path) -> Vec<(Option<String>, Value)> {
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

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/kafka"))
            .args(["down", "--wipe"])
            .env("KAFKA_STATE_DIR", repo().join("target/kafka-it"))
            .status();
    }
}

const LOG_ANALYSES: [&str; 11] = [
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
const USER_ANALYSES: [&str; 3] = ["user_activity_sliding", "action_metrics", "user_anomalies"];

/// Creates a job's output topics: one per analysis (named `<prefix>.<analysis>` with a
/// prefix), plus its dead-letter and late topics.
fn create_outputs(b: &Broker, job: &str, prefix: Option<&str>, analyses: &[&str]) {
    let name = |a: &str| prefix.map_or_else(|| a.to_string(), |p| format!("{p}.{a}"));
    let mut t: Vec<(String, u32)> = analyses.iter().map(|a| (name(a), 2)).collect();
    t.push((format!("{job}.dead-letter"), 1));
    t.push((format!("{job}.late"), 1));
    b.topics(&t);
}

fn gen(kind: &str, events: &str, extra: &[&str], path: &Path) {
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
fn file_results(
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
    let mut res = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let mut rows: Vec<String> = read_jsonl(&path).iter().map(|v| v.to_string()).collect();
        rows.sort();
        res.insert(name, rows);
    }
    res
}

fn run_job(b: &Broker, spec: &str, topic: &str, workers: &str, extra: &[&str]) -> Child {
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

fn finish(child: Child, limit: Duration) -> Vec<u8> {
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
fn variant_spec(job: &str, idle_timeout: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
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

/// Two result rows are equal: same fields in the same order, same values. Floats too, bit for
/// bit: sums, averages and deviations are exact whatever the partition layout.
fn same_row(a: &Value, b: &Value) -> bool {
    a == b
}

/// Rows of both sides, matched by window and key, must be [`same_row`].
fn assert_same_rows(got: &[Value], want: &[String], what: &str) {
    let id = |v: &Value| {
        let o = v.as_object().unwrap();
        // Window, then the string/null fields (group keys) identify a row.
        let mut k = String::new();
        for (name, val) in o {
            if name == "window_start" || name == "window_end" || val.is_string() || val.is_null() {
                k.push_str(&format!("{name}={val};"));
            }
        }
        k
    };
    let want: Vec<Value> = want
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{what}: row count");
    let mut by_id: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for w in &want {
        by_id.entry(id(w)).or_default().push(w);
    }
    for g in got {
        let candidates = by_id
            .get_mut(&id(g))
            .unwrap_or_else(|| panic!("{what}: unexpected row {g}"));
        let i = candidates
            .iter()
            .position(|w| same_row(g, w))
            .unwrap_or_else(|| panic!("{what}: row {g} differs from file mode: {candidates:?}"));
        candidates.swap_remove(i);
    }
}

/// Every analysis topic equals the file-mode rows (see [`same_row`]); keys are
/// `window_start|keys`.
fn assert_topics_equal_files(
    b: &Broker,
    analyses: &[&str],
    key_fields: &BTreeMap<&str, &str>,
    expected: &BTreeMap<String, Vec<String>>,
    dir: &Path,
    what: &str,
) {
    for a in analyses {
        let records = b.dump(a, dir);
        let rows: Vec<Value> = records.iter().map(|(_, v)| v.clone()).collect();
        assert_same_rows(&rows, &expected[*a], &format!("{what}: {a}"));
        for (key, v) in &records {
            let mut k = v["window_start"].as_str().unwrap().to_string();
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

/// Dead letters and late events: compared without their positions (file line vs offset).
fn assert_side_outputs(
    b: &Broker,
    job: &str,
    expected: &BTreeMap<String, Vec<String>>,
    dir: &Path,
    what: &str,
) {
    for suffix in ["dead-letter", "late"] {
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
        let mut want: Vec<String> = expected[&topic]
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

#[test]
fn kafka_end_to_end() {
    let dir = tmpdir("kafka");
    let b = Broker::start();
    let log_keys: BTreeMap<&str, &str> = [
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
    .collect();

    // 200k generated events with bad lines and late lines, on 4 partitions, 2 workers.
    let logs = dir.join("logs.jsonl");
    gen("logs", "200000", &["--late-fraction", "0.002"], &logs);
    let expected = file_results(
        "dataflows/log-analysis.toml",
        "json",
        &logs,
        &dir.join("file-logs"),
    );
    assert!(
        !expected["log-analysis.late"].is_empty()
            && !expected["log-analysis.dead-letter"].is_empty()
    );
    b.topic("logs", 4);
    create_outputs(&b, "log-analysis", None, &LOG_ANALYSES);
    assert_eq!(b.produce("logs", &logs), 200_000);
    let err = finish(
        run_job(
            &b,
            "dataflows/log-analysis.toml",
            "logs",
            "2",
            &["--stop-at-end"],
        ),
        Duration::from_secs(300),
    );
    let acc = accounting(&err);
    assert_eq!(acc["read"], 200_000);
    assert_topics_equal_files(
        &b,
        &LOG_ANALYSES,
        &log_keys,
        &expected,
        &dir,
        "4 partitions, 2 workers",
    );
    assert_side_outputs(
        &b,
        "log-analysis",
        &expected,
        &dir,
        "4 partitions, 2 workers",
    );

    // 3 workers on 2 partitions: one worker has none and must not hold the watermark back.
    b.topic("logs2", 2);
    assert_eq!(b.produce("logs2", &logs), 200_000);
    let before: BTreeMap<&str, usize> = LOG_ANALYSES
        .iter()
        .map(|a| (*a, expected[*a].len()))
        .collect();
    let err = finish(
        run_job(
            &b,
            "dataflows/log-analysis.toml",
            "logs2",
            "3",
            &["--stop-at-end"],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(accounting(&err)["read"], 200_000);
    for a in LOG_ANALYSES {
        // The second run appended the same rows again: every row now appears exactly twice.
        let rows: Vec<Value> = b.dump(a, &dir).into_iter().map(|(_, v)| v).collect();
        let twice: Vec<String> = expected[a]
            .iter()
            .flat_map(|r| [r.clone(), r.clone()])
            .collect();
        assert_eq!(rows.len(), 2 * before[a], "3 workers / 2 partitions: {a}");
        assert_same_rows(&rows, &twice, &format!("3 workers / 2 partitions: {a}"));
    }

    // User events through dataflows/user-events.toml.
    let events = dir.join("events.jsonl");
    gen("user-events", "100000", &[], &events);
    let expected_ue = file_results(
        "dataflows/user-events.toml",
        "user-events",
        &events,
        &dir.join("file-events"),
    );
    b.topic("user-events", 3);
    create_outputs(&b, "user-events", None, &USER_ANALYSES);
    b.topic("late_alerts", 2);
    b.produce("user-events", &events);
    let err = finish(
        run_job(
            &b,
            "dataflows/user-events.toml",
            "user-events",
            "2",
            &["--stop-at-end"],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(accounting(&err)["read"], 100_000);
    let ue_keys: BTreeMap<&str, &str> = [
        ("user_activity_sliding", "user_id"),
        ("action_metrics", "action"),
        ("user_anomalies", "user_id"),
    ]
    .into_iter()
    .collect();
    assert_topics_equal_files(
        &b,
        &USER_ANALYSES,
        &ue_keys,
        &expected_ue,
        &dir,
        "user events",
    );
    assert_side_outputs(&b, "user-events", &expected_ue, &dir, "user events");

    // An idle partition: all data on partition 0, nothing ever on partition 1. With a 2 s idle
    // timeout, windows still close while the job runs.
    let idle_spec = variant_spec("idle", "2s", &dir);
    create_outputs(&b, "idle", Some("idle"), &LOG_ANALYSES);
    b.topic("logs-idle", 2);
    let small = dir.join("small.jsonl");
    gen(
        "logs",
        "20000",
        &["--event-rate", "20", "--bad-fraction", "0"],
        &small,
    );
    b.produce_to("logs-idle", &small, 0);
    let mut job = bin()
        .args([
            "run",
            idle_spec.to_str().unwrap(),
            "--brokers",
            &b.address,
            "--topic",
            "logs-idle",
            "-w",
            "2",
            "--quiet",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut health = 0;
    while started.elapsed() < Duration::from_secs(60) && health < 5 {
        std::thread::sleep(Duration::from_secs(2));
        health = b.count("idle.system_health");
    }
    assert!(
        job.try_wait().unwrap().is_none(),
        "a live job keeps running"
    );
    let _ = job.kill();
    let _ = job.wait();
    // 20000 events at 20/s span 1000 s: windows up to ~11 minutes before the newest event close.
    assert!(
        health >= 5,
        "windows did not close with an idle partition: {health} system_health rows"
    );

    // Update mode on Kafka: every change of a window's row is a record with the same key
    // (window_start|key), so a compacted topic keeps the latest; a row that stops passing
    // `having` becomes a tombstone.
    let upd_spec = dir.join("update.toml");
    std::fs::write(
        &upd_spec,
        r#"
name = "lateness"
[source]
kind = "kafka"
topic = "lateness-in"
format = "json"
[watermark]
delay = "10s"
[[analysis]]
name = "upd_small"
mode = "update"
window = { size = "1m" }
allowed_lateness = "30s"
group_by = ["service"]
select = ["count() as n"]
having = "n < 3"
"#,
    )
    .unwrap();
    let upd_in = dir.join("update-in.jsonl");
    let lines: Vec<String> = [
        "00:05", "00:20", "01:05", "01:25", "00:30", "02:05", "00:40", "01:10",
    ]
    .iter()
    .map(|ts| {
        serde_json::json!({"timestamp": format!("2026-11-24T10:{ts}Z"), "service": "a"}).to_string()
    })
    .collect();
    std::fs::write(&upd_in, lines.join("\n") + "\n").unwrap();
    b.topic("lateness-in", 1);
    create_outputs(&b, "lateness", None, &["upd_small"]);
    b.produce("lateness-in", &upd_in);
    let err = finish(
        run_job(
            &b,
            upd_spec.to_str().unwrap(),
            "lateness-in",
            "2",
            &["--stop-at-end"],
        ),
        Duration::from_secs(120),
    );
    assert_eq!(
        accounting(&err)["late"],
        1,
        "10:00:40 arrives past end + 30 s"
    );
    let mut by_key: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    for (k, v) in b.dump("upd_small", &dir) {
        by_key
            .entry(k.expect("update rows are keyed"))
            .or_default()
            .push(v.get("n").and_then(Value::as_i64));
    }
    let want: BTreeMap<String, Vec<Option<i64>>> = [
        ("2026-11-24T10:00:00Z|a", vec![Some(1), Some(2), None]),
        ("2026-11-24T10:01:00Z|a", vec![Some(1), Some(2), None]),
        ("2026-11-24T10:02:00Z|a", vec![Some(1)]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(
        by_key, want,
        "update-mode records per key (None = tombstone)"
    );

    // The broker stops and restarts mid-run: the job waits, resumes, and completes exactly.
    let restart_spec = variant_spec("restart", "30s", &dir);
    create_outputs(&b, "restart", Some("restart"), &LOG_ANALYSES);
    let big = dir.join("big.jsonl");
    gen("logs", "600000", &["--seed", "7"], &big);
    let expected_big = file_results(
        restart_spec.to_str().unwrap(),
        "json",
        &big,
        &dir.join("file-big"),
    );
    b.topic("logs-big", 4);
    assert_eq!(b.produce("logs-big", &big), 600_000);
    let job = run_job(
        &b,
        restart_spec.to_str().unwrap(),
        "logs-big",
        "2",
        &["--stop-at-end"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut job = job;
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job finished before the broker restart: make the input larger"
    );
    kafka_script(&["down"]);
    std::thread::sleep(Duration::from_secs(3));
    kafka_script(&["up", "--port", &port()]);
    let err = finish(job, Duration::from_secs(600));
    assert_eq!(accounting(&err)["read"], 600_000);
    for a in LOG_ANALYSES {
        let rows: Vec<Value> = b
            .dump(&format!("restart.{a}"), &dir)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_same_rows(
            &rows,
            &expected_big[a],
            &format!("after a broker restart: {a}"),
        );
    }
}
