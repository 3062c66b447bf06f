//! The latest window of each analysis, as rows: what `/results` serves and `logflow top` draws.
//!
//! The rows are the ones the job's sinks wrote (never recomputed), kept per analysis for the
//! newest window seen. Both the memory and the answer are bounded whatever the group keys:
//! - at most [`MAX_ROWS`] rows per analysis, the largest by the analysis's first numeric
//!   metric column (its "top N"; arrival order when it has none), the rest only counted;
//! - the JSON answer holds at most [`MAX_BYTES`] of rows, shared evenly by the analyses (a row
//!   that does not fit its analysis's share is left out and the analysis marked `truncated`).
//!
//! Update mode replaces a key's row of the window (and a retraction removes it), so an
//! analysis shows its current rows, not every revision.

use std::sync::Mutex;

use crate::record::value::write_json_str;
use crate::record::{key_hash, Row, Value};
use crate::spec::plan::{AnalysisKind, JobPlan};
use crate::time::rfc3339;

/// Rows kept per analysis.
pub const MAX_ROWS: usize = 50;
/// Bytes of rows in one `/results` answer, over all analyses.
pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug)]
struct Meta {
    name: String,
    columns: Vec<String>,
    key_len: usize,
    /// Its rows are findings (a detector or a `having` filter): drawn highlighted.
    finding: bool,
}

#[derive(Debug, Default)]
struct Window {
    /// (start, end) of the newest window seen.
    bounds: Option<(i64, i64)>,
    /// The kept rows (key and metric columns), at most [`MAX_ROWS`].
    rows: Vec<Vec<Value>>,
    /// Each kept row's key hash ([`key_hash`]) and rank, beside it: a row written is matched
    /// against the kept ones and, once they are full, against the lowest of them. Scanning
    /// these instead of the rows' values keeps that to a few instructions per kept row
    /// (analyses with thousands of keys per window write thousands of rows).
    hashes: Vec<u64>,
    ranks: Vec<f64>,
    /// Rows of this window written, kept or not.
    total: u64,
    /// Column index ranking the rows (the first numeric metric column of the first row).
    rank_by: Option<usize>,
}

/// The latest window of every analysis of a job.
#[derive(Debug)]
pub struct LatestWindows {
    pipeline: String,
    meta: Vec<Meta>,
    windows: Mutex<Vec<Window>>,
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

impl Window {
    fn rank(&self, row: &[Value]) -> f64 {
        self.rank_by
            .and_then(|c| number(row.get(c)))
            .unwrap_or(f64::NEG_INFINITY)
    }

    fn observe(&mut self, r: &Row, key_len: usize) {
        match self.bounds {
            Some((start, _)) if r.start < start => return, // an older window's straggler
            Some((start, _)) if r.start == start => {}
            _ => {
                *self = Window {
                    bounds: Some((r.start, r.end)),
                    rank_by: (key_len..r.values.len()).find(|&c| number(r.values.get(c)).is_some()),
                    ..Window::default()
                };
            }
        }
        let key = r.key(key_len);
        let hash = key_hash(key);
        let same_key = self
            .hashes
            .iter()
            .zip(&self.rows)
            .position(|(h, k)| *h == hash && &k[..key_len.min(k.len())] == key);
        if r.retract {
            if let Some(i) = same_key {
                self.rows.swap_remove(i);
                self.hashes.swap_remove(i);
                self.ranks.swap_remove(i);
                self.total = self.total.saturating_sub(1);
            }
            return;
        }
        let rank = self.rank(&r.values);
        let at = match same_key {
            Some(i) => Some(i),
            None => {
                self.total += 1;
                if self.rows.len() < MAX_ROWS {
                    self.rows.push(Vec::new());
                    self.hashes.push(hash);
                    self.ranks.push(rank);
                    Some(self.rows.len() - 1)
                } else {
                    // The first of the lowest ranked, replaced by a higher one.
                    let lowest = (0..self.ranks.len())
                        .min_by(|&a, &b| self.ranks[a].total_cmp(&self.ranks[b]));
                    lowest.filter(|&i| self.ranks[i] < rank)
                }
            }
        };
        if let Some(i) = at {
            self.rows[i] = r.values.clone();
            self.hashes[i] = hash;
            self.ranks[i] = rank;
        }
    }
}

impl LatestWindows {
    pub fn new(plan: &JobPlan) -> Self {
        let meta: Vec<Meta> = plan
            .analyses
            .iter()
            .map(|a| Meta {
                name: a.name.clone(),
                columns: a.columns.clone(),
                key_len: a.key_len,
                finding: a.having.is_some() || matches!(a.kind, AnalysisKind::Derived { .. }),
            })
            .collect();
        let windows = Mutex::new(meta.iter().map(|_| Window::default()).collect());
        LatestWindows {
            pipeline: plan.name.clone(),
            meta,
            windows,
        }
    }

