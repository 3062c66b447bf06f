//! Sliding windows computed from slices (issue 30) through the real binary, against the
//! oracle's batch computation (`tests/common/oracle`, which shares no code with the engine:
//! every window recomputed from its own events): generated user events up to 2 minutes out of
//! order (the delay is 30 s, so events arrive late for some of their windows and within the
//! allowed lateness for others), every aggregate kind, slides that divide the size and one
//! that does not, append and update mode, `-w 1` and `-w 2`, and the same results after
//! kill -9 and restores from checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::oracle::compare::check_accounting;
use common::oracle::engine::run_engine;
use common::oracle::expected::{
    action_sequence, analysis, count, distinct, floats, max, mean, min, quantile, sample_stddev,
    sketched, top_k, total_value, Expect, Row,
};
use common::oracle::input::{read_events, Ev, Input};
use common::oracle::lateness::{Win, DEFAULT_TRIGGER};
use common::oracle::update::update_rows;
use common::oracle::{check_dir, expect, Job, MINUTE};
use common::recovery::killed_and_whole_runs;
use common::tmpdir;

use logflow::gen::Kind;

const DELAY: i64 = 30_000;
const ALLOWED: i64 = 30_000;
/// 10 minutes sliding every 10 s: 60 windows per event, 60 slices per window.
const WIDE: Win = Win::new(10 * MINUTE, 10_000, DELAY, ALLOWED);
/// 90 s sliding every 20 s: slices of 10 s, windows of 9 slices starting every other one.
const ODD: Win = Win::new(90_000, 20_000, DELAY, 0);
/// Update mode, 3 minutes sliding every 20 s.
const UPDATE: Win = Win::new(3 * MINUTE, 20_000, DELAY, ALLOWED);
/// Update mode, 90 s sliding every 20 s.
const ODD_UPDATE: Win = Win::new(90_000, 20_000, DELAY, 0);

fn spec() -> String {
    String::from(
        r#"name = "sliding"
[source]
kind = "file"
path = "events.jsonl"  # replaced by --input
format = "user-events"

[watermark]
delay = "30s"

[[analysis]]
name = "wide"
window = { size = "10m", slide = "10s" }
allowed_lateness = "30s"
group_by = ["action"]
select = [
  "count() as events",
  "sum(value) as total",
  "avg(value) as mean",
  "min(value) as lo",
  "max(value) as hi",
  "stddev(value) as sd",
  "count_distinct(user_id) as users",
  "approx_count_distinct(user_id) as approx_users",
  "percentile(value, 0.9) as p90",
  "percentile_exact(value, 0.5) as median",
]

[[analysis]]
name = "odd"
window = { size = "90s", slide = "20s" }
group_by = ["user_id"]
select = [
  "count() as events",
  "collect_set(action) as actions",
  "collect_list(action) as sequence",
  "top_k(action, 2) as top_actions",
]

[[analysis]]
name = "wide_update"
mode = "update"
window = { size = "3m", slide = "20s" }
allowed_lateness = "30s"
group_by = ["action"]
select = [
  "count() as events",
  "sum(value) as total",
  "avg(value) as mean",
  "min(value) as lo",
  "max(value) as hi",
  "stddev(value) as sd",
  "count_distinct(user_id) as users",
  "approx_count_distinct(user_id) as approx_users",
  "percentile(value, 0.9) as p90",
  "percentile_exact(value, 0.5) as median",
]

[[analysis]]
name = "odd_update"
mode = "update"
window = { size = "90s", slide = "20s" }
group_by = ["user_id"]
select = [
  "count() as events",
  "collect_set(action) as actions",
  "collect_list(action) as sequence",
  "top_k(action, 2) as top_actions",
]
"#,
    )
}

fn write_spec(dir: &Path) -> PathBuf {
    let path = dir.join("sliding.toml");
    std::fs::write(&path, spec()).unwrap();
    path
}

fn hold(w: Win) -> (i64, i64, i64) {
    (w.size, w.slide, w.delay + w.allowed)
}

fn wide_metrics(evs: &[&Ev]) -> Vec<(&'static str, Expect)> {
    let values = floats(evs, |e| e.value);
    let users = distinct(evs, |e| &e.user).len();
    vec![
        ("events", count(evs.len())),
        ("total", total_value(evs)),
        ("mean", Expect::opt(mean(&values))),
        ("lo", Expect::opt(min(&values))),
        ("hi", Expect::opt(max(&values))),
        ("sd", Expect::opt(sample_stddev(&values))),
        ("users", count(users)),
        // Exact up to 256 distinct values (docs/analytics.md).
        ("approx_users", count(users)),
        ("p90", sketched(&values, 0.9)),
        ("median", Expect::opt(quantile(&values, 0.5))),
    ]
}

/// `top_k` of a string field: `[value, count]` pairs. Over `action` only: a group that reaches
/// 8192 distinct values (users in the kill test's windows) is pruned, and then depends on the
/// layout (docs/analytics.md), which the kill test's 2 processes and whole run differ in.
fn top(evs: &[&Ev], f: impl Fn(&Ev) -> &Option<String>, k: usize) -> Expect {
    let pairs = top_k(evs.iter().filter_map(|e| f(e).clone()), k)
        .into_iter()
        .map(|(v, c)| Value::Array(vec![Value::String(v), Value::from(c)]))
        .collect();
    Expect::Exact(Value::Array(pairs))
}

