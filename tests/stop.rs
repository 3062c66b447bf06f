//! Graceful stop (docs/operations.md#stopping-a-job) on a real Kafka broker (`scripts/kafka`):
//! SIGTERM mid-run of an exactly-once job with checkpoints exits 0 and a restart writes exactly
//! the results of a run that never stopped; without checkpoints the sinks are flushed (as at the
//! end of a bounded input) by `run` and by `launch`; a second signal or `--stop-timeout` ends a
//! stop that cannot finish, with exit 1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::kafka::{
    assert_topics_equal_files, exactly_once_job, file_results, gen, log_keys, serial_broker,
    variant_spec, Broker, LOG_ANALYSES,
};
use common::prometheus::port;
use common::recovery::{complete, latest_pids, signal_all, wait_for_checkpoints, wait_for_count};
use common::rows::{assert_same_results, dir_results};
use common::{accounting, bin, http_get, messages, metric_sum, tmpdir};

fn metrics_addr() -> String {
    format!("127.0.0.1:{}", port("LOGFLOW_IT_METRICS_PORT", 19798))
}

/// Waits until the job serving metrics at `addr` has read at least `n` records.
fn wait_read(job: &mut Proc, addr: &str, n: f64, limit: Duration) -> f64 {
    let started = Instant::now();
    loop {
        if let Some(s) = job.child.try_wait().unwrap() {
            panic!("exited ({s}) before reading {n}:\n{}", job.stderr_text());
        }
        if let Some((200, text)) = http_get(addr, "/metrics") {
            let read = metric_sum(&text, "logflow_records_read_total");
            if read >= n {
                return read;
            }
        }
        assert!(
            started.elapsed() < limit,
            "fewer than {n} records read within {limit:?}:\n{}",
            job.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn term(job: &Proc) {
    signal_all(&[job.child.id().to_string()], "-TERM");
}

/// The exit code within `limit` (panics if still running then).
fn exit_code(job: &mut Proc, limit: Duration, what: &str) -> i32 {
    let status = job.wait(limit);
    let err = job.stderr_text();
    let status = status.unwrap_or_else(|| panic!("{what}: still running after {limit:?}:\n{err}"));
    status
        .code()
        .unwrap_or_else(|| panic!("{what}: ended by a signal ({status}):\n{err}"))
}

/// Records of the jobs stopped mid-run: large enough that they are still reading when told to
/// stop (see tests/recovery.rs).
const EVENTS: u64 = 1_000_000;

/// Waits for a restart of a job stopped after `read_first` of `EVENTS` records; asserts it
/// restored the final checkpoint, read the rest, and that the topics `<prefix>.<analysis>` hold
/// exactly the results of a run that never stopped (read_committed). Returns what it read.
fn restart_equals_whole_run(
    mut second: Proc,
    read_first: u64,
    b: &Broker,
    prefix: &str,
    expected: &BTreeMap<String, Vec<String>>,
    dir: &Path,
    what: &str,
) -> u64 {
    let code = exit_code(&mut second, Duration::from_secs(300), "restart");
    let err2 = second.stderr_text();
    assert_eq!(code, 0, "{err2}");
    assert!(second.says("restoring checkpoint"), "{err2}");
    let read_second = accounting(err2.as_bytes())["read"];
    assert!(
        read_first + read_second >= EVENTS && read_second < EVENTS,
        "read {read_first} then {read_second} of {EVENTS}"
    );
    assert_topics_equal_files(
        b,
        Some(prefix),
        &LOG_ANALYSES,
        &log_keys(),
        expected,
        dir,
        what,
    );
    read_second
}

#[test]
fn sigterm_mid_run_with_checkpoints_then_restart_equals_an_uninterrupted_run() {
    let dir = tmpdir("stop-eos");
    let (_port, b) = serial_broker("kafka-stop-eos");
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let spec = exactly_once_job(&b, "seos", &dir);
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    // That run kept checkpoints too (one worker): the Kafka runs start afresh.
    std::fs::remove_dir_all(dir.join("seos.ckpt")).unwrap();
    b.topic("seos-logs", 4);
    assert_eq!(b.produce("seos-logs", &logs), EVENTS);
    let addr = metrics_addr();
    let run = |extra: &[&str], name: &str| {
        let mut cmd = bin();
        cmd.args(["run", spec.to_str().unwrap(), "-w", "2"])
            .args(["--brokers", &b.address, "--topic", "seos-logs"])
            .args(extra);
        Proc::spawn(cmd, &dir, name, Stdio::null())
    };

    let mut first = run(&["--metrics-addr", &addr], "first");
    wait_read(&mut first, &addr, 100_000.0, Duration::from_secs(120));
    term(&first);
    let code = exit_code(&mut first, Duration::from_secs(30), "graceful stop");
    let err = first.stderr_text();
    assert_eq!(code, 0, "{err}");
    assert!(first.says("SIGTERM: stopping gracefully"), "{err}");
    let read_first = accounting(err.as_bytes())["read"];
    assert!(
        read_first < EVENTS,
        "the job had read everything before it was stopped: make the input larger\n{err}"
    );

    // The restart goes on from the final checkpoint and finishes; read_committed: every result
    // exactly once, as a run that never stopped wrote them.
    let second = run(&["--stop-at-end"], "second");
    let read_second = restart_equals_whole_run(
        second,
        read_first,
        &b,
        "seos",
        &expected,
        &dir,
        "stopped by SIGTERM, then restarted",
    );
    eprintln!(
        "stop: SIGTERM after {read_first} of {EVENTS} records, the restart read {read_second}"
    );
}

/// Two processes asked to stop at different moments (process 1 a checkpoint interval after
/// process 0, or not at all when it stopped already) stop after the same checkpoint: the one
/// whose manifest records the request. Both exit 0, and a restart writes exactly the results of
/// a run that never stopped.
#[test]
fn launch_stopped_one_process_at_a_time_stops_at_one_checkpoint_then_restart_equals_a_whole_run() {
    const EVENTS: u64 = 1_000_000;
    let dir = tmpdir("stop-launch-eos");
    let (_port, b) = serial_broker("kafka-stop-launch-eos");
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let spec = exactly_once_job(&b, "sleos", &dir);
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    let ckpt = dir.join("sleos.ckpt");
    std::fs::remove_dir_all(&ckpt).unwrap();
    b.topic("sleos-logs", 4);
    assert_eq!(b.produce("sleos-logs", &logs), EVENTS);
    let launch = |extra: &[&str], name: &str| {
        let mut cmd = bin();
        cmd.args(["launch", spec.to_str().unwrap(), "--processes", "2"])
            .args(["--brokers", &b.address, "--topic", "sleos-logs"])
            .args(extra);
        Proc::spawn(cmd, &dir, name, Stdio::null())
    };

    let mut first = launch(&[], "first");
    wait_for_count(&mut first, "runs workers", 2, Duration::from_secs(120));
    wait_for_checkpoints(&mut first, &ckpt, 2);
    let pids = latest_pids(&first.stderr_text(), 2);
    signal_all(&pids[..1], "-TERM");
    // More than a checkpoint interval (300 ms) later: a checkpoint completed in between, which
    // process 1 would otherwise take as the one before its own request.
    std::thread::sleep(Duration::from_millis(700));
    // Process 1 may have stopped already (with process 0): then the signal finds no process.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pids[1]])
        .stderr(Stdio::null())
        .status();
    let code = exit_code(&mut first, Duration::from_secs(60), "graceful stop");
    let err = first.stderr_text();
    assert_eq!(code, 0, "{err}");
    for p in 0..2 {
        assert!(
            first.says(&format!("process {p} finished (exit code 0)")),
            "{err}"
        );
    }
    let read_first = accounting(err.as_bytes())["read"];
    assert!(
        read_first < EVENTS,
        "the job had read everything before it was stopped: make the input larger\n{err}"
    );
    // One final checkpoint, recorded in its manifest; nothing was written after it.
    let last = complete(&ckpt).pop().unwrap();
    assert!(
        std::fs::read_dir(&last).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("STOP-")),
        "the newest checkpoint {} holds no stop request",
        last.display()
    );

    let second = launch(&["--stop-at-end"], "second");
    let read_second = restart_equals_whole_run(
        second,
        read_first,
        &b,
        "sleos",
        &expected,
        &dir,
        "two processes stopped one after the other, then restarted",
    );
    eprintln!(
        "stop: launch stopped after {read_first} of {EVENTS} records, the restart read {read_second}"
    );
}

/// A spec whose stop cannot finish: its progress follows the wall clock (`format = "text"`)
/// and its next checkpoint is an hour of it away.
fn stalled_spec(b: &Broker, dir: &Path) -> std::path::PathBuf {
    b.topic("stall-lines", 1);
    let spec = dir.join("stall.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"stall\"\n[source]\nkind = \"kafka\"\ntopic = \"stall-lines\"\n\
             format = \"text\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n\
             [[analysis]]\nname = \"lines\"\nwindow = {{ size = \"1m\" }}\n\
             select = [\"count() as n\"]\n",
            dir.join("stall.ckpt").display()
        ),
    )
    .unwrap();
    spec
}

#[test]
fn sigterm_without_checkpoints_flushes_the_sinks_and_a_second_signal_stops_at_once() {
    const EVENTS: u64 = 50_000;
    let dir = tmpdir("stop-files");
    let (_port, b) = serial_broker("kafka-stop-files");
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let spec = variant_spec("sfiles", "30s", &dir);
    let expected = file_results(spec.to_str().unwrap(), "json", &logs, &dir.join("file"));
    b.topic("sfiles-logs", 2);
    assert_eq!(b.produce("sfiles-logs", &logs), EVENTS);
    let addr = metrics_addr();
    // Only the analyses: dead letters and late events name their offsets, not file lines.
    let analyses = |out: &Path| {
        let mut r = dir_results(out);
        r.retain(|name, _| LOG_ANALYSES.contains(&name.as_str()));
        r
    };
    let mut want = expected.clone();
    want.retain(|name, _| LOG_ANALYSES.contains(&name.as_str()));

    // `run`, stopped once it read everything: the windows still open are emitted, and the
    // files hold exactly the results of the whole input, as whole JSON lines.
    let out = dir.join("run-out");
    let mut cmd = bin();
    cmd.args(["run", spec.to_str().unwrap(), "-w", "2"])
        .args(["--brokers", &b.address, "--topic", "sfiles-logs"])
        .args([
            "--output-dir",
            out.to_str().unwrap(),
            "--metrics-addr",
            &addr,
        ]);
    let mut job = Proc::spawn(cmd, &dir, "run", Stdio::null());
    wait_read(&mut job, &addr, EVENTS as f64, Duration::from_secs(120));
    term(&job);
    let code = exit_code(&mut job, Duration::from_secs(30), "run");
    let err = job.stderr_text();
    assert_eq!(code, 0, "{err}");
    assert_eq!(accounting(err.as_bytes())["read"], EVENTS, "{err}");
    assert_same_results(&analyses(&out), &want, "run stopped by SIGTERM");

    // `launch` passes the signal on; both processes stop the same way and exit 0.
    let out = dir.join("launch-out");
    let mut cmd = bin();
    cmd.args(["launch", spec.to_str().unwrap(), "--processes", "2"])
        .args(["--brokers", &b.address, "--topic", "sfiles-logs"])
        .args(["--output-dir", out.to_str().unwrap()]);
    let mut launch = Proc::spawn(cmd, &dir, "launch", Stdio::null());
    let started = Instant::now();
    while messages(&launch.stderr_text())
        .filter(|m| m.contains("runs workers"))
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            launch.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // 50k records take well under a second to read; the processes have all of them then.
    std::thread::sleep(Duration::from_secs(5));
    term(&launch);
    let code = exit_code(&mut launch, Duration::from_secs(30), "launch");
    let err = launch.stderr_text();
    assert_eq!(code, 0, "{err}");
    for p in 0..2 {
        assert!(
            launch.says(&format!("process {p} finished (exit code 0)")),
            "{err}"
        );
    }
    assert_eq!(accounting(err.as_bytes())["read"], EVENTS, "{err}");
    assert_same_results(&analyses(&out), &want, "launch stopped by SIGTERM");

    // A stop that cannot finish (its next checkpoint never comes): a second SIGTERM ends it
    // at once, and --stop-timeout ends it naming what did not finish.
    let stall = stalled_spec(&b, &dir);
    let stalled = |extra: &[&str], name: &str| {
        let mut cmd = bin();
        cmd.args(["run", stall.to_str().unwrap(), "--brokers", &b.address])
            .args(["--output-dir", dir.join(name).to_str().unwrap()])
            .args(extra);
        let mut job = Proc::spawn(cmd, &dir, name, Stdio::null());
        job.wait_for("runs workers", Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(1));
        job
    };
    let mut job = stalled(&[], "twice");
    term(&job);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        job.child.try_wait().unwrap().is_none(),
        "the stop finished without its checkpoint:\n{}",
        job.stderr_text()
    );
    let asked = Instant::now();
    term(&job);
    let code = exit_code(&mut job, Duration::from_secs(5), "second SIGTERM");
    assert_eq!(code, 1, "{}", job.stderr_text());
    assert!(asked.elapsed() < Duration::from_secs(3));
    assert!(
        job.says("SIGTERM again: stopping at once"),
        "{}",
        job.stderr_text()
    );

    let mut job = stalled(&["--stop-timeout", "1s"], "timeout");
    let asked = Instant::now();
    term(&job);
    let code = exit_code(&mut job, Duration::from_secs(10), "stop timeout");
    let err = job.stderr_text();
    assert_eq!(code, 1, "{err}");
    assert!(asked.elapsed() >= Duration::from_secs(1), "{err}");
    assert!(
        job.says("the graceful stop did not finish within 1s: no checkpoint completed"),
        "{err}"
    );
}

