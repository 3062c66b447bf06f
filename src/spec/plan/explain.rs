//! `logflow check`: the plan explained in words.

use std::fmt::Write;

use super::types::{bound_names, AnalysisKind, Detector, JobPlan, NodeInput, SinkConfig};
use crate::time::duration::format_ms;

impl JobPlan {
    /// A human explanation of the plan (`logflow check`).
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "job `{}`", self.name);
        if let Some(d) = &self.description {
            let _ = writeln!(s, "  {}", d.trim());
        }
        let src = self.source.kind.describe();
        let _ = writeln!(
            s,
            "source: {src}, format {}, records up to {} bytes",
            self.source.format, self.source.max_record_bytes
        );
        if let Some(schema) = &self.schema {
            s.push_str(&schema.describe());
        }
        if self.source.format.processing_time() {
            let _ = writeln!(
                s,
                "time: processing time (each record is stamped with the wall clock when read; windows and triggers follow the clock)"
            );
        }
        for l in &self.lookups {
            let cols: Vec<&str> = l.fields.iter().map(|(c, _)| c.as_str()).collect();
            let _ = writeln!(
                s,
                "lookup `{}`: {} ({}, reloaded when it changes) joined on `{}` = `{}`, adds fields {}",
                l.name,
                l.path.display(),
                l.format.name(),
                l.on.name_in(&self.extras),
                l.key,
                cols.join(", ")
            );
        }
        let sink = self.sink.describe();
        let _ = writeln!(
            s,
            "sink: {sink}; dead letters -> {}, late events -> {}",
            self.dead_letter_topic(),
            self.late_topic()
        );
        if matches!(self.sink, SinkConfig::Kafka(_)) {
            // One line a script can read: `sed -n 's/^topics: //p'` (docs/first-job.md).
            let _ = writeln!(s, "topics: {}", self.topics().join(" "));
        }
        if let Some(c) = &self.checkpoint {
            let dir = match c.dir.as_str() {
                "" => "the directory --checkpoint-dir gives",
                d => d,
            };
            let _ = writeln!(
                s,
                "checkpoints: every {} in {dir}, keeping the last {}",
                format_ms(c.interval_ms),
                c.keep
            );
        }
        let _ = writeln!(
            s,
            "idle partitions stop holding the watermark after {}",
            format_ms(self.idle_timeout_ms)
        );
        let _ = writeln!(
            s,
            "events more than {} ahead of the wall clock are dead letters",
            format_ms(self.max_future_ms)
        );
        let _ = writeln!(
            s,
            "event-time progress granularity: {}",
            format_ms(self.granularity_ms)
        );
        let _ = writeln!(
            s,
            "{} analyses, {} shared aggregation passes:",
            self.analyses.len(),
            self.nodes.len()
        );
        for a in &self.analyses {
            let what = match &a.kind {
                AnalysisKind::Windowed { node, .. } if a.windowless => {
                    let n = &self.nodes[*node];
                    let input = match n.input {
                        NodeInput::Events => "events",
                        NodeInput::Late => "late events",
                    };
                    match n.complete {
                        Some(t) => format!("running result per key over all {input} (no window), complete mode: the whole table every {} with new data, pass #{node}", format_ms(t)),
                        None => format!("running result per key over all {input} (no window), update mode, pass #{node}"),
                    }
                }
                AnalysisKind::Windowed { node, .. } => {
                    let n = &self.nodes[*node];
                    let w = if n.windows.session {
                        format!("session (gap {}, per key)", format_ms(n.windows.size))
                    } else if n.windows.size == n.windows.slide {
                        format!("tumbling {}", format_ms(n.windows.size))
                    } else {
                        format!(
                            "sliding {} every {}",
                            format_ms(n.windows.size),
                            format_ms(n.windows.slide)
                        )
                    };
                    let mut w = format!("{w} windows, delay {}", format_ms(a.delay_ms));
                    if a.lateness_ms > 0 {
                        let _ = write!(w, " + allowed lateness {}", format_ms(a.lateness_ms));
                    }
                    if a.update {
                        let _ = write!(w, ", update mode (early results and corrections)");
                    }
                    if let Some(m) = a.max_keys {
                        let _ = write!(w, ", at most {m} keys per window (the first in key order; the others -> `{}`)", self.overflow_topic());
                    }
                    let _ = write!(w, ", pass #{node}");
                    w
                }
                AnalysisKind::Overflow => {
                    "the keys a `max_keys` analysis did not keep: one row per window, analysis and key"
                        .into()
                }
                AnalysisKind::Derived { from, detector } => {
                    let f = &self.analyses[*from].name;
                    match detector {
                        Detector::Pass => format!("rows of `{f}`"),
                        Detector::ZScore { column, history } => format!(
                            "z-score of `{}` in `{f}` against the previous {history} windows of each key",
                            self.analyses[*from].columns[*column]
                        ),
                        Detector::Lag { column, history } => format!(
                            "change of `{}` in `{f}` against the previous window of each key (at most {history} windows back)",
                            self.analyses[*from].columns[*column]
                        ),
                        Detector::Intersect { with } => format!(
                            "rows of `{f}` whose key is also in `{}` for an overlapping window",
                            self.analyses[*with].name
                        ),
                    }
                }
            };
            let _ = writeln!(s, "  - {} -> topic `{}`: {what}", a.name, a.topic);
            if let AnalysisKind::Windowed { node, .. } = &a.kind {
                if let Some(x) = &self.nodes[*node].explode {
                    let _ = writeln!(
                        s,
                        "      one row per element of a list, as field `{}` (explode)",
                        self.extras[x.slot as usize]
                    );
                }
            }
            let keys = &a.columns[..a.key_len];
            let mut cols: Vec<String> = Vec::new();
            if a.complete {
                cols.push("as_of".into());
            } else if !a.windowless {
                cols.extend(bound_names(a.session).map(String::from));
            }
            if !keys.is_empty() {
                cols.push(format!("key: {}", keys.join(", ")));
            }
            cols.extend(a.columns[a.key_len..].iter().cloned());
            let _ = writeln!(s, "      columns: {}", cols.join(", "));
            if a.having.is_some() {
                let _ = writeln!(s, "      rows filtered by `having`");
            }
            if !a.gauges.is_empty() {
                let names: Vec<&str> = a.gauges.iter().map(|&i| a.columns[i].as_str()).collect();
                let _ = writeln!(s, "      gauges (logflow_result): {}", names.join(", "));
            }
            if let Some(alert) = &a.alert {
                let _ = writeln!(
                    s,
                    "      alert ({}) -> topic `{}`",
                    alert.severity,
                    self.alerts_topic()
                );
            }
        }
        for w in self.warnings() {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }

    /// What in a valid spec deserves a second look: windowed `append` analyses grouped by a
    /// per-client field (an IP, a user, a session) without `max_keys`, whose state a producer sending
    /// random values grows without bound.
    pub fn warnings(&self) -> Vec<String> {
        self.analyses
            .iter()
            .filter(|a| a.max_keys.is_none() && !a.update && !a.complete && !a.windowless)
            .filter(|a| matches!(a.kind, AnalysisKind::Windowed { .. }))
            .filter_map(|a| {
                let key = a.columns[..a.key_len].iter().find(|k| per_client(k))?;
                Some(format!(
                    "analysis `{}` is grouped by `{key}` without `max_keys`: a flood of distinct values grows its state without bound",
                    a.name
                ))
            })
            .collect()
    }
}

/// A group key naming one client: an IP address, a user or a session.
fn per_client(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["ip", "user", "session", "client"]
        .iter()
        .any(|w| k == *w || k.starts_with(&format!("{w}_")) || k.ends_with(&format!("_{w}")))
}
