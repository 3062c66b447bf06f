//! Alert metrics: `logflow_alerts_total{alert,severity}` (firing records written to
//! `<job>.alerts`), `logflow_alert_active{alert,severity,<group keys>}` (1 while a key's alert
//! is active) and `logflow_alert_since_seconds{alert,severity,<group keys>,summary}` (when
//! it became active, with its latest summary: the Grafana table of active alerts).
//!
//! An alert of a windowed analysis is active while its key fired in one of the analysis's
//! latest [`RETENTION_WINDOWS`] window slides (a DDoS that stopped is over), as the result
//! gauges age out; an update-mode `resolved` record ends it at once. Keys are bounded like the
//! result gauges: at most [`MAX_KEYS_PER_ANALYSIS`] active keys per alert, further ones
//! counted in `logflow_alert_keys_dropped_total{alert}`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use prometheus_client::encoding::DescriptorEncoder;

use super::registry::{counters, gauges};
use super::results::{label_value, MAX_KEYS_PER_ANALYSIS, RETENTION_WINDOWS};
use crate::record::Row;
use crate::sinks::render::alert_summary;
use crate::spec::plan::JobPlan;

#[derive(Debug)]
struct AlertAnalysis {
    name: String,
    severity: &'static str,
    key_len: usize,
    key_names: Vec<String>,
    /// `None`: no window, an active alert ends only when resolved.
    retention_ms: Option<i64>,
}

/// One active key.
#[derive(Debug)]
struct Active {
    /// Window start of the first window of this run of firing windows.
    since: i64,
    /// Window start of its latest firing row.
    latest: i64,
    summary: String,
}

#[derive(Debug, Default)]
struct State {
    fired: u64,
    newest_start: Option<i64>,
    active: BTreeMap<Vec<String>, Active>,
    dropped: u64,
}

/// The alert metrics of a job.
#[derive(Debug)]
pub struct AlertMetrics {
    plan: Option<std::sync::Arc<JobPlan>>,
    alerts: Vec<AlertAnalysis>,
    /// Plan analysis index -> index into `alerts`.
    slot: Vec<Option<usize>>,
    state: Mutex<Vec<State>>,
}

impl AlertMetrics {
    pub fn new(plan: &JobPlan) -> Self {
        let mut alerts = Vec::new();
        let mut slot = vec![None; plan.analyses.len()];
        for (i, a) in plan.analyses.iter().enumerate() {
            let Some(alert) = &a.alert else { continue };
            slot[i] = Some(alerts.len());
            alerts.push(AlertAnalysis {
                name: a.name.clone(),
                severity: alert.severity.word(),
                key_len: a.key_len,
                key_names: a.columns[..a.key_len].to_vec(),
                retention_ms: (!a.windowless && !a.complete)
                    .then(|| RETENTION_WINDOWS * plan.slide_of(i).max(1)),
            });
        }
        let state = Mutex::new(alerts.iter().map(|_| State::default()).collect());
        AlertMetrics {
            plan: (!alerts.is_empty()).then(|| std::sync::Arc::new(plan.clone())),
            alerts,
            slot,
            state,
        }
    }

    /// Takes written rows into account.
    pub fn observe(&self, rows: &[Row]) {
        let Some(plan) = &self.plan else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut touched = vec![false; self.alerts.len()];
        for r in rows {
            let Some(&Some(s)) = self.slot.get(r.analysis as usize) else {
                continue;
            };
            let a = &self.alerts[s];
            let st = &mut state[s];
            touched[s] = true;
            let key: Vec<String> = r.key(a.key_len).iter().map(label_value).collect();
            if r.retract {
                st.active.remove(&key);
                continue;
            }
            st.fired += 1;
            let newest = st.newest_start.map_or(r.start, |n| n.max(r.start));
            st.newest_start = Some(newest);
            if a.retention_ms.is_some_and(|keep| r.start < newest - keep) {
                continue; // a straggler from a window already over
            }
            let summary = alert_summary(plan, r).unwrap_or_default();
            let len = st.active.len();
            match st.active.get_mut(&key) {
                Some(e) => {
                    let gap = a.retention_ms.is_some_and(|keep| r.start > e.latest + keep);
                    if gap {
                        e.since = r.start;
                    }
                    if r.start >= e.latest {
                        e.latest = r.start;
                        e.summary = summary;
                    }
                }
                None if len >= MAX_KEYS_PER_ANALYSIS => st.dropped += 1,
                None => {
                    st.active.insert(
                        key,
                        Active {
                            since: r.start,
                            latest: r.start,
                            summary,
                        },
                    );
                }
            }
        }
        for (s, st) in state.iter_mut().enumerate() {
            if let (true, Some(newest), Some(keep)) =
                (touched[s], st.newest_start, self.alerts[s].retention_ms)
            {
                st.active.retain(|_, e| e.latest >= newest - keep);
            }
        }
    }

