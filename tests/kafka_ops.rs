//! Operating Kafka jobs (docs/operations.md) on a real broker (`scripts/kafka`): consumer
//! groups (a job commits the offsets it has read as group `logflow-<job>`, so standard tools
//! see its lag, and `start = "stored"` starts there; offsets read by the independent Python
//! client), `/health` and `/ready`, and the lag metric.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{hostfile, local_addresses, Proc};
use common::kafka::{gen, serial_broker, variant_spec, Broker};
use common::prometheus::port;
use common::{accounting, bin, http_get, messages, metric_sum, tmpdir};

fn offsets(b: &Broker, group: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    b.group_offsets(group, topic)
}

/// `run SPEC --stop-at-end` into files; returns (records read, stderr).
fn run(b: &Broker, spec: &Path, out: &Path) -> (u64, String) {
    let o = b.run_to_end(spec, &["--output-dir", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    (accounting(err.as_bytes())["read"], err)
}

fn assert_committed_at_end(offsets: &BTreeMap<i32, (i64, i64)>, what: &str) {
    assert_eq!(offsets.len(), 2, "{what}: {offsets:?}");
    for (p, (end, committed)) in offsets {
        assert!(*end > 0, "{what}: partition {p} is empty: {offsets:?}");
        assert_eq!(committed, end, "{what}: partition {p}: {offsets:?}");
    }
}

#[test]
fn a_job_commits_its_offsets_and_stored_starts_there() {
    const EVENTS: u64 = 20_000;
    const MORE: u64 = 5_000;
    let dir = tmpdir("groups");
    let (_port, b) = serial_broker("kafka-groups");
    b.topic("grp-logs", 2);
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    assert_eq!(b.produce("grp-logs", &logs), EVENTS);
    let spec = variant_spec("grp", "30s", &dir);
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "[source]\n",
        "[source]\nstart = \"stored\"\n",
        1,
    );
    let text = text.replacen("topic = \"logs\"", "topic = \"grp-logs\"", 1);
    std::fs::write(&spec, text).unwrap();
    assert!(offsets(&b, "logflow-grp", "grp-logs")
        .values()
        .all(|(_, c)| *c == -1));

    // No committed offsets yet: from the start; then every offset read is committed.
    let (read, err) = run(&b, &spec, &dir.join("first"));
    assert_eq!(read, EVENTS, "{err}");
    assert!(
        messages(&err).any(|m| m.contains("no offset committed by group logflow-grp")),
        "{err}"
    );
    assert_committed_at_end(&offsets(&b, "logflow-grp", "grp-logs"), "first run");

    // Again: nothing old is read.
    let (read, err) = run(&b, &spec, &dir.join("second"));
    assert_eq!(read, 0, "{err}");
    assert!(
        messages(&err).any(|m| m.contains("at the offset group logflow-grp committed")),
        "{err}"
    );

    // After more records arrived: exactly those.
    let more = dir.join("more.jsonl");
    gen("logs", &MORE.to_string(), &["--seed", "7"], &more);
    assert_eq!(b.produce("grp-logs", &more), MORE);
    let (read, err) = run(&b, &spec, &dir.join("third"));
    assert_eq!(read, MORE, "{err}");
    let after = offsets(&b, "logflow-grp", "grp-logs");
    assert_committed_at_end(&after, "third run");
    assert_eq!(
        after.values().map(|(e, _)| *e as u64).sum::<u64>(),
        EVENTS + MORE
    );
}

/// A copy of the log-analysis spec as job `job` reading `topic`, printing its results.
fn console_spec(job: &str, topic: &str, dir: &Path) -> std::path::PathBuf {
    let spec = variant_spec(job, "30s", dir);
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "topic = \"logs\"",
        &format!("topic = \"{topic}\""),
        1,
    ) + "\n[sink]\nkind = \"console\"\n";
    std::fs::write(&spec, text).unwrap();
    spec
}

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code, v)
}

