//! The Spark streaming tutorial's examples as logflow specs (`dataflows/examples/`), each run
//! on crafted input and compared exactly with a small batch computation written here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;

use common::{accounting, read_jsonl, rfc3339, run_file, starts, tmpdir};
use serde_json::{json, Value};

const T0: i64 = 1_795_514_400_000; // 2026-11-24T10:00:00Z

/// (timestamp ms, user_id, action, value)
type Ev = (i64, &'static str, &'static str, f64);

#[test]
fn event_time_examples_match_a_batch_computation() {
    // 25 minutes of events from three users doing three actions; values are multiples of 0.25
    // so every sum is exact in any order. In time order: nothing is late.
    let users = ["u1", "u2", "u3"];
    let actions = ["view", "click", "buy"];
    let events: Vec<Ev> = (0..300)
        .map(|i: i64| {
            let ts = T0 + i * 5_000 + (i * 7919 % 1000);
            let user = users[(i * i % 7 % 3) as usize];
            let action = actions[(i % 5 % 3) as usize];
            (ts, user, action, (i % 13) as f64 * 0.25)
        })
        .collect();
    let dir = tmpdir("spark-event-time");
    let input = dir.join("events.jsonl");
    let lines: Vec<String> = events
        .iter()
        .map(|(ts, u, a, v)| {
            json!({"timestamp": ts, "user_id": u, "action": a, "value": v,
                   "session_id": "s", "ip_address": "10.0.0.1"})
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.join("out");
    let res = run_file(
        "dataflows/examples/spark-event-time.toml",
        &input,
        &out,
        "2",
    );
    assert_eq!(accounting(&res.stderr)["on_time"], 300);

    // Batch: group by (window, key) and aggregate.
    let group = |size: i64, slide: i64, key: &dyn Fn(&Ev) -> String| {
        let mut g: BTreeMap<(i64, String), Vec<(i64, f64)>> = BTreeMap::new();
        for e in &events {
            for s in starts(e.0, size, slide) {
                g.entry((s, key(e))).or_default().push((e.0, e.3));
            }
        }
        g
    };
    let window = |s: i64, size: i64| (rfc3339(s), rfc3339(s + size));
    let sorted = |mut rows: Vec<Value>| {
        rows.sort_by_key(|r| r.to_string());
        rows
    };

    let want: Vec<Value> = group(300_000, 60_000, &|e| e.1.to_string())
        .into_iter()
        .map(|((s, user), evs)| {
            let (ws, we) = window(s, 300_000);
            let total: f64 = evs.iter().map(|e| e.1).sum();
            json!({"window_start": ws, "window_end": we, "user_id": user,
                   "event_count": evs.len(), "total_value": total,
                   "avg_value": total / evs.len() as f64})
        })
        .collect();
    let got = read_jsonl(&out.join("user_windows.jsonl"));
    assert_eq!(sorted(got), sorted(want), "user_windows");

    let want: Vec<Value> = group(300_000, 300_000, &|e| e.2.to_string())
        .into_iter()
        .map(|((s, action), evs)| {
            let (ws, we) = window(s, 300_000);
            let total: f64 = evs.iter().map(|e| e.1).sum();
            json!({"window_start": ws, "window_end": we, "action": action,
                   "count": evs.len(), "total_value": total})
        })
        .collect();
    let got = read_jsonl(&out.join("action_windows.jsonl"));
    assert_eq!(sorted(got), sorted(want), "action_windows");

    let want: Vec<Value> = group(120_000, 120_000, &|e| e.1.to_string())
        .into_iter()
        .map(|((s, user), evs)| {
            let (ws, we) = window(s, 120_000);
            let latest = evs.iter().map(|e| e.0).max().unwrap();
            json!({"window_start": ws, "window_end": we, "user_id": user,
                   "latest_event_time": rfc3339(latest)})
        })
        .collect();
    let got = read_jsonl(&out.join("latest_event.jsonl"));
    assert_eq!(sorted(got), sorted(want), "latest_event");
}
