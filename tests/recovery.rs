//! Recovery (issue 6): `launch --restart` on a real Kafka broker
//! (`scripts/kafka`, 127.0.0.1, stopped by its pid at the end). A 2-process job reading a
//! 200k-event topic has a random process killed with SIGKILL at random moments, 5 times; the
//! launcher starts the job again each time, and the last attempt finishes. Without checkpoints
//! a restart starts over, so every result must be on its topic at least once, with its
//! deterministic key, and nothing else: the distinct (key, row) pairs of every output topic
//! equal the uninterrupted file-mode results.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::kafka::{
    assert_topics_equal_files, create_outputs, exactly_once_job, file_results, gen, log_keys,
    serial_broker, variant_spec, Broker, LOG_ANALYSES,
};
use common::oracle::{self, Reference};
use common::recovery::{
    assert_fell_back, broker_errors, kill_and_damage, kill_attempts, latest_pids, signal_all,
    wait_for_broker_errors, wait_for_count,
};
use common::rows::assert_same_rows;
use common::{accounting, bin, tmpdir};
use serde_json::Value;

/// Large enough that an attempt outlasts the latest kill (1.5 s in) on an idle machine: an
/// attempt over 200k events ended in 0.8 s, so most kills found it gone.
const EVENTS: u64 = 1_000_000;
const KILLS: usize = 5;
/// Kills that must land in a running attempt (the others may come after its end).
const MIN_KILLS: usize = 3;

