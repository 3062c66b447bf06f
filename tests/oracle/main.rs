//! Oracle tests: the real `logflow` binary against an independent batch computation.
//!
//! The input comes from the generator library (the only logflow code used here); the
//! expected results are computed below with serde_json, chrono and std only, straight from
//! docs/design.md sections 2, 3 and 5: read every line, keep the good ones, put each event in its
//! epoch-aligned windows, group, aggregate, then run the detectors over the aggregated rows.
//! With disorder below the watermark delay nothing is late, so a streaming run over a file
//! must give exactly this batch answer, whatever the number of workers. With more disorder,
//! lateness is decided here too, from the input order (DESIGN.md section 3): a file is one
//! partition, so each event's watermark is the largest event time of the lines before it minus
//! the analysis's delay, whatever the number of workers; an event joins the windows still open
//! (watermark before end + allowed lateness) and is late for an analysis when none is.
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
//! - Percentiles (`p50/p95/p99_response_time`) are the value of rank ⌊q·(n−1)⌋ among the
//!   sorted non-null values, within the documented relative error of 1% (a sketch answers).
//! - `error_rate = error_count / total * 100` (status >= 400); `availability`, `performance`
//!   likewise; `health_score` from `error_rate` (at an exact threshold either side is accepted).
//! - Detectors read the rows of their source analysis, per key in window order (SQL window
//!   functions): the anomaly baseline is the up-to-10 previous rows (a null average takes a
//!   slot, mean and sample stddev ignore nulls); a spike compares with the previous row. A row
//!   whose filter value is within 1e-9 of its threshold may be present or not.
//! - `actions_sequence` lists non-null actions by (timestamp, input line).
//! - A late record names each analysis it missed with that analysis's watermark; derived
//!   analyses (detectors) are never named. `late_alerts` counts, per user, every late record.
//! - Update mode writes rows per trigger step (10 s of event-time progress by default, the
//!   progress being the largest event time before the event): after a step, each window and
//!   key that received events in it gets one row over all its events so far.
//!
//! Numbers: integers exactly (counts must be JSON integers); floats to 1e-9, relative or
//! absolute near zero. Field order: `window_start`, `window_end`, keys, metrics as in the table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

#[path = "../common/oracle/mod.rs"]
mod oracle;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use logflow::gen::{GenConfig, Kind, LineKind};

use oracle::compare::check_accounting;
use oracle::engine::run_engine;
use oracle::expected::{analysis, distinct, floats, max, mean, Expect, Row};
use oracle::input::{Ev, Input};
use oracle::lateness::{Win, DEFAULT_TRIGGER};
use oracle::update::update_rows;
use oracle::{check_dir, expect, log_analysis, user_events, Expected, Job, MINUTE};

struct Case {
    input: Input,
    expected: Expected,
}

const LOG_DETECTORS: [&str; 4] = [
    "ddos",
    "suspicious_ips",
    "response_time_anomalies",
    "error_rate_spikes",
];

fn case(job: &Job, name: &str, cfg: GenConfig) -> Case {
    let input = Input::generate(name, cfg);
    let expected = expect(job, &input);
    // The generator's labels against the oracle's own reading: a line written far behind is
    // late for every windowed analysis (the oracle decides it, the label only cross-checks).
    let late_everywhere = input
        .line_numbers(LineKind::Late)
        .into_iter()
        .filter(|n| {
            expected
                .late
                .get(n)
                .is_none_or(|(_, m)| m.len() != job.windowed.len())
        })
        .take(5)
        .collect::<Vec<_>>();
    assert!(
        late_everywhere.is_empty(),
        "{name}: lines the generator wrote late that the oracle does not find late everywhere: \
         {late_everywhere:?}"
    );
    Case { input, expected }
}

fn logs_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        // 120,000 lines at 100/s: 20 minutes, one full incident cycle, 1% bad lines.
        let c = case(
            &log_analysis(),
            "logs",
            GenConfig {
                events: 120_000,
                seed: 7,
                ..GenConfig::default()
            },
        );
        assert!(
            c.expected.late.is_empty(),
            "disorder below the delay: nothing late"
        );
        c
    })
}

fn user_events_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        let c = case(
            &user_events(),
            "user-events",
            GenConfig {
                kind: Kind::UserEvents,
                events: 100_000,
                seed: 11,
                ..GenConfig::default()
            },
        );
        assert!(
            c.expected.late.is_empty(),
            "disorder below the delay: nothing late"
        );
        c
    })
}

/// Runs the job and compares everything; panics with one report of every difference.
fn check(case: &Case, spec: &str, format: &str, job: &str, workers: usize, name: &str) {
    let out = run_engine(spec, format, &case.input, workers, name);
    check_accounting(&out, &case.expected);
    let report = check_dir(&case.expected, &out.dir, job, &case.input);
    assert!(
        report.is_empty(),
        "{name} with {workers} worker(s) differs from the oracle (outputs in {}):\n{report}",
        out.dir.display()
    );
}

