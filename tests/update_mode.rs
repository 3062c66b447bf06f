//! Late data strategies and output modes, event by event: a scripted arrival order (on time,
//! late within allowed lateness, too late) and the exact results and corrections each mode
//! writes; update-mode final state against append mode on a generated set (a differential
//! check: `tests/oracle` compares both modes with an independent model); `late_alerts`
//! against the oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::oracle::{self, Reference};
use common::{accounting, read_jsonl, run_file, run_ok, tmpdir, TmpDir};
use serde_json::{json, Value};

const SPEC: &str = r#"
name = "lateness"

[source]
kind = "file"
path = "in.jsonl"
format = "json"

[watermark]
delay = "10s"

[[analysis]]
name = "upd"
mode = "update"
window = { size = "1m" }
allowed_lateness = "30s"
group_by = ["service"]
select = ["count() as n", "sum(response_time) as total"]

[[analysis]]
name = "app"
window = { size = "1m" }
allowed_lateness = "30s"
group_by = ["service"]
select = ["count() as n", "sum(response_time) as total"]

[[analysis]]
name = "strict"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as n"]

[[analysis]]
name = "upd_small"
mode = "update"
window = { size = "1m" }
allowed_lateness = "30s"
group_by = ["service"]
select = ["count() as n"]
having = "n < 3"
"#;

fn log(ts: &str, rt: f64) -> String {
    json!({"timestamp": format!("2026-11-24T10:{ts}Z"), "service": "a", "response_time": rt})
        .to_string()
}

/// The output directory (removed when the test passes) and stderr.
fn run(spec: &str, name: &str, lines: &[String], workers: &str) -> (TmpDir, Vec<u8>) {
    let dir = tmpdir(name);
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (_, stderr) = run_on(spec, &dir, &input, workers);
    (dir.into_sub("out"), stderr)
}

/// Runs `spec` (written to `dir`) over `input`; returns the output dir and stderr.
fn run_on(spec: &str, dir: &Path, input: &Path, workers: &str) -> (PathBuf, Vec<u8>) {
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = dir.join("out");
    let res = run_file(spec_path.to_str().unwrap(), input, &out, workers);
    (out, res.stderr)
}

/// `(window_start minute, n, retracted)` of each row, in file order.
fn counts(out: &Path, analysis: &str) -> Vec<(String, Option<i64>, bool)> {
    read_jsonl(&out.join(format!("{analysis}.jsonl")))
        .iter()
        .map(|r| {
            assert_eq!(r["service"], "a");
            (
                r["window_start"].as_str().unwrap()[14..16].to_string(),
                r["n"].as_i64(),
                r.get("retracted") == Some(&Value::Bool(true)),
            )
        })
        .collect()
}

/// The table an update-mode output describes: the last row per (window, key); tombstones
/// delete. Keys are the row's `window_start` and the given key columns.
fn final_state(rows: &[Value], keys: &[&str]) -> BTreeMap<String, Value> {
    let mut table = BTreeMap::new();
    for r in rows {
        let mut k = r["window_start"].as_str().unwrap_or("").to_string();
        for c in keys {
            k.push('|');
            k.push_str(&r[*c].to_string());
        }
        if r.get("retracted") == Some(&Value::Bool(true)) {
            assert!(
                table.remove(&k).is_some(),
                "tombstone for a missing row {k}"
            );
        } else {
            table.insert(k, r.clone());
        }
    }
    table
}

