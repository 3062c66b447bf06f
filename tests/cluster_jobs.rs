//! Jobs submitted to a running cluster: `logflow cluster start` (2 processes), `submit`,
//! `jobs`, `stop`, `cancel`, `cluster stop`, against a real Kafka broker started by `scripts/kafka`
//! on 127.0.0.1 (stopped by its pid at the end). Every output topic is compared with the same
//! spec's results in file mode over the same input.
//!
//! Each test function runs its scenario in order, as its jobs share the cluster and broker (the
//! tests take turns with the broker's port).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::cluster::{cli, control, jobs, ok, start_cluster, wait_job, Proc};
use common::kafka::{
    assert_side_outputs, assert_topics_equal_files, create_outputs, exactly_once_job, file_results,
    gen, log_keys, serial_broker, variant_of, LOG_ANALYSES, USER_ANALYSES,
};
use common::oracle::{self, Reference};
use common::rows::{assert_same_results, dir_results, same_row};
use common::{bin, run_file, tmpdir};
use serde_json::Value;

/// Submits `spec` and returns the job id it printed.
fn submit(addr: &str, spec: &Path, broker: &str, topic: &str, extra: &[&str]) -> u64 {
    let mut args = vec![
        "submit",
        spec.to_str().unwrap(),
        "--brokers",
        broker,
        "--topic",
        topic,
    ];
    args.extend_from_slice(extra);
    ok(cli(addr, &args), "submit").parse().unwrap()
}

/// Submits the log-analysis job reading `input`'s lines from a socket this test serves and
/// keeps open (the job's input never ends), writing into `out`; returns the job's id and the
/// connection, once the job has read every line.
fn live_socket_job(addr: &str, dir: &Path, input: &Path, out: &Path) -> (u64, std::net::TcpStream) {
    use std::io::Write;
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let spec = common::cluster::socket_spec(dir, port);
    let args = ["submit", spec.to_str().unwrap(), "--output-dir"];
    let job = ok(
        cli(addr, &[&args[..], &[out.to_str().unwrap()]].concat()),
        "submit",
    );
    let job: u64 = job.parse().unwrap();
    let (mut conn, _) = server.accept().unwrap();
    let lines = std::fs::read(input).unwrap();
    conn.write_all(&lines).unwrap();
    conn.flush().unwrap();
    let count = lines.iter().filter(|b| **b == b'\n').count();
    wait_job(addr, job, "read its socket", |v| v["records_in"] == count);
    (job, conn)
}

/// `cluster stop`, then every process exits 0.
fn stop_cleanly(addr: &str, mut cluster: Proc) {
    ok(cli(addr, &["cluster", "stop"]), "cluster stop");
    let status = cluster.wait(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "cluster did not stop cleanly ({status:?}):\n{}",
        cluster.stderr_text()
    );
}

