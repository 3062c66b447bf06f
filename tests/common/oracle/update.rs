//! Update mode (DESIGN.md section 3, as Spark's outputMode "update"): early results as data
//! arrives, then corrections, one row "every `trigger` of event-time progress" (README): after
//! each trigger step, every window and key that received events in it gets one row,
//! aggregated over all its events so far.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use super::engine::jsonl;
use super::expected::{open, row_id, window_starts, Expect, Key, Row, WINDOW};
use super::input::Ev;
use super::lateness;

/// The rows one update-mode analysis writes, by row id (window and key), in order.
pub fn update_rows(
    events: &[Ev],
    trigger: i64,
    (size, slide, hold): (i64, i64, i64),
    key_names: &[&'static str],
    key: impl Fn(&Ev) -> Key,
    metrics: impl Fn(&[&Ev]) -> Vec<(&'static str, Expect)>,
) -> BTreeMap<String, Vec<Row>> {
    // (start, key) -> its events, and (step, events up to the end of that step) per step in
    // which it received some. Steps never go back in input order.
    type Steps = Vec<(Option<i64>, usize)>;
    let mut groups: BTreeMap<(i64, Key), (Vec<&Ev>, Steps)> = BTreeMap::new();
    for ev in events {
        let step = lateness::step(ev, trigger);
        for s in window_starts(ev.ts, size, slide) {
            if !open(ev, s, size, hold) {
                continue;
            }
            let (evs, steps) = groups.entry((s, key(ev))).or_default();
            evs.push(ev);
            match steps.last_mut() {
                Some((st, n)) if *st == step => *n = evs.len(),
                _ => steps.push((step, evs.len())),
            }
        }
    }
    let mut out = BTreeMap::new();
    for ((start, key), (evs, steps)) in groups {
        let rows: Vec<Row> = steps
            .iter()
            .map(|&(_, n)| Row {
                bounds: WINDOW,
                start,
                end: start + size,
                keys: key_names.iter().copied().zip(key.clone()).collect(),
                metrics: metrics(&evs[..n]),
                optional: false,
            })
            .collect();
        out.insert(rows[0].id(), rows);
    }
    out
}

/// Compares an update-mode output file with the oracle's rows: per window and key, the same
/// rows in the same order (rows of different windows and keys may interleave in any order).
pub fn compare_updates(dir: &Path, analysis: &str, want: &BTreeMap<String, Vec<Row>>) -> String {
    let mut report = String::new();
    let key_names: Vec<&str> = want
        .values()
        .next()
        .map(|r| r[0].keys.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let mut got: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    let lines = jsonl(&dir.join(format!("{analysis}.jsonl")));
    for line in &lines {
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line) else {
            let _ = writeln!(report, "{analysis}: not a JSON object: {line}");
            continue;
        };
        let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        let id = row_id(
            &text("window_start"),
            &text("window_end"),
            key_names.iter().map(|k| {
                o.get(*k)
                    .cloned()
                    .unwrap_or(Value::String("<absent>".into()))
            }),
        );
        got.entry(id).or_default().push(o);
    }
    let ids: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    let mut differ = Vec::new();
    for id in ids {
        let (g, w) = (got.get(id), want.get(id));
        let (gl, wl) = (g.map_or(0, Vec::len), w.map_or(0, Vec::len));
        let mut diffs = Vec::new();
        if gl != wl {
            diffs.push(format!("{gl} rows, oracle {wl}"));
        }
        for (i, (g, w)) in g
            .into_iter()
            .flatten()
            .zip(w.into_iter().flatten())
            .enumerate()
        {
            for (name, e) in &w.metrics {
                let v = g.get(*name).unwrap_or(&Value::Null);
                if !g.contains_key(*name) || !e.matches(v) {
                    diffs.push(format!("row {i}: {name}: engine {v}, oracle {}", e.show()));
                }
            }
            if g.len() != w.metrics.len() + w.keys.len() + 2 {
                diffs.push(format!("row {i}: {} fields", g.len()));
            }
        }
        if !diffs.is_empty() {
            differ.push(format!("{id}: {}", diffs.join("; ")));
        }
    }
    if !differ.is_empty() {
        let rows: usize = want.values().map(Vec::len).sum();
        let _ = writeln!(
            report,
            "== {analysis} (update mode): engine {} rows, oracle {rows}; {} windows and keys differ (first 5):",
            lines.len(),
            differ.len()
        );
        for d in differ.iter().take(5) {
            let _ = writeln!(report, "    {d}");
        }
    }
    report
}
