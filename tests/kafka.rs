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
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::kafka::{
    assert_rows_among, assert_rows_present, assert_side_outputs, assert_topics_equal_files,
    create_outputs, file_results, finish, gen, log_keys, run_job, variant_spec, Broker,
    LOG_ANALYSES, USER_ANALYSES,
};
use common::oracle::{self, Reference};
use common::recovery::{broker_errors, signal_all, wait_for_broker_errors, wait_for_count};
use common::rows::assert_same_rows;
use common::{accounting, bin, read_jsonl, tmpdir};
use serde_json::Value;

#[test]
fn kafka_end_to_end() {
    let dir = tmpdir("kafka");
    let b = Broker::start("kafka-it");
    let log_keys = log_keys();

    // 200k generated events with bad lines and late lines, on 4 partitions, 2 workers.
    let logs = dir.join("logs.jsonl");
    gen("logs", "200000", &["--late-fraction", "0.002"], &logs);
    let expected = file_results(
        "dataflows/log-analysis.toml",
        "json",
        &logs,
        &dir.join("file-logs"),
    );
    Reference::new(&oracle::log_analysis(), &logs)
        .assert_matches(&dir.join("file-logs"), "log-analysis");
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
        None,
        &LOG_ANALYSES,
        &log_keys,
        &expected,
        &dir,
        "4 partitions, 2 workers",
    );
    assert_side_outputs(
        &b,
        "log-analysis",
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

    // Uneven partitions: partition 0 ends minutes of event time before partition 1. The worker
    // reading partition 1 pauses when it runs ahead of the other (alignment); the other's end
    // must release it, or this run never finishes.
    let head = dir.join("head.jsonl");
    // Lines as bytes: the bad ones are not all UTF-8.
    let bytes = std::fs::read(&logs).unwrap();
    let first: Vec<u8> = bytes
        .split_inclusive(|&c| c == b'\n')
        .take(20_000)
        .flatten()
        .copied()
        .collect();
    std::fs::write(&head, first).unwrap();
    // Its own topics, and its reference: file mode over partition 0's lines, then 1's.
    let uneven_spec = variant_spec("uneven", "30s", &dir);
    create_outputs(&b, "uneven", Some("uneven"), &LOG_ANALYSES);
    let both = dir.join("head-logs.jsonl");
    std::fs::write(&both, [std::fs::read(&head).unwrap(), bytes].concat()).unwrap();
    let expected_uneven = file_results(
        uneven_spec.to_str().unwrap(),
        "json",
        &both,
        &dir.join("file-uneven"),
    );
    b.topic("uneven", 2);
    assert_eq!(b.produce_to("uneven", &head, 0), 20_000);
    assert_eq!(b.produce_to("uneven", &logs, 1), 200_000);
    let err = finish(
        run_job(
            &b,
            uneven_spec.to_str().unwrap(),
            "uneven",
            "2",
            &["--stop-at-end"],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(accounting(&err)["read"], 220_000);
    assert_topics_equal_files(
        &b,
        Some("uneven"),
        &LOG_ANALYSES,
        &log_keys,
        &expected_uneven,
        &dir,
        "uneven partitions",
    );
    assert_side_outputs(
        &b,
        "uneven",
        "uneven",
        &expected_uneven,
        &dir,
        "uneven partitions",
    );

    // User events through dataflows/user-events.toml.
    let events = dir.join("events.jsonl");
    gen("user-events", "100000", &[], &events);
    let expected_ue = file_results(
        "dataflows/user-events.toml",
        "user-events",
        &events,
        &dir.join("file-events"),
    );
    Reference::new(&oracle::user_events(), &events)
        .assert_matches(&dir.join("file-events"), "user-events");
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
        ("user_sessions", "user_id"),
    ]
    .into_iter()
    .collect();
    assert_topics_equal_files(
        &b,
        None,
        &USER_ANALYSES,
        &ue_keys,
        &expected_ue,
        &dir,
        "user events",
    );
    assert_side_outputs(
        &b,
        "user-events",
        "user-events",
        &expected_ue,
        &dir,
        "user events",
    );

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
    let expected_idle = file_results(
        idle_spec.to_str().unwrap(),
        "json",
        &small,
        &dir.join("file-idle"),
    );
    // 20000 events at 20/s span 1000 s. With partition 1 idle, the watermark follows
    // partition 0 to its newest event less the delay (10 min at most): every window ending
    // 11 min or more before the newest event must close while the job runs.
    let newest = read_jsonl(&small)
        .iter()
        .map(|v| match &v["timestamp"] {
            Value::String(t) => chrono_ms(t),
            // (the generator also writes epoch milliseconds)
            t => t.as_i64().unwrap_or_else(|| panic!("timestamp {t}")),
        })
        .max()
        .unwrap();
    let closed: BTreeMap<&str, Vec<String>> = WINDOWED
        .iter()
        .map(|a| {
            let rows: Vec<String> = expected_idle[*a]
                .iter()
                .filter(|r| {
                    let v: Value = serde_json::from_str(r).unwrap();
                    chrono_ms(v["window_end"].as_str().unwrap()) <= newest - 11 * 60_000
                })
                .cloned()
                .collect();
            (*a, rows)
        })
        .collect();
    assert!(
        closed["system_health"].len() >= 5,
        "the input is too short to close windows: {:?}",
        closed["system_health"].len()
    );
    let mut cmd = bin();
    cmd.args(["run", idle_spec.to_str().unwrap()])
        .args(["--brokers", &b.address, "--topic", "logs-idle"])
        .args(["-w", "2", "--quiet"]);
    let mut job = Proc::spawn(cmd, &dir, "idle", Stdio::null());
    // Until every window that must close has a row (rows only come with closed windows).
    let started = Instant::now();
    while let Some(a) = WINDOWED
        .iter()
        .find(|a| b.count(&format!("idle.{a}")) < closed[**a].len() as u64)
    {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "a live job keeps running:\n{}",
            job.stderr_text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "windows did not close with an idle partition: idle.{a} has {} rows of {}:\n{}",
            b.count(&format!("idle.{a}")),
            closed[*a].len(),
            job.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        job.child.try_wait().unwrap().is_none(),
        "a live job keeps running"
    );
    let _ = job.child.kill();
    let _ = job.child.wait();
    // Every row written is its window's file-mode row, and the windows that must have closed
    // are all there.
    for a in LOG_ANALYSES {
        let rows: Vec<Value> = b
            .dump(&format!("idle.{a}"), &dir)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_rows_among(&rows, &expected_idle[a], &format!("idle partition: {a}"));
        if let Some(want) = closed.get(a) {
            assert_rows_present(&rows, want, &format!("idle partition: {a}"));
        }
    }

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
    Reference::new(&oracle::log_analysis(), &big).assert_matches(&dir.join("file-big"), "restart");
    b.topic("logs-big", 4);
    assert_eq!(b.produce("logs-big", &big), 600_000);
    let mut cmd = bin();
    cmd.args(["run", restart_spec.to_str().unwrap()])
        .args(["--brokers", &b.address, "--topic", "logs-big"])
        .args(["-w", "2", "--stop-at-end"]);
    let mut job = Proc::spawn(cmd, &dir, "restart", Stdio::null());
    // Part of the input read, the job is frozen while the broker stops (so the outage is
    // mid-run however fast the job reads), then runs on through the outage.
    wait_for_count(&mut job, "runs workers", 1, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(300));
    let pid = [job.child.id().to_string()];
    signal_all(&pid, "-STOP");
    let err = job.stderr_text();
    assert!(
        job.child.try_wait().unwrap().is_none(),
        "the job finished before the broker stopped: make the input larger"
    );
    assert!(
        err.matches("reached the end of its input").count() < 2,
        "the job had read all its input before the broker stopped: make it larger\n{err}"
    );
    let before = broker_errors(&err);
    b.stop();
    signal_all(&pid, "-CONT");
    // It waits: alive, and saying it lost the broker.
    wait_for_broker_errors(&mut job, before, Duration::from_secs(120), "broker restart");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        job.child.try_wait().unwrap().is_none(),
        "the job ended while the broker was down:\n{}",
        job.stderr_text()
    );
    b.restart();
    let status = job.wait(Duration::from_secs(600));
    let err = job.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    assert_eq!(accounting(err.as_bytes())["read"], 600_000);
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

/// The log analyses with windows of their own: `LOG_ANALYSES` lists them first, then the
/// three that derive from them.
const WINDOWED: &[&str] = LOG_ANALYSES.split_at(8).0;

/// Milliseconds since the epoch of an RFC 3339 time.
fn chrono_ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_millis()
}
