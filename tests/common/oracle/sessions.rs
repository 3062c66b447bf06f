//! Session windows (docs/analytics.md, Sessions), walked event by event in input order.
//!
//! Per key, events less than the gap apart are one session, `[first, last + gap)`. An event
//! arrives at its progress (the largest event time before it, rounded down to the job's
//! granularity: [`stamp`]); it is late when its own session `[ts, ts + gap)` has closed by
//! then (+ delay + allowed lateness). Before it joins, its key's sessions whose deadline
//! (`last + gap + delay + allowed`) is before its progress have closed: it starts a new one
//! even if it is less than a gap after them. It then joins every open session less than a gap
//! away, which merges them. When the input ends every open session closes.
//!
//! Update mode: after each progress step, each session changed in it gets a row over all its
//! events so far, keyed by its start; a session merged into one with another start is
//! retracted. Closing writes nothing more.
//!
//! Independent of the engine, which pre-aggregates gap-wide cells and merges them: this keeps
//! every session's events and compares times one event at a time.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::engine::jsonl;
use super::expected::{fmt_ts, Expect, Key, Row, SESSION};
use super::input::Ev;
use super::lateness::{stamp, Win};

/// One session of a key.
#[derive(Clone)]
pub struct Session<'a> {
    pub key: Key,
    pub first: i64,
    pub last: i64,
    /// Its events, in input order.
    pub evs: Vec<&'a Ev>,
    /// Update mode: the end of the row last written for it.
    shown: Option<i64>,
    /// Update mode: an event joined it in the current step.
    dirty: bool,
}

/// What an update-mode analysis writes for one (session start, key), in order: a row with its
/// end and events so far, or a retraction (the session merged into another).
#[derive(Clone)]
pub enum Change<'a> {
    Row(i64, Vec<&'a Ev>),
    Retracted,
}

/// Every session, closed in the order the walk closes them, and (when `updates`) the changes
/// update mode writes per (start, key).
pub struct Walk<'a> {
    pub sessions: Vec<Session<'a>>,
    pub changes: BTreeMap<(i64, Key), Vec<Change<'a>>>,
    /// Events that joined two or more open sessions into one.
    pub bridges: usize,
    /// Events less than a gap after a session that had closed: they started a new one.
    pub after_close: usize,
}

pub fn walk<'a>(events: &'a [Ev], w: Win, key: impl Fn(&Ev) -> Key, updates: bool) -> Walk<'a> {
    let g = w.session.expect("a session rule");
    let (gap, hold) = (w.size, w.delay + w.allowed);
    let mut open: BTreeMap<Key, Vec<Session<'a>>> = BTreeMap::new();
    let mut out = Walk {
        sessions: Vec::new(),
        changes: BTreeMap::new(),
        bridges: 0,
        after_close: 0,
    };
    // Update mode: per key touched in the current step, the sessions it merged away that had
    // a row.
    let mut step: Option<Option<i64>> = None;
    let mut touched: BTreeMap<Key, Vec<(i64, i64)>> = BTreeMap::new();
    for ev in events {
        if w.session_late(ev) == Some(true) {
            continue;
        }
        let p = stamp(ev, g);
        if updates && step != Some(p) {
            flush(&mut open, &mut touched, &mut out.changes, gap);
            step = Some(p);
        }
        let k = key(ev);
        let sessions = open.entry(k.clone()).or_default();
        if let Some(p) = p {
            let (closing, staying): (Vec<_>, Vec<_>) = std::mem::take(sessions)
                .into_iter()
                .partition(|s| s.last + gap + hold < p);
            if closing
                .iter()
                .any(|s| ev.ts > s.last && ev.ts < s.last + gap)
            {
                out.after_close += 1;
            }
            out.sessions.extend(closing);
            *sessions = staying;
        }
        let (near, far): (Vec<_>, Vec<_>) = std::mem::take(sessions)
            .into_iter()
            .partition(|s| ev.ts > s.first - gap && ev.ts < s.last + gap);
        if near.len() > 1 {
            out.bridges += 1;
        }
        let mut merged = Session {
            key: k.clone(),
            first: ev.ts,
            last: ev.ts,
            evs: vec![ev],
            shown: None,
            dirty: true,
        };
        let replaced = touched.entry(k.clone()).or_default();
        for s in near {
            merged.first = merged.first.min(s.first);
            merged.last = merged.last.max(s.last);
            merged.evs.extend(s.evs);
            if let Some(end) = s.shown {
                replaced.push((s.first, end));
            }
        }
        *sessions = far;
        sessions.push(merged);
    }
    if updates {
        flush(&mut open, &mut touched, &mut out.changes, gap);
    }
    out.sessions.extend(open.into_values().flatten());
    out
}