#[test]
fn scripted_arrivals_give_early_results_corrections_and_late_records() {
    // Progress g = 10 s. Window 10:00 closes for `strict` at 10:01:10, for the others at
    // 10:01:40 (allowed lateness 30 s).
    let lines = [
        log("00:05", 0.1), // t=0: early result, 10:00 n=1
        log("00:20", 0.2), // t=10:00:00: 10:00 n=2
        log("01:05", 0.3), // t=10:00:20: 10:01 n=1
        log("01:25", 0.4), // t=10:01:00: 10:01 n=2
        log("00:30", 0.5), // t=10:01:20: behind the watermark, within allowed lateness: a
        //                    correction (10:00 n=3); late for `strict` only
        log("02:05", 0.6), // t=10:01:20: 10:02 n=1
        log("00:40", 0.7), // t=10:02:00: too late for everyone
        log("01:10", 0.8), // t=10:02:00: 10:01 n=3
    ]
    .map(String::from);
    for workers in ["1", "2"] {
        let (out, stderr) = run(SPEC, &format!("scripted-{workers}"), &lines, workers);
        let acc = accounting(&stderr);
        assert_eq!(
            (acc["read"], acc["parsed"], acc["on_time"], acc["late"]),
            (8, 8, 6, 2)
        );
        let row = |m: &str, n: i64| (m.to_string(), Some(n), false);
        let gone = |m: &str| (m.to_string(), None, true);
        assert_eq!(
            counts(&out, "upd"),
            [
                row("00", 1),
                row("00", 2),
                row("01", 1),
                row("01", 2),
                row("00", 3),
                row("02", 1),
                row("01", 3)
            ]
        );
        assert_eq!(
            counts(&out, "upd_small"),
            [
                row("00", 1),
                row("00", 2),
                row("01", 1),
                row("01", 2),
                gone("00"), // n reached 3: no longer passes `having`
                row("02", 1),
                gone("01")
            ]
        );
        assert_eq!(
            counts(&out, "app"),
            [row("00", 3), row("01", 3), row("02", 1)]
        );
        assert_eq!(
            counts(&out, "strict"),
            [row("00", 2), row("01", 3), row("02", 1)]
        );
        // Update mode's last word per window is append mode's only one.
        let upd = final_state(&read_jsonl(&out.join("upd.jsonl")), &["service"]);
        let app = final_state(&read_jsonl(&out.join("app.jsonl")), &["service"]);
        assert_eq!(upd, app);
        assert!((app["2026-11-24T10:00:00Z|\"a\""]["total"].as_f64().unwrap() - 0.8).abs() < 1e-12);

        let late = read_jsonl(&out.join("lateness.late.jsonl"));
        let missed: Vec<(String, Vec<String>)> = late
            .iter()
            .map(|l| {
                let mut m: Vec<String> = l["missed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["analysis"].as_str().unwrap().to_string())
                    .collect();
                m.sort();
                (l["event_time"].as_str().unwrap()[14..19].to_string(), m)
            })
            .collect();
        assert_eq!(
            missed,
            [
                ("00:30".to_string(), vec!["strict".to_string()]),
                (
                    "00:40".to_string(),
                    ["app", "strict", "upd", "upd_small"]
                        .map(String::from)
                        .to_vec()
                ),
            ]
        );
    }
}

#[test]
fn update_mode_final_state_equals_append_mode_on_generated_logs() {
    let dir = tmpdir("update-vs-append-gen");
    let input = dir.join("logs.jsonl");
    run_ok(&[
        "gen",
        "--events",
        "100000",
        "--late-fraction",
        "0.02",
        "--event-rate",
        "20",
        "--disorder",
        "90s",
        "--output",
        input.to_str().unwrap(),
    ]);
    let pair = |name: &str, window: &str, keys: &str, select: &str, having: &str| {
        ["update", "append"]
            .map(|mode| {
                format!(
                    "[[analysis]]\nname = \"{name}_{mode}\"\nmode = \"{mode}\"\nwindow = {window}\n\
                     allowed_lateness = \"40s\"\ngroup_by = {keys}\nselect = {select}\n{having}\n"
                )
            })
            .join("\n")
    };
    let spec = [
        "name = \"modes\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n[watermark]\ndelay = \"20s\"\n".to_string(),
        pair(
            "rt",
            "{ size = \"1m\" }",
            "[\"service\"]",
            "[\"count() as n\", \"avg(response_time) as avg_rt\", \"stddev(response_time) as sd\", \"max(response_time) as max_rt\"]",
            "",
        ),
        pair(
            "ips",
            "{ size = \"5m\", slide = \"1m\" }",
            "[\"ip_address\"]",
            "[\"count() as n\", \"count_distinct(user_id) as users\", \"collect_set(service) as services\"]",
            "having = \"n > 3\"",
        ),
    ]
    .join("\n");
    let (out, stderr) = run_on(&spec, &dir, &input, "2");
    let acc = accounting(&stderr);
    assert!(acc["late"] > 100, "the set must exercise lateness: {acc:?}");
    for (name, keys) in [("rt", ["service"]), ("ips", ["ip_address"])] {
        let upd_rows = read_jsonl(&out.join(format!("{name}_update.jsonl")));
        let app_rows = read_jsonl(&out.join(format!("{name}_append.jsonl")));
        let upd = final_state(&upd_rows, &keys);
        let app = final_state(&app_rows, &keys);
        assert!(
            upd_rows.len() > app_rows.len(),
            "{name}: update mode must show early results"
        );
        assert_eq!(upd.len(), app.len(), "{name}: windows and keys");
        // Bit for bit, floats included: aggregates are exact whatever the merge order.
        assert_eq!(upd, app, "{name}");
    }
}

#[test]
fn late_alerts_count_each_users_late_events_in_update_mode() {
    let ev = |ts: &str, user: &str| {
        json!({"timestamp": format!("2026-11-24T10:{ts}Z"), "user_id": user, "action": "view",
               "value": 1.0, "session_id": "s", "ip_address": "10.0.0.1"})
        .to_string()
    };
    let mut lines: Vec<String> = (0..=60)
        .map(|i| ev(&format!("{:02}:{:02}", i / 2, (i % 2) * 30), "u3"))
        .collect(); // on time, up to 10:30
                    // u1: six events behind every window (the earliest is not the first to arrive); u2: five.
    for ts in ["00:05", "00:02", "00:09", "00:01", "00:07", "00:03"] {
        lines.push(ev(ts, "u1"));
    }
    for ts in ["00:01", "00:02", "00:03", "00:04", "00:05"] {
        lines.push(ev(ts, "u2"));
    }
    lines.push(ev("30:40", "u3")); // progress moves on 40 s: a new epoch
    lines.push(ev("00:04", "u1")); // u1's seventh
    let dir = tmpdir("late-alerts");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.join("out");
    let res = run_file("dataflows/user-events.toml", &input, &out, "1");
    assert_eq!(accounting(&res.stderr)["late"], 12);
    let alerts = read_jsonl(&out.join("late_alerts.jsonl"));
    let first = "2026-11-24T10:00:01Z";
    assert_eq!(
        alerts,
        [
            json!({"user_id": "u1", "late_event_count": 6, "earliest_late_event": first}),
            json!({"user_id": "u1", "late_event_count": 7, "earliest_late_event": first}),
        ]
    );
}

#[test]
fn late_alerts_final_state_matches_the_late_output() {
    let dir = tmpdir("late-alerts-gen");
    let input = dir.join("events.jsonl");
    run_ok(&[
        "gen",
        "--kind",
        "user-events",
        "--events",
        "60000",
        "--late-fraction",
        "0.3",
        "--event-rate",
        "10",
        // Past the 5-minute delay: events near the watermark too, not only far behind.
        "--disorder",
        "7m",
        "--output",
        input.to_str().unwrap(),
    ]);
    let out = dir.join("out");
    let res = run_file("dataflows/user-events.toml", &input, &out, "2");
    // Independently of the engine: the oracle decides which events are late (the watermark
    // recomputed from the input order) and what `late_alerts` writes, row by row per user;
    // it checks the late records and every other output too.
    let reference = Reference::new(&oracle::user_events(), &input);
    reference.assert_matches(&out, "user-events");
    // And consistent with the job's own late output: per user, the late records' count and
    // earliest event time.
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let mut want: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for l in read_jsonl(&out.join("user-events.late.jsonl")) {
        let raw: Value = serde_json::from_str(l["raw"].as_str().unwrap()).unwrap();
        let user = raw["user_id"].to_string(); // a missing user groups as null
        let t = l["event_time"].as_str().unwrap().to_string();
        let e = want.entry(user).or_insert((0, t.clone()));
        e.0 += 1;
        if ms(&t) < ms(&e.1) {
            e.1 = t;
        }
    }
    assert_eq!(
        want.values().map(|v| v.0 as u64).sum::<u64>(),
        accounting(&res.stderr)["late"]
    );
    want.retain(|_, v| v.0 > 5);
    assert!(want.len() > 10, "the set must raise alerts: {}", want.len());
    let rows = read_jsonl(&out.join("late_alerts.jsonl"));
    let got: BTreeMap<String, (i64, String)> = final_state(&rows, &["user_id"])
        .into_values()
        .map(|r| {
            (
                r["user_id"].to_string(),
                (
                    r["late_event_count"].as_i64().unwrap(),
                    r["earliest_late_event"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        rows.len() > got.len(),
        "counts are updated as late events arrive"
    );
}
