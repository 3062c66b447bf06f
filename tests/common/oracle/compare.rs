//! Comparing the engine's output with the expected rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use super::engine::{jsonl, Keys, RunOutput};
use super::expected::{fmt_ts, row_id, Row, WINDOW};
use super::input::Input;
use super::lateness::Missed;
use super::{Alerts, Expected};

/// Compares one analysis; returns a report of the differences (empty when equal).
pub fn compare(dir: &Path, analysis: &str, expected: &[Row]) -> String {
    const SHOW: usize = 5;
    let path = dir.join(format!("{analysis}.jsonl"));
    let mut report = String::new();
    let mut engine: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let bounds = expected.first().map_or(WINDOW, |r| r.bounds);
    let expected_order: Option<Vec<String>> = expected.first().map(|r| {
        r.bounds
            .into_iter()
            .chain(r.keys.iter().map(|(k, _)| *k))
            .chain(r.metrics.iter().map(|(k, _)| *k))
            .map(str::to_string)
            .collect()
    });
    let key_names: Vec<&str> = expected
        .first()
        .map(|r| r.keys.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    for line in jsonl(&path) {
        let obj = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(o)) => o,
            _ => {
                problems.push(format!("not a JSON object: {line}"));
                continue;
            }
        };
        if let (Some(order), Ok(Keys(keys))) =
            (&expected_order, serde_json::from_str::<Keys>(&line))
        {
            if &keys != order && problems.len() < SHOW {
                problems.push(format!("field order {keys:?}, expected {order:?}: {line}"));
            }
        }
        let text = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let id = row_id(
            &text(bounds[0]),
            &text(bounds[1]),
            key_names.iter().map(|k| {
                obj.get(*k)
                    .cloned()
                    .unwrap_or(Value::String("<absent>".into()))
            }),
        );
        if engine.insert(id.clone(), obj).is_some() {
            problems.push(format!("duplicate row {id}"));
        }
    }

    let mut missing = Vec::new();
    let mut differing = Vec::new();
    let mut seen = BTreeSet::new();
    for row in expected {
        let id = row.id();
        seen.insert(id.clone());
        let Some(got) = engine.get(&id) else {
            if !row.optional {
                missing.push(row.show());
            }
            continue;
        };
        let mut diffs = Vec::new();
        for (name, want) in &row.metrics {
            let value = got.get(*name).unwrap_or(&Value::Null);
            if !got.contains_key(*name) || !want.matches(value) {
                diffs.push(format!(
                    "{name}: engine {}, oracle {}",
                    got.get(*name).map_or("<absent>".into(), Value::to_string),
                    want.show()
                ));
            }
        }
        let known = row.metrics.len() + row.keys.len() + 2;
        if got.len() != known {
            diffs.push(format!("{} fields, expected {known}", got.len()));
        }
        if !diffs.is_empty() {
            differing.push(format!("{id}: {}", diffs.join("; ")));
        }
    }
    let extra: Vec<String> = engine
        .iter()
        .filter(|(id, _)| !seen.contains(*id))
        .map(|(_, o)| Value::Object(o.clone()).to_string())
        .collect();

    if problems.is_empty() && missing.is_empty() && differing.is_empty() && extra.is_empty() {
        return report;
    }
    let _ = writeln!(
        report,
        "== {analysis}: oracle {} rows, engine {} rows; {} missing, {} extra, {} differing, {} other problems",
        expected.len(),
        engine.len(),
        missing.len(),
        extra.len(),
        differing.len(),
        problems.len()
    );
    for (title, list) in [
        ("missing (in the oracle, not in the engine)", &missing),
        ("extra (in the engine, not in the oracle)", &extra),
        ("differing", &differing),
        ("problems", &problems),
    ] {
        if !list.is_empty() {
            let _ = writeln!(report, "  {title}:");
            for item in list.iter().take(SHOW) {
                let _ = writeln!(report, "    {item}");
            }
            if list.len() > SHOW {
                let _ = writeln!(report, "    ... and {} more", list.len() - SHOW);
            }
        }
    }
    report
}