/// Ends an update-mode step: a row for every session its keys' events changed, and a
/// retraction for each session they merged away whose start no session has any more.
fn flush<'a>(
    open: &mut BTreeMap<Key, Vec<Session<'a>>>,
    touched: &mut BTreeMap<Key, Vec<(i64, i64)>>,
    changes: &mut BTreeMap<(i64, Key), Vec<Change<'a>>>,
    gap: i64,
) {
    for (k, replaced) in std::mem::take(touched) {
        let Some(sessions) = open.get_mut(&k) else {
            continue;
        };
        for s in sessions.iter_mut().filter(|s| s.dirty) {
            let end = s.last + gap;
            changes
                .entry((s.first, k.clone()))
                .or_default()
                .push(Change::Row(end, s.evs.clone()));
            s.shown = Some(end);
            s.dirty = false;
        }
        for (first, _) in replaced {
            if !sessions.iter().any(|s| s.first == first) {
                changes
                    .entry((first, k.clone()))
                    .or_default()
                    .push(Change::Retracted);
            }
        }
    }
}

/// The append-mode rows: one per session.
pub fn rows(
    walk: &Walk<'_>,
    gap: i64,
    key_names: &[&'static str],
    metrics: impl Fn(&Session<'_>) -> Vec<(&'static str, Expect)>,
) -> Vec<Row> {
    walk.sessions
        .iter()
        .map(|s| Row {
            bounds: SESSION,
            start: s.first,
            end: s.last + gap,
            keys: key_names.iter().copied().zip(s.key.clone()).collect(),
            metrics: metrics(s),
            optional: false,
        })
        .collect()
}

/// Compares an update-mode session output with the walk's changes: per (session start, key)
/// the same rows and retractions in the same order.
pub fn compare_updates(
    dir: &std::path::Path,
    analysis: &str,
    walk: &Walk<'_>,
    key_names: &[&'static str],
    metrics: impl Fn(&Session<'_>) -> Vec<(&'static str, Expect)>,
) -> String {
    let mut got: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    let mut report = String::new();
    let lines = jsonl(&dir.join(format!("{analysis}.jsonl")));
    for line in &lines {
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line) else {
            report += &format!("{analysis}: not a JSON object: {line}\n");
            continue;
        };
        let id = id_of(
            o.get("session_start")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            key_names
                .iter()
                .map(|k| o.get(*k).cloned().unwrap_or(Value::Null)),
        );
        got.entry(id).or_default().push(o);
    }
    let mut want: BTreeMap<String, &[Change<'_>]> = BTreeMap::new();
    for ((first, key), changes) in &walk.changes {
        let keys = key
            .iter()
            .map(|k| k.clone().map_or(Value::Null, Value::String));
        want.insert(id_of(&fmt_ts(*first), keys), changes);
    }
    let mut differ = Vec::new();
    let ids: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for id in ids {
        let g = got.get(id).map_or(&[][..], Vec::as_slice);
        let w = want.get(id).copied().unwrap_or(&[]);
        let mut diffs = Vec::new();
        if g.len() != w.len() {
            diffs.push(format!("{} rows, oracle {}", g.len(), w.len()));
        }
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            let retracted = g.get("retracted") == Some(&Value::Bool(true));
            match w {
                Change::Retracted if !retracted => diffs.push(format!("row {i}: not a retraction")),
                Change::Retracted => {}
                Change::Row(..) if retracted => diffs.push(format!("row {i}: a retraction")),
                Change::Row(end, evs) => {
                    if g.get("session_end").and_then(Value::as_str) != Some(&fmt_ts(*end)) {
                        diffs.push(format!(
                            "row {i}: session_end {:?}, oracle {}",
                            g.get("session_end"),
                            fmt_ts(*end)
                        ));
                    }
                    let first = evs.iter().map(|e| e.ts).min().unwrap_or(0);
                    let last = evs.iter().map(|e| e.ts).max().unwrap_or(0);
                    let s = Session {
                        key: Vec::new(),
                        first,
                        last,
                        evs: evs.clone(),
                        shown: None,
                        dirty: false,
                    };
                    for (name, e) in metrics(&s) {
                        let v = g.get(name).unwrap_or(&Value::Null);
                        if !e.matches(v) {
                            diffs.push(format!("row {i}: {name}: engine {v}, oracle {}", e.show()));
                        }
                    }
                }
            }
        }
        if !diffs.is_empty() {
            differ.push(format!("{id}: {}", diffs.join("; ")));
        }
    }
    if !differ.is_empty() {
        let rows: usize = walk.changes.values().map(Vec::len).sum();
        report += &format!(
            "== {analysis} (update mode): engine {} rows, oracle {rows}; {} sessions differ (first 5):\n",
            lines.len(),
            differ.len()
        );
        for d in differ.iter().take(5) {
            report += &format!("    {d}\n");
        }
    }
    report
}

fn id_of(start: &str, keys: impl Iterator<Item = Value>) -> String {
    format!("{start} {}", Value::Array(keys.collect()))
}
