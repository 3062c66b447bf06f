//! Business gauges: an analysis's `gauges = [..]` columns exported as
//! `logflow_result{analysis, column, <group keys>}`, the value of the latest closed window
//! of each group key (so "average response time by service" is one PromQL selector).
//!
//! Cardinality is bounded two ways (group keys such as IPs or users can be unbounded):
//! - a key whose latest row is more than [`RETENTION_WINDOWS`] window slides older than the
//!   analysis's newest window is dropped (a service that stopped sending traffic disappears,
//!   as its series would in a Spark console sink);
//! - at most [`MAX_KEYS_PER_ANALYSIS`] keys per analysis; rows of further keys are not
//!   exported and counted in `logflow_result_keys_dropped_total{analysis}`.
//!
//! Null values are exported as NaN (the window had no value); text and list columns are not
//! numbers and are not exported. A null group key is the label value `null`, as in the Kafka
//! key of a row.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use prometheus_client::encoding::DescriptorEncoder;

use super::registry::{counters, gauges};
use crate::record::{Row, Value};
use crate::spec::plan::JobPlan;

/// Keys absent from this many of the analysis's latest window slides are dropped.
pub const RETENTION_WINDOWS: i64 = 2;
/// Most group keys exported per analysis.
pub const MAX_KEYS_PER_ANALYSIS: usize = 1000;

#[derive(Debug)]
struct GaugeAnalysis {
    name: String,
    key_len: usize,
    key_names: Vec<String>,
    /// (column index in the row, column name)
    columns: Vec<(usize, String)>,
    retention_ms: i64,
}

#[derive(Debug, Default)]
struct Series {
    newest_start: Option<i64>,
    /// Key label values -> (window start, value per gauge column; None = not a number).
    by_key: BTreeMap<Vec<String>, (i64, Vec<Option<f64>>)>,
    dropped: u64,
}

/// The business gauges of a job's analyses.
#[derive(Debug)]
pub struct ResultGauges {
    analyses: Vec<GaugeAnalysis>,
    /// Plan analysis index -> index into `analyses`.
    slot: Vec<Option<usize>>,
    state: Mutex<Vec<Series>>,
}

pub(super) fn label_value(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Null => "null".to_string(),
        v => {
            let mut s = String::new();
            v.write_json(&mut s);
            s
        }
    }
}

fn gauge_value(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Null => Some(f64::NAN),
        Value::Str(_) | Value::List(_) => None,
    }
}

impl ResultGauges {
    pub fn new(plan: &JobPlan) -> Self {
        let mut analyses = Vec::new();
        let mut slot = vec![None; plan.analyses.len()];
        for (i, a) in plan.analyses.iter().enumerate() {
            if a.gauges.is_empty() {
                continue;
            }
            slot[i] = Some(analyses.len());
            analyses.push(GaugeAnalysis {
                name: a.name.clone(),
                key_len: a.key_len,
                key_names: a.columns[..a.key_len].to_vec(),
                columns: a
                    .gauges
                    .iter()
                    .map(|&c| (c, a.columns[c].clone()))
                    .collect(),
                retention_ms: RETENTION_WINDOWS * plan.slide_of(i).max(1),
            });
        }
        let state = Mutex::new(analyses.iter().map(|_| Series::default()).collect());
        ResultGauges {
            analyses,
            slot,
            state,
        }
    }

    /// Takes written rows into account.
    pub fn observe(&self, rows: &[Row]) {
        if self.analyses.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut touched = vec![false; self.analyses.len()];
        for r in rows {
            let Some(&Some(s)) = self.slot.get(r.analysis as usize) else {
                continue;
            };
            let a = &self.analyses[s];
            let series = &mut state[s];
            touched[s] = true;
            let newest = series.newest_start.map_or(r.start, |n| n.max(r.start));
            series.newest_start = Some(newest);
            if r.start < newest - a.retention_ms {
                continue; // a straggler from a window already out of retention
            }
            let key: Vec<String> = r.key(a.key_len).iter().map(label_value).collect();
            if r.retract {
                // Update mode: the row for this window is gone; so is its series.
                if series.by_key.get(&key).is_some_and(|e| e.0 == r.start) {
                    series.by_key.remove(&key);
                }
                continue;
            }
            let values: Vec<Option<f64>> = a
                .columns
                .iter()
                .map(|&(c, _)| r.values.get(c).and_then(gauge_value))
                .collect();
            match series.by_key.get_mut(&key) {
                Some(entry) => {
                    if r.start >= entry.0 {
                        *entry = (r.start, values);
                    }
                }
                None => {
                    if series.by_key.len() >= MAX_KEYS_PER_ANALYSIS {
                        series.dropped += 1;
                    } else {
                        series.by_key.insert(key, (r.start, values));
                    }
                }
            }
        }
        for (s, series) in state.iter_mut().enumerate() {
            if let (true, Some(newest)) = (touched[s], series.newest_start) {
                let oldest = newest - self.analyses[s].retention_ms;
                series.by_key.retain(|_, (start, _)| *start >= oldest);
            }
        }
    }