/// The original bytes a dead-letter or late record carries (`raw`, or `raw_base64` when not
/// UTF-8).
fn raw_bytes(rec: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    match (&rec["raw"], &rec["raw_base64"]) {
        (Value::String(s), _) => Some(s.as_bytes().to_vec()),
        (_, Value::String(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
        _ => None,
    }
}

/// Every bad line is in the dead-letter output once, with its position and original bytes.
pub fn check_dead_letters(dir: &Path, job: &str, input: &Input, bad: &BTreeSet<usize>) -> String {
    let path = dir.join(format!("{job}.dead-letter.jsonl"));
    let mut report = String::new();
    let mut found = BTreeSet::new();
    let input_name = input.path.file_name();
    for line in jsonl(&path) {
        let rec: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = writeln!(report, "dead letter is not JSON ({e}): {line}");
                continue;
            }
        };
        let position = &rec["position"];
        let Some(n) = position["line"].as_u64() else {
            let _ = writeln!(report, "dead letter without position.line: {line}");
            continue;
        };
        let n = n as usize;
        let file_ok = position["file"]
            .as_str()
            .is_some_and(|f| Path::new(f).file_name() == input_name);
        let reason_ok = rec["reason"].as_str().is_some_and(|r| !r.is_empty());
        let raw = raw_bytes(&rec);
        let original = n.checked_sub(1).and_then(|i| input.lines.get(i));
        let problems: Vec<&str> = [
            (!file_ok, "position.file does not name the input"),
            (!reason_ok, "no reason"),
            (raw.is_none(), "no raw/raw_base64"),
            (
                raw.is_some() && raw.as_ref() != original,
                "raw differs from the input line",
            ),
            (!found.insert(n), "line reported twice"),
        ]
        .into_iter()
        .filter_map(|(bad, what)| bad.then_some(what))
        .collect();
        if !problems.is_empty() && report.lines().count() < 10 {
            let _ = writeln!(report, "dead letter for line {n}: {problems:?}: {line}");
        }
    }
    let not_reported: Vec<_> = bad.difference(&found).take(5).collect();
    let not_bad: Vec<_> = found.difference(bad).take(5).collect();
    if !not_reported.is_empty() || !not_bad.is_empty() {
        let _ = writeln!(
            report,
            "dead-letter lines differ from the bad lines: {} dead letters, {} bad lines; \
             bad but not reported (first): {not_reported:?}; reported but good (first): {not_bad:?}",
            found.len(),
            bad.len()
        );
    }
    report
}

/// The late output holds exactly the late events: each once, with its event time, original
/// bytes and position, the watermark it missed (the least), and its `missed` list exact.
pub fn check_late(
    dir: &Path,
    job: &str,
    input: &Input,
    late: &BTreeMap<usize, (i64, Missed)>,
) -> String {
    let path = dir.join(format!("{job}.late.jsonl"));
    let mut report = String::new();
    let mut found = BTreeSet::new();
    let mut wrong = Vec::new();
    let input_name = input.path.file_name();
    for line in jsonl(&path) {
        let rec: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                wrong.push(format!("late record is not JSON ({e}): {line}"));
                continue;
            }
        };
        let Some(n) = rec["position"]["line"].as_u64().map(|n| n as usize) else {
            wrong.push(format!("late record without position.line: {line}"));
            continue;
        };
        if !found.insert(n) {
            wrong.push(format!("line {n} is late twice"));
        }
        let Some((ts, missed)) = late.get(&n) else {
            continue; // reported below, with the others not late
        };
        let file_ok = rec["position"]["file"]
            .as_str()
            .is_some_and(|f| Path::new(f).file_name() == input_name);
        let got_missed: Option<Vec<(String, String)>> = rec["missed"].as_array().map(|a| {
            let mut m: Vec<(String, String)> = a
                .iter()
                .map(|m| {
                    let s = |k: &str| m[k].as_str().unwrap_or("?").to_string();
                    (s("analysis"), s("watermark"))
                })
                .collect();
            m.sort();
            m
        });
        let want_missed: Vec<(String, String)> = missed
            .iter()
            .map(|(a, w)| (a.to_string(), fmt_ts(*w)))
            .collect();
        let least = missed.iter().map(|m| m.1).min().map(fmt_ts);
        let problems: Vec<String> = [
            (
                !file_ok,
                "position.file does not name the input".to_string(),
            ),
            (
                rec["event_time"].as_str() != Some(&fmt_ts(*ts)),
                format!("event_time is not {}", fmt_ts(*ts)),
            ),
            (
                rec["watermark"].as_str() != least.as_deref(),
                format!("watermark is not {least:?}"),
            ),
            (
                got_missed.as_ref() != Some(&want_missed),
                format!("missed is not {want_missed:?}"),
            ),
            (
                raw_bytes(&rec).as_ref() != input.lines.get(n - 1),
                "raw differs from the input line".to_string(),
            ),
        ]
        .into_iter()
        .filter_map(|(bad, what)| bad.then_some(what))
        .collect();
        if !problems.is_empty() {
            wrong.push(format!("late record for line {n}: {problems:?}: {line}"));
        }
    }
    let want: BTreeSet<usize> = late.keys().copied().collect();
    let not_reported: Vec<_> = want.difference(&found).collect();
    let not_late: Vec<_> = found.difference(&want).collect();
    if !not_reported.is_empty() || !not_late.is_empty() {
        let _ = writeln!(
            report,
            "late lines differ from the oracle's: {} late records, {} late events; late but not \
             reported ({}, first): {:?}; reported but on time ({}, first): {:?}",
            found.len(),
            want.len(),
            not_reported.len(),
            not_reported.iter().take(5).collect::<Vec<_>>(),
            not_late.len(),
            not_late.iter().take(5).collect::<Vec<_>>(),
        );
    }
    if !wrong.is_empty() {
        let _ = writeln!(report, "{} wrong late records (first 5):", wrong.len());
        for w in wrong.iter().take(5) {
            let _ = writeln!(report, "  {w}");
        }
    }
    report
}

