//! JSON rendering of results, dead letters and late events (the output contract of docs/design.md
//! section 5): `window_start`, `window_end` (sessions: `session_start`, `session_end`), then
//! group keys, then metrics.

use base64::Engine;

use crate::record::value::write_json_str;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent, Value};
use crate::spec::plan::{bound_names, JobPlan, SummaryPart};
use crate::time::rfc3339;

/// Appends a result row as one JSON object. Rows of an analysis without `window` have no
/// `window_start`/`window_end` (in complete mode they start with `as_of`, the trigger instant); an update-mode retraction is its key columns and
/// `"retracted":true` (on Kafka it is a tombstone instead, see `kafka::sink`).
pub fn row_json(plan: &JobPlan, row: &Row, out: &mut String) {
    let analysis = &plan.analyses[row.analysis as usize];
    out.push('{');
    let mut sep = "";
    if analysis.complete {
        out.push_str("\"as_of\":\"");
        out.push_str(&rfc3339(row.start));
        out.push('"');
        sep = ",";
    } else if !analysis.windowless {
        let [start, end] = bound_names(analysis.session);
        out.push('"');
        out.push_str(start);
        out.push_str("\":\"");
        out.push_str(&rfc3339(row.start));
        out.push_str("\",\"");
        out.push_str(end);
        out.push_str("\":\"");
        out.push_str(&rfc3339(row.end));
        out.push('"');
        sep = ",";
    }
    // A retraction names only the key it removes.
    let shown = if row.retract {
        analysis.key_len
    } else {
        analysis.columns.len()
    };
    for (name, v) in analysis.columns.iter().zip(&row.values).take(shown) {
        out.push_str(sep);
        write_json_str(name, out);
        out.push(':');
        v.write_json(out);
        sep = ",";
    }
    if row.retract {
        out.push_str(sep);
        out.push_str("\"retracted\":true");
    }
    out.push('}');
}

/// Appends the `<job>.alerts` record of a row of an `alert` analysis (docs/alerts.md):
/// `window_start`, `window_end` (null without a window), `alert`, `severity`, `state`
/// (`resolved` for an update-mode retraction, else `firing`), `key` (the group keys),
/// `summary` (rendered), `values` (the row's columns). False for other analyses.
pub fn alert_json(plan: &JobPlan, row: &Row, out: &mut String) -> bool {
    let analysis = &plan.analyses[row.analysis as usize];
    let Some(alert) = &analysis.alert else {
        return false;
    };
    if analysis.windowless || analysis.complete {
        out.push_str("{\"window_start\":null,\"window_end\":null");
    } else {
        out.push_str("{\"window_start\":\"");
        out.push_str(&rfc3339(row.start));
        out.push_str("\",\"window_end\":\"");
        out.push_str(&rfc3339(row.end));
        out.push('"');
    }
    out.push_str(",\"alert\":");
    write_json_str(&analysis.name, out);
    out.push_str(",\"severity\":\"");
    out.push_str(alert.severity.word());
    out.push_str("\",\"state\":\"");
    out.push_str(if row.retract { "resolved" } else { "firing" });
    out.push_str("\",\"key\":");
    columns_json(&analysis.columns[..analysis.key_len], &row.values, out);
    out.push_str(",\"summary\":");
    let summary = alert_summary(plan, row).unwrap_or_default();
    write_json_str(&summary, out);
    out.push_str(",\"values\":");
    columns_json(&analysis.columns, &row.values, out);
    out.push('}');
    true
}

/// The rendered summary of a row of an `alert` analysis: its template with the row's values.
pub fn alert_summary(plan: &JobPlan, row: &Row) -> Option<String> {
    let alert = plan.analyses[row.analysis as usize].alert.as_ref()?;
    let mut summary = String::new();
    for part in &alert.summary {
        match part {
            SummaryPart::Text(t) => summary.push_str(t),
            SummaryPart::Column(i) => {
                summary_value(row.values.get(*i).unwrap_or(&Value::Null), &mut summary)
            }
        }
    }
    if summary.len() > MAX_SUMMARY_BYTES {
        // A long list column in the template: the record stays readable on one line.
        let mut cut = MAX_SUMMARY_BYTES;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    Some(summary)
}

/// Most bytes of a rendered summary.
const MAX_SUMMARY_BYTES: usize = 2048;

/// The Kafka key of an alert record: the alert's name and its row's key, so a compacted
/// topic keeps the latest state of each alert, window and key.
pub fn alert_key(plan: &JobPlan, row: &Row) -> String {
    let mut key = plan.analyses[row.analysis as usize].name.clone();
    key.push('|');
    key.push_str(&row_key(plan, row));
    key
}

fn columns_json(names: &[String], values: &[Value], out: &mut String) {
    out.push('{');
    for (i, (name, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(name, out);
        out.push(':');
        v.write_json(out);
    }
    out.push('}');
}

/// A value as people read it in a summary: text as is, whole numbers without a fraction,
/// other numbers to two decimals.
fn summary_value(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => out.push_str(s),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
            out.push_str(&format!("{f:.0}"));
        }
        Value::Float(f) if f.is_finite() => out.push_str(&format!("{f:.2}")),
        v => v.write_json(out),
    }
}

