//! Alerts end to end: crafted logs and user events that make each detector of the shipped
//! specs fire once give exactly those alerts, summaries rendered, in `<job>.alerts.jsonl` and
//! on `<job>.alerts` of a real broker; `logflow tail` prints them as one line each, from a
//! file (following it) and from the topic; `promtool` checks and unit-tests
//! monitoring/alerts.yml; and a real Prometheus scraping a running job evaluates those rules
//! and fires the detectors' alerts with the job's summaries.
//!
//! The expected alerts are computed here from the crafted input (counts, averages, z-score),
//! not read from a run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::kafka::{create_outputs, Broker, LOG_ANALYSES, USER_ANALYSES};
use common::prometheus::{port, Prometheus};
use common::{bin, read_jsonl, repo, rfc3339, run_file, run_ok, tmpdir};
use serde_json::{json, Value};

/// 2026-11-24T10:00:00Z.
const BASE: i64 = 1_795_514_400_000;
const MIN: i64 = 60_000;

/// One expected alert record, without `values` (checked against the detector's row).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Alert {
    alert: String,
    severity: String,
    state: String,
    window_start: Option<String>,
    window_end: Option<String>,
    key: String,
    summary: String,
}

impl Alert {
    fn of(rec: &Value) -> Alert {
        Alert {
            alert: rec["alert"].as_str().unwrap().into(),
            severity: rec["severity"].as_str().unwrap().into(),
            state: rec["state"].as_str().unwrap().into(),
            window_start: rec["window_start"].as_str().map(String::from),
            window_end: rec["window_end"].as_str().map(String::from),
            key: rec["key"].to_string(),
            summary: rec["summary"].as_str().unwrap().into(),
        }
    }

    fn firing(
        alert: &str,
        severity: &str,
        window: Option<(i64, i64)>,
        key: Value,
        summary: String,
    ) -> Alert {
        let (ws, we) = window.map_or((None, None), |(s, e)| (Some(rfc3339(s)), Some(rfc3339(e))));
        Alert {
            alert: alert.into(),
            severity: severity.into(),
            state: "firing".into(),
            window_start: ws,
            window_end: we,
            key: key.to_string(),
            summary,
        }
    }

    /// The line `logflow tail` prints for it.
    fn tail_line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.window_start.as_deref().unwrap_or("-"),
            self.severity.to_uppercase(),
            self.alert,
            self.summary
        )
    }
}

