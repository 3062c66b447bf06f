//! Session windows (issue 28) through the real binary, against the oracle's own walk over the
//! input (`tests/common/oracle/sessions.rs`, which shares no code with the engine): generated
//! user events with disorder past the delay, so that late events bridge two sessions and
//! others arrive after their session closed; append and update mode; `-w 1`, `-w 2` and two
//! processes; and the same results after kill -9 and restores from checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::oracle::compare::check_accounting;
use common::oracle::engine::run_engine;
use common::oracle::expected::{count, total_value, Expect, Row};
use common::oracle::input::{read_events, Ev, Input};
use common::oracle::lateness::Win;
use common::oracle::sessions::{self, Session};
use common::oracle::{check_dir, expect, Job, MINUTE};
use common::recovery::killed_and_whole_runs;
use common::{repo, run_ok, tmpdir};

use logflow::gen::Kind;

/// The job's granularity: the gcd of the sessions' gaps and deadlines (1 min, 2 min, 90 s) and
/// update mode's default trigger (10 s). `logflow check` must say so (checked below).
const GRANULARITY: i64 = 10_000;
const VISITS: Win = Win::session(MINUTE, 30_000, 30_000, GRANULARITY);
const STRICT: Win = Win::session(MINUTE, 30_000, 0, GRANULARITY);

fn spec() -> String {
    std::fs::read_to_string(repo().join("dataflows/examples/sessions.toml")).unwrap()
}

fn write_spec(dir: &Path) -> PathBuf {
    let path = dir.join("sessions.toml");
    std::fs::write(&path, spec()).unwrap();
    path
}

fn user(e: &Ev) -> Vec<Option<String>> {
    vec![e.user.clone()]
}

fn visit_metrics(s: &Session<'_>) -> Vec<(&'static str, Expect)> {
    let actions: std::collections::BTreeSet<&str> =
        s.evs.iter().filter_map(|e| e.action.as_deref()).collect();
    vec![
        ("events", count(s.evs.len())),
        (
            "active_seconds",
            Expect::Num((s.last - s.first) as f64 / 1000.0),
        ),
        ("total_value", total_value(&s.evs)),
        ("actions", count(actions.len())),
    ]
}

fn update_metrics(s: &Session<'_>) -> Vec<(&'static str, Expect)> {
    visit_metrics(s).into_iter().take(2).collect()
}

fn append_rows(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let visits = sessions::walk(events, VISITS, user, false);
    let strict = sessions::walk(events, STRICT, user, false);
    let mut out = BTreeMap::new();
    out.insert(
        "visits",
        sessions::rows(&visits, MINUTE, &["user_id"], visit_metrics),
    );
    out.insert(
        "visits_strict",
        sessions::rows(&strict, MINUTE, &["user_id"], |s| {
            vec![("events", count(s.evs.len()))]
        }),
    );
    // Update mode's changes come from `sessions::walk`, in the test.
    out.insert("visits_update", Vec::new());
    out
}

fn job() -> Job {
    Job {
        kind: Kind::UserEvents,
        windowed: vec![
            ("visits", VISITS),
            ("visits_update", VISITS),
            ("visits_strict", STRICT),
        ],
        derived: vec![],
        compute: append_rows,
        late_alerts: false,
    }
}

/// 200 users doing about 3 events a minute for 50 minutes, up to 2 minutes out of order
/// (the delay is 30 s), 1% far behind.
fn input(name: &str, events: u64, rate: f64) -> Input {
    Input::disordered_user_events(name, events, rate, 28)
}

