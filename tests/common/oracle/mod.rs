//! The oracle: an independent batch computation of what a job must write for an input file,
//! and the comparison of a job's output directory with it.
//!
//! Independent of the engine: the only logflow code used is the generator (`logflow::gen`),
//! to write inputs and label their lines. Parsing, lateness (the watermark recomputed from the
//! input order), windows, aggregates, detectors, `late_alerts` and update mode's row sequence
//! are computed here with serde_json, chrono and std (DESIGN.md sections 2, 3 and 5). The
//! semantics decided, and where the contract leaves a choice, are listed in
//! `tests/oracle/main.rs`.

#![allow(dead_code)] // shared by several test binaries, each using a part

pub mod compare;
pub mod engine;
pub mod expected;
pub mod input;
pub mod lateness;
pub mod sessions;
pub mod update;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use logflow::gen::Kind;

use compare::{check_dead_letters, check_late, check_late_alerts, compare};
use engine::jsonl;
use expected::{log_oracle, user_event_oracle, Row};
use input::{read_events, Ev, Input};
use lateness::{Missed, Win};

pub const MINUTE: i64 = 60_000;

/// What the oracle knows of a job: its windowed analyses (whose rules decide lateness), the
/// analyses derived from them, and how to compute every analysis's rows from the events (each
/// event joins the windows still open when it arrives).
pub struct Job {
    pub kind: Kind,
    pub windowed: Vec<(&'static str, Win)>,
    /// (derived analysis, the analysis it reads)
    pub derived: Vec<(&'static str, &'static str)>,
    pub compute: fn(&[Ev]) -> BTreeMap<&'static str, Vec<Row>>,
    /// The job has `late_alerts` (per user, the late events, in update mode).
    pub late_alerts: bool,
}

/// `dataflows/log-analysis.toml` (hard-coded: a changed spec fails instead of passing).
pub fn log_analysis() -> Job {
    let minute = Win::new(MINUTE, MINUTE, 5 * MINUTE, 0);
    let five = Win::new(5 * MINUTE, 5 * MINUTE, 10 * MINUTE, 0);
    Job {
        kind: Kind::Logs,
        windowed: vec![
            ("response_time", minute),
            ("error_rate", minute),
            ("ip_patterns", five),
            ("ddos", minute),
            ("sla", minute),
            ("user_activity", five),
            ("service_popularity", minute),
            ("system_health", minute),
        ],
        derived: vec![
            ("response_time_anomalies", "response_time"),
            ("error_rate_spikes", "error_rate"),
            ("suspicious_ips", "ip_patterns"),
        ],
        compute: log_oracle,
        late_alerts: false,
    }
}

/// `dataflows/user-events.toml`.
pub fn user_events() -> Job {
    Job {
        kind: Kind::UserEvents,
        windowed: vec![
            (
                "user_activity_sliding",
                Win::new(MINUTE, 30_000, 5 * MINUTE, 0),
            ),
            (
                "action_metrics",
                Win::new(2 * MINUTE, MINUTE, 5 * MINUTE, 0),
            ),
            (
                "user_anomalies",
                Win::new(5 * MINUTE, 2 * MINUTE, 10 * MINUTE, 0),
            ),
            ("user_sessions", expected::USER_SESSIONS),
        ],
        derived: vec![],
        compute: user_event_oracle,
        late_alerts: true,
    }
}

/// `late_alerts` of one user: `(late_event_count, earliest late event)` of each row, in order.
pub type Alerts = Vec<(i64, i64)>;

/// Everything a run over the input must write.
pub struct Expected {
    pub lines: u64,
    /// 1-based lines the oracle cannot read (dead letters).
    pub bad: BTreeSet<usize>,
    /// Late events by 1-based line: (event time, what it missed).
    pub late: BTreeMap<usize, (i64, Missed)>,
    pub rows: BTreeMap<&'static str, Vec<Row>>,
    /// Per user (null included): the rows `late_alerts` writes.
    pub alerts: Option<BTreeMap<Option<String>, Alerts>>,
    /// Update-mode analyses: per window and key (row id), the rows in order.
    pub updates: BTreeMap<&'static str, BTreeMap<String, Vec<Row>>>,
    /// Output files the test compares itself (update-mode sessions: `sessions`).
    pub checked_elsewhere: BTreeSet<String>,
}

impl Expected {
    /// Events on time for every analysis.
    pub fn on_time(&self) -> u64 {
        self.lines - self.bad.len() as u64 - self.late.len() as u64
    }
}

/// The oracle's answer for `input`.
pub fn expect(job: &Job, input: &Input) -> Expected {
    let events = read_events(input);
    let late = lateness::decide(&events, &job.windowed);
    let computed = (job.compute)(&events);
    let names = job.windowed.iter().map(|(n, _)| *n);
    let rows = names
        .chain(job.derived.iter().map(|(d, _)| *d))
        .map(|n| {
            let r = computed
                .get(n)
                .unwrap_or_else(|| panic!("the oracle computes no {n}"));
            (n, r.clone())
        })
        .collect();
    let alerts = job
        .late_alerts
        .then(|| late_alerts(&events, &late, lateness::DEFAULT_TRIGGER));
    Expected {
        lines: input.lines.len() as u64,
        bad: input.bad_lines(),
        late: events
            .iter()
            .zip(late)
            .filter(|(_, m)| !m.is_empty())
            .map(|(e, m)| (e.line, (e.ts, m)))
            .collect(),
        rows,
        alerts,
        updates: BTreeMap::new(),
        checked_elsewhere: BTreeSet::new(),
    }
}

/// `late_alerts` (DESIGN.md section 5): per user, the count of late events and the earliest,
/// in update mode: the late events of one trigger step count together, and a row follows
/// every step that changed a count above 5.
fn late_alerts(events: &[Ev], late: &[Missed], trigger: i64) -> BTreeMap<Option<String>, Alerts> {
    let mut per_user: BTreeMap<Option<String>, Vec<(Option<i64>, i64)>> = BTreeMap::new();
    for (e, m) in events.iter().zip(late) {
        if !m.is_empty() {
            per_user
                .entry(e.user.clone())
                .or_default()
                .push((lateness::step(e, trigger), e.ts));
        }
    }
    let mut out = BTreeMap::new();
    for (user, evs) in per_user {
        let mut rows = Vec::new();
        let (mut n, mut earliest) = (0i64, i64::MAX);
        for (i, (step, ts)) in evs.iter().enumerate() {
            n += 1;
            earliest = earliest.min(*ts);
            let step_ends = evs.get(i + 1).is_none_or(|(next, _)| next != step);
            if step_ends && n > 5 {
                rows.push((n, earliest));
            }
        }
        if !rows.is_empty() {
            out.insert(user, rows);
        }
    }
    out
}

/// Compares an output directory of `job` (named `job_name`) over `input` with the oracle:
/// every analysis row for row, dead letters and late records line for line (each `missed`
/// list exactly), `late_alerts`, and every other `*.jsonl` must be empty. Returns a report of
/// the differences (empty when equal).
pub fn check_dir(expected: &Expected, dir: &Path, job_name: &str, input: &Input) -> String {
    let mut report = check_dead_letters(dir, job_name, input, &expected.bad);
    let mut compared: BTreeSet<String> = expected.checked_elsewhere.clone();
    for (analysis, rows) in &expected.rows {
        report += &compare(dir, analysis, rows);
        compared.insert(format!("{analysis}.jsonl"));
    }
    for (analysis, rows) in &expected.updates {
        report += &update::compare_updates(dir, analysis, rows);
        compared.insert(format!("{analysis}.jsonl"));
    }
    report += &check_late(dir, job_name, input, &expected.late);
    compared.insert(format!("{job_name}.late.jsonl"));
    compared.insert(format!("{job_name}.dead-letter.jsonl"));
    if let Some(alerts) = &expected.alerts {
        report += &check_late_alerts(&dir.join("late_alerts.jsonl"), alerts);
        compared.insert("late_alerts.jsonl".into());
    }
    report += &check_alerts(dir, job_name);
    compared.insert(format!("{job_name}.alerts.jsonl"));
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".jsonl") && !compared.contains(name.as_ref()) {
            let n = jsonl(&dir.join(name.as_ref())).len();
            if n > 0 {
                let _ = writeln!(report, "{name}: {n} records the oracle does not expect");
            }
        }
    }
    report
}