#[test]
fn ready_after_assignment_and_lag_is_end_minus_position() {
    const EVENTS: u64 = 200_000;
    let dir = tmpdir("kafka-ops-ready");
    let (_port, b) = serial_broker("kafka-ops-ready");
    b.topic("ready-logs", 1);
    let logs = dir.join("logs.jsonl");
    // No bad or late lines: the job's stdout fills with window results, not dead letters
    // written before any window's partials reached its merge.
    let clean = ["--bad-fraction", "0", "--late-fraction", "0"];
    gen("logs", &EVENTS.to_string(), &clean, &logs);
    assert_eq!(b.produce("ready-logs", &logs), EVENTS);
    let addr = format!("127.0.0.1:{}", port("LOGFLOW_IT_METRICS_PORT", 19798));
    let spec = console_spec("ready", "ready-logs", &dir);

    // Process 0 of 2, its peer not started: live, not ready, naming what it waits for.
    let hosts = hostfile(&dir, &local_addresses(2));
    let proc_cmd = |p: &str, extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
            .args(["-n", "2", "-p", p, "-h", hosts.to_str().unwrap()])
            .args([
                "--stop-at-end",
                "--output-dir",
                dir.join("out").to_str().unwrap(),
            ])
            .args(extra);
        cmd
    };
    let mut p0 = Proc::spawn(
        proc_cmd("0", &["--metrics-addr", &addr]),
        &dir,
        "p0",
        Stdio::null(),
    );
    let started = Instant::now();
    let (code, body) = loop {
        if let Some((code, _)) = http_get(&addr, "/health") {
            assert_eq!(code, 200);
            break get(&addr, "/ready");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            p0.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let missing: Vec<&str> = body["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(missing, ["peers", "sinks", "consumers"], "{body}");
    // Its peer comes: connected, sinks open, partitions assigned.
    let mut p1 = Proc::spawn(proc_cmd("1", &[]), &dir, "p1", Stdio::null());
    let started = Instant::now();
    loop {
        let (code, body) = get(&addr, "/ready");
        if code == 200 {
            assert_eq!(body["ready"], true, "{body}");
            assert_eq!(body["missing"], serde_json::json!([]), "{body}");
            break;
        }
        assert_eq!(code, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            p0.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        p0.says("reads ready-logs partitions [0]"),
        "{}",
        p0.stderr_text()
    );
    for p in [&mut p0, &mut p1] {
        let status = p.wait(Duration::from_secs(120));
        assert!(status.is_some_and(|s| s.success()), "{}", p.stderr_text());
    }

    // Lag: a job whose results nobody reads (stdout a full pipe) stops reading mid-topic; its
    // lag is then exactly the end offset minus the records it read (from offset 0).
    // A Proc: killed when the test fails, so it holds the metrics port no longer.
    let stderr = dir.join("lag.err");
    let child = bin()
        .args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
        .args(["--metrics-addr", &addr])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut job = Proc { child, stderr };
    let started = Instant::now();
    let mut last: Option<(f64, f64)> = None;
    let (read, lag) = loop {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "the job ended: {}",
            job.stderr_text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never stable: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let Some((200, text)) = http_get(&addr, "/metrics") else {
            continue;
        };
        if !text.contains("logflow_partition_lag_records{") {
            continue;
        }
        let now = (
            metric_sum(&text, "logflow_records_read_total"),
            metric_sum(&text, "logflow_partition_lag_records"),
        );
        // Blocked (the same reading twice, a refresh of the end offset apart).
        if last == Some(now) && now.0 > 0.0 {
            // Its windows hold state meanwhile, and say how much.
            let keys = metric_sum(&text, "logflow_state_keys");
            let bytes = metric_sum(&text, "logflow_state_bytes");
            assert!(
                keys > 0.0 && bytes > keys,
                "state keys {keys}, bytes {bytes}\n{text}"
            );
            assert!(
                text.contains("logflow_state_keys{analysis=\"response_time\"}"),
                "{text}"
            );
            // The lag is labelled with the Kafka topic the partition belongs to.
            assert!(
                text.contains(
                    "logflow_partition_lag_records{topic=\"ready-logs\",partition=\"0\"}"
                ),
                "{text}"
            );
            break now;
        }
        last = Some(now);
    };
    drop(job);
    let end = offsets(&b, "logflow-ready", "ready-logs")[&0].0;
    assert_eq!(end as u64, EVENTS);
    assert!(read < EVENTS as f64, "the job read everything: {read}");
    assert_eq!(lag, end as f64 - read, "lag {lag}, end {end}, read {read}");
}