/// A number as docs/alerts.md says summaries show it: whole numbers without a fraction,
/// others with two decimals.
fn shown(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn log(ts: i64, service: &str, ip: &str, user: &str, rt: f64, status: u16) -> String {
    json!({
        "timestamp": rfc3339(ts), "level": if status >= 500 { "ERROR" } else { "INFO" },
        "service": service, "message": "GET /", "ip_address": ip, "user_id": user,
        "request_id": format!("r{ts}"), "response_time": rt, "status_code": status,
    })
    .to_string()
}

/// Logs that make each log detector fire exactly once, and the alerts they must give.
fn crafted_logs() -> (Vec<(i64, String)>, Vec<Alert>) {
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut want = Vec::new();
    // Response times are binary fractions: averages of equal values are exact, so a steady
    // service has a baseline deviation of exactly 0 (no z-score row).
    // ddos: 150 requests in minute 2 from one IP and one user.
    let ddos_ip = "203.0.113.66";
    for i in 0..150 {
        lines.push((
            BASE + 2 * MIN + i * 300,
            log(BASE + 2 * MIN + i * 300, "api", ddos_ip, "u-bot", 0.25, 200),
        ));
    }
    want.push(Alert::firing(
        "ddos",
        "critical",
        Some((BASE + 2 * MIN, BASE + 3 * MIN)),
        json!({ "ip_address": ddos_ip }),
        format!("DDoS suspected from {ddos_ip}: 150 requests in a minute from 1 users"),
    ));
    // suspicious_ips: 1200 requests in the first 5 minutes to 6 services by 10 users (240
    // a minute from 10 users: no DDoS).
    let sus_ip = "198.51.100.7";
    let services: Vec<String> = (1..=6).map(|i| format!("s{i}")).collect();
    for i in 0..1200i64 {
        let ts = BASE + i * 250;
        let s = &services[(i % 6) as usize];
        lines.push((ts, log(ts, s, sus_ip, &format!("u{}", i % 10), 0.25, 200)));
    }
    want.push(Alert::firing(
        "suspicious_ips",
        "warning",
        Some((BASE, BASE + 5 * MIN)),
        json!({ "ip_address": sus_ip }),
        format!(
            "Suspicious IP {sus_ip}: 1200 requests over 5 minutes to {}",
            json!(services)
        ),
    ));
    // error_rate_spikes: payments answers 10 requests a minute, all 200 for minutes 0-2, then
    // 5 of 10 fail in minute 3.
    let mut rates = Vec::new();
    for m in 0..4i64 {
        let mut errors = 0;
        for i in 0..10i64 {
            let status = if m == 3 && i % 2 == 0 { 500 } else { 200 };
            errors += i64::from(status >= 400);
            let ts = BASE + m * MIN + 1000 + i * 1000;
            lines.push((
                ts,
                log(
                    ts,
                    "payments",
                    &format!("10.0.1.{i}"),
                    &format!("p{i}"),
                    0.25,
                    status,
                ),
            ));
        }
        rates.push(errors as f64 * 100.0 / 10.0);
    }
    want.push(Alert::firing(
        "error_rate_spikes",
        "critical",
        Some((BASE + 3 * MIN, BASE + 4 * MIN)),
        json!({ "service": "payments" }),
        format!(
            "payments error rate up {} points to {}%",
            shown(rates[3] - rates[2]),
            shown(rates[3])
        ),
    ));
    // response_time_anomalies: checkout answers once a minute, alternating 0.25 s and 0.5 s
    // for six minutes (every z-score within 2), then 4 s.
    let rts = [0.25, 0.5, 0.25, 0.5, 0.25, 0.5, 4.0];
    for (m, rt) in rts.iter().enumerate() {
        let ts = BASE + m as i64 * MIN + 30_000;
        lines.push((ts, log(ts, "checkout", "10.0.2.1", "c1", *rt, 200)));
    }
    let prev = &rts[..6];
    let mean = prev.iter().sum::<f64>() / 6.0;
    let sd = (prev.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0).sqrt();
    want.push(Alert::firing(
        "response_time_anomalies",
        "warning",
        Some((BASE + 6 * MIN, BASE + 7 * MIN)),
        json!({ "service": "checkout" }),
        format!(
            "checkout response time {} s against a usual {} s (z-score {})",
            shown(4.0),
            shown(mean),
            shown((4.0 - mean) / sd)
        ),
    ));
    // Later traffic moves the watermark past every window above (for a source that does not
    // end).
    lines.push((
        BASE + 30 * MIN,
        log(BASE + 30 * MIN, "tick", "192.0.2.1", "t", 0.25, 200),
    ));
    lines.sort_by_key(|(ts, _)| *ts);
    want.sort();
    (lines, want)
}

/// User events that make each user-event detector fire exactly once.
fn crafted_user_events() -> (Vec<String>, Vec<Alert>) {
    let ev = |ts: i64, user: &str| {
        json!({ "timestamp": ts, "user_id": user, "action": "click", "value": 1.0,
                "session_id": format!("s-{user}"), "ip_address": "10.9.0.1" })
        .to_string()
    };
    let mut on_time: Vec<(i64, String)> = Vec::new();
    // user_anomalies (5 min windows every 2 min, over 50 events): 60 events evenly over
    // [10:04, 10:09) fill window 10:04 only; 10:02 and 10:06 each see 36 of them.
    for i in 0..60 {
        on_time.push((
            BASE + 4 * MIN + i * 5000,
            ev(BASE + 4 * MIN + i * 5000, "burst-user"),
        ));
    }
    // Progress to 10:30, one event a minute.
    for m in 0..=30 {
        on_time.push((BASE + m * MIN, ev(BASE + m * MIN, "bg")));
    }
    on_time.sort_by_key(|(ts, _)| *ts);
    let mut lines: Vec<String> = on_time.into_iter().map(|(_, l)| l).collect();
    // late_alerts (over 5 late events of a user): 6 events from 10:00, read at 10:30, late
    // for every analysis, counted in one trigger step.
    for i in 0..6 {
        lines.push(ev(BASE + i * 1000, "late-user"));
    }
    let mut want = vec![
        Alert::firing(
            "user_anomalies",
            "warning",
            Some((BASE + 4 * MIN, BASE + 9 * MIN)),
            json!({ "user_id": "burst-user" }),
            "User burst-user: 60 events in 5 minutes (total value 60)".into(),
        ),
        Alert::firing(
            "late_alerts",
            "info",
            None,
            json!({ "user_id": "late-user" }),
            format!(
                "User late-user: 6 events arrived after their windows closed, the earliest from {}",
                rfc3339(BASE)
            ),
        ),
    ];
    want.sort();
    (lines, want)
}

fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The alerts of a file or topic, sorted.
fn alerts_of(records: &[Value]) -> Vec<Alert> {
    let mut got: Vec<Alert> = records.iter().map(Alert::of).collect();
    got.sort();
    got
}

/// Each alert's `values` is its detector's row (without the window), and each detector wrote
/// exactly the rows that alerted.
fn assert_values_are_rows(alerts: &[Value], out: &Path) {
    for rec in alerts {
        let name = rec["alert"].as_str().unwrap();
        let rows = read_jsonl(&out.join(format!("{name}.jsonl")));
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        let mut row = rows[0].clone();
        let o = row.as_object_mut().unwrap();
        o.remove("window_start");
        o.remove("window_end");
        assert_eq!(rec["values"], row, "{name}");
    }
}

#[test]
fn each_detector_fires_once_into_the_alerts_file_and_tail_reads_it() {
    let dir = tmpdir("alerts-files");
    let (logs, want_logs) = crafted_logs();
    let input = dir.join("logs.jsonl");
    write_lines(&input, logs.into_iter().map(|(_, l)| l));
    let out = dir.join("out");
    let run = run_file("dataflows/log-analysis.toml", &input, &out, "2");
    assert_eq!(common::accounting(&run.stderr)["dead_letter"], 0);
    let alerts_file = out.join("log-analysis.alerts.jsonl");
    let records = read_jsonl(&alerts_file);
    assert_eq!(alerts_of(&records), want_logs);
    assert_values_are_rows(&records, &out);

    let (events, want_events) = crafted_user_events();
    let input = dir.join("events.jsonl");
    write_lines(&input, events);
    let out_u = dir.join("out-user");
    let run = run_file("dataflows/user-events.toml", &input, &out_u, "1");
    assert_eq!(common::accounting(&run.stderr)["late"], 6);
    let records = read_jsonl(&out_u.join("user-events.alerts.jsonl"));
    assert_eq!(alerts_of(&records), want_events);
    assert_values_are_rows(&records, &out_u);

    // tail: the whole file, one readable line per alert, in file order.
    let tail = run_ok(&[
        "tail",
        alerts_file.to_str().unwrap(),
        "--from-beginning",
        "--idle-exit",
        "300ms",
    ]);
    let printed: Vec<String> = String::from_utf8(tail.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let in_order: Vec<String> = read_jsonl(&alerts_file)
        .iter()
        .map(|r| Alert::of(r).tail_line())
        .collect();
    assert_eq!(printed, in_order);

    // tail follows: only what is appended after it started, as it arrives.
    let mut child = bin()
        .args(["tail", alerts_file.to_str().unwrap(), "--max", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let late = &read_jsonl(&out_u.join("user-events.alerts.jsonl"))[0];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&alerts_file)
        .unwrap();
    // Written in two pieces: a line is printed once it is whole.
    let text = late.to_string();
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    f.write_all(format!("{b}\n").as_bytes()).unwrap();
    drop(f);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim_end(), Alert::of(late).tail_line());
    assert!(child.wait().unwrap().success());
}

#[test]
fn alerts_on_a_real_broker_equal_the_files_and_tail_reads_the_topic() {
    let dir = tmpdir("alerts-kafka");
    let b = Broker::start("kafka-alerts");
    let (logs, want_logs) = crafted_logs();
    let input = dir.join("logs.jsonl");
    write_lines(&input, logs.into_iter().map(|(_, l)| l));
    let (events, want_events) = crafted_user_events();
    let ev_input = dir.join("events.jsonl");
    write_lines(&ev_input, events);
    b.topics(&[("logs".into(), 1), ("user-events".into(), 1)]);
    create_outputs(&b, "log-analysis", None, &LOG_ANALYSES);
    let mut user = USER_ANALYSES.to_vec();
    user.push("late_alerts");
    create_outputs(&b, "user-events", None, &user);
    b.produce("logs", &input);
    b.produce("user-events", &ev_input);
    for spec in ["dataflows/log-analysis.toml", "dataflows/user-events.toml"] {
        run_ok(&[
            "run",
            spec,
            "--brokers",
            &b.address,
            "--stop-at-end",
            "-w",
            "2",
        ]);
    }
    for (job, want) in [("log-analysis", &want_logs), ("user-events", &want_events)] {
        let records = b.dump(&format!("{job}.alerts"), &dir);
        let values: Vec<Value> = records.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(&alerts_of(&values), want, "{job}");
        // Keyed by alert, window and key: a compacted topic keeps each alert's latest state.
        for (key, v) in &records {
            let mut k = format!("{}|", v["alert"].as_str().unwrap());
            if let Some(ws) = v["window_start"].as_str() {
                k.push_str(ws);
                k.push('|');
            }
            let keys: Vec<String> = v["key"]
                .as_object()
                .unwrap()
                .values()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            k.push_str(&keys.join("|"));
            assert_eq!(key.as_deref(), Some(k.as_str()), "{v}");
        }
    }
    let tail = run_ok(&[
        "tail",
        "log-analysis.alerts",
        "--brokers",
        &b.address,
        "--from-beginning",
        "--max",
        "4",
        "--idle-exit",
        "20s",
    ]);
    let mut printed: Vec<String> = String::from_utf8(tail.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    printed.sort();
    let mut want: Vec<String> = want_logs.iter().map(Alert::tail_line).collect();
    want.sort();
    assert_eq!(printed, want);
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    for args in [
        vec!["promtool", "check", "rules", "monitoring/alerts.yml"],
        vec!["promtool", "test", "rules", "monitoring/alerts_test.yml"],
    ] {
        let out = std::process::Command::new(repo().join("scripts/prometheus"))
            .args(&args)
            .current_dir(repo())
            .env("PROMETHEUS_STATE_DIR", repo().join("target/prometheus-it"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("SUCCESS"), "{args:?}: {text}");
    }
}

#[test]
fn prometheus_fires_the_detectors_alerts_of_a_running_job() {
    let metrics_port = port("LOGFLOW_IT_METRICS_PORT", 19798);
    let prom_port = port("LOGFLOW_IT_PROMETHEUS_PORT", 19790);
    let target = format!("127.0.0.1:{metrics_port}");
    let dir = tmpdir("alerts-prometheus");
    // The log job over a watched directory: it keeps running (and serving metrics) after
    // reading the crafted file.
    let incoming = dir.join("in");
    std::fs::create_dir_all(&incoming).unwrap();
    let spec_text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml"))
        .unwrap()
        .replacen(
            "kind = \"kafka\"\ntopic = \"logs\"",
            &format!(
                "kind = \"directory\"\npath = \"{}\"\npattern = \"*.jsonl\"",
                incoming.display()
            ),
            1,
        );
    assert!(spec_text.contains("kind = \"directory\""));
    let spec = dir.join("dir-job.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let (logs, want) = crafted_logs();
    let staged = dir.join("logs.jsonl");
    write_lines(&staged, logs.into_iter().map(|(_, l)| l));

    let prom = Prometheus::start_with_rules(
        prom_port,
        &target,
        &[repo().join("monitoring/alerts.yml").to_str().unwrap()],
    );
    let mut job = bin()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--output-dir",
            dir.join("out").to_str().unwrap(),
            "--metrics-addr",
            &target,
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::rename(&staged, incoming.join("logs.jsonl")).unwrap();

    let by_rule = [
        ("ddos", "LogflowDDoS"),
        ("suspicious_ips", "LogflowSuspiciousIP"),
        ("error_rate_spikes", "LogflowErrorRateSpike"),
        ("response_time_anomalies", "LogflowResponseTimeAnomaly"),
    ];
    let expected: BTreeSet<(String, String, String)> = want
        .iter()
        .map(|a| {
            let rule = by_rule.iter().find(|(n, _)| *n == a.alert).unwrap().1;
            (rule.to_string(), a.severity.clone(), a.summary.clone())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let firing = loop {
        let alerts = prom.api("/api/v1/alerts", &[]);
        let firing: BTreeSet<(String, String, String)> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a["labels"]["severity"].as_str().unwrap().to_string(),
                    a["annotations"]["summary"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if firing == expected || Instant::now() > deadline {
            break firing;
        }
        if let Ok(Some(status)) = job.try_wait() {
            panic!("the job ended ({status}) before Prometheus fired its alerts");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = job.kill();
    let _ = job.wait();
    // Exactly the detectors' alerts, with the summaries the job rendered: no pipeline alert
    // for a healthy job.
    assert_eq!(firing, expected);
}