/// The detectors the shipped specs mark as alerts, with their severities (docs/alerts.md).
const ALERTS: [(&str, &str); 6] = [
    ("ddos", "critical"),
    ("error_rate_spikes", "critical"),
    ("response_time_anomalies", "warning"),
    ("suspicious_ips", "warning"),
    ("user_anomalies", "warning"),
    ("late_alerts", "info"),
];

/// `<job>.alerts.jsonl` holds one firing record per row of each alert analysis in `dir` (rows
/// the comparisons above check against the oracle), with its window, severity, key and values,
/// and nothing else.
fn check_alerts(dir: &Path, job_name: &str) -> String {
    use serde_json::Value;
    let mut want: Vec<String> = Vec::new();
    for (alert, severity) in ALERTS {
        for line in jsonl(&dir.join(format!("{alert}.jsonl"))) {
            let mut row: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let Some(o) = row.as_object_mut() else {
                continue; // reported by the analysis's comparison
            };
            let ws = o.remove("window_start").unwrap_or(Value::Null);
            let we = o.remove("window_end").unwrap_or(Value::Null);
            want.push(serde_json::json!([alert, severity, "firing", ws, we, row]).to_string());
        }
    }
    let mut report = String::new();
    let mut got: Vec<String> = Vec::new();
    for line in jsonl(&dir.join(format!("{job_name}.alerts.jsonl"))) {
        let rec: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let values = &rec["values"];
        // The key is the row's group key: each of its fields is in the row, the same.
        let key_ok = rec["key"]
            .as_object()
            .is_some_and(|k| !k.is_empty() && k.iter().all(|(f, v)| values.get(f) == Some(v)));
        let summary_ok = rec["summary"].as_str().is_some_and(|s| !s.is_empty());
        if !key_ok || !summary_ok {
            let _ = writeln!(report, "alerts: bad key or summary: {line}");
        }
        got.push(
            serde_json::json!([
                rec["alert"],
                rec["severity"],
                rec["state"],
                rec["window_start"],
                rec["window_end"],
                values
            ])
            .to_string(),
        );
    }
    want.sort();
    got.sort();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(3).collect();
        let _ = writeln!(
            report,
            "alerts: {} records, {} alert rows; missing {missing:?}; unexpected {extra:?}",
            got.len(),
            want.len()
        );
    }
    report
}

