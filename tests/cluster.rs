//! Workers sharded across processes on one host: results do not depend on the layout
//! (1×1, 1×2, 2×1 and 2×2 processes × workers give the same rows per analysis, from a file
//! and from a 4-partition Kafka topic on a real broker), a peer that never comes is named
//! after `--peer-timeout`, a peer lost mid-run stops the others, naming it, and
//! `launch --restart` starts the whole job again after one is killed.
//! (Several hosts: `tests/netns.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{assert_loss_is_named, hostfile, local_addresses, Proc};
use common::kafka::{
    assert_side_outputs, assert_topics_equal_files, create_outputs, file_results, finish, gen,
    log_keys, variant_spec, Broker, LOG_ANALYSES,
};
use common::oracle::{self, Reference};
use common::rows::{assert_same_results, dir_results};
use common::{accounting, bin, tmpdir};

/// (processes, workers per process); the first is the reference.
const LAYOUTS: [(usize, usize); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];
const EVENTS: u64 = 200_000;

/// `logflow run` for one process, `logflow launch` for several; `args` are the job flags.
fn start(spec: &Path, (processes, workers): (usize, usize), args: &[&str]) -> Child {
    let mut cmd = bin();
    if processes == 1 {
        cmd.arg("run").arg(spec).args(["-w", &workers.to_string()]);
    } else {
        cmd.arg("launch").arg(spec).args([
            "--processes",
            &processes.to_string(),
            "--workers",
            &workers.to_string(),
        ]);
    }
    cmd.args(args).stderr(Stdio::piped()).spawn().unwrap()
}

fn logs(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("logs.jsonl");
    gen(
        "logs",
        &EVENTS.to_string(),
        &["--late-fraction", "0.002"],
        &path,
    );
    path
}

#[test]
fn layouts_give_the_same_results_from_a_file() {
    let dir = tmpdir("cluster-file");
    let input = logs(&dir);
    let spec = common::repo().join("dataflows/log-analysis.toml");
    let oracle = Reference::new(&oracle::log_analysis(), &input);
    let mut reference = None;
    for layout in LAYOUTS {
        let what = format!("file, {}x{}", layout.0, layout.1);
        let out = dir.join(format!("{}x{}", layout.0, layout.1));
        let started = Instant::now();
        let err = finish(
            start(
                &spec,
                layout,
                &[
                    "--input",
                    input.to_str().unwrap(),
                    "--output-dir",
                    out.to_str().unwrap(),
                ],
            ),
            Duration::from_secs(240),
        );
        eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
        let text = String::from_utf8_lossy(&err);
        // Process 0 reads the file (its workers in turns when it has several), and only
        // process 0 writes the outputs.
        let reads = match layout.1 {
            1 => format!(
                "worker 0 (process 0) reads {} (its only partition)",
                input.display()
            ),
            w => format!(
                "workers 0..={} (process 0) read {} in turns",
                w - 1,
                input.display()
            ),
        };
        assert!(text.contains(&reads), "{what}: {text}");
        let acc = accounting(&err);
        assert_eq!(acc["read"], EVENTS, "{what}");
        assert!(acc["late"] > 0 && acc["dead_letter"] > 0, "{what}: {acc:?}");
        // Every layout against the independent answer too, not only against the first.
        oracle.assert_matches(&out, "log-analysis");
        let results = dir_results(&out);
        match &reference {
            None => reference = Some(results),
            Some(r) => assert_same_results(&results, r, &what),
        }
    }
}

#[test]
fn layouts_give_the_same_results_from_kafka() {
    let dir = tmpdir("cluster-kafka");
    let input = logs(&dir);
    let expected = file_results(
        "dataflows/log-analysis.toml",
        "json",
        &input,
        &dir.join("file"),
    );
    Reference::new(&oracle::log_analysis(), &input)
        .assert_matches(&dir.join("file"), "log-analysis");
    let b = Broker::start("kafka-cluster");
    b.topic("logs", 4);
    assert_eq!(b.produce("logs", &input), EVENTS);
    for layout in LAYOUTS {
        let job = format!("l{}x{}", layout.0, layout.1);
        let what = format!("kafka, {}x{}", layout.0, layout.1);
        let spec = variant_spec(&job, "30s", &dir);
        create_outputs(&b, &job, Some(&job), &LOG_ANALYSES);
        let started = Instant::now();
        let err = finish(
            start(
                &spec,
                layout,
                &["--brokers", &b.address, "--topic", "logs", "--stop-at-end"],
            ),
            Duration::from_secs(300),
        );
        eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
        // Partition i belongs to worker i % workers, over all processes.
        let text = String::from_utf8_lossy(&err);
        let workers = layout.0 * layout.1;
        for w in 0..workers {
            let owned: Vec<usize> = (0..4).filter(|p| p % workers == w).collect();
            let line = format!(
                "worker {w} (process {}) reads logs partitions {owned:?}",
                w / layout.1
            );
            assert!(text.contains(&line), "{what}: no {line:?} in\n{text}");
        }
        assert_eq!(accounting(&err)["read"], EVENTS, "{what}");
        assert_topics_equal_files(
            &b,
            Some(&job),
            &LOG_ANALYSES,
            &log_keys(),
            &expected,
            &dir,
            &what,
        );
        assert_side_outputs(&b, &job, "log-analysis", &expected, &dir, &what);
    }
}

