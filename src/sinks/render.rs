//! JSON rendering of results, dead letters and late events (the output contract of docs/design.md
//! section 5): `window_start`, `window_end`, then group keys, then metrics.

use base64::Engine;

use crate::record::value::write_json_str;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::spec::plan::JobPlan;
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
        out.push_str("\"window_start\":\"");
        out.push_str(&rfc3339(row.start));
        out.push_str("\",\"window_end\":\"");
        out.push_str(&rfc3339(row.end));
        out.push('"');
        sep = ",";
    }
    for (name, v) in analysis.columns.iter().zip(&row.values) {
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
