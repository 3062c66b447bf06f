//! What `logflow top` draws, made from what the job serves: its `/metrics` text (counters and
//! watermarks) and its `/results` JSON (the latest window's rows of each analysis). Nothing
//! is recomputed here but rates (counter differences over the time between two fetches).
//!
//! Both answers come from the network and are parsed defensively: unknown lines and fields
//! are skipped, a malformed answer is an error shown as "disconnected", never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The numbers of one `/metrics` answer that `top` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// The job's name (`logflow_process_info{pipeline}`).
    pub pipeline: Option<String>,
    pub running: bool,
    pub read: f64,
    pub dead_letter: f64,
    pub late: f64,
    pub rows_out: f64,
    /// The job's watermark here (Unix seconds): least over partitions neither idle nor finished.
    pub watermark: Option<f64>,
    pub partitions: usize,
    /// Every partition's bounded input has ended.
    pub input_done: bool,
}

/// One sample line: metric name, label text (between the braces) and value.
fn sample_line(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').filter(|&c| c > open)?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, "", rest)
        }
    };
    let value = match rest.split_whitespace().next()? {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The value of label `key` in a label text (`a="x",b="y\"z"`), unescaped.
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        if k.trim_start_matches(',').trim() == key {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

impl Sample {
    /// Reads a `/metrics` answer (Prometheus text or OpenMetrics). An answer without
    /// `logflow_job_running` is not a logflow job's.
    pub fn parse(text: &str) -> Result<Sample, String> {
        let mut s = Sample::default();
        let mut seen_running = false;
        // Per partition (its label text): watermark, idle, finished.
        let mut parts: BTreeMap<&str, (Option<f64>, bool, bool)> = BTreeMap::new();
        for line in text.lines() {
            let Some((name, labels, v)) = sample_line(line) else {
                continue;
            };
            match name {
                "logflow_job_running" => {
                    seen_running = true;
                    s.running = v == 1.0;
                }
                "logflow_process_info" => s.pipeline = label(labels, "pipeline"),
                "logflow_records_read_total" => {
                    s.read += v;
                    parts.entry(labels).or_default();
                }
                "logflow_records_dead_letter_total" => s.dead_letter += v,
                "logflow_records_late_total" => s.late += v,
                "logflow_output_records_total" => s.rows_out += v,
                "logflow_partition_watermark_seconds" => {
                    parts.entry(labels).or_default().0 = Some(v)
                }
                "logflow_partition_idle" => parts.entry(labels).or_default().1 = v == 1.0,
                "logflow_partition_finished" => parts.entry(labels).or_default().2 = v == 1.0,
                _ => {}
            }
        }
        if !seen_running {
            return Err("not a logflow metrics endpoint (no logflow_job_running)".into());
        }
        s.partitions = parts.len();
        s.input_done = !parts.is_empty() && parts.values().all(|p| p.2);
        s.watermark = parts
            .values()
            .filter(|(_, idle, finished)| !idle && !finished)
            .filter_map(|p| p.0)
            .filter(|w| w.is_finite())
            .reduce(f64::min);
        Ok(s)
    }
}

/// One analysis of a `/results` answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Analysis {
    pub name: String,
    /// Its rows are findings (a detector or a `having` filter): drawn highlighted.
    #[serde(default)]
    pub finding: bool,
    /// Key columns first, then metrics.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub rank_by: Option<String>,
    #[serde(default)]
    pub window_start: Option<String>,
    #[serde(default)]
    pub window_end: Option<String>,
    #[serde(default)]
    pub rows_in_window: u64,
    /// The job's top rows of the window, largest `rank_by` first.
    #[serde(default)]
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A `/results` answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Results {
    #[serde(default)]
    pub pipeline: String,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub analyses: Vec<Analysis>,
}

impl Results {
    pub fn parse(text: &str) -> Result<Results, String> {
        serde_json::from_str(text).map_err(|e| format!("not a logflow /results answer: {e}"))
    }
}

/// A cell as drawn: integers as they are, other numbers with 3 decimals, lists joined.
pub fn cell(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "-".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        J::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
        J::String(s) => s.clone(),
        J::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        J::Object(_) => v.to_string(),
    }
}

/// Per-second rates between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub events: f64,
    pub dead_letter: f64,
    pub late: f64,
}

/// The connection's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    Connected,
    /// The last fetch failed (why); the view keeps the last data and retries.
    Disconnected(String),
}

/// Everything the view draws.
#[derive(Clone, Debug)]
pub struct Model {
    /// What `top` is attached to, as given.
    pub target: String,
    pub link: Link,
    pub sample: Option<Sample>,
    pub rates: Option<Rates>,
    pub results: Option<Results>,
    /// Wall clock of the last successful fetch (ms since the epoch), for the watermark lag.
    pub now_ms: i64,
    /// (sample, seconds on a monotonic clock) of the previous fetch.
    prev: Option<(Sample, f64)>,
}

impl Model {
    pub fn new(target: &str) -> Model {
        Model {
            target: target.to_string(),
            link: Link::Connecting,
            sample: None,
            rates: None,
            results: None,
            now_ms: 0,
            prev: None,
        }
    }