/// A run that lingers for a last scrape (`--linger`) has nothing left to stop: SIGTERM ends
/// the linger at once, with exit 0 (not after the stop timeout, with exit 1).
#[test]
fn sigterm_during_linger_ends_it_at_once_with_exit_0() {
    const EVENTS: u64 = 2_000;
    let dir = tmpdir("stop-linger");
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let mut cmd = bin();
    cmd.args(["run", "dataflows/log-analysis.toml", "-w", "2"])
        .args(["--input", logs.to_str().unwrap()])
        .args(["--output-dir", dir.join("out").to_str().unwrap()])
        // Port 0: no other test's port; nothing scrapes it, so the linger lasts its minute.
        .args(["--metrics-addr", "127.0.0.1:0", "--linger", "60s"]);
    let mut job = Proc::spawn(cmd, &dir, "linger", Stdio::null());
    job.wait_for("finished in", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        job.child.try_wait().unwrap().is_none(),
        "not lingering:\n{}",
        job.stderr_text()
    );
    let asked = Instant::now();
    term(&job);
    let code = exit_code(
        &mut job,
        Duration::from_secs(10),
        "SIGTERM during the linger",
    );
    let err = job.stderr_text();
    assert_eq!(code, 0, "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the linger ended {:?} after SIGTERM:\n{err}",
        asked.elapsed()
    );
    assert!(
        job.says("SIGTERM: the job has ended: no longer lingering"),
        "{err}"
    );
    assert_eq!(accounting(err.as_bytes())["read"], EVENTS, "{err}");
}