#[test]
fn sessions_match_the_oracle_in_append_and_update_mode_on_every_layout() {
    let dir = tmpdir("sessions-layouts");
    let spec = write_spec(&dir);
    let spec = spec.to_str().unwrap();
    let check = run_ok(&["check", spec]);
    let explained = String::from_utf8_lossy(&check.stdout);
    assert!(
        explained.contains("event-time progress granularity: 10s"),
        "the oracle's granularity is the job's:\n{explained}"
    );

    let input = input("sessions", 30_000, 10.0);
    let events = read_events(&input);
    let mut expected = expect(&job(), &input);
    let visits = sessions::walk(&events, VISITS, user, true);
    let strict = sessions::walk(&events, STRICT, user, false);
    // Not vacuous: late events merged open sessions, others came less than a gap after a
    // session that had closed, events were late for the strict analysis only, update mode
    // retracted merged parts and corrected sessions.
    let late = &expected.late;
    let strict_only = late.values().filter(|(_, m)| m.len() == 1).count();
    let retracted = visits
        .changes
        .values()
        .flatten()
        .filter(|c| matches!(c, sessions::Change::Retracted))
        .count();
    let corrected = visits.changes.values().filter(|c| c.len() > 1).count();
    eprintln!(
        "sessions: {} sessions ({} strict), {} bridges, {} after a close, {} late ({strict_only} \
         for the strict analysis only), {retracted} retractions, {corrected} sessions updated",
        visits.sessions.len(),
        strict.sessions.len(),
        visits.bridges,
        strict.after_close,
        late.len(),
    );
    assert!(visits.sessions.len() > 1_000, "many sessions");
    assert!(visits.bridges > 20, "late events bridged sessions");
    assert!(strict.after_close > 5, "events after their session closed");
    assert!(strict_only > 20, "late for the strict analysis only");
    assert!(retracted > 20 && corrected > 1_000, "update mode's changes");
    expected.rows.remove("visits_update");
    expected
        .checked_elsewhere
        .insert("visits_update.jsonl".into());
    for rows in expected.rows.values() {
        assert!(!rows.is_empty(), "rows to compare");
    }

    // The runs' outputs stay until the comparisons below are done.
    let (mut dirs, mut runs) = (Vec::new(), Vec::new());
    for workers in [1, 2] {
        let out = run_engine(spec, "user-events", &input, workers, "sessions");
        check_accounting(&out, &expected);
        // Read: the output files alone are compared below.
        std::fs::remove_file(out.dir.join("stderr.txt")).unwrap();
        dirs.push(out.dir.clone());
        runs.push(out);
    }
    let procs = dir.join("p2");
    run_ok(&[
        "launch",
        spec,
        "--processes",
        "2",
        "--workers",
        "1",
        "--input",
        input.path.to_str().unwrap(),
        "--output-dir",
        procs.to_str().unwrap(),
    ]);
    dirs.push(procs);
    for (dir, layout) in dirs.iter().zip(["-w 1", "-w 2", "2 processes"]) {
        let mut report = check_dir(&expected, dir, "sessions", &input);
        report +=
            &sessions::compare_updates(dir, "visits_update", &visits, &["user_id"], update_metrics);
        assert!(
            report.is_empty(),
            "{layout} differs from the oracle (outputs in {}):\n{report}",
            dir.display()
        );
    }
    let results = common::rows::dir_results;
    let want = results(&dirs[0]);
    assert_eq!(results(&dirs[1]), want, "-w 2 against -w 1, bit for bit");
    assert_eq!(
        results(&dirs[2]),
        want,
        "2 processes against -w 1, bit for bit"
    );
}

/// Open sessions go into checkpoints: a 2-process job killed with SIGKILL several times and
/// restored writes what an uninterrupted run writes.
#[test]
fn session_state_is_restored_after_kill_9() {
    // 20,000 users for 50 minutes: sessions open across every checkpoint.
    let input = input("sessions-kills", 3_000_000, 1_000.0);
    let dir = tmpdir("sessions-kills");
    let (out, want, kills, restored) =
        killed_and_whole_runs(&dir, &spec(), &input.path, 0x5E55_1075);
    let (got, want) = (
        common::rows::dir_results(&out),
        common::rows::dir_results(&want),
    );
    assert!(
        want["visits"].len() > 10_000,
        "{} sessions",
        want["visits"].len()
    );
    assert_eq!(got, want, "after {kills} kills and {restored} restores");
}
