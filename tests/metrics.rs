//! Metrics end to end: a real Prometheus server (Debian's package, started by
//! `scripts/prometheus` on 127.0.0.1 and stopped by its pid) scrapes a live log-analysis job
//! every second. Reads, dead letters, late events and event times are expected from the
//! generated input itself (its bytes, and the generator's label of each line); the output
//! metrics (records, windows, last window end, `logflow_result` gauges) are checked to agree
//! with the job's own outputs, which other tests check against the oracle. Everything is
//! compared with what Prometheus's HTTP API answers. Then every query of the Grafana dashboard
//! must refer only to metrics Prometheus got from the job, and return data.
//!
//! The job is the embedded demo (in-process Kafka, 4 partitions, 2 workers) fed at a bounded
//! rate, so Prometheus sees it while it runs; `--linger` keeps the endpoint up until a scrape
//! has read the final values.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use common::prometheus::{close, metric_names, port, Labels, Prometheus};
use common::{accounting, bin, repo, tmpdir};
use logflow::gen::{GenConfig, Generator, LineKind};
use serde_json::Value;

const EVENTS: u64 = 24_000;
const RATE: u64 = 3_000;
const PARTITIONS: u64 = 4; // the embedded demo's input topic
const WORKERS: u64 = 2;
const DELAY_S: f64 = 300.0; // watermark.delay of dataflows/log-analysis.toml
const RETENTION_WINDOWS: i64 = 2; // logflow_result keeps keys seen in the last 2 windows

/// Epoch seconds of an input record's timestamp (RFC 3339 text or epoch milliseconds). The
/// line is one the job did not dead-letter: if it is bad after all, the job never read it.
fn event_time(line: &[u8]) -> f64 {
    let lost = || {
        format!(
            "a bad line without a dead letter (was it read?): {}",
            String::from_utf8_lossy(line)
        )
    };
    let v: Value = serde_json::from_slice(line).unwrap_or_else(|_| panic!("{}", lost()));
    match &v["timestamp"] {
        Value::String(s) => {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap_or_else(|_| panic!("{}", lost()))
                .timestamp_millis() as f64
                / 1000.0
        }
        Value::Number(n) => n.as_f64().unwrap() / 1000.0,
        _ => panic!("{}", lost()),
    }
}