#[test]
fn a_job_killed_five_times_still_writes_every_result() {
    let dir = tmpdir("recovery");
    let (_port, b) = serial_broker("kafka-recovery");
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let spec = variant_spec("rec", "30s", &dir);
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    Reference::new(&oracle::log_analysis(), &logs).assert_matches(&dir.join("file"), "rec");
    b.topic("rec-logs", 4);
    create_outputs(&b, "rec", Some("rec"), &LOG_ANALYSES);
    assert_eq!(b.produce("rec-logs", &logs), EVENTS);

    let (restarts, _) = killed_five_times(
        &b,
        &spec,
        &dir,
        "at-least-once",
        &watched("rec"),
        0x9E37_79B9_7F4A_7C15,
    );
    let mut written_again = 0;
    for a in LOG_ANALYSES {
        let records = b.dump(&format!("rec.{a}"), &dir);
        let mut distinct: BTreeSet<(Option<String>, String)> = BTreeSet::new();
        for (k, v) in &records {
            distinct.insert((k.clone(), v.to_string()));
        }
        // The same key always carries the same row (results are deterministic).
        let keys: BTreeSet<&Option<String>> = distinct.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys.len(),
            distinct.len(),
            "{a}: a key with two different rows"
        );
        let rows: Vec<Value> = distinct
            .iter()
            .map(|(_, v)| serde_json::from_str(v).unwrap())
            .collect();
        written_again += records.len() - rows.len();
        assert_same_rows(
            &rows,
            &expected[a],
            &format!("{a} after {restarts} restarts"),
        );
    }
    // At least once is only tested if a killed attempt had written results that the next
    // one wrote again.
    assert!(
        written_again > 0,
        "no killed attempt had written a result: kill later or read more"
    );
    eprintln!(
        "recovery: {restarts} restarts, all results present, each key one row, \
         {written_again} rows written more than once"
    );

    // Exactly once: results in Kafka transactions committed with the progress they reach;
    // read_committed, every result is on its topic once, however often the job was killed.
    let eos = exactly_once_job(&b, "eos", &dir);
    let (restarts, err) = killed_five_times(
        &b,
        &eos,
        &dir,
        "exactly-once",
        &watched("eos"),
        0xD1B5_4A32_D192_ED03,
    );
    assert_topics_equal_files(
        &b,
        Some("eos"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        &format!("exactly once after {restarts} restarts"),
    );
    assert!(
        err.contains("starting the job again"),
        "the exactly-once job was never killed mid-run:\n{err}"
    );
    let resumed = err.matches("resumes exactly once").count();
    // Restarts continue from checkpoints (state and offsets), not from the start.
    let restored = err.matches("restoring checkpoint").count();
    assert!(restored >= 2, "no restart restored a checkpoint:\n{err}");
    // The case exactly once exists for: a restart after results were committed.
    assert!(
        resumed > 0,
        "no restart came after committed results:\n{err}"
    );
    eprintln!(
        "recovery: exactly once after {restarts} restarts, {restored} process starts restored \
         a checkpoint, {resumed} worker starts resumed after results an earlier attempt \
         committed"
    );

    // The broker stops and comes back in the middle of an exactly-once run (transactions
    // open, commits due): read_committed, every result once.
    // Large enough that the broker stops while the job is still reading: the stop waits
    // 0.5 s after the workers run (the source's first fetch no longer waits 0.5 s for its
    // offsets, and a 1.5 s wait let a fast run read most of the input first).
    const BIG: u64 = 1_200_000;
    let big = dir.join("big.jsonl");
    gen("logs", &BIG.to_string(), &["--seed", "7"], &big);
    let eosb = exactly_once_job(&b, "eosb", &dir);
    // (From the spec without checkpoints: a file run must not leave one in the job's directory.)
    let expected_big = file_results(spec.to_str().unwrap(), "json", &big, &dir.join("file-big"));
    Reference::new(&oracle::log_analysis(), &big).assert_matches(&dir.join("file-big"), "rec");
    b.topic("rec-big", 4);
    assert_eq!(b.produce("rec-big", &big), BIG);
    let cmd = launch_cmd(&b, &eosb, "rec-big", 3);
    let mut launch = Proc::spawn(cmd, &dir, "broker-restart", Stdio::null());
    wait_for_count(&mut launch, "runs workers", 2, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    // Frozen while the broker shuts down (which takes seconds), so that the outage meets a
    // job in the middle of its input however fast it reads.
    let pids = latest_pids(&launch.stderr_text(), 2);
    signal_all(&pids, "-STOP");
    let err = launch.stderr_text();
    assert!(
        launch.child.try_wait().unwrap().is_none(),
        "the job finished before the broker stopped: make the input larger\n{err}"
    );
    let ended = err.matches("reached the end of its input").count();
    assert!(
        ended < 2,
        "the job had read all its input before the broker stopped: make it larger\n{err}"
    );
    let before = broker_errors(&err);
    b.stop();
    signal_all(&pids, "-CONT");
    wait_for_broker_errors(
        &mut launch,
        before,
        Duration::from_secs(120),
        "broker restart",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        launch.child.try_wait().unwrap().is_none(),
        "the job ended while the broker was down:\n{}",
        launch.stderr_text()
    );
    b.restart();
    let status = launch.wait(Duration::from_secs(400));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    assert_topics_equal_files(
        &b,
        Some("eosb"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected_big,
        &dir,
        "exactly once across a broker restart",
    );
    let resumed = err.matches("resumes exactly once").count();
    eprintln!(
        "recovery: broker restart (checkpoints every 300 ms, each committing a transaction), \
         {} job restarts, {resumed} worker starts resumed",
        err.matches("starting the job again").count()
    );

    // The newest checkpoint is damaged while the job is down: the restart names it, restores
    // the one before, reads the topic on from that checkpoint's offsets, and read_committed
    // every result is still there once.
    let eosc = exactly_once_job(&b, "eosc", &dir);
    let ckpt = dir.join("eosc.ckpt");
    let run = || {
        let mut cmd = bin();
        cmd.args(["run", eosc.to_str().unwrap(), "-w", "2", "--quiet"])
            .args([
                "--brokers",
                &b.address,
                "--topic",
                "rec-big",
                "--stop-at-end",
            ]);
        cmd
    };
    let (damaged, previous) = kill_and_damage(run(), &dir, &ckpt, "worker-1.part");
    let second = run().output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{err}");
    assert_fell_back(&err, &damaged, &previous);
    assert!(accounting(&second.stderr)["read"] < BIG, "{err}");
    assert_topics_equal_files(
        &b,
        Some("eosc"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected_big,
        &dir,
        "exactly once after a corrupt checkpoint",
    );
}

/// Runs `spec` (2 processes, `launch --restart 5`, reading `rec-logs` to its end) and kills a
/// random process at a random moment of each of its first five attempts. Asserts that at
/// least [`MIN_KILLS`] kills landed and each cost exactly one restart; returns the restarts
/// and the launcher's stderr.
fn killed_five_times(
    b: &Broker,
    spec: &Path,
    dir: &Path,
    name: &str,
    watched: &str,
    seed: u64,
) -> (usize, String) {
    let mut cmd = launch_cmd(b, spec, "rec-logs", KILLS);
    cmd.args(["--backoff", "200ms"]);
    let mut launch = Proc::spawn(cmd, dir, name, Stdio::null());
    // The first kill comes early (so there is at least one restart); later ones once the
    // attempt has written results to `watched`, however slow the machine is today (and,
    // exactly once, mostly after a commit), and mostly before the end.
    let kills = kill_attempts(&mut launch, 2, KILLS, seed, |attempt, rng| {
        if attempt == 0 {
            return 300 + rng.next() % 600;
        }
        let before = b.count(watched);
        let started = Instant::now();
        while b.count(watched) == before && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
        rng.next() % 500
    });
    let status = launch.wait(Duration::from_secs(300));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    // Every kill that landed cost a restart, and nothing else did.
    let restarts = err.matches("starting the job again").count();
    assert_eq!(restarts, kills, "{kills} kills landed:\n{err}");
    assert!(
        kills >= MIN_KILLS,
        "{name}: only {kills} of {KILLS} kills hit a running job: make the input larger\n{err}"
    );
    assert!(err.contains("was stopped by SIGKILL"), "{err}");
    // The last attempt reads everything, or (restored from a checkpoint) what is left.
    let read = accounting(err.as_bytes())["read"];
    if std::fs::read_to_string(spec)
        .unwrap()
        .contains("[checkpoint]")
    {
        assert!(read <= EVENTS, "{read} records read");
    } else {
        assert_eq!(read, EVENTS);
    }
    (restarts, err)
}

/// The output topic of `job` whose growth says an attempt has written results: the first
/// analysis's (1-minute windows, the most rows).
fn watched(job: &str) -> String {
    format!("{job}.{}", LOG_ANALYSES[0])
}

/// `logflow launch SPEC` with 2 processes reading `topic` to its end, restarted up to
/// `restarts` times.
fn launch_cmd(b: &Broker, spec: &Path, topic: &str, restarts: usize) -> Command {
    let mut cmd = bin();
    cmd.args(["launch", spec.to_str().unwrap(), "--processes", "2"])
        .args(["--brokers", &b.address, "--topic", topic, "--stop-at-end"])
        .args(["--restart", &restarts.to_string()]);
    cmd
}

/// The end of an exactly-once run across a broker outage: the broker stops as the job has read
/// all its input (the final windows are being flushed and their transactions committed), stays
/// down 3 s and comes back. Once the job alone waits it out; once one of its processes is also
/// killed then, so the job starts again during the outage from its last checkpoint before the
/// flush. read_committed, every result is on its topic once. (The broker-restart case of the
/// test above stops it mid-run.)
#[test]
fn exactly_once_across_a_broker_outage_at_the_end_of_the_input() {
    const END_EVENTS: u64 = 200_000;
    let dir = tmpdir("recovery-end");
    let (_port, b) = serial_broker("kafka-recovery-end");
    let logs = dir.join("logs.jsonl");
    gen("logs", &END_EVENTS.to_string(), &["--seed", "11"], &logs);
    let plain = variant_spec("plain", "30s", &dir);
    let expected = file_results(plain.to_str().unwrap(), "json", &logs, &dir.join("file"));
    Reference::new(&oracle::log_analysis(), &logs).assert_matches(&dir.join("file"), "plain");
    b.topic("rec-end", 4);
    assert_eq!(b.produce("rec-end", &logs), END_EVENTS);
    // (workers that have read their whole input when the broker stops, process killed then)
    for (round, (ended, kill)) in [(2, None), (2, Some(1))].into_iter().enumerate() {
        let job = format!("eose{round}");
        let spec = exactly_once_job(&b, &job, &dir);
        let mut launch = Proc::spawn(
            launch_cmd(&b, &spec, "rec-end", 3),
            &dir,
            &job,
            Stdio::null(),
        );
        let started = Instant::now();
        // The ingest says so when a worker has read its partitions to their end; the last
        // one starts the final flush.
        wait_for_count(
            &mut launch,
            "reached the end of its input",
            ended,
            Duration::from_secs(120),
        );
        // Frozen at once: the final flush and its commits are still to come when the
        // broker goes down, however long its shutdown takes.
        let pids = latest_pids(&launch.stderr_text(), 2);
        signal_all(&pids, "-STOP");
        let err = launch.stderr_text();
        assert!(
            launch.child.try_wait().unwrap().is_none(),
            "{job} finished before the broker stopped:\n{err}"
        );
        let before = broker_errors(&err);
        if let Some(p) = kill {
            let sent = Command::new("kill")
                .args(["-KILL", &pids[p]])
                .status()
                .unwrap();
            assert!(sent.success(), "{job}: process {p} had ended");
        }
        b.stop();
        let alive: Vec<String> = pids
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != kill)
            .map(|(_, p)| p.clone())
            .collect();
        signal_all(&alive, "-CONT");
        // The job (or, killed, its next attempt) runs into the outage and says so, alive.
        wait_for_broker_errors(&mut launch, before, Duration::from_secs(120), &job);
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            launch.child.try_wait().unwrap().is_none(),
            "{job} ended while the broker was down:\n{}",
            launch.stderr_text()
        );
        b.restart();
        let status = launch.wait(Duration::from_secs(300));
        let err = launch.stderr_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "{job}: {status:?}:\n{err}"
        );
        let restarts = err.matches("starting the job again").count();
        if kill.is_none() {
            // Frozen, continued and cut off from the broker, the job alone waits it out.
            assert_eq!(restarts, 0, "{job}: started again:\n{err}");
        }
        if kill.is_some() {
            assert!(restarts >= 1, "{job}: not started again:\n{err}");
            assert!(
                err.contains("restoring checkpoint"),
                "{job}: nothing restored:\n{err}"
            );
        }
        assert_topics_equal_files(
            &b,
            Some(&job),
            &LOG_ANALYSES,
            &log_keys(),
            &expected,
            &dir,
            &format!("{job}: exactly once across a broker outage at the end of the input"),
        );
        eprintln!(
            "recovery: {job}: broker stopped at the end of the input, killed {kill:?}, \
             {restarts} job restarts, {} worker starts resumed, {:.1} s",
            err.matches("resumes exactly once").count(),
            started.elapsed().as_secs_f64()
        );
    }
}