/// Every analysis has rows, so that a comparison cannot pass vacuously.
fn require_rows(expected: &Expected) {
    for (analysis, rows) in &expected.rows {
        assert!(
            rows.iter().any(|r| !r.optional),
            "the oracle has no row for {analysis}: the test would pass vacuously"
        );
    }
}

#[test]
fn logs_match_the_oracle_on_one_worker() {
    let case = logs_case();
    require_rows(&case.expected);
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
    require_rows(&case.expected);
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
    require_rows(&case.expected);
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
    require_rows(&case.expected);
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
        case(
            &log_analysis(),
            "logs-late",
            GenConfig {
                events: 100_000,
                event_rate: 40.0,
                late_fraction: 0.01,
                seed: 5,
                ..GenConfig::default()
            },
        )
    });
    assert!(case.input.count(LineKind::Late) > 300);
    // With 60 s of disorder, the far-behind lines are the only late ones.
    assert_eq!(case.expected.late.len(), case.input.count(LineKind::Late));
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs-late",
    );
}

/// Disorder of 12 minutes straddles the delays (5 minutes for 1-minute windows, 10 for
/// 5-minute ones): which events are late, and for which analyses, is the oracle's decision.
fn disorder_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        let c = case(
            &log_analysis(),
            "logs-disorder",
            GenConfig {
                events: 60_000,
                event_rate: 40.0,
                disorder_ms: 12 * MINUTE,
                late_fraction: 0.005,
                seed: 13,
                ..GenConfig::default()
            },
        );
        let late = &c.expected.late;
        let partly = late.values().filter(|(_, m)| m.len() < 8).count();
        let fully = late.len() - partly;
        eprintln!(
            "logs-disorder: {} late, {partly} for some analyses only",
            late.len()
        );
        // Both kinds of lateness: some events miss only the 1-minute analyses, some all of
        // them, and many are on time.
        assert!(
            partly > 1000 && fully > 300,
            "partly {partly}, fully {fully}"
        );
        assert!(late.len() < 40_000);
        require_rows(&c.expected);
        c
    })
}

#[test]
fn lateness_decided_by_the_oracle_on_one_worker() {
    check(
        disorder_case(),
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        1,
        "logs-disorder",
    );
}

#[test]
fn lateness_decided_by_the_oracle_on_two_workers() {
    check(
        disorder_case(),
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs-disorder",
    );
}

/// User events with disorder past the delays and far-behind lines: sliding windows partly
/// closed, and `late_alerts` (update mode) per user, against the oracle's own late set.
#[test]
fn user_events_lateness_and_late_alerts() {
    static CASE: OnceLock<Case> = OnceLock::new();
    let case = CASE.get_or_init(|| {
        let c = case(
            &user_events(),
            "user-events-late",
            GenConfig {
                kind: Kind::UserEvents,
                events: 60_000,
                event_rate: 20.0,
                disorder_ms: 7 * MINUTE,
                late_fraction: 0.05,
                seed: 17,
                ..GenConfig::default()
            },
        );
        let alerts = c.expected.alerts.as_ref().expect("late_alerts");
        let updated = alerts.values().filter(|rows| rows.len() > 1).count();
        eprintln!(
            "user-events-late: {} late, {} users alerted, {updated} more than once",
            c.expected.late.len(),
            alerts.len()
        );
        assert!(
            alerts.len() > 10 && updated > 5,
            "the set must raise alerts"
        );
        require_rows(&c.expected);
        c
    });
    for workers in [1, 2] {
        check(
            case,
            "dataflows/user-events.toml",
            "user-events",
            "user-events",
            workers,
            "user-events-late",
        );
    }
}

/// `allowed_lateness` and update mode against the oracle: a 20 s delay with 40 s allowed
/// lateness over 90 s of disorder, so that events behind the watermark still correct their
/// windows, others are late for the strict analysis only, and far-behind ones for all.
const ALLOWED_SPEC: &str = r#"
name = "allowed"

[source]
kind = "file"
path = "x"
format = "json"

[watermark]
delay = "20s"

[[analysis]]
name = "rt_append"
window = { size = "1m" }
allowed_lateness = "40s"
group_by = ["service"]
select = ["count() as n", "avg(response_time) as avg_rt", "max(response_time) as max_rt"]

[[analysis]]
name = "rt_update"
mode = "update"
window = { size = "1m" }
allowed_lateness = "40s"
group_by = ["service"]
select = ["count() as n", "avg(response_time) as avg_rt", "max(response_time) as max_rt"]

[[analysis]]
name = "rt_strict"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as n"]

[[analysis]]
name = "ips_append"
window = { size = "5m", slide = "1m" }
allowed_lateness = "40s"
group_by = ["ip_address"]
select = ["count() as n", "count_distinct(user_id) as users", "collect_set(service) as services"]

[[analysis]]
name = "ips_update"
mode = "update"
window = { size = "5m", slide = "1m" }
allowed_lateness = "40s"
group_by = ["ip_address"]
select = ["count() as n", "count_distinct(user_id) as users", "collect_set(service) as services"]
"#;