    pub(crate) fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.alerts.is_empty() {
            return Ok(());
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = Vec::new();
        let mut active = Vec::new();
        let mut since = Vec::new();
        let mut dropped = Vec::new();
        for (a, st) in self.alerts.iter().zip(state.iter()) {
            let head = vec![
                ("alert".to_string(), a.name.clone()),
                ("severity".to_string(), a.severity.to_string()),
            ];
            total.push((head.clone(), st.fired));
            dropped.push((vec![("alert".to_string(), a.name.clone())], st.dropped));
            for (key, e) in &st.active {
                let mut labels = head.clone();
                labels.extend(a.key_names.iter().cloned().zip(key.iter().cloned()));
                active.push((labels.clone(), 1.0));
                labels.push(("summary".to_string(), e.summary.clone()));
                since.push((labels, e.since as f64 / 1000.0));
            }
        }
        counters(
            enc,
            "logflow_alerts",
            "Firing alert records written to <job>.alerts (spec field `alert`).",
            &total,
        )?;
        gauges(
            enc,
            "logflow_alert_active",
            "1 while an alert is active for a group key: it fired in one of the analysis's latest two window slides and was not resolved.",
            &active,
        )?;
        gauges(
            enc,
            "logflow_alert_since_seconds",
            "When an active alert became active (the start of its first firing window, Unix seconds), with its latest summary.",
            &since,
        )?;
        counters(
            enc,
            "logflow_alert_keys_dropped",
            "Firing rows of group keys not exported as logflow_alert_active because the alert already has the maximum number of active keys.",
            &dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{Identity, Metrics};
    use crate::record::Value;
    use crate::spec::{parse_spec, SpecSource};

    fn plan(mode: &str) -> JobPlan {
        let text = format!(
            "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
            [[analysis]]\nname = \"ddos\"\nwindow = {{ size = \"1m\" }}\n{mode}\
            group_by = [\"ip_address\"]\nselect = [\"count() as n\"]\n\
            alert = {{ severity = \"critical\", summary = \"{{n}} requests from {{ip_address}}\" }}\n"
        );
        let src = SpecSource {
            file: "t.toml",
            text: &text,
        };
        JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap()
    }

    fn row(start_min: i64, ip: &str, n: i64, retract: bool) -> Row {
        Row {
            analysis: 0,
            start: start_min * 60_000,
            end: (start_min + 1) * 60_000,
            values: vec![Value::Str(ip.into()), Value::Int(n)],
            retract,
        }
    }

    fn exported(m: &Arc<Metrics>) -> Vec<String> {
        m.encode_text()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("logflow_alert"))
            .map(String::from)
            .collect()
    }

    fn metrics(plan: &JobPlan) -> Arc<Metrics> {
        let id = Identity {
            pipeline: "j".into(),
            process: 0,
            processes: 1,
            threads: 1,
        };
        Arc::new(Metrics::new(plan, id))
    }

    #[test]
    fn firing_rows_count_and_stay_active_for_two_windows() {
        let p = plan("");
        let m = metrics(&p);
        m.rows_written(&[
            row(10, "1.2.3.4", 500, false),
            row(10, "5.6.7.8", 300, false),
        ]);
        m.rows_written(&[row(11, "1.2.3.4", 600, false)]);
        let text = exported(&m);
        assert!(
            text.contains(
                &"logflow_alerts_total{alert=\"ddos\",severity=\"critical\"} 3".to_string()
            ),
            "{text:?}"
        );
        assert!(text.contains(&"logflow_alert_active{alert=\"ddos\",severity=\"critical\",ip_address=\"1.2.3.4\"} 1.0".to_string()), "{text:?}");
        // Active since its first window, with the latest summary.
        assert!(text.contains(&"logflow_alert_since_seconds{alert=\"ddos\",severity=\"critical\",ip_address=\"1.2.3.4\",summary=\"600 requests from 1.2.3.4\"} 600.0".to_string()), "{text:?}");
        // Two windows later without firing again, 5.6.7.8's alert is over.
        m.rows_written(&[row(13, "1.2.3.4", 700, false)]);
        let text = exported(&m);
        assert!(!text.iter().any(|l| l.contains("5.6.7.8")), "{text:?}");
        // 1.2.3.4 skipped window 12 but is within two slides: still the same run.
        assert!(
            text.iter()
                .any(|l| l.starts_with("logflow_alert_since_seconds") && l.ends_with(" 600.0")),
            "{text:?}"
        );
    }

    #[test]
    fn resolved_ends_an_update_mode_alert_and_keys_are_bounded() {
        let p = plan("mode = \"update\"\n");
        let m = metrics(&p);
        m.rows_written(&[row(10, "1.2.3.4", 500, false)]);
        m.rows_written(&[row(10, "1.2.3.4", 500, true)]);
        assert!(!exported(&m)
            .iter()
            .any(|l| l.starts_with("logflow_alert_active")));
        let many: Vec<Row> = (0..MAX_KEYS_PER_ANALYSIS + 5)
            .map(|i| row(20, &format!("10.0.{}.{}", i / 256, i % 256), 1, false))
            .collect();
        m.rows_written(&many);
        let text = exported(&m);
        let active = text
            .iter()
            .filter(|l| l.starts_with("logflow_alert_active"))
            .count();
        assert_eq!(active, MAX_KEYS_PER_ANALYSIS);
        assert!(
            text.contains(&"logflow_alert_keys_dropped_total{alert=\"ddos\"} 5".to_string()),
            "{text:?}"
        );
    }
}
