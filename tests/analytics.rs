//! Percentiles, approximate distinct counts and top-k (issue 28) through the real binary:
//! against a batch computation here (exact sorted values, exact distinct sets, exact counts),
//! the same bits with `-w 1`, `-w 2` and 2 processes, and the same results after kill -9 and
//! a restore from checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use common::oracle::expected::{group, quantile, top_k};
use common::oracle::input::{read_events, Ev, Input};
use common::recovery::killed_and_whole_runs;
use common::{accounting, run_file, run_ok, tmpdir};

use logflow::gen::{GenConfig, Kind};

/// The documented bounds: the sketch's relative error, HyperLogLog's (3 standard errors).
const SKETCH_ERROR: f64 = 0.01;
const HLL_ERROR: f64 = 0.05;

const MINUTE: i64 = 60_000;

fn spec() -> String {
    String::from(
        r#"name = "analytics"
[source]
kind = "file"
path = "logs.jsonl"  # replaced by --input
format = "json"

[[analysis]]
name = "latency"
window = { size = "5m" }
group_by = ["service"]
select = [
  "count() as n",
  "percentiles(response_time, [0.5, 0.9, 0.99]) as pcts",
  "median(response_time) as p50",
  "percentile(response_time, 0.999) as p999",
  "percentile_exact(response_time, [0.5, 0.99]) as exact",
  "approx_count_distinct(user_id) as users",
  "approx_count_distinct(ip_address) as ips",
  "top_k(ip_address, 5) as top_ips",
]

[[analysis]]
name = "totals"
window = { size = "1h" }
select = [
  "count() as n",
  "approx_count_distinct(request_id) as requests",
  "top_k(status_code, 3) as top_status",
  "percentile(response_time, 0.95) as p95",
]
"#,
    )
}

