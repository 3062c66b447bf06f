//! Comparing the engine's output with the expected rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use logflow::gen::LineKind;
use serde_json::{Map, Value};

use crate::engine::{jsonl, Keys, RunOutput};
use crate::expected::{row_id, Row};
use crate::input::Input;

/// Compares one analysis; returns a report of the differences (empty when equal).
pub fn compare(dir: &Path, analysis: &str, expected: &[Row]) -> String {
    const SHOW: usize = 5;
    let path = dir.join(format!("{analysis}.jsonl"));
    let mut report = String::new();
    let mut engine: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let expected_order: Option<Vec<String>> = expected.first().map(|r| {
        ["window_start", "window_end"]
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
            &text("window_start"),
            &text("window_end"),
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

/// Every bad line is in the dead-letter output once, with its position and original bytes.
pub fn check_dead_letters(out: &RunOutput, job: &str, input: &Input) -> String {
    use base64::Engine as _;
    let path = out.dir.join(format!("{job}.dead-letter.jsonl"));
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
        let raw: Option<Vec<u8>> = match (&rec["raw"], &rec["raw_base64"]) {
            (Value::String(s), _) => Some(s.as_bytes().to_vec()),
            (_, Value::String(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            _ => None,
        };
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
    let bad = input.line_numbers(LineKind::Bad);
    let not_reported: Vec<_> = bad.difference(&found).take(5).collect();
    let not_bad: Vec<_> = found.difference(&bad).take(5).collect();
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

pub fn check_accounting(out: &RunOutput, input: &Input) {
    let a = &out.accounting;
    let lines = input.lines.len() as u64;
    let bad = input.count(LineKind::Bad) as u64;
    let late = input.count(LineKind::Late) as u64;
    let shown = format!(
        "read={} parsed={} dead_letter={} on_time={} late={}",
        a.read, a.parsed, a.dead_letter, a.on_time, a.late
    );
    assert_eq!(
        a.read,
        a.parsed + a.dead_letter,
        "read = parsed + dead_letter: {shown}"
    );
    assert_eq!(
        a.parsed,
        a.on_time + a.late,
        "parsed = on_time + late: {shown}"
    );
    assert_eq!(a.read, lines, "every line is read: {shown}");
    assert_eq!(
        a.dead_letter, bad,
        "dead letters = the generator's bad lines: {shown}"
    );
    assert_eq!(a.late, late, "late = the generator's late lines: {shown}");
}