/// The oracle's answer for an input file written by another test (`logflow gen`), to check
/// that test's file-mode reference (and any output directory) against an independent answer,
/// not only against the same binary in another layout.
pub struct Reference {
    input: Input,
    expected: Expected,
}

impl Reference {
    pub fn new(job: &Job, input: &Path) -> Reference {
        let input = Input::read(input, job.kind);
        let expected = expect(job, &input);
        Reference { input, expected }
    }

    /// Panics with the differences when `dir`, written by the job named `job_name` (its
    /// side outputs are `<job_name>.late.jsonl` and `<job_name>.dead-letter.jsonl`), differs
    /// from the oracle.
    pub fn assert_matches(&self, dir: &Path, job_name: &str) {
        let e = &self.expected;
        let report = check_dir(e, dir, job_name, &self.input);
        let what = format!(
            "{} over {} ({} lines, {} late, {} bad)",
            dir.display(),
            self.input.path.display(),
            e.lines,
            e.late.len(),
            e.bad.len()
        );
        assert!(
            report.is_empty(),
            "{what} differs from the oracle:\n{report}"
        );
        eprintln!("oracle: {what} matches");
    }
}

/// Removes `path` (a file or a directory) unless the current thread is panicking: a failed
/// test keeps what it wrote.
pub fn remove_unless_failed(path: &std::path::Path) {
    if std::thread::panicking() {
        return;
    }
    let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
}