    pub(crate) fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.analyses.is_empty() {
            return Ok(());
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut series = Vec::new();
        for (a, st) in self.analyses.iter().zip(state.iter()) {
            for (key, (_, values)) in &st.by_key {
                for ((_, column), v) in a.columns.iter().zip(values) {
                    let Some(v) = v else { continue };
                    let mut labels = vec![
                        ("analysis".to_string(), a.name.clone()),
                        ("column".to_string(), column.clone()),
                    ];
                    labels.extend(a.key_names.iter().cloned().zip(key.iter().cloned()));
                    series.push((labels, *v));
                }
            }
        }
        gauges(
            enc,
            "logflow_result",
            "An analysis's metric column for the latest closed window of each group key (spec field `gauges`).",
            &series,
        )?;
        let dropped: Vec<_> = self
            .analyses
            .iter()
            .zip(state.iter())
            .map(|(a, st)| (vec![("analysis", a.name.clone())], st.dropped))
            .collect();
        counters(
            enc,
            "logflow_result_keys_dropped",
            "Rows of group keys not exported as logflow_result because the analysis already has the maximum number of keys.",
            &dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{Identity, Metrics};
    use crate::spec::{parse_spec, plan::JobPlan, SpecSource};

    fn plan() -> JobPlan {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
            [[analysis]]\nname = \"rt\"\nwindow = { size = \"1m\" }\ngroup_by = [\"service\"]\n\
            select = [\"count() as n\", \"avg(response_time) as avg_rt\", \"collect_set(level) as levels\"]\n\
            gauges = [\"avg_rt\", \"levels\"]\n";
        let src = SpecSource {
            file: "t.toml",
            text,
        };
        JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap()
    }

    fn row(start_min: i64, service: Option<&str>, avg: Value) -> Row {
        Row {
            analysis: 0,
            start: start_min * 60_000,
            end: (start_min + 1) * 60_000,
            values: vec![
                service.map_or(Value::Null, |s| Value::Str(s.into())),
                Value::Int(1),
                avg,
                Value::List(vec![]),
            ],
            retract: false,
        }
    }

    fn exported(m: &Arc<Metrics>) -> Vec<String> {
        m.encode_text()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("logflow_result{"))
            .map(String::from)
            .collect()
    }

    #[test]
    fn latest_window_per_key_with_retention_nan_and_null_keys() {
        let id = Identity {
            pipeline: "j".into(),
            process: 0,
            processes: 1,
            threads: 1,
        };
        let m = Arc::new(Metrics::new(&plan(), id));
        m.rows_written(&[
            row(10, Some("api"), Value::Float(0.5)),
            row(10, Some("db"), Value::Float(0.25)),
            row(10, None, Value::Null),
        ]);
        // A newer window for `api`, then a straggler of an older one that must not win.
        m.rows_written(&[row(11, Some("api"), Value::Float(0.75))]);
        m.rows_written(&[row(9, Some("api"), Value::Float(9.0))]);
        assert_eq!(
            exported(&m),
            vec![
                "logflow_result{analysis=\"rt\",column=\"avg_rt\",service=\"api\"} 0.75",
                "logflow_result{analysis=\"rt\",column=\"avg_rt\",service=\"db\"} 0.25",
                "logflow_result{analysis=\"rt\",column=\"avg_rt\",service=\"null\"} NaN",
            ],
            "text columns (levels) are not numbers and are not exported"
        );
        // Two windows later, keys not seen since minute 10 are gone.
        m.rows_written(&[row(12, Some("api"), Value::Int(2))]);
        assert_eq!(exported(&m).len(), 3);
        m.rows_written(&[row(13, Some("api"), Value::Int(3))]);
        assert_eq!(
            exported(&m),
            vec!["logflow_result{analysis=\"rt\",column=\"avg_rt\",service=\"api\"} 3.0"]
        );
        let text = m.encode_text().unwrap();
        assert!(
            text.contains("logflow_windows_emitted_total{analysis=\"rt\",topic=\"rt\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("logflow_output_records_total{analysis=\"rt\",topic=\"rt\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("logflow_last_window_end_seconds{analysis=\"rt\",topic=\"rt\"} 840.0"),
            "{text}"
        );
    }

    #[test]
    fn keys_per_analysis_are_capped() {
        let g = ResultGauges::new(&plan());
        let rows: Vec<Row> = (0..MAX_KEYS_PER_ANALYSIS + 5)
            .map(|i| row(1, Some(&format!("s{i}")), Value::Int(1)))
            .collect();
        g.observe(&rows);
        let state = g.state.lock().unwrap();
        assert_eq!(state[0].by_key.len(), MAX_KEYS_PER_ANALYSIS);
        assert_eq!(state[0].dropped, 5);
    }
}