const RT: (i64, i64, i64) = (MINUTE, MINUTE, 60_000);
const RT_STRICT: (i64, i64, i64) = (MINUTE, MINUTE, 20_000);
const IPS: (i64, i64, i64) = (5 * MINUTE, MINUTE, 60_000);

fn rt_metrics(evs: &[&Ev]) -> Vec<(&'static str, Expect)> {
    let rts = floats(evs, |e| e.rt);
    vec![
        ("n", Expect::Int(evs.len() as i64)),
        ("avg_rt", Expect::opt(mean(&rts))),
        ("max_rt", Expect::opt(max(&rts))),
    ]
}

fn ips_metrics(evs: &[&Ev]) -> Vec<(&'static str, Expect)> {
    let services = distinct(evs, |e| &e.service)
        .into_iter()
        .map(|s| serde_json::Value::String(s.to_string()))
        .collect();
    vec![
        ("n", Expect::Int(evs.len() as i64)),
        (
            "users",
            Expect::Int(distinct(evs, |e| &e.user).len() as i64),
        ),
        (
            "services",
            Expect::Exact(serde_json::Value::Array(services)),
        ),
    ]
}

fn service(e: &Ev) -> Vec<Option<String>> {
    vec![e.service.clone()]
}

fn ip(e: &Ev) -> Vec<Option<String>> {
    vec![e.ip.clone()]
}

fn allowed_rows(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let mut out = BTreeMap::new();
    out.insert(
        "rt_append",
        analysis(events, RT, &["service"], service, rt_metrics),
    );
    out.insert(
        "rt_strict",
        analysis(events, RT_STRICT, &["service"], service, |evs| {
            vec![("n", Expect::Int(evs.len() as i64))]
        }),
    );
    out.insert(
        "ips_append",
        analysis(events, IPS, &["ip_address"], ip, ips_metrics),
    );
    // Update mode's rows come from `update_rows`, in the test.
    out.insert("rt_update", Vec::new());
    out.insert("ips_update", Vec::new());
    out
}

fn allowed_job() -> Job {
    let (rt, ips) = (
        Win::new(MINUTE, MINUTE, 20_000, 40_000),
        Win::new(5 * MINUTE, MINUTE, 20_000, 40_000),
    );
    Job {
        kind: Kind::Logs,
        windowed: vec![
            ("rt_append", rt),
            ("rt_update", rt),
            ("rt_strict", Win::new(MINUTE, MINUTE, 20_000, 0)),
            ("ips_append", ips),
            ("ips_update", ips),
        ],
        derived: vec![],
        compute: allowed_rows,
        late_alerts: false,
    }
}

#[test]
fn allowed_lateness_and_update_mode_match_the_oracle() {
    let input = Input::generate(
        "allowed",
        GenConfig {
            events: 40_000,
            event_rate: 20.0,
            disorder_ms: 90_000,
            late_fraction: 0.01,
            seed: 19,
            ..GenConfig::default()
        },
    );
    let mut expected = expect(&allowed_job(), &input);
    let events = oracle::input::read_events(&input);
    let updates = [
        (
            "rt_update",
            update_rows(
                &events,
                DEFAULT_TRIGGER,
                RT,
                &["service"],
                service,
                rt_metrics,
            ),
        ),
        (
            "ips_update",
            update_rows(
                &events,
                DEFAULT_TRIGGER,
                IPS,
                &["ip_address"],
                ip,
                ips_metrics,
            ),
        ),
    ];
    // Not vacuous: events corrected a window after the strict analysis closed it, events were
    // late for the strict analysis only, and update mode wrote early results.
    let late = &expected.late;
    let strict_only = late.values().filter(|(_, m)| m.len() == 1).count();
    let everywhere = late.values().filter(|(_, m)| m.len() == 5).count();
    eprintln!(
        "allowed: {} late, {strict_only} for rt_strict only, {everywhere} for all",
        late.len()
    );
    assert!(
        strict_only > 100 && everywhere > 100,
        "{strict_only} {everywhere}"
    );
    for (name, rows) in &updates {
        let corrected = rows.values().filter(|r| r.len() > 1).count();
        assert!(corrected > 100, "{name}: {corrected} windows updated");
    }
    for (name, rows) in updates {
        expected.rows.remove(name);
        expected.updates.insert(name, rows);
    }
    require_rows(&expected);

    let dir = oracle::input::tmp_dir().join("allowed-spec");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("allowed.toml");
    std::fs::write(&spec, ALLOWED_SPEC).unwrap();
    for workers in [1, 2] {
        let out = run_engine(spec.to_str().unwrap(), "json", &input, workers, "allowed");
        check_accounting(&out, &expected);
        let report = check_dir(&expected, &out.dir, "allowed", &input);
        assert!(
            report.is_empty(),
            "allowed with {workers} worker(s) differs from the oracle (outputs in {}):\n{report}",
            out.dir.display()
        );
    }
}

#[test]
fn the_detectors_see_the_incidents() {
    // Not about the engine: guards the oracle and generator against a vacuous pass.
    let logs = &logs_case().expected.rows;
    let users = &user_events_case().expected.rows;
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