#[test]
fn a_peer_that_never_comes_is_named() {
    let dir = tmpdir("cluster-timeout");
    let addresses = local_addresses(2);
    let hosts = hostfile(&dir, &addresses);
    let input = dir.join("small.jsonl");
    gen("logs", "1000", &[], &input);
    let mut cmd = bin();
    cmd.args(["run", "dataflows/log-analysis.toml", "--input"])
        .arg(&input)
        .args(["-n", "2", "-p", "0", "-h"])
        .arg(&hosts)
        .args(["--peer-timeout", "1500ms", "--output-dir"])
        .arg(dir.join("out"));
    let started = Instant::now();
    let mut p = Proc::spawn(cmd, &dir, "p0", Stdio::null());
    // (A deadline for a hang only: the timeout it applied is in its message.)
    let status = p.wait(Duration::from_secs(120)).expect("process 0 hung");
    let err = p.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("process 1 ({})", addresses[1])),
        "the missing peer is not named: {err}"
    );
    assert!(
        err.contains("timed out after 1.5s"),
        "not the given timeout: {err}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_lost_peer_stops_the_others() {
    let dir = tmpdir("cluster-lost");
    let addresses = local_addresses(3);
    let hosts = hostfile(&dir, &addresses);
    // Process 0 reads stdin, held open by this test: the job runs until a process is lost.
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            let mut cmd = bin();
            cmd.args(["run", "dataflows/log-analysis.toml", "--input", "-"])
                .args(["-n", "3", "-p", &i.to_string(), "-h"])
                .arg(&hosts)
                .args(["--peer-timeout", "20s", "--output-dir"])
                .arg(dir.join("out"));
            let stdin = if i == 0 {
                Stdio::piped()
            } else {
                Stdio::null()
            };
            Proc::spawn(cmd, &dir, &format!("p{i}"), stdin)
        })
        .collect();
    for p in procs.iter_mut() {
        p.wait_for("connected to its peers", Duration::from_secs(30));
    }
    // Its connections close at once; the limit is a deadline for a hang only (the 20 s peer
    // timeout is not what stops them: that would be a silent peer, tested below).
    assert_loss_is_named(&mut procs, 2, &addresses[2], Duration::from_secs(60));
    for (i, p) in procs.iter().enumerate().take(2) {
        let err = p.stderr_text();
        assert!(
            !err.contains("no heartbeat"),
            "process {i} noticed the loss by the timeout, not the closed connection:\n{err}"
        );
    }
}

#[test]
fn a_silent_peer_is_given_up_after_the_timeout() {
    let dir = tmpdir("cluster-silent");
    let addresses = local_addresses(2);
    let hosts = hostfile(&dir, &addresses);
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = bin();
            cmd.args(["run", "dataflows/log-analysis.toml", "--input", "-"])
                .args(["-n", "2", "-p", &i.to_string(), "-h"])
                .arg(&hosts)
                .args(["--peer-timeout", "2s", "--output-dir"])
                .arg(dir.join("out"));
            let stdin = if i == 0 {
                Stdio::piped()
            } else {
                Stdio::null()
            };
            Proc::spawn(cmd, &dir, &format!("p{i}"), stdin)
        })
        .collect();
    for p in procs.iter_mut() {
        p.wait_for("connected to its peers", Duration::from_secs(30));
    }
    // A stopped process keeps its connections open: only the missing heartbeats tell.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &procs[1].child.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let started = Instant::now();
    // (A deadline for a hang only: the message names the timeout applied.)
    let status = procs[0].wait(Duration::from_secs(120));
    let err = procs[0].stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "lost process 1 ({}): no heartbeat for 2s",
            addresses[1]
        )),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "too early"
    );
}

#[test]
fn launch_restarts_the_job_when_a_process_is_killed() {
    let dir = tmpdir("cluster-restart");
    let input = logs(&dir);
    let reference = dir.join("reference");
    common::run_file("dataflows/log-analysis.toml", &input, &reference, "1");
    Reference::new(&oracle::log_analysis(), &input).assert_matches(&reference, "log-analysis");
    let out = dir.join("out");
    let mut cmd = bin();
    cmd.args(["launch", "dataflows/log-analysis.toml", "--processes", "2"])
        .args(["--restart", "3", "--input"])
        .arg(&input)
        .arg("--output-dir")
        .arg(&out);
    let mut launch = Proc::spawn(cmd, &dir, "launch", Stdio::null());
    // Killed once connected: process 0 has not finished reading (it waits for its peers).
    launch.wait_for(
        "[process 1] logflow: process 1 of 2 connected",
        Duration::from_secs(60),
    );
    let err = launch.stderr_text();
    let pid = common::messages(&err)
        .find_map(|l| l.strip_prefix("logflow launch: process 1 is pid "))
        .expect("the launcher names its processes' pids")
        .trim()
        .to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = launch.wait(Duration::from_secs(180));
    let err = launch.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{err}");
    assert!(err.contains("process 1 was stopped by SIGKILL"), "{err}");
    assert!(err.contains("(restart 1 of 3)"), "{err}");
    assert!(!err.contains("(restart 2 of 3)"), "{err}");
    assert_eq!(accounting(err.as_bytes())["read"], EVENTS);
    assert_same_results(
        &dir_results(&out),
        &dir_results(&reference),
        "restarted after a kill",
    );
}
