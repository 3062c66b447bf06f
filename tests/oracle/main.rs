//! Oracle tests: the real `logflow` binary against an independent batch computation.
//!
//! The input comes from the generator library (the only logflow code used here); the
//! expected results are computed below with serde_json, chrono and std only, straight from
//! docs/design.md sections 2, 3 and 5: read every line, keep the good ones, put each event in its
//! epoch-aligned windows, group, aggregate, then run the detectors over the aggregated rows.
//! With disorder below the watermark delay nothing is late, so a streaming run over a file
//! must give exactly this batch answer, whatever the number of workers.
//!
//! Semantics decided here (see docs/design.md; where the contract leaves a choice, the test
//! accepts every reasonable answer and says so):
//! - A line is good when it is a UTF-8 JSON object whose `timestamp` is an RFC 3339 string
//!   (logs) or an integer of epoch milliseconds, and whose known fields have the right type
//!   (strings or null; `response_time`/`value` numbers or null; `status_code` an integer or
//!   null). Missing fields are null.
//! - Windows are [start, end), start a multiple of the slide; an event is in every window
//!   that contains it. Groups with no events have no row. A null key is its own group.
//! - Counts count every event of the group; avg/min/max/stddev (sample) ignore nulls and are
//!   null when nothing is left (stddev below 2 values); distinct counts and lists ignore nulls.
//!   A sum over no non-null value (`total_value`) may be null (SQL) or 0.
//! - `error_rate = error_count / total * 100` (status >= 400); `availability`, `performance`
//!   likewise; `health_score` from `error_rate` (at an exact threshold either side is accepted).
//! - Detectors read the rows of their source analysis, per key in window order (SQL window
//!   functions): the anomaly baseline is the up-to-10 previous rows (a null average takes a
//!   slot, mean and sample stddev ignore nulls); a spike compares with the previous row. A row
//!   whose filter value is within 1e-9 of its threshold may be present or not.
//! - `actions_sequence` lists non-null actions by (timestamp, input line).
//!
//! Numbers: integers exactly (counts must be JSON integers); floats to 1e-9, relative or
//! absolute near zero. Field order: `window_start`, `window_end`, keys, metrics as in the table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod compare;
mod engine;
mod expected;
mod input;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use logflow::gen::{GenConfig, Kind, LineKind};

use compare::{check_accounting, check_dead_letters, compare};
use engine::{jsonl, run_engine};
use expected::{log_oracle, user_event_oracle, Row};
use input::{read_events, Ev, Input};

pub const MINUTE: i64 = 60_000;

struct Case {
    input: Input,
    expected: BTreeMap<&'static str, Vec<Row>>,
    /// Every analysis must have rows (so that the comparison cannot pass vacuously).
    require_rows: bool,
}

const LOG_DETECTORS: [&str; 4] = [
    "ddos",
    "suspicious_ips",
    "response_time_anomalies",
    "error_rate_spikes",
];

fn logs_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        // 120,000 lines at 100/s: 20 minutes, one full incident cycle, 1% bad lines.
        let input = Input::generate(
            "logs",
            GenConfig {
                events: 120_000,
                seed: 7,
                ..GenConfig::default()
            },
        );
        let events = read_events(&input);
        Case {
            expected: log_oracle(&events),
            input,
            require_rows: true,
        }
    })
}

fn user_events_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        let input = Input::generate(
            "user-events",
            GenConfig {
                kind: Kind::UserEvents,
                events: 100_000,
                seed: 11,
                ..GenConfig::default()
            },
        );
        let events = read_events(&input);
        Case {
            expected: user_event_oracle(&events),
            input,
            require_rows: true,
        }
    })
}

