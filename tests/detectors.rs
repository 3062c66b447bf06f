//! Crafted inputs with known answers for the detectors and for lateness: which rows appear,
//! which events are late and against which watermark.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{accounting, read_jsonl, run_file, tmpdir, TmpDir};
use serde_json::{json, Value};

fn line(ts: &str, ip: &str, user: &str, service: &str) -> String {
    json!({"timestamp": ts, "level": "INFO", "service": service, "ip_address": ip, "user_id": user,
           "response_time": 0.1, "status_code": 200})
    .to_string()
}

/// The output directory (removed when the test passes) and stderr.
fn run(spec: &str, name: &str, lines: &[String]) -> (TmpDir, Vec<u8>) {
    let dir = tmpdir(name);
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let res = run_file(spec, &input, &dir.join("out"), "2");
    (dir.into_sub("out"), res.stderr)
}

#[test]
fn intersect_keeps_rows_whose_key_is_flagged_by_both_analyses() {
    let services = ["a", "b", "c", "d", "e", "f", "g"];
    let mut lines = Vec::new();
    // 10.0.0.1: 1100 requests in 10:00-10:05 over 7 services from one user: DDoS-like every
    // minute, and a scanner.
    for i in 0..1100 {
        let ts = format!(
            "2026-11-24T10:0{}:{:02}.{:03}Z",
            i / 220,
            (i % 220) / 4,
            i % 1000
        );
        lines.push(line(&ts, "10.0.0.1", "u1", services[i % 7]));
    }
    // 10.0.0.2: 150 requests in one minute, one service: DDoS-like only.
    for i in 0..150 {
        lines.push(line(
            &format!("2026-11-24T10:01:{:02}Z", i % 60),
            "10.0.0.2",
            "u2",
            "a",
        ));
    }
    // 10.0.0.3: 1100 requests over 7 services from 10 users: a scanner, not DDoS-like.
    for i in 0..1100 {
        let ts = format!("2026-11-24T10:0{}:{:02}Z", i / 220, (i % 220) / 4);
        lines.push(line(
            &ts,
            "10.0.0.3",
            &format!("v{}", i % 10),
            services[i % 7],
        ));
    }
    lines.sort_by_key(|l| {
        serde_json::from_str::<Value>(l).unwrap()["timestamp"]
            .as_str()
            .unwrap()
            .to_string()
    });
    let (out, _) = run("dataflows/examples/threats.toml", "intersect", &lines);
    let ddos = read_jsonl(&out.join("ddos.jsonl"));
    let suspicious = read_jsonl(&out.join("suspicious_ips.jsonl"));
    let both = read_jsonl(&out.join("ddos_and_scanning.jsonl"));
    assert_eq!(
        ddos.iter()
            .filter(|r| r["ip_address"] == "10.0.0.1")
            .count(),
        5
    );
    assert_eq!(
        ddos.iter()
            .filter(|r| r["ip_address"] == "10.0.0.2")
            .count(),
        1
    );
    let flagged: Vec<&Value> = suspicious.iter().map(|r| &r["ip_address"]).collect();
    assert_eq!(flagged, vec!["10.0.0.1", "10.0.0.3"]);
    assert_eq!(both.len(), 5, "{both:?}");
    for r in &both {
        assert_eq!(r["ip_address"], "10.0.0.1");
        assert!(
            ddos.contains(r),
            "an intersect row is the ddos row itself: {r}"
        );
    }
}