/// `late_alerts` writes, per user, exactly the oracle's rows in order (rows of different users
/// may interleave in any order).
pub fn check_late_alerts(path: &Path, want: &BTreeMap<Option<String>, Alerts>) -> String {
    let mut report = String::new();
    let mut got: BTreeMap<Option<String>, Alerts> = BTreeMap::new();
    for line in jsonl(path) {
        let rec: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        // In document order (serde_json's map sorts its keys).
        let keys = serde_json::from_str::<Keys>(&line).map_or(Vec::new(), |k| k.0);
        let earliest = rec["earliest_late_event"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        let user = match &rec["user_id"] {
            Value::String(s) => Some(Some(s.clone())),
            Value::Null if rec.get("user_id").is_some() => Some(None),
            _ => None,
        };
        match (user, rec["late_event_count"].as_i64(), earliest) {
            (Some(user), Some(n), Some(t))
                if keys == ["user_id", "late_event_count", "earliest_late_event"] =>
            {
                got.entry(user).or_default().push((n, t));
            }
            _ => {
                let _ = writeln!(report, "late_alerts: unexpected record {line}");
            }
        }
    }
    let show = |rows: Option<&Alerts>| -> String {
        rows.map_or("none".into(), |r| {
            let v: Vec<String> = r
                .iter()
                .map(|(n, t)| format!("{n} from {}", fmt_ts(*t)))
                .collect();
            v.join(", ")
        })
    };
    let users: BTreeSet<&Option<String>> = got.keys().chain(want.keys()).collect();
    let differ: Vec<String> = users
        .into_iter()
        .filter(|u| got.get(u) != want.get(u))
        .map(|u| {
            format!(
                "{u:?}: engine [{}], oracle [{}]",
                show(got.get(u)),
                show(want.get(u))
            )
        })
        .collect();
    if !differ.is_empty() {
        let _ = writeln!(
            report,
            "late_alerts differs for {} users (first 5):",
            differ.len()
        );
        for d in differ.iter().take(5) {
            let _ = writeln!(report, "  {d}");
        }
    }
    report
}

/// The accounting line against the oracle: every line read, the bad ones dead letters, the
/// late ones late.
pub fn check_accounting(out: &RunOutput, expected: &Expected) {
    let a = &out.accounting;
    let shown = format!(
        "read={} parsed={} dead_letter={} on_time={} late={}",
        a.read, a.parsed, a.dead_letter, a.on_time, a.late
    );
    assert_eq!(
        (a.read, a.dead_letter, a.on_time, a.late),
        (
            expected.lines,
            expected.bad.len() as u64,
            expected.on_time(),
            expected.late.len() as u64
        ),
        "(read, dead_letter, on_time, late) against the oracle: {shown}"
    );
    assert_eq!(
        a.read,
        a.parsed + a.dead_letter,
        "read = parsed + dead_letter: {shown}"
    );
}