fn odd_metrics(evs: &[&Ev]) -> Vec<(&'static str, Expect)> {
    let set: BTreeSet<&str> = distinct(evs, |e| &e.action);
    vec![
        ("events", count(evs.len())),
        (
            "actions",
            Expect::Exact(Value::Array(
                set.into_iter().map(|a| Value::String(a.into())).collect(),
            )),
        ),
        ("sequence", action_sequence(evs)),
        ("top_actions", top(evs, |e| &e.action, 2)),
    ]
}

/// Update mode computes every aggregate the append analysis does.
fn update_metrics(evs: &[&Ev]) -> Vec<(&'static str, Expect)> {
    wide_metrics(evs)
}

fn action(e: &Ev) -> Vec<Option<String>> {
    vec![e.action.clone()]
}

fn user(e: &Ev) -> Vec<Option<String>> {
    vec![e.user.clone()]
}

fn append_rows(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let mut out = BTreeMap::new();
    out.insert(
        "wide",
        analysis(events, hold(WIDE), &["action"], action, wide_metrics),
    );
    out.insert(
        "odd",
        analysis(events, hold(ODD), &["user_id"], user, odd_metrics),
    );
    // Update mode's rows are compared by `update_rows`, in the test.
    out.insert("wide_update", Vec::new());
    out.insert("odd_update", Vec::new());
    out
}

fn job() -> Job {
    Job {
        kind: Kind::UserEvents,
        windowed: vec![
            ("wide", WIDE),
            ("odd", ODD),
            ("wide_update", UPDATE),
            ("odd_update", ODD_UPDATE),
        ],
        derived: vec![],
        compute: append_rows,
        late_alerts: false,
    }
}

/// 200 users doing about 3 events a minute, up to 2 minutes out of order (the delay is 30 s),
/// 1% far behind.
fn input(name: &str, events: u64, rate: f64) -> Input {
    Input::disordered_user_events(name, events, rate, 30)
}

#[test]
fn sliding_windows_match_the_oracle_in_append_and_update_mode() {
    let dir = tmpdir("sliding-layouts");
    let spec = write_spec(&dir);
    let spec = spec.to_str().unwrap();
    let input = input("sliding", 20_000, 10.0);
    let events = read_events(&input);
    let mut expected = expect(&job(), &input);
    let updates = update_rows(
        &events,
        DEFAULT_TRIGGER,
        hold(UPDATE),
        &["action"],
        action,
        update_metrics,
    );
    // Not vacuous: events late for every window of an analysis, and events that missed some
    // of their windows but reached later ones (an event at t is in the windows starting in
    // (t - size, t]; it missed the earlier ones when it came after their deadline).
    let late = expected.late.len();
    let partly: usize = events
        .iter()
        .filter(|e| {
            let Some(seen) = e.seen else { return false };
            let (size, slide, hold) = hold(WIDE);
            let first = (e.ts - size).div_euclid(slide) * slide + slide;
            first + size + hold <= seen && e.ts - e.ts.rem_euclid(slide) + size + hold > seen
        })
        .count();
    let corrected = updates.values().filter(|r| r.len() > 1).count();
    eprintln!(
        "sliding: {} events, {late} late for some analysis, {partly} late for some of their \
         wide windows only, {corrected} update windows corrected",
        events.len()
    );
    assert!(late > 20, "late events");
    assert!(partly > 100, "events that missed some of their windows");
    assert!(corrected > 100, "update mode corrected windows");
    let odd_updates = update_rows(
        &events,
        DEFAULT_TRIGGER,
        hold(ODD_UPDATE),
        &["user_id"],
        user,
        odd_metrics,
    );
    assert!(odd_updates.len() > 100, "odd update windows");
    expected.rows.remove("wide_update");
    expected.rows.remove("odd_update");
    expected.updates.insert("wide_update", updates);
    expected.updates.insert("odd_update", odd_updates);
    for rows in expected.rows.values() {
        assert!(rows.len() > 100, "rows to compare");
    }

    // The runs' outputs stay until the comparisons below are done.
    let (mut dirs, mut runs) = (Vec::new(), Vec::new());
    for workers in [1, 2] {
        let out = run_engine(spec, "user-events", &input, workers, "sliding");
        check_accounting(&out, &expected);
        std::fs::remove_file(out.dir.join("stderr.txt")).unwrap();
        let report = check_dir(&expected, &out.dir, "sliding", &input);
        assert!(
            report.is_empty(),
            "-w {workers} differs from the oracle (outputs in {}):\n{report}",
            out.dir.display()
        );
        dirs.push(out.dir.clone());
        runs.push(out);
    }
    let results = common::rows::dir_results;
    assert_eq!(
        results(&dirs[1]),
        results(&dirs[0]),
        "-w 2 against -w 1, bit for bit"
    );
}

/// Slices go into checkpoints: a 2-process job killed with SIGKILL several times and restored
/// writes what an uninterrupted run writes.
#[test]
fn slices_are_restored_after_kill_9() {
    let input = input("sliding-kills", 1_000_000, 500.0);
    let dir = tmpdir("sliding-kills");
    let (out, want, kills, restored) =
        killed_and_whole_runs(&dir, &spec(), &input.path, 0x511C_E530);
    let (got, want) = (
        common::rows::dir_results(&out),
        common::rows::dir_results(&want),
    );
    assert!(want["wide"].len() > 1_000, "{} rows", want["wide"].len());
    assert_eq!(got, want, "after {kills} kills and {restored} restores");
}