    /// Takes rows a sink has written into account.
    pub fn observe(&self, rows: &[Row]) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let i = r.analysis as usize;
            if let (Some(m), Some(win)) = (self.meta.get(i), w.get_mut(i)) {
                win.observe(r, m.key_len);
            }
        }
    }

    /// The `/results` answer: one JSON object (see docs/operations.md#live-view).
    pub fn to_json(&self, running: bool) -> String {
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let share = MAX_BYTES / self.meta.len().max(1);
        let mut out = String::from("{\"pipeline\":");
        write_json_str(&self.pipeline, &mut out);
        out.push_str(&format!(",\"running\":{running},\"analyses\":["));
        for (i, (m, win)) in self.meta.iter().zip(w.iter()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            write_json_str(&m.name, &mut out);
            out.push_str(&format!(",\"finding\":{},\"columns\":[", m.finding));
            for (j, c) in m.columns.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_json_str(c, &mut out);
            }
            out.push_str(&format!("],\"key_len\":{}", m.key_len));
            match win.rank_by.and_then(|c| m.columns.get(c)) {
                Some(c) => {
                    out.push_str(",\"rank_by\":");
                    write_json_str(c, &mut out);
                }
                None => out.push_str(",\"rank_by\":null"),
            }
            match win.bounds {
                Some((s, e)) => out.push_str(&format!(
                    ",\"window_start\":\"{}\",\"window_end\":\"{}\"",
                    rfc3339(s),
                    rfc3339(e)
                )),
                None => out.push_str(",\"window_start\":null,\"window_end\":null"),
            }
            let mut rows = win.rows.iter().collect::<Vec<_>>();
            rows.sort_by(|a, b| win.rank(b).total_cmp(&win.rank(a)));
            let mut body = String::new();
            let mut truncated = false;
            for r in rows {
                let mut one = String::from("[");
                for (j, v) in r.iter().enumerate() {
                    if j > 0 {
                        one.push(',');
                    }
                    v.write_json(&mut one);
                }
                one.push(']');
                if body.len() + one.len() + 1 > share {
                    truncated = true;
                    continue;
                }
                if !body.is_empty() {
                    body.push(',');
                }
                body.push_str(&one);
            }
            truncated |= win.total > win.rows.len() as u64;
            out.push_str(&format!(
                ",\"rows_in_window\":{},\"truncated\":{truncated},\"rows\":[{body}]}}",
                win.total
            ));
        }
        out.push_str("]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{parse_spec, SpecSource};

    fn plan() -> JobPlan {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
            [[analysis]]\nname = \"by_ip\"\nwindow = { size = \"1m\" }\ngroup_by = [\"ip_address\"]\n\
            select = [\"count() as n\", \"collect_set(service) as s\"]\n\
            [[analysis]]\nname = \"busy\"\nfrom = \"by_ip\"\nhaving = \"n > 1\"\n";
        let src = SpecSource {
            file: "t.toml",
            text,
        };
        JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap()
    }

    fn row(analysis: u32, minute: i64, ip: &str, n: i64) -> Row {
        Row {
            analysis,
            start: minute * 60_000,
            end: (minute + 1) * 60_000,
            values: vec![Value::Str(ip.into()), Value::Int(n), Value::List(vec![])],
            retract: false,
        }
    }

    fn json(l: &LatestWindows) -> serde_json::Value {
        serde_json::from_str(&l.to_json(true)).unwrap()
    }

    #[test]
    fn keeps_the_newest_window_and_its_top_rows() {
        let l = LatestWindows::new(&plan());
        l.observe(&[row(0, 1, "a", 5), row(0, 2, "b", 1)]);
        // A straggler of minute 1 does not replace minute 2.
        l.observe(&[row(0, 1, "c", 9), row(0, 2, "c", 3), row(1, 2, "c", 3)]);
        let v = json(&l);
        let by_ip = &v["analyses"][0];
        assert_eq!(by_ip["name"], "by_ip");
        assert_eq!(by_ip["finding"], false);
        assert_eq!(by_ip["window_start"], "1970-01-01T00:02:00Z");
        assert_eq!(by_ip["window_end"], "1970-01-01T00:03:00Z");
        assert_eq!(by_ip["rank_by"], "n");
        assert_eq!(
            by_ip["rows"],
            serde_json::json!([["c", 3, []], ["b", 1, []]])
        );
        assert_eq!(v["analyses"][1]["finding"], true);
        assert_eq!(v["analyses"][1]["rows_in_window"], 1);

        // Capped at MAX_ROWS, keeping the largest by `n`.
        let many: Vec<Row> = (0..MAX_ROWS as i64 + 10)
            .map(|i| row(0, 3, &format!("ip{i}"), i))
            .collect();
        l.observe(&many);
        let v = json(&l);
        let rows = v["analyses"][0]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows[0][1], MAX_ROWS as i64 + 9);
        assert_eq!(rows[MAX_ROWS - 1][1], 10);
        assert_eq!(v["analyses"][0]["truncated"], true);
        assert_eq!(v["analyses"][0]["rows_in_window"], MAX_ROWS as u64 + 10);
    }

    /// Retractions move the last kept row into the removed one's place: later updates and
    /// retractions still find each key, and a full window still replaces its lowest row.
    #[test]
    fn keys_are_found_after_rows_move() {
        let l = LatestWindows::new(&plan());
        let full: Vec<Row> = (0..MAX_ROWS as i64)
            .map(|i| row(0, 1, &format!("ip{i}"), 100 + i))
            .collect();
        l.observe(&full);
        let mut gone = row(0, 1, "ip0", 0);
        gone.retract = true;
        // ip49 moves to ip0's place, then is updated (not added) and retracted.
        l.observe(&[gone, row(0, 1, "ip49", 7)]);
        let v = json(&l);
        assert_eq!(v["analyses"][0]["rows_in_window"], MAX_ROWS as u64 - 1);
        let rows = v["analyses"][0]["rows"].as_array().unwrap().clone();
        assert_eq!(rows.len(), MAX_ROWS - 1);
        assert_eq!(rows[MAX_ROWS - 2], serde_json::json!(["ip49", 7, []]));
        let mut gone = row(0, 1, "ip49", 0);
        gone.retract = true;
        l.observe(&[gone, row(0, 1, "new", 1), row(0, 1, "newer", 2)]);
        // Full again: `top` replaces the lowest (`new`), a lower one is dropped.
        l.observe(&[row(0, 1, "top", 3), row(0, 1, "newest", 0)]);
        let v = json(&l);
        let rows = v["analyses"][0]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows[MAX_ROWS - 1], serde_json::json!(["newer", 2, []]));
        assert!(rows.iter().all(|r| r[0] != "new" && r[0] != "newest"));
        assert_eq!(v["analyses"][0]["rows_in_window"], MAX_ROWS as u64 + 2);
    }

    #[test]
    fn updates_replace_a_key_and_retractions_remove_it_and_bytes_are_bounded() {
        let l = LatestWindows::new(&plan());
        l.observe(&[row(0, 1, "a", 1), row(0, 1, "a", 2)]);
        assert_eq!(
            json(&l)["analyses"][0]["rows"],
            serde_json::json!([["a", 2, []]])
        );
        let mut gone = row(0, 1, "a", 0);
        gone.retract = true;
        l.observe(&[gone]);
        assert_eq!(json(&l)["analyses"][0]["rows"], serde_json::json!([]));

        // Hostile sizes: huge keys never make the answer exceed the bound.
        let big = "x".repeat(MAX_BYTES / 4);
        let rows: Vec<Row> = (0..20)
            .map(|i| row(0, 5, &format!("{i}{big}"), i))
            .collect();
        l.observe(&rows);
        let text = l.to_json(false);
        assert!(text.len() < MAX_BYTES + 4096, "{}", text.len());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["running"], false);
        assert_eq!(v["analyses"][0]["truncated"], true);
        assert!(!v["analyses"][0]["rows"].as_array().unwrap().is_empty());
    }
}