fn rfc3339_secs(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

#[test]
fn prometheus_scrapes_pipeline_and_business_metrics() {
    let metrics_port = port("LOGFLOW_IT_METRICS_PORT", 19798);
    let prom_port = port("LOGFLOW_IT_PROMETHEUS_PORT", 19790);
    let target = format!("127.0.0.1:{metrics_port}");
    let dir = tmpdir("metrics");

    // The input the embedded demo feeds: `logflow gen` with the same defaults, line i going
    // to partition i % 4 at offset i / 4.
    let input = dir.join("input.jsonl");
    common::run_ok(&[
        "gen",
        "--events",
        &EVENTS.to_string(),
        "--output",
        input.to_str().unwrap(),
    ]);
    // Bytes: some bad lines are not UTF-8.
    let data = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = data
        .strip_suffix(b"\n")
        .unwrap_or(&data)
        .split(|b| *b == b'\n')
        .collect();
    assert_eq!(lines.len() as u64, EVENTS);
    // What each line is, from the generator itself (the same defaults give the same bytes).
    let mut gen = Generator::new(GenConfig {
        events: EVENTS,
        ..GenConfig::default()
    });
    let (mut labels, mut buf, mut regenerated) = (Vec::new(), Vec::new(), Vec::new());
    while gen.next_line(&mut buf) {
        regenerated.extend_from_slice(&buf);
        regenerated.push(b'\n');
        buf.clear();
        labels.push(gen.last_kind().expect("a line was generated"));
    }
    assert!(
        regenerated == data,
        "GenConfig::default() is `logflow gen`'s default"
    );
    let labelled = |kind: LineKind| -> BTreeSet<(u64, u64)> {
        (0..EVENTS)
            .filter(|&i| labels[i as usize] == kind)
            .map(|i| (i % PARTITIONS, i / PARTITIONS))
            .collect()
    };
    let (bad_at, late_at) = (labelled(LineKind::Bad), labelled(LineKind::Late));

    let prom = Prometheus::start(prom_port, &target);

    let started = Instant::now();
    let out = bin()
        .args([
            "run",
            "dataflows/log-analysis.toml",
            "--demo-events",
            &EVENTS.to_string(),
            "--demo-rate",
            &RATE.to_string(),
            // The generator's default start: the input above, byte for byte.
            "--demo-start",
            "2026-11-24T10:00:00Z",
            "-w",
            &WORKERS.to_string(),
            "--metrics-addr",
            &target,
            "--linger",
            "60s",
            // Checkpoints too: their age and duration have a dashboard panel.
            "--checkpoint-dir",
            dir.join("ckpt").to_str().unwrap(),
        ])
        .output()
        .expect("run logflow");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "logflow failed:\n{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(EVENTS / RATE - 1),
        "the feed rate should make the run last"
    );
    assert!(
        stderr.contains(&format!("metrics at http://{target}/metrics")),
        "{stderr}"
    );
    let acc = accounting(&out.stderr);

    // The job's outputs, as printed by the embedded demo: `<topic> <json>`.
    let mut by_topic: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let (topic, json) = l.split_once(' ').unwrap();
        by_topic
            .entry(topic.to_string())
            .or_default()
            .push(serde_json::from_str(json).unwrap());
    }
    let empty = Vec::new();
    let dead = by_topic.get("log-analysis.dead-letter").unwrap_or(&empty);
    let late = by_topic.get("log-analysis.late").unwrap_or(&empty);
    assert_eq!(dead.len() as u64, acc["dead_letter"]);
    assert!(!bad_at.is_empty(), "the generator writes bad lines");
    // The accounting against the input, not only the metrics against the accounting.
    assert_eq!(
        (acc["read"], acc["dead_letter"], acc["late"]),
        (EVENTS, bad_at.len() as u64, late_at.len() as u64),
        "accounting against the generator's labels"
    );
    assert_eq!(late.len(), late_at.len(), "late records");

    // Per partition: reads, dead letters (checked against the generated bytes and labels),
    // late events (the generator's labels), and the largest event time of the good lines.
    let mut expected_part: BTreeMap<String, (f64, f64, f64, f64, f64)> = BTreeMap::new();
    let mut dead_at: BTreeSet<(u64, u64)> = BTreeSet::new();
    for d in dead {
        let p = d["position"]["partition"].as_u64().unwrap();
        let o = d["position"]["offset"].as_u64().unwrap();
        let raw = match (d["raw"].as_str(), d["raw_base64"].as_str()) {
            (Some(r), _) => r.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            _ => panic!("dead letter without raw bytes: {d}"),
        };
        assert_eq!(
            raw,
            lines[(o * PARTITIONS + p) as usize],
            "dead letter {p}/{o} is not the line the demo fed"
        );
        dead_at.insert((p, o));
    }
    assert!(
        dead_at == bad_at,
        "dead letters are exactly the lines written bad"
    );
    for p in 0..PARTITIONS {
        let read = (0..EVENTS).filter(|i| i % PARTITIONS == p).count() as f64;
        let dead_n = dead_at.iter().filter(|(q, _)| *q == p).count() as f64;
        let late_n = late_at.iter().filter(|(q, _)| *q == p).count() as f64;
        let max_t = (0..EVENTS)
            .filter(|i| i % PARTITIONS == p && !dead_at.contains(&(p, i / PARTITIONS)))
            .map(|i| event_time(lines[i as usize]))
            .fold(f64::MIN, f64::max);
        expected_part.insert(p.to_string(), (read, read - dead_n, dead_n, late_n, max_t));
    }

    // The scrape that read the final values: the last sample of logflow_job_running, 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    let t0 = loop {
        let s = prom.samples("logflow_job_running[10m]");
        if let Some((_, values)) = s.first() {
            if let Some(&(t, v)) = values.last() {
                if v == 0.0 {
                    assert!(
                        values.iter().filter(|(_, v)| *v == 1.0).count() >= 3,
                        "Prometheus should have scraped the running job several times: {values:?}"
                    );
                    break t;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no final scrape in Prometheus: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Identity.
    let info = prom.query("logflow_process_info", t0);
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].0["pipeline"], "log-analysis");
    assert_eq!(info[0].0["threads"], WORKERS.to_string());
    assert_eq!(info[0].0["process"], "0");

    // Pipeline metrics per partition.
    let check = |metric: &str, pick: fn(&(f64, f64, f64, f64, f64)) -> f64| {
        let got = prom.query(metric, t0);
        assert_eq!(got.len() as u64, PARTITIONS, "{metric}: {got:?}");
        for (labels, v) in got {
            let p = &labels["partition"];
            assert_eq!(labels["source"], "logs");
            let worker: u64 = labels["worker"].parse().unwrap();
            assert_eq!(
                worker,
                p.parse::<u64>().unwrap() % WORKERS,
                "{metric} {labels:?}"
            );
            let want = pick(&expected_part[p]);
            assert!(
                close(v, want),
                "{metric} partition {p}: Prometheus {v}, expected {want}"
            );
        }
    };
    check("logflow_records_read_total", |e| e.0);
    check("logflow_records_parsed_total", |e| e.1);
    check("logflow_records_dead_letter_total", |e| e.2);
    check("logflow_records_late_total", |e| e.3);
    check("logflow_partition_event_time_seconds", |e| e.4);
    check("logflow_partition_watermark_seconds", |e| e.4 - DELAY_S);
    check("logflow_partition_finished", |_| 1.0);
    check("logflow_partition_idle", |_| 0.0);
    for (total, key) in [
        ("logflow_records_read_total", "read"),
        ("logflow_records_parsed_total", "parsed"),
        ("logflow_records_dead_letter_total", "dead_letter"),
        ("logflow_records_late_total", "late"),
    ] {
        let sum = prom.query(&format!("sum({total})"), t0);
        assert_eq!(
            sum[0].1, acc[key] as f64,
            "{total} against the accounting line"
        );
    }
    // Lag = scrape time - watermark (the scrape's timestamp is when it started).
    for (labels, lag) in prom.query("logflow_partition_watermark_lag_seconds", t0) {
        let wm = expected_part[&labels["partition"]].4 - DELAY_S;
        assert!(
            (lag - (t0 - wm)).abs() < 2.0,
            "lag {lag} vs scrape time {t0} - watermark {wm}"
        );
    }
    // The counters moved while the job ran, not only at the end.
    let read0 = prom.samples("logflow_records_read_total{partition=\"0\"}[10m]");
    let distinct: BTreeSet<u64> = read0[0].1.iter().map(|(_, v)| *v as u64).collect();
    assert!(
        distinct.len() >= 3,
        "read counter over time: {:?}",
        read0[0].1
    );

    // Output metrics per analysis, from the rows the job wrote.
    let spec: toml::Table = toml::from_str(
        &std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap(),
    )
    .unwrap();
    let analyses = spec["analysis"].as_array().unwrap();
    let records = prom.query("logflow_output_records_total", t0);
    let windows = prom.query("logflow_windows_emitted_total", t0);
    let last_end = prom.query("logflow_last_window_end_seconds", t0);
    assert_eq!(records.len(), analyses.len());
    let find =
        |v: &[(Labels, f64)], a: &str| v.iter().find(|(l, _)| l["analysis"] == a).map(|(_, v)| *v);
    for a in analyses {
        let name = a["name"].as_str().unwrap();
        let rows = by_topic.get(name).unwrap_or(&empty);
        assert_eq!(find(&records, name), Some(rows.len() as f64), "{name} rows");
        let starts: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["window_start"].as_str().unwrap())
            .collect();
        assert_eq!(
            find(&windows, name),
            Some(starts.len() as f64),
            "{name} windows"
        );
        let end = rows
            .iter()
            .map(|r| rfc3339_secs(r["window_end"].as_str().unwrap()))
            .max();
        assert_eq!(
            find(&last_end, name),
            end.map(|e| e as f64),
            "{name} last window end"
        );
    }
    assert!(
        find(&records, "response_time_anomalies").unwrap() > 0.0,
        "the demo injects incidents"
    );

    // Business gauges: the latest closed window of each key, for keys seen in the last two
    // windows of the analysis.
    let keys_of = |a: &toml::Value| -> Vec<String> {
        let of = |a: &toml::Value| {
            a.get("group_by")
                .and_then(|g| g.as_array())
                .map(|g| g.iter().map(|k| k.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        match a.get("from") {
            Some(f) => of(analyses
                .iter()
                .find(|x| x["name"].as_str() == f.as_str())
                .unwrap()),
            None => of(a),
        }
    };
    let mut expected: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let mut gauge_analyses = 0;
    for a in analyses {
        let Some(gauges) = a.get("gauges").and_then(|g| g.as_array()) else {
            continue;
        };
        gauge_analyses += 1;
        let name = a["name"].as_str().unwrap();
        let keys = keys_of(a);
        let rows = by_topic.get(name).unwrap_or(&empty);
        let Some(newest) = rows
            .iter()
            .map(|r| rfc3339_secs(r["window_start"].as_str().unwrap()))
            .max()
        else {
            continue;
        };
        let mut latest: BTreeMap<Vec<String>, &Value> = BTreeMap::new();
        for r in rows {
            let start = rfc3339_secs(r["window_start"].as_str().unwrap());
            let size = rfc3339_secs(r["window_end"].as_str().unwrap()) - start;
            if start < newest - RETENTION_WINDOWS * size {
                continue;
            }
            let key: Vec<String> = keys
                .iter()
                .map(|k| match &r[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => "null".to_string(),
                    v => v.to_string(),
                })
                .collect();
            let e = latest.entry(key).or_insert(r);
            if rfc3339_secs(e["window_start"].as_str().unwrap()) < start {
                *e = r;
            }
        }
        for (key, r) in latest {
            for g in gauges {
                let column = g.as_str().unwrap();
                let v = match &r[column] {
                    Value::Null => f64::NAN,
                    v => v.as_f64().unwrap(),
                };
                let mut labels = vec![
                    ("analysis".to_string(), name.to_string()),
                    ("column".to_string(), column.to_string()),
                ];
                labels.extend(keys.iter().cloned().zip(key.iter().cloned()));
                labels.sort();
                expected.insert(labels, v);
            }
        }
    }
    assert!(gauge_analyses >= 4, "log-analysis.toml exports gauges");
    let mut got: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for (labels, v) in prom.query("logflow_result", t0) {
        let mut l: Vec<(String, String)> = labels
            .into_iter()
            .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
            .collect();
        l.sort();
        got.insert(l, v);
    }
    eprintln!(
        "comparing {} logflow_result series of {gauge_analyses} analyses",
        expected.len()
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "logflow_result series"
    );
    for (k, want) in &expected {
        assert!(
            close(got[k], *want),
            "{k:?}: Prometheus {}, expected {want}",
            got[k]
        );
    }
    // The dashboard's headline numbers, spelled out.
    let health = prom.query(
        "logflow_result{analysis=\"system_health\",column=\"health_score\"}",
        t0,
    );
    assert_eq!(health.len(), 1);
    assert!(
        [40.0, 60.0, 80.0, 100.0].contains(&health[0].1),
        "{health:?}"
    );
    let services = prom.query(
        "logflow_result{analysis=\"response_time\",column=\"avg_response_time\"}",
        t0,
    );
    assert!(
        services.len() >= 5,
        "avg_response_time by service: {services:?}"
    );

    // Every Grafana panel query reads only metrics Prometheus has from the job, and has data.
    let known: BTreeSet<String> = prom
        .api("/api/v1/label/__name__/values", &[])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        panels.push(p);
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
    }
    let mut titles = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap();
        titles.insert(title.to_lowercase());
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {title}: no metric in {expr}");
            for n in &names {
                assert!(
                    known.contains(n),
                    "panel {title}: `{n}` is not a metric the job exports ({expr})"
                );
            }
            let instant = expr.replace("$__rate_interval", "1m");
            let res = prom.query(&instant, t0);
            assert!(
                !res.is_empty(),
                "panel {title}: `{instant}` returns no data"
            );
        }
    }
    for want in [
        "health score",
        "response time by service",
        "p99 response time by service",
        "error rate by service",
        "request volume",
        "anomalies",
        "pipeline throughput",
        "watermark lag",
        "checkpoints",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "the dashboard has no `{want}` panel: {titles:?}"
        );
    }
}

#[test]
fn metric_names_of_promql() {
    let names = metric_names(
        "sum by (service) (rate(logflow_a_total{analysis=~\"x|y\"}[5m])) / on (x) group_left max(logflow_b) > bool 3",
    );
    assert_eq!(
        names,
        ["logflow_a_total", "logflow_b"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