/// The Kafka key of a row: `window_start` and the group key values joined by `|` (just the
/// key values for an analysis without `window`).
pub fn row_key(plan: &JobPlan, row: &Row) -> String {
    let analysis = &plan.analyses[row.analysis as usize];
    let mut key = if analysis.windowless {
        String::new()
    } else {
        rfc3339(row.start)
    };
    for (i, v) in row.key(analysis.key_len).iter().enumerate() {
        if i > 0 || !analysis.windowless {
            key.push('|');
        }
        match v {
            crate::record::Value::Str(s) => key.push_str(s),
            crate::record::Value::Null => key.push_str("null"),
            v => v.write_json(&mut key),
        }
    }
    key
}

fn raw_json(raw: &[u8], out: &mut String) {
    match std::str::from_utf8(raw) {
        Ok(s) => {
            out.push_str("\"raw\":");
            write_json_str(s, out);
        }
        Err(_) => {
            out.push_str("\"raw_base64\":\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(raw));
            out.push('"');
        }
    }
}

/// Appends a dead-letter record: `reason`, `position`, `raw` (or `raw_base64`), and `length`
/// when the record was cut to the limit.
pub fn dead_letter_json(d: &DeadLetter, out: &mut String) {
    out.push_str("{\"reason\":");
    write_json_str(&d.reason, out);
    out.push_str(",\"position\":");
    d.origin.write_json(out);
    out.push(',');
    raw_json(&d.raw, out);
    if let Some(len) = d.original_len {
        out.push_str(&format!(",\"truncated\":true,\"length\":{len}"));
    }
    out.push('}');
}

/// Appends a dead-letter record of at most `max` bytes (a Kafka message that large fails the
/// sink, and the same record would fail it again after every restart). When the full record
/// does not fit, `raw` keeps as many leading bytes as fit, and the record says so:
/// `"truncated":true`, the original `length`, and `crc32` of the bytes held (to find the
/// record again at its source).
pub fn dead_letter_json_within(d: &DeadLetter, max: usize, out: &mut String) {
    let start = out.len();
    dead_letter_json(d, out);
    if out.len() - start <= max {
        return;
    }
    // A raw byte takes at most 6 bytes of JSON (`\u00XX`), and 4/3 in base64: cut to what
    // surely fits next to the other fields (the reason and position are short).
    let mut keep = max.saturating_sub(1024 + d.reason.len()) / 6;
    if let Ok(text) = std::str::from_utf8(&d.raw) {
        while keep > 0 && !text.is_char_boundary(keep) {
            keep -= 1; // stays text, not base64
        }
    }
    out.truncate(start);
    let cut = DeadLetter {
        reason: d.reason.clone(),
        origin: d.origin.clone(),
        raw: d.raw[..keep.min(d.raw.len())].to_vec(),
        original_len: None,
    };
    dead_letter_json(&cut, out);
    out.pop(); // the closing brace
    let length = d.original_len.unwrap_or(d.raw.len() as u64);
    out.push_str(&format!(
        ",\"truncated\":true,\"length\":{length},\"crc32\":\"{:08x}\"}}",
        crc32fast::hash(&d.raw)
    ));
}

/// Appends a late event: its event time, the watermark it missed (the lowest among the
/// analyses it missed) and each analysis with its own watermark, position and raw record.
pub fn late_json(plan: &JobPlan, l: &LateEvent, out: &mut String) {
    out.push_str("{\"event_time\":\"");
    out.push_str(&rfc3339(l.event.timestamp));
    out.push_str("\",\"watermark\":\"");
    let wm = l
        .missed
        .iter()
        .map(|m| m.1)
        .min()
        .unwrap_or(l.event.timestamp);
    out.push_str(&rfc3339(wm));
    out.push_str("\",\"missed\":[");
    for (i, (a, w)) in l.missed.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"analysis\":");
        write_json_str(&plan.analyses[*a as usize].name, out);
        out.push_str(",\"watermark\":\"");
        out.push_str(&rfc3339(*w));
        out.push_str("\"}");
    }
    out.push_str("],\"position\":");
    l.origin.write_json(out);
    out.push(',');
    raw_json(&l.raw, out);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn letter(raw: Vec<u8>, original_len: Option<u64>) -> DeadLetter {
        DeadLetter {
            reason: "invalid JSON".into(),
            origin: Origin::File {
                path: "in.log".into(),
                line: 7,
            },
            raw,
            original_len,
        }
    }

    #[test]
    fn alert_records_fire_and_resolve_with_the_row_they_hold() {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
            [[analysis]]\nname = \"slow\"\nwindow = { size = \"1m\" }\nmode = \"update\"\n\
            group_by = [\"service\"]\nselect = [\"avg(response_time) as rt\", \"count() as n\"]\n\
            alert = { severity = \"warning\", summary = \"{service}: {rt} s over {n} {{requests}}\" }\n";
        let src = crate::spec::SpecSource {
            file: "t.toml",
            text,
        };
        let plan = JobPlan::compile(&crate::spec::parse_spec(&src).unwrap(), &src).unwrap();
        let mut row = Row {
            analysis: 0,
            start: 1_795_514_400_000,
            end: 1_795_514_460_000,
            values: vec![
                Value::Str("api".into()),
                Value::Float(1.0 / 3.0),
                Value::Int(3),
            ],
            retract: false,
        };
        let mut out = String::new();
        assert!(alert_json(&plan, &row, &mut out));
        let firing = r#"{"window_start":"2026-11-24T10:00:00Z","window_end":"2026-11-24T10:01:00Z","alert":"slow","severity":"warning","state":"firing","key":{"service":"api"},"summary":"api: 0.33 s over 3 {requests}","values":{"service":"api","rt":0.3333333333333333,"n":3}}"#;
        assert_eq!(out, firing);
        assert_eq!(alert_key(&plan, &row), "slow|2026-11-24T10:00:00Z|api");
        // The retraction: the same key and values, resolved; its row is a key-only tombstone.
        row.retract = true;
        out.clear();
        assert!(alert_json(&plan, &row, &mut out));
        assert_eq!(out, firing.replace("firing", "resolved"));
        out.clear();
        row_json(&plan, &row, &mut out);
        assert_eq!(
            out,
            r#"{"window_start":"2026-11-24T10:00:00Z","window_end":"2026-11-24T10:01:00Z","service":"api","retracted":true}"#
        );
        // Whole numbers read without a fraction.
        row.values[1] = Value::Float(2.0);
        assert_eq!(
            alert_summary(&plan, &row).unwrap(),
            "api: 2 s over 3 {requests}"
        );
    }

    #[test]
    fn oversized_dead_letters_are_cut_to_fit_with_length_and_hash() {
        let small = letter(b"oops".to_vec(), None);
        let (mut full, mut within) = (String::new(), String::new());
        dead_letter_json(&small, &mut full);
        dead_letter_json_within(&small, 10_000, &mut within);
        assert_eq!(full, within);
        // Text, escapes (the worst case), non-UTF-8, and a record already cut when read.
        for (raw, original) in [
            (vec![b'x'; 50_000], None),
            (vec![b'\x01'; 50_000], None),
            ([b"\xff".as_slice(), &[b'y'; 50_000]].concat(), None),
            ("é".repeat(25_000).into_bytes(), Some(90_000)),
        ] {
            let d = letter(raw.clone(), original);
            let mut out = String::new();
            dead_letter_json_within(&d, 20_000, &mut out);
            assert!(out.len() <= 20_000, "{}", out.len());
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["truncated"], true);
            assert_eq!(v["length"], original.unwrap_or(raw.len() as u64));
            assert_eq!(v["crc32"], format!("{:08x}", crc32fast::hash(&raw)));
            assert_eq!(v["reason"], "invalid JSON");
            assert_eq!(v["position"]["line"], 7);
            let held = match v["raw"].as_str() {
                Some(s) => s.as_bytes().to_vec(),
                None => base64::engine::general_purpose::STANDARD
                    .decode(v["raw_base64"].as_str().unwrap())
                    .unwrap(),
            };
            assert!(!held.is_empty() && raw.starts_with(&held), "{}", held.len());
        }
    }
}
