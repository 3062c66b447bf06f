//! Rescaling (issue 31) on the real broker: a job reading a topic of 4 partitions, with
//! checkpoints, stopped at a savepoint as 1 process x 1 worker, continued as 2 processes x 2
//! workers (`launch`) and killed, and finished as 1 x 2. With `delivery = "exactly_once"` the
//! read_committed output topics equal an uninterrupted run's (each row once: the killed layout's
//! transactional ids are fenced, what they committed is not written again); at least once,
//! every row is there. Each stop is shown to land mid-input by the checkpoint's own positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::cluster::Proc;
use common::kafka::{
    assert_rows_present, assert_topics_equal_files, create_outputs, exactly_once_job, file_results,
    gen, log_keys, serial_broker, variant_spec, Broker, LOG_ANALYSES,
};
use common::recovery::{complete, latest_pids, newest, signal_all, wait_for_new_checkpoints};
use common::{bin, messages, run_ok, tmpdir};

/// Records of the input topic: enough that each run is still reading when it is stopped.
const EVENTS: u64 = 1_000_000;
/// How long each run may take to write the checkpoints it is stopped after.
const LIMIT: Duration = Duration::from_secs(180);

/// The newest checkpoint's listing line and the sum of its positions in `topic` (records read
/// from its 4 partitions, whose offsets start at 0).
fn latest(ckpt: &Path, topic: &str) -> (String, u64) {
    let out = run_ok(&["checkpoints", ckpt.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.contains("[latest"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no latest:\n{text}"))
        .to_string();
    let prefix = format!("  kafka {topic}/");
    let positions: Vec<u64> = lines
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            let at = l.split("position ").nth(1).unwrap();
            at.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(positions.len(), 4, "{topic}: {text}");
    (head, positions.iter().sum())
}

/// Records read strictly inside the input: some, not all.
fn assert_mid_input(read: u64, what: &str, head: &str) {
    assert!(
        read > 0 && read < EVENTS,
        "{what}: {read} of {EVENTS} records read at the checkpoint ({head})"
    );
}

/// `logflow run|launch SPEC LAYOUT` on topic `topic` of `b`.
fn job(
    b: &Broker,
    spec: &Path,
    topic: &str,
    cmd: &str,
    layout: &[&str],
    extra: &[&str],
) -> Command {
    let mut c = bin();
    c.args([cmd, spec.to_str().unwrap()])
        .args(layout)
        .args(["--brokers", &b.address, "--topic", topic])
        .args(extra);
    c
}

/// 1 x 1 stopped at a savepoint, 2 x 2 killed after 3 checkpoints of its own, its newest one
/// then lost (removed), 1 x 2 to the end of the topic from the one before; asserts each stop
/// landed mid-input and each restore rescaled. Returns the last run's stderr and the epoch it
/// restored.
fn rescaled_three_times(
    b: &Broker,
    spec: &Path,
    topic: &str,
    ckpt: &Path,
    dir: &Path,
) -> (String, u64) {
    let mut first = Proc::spawn(
        job(b, spec, topic, "run", &["-w", "1"], &["--savepoint"]),
        dir,
        "first",
        Stdio::null(),
    );
    wait_for_new_checkpoints(&mut first, ckpt, 0, 2, "1 x 1", LIMIT);
    signal_all(&[first.child.id().to_string()], "-TERM");
    let status = first.wait(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        first.stderr_text()
    );
    let (head, read1) = latest(ckpt, topic);
    assert_mid_input(read1, "1 x 1", &head);
    assert!(head.contains("1 process x 1 worker"), "{head}");
    assert!(head.contains("savepoint"), "{head}");
    let savepoint = newest(ckpt);

    // 2 x 2 from it, killed while writing: its processes' open transactions are left for the
    // next run to fence.
    let mut second = Proc::spawn(
        job(
            b,
            spec,
            topic,
            "launch",
            &["--processes", "2", "-w", "2"],
            &[],
        ),
        dir,
        "second",
        Stdio::null(),
    );
    wait_for_new_checkpoints(&mut second, ckpt, savepoint, 3, "2 x 2", LIMIT);
    signal_all(&latest_pids(&second.stderr_text(), 2), "-KILL");
    let status = second.wait(Duration::from_secs(60));
    assert!(status.is_some_and(|s| !s.success()), "2 x 2: {status:?}");
    let err = second.stderr_text();
    assert!(
        messages(&err).any(|m| m.contains(&format!(
            "rescaling checkpoint {savepoint} from 1 worker to 4 workers"
        ))),
        "{err}"
    );
    let (head, read2) = latest(ckpt, topic);
    assert_mid_input(read2, "2 x 2", &head);
    assert!(read2 > read1, "2 x 2 read nothing: {read1} then {read2}");
    assert!(head.contains("2 processes x 2 workers"), "{head}");
    // Every 2 x 2 worker committed its results up to the newest checkpoint at least: restoring
    // the one before, the 1 x 2 run computes again results the old layout had committed.
    std::fs::remove_dir_all(complete(ckpt).pop().unwrap()).unwrap();
    let restored = newest(ckpt);
    assert!(
        restored > savepoint,
        "the 2 x 2 run made only one checkpoint"
    );

    // 1 x 2 to the end of the topic.
    let third = job(b, spec, topic, "run", &["-w", "2"], &["--stop-at-end"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr).into_owned();
    assert!(third.status.success(), "{err}");
    assert!(
        messages(&err).any(
            |m| m.contains("rescaling checkpoint") && m.contains("from 4 workers to 2 workers")
        ),
        "{err}"
    );
    assert!(
        messages(&err).any(|m| m.contains(&format!("rescaling checkpoint {restored} from"))),
        "{err}"
    );
    eprintln!("rescale {topic}: checkpoints at {read1} (1 x 1) and {read2} (2 x 2) of {EVENTS}");
    (err, restored)
}

/// The input: generated logs in `topic` (4 partitions).
fn input(b: &Broker, dir: &Path, topic: &str) -> PathBuf {
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    b.topic(topic, 4);
    assert_eq!(b.produce(topic, &logs), EVENTS);
    logs
}

#[test]
fn an_exactly_once_job_rescaled_twice_writes_each_result_once() {
    let dir = tmpdir("rescale-eos");
    let (_port, b) = serial_broker("kafka-rescale-eos");
    let spec = exactly_once_job(&b, "reos", &dir);
    let logs = input(&b, &dir, "reos-logs");
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    // That run kept checkpoints too (one worker): the Kafka runs start afresh.
    let ckpt = dir.join("reos.ckpt");
    std::fs::remove_dir_all(&ckpt).unwrap();

    let (err, restored) = rescaled_three_times(&b, &spec, "reos-logs", &ckpt, &dir);
    // The killed layout's ids were fenced before the 1 x 2 run read their markers. Every old
    // worker had committed past the checkpoint restored: those results are computed again, and
    // only skipping them keeps each row once.
    let took_over = messages(&err)
        .find(|m| m.contains("taking over from the checkpoint's 4 workers") && m.contains("fenced"))
        .unwrap_or_else(|| panic!("no take-over:\n{err}"));
    let markers: Vec<u64> = took_over
        .split_once("progress below [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list.split(", ").map(|m| m.parse().unwrap()).collect())
        .unwrap_or_else(|| panic!("no markers: {took_over}"));
    assert_eq!(markers.len(), 4, "{took_over}");
    assert!(
        markers.iter().all(|&m| m > restored),
        "an old marker not past the restored checkpoint {restored}: {took_over}"
    );
    assert_topics_equal_files(
        &b,
        Some("reos"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "exactly once, rescaled 1 x 1 -> 2 x 2 (killed) -> 1 x 2",
    );
    // The commits topic holds every layout's markers, the last of each 1 x 2 worker the end.
    let markers = b.dump("reos.commits", &dir);
    for key in ["0/1", "0/4", "3/4"] {
        assert!(
            markers.iter().any(|(k, _)| k.as_deref() == Some(key)),
            "no marker of {key}"
        );
    }
    for key in ["0/2", "1/2"] {
        let last = markers
            .iter()
            .rev()
            .find(|(k, _)| k.as_deref() == Some(key))
            .map(|(_, v)| v.clone());
        assert_eq!(last, Some(Value::from(u64::MAX)), "last marker of {key}");
    }
}

#[test]
fn an_at_least_once_job_rescaled_twice_loses_no_result() {
    let dir = tmpdir("rescale-alo");
    let (_port, b) = serial_broker("kafka-rescale-alo");
    let spec = variant_spec("ralo", "30s", &dir);
    let ckpt = dir.join("ralo.ckpt");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(&format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"300ms\"\n",
        ckpt.display()
    ));
    std::fs::write(&spec, text).unwrap();
    create_outputs(&b, "ralo", Some("ralo"), &LOG_ANALYSES);
    let logs = input(&b, &dir, "ralo-logs");
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    std::fs::remove_dir_all(&ckpt).unwrap();

    rescaled_three_times(&b, &spec, "ralo-logs", &ckpt, &dir);
    for a in LOG_ANALYSES {
        let rows: Vec<Value> = b
            .dump(&format!("ralo.{a}"), &dir)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_rows_present(&rows, &expected[a], &format!("at least once: {a}"));
    }
}