    /// A successful fetch at `mono_s` (a monotonic clock, seconds) and wall clock `now_ms`.
    pub fn update(&mut self, sample: Sample, results: Option<Results>, mono_s: f64, now_ms: i64) {
        if let Some((p, t)) = &self.prev {
            let dt = mono_s - t;
            // A counter that went down is a restarted job: no rate until the next fetch.
            if dt > 0.0 && sample.read >= p.read {
                let per_s = |a: f64, b: f64| ((a - b) / dt).max(0.0);
                self.rates = Some(Rates {
                    events: per_s(sample.read, p.read),
                    dead_letter: per_s(sample.dead_letter, p.dead_letter),
                    late: per_s(sample.late, p.late),
                });
            } else {
                self.rates = None;
            }
        }
        self.prev = Some((sample.clone(), mono_s));
        self.sample = Some(sample);
        if results.is_some() {
            self.results = results;
        }
        self.now_ms = now_ms;
        self.link = Link::Connected;
    }

    /// A failed fetch: the last data stays on screen, marked disconnected.
    pub fn failed(&mut self, why: String) {
        self.link = Link::Disconnected(why);
        self.prev = None;
        self.rates = None;
    }

    /// Wall clock minus the watermark, in ms.
    pub fn lag_ms(&self) -> Option<i64> {
        let w = self.sample.as_ref()?.watermark?;
        Some((self.now_ms - (w * 1000.0) as i64).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP logflow_job_running 1 while the job runs.
# TYPE logflow_job_running gauge
logflow_job_running 1
logflow_process_info{pipeline=\"log \\\"analysis\\\"\",process=\"0\",processes=\"1\",threads=\"2\",version=\"0.1.0\"} 1
logflow_records_read_total{source=\"logs\",partition=\"0\",worker=\"0\"} 1000
logflow_records_read_total{source=\"logs\",partition=\"1\",worker=\"1\"} 500
logflow_records_dead_letter_total{source=\"logs\",partition=\"0\",worker=\"0\"} 10
logflow_records_late_total{source=\"logs\",partition=\"0\",worker=\"0\"} 2
logflow_partition_watermark_seconds{source=\"logs\",partition=\"0\",worker=\"0\"} 1795514400.0
logflow_partition_watermark_seconds{source=\"logs\",partition=\"1\",worker=\"1\"} 1795514100.0
logflow_partition_idle{source=\"logs\",partition=\"0\",worker=\"0\"} 0
logflow_partition_idle{source=\"logs\",partition=\"1\",worker=\"1\"} 1
logflow_partition_finished{source=\"logs\",partition=\"0\",worker=\"0\"} 0
logflow_partition_finished{source=\"logs\",partition=\"1\",worker=\"1\"} 0
logflow_output_records_total{analysis=\"a\",topic=\"a\"} 7
garbage line {{{
";

    #[test]
    fn parses_the_metrics_text() {
        let s = Sample::parse(METRICS).unwrap();
        assert_eq!(s.pipeline.as_deref(), Some("log \"analysis\""));
        assert!(s.running);
        assert_eq!(
            (s.read, s.dead_letter, s.late, s.rows_out),
            (1500.0, 10.0, 2.0, 7.0)
        );
        assert_eq!(s.partitions, 2);
        // The idle partition does not hold the watermark back.
        assert_eq!(s.watermark, Some(1_795_514_400.0));
        assert!(!s.input_done);
        assert!(Sample::parse("hello\n").is_err());
        assert!(Sample::parse("").is_err());
    }

    #[test]
    fn rates_and_lag_come_from_two_fetches() {
        let mut m = Model::new("x");
        let s = Sample::parse(METRICS).unwrap();
        m.update(s.clone(), None, 10.0, 1_795_514_400_000 + 65_000);
        assert_eq!(m.rates, None);
        assert_eq!(m.lag_ms(), Some(65_000));
        let later = Sample {
            read: s.read + 3000.0,
            dead_letter: s.dead_letter + 30.0,
            ..s.clone()
        };
        m.update(later, None, 12.0, 0);
        assert_eq!(
            m.rates,
            Some(Rates {
                events: 1500.0,
                dead_letter: 15.0,
                late: 0.0
            })
        );
        m.failed("refused".into());
        assert_eq!(m.link, Link::Disconnected("refused".into()));
        assert!(m.sample.is_some(), "the last data stays");
    }

    #[test]
    fn parses_results_and_formats_cells() {
        let r = Results::parse(
            r#"{"pipeline":"j","running":true,"analyses":[{"name":"ddos","finding":true,
            "columns":["ip_address","request_count"],"rank_by":"request_count",
            "window_start":"2026-11-24T10:02:00Z","window_end":"2026-11-24T10:03:00Z",
            "rows_in_window":1,"rows":[["1.2.3.4",300]],"future_field":1}]}"#,
        )
        .unwrap();
        assert_eq!(r.analyses[0].rows[0][1], 300);
        assert!(r.analyses[0].finding);
        assert!(Results::parse("[1,2]").is_err());
        assert_eq!(cell(&serde_json::json!(0.25)), "0.250");
        assert_eq!(cell(&serde_json::json!(12)), "12");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a,b");
        assert_eq!(cell(&serde_json::Value::Null), "-");
    }
}