#[test]
fn late_events_miss_only_the_windows_that_closed() {
    let lines = vec![
        line("2026-11-24T10:00:30Z", "1.1.1.1", "u1", "api"),
        // Progress jumps to 10:07: 1-minute windows up to [10:01, 10:02) close (delay 5 min).
        line("2026-11-24T10:07:00Z", "1.1.1.1", "u1", "api"),
        // Late for the 1-minute analyses ([10:00, 10:01) closed at 10:06), not for the 5-minute
        // ones with a 10-minute delay ([10:00, 10:05) closes at 10:15).
        line("2026-11-24T10:00:40Z", "1.1.1.1", "u2", "api"),
        // Within the delay: on time.
        line("2026-11-24T10:03:00Z", "1.1.1.1", "u3", "api"),
    ];
    let (out, stderr) = run("dataflows/log-analysis.toml", "lateness", &lines);
    let acc = accounting(&stderr);
    assert_eq!(
        (acc["read"], acc["parsed"], acc["late"], acc["on_time"]),
        (4, 4, 1, 3)
    );
    let late = read_jsonl(&out.join("log-analysis.late.jsonl"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["event_time"], "2026-11-24T10:00:40Z");
    assert_eq!(late[0]["watermark"], "2026-11-24T10:02:00Z");
    assert_eq!(late[0]["position"]["line"], 3);
    let mut missed: Vec<&str> = late[0]["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["analysis"].as_str().unwrap())
        .collect();
    missed.sort_unstable();
    // Exactly the 1-minute analyses: not ip_patterns and user_activity (5-minute windows,
    // 10-minute delay), nor the detectors, which read other analyses' rows, not events.
    assert_eq!(
        missed,
        [
            "ddos",
            "error_rate",
            "response_time",
            "service_popularity",
            "sla",
            "system_health",
        ]
    );
    // The late event is in the 5-minute windows but not in the 1-minute ones.
    let health = read_jsonl(&out.join("system_health.jsonl"));
    let at =
        |rows: &[Value], start: &str| rows.iter().find(|r| r["window_start"] == start).cloned();
    assert_eq!(
        at(&health, "2026-11-24T10:00:00Z").unwrap()["total_requests"],
        1
    );
    let ips = read_jsonl(&out.join("ip_patterns.jsonl"));
    let w = at(&ips, "2026-11-24T10:00:00Z").unwrap();
    assert_eq!(
        (w["request_count"].clone(), w["unique_users"].clone()),
        (json!(3), json!(3))
    );
}

#[test]
fn zscore_and_lag_on_a_crafted_series() {
    // One service, one request per minute for 12 minutes: response times 1,2,1,2,... then 10.
    let mut lines = Vec::new();
    for m in 0..12 {
        let rt = if m == 11 {
            10.0
        } else if m % 2 == 0 {
            1.0
        } else {
            2.0
        };
        let status = if m == 11 { 500 } else { 200 };
        lines.push(
            json!({"timestamp": format!("2026-11-24T10:{m:02}:10Z"), "service": "api", "response_time": rt, "status_code": status})
                .to_string(),
        );
    }
    let (out, _) = run("dataflows/log-analysis.toml", "zscore", &lines);
    let z = read_jsonl(&out.join("response_time_anomalies.jsonl"));
    assert_eq!(z.len(), 1, "{z:?}");
    assert_eq!(z[0]["window_start"], "2026-11-24T10:11:00Z");
    // Baseline: the 10 previous windows (minutes 1..10): five 1.0 and five 2.0.
    assert_eq!(z[0]["baseline_mean"], 1.5);
    let sd = (10.0f64 * 0.25 / 9.0).sqrt();
    assert!((z[0]["baseline_stddev"].as_f64().unwrap() - sd).abs() < 1e-12);
    assert!((z[0]["z_score"].as_f64().unwrap() - (10.0 - 1.5) / sd).abs() < 1e-9);
    let spikes = read_jsonl(&out.join("error_rate_spikes.jsonl"));
    assert_eq!(spikes.len(), 1);
    assert_eq!(spikes[0]["window_start"], "2026-11-24T10:11:00Z");
    assert_eq!(
        (
            spikes[0]["error_rate"].clone(),
            spikes[0]["prev_error_rate"].clone()
        ),
        (json!(100.0), json!(0.0))
    );
    assert_eq!(spikes[0]["error_rate_change"], 100.0);
}