/// Generated logs (1% bad lines, disorder below the delay, incidents with heavy-hitter IPs).
fn input(name: &str, events: u64) -> Input {
    Input::generate(
        name,
        GenConfig {
            kind: Kind::Logs,
            events,
            seed: 28,
            ..GenConfig::default()
        },
    )
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_within(got: &Value, exact: Option<f64>, rel: f64, what: &str) {
    match exact {
        None => assert!(got.is_null(), "{what}: {got}, expected null"),
        Some(e) => {
            let g = num(got);
            assert!(
                (g - e).abs() <= rel * e.abs() * (1.0 + 1e-9),
                "{what}: {g}, exact {e}, more than {rel} apart"
            );
        }
    }
}

fn rows(dir: &Path, analysis: &str) -> BTreeMap<(String, String), Value> {
    common::read_jsonl(&dir.join(format!("{analysis}.jsonl")))
        .into_iter()
        .map(|r| {
            let key = r.get("service").cloned().unwrap_or(Value::Null).to_string();
            ((r["window_start"].as_str().unwrap().to_string(), key), r)
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    common::oracle::expected::fmt_ts(ms)
}

/// Every row against the batch computation over the events.
fn check_against_batch(input: &Input, events: &[Ev], dir: &Path) {
    // The batch reader leaves `request_id` out: read it from the event's line.
    let request_id = |e: &Ev| -> Option<String> {
        let v: Value = serde_json::from_slice(&input.lines[e.line - 1]).ok()?;
        v.get("request_id")?.as_str().map(String::from)
    };
    let latency = rows(dir, "latency");
    let groups = group(events, 5 * MINUTE, 5 * MINUTE, 5 * MINUTE, |e| {
        vec![e.service.clone()]
    });
    assert_eq!(latency.len(), groups.len(), "latency rows");
    let mut dense_ips = 0;
    let mut heavy = 0;
    for ((start, key), evs) in &groups {
        let service = key[0].clone().map_or(Value::Null, Value::String);
        let what = format!("latency {} {service}", rfc3339(*start));
        let row = latency
            .get(&(rfc3339(*start), service.to_string()))
            .unwrap_or_else(|| panic!("{what}: no row"));
        assert_eq!(row["n"], json!(evs.len()), "{what}");
        let rts: Vec<f64> = evs.iter().filter_map(|e| e.rt).collect();
        let pcts = row["pcts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if rts.is_empty() {
            assert!(row["pcts"].is_null(), "{what}: {row}");
        } else {
            assert_eq!(pcts.len(), 3, "{what}: {row}");
        }
        for (i, q) in [0.5, 0.9, 0.99].into_iter().enumerate() {
            if let Some(got) = pcts.get(i) {
                assert_within(
                    got,
                    quantile(&rts, q),
                    SKETCH_ERROR,
                    &format!("{what} q{q}"),
                );
            }
        }
        // `median` shares the sketch of `percentile`: the list's answer, to the bit.
        if let Some(p) = pcts.first() {
            assert_eq!(&row["p50"], p, "{what}");
        }
        assert_within(&row["p999"], quantile(&rts, 0.999), SKETCH_ERROR, &what);
        let exact: Vec<Value> = [0.5, 0.99]
            .iter()
            .map(|q| quantile(&rts, *q).map_or(Value::Null, |x| json!(x)))
            .collect();
        let want_exact = if rts.is_empty() {
            Value::Null
        } else {
            json!(exact)
        };
        assert_eq!(row["exact"], want_exact, "{what}");
        for (col, set) in [
            (
                "users",
                evs.iter()
                    .filter_map(|e| e.user.clone())
                    .collect::<BTreeSet<_>>(),
            ),
            ("ips", evs.iter().filter_map(|e| e.ip.clone()).collect()),
        ] {
            let n = set.len() as f64;
            let got = num(&row[col]);
            if set.len() <= 256 {
                assert_eq!(got, n, "{what} {col}: exact while small");
            } else {
                dense_ips += 1;
            }
            assert!(
                (got - n).abs() <= HLL_ERROR * n,
                "{what} {col}: {got} for {n}"
            );
        }
        let want_top: Vec<Value> = top_k(evs.iter().filter_map(|e| e.ip.clone()), 5)
            .into_iter()
            .map(|(ip, c)| json!([ip, c]))
            .collect();
        if want_top.first().is_some_and(|t| t[1].as_u64() > Some(100)) {
            heavy += 1;
        }
        assert_eq!(row["top_ips"], json!(want_top), "{what}");
    }
    assert!(
        dense_ips > 0,
        "some groups have more than 256 distinct values"
    );
    assert!(heavy > 0, "some windows have a heavy-hitter IP");

    let totals = rows(dir, "totals");
    let groups = group(events, 60 * MINUTE, 60 * MINUTE, 5 * MINUTE, |_| vec![]);
    assert_eq!(totals.len(), groups.len(), "totals rows");
    let mut large = 0;
    for ((start, _), evs) in &groups {
        let what = format!("totals {}", rfc3339(*start));
        let row = &totals[&(rfc3339(*start), "null".to_string())];
        let rts: Vec<f64> = evs.iter().filter_map(|e| e.rt).collect();
        let distinct: BTreeSet<String> = evs.iter().filter_map(|e| request_id(e)).collect();
        let n = distinct.len() as f64;
        large += usize::from(distinct.len() > 100_000);
        let got = num(&row["requests"]);
        assert!((got - n).abs() <= HLL_ERROR * n, "{what}: {got} for {n}");
        let want: Vec<Value> = top_k(evs.iter().filter_map(|e| e.status), 3)
            .into_iter()
            .map(|(s, c)| json!([s, c]))
            .collect();
        assert_eq!(row["top_status"], json!(want), "{what}");
        assert_within(&row["p95"], quantile(&rts, 0.95), SKETCH_ERROR, &what);
    }
    assert!(
        large > 0,
        "a window with more than 10^4 distinct response times"
    );
}

/// Sorted lines per output file.
fn files(dir: &Path) -> BTreeMap<String, Vec<String>> {
    common::rows::dir_results(dir)
}

fn write_spec(dir: &Path) -> PathBuf {
    let path = dir.join("analytics.toml");
    std::fs::write(&path, spec()).unwrap();
    path
}

#[test]
fn percentiles_distincts_and_top_k_match_a_batch_computation_on_every_layout() {
    let input = input("analytics", 200_000);
    let events = read_events(&input);
    let dir = tmpdir("analytics-layouts");
    let spec = write_spec(&dir);
    let spec = spec.to_str().unwrap();
    let one = dir.join("w1");
    let out = run_file(spec, &input.path, &one, "1");
    assert_eq!(
        accounting(&out.stderr)["late"],
        0,
        "disorder below the delay"
    );
    check_against_batch(&input, &events, &one);
    let want = files(&one);
    let two = dir.join("w2");
    run_file(spec, &input.path, &two, "2");
    assert_eq!(files(&two), want, "-w 2 against -w 1, bit for bit");
    let procs = dir.join("p2");
    run_ok(&[
        "launch",
        spec,
        "--processes",
        "2",
        "--workers",
        "1",
        "--input",
        input.path.to_str().unwrap(),
        "--output-dir",
        procs.to_str().unwrap(),
    ]);
    assert_eq!(files(&procs), want, "2 processes against -w 1, bit for bit");
}

/// The sketch, HyperLogLog, top-k and exact-value states go into checkpoints: a 2-process job
/// killed with SIGKILL several times and restored writes what an uninterrupted run writes.
#[test]
fn new_aggregate_state_is_restored_after_kill_9() {
    // 3M lines: on an idle machine 1M were read in 0.6 s, before a second kill could land.
    let input = input("analytics-kills", 3_000_000);
    let dir = tmpdir("analytics-kills");
    let (out, want, kills, restored) =
        killed_and_whole_runs(&dir, &spec(), &input.path, 0x0028_5EED);
    let (got, want) = (files(&out), files(&want));
    assert!(
        want["latency"].len() > 100,
        "{} latency rows",
        want["latency"].len()
    );
    assert_eq!(got, want, "after {kills} kills and {restored} restores");
}
