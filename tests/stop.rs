//! Graceful stop (docs/operations.md#stopping-a-job) on a real Kafka broker (`scripts/kafka`):
//! SIGTERM mid-run of an exactly-once job with checkpoints exits 0 and a restart writes exactly
//! the results of a run that never stopped; without checkpoints the sinks are flushed (as at the
//! end of a bounded input) by `run` and by `launch`; a second signal or `--stop-timeout` ends a
//! stop that cannot finish, with exit 1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Proc;
use common::kafka::{
    assert_topics_equal_files, exactly_once_job, file_results, gen, log_keys, serial_broker,
    variant_spec, Broker, LOG_ANALYSES,
};
use common::prometheus::port;
use common::recovery::signal_all;
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

#[test]
fn sigterm_mid_run_with_checkpoints_then_restart_equals_an_uninterrupted_run() {
    // Large enough that the job is still reading when it is told to stop (see tests/recovery.rs).
    const EVENTS: u64 = 1_000_000;
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

    // The restart goes on from the final checkpoint and finishes.
    let mut second = run(&["--stop-at-end"], "second");
    let code = exit_code(&mut second, Duration::from_secs(300), "restart");
    let err2 = second.stderr_text();
    assert_eq!(code, 0, "{err2}");
    assert!(second.says("restoring checkpoint"), "{err2}");
    let read_second = accounting(err2.as_bytes())["read"];
    assert!(
        read_first + read_second >= EVENTS && read_second < EVENTS,
        "read {read_first} then {read_second} of {EVENTS}"
    );
    // read_committed: every result exactly once, as a run that never stopped wrote them.
    assert_topics_equal_files(
        &b,
        Some("seos"),
        &LOG_ANALYSES,
        &log_keys(),
        &expected,
        &dir,
        "stopped by SIGTERM, then restarted",
    );
    eprintln!(
        "stop: SIGTERM after {read_first} of {EVENTS} records, the restart read {read_second}"
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