/// Runs the job and compares everything; panics with one report of every difference.
fn check(case: &Case, spec: &str, format: &str, job: &str, workers: usize, name: &str) {
    for (analysis, rows) in case.expected.iter().filter(|_| case.require_rows) {
        assert!(
            rows.iter().any(|r| !r.optional),
            "the oracle has no row for {analysis}: the test would pass vacuously"
        );
    }
    let out = run_engine(spec, format, &case.input, workers, name);
    check_accounting(&out, &case.input);
    let mut report = check_dead_letters(&out, job, &case.input);
    for (analysis, rows) in &case.expected {
        report += &compare(&out.dir, analysis, rows);
    }
    let late_lines = jsonl(&out.dir.join(format!("{job}.late.jsonl"))).len() as u64;
    if late_lines != out.accounting.late {
        let _ = writeln!(
            report,
            "{job}.late.jsonl has {late_lines} records, accounting says late={}",
            out.accounting.late
        );
    }
    assert!(
        report.is_empty(),
        "{name} with {workers} worker(s) differs from the oracle (outputs in {}):\n{report}",
        out.dir.display()
    );
}

#[test]
fn logs_match_the_oracle_on_one_worker() {
    let case = logs_case();
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        1,
        "logs",
    );
}

#[test]
fn logs_match_the_oracle_on_two_workers() {
    let case = logs_case();
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs",
    );
}

#[test]
fn user_events_match_the_oracle_on_one_worker() {
    let case = user_events_case();
    check(
        case,
        "dataflows/user-events.toml",
        "user-events",
        "user-events",
        1,
        "user-events",
    );
}

#[test]
fn user_events_match_the_oracle_on_two_workers() {
    let case = user_events_case();
    check(
        case,
        "dataflows/user-events.toml",
        "user-events",
        "user-events",
        2,
        "user-events",
    );
}

/// Late lines (more than 15 minutes behind the newest timestamp) are late for every log
/// analysis: counted and written to the late output, and left out of every window.
#[test]
fn late_log_lines_are_counted_and_left_out() {
    static CASE: OnceLock<Case> = OnceLock::new();
    let case = CASE.get_or_init(|| {
        // 100,000 lines at 40/s: 42 minutes; late lines start after minute 21.
        let input = Input::generate(
            "logs-late",
            GenConfig {
                events: 100_000,
                event_rate: 40.0,
                late_fraction: 0.01,
                seed: 5,
                ..GenConfig::default()
            },
        );
        let on_time: Vec<Ev> = read_events(&input)
            .into_iter()
            .filter(|e| input.kinds[e.line - 1] == LineKind::Good)
            .collect();
        assert!(input.count(LineKind::Late) > 300);
        Case {
            expected: log_oracle(&on_time),
            input,
            // The point here is lateness; rows are compared but not required.
            require_rows: false,
        }
    });
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs-late",
    );
}

#[test]
fn the_detectors_see_the_incidents() {
    // Not about the engine: guards the oracle and generator against a vacuous pass.
    let logs = &logs_case().expected;
    let users = &user_events_case().expected;
    for (analysis, rows) in logs.iter().chain(users) {
        eprintln!("oracle: {analysis}: {} rows", rows.len());
    }
    for detector in [
        "ddos",
        "suspicious_ips",
        "response_time_anomalies",
        "error_rate_spikes",
    ] {
        for r in &logs[detector] {
            eprintln!("  {detector}: {}", r.show());
        }
    }
    for r in &users["user_anomalies"] {
        eprintln!("  user_anomalies: {}", r.show());
    }
    for detector in LOG_DETECTORS {
        assert!(!logs[detector].is_empty(), "no {detector} rows");
    }
    let has = |rows: &[Row], key: &str| {
        rows.iter()
            .any(|r| r.keys.iter().any(|(_, v)| v.as_deref() == Some(key)))
    };
    use logflow::gen::incidents;
    assert!(has(&logs["ddos"], incidents::DDOS_IP));
    assert!(has(&logs["suspicious_ips"], incidents::SCANNER_IP));
    assert!(has(
        &logs["response_time_anomalies"],
        incidents::LATENCY_SERVICE
    ));
    assert!(has(&logs["error_rate_spikes"], incidents::ERROR_SERVICE));
    assert!(has(&users["user_anomalies"], incidents::SCRAPER_USER));
    // Incidents are visible, not dominant.
    assert!(logs["ddos"].len() <= 2, "{:?}", logs["ddos"].len());
    assert!(logs["error_rate_spikes"].len() <= 3);
    assert!(users["user_anomalies"].len() <= 4);
}