#[test]
fn jobs_are_submitted_listed_and_cancelled_on_a_running_cluster() {
    let dir = tmpdir("cluster-jobs");
    let (_port, b) = serial_broker("kafka-jobs");
    let addr = control(0);

    let logs = dir.join("logs.jsonl");
    gen("logs", "100000", &["--late-fraction", "0.002"], &logs);
    let events = dir.join("events.jsonl");
    gen("user-events", "150000", &[], &events);
    b.topic("jobs-logs", 4);
    b.topic("jobs-events", 4);
    assert_eq!(b.produce("jobs-logs", &logs), 100_000);
    assert_eq!(b.produce("jobs-events", &events), 150_000);

    // Four jobs, each writing to its own topics (`<job>.<analysis>`).
    let log_spec = |job: &str| variant_of("dataflows/log-analysis.toml", job, "30s", &dir);
    let event_spec = |job: &str| variant_of("dataflows/user-events.toml", job, "30s", &dir);
    let (la1, ue2, la3, ue4) = (
        log_spec("la1"),
        event_spec("ue2"),
        log_spec("la3"),
        event_spec("ue4"),
    );
    for job in ["la1", "la3"] {
        create_outputs(&b, job, Some(job), &LOG_ANALYSES);
    }
    for job in ["ue2", "ue4"] {
        create_outputs(&b, job, Some(job), &USER_ANALYSES);
        b.topic(&format!("{job}.late_alerts"), 2);
    }
    let expected_logs = file_results(la1.to_str().unwrap(), "json", &logs, &dir.join("f-la1"));
    let expected_events = file_results(
        ue2.to_str().unwrap(),
        "user-events",
        &events,
        &dir.join("f-ue2"),
    );
    Reference::new(&oracle::log_analysis(), &logs).assert_matches(&dir.join("f-la1"), "la1");
    Reference::new(&oracle::user_events(), &events).assert_matches(&dir.join("f-ue2"), "ue2");
    let event_keys: BTreeMap<&str, &str> = [
        ("user_activity_sliding", "user_id"),
        ("action_metrics", "action"),
        ("user_anomalies", "user_id"),
        ("user_sessions", "user_id"),
    ]
    .into_iter()
    .collect();

    let cluster = start_cluster(&addr, &dir, "cluster", 2);
    assert!(jobs(&addr).is_empty());

    // Two jobs side by side, each read to the end of its topic.
    let j1 = submit(&addr, &la1, &b.address, "jobs-logs", &["--stop-at-end"]);
    let j2 = submit(&addr, &ue2, &b.address, "jobs-events", &["--stop-at-end"]);
    assert_eq!((j1, j2), (1, 2));
    let listed = jobs(&addr);
    assert_eq!(listed[&1]["name"], "la1");
    assert_eq!(listed[&2]["name"], "ue2");
    for j in [1, 2] {
        let s = wait_job(&addr, j, "finished", |v| v["state"] == "finished");
        assert_eq!(s["workers_running"], 0, "{s}");
    }
    let listed = jobs(&addr);
    assert_eq!(listed[&1]["records_in"], 100_000, "{}", listed[&1]);
    assert_eq!(listed[&2]["records_in"], 150_000, "{}", listed[&2]);
    assert!(listed[&1]["records_out"].as_u64().unwrap() > 0);
    assert!(listed[&1]["watermark"].is_string(), "{}", listed[&1]);
    assert_topics_equal_files(
        &b,
        Some("la1"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected_logs,
        &dir,
        "job 1",
    );
    assert_side_outputs(&b, "la1", "la1", &expected_logs, &dir, "job 1");
    assert_topics_equal_files(
        &b,
        Some("ue2"),
        &USER_ANALYSES,
        &event_keys,
        &expected_events,
        &dir,
        "job 2",
    );
    assert_side_outputs(&b, "ue2", "ue2", &expected_events, &dir, "job 2");

    // Bad submissions are refused with their cause and leave the cluster as it was.
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "name = \"broken\"\n[source]\nkind = \"kafka\"\ntopic = \"jobs-logs\"\nformat = \"json\"\ncolour = 1\n",
    )
    .unwrap();
    let out = cli(&addr, &["submit", broken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("broken.toml:6:1") && err.contains("colour"),
        "{err}"
    );
    let out = cli(
        &addr,
        &[
            "submit",
            la1.to_str().unwrap(),
            "--brokers",
            &b.address,
            "--topic",
            "no-such-topic",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-topic"), "{err}");
    let out = cli(&addr, &["cancel", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 99"));
    assert_eq!(jobs(&addr).len(), 2);

    // An unbounded job, cancelled while another job runs: the other still finishes exactly.
    let j3 = submit(&addr, &la3, &b.address, "jobs-logs", &[]);
    assert_eq!(j3, 3);
    wait_job(&addr, 3, "read its topic", |v| v["records_in"] == 100_000);
    let j4 = submit(&addr, &ue4, &b.address, "jobs-events", &["--stop-at-end"]);
    ok(cli(&addr, &["cancel", "3"]), "cancel 3");
    let listed = jobs(&addr);
    assert_eq!(listed[&3]["state"], "cancelled", "{}", listed[&3]);
    assert_eq!(
        listed[&j4]["state"], "running",
        "job 4 should still be reading 150k events: {}",
        listed[&j4]
    );
    // Cancelling drops the dataflow on every worker.
    wait_job(&addr, 3, "freed", |v| v["workers_running"] == 0);
    let la3_rows = |a: &str| -> Vec<Value> {
        b.dump(&format!("la3.{a}"), &dir)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    let before: Vec<usize> = LOG_ANALYSES.iter().map(|a| la3_rows(a).len()).collect();
    assert!(before.iter().sum::<usize>() > 0, "job 3 wrote nothing");
    wait_job(&addr, j4, "finished", |v| v["state"] == "finished");
    assert_topics_equal_files(
        &b,
        Some("ue4"),
        &USER_ANALYSES,
        &event_keys,
        &expected_events,
        &dir,
        "job 4",
    );
    assert_side_outputs(&b, "ue4", "ue2", &expected_events, &dir, "job 4");
    // Nothing more from the cancelled job, and what it wrote is right (closed windows only).
    for (a, n) in LOG_ANALYSES.iter().zip(&before) {
        let rows = la3_rows(a);
        assert_eq!(rows.len(), *n, "job 3 kept writing {a} after its cancel");
        for r in &rows {
            let want: Vec<Value> = expected_logs[*a]
                .iter()
                .map(|s| serde_json::from_str(s).unwrap())
                .collect();
            assert!(
                want.iter().any(|w| same_row(r, w)),
                "job 3 wrote a row of {a} that the file run does not have: {r}"
            );
        }
    }
    let out = cli(&addr, &["cancel", "4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    let states: Vec<(u64, String)> = jobs(&addr)
        .into_iter()
        .map(|(id, v)| (id, v["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        states,
        [
            (1, "finished".to_string()),
            (2, "finished".to_string()),
            (3, "cancelled".to_string()),
            (4, "finished".to_string())
        ]
    );

    stop_cleanly(&addr, cluster);
}

/// `logflow stop JOB`: a job with checkpoints and exactly-once Kafka sinks stops mid-read after
/// its final checkpoint, and the same spec submitted again goes on from it to exactly the
/// results of a run that never stopped; a job without checkpoints emits its open windows and
/// flushes its sinks, as at the end of its input. Both end as `stopped`.
#[test]
fn stop_ends_a_job_gracefully_and_a_resubmission_goes_on_from_its_final_checkpoint() {
    // Large enough that the job is still reading when it is told to stop (see tests/stop.rs).
    const EVENTS: u64 = 1_000_000;
    let dir = tmpdir("cluster-stop");
    let (_port, b) = serial_broker("kafka-cluster-stop");
    let addr = control(2);
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let eos = exactly_once_job(&b, "cs1", &dir);
    let expected = file_results(eos.to_str().unwrap(), "json", &logs, &dir.join("file"));
    // That run kept checkpoints too (one worker): the cluster's job starts afresh.
    std::fs::remove_dir_all(dir.join("cs1.ckpt")).unwrap();
    let plain = variant_of("dataflows/log-analysis.toml", "cs2", "30s", &dir);
    create_outputs(&b, "cs2", Some("cs2"), &LOG_ANALYSES);
    b.topic("cs-logs", 4);
    assert_eq!(b.produce("cs-logs", &logs), EVENTS);
    let cluster = start_cluster(&addr, &dir, "cluster", 2);
    let stop = |job: u64| cli(&addr, &["stop", &job.to_string(), "--stop-timeout", "60s"]);

    // Stopped mid-read: `stop` waits until the job has stopped, and says so.
    let j1 = submit(&addr, &eos, &b.address, "cs-logs", &[]);
    wait_job(&addr, j1, "read 100k records", |v| {
        v["records_in"].as_u64().unwrap() >= 100_000
    });
    let out = stop(j1);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "stop {j1}: {err}");
    assert!(err.contains(&format!("job {j1} stopped")), "{err}");
    let s = jobs(&addr)[&j1].clone();
    assert_eq!(
        (&s["state"], &s["workers_running"]),
        (&"stopped".into(), &0.into()),
        "{s}"
    );
    let read_first = s["records_in"].as_u64().unwrap();
    assert!(
        read_first < EVENTS,
        "the job had read everything before it was stopped: make the input larger: {s}"
    );
    // Stopped is an end: neither stopped nor cancelled again.
    let again = stop(j1);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not running (it stopped)"));
    let out = cli(&addr, &["stop", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 99"));

    // The same spec again: restored from the final checkpoint, it reads the rest.
    let j2 = submit(&addr, &eos, &b.address, "cs-logs", &["--stop-at-end"]);
    let s = wait_job(&addr, j2, "finished", |v| v["state"] == "finished");
    let read_second = s["records_in"].as_u64().unwrap();
    assert!(
        cluster.says("restoring checkpoint"),
        "{}",
        cluster.stderr_text()
    );
    assert!(
        read_first + read_second >= EVENTS && read_second < EVENTS,
        "read {read_first} then {read_second} of {EVENTS}"
    );
    assert_topics_equal_files(
        &b,
        Some("cs1"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "stopped on the cluster, then submitted again",
    );

    // Without checkpoints, once everything is read: the open windows are emitted and the sinks
    // flushed, so the topics hold the results of the whole input.
    let j3 = submit(&addr, &plain, &b.address, "cs-logs", &[]);
    wait_job(&addr, j3, "read its topic", |v| v["records_in"] == EVENTS);
    let out = stop(j3);
    assert!(
        out.status.success(),
        "stop {j3}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(jobs(&addr)[&j3]["state"], "stopped");
    // Its results all written on every process, its group holds the positions it stopped at:
    // the ends, as it had read everything.
    let committed = b.group_offsets("logflow-cs2", "cs-logs");
    assert_eq!(committed.len(), 4, "{committed:?}");
    for (p, (end, at)) in &committed {
        assert_eq!(at, end, "partition {p}: {committed:?}");
    }
    assert_topics_equal_files(
        &b,
        Some("cs2"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "stopped on the cluster without checkpoints",
    );

    stop_cleanly(&addr, cluster);
    eprintln!("cluster stop: job {j1} stopped after {read_first} of {EVENTS} records, job {j2} read {read_second}");
}

#[test]
fn sigterm_stops_the_cluster_in_order() {
    let dir = tmpdir("cluster-sigterm");
    let addr = control(1);
    let mut cluster = start_cluster(&addr, &dir, "cluster", 2);
    let input = dir.join("logs.jsonl");
    gen("logs", "20000", &[], &input);
    // The log-analysis job over the file, results into `out`; its id.
    let submit_file = |out: &str| {
        let input = input.to_str().unwrap();
        let args = ["submit", "dataflows/log-analysis.toml", "--input", input];
        ok(
            cli(&addr, &[&args[..], &["--output-dir", out]].concat()),
            "submit",
        )
    };
    let out = dir.join("out");
    assert_eq!(submit_file(out.to_str().unwrap()), "1");
    wait_job(&addr, 1, "finished", |v| v["state"] == "finished");
    // Its results are those of `run` over the same input.
    let want = dir.join("want");
    run_file("dataflows/log-analysis.toml", &input, &want, "2");
    assert_same_results(&dir_results(&out), &dir_results(&want), "job 1");
    // An output outside the directories the cluster allows (here: the one it was started
    // in) is refused at submission, naming it.
    let input_arg = input.to_str().unwrap();
    let refused = cli(
        &addr,
        &[
            "submit",
            "dataflows/log-analysis.toml",
            "--input",
            input_arg,
            "--output-dir",
            "/proc/logflow-no-such-dir",
        ],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/proc/logflow-no-such-dir") && err.contains("--allow-dir"),
        "{err}"
    );
    // A job whose output cannot be opened where it runs (its parent is a file) fails; the
    // cluster goes on.
    let unopenable = input.join("out");
    assert_eq!(submit_file(unopenable.to_str().unwrap()), "2");
    let failed = wait_job(&addr, 2, "failed", |v| {
        v["state"] == "failed" && v["workers_running"] == 0
    });
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("process 0") && reason.contains(unopenable.to_str().unwrap()),
        "{failed}"
    );
    assert_eq!(jobs(&addr)[&1]["state"], "finished");
    // A job still reading when the signal comes (its socket stays open, so its input never
    // ends) stops gracefully: its open windows are emitted and its sinks flushed.
    let live = dir.join("live");
    let (job, _conn) = live_socket_job(&addr, &dir, &input, &live);
    assert_eq!(job, 3);
    let term = std::process::Command::new("kill")
        .args(["-TERM", &cluster.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = cluster.wait(Duration::from_secs(60));
    let err = cluster.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    assert!(
        err.contains("job 3 (log-analysis) stopped: 20000 records in"),
        "{err}"
    );
    // Dead letters name where they were read: the socket here, the file there.
    let (file, socket) = (input.to_str().unwrap(), "tcp://127.0.0.1:");
    let named = |mut r: BTreeMap<String, Vec<String>>, from: &str| {
        for rows in r.values_mut() {
            for row in rows.iter_mut() {
                if let Some(at) = row.find(from) {
                    let end = row[at..].find('"').map_or(row.len(), |e| at + e);
                    row.replace_range(at..end, "INPUT");
                }
            }
        }
        r
    };
    assert_same_results(
        &named(dir_results(&live), socket),
        &named(dir_results(&want), file),
        "job 3, stopped",
    );
    // In order: the signal is passed on, a process stops the cluster, then each ends.
    let at = |text: &str| {
        err.find(text)
            .unwrap_or_else(|| panic!("no {text:?}:\n{err}"))
    };
    let passed = at("SIGTERM: passing it on to every process");
    let asked = at("was asked to stop: stopping the cluster");
    assert!(passed < asked, "out of order:\n{err}");
    for p in 0..2 {
        let ended = at(&format!(
            "logflow cluster: process {p} finished (exit code 0)"
        ));
        assert!(asked < ended, "process {p} ended before the stop:\n{err}");
    }
}

/// A graceful stop of the cluster that does not finish within `--stop-timeout` cancels the
/// jobs still stopping, names them, and the processes exit 1.
#[test]
fn a_cluster_stop_past_its_timeout_cancels_the_jobs_left_and_fails() {
    let dir = tmpdir("cluster-stop-timeout");
    let addr = control(3);
    let mut c = bin();
    // No job stops within a millisecond: it emits its windows and flushes its sinks first,
    // and its processes report that only after.
    c.args(["cluster", "start", "-n", "1", "-w", "1", "--control", &addr])
        .args(["--stop-timeout", "1ms"]);
    let mut cluster = Proc::spawn(c, &dir, "cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    let input = dir.join("logs.jsonl");
    gen("logs", "20000", &[], &input);
    let (job, _conn) = live_socket_job(&addr, &dir, &input, &dir.join("out"));
    ok(cli(&addr, &["cluster", "stop"]), "cluster stop");
    let status = cluster.wait(Duration::from_secs(60));
    let err = cluster.stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the graceful stop did not finish within 1ms: job(s) {job} still stopping"
        )),
        "{err}"
    );
}
