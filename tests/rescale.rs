//! Rescaling (issue 31) without a broker: the log-analysis and user-events jobs over a generated
//! file, with checkpoints, stopped gracefully mid-input at a savepoint as 1 process x 1 worker,
//! continued as 2 processes x 2 workers (`launch`), stopped again (at a savepoint, or killed), and finished as 1 x 2.
//! Their files equal those of an uninterrupted run without checkpoints (multisets of lines: a
//! missing or repeated row fails), and each stop is shown to have landed mid-input by the
//! checkpoint's own input position (`logflow checkpoints`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::kafka::gen;
use common::recovery::{complete, latest, newest, stop_after_checkpoints};
use common::rows::assert_same_files;
use common::{bin, messages, repo, run_file, tmpdir};

/// Events of the input: enough that each run is still reading when it is stopped.
const EVENTS: u64 = 1_000_000;

/// The position of the next line (1-based) strictly inside the input: the stop landed after the
/// first line was read and before the last.
fn assert_mid_input(at: u64, what: &str, head: &str) {
    assert!(
        at > 1 && at <= EVENTS,
        "{what}: position {at} is not mid-input ({head})"
    );
}

#[test]
fn a_job_restores_its_savepoints_on_other_layouts_and_writes_each_result_once() {
    // Window merges (capped too), z-score and lag detectors, the gathered file sink; the
    // 2 x 2 run stopped at a savepoint too.
    rescaled_three_times("rescale", "logs", "dataflows/log-analysis.toml", 10, false);
}

#[test]
fn sliding_windows_and_sessions_are_rescaled_by_key_group_too() {
    // Sliding slices and their due windows, open sessions; the 2 x 2 run killed: its newest
    // complete checkpoint is rescaled.
    rescaled_three_times(
        "rescale-users",
        "user-events",
        "dataflows/user-events.toml",
        8,
        true,
    );
}

/// Update mode (UpdateAggregate: each window's last emitted values and its expiries, keyed
/// by group) with allowed lateness, a `having` that retracts, and a detector on the updates.
const UPDATE_SPEC: &str = r#"
name = "updates"
[source]
kind = "file"
path = "unused.jsonl"
format = "json"
[[analysis]]
name = "per_service"
mode = "update"
trigger = "30s"
window = { size = "1m" }
allowed_lateness = "2m"
group_by = ["service"]
select = ["count() as requests", "avg(response_time) as avg_time", "max(status_code) as worst"]
[[analysis]]
name = "busy_ips"
mode = "update"
window = { size = "5m" }
group_by = ["ip_address"]
select = ["count() as requests", "count_distinct(user_id) as users"]
having = "requests > 20"
"#;

#[test]
fn update_mode_windows_are_rescaled_by_key_group_too() {
    let specs = tmpdir("rescale-update-spec");
    let spec = specs.join("updates.toml");
    std::fs::write(&spec, UPDATE_SPEC).unwrap();
    // The 2 x 2 run killed: the file sink cuts back to the newest checkpoint's lengths.
    rescaled_three_times("rescale-update", "logs", spec.to_str().unwrap(), 2, true);
}

/// Generated events of `kind` through `spec`: 1 x 1 stopped at a savepoint, 2 x 2 stopped at
/// a savepoint (or `killed`), 1 x 2 to the end; the files (at least `files`) equal an
/// uninterrupted run's.
fn rescaled_three_times(name: &str, kind: &str, spec_file: &str, files: usize, killed: bool) {
    let dir = tmpdir(name);
    let logs = dir.join("events.jsonl");
    gen(kind, &EVENTS.to_string(), &[], &logs);
    let want = dir.join("want");
    run_file(spec_file, &logs, &want, "1");
    let ckpt = dir.join("ckpt");
    let mut text = std::fs::read_to_string(repo().join(spec_file)).unwrap();
    text.push_str(&format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"200ms\"\nkeep = 2\n",
        ckpt.display()
    ));
    let spec = dir.join("job.toml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.join("out");
    let job = |cmd: &str, layout: &[&str], extra: &[&str]| {
        let mut c = bin();
        c.args([cmd, spec.to_str().unwrap()])
            .args(layout)
            .args(["--input", logs.to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()])
            .args(extra);
        c
    };

    // 1 x 1, stopped at a savepoint mid-input.
    let first = job("run", &["-w", "1"], &["--savepoint"]);
    stop_after_checkpoints(first, &dir, "first", &ckpt, 0, 2, None);
    let (head, at1) = latest(&ckpt, &logs);
    assert_mid_input(at1, "1 x 1", &head);
    assert!(
        head.contains("1 process x 1 worker, 128 key groups"),
        "{head}"
    );
    assert!(head.contains("savepoint"), "{head}");
    let savepoint = newest(&ckpt);

    // 2 x 2 from it: every worker takes its key groups from the one old part; stopped again
    // after checkpoints of its own (more than `keep`: the savepoint outlives them). Only
    // process 0 reads the file: process 1 learns of the final checkpoint from its manifest.
    let (extra, kill): (&[&str], _) = if killed {
        (&[], Some(2))
    } else {
        (&["--savepoint"], None)
    };
    let second = job("launch", &["--processes", "2", "-w", "2"], extra);
    stop_after_checkpoints(second, &dir, "second", &ckpt, savepoint, 3, kill);
    let err = std::fs::read_to_string(dir.join("second.err")).unwrap();
    assert!(
        messages(&err).any(|m| m.contains(&format!(
            "rescaling checkpoint {savepoint} from 1 worker to 4 workers"
        ))),
        "{err}"
    );
    let (head, at2) = latest(&ckpt, &logs);
    assert_mid_input(at2, "2 x 2", &head);
    assert!(at2 > at1, "2 x 2 read nothing: {at1} then {at2}");
    assert!(
        head.contains("2 processes x 2 workers, 128 key groups"),
        "{head}"
    );
    assert_eq!(head.contains("savepoint"), !killed, "{head}");
    assert!(
        complete(&ckpt)
            .iter()
            .any(|d| d.ends_with(format!("epoch-{savepoint:020}"))),
        "the first savepoint was pruned"
    );

    // 1 x 2 to the end of the input.
    let third = job("run", &["-w", "2"], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{err}");
    assert!(
        messages(&err).any(
            |m| m.contains("rescaling checkpoint") && m.contains("from 4 workers to 2 workers")
        ),
        "{err}"
    );
    assert_same_files(&out, &want, files, "after 1 x 1, 2 x 2 and 1 x 2");
    eprintln!("rescale {spec_file}: stopped at line {at1} (1 x 1) and {at2} (2 x 2) of {EVENTS}");
}
