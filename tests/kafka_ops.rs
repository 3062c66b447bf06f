//! Operating Kafka jobs (docs/operations.md) on a real broker (`scripts/kafka`): consumer
//! groups (a job commits the offsets it has read as group `logflow-<job>`, so standard tools
//! see its lag, and `start = "stored"` starts there; offsets read by the independent Python
//! client), `/health` and `/ready`, and the lag metric.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use logflow::gen::Kind;

use common::cluster::{hostfile, local_addresses, Proc};
use common::kafka::{gen, serial_broker, variant_spec, Broker};
use common::oracle::input::{read_events, Input};
use common::prometheus::port;
use common::{accounting, bin, http_get, messages, metric_sum, tmpdir};

fn offsets(b: &Broker, group: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    b.group_offsets(group, topic)
}

/// `run SPEC --stop-at-end` into files; returns (records read, stderr).
fn run(b: &Broker, spec: &Path, out: &Path) -> (u64, String) {
    let o = b.run_to_end(spec, &["--output-dir", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    (accounting(err.as_bytes())["read"], err)
}

fn assert_committed_at_end(offsets: &BTreeMap<i32, (i64, i64)>, what: &str) {
    assert_eq!(offsets.len(), 2, "{what}: {offsets:?}");
    for (p, (end, committed)) in offsets {
        assert!(*end > 0, "{what}: partition {p} is empty: {offsets:?}");
        assert_eq!(committed, end, "{what}: partition {p}: {offsets:?}");
    }
}

#[test]
fn a_job_commits_its_offsets_and_stored_starts_there() {
    const EVENTS: u64 = 20_000;
    const MORE: u64 = 5_000;
    let dir = tmpdir("groups");
    let (_port, b) = serial_broker("kafka-groups");
    b.topic("grp-logs", 2);
    let logs = dir.join("logs.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    assert_eq!(b.produce("grp-logs", &logs), EVENTS);
    let spec = variant_spec("grp", "30s", &dir);
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "[source]\n",
        "[source]\nstart = \"stored\"\n",
        1,
    );
    let text = text.replacen("topic = \"logs\"", "topic = \"grp-logs\"", 1);
    std::fs::write(&spec, text).unwrap();
    assert!(offsets(&b, "logflow-grp", "grp-logs")
        .values()
        .all(|(_, c)| *c == -1));

    // No committed offsets yet: from the start; then every offset read is committed.
    let (read, err) = run(&b, &spec, &dir.join("first"));
    assert_eq!(read, EVENTS, "{err}");
    assert!(
        messages(&err).any(|m| m.contains("no offset committed by group logflow-grp")),
        "{err}"
    );
    assert_committed_at_end(&offsets(&b, "logflow-grp", "grp-logs"), "first run");

    // Again: nothing old is read.
    let (read, err) = run(&b, &spec, &dir.join("second"));
    assert_eq!(read, 0, "{err}");
    assert!(
        messages(&err).any(|m| m.contains("at the offset group logflow-grp committed")),
        "{err}"
    );

    // After more records arrived: exactly those.
    let more = dir.join("more.jsonl");
    gen("logs", &MORE.to_string(), &["--seed", "7"], &more);
    assert_eq!(b.produce("grp-logs", &more), MORE);
    let (read, err) = run(&b, &spec, &dir.join("third"));
    assert_eq!(read, MORE, "{err}");
    let after = offsets(&b, "logflow-grp", "grp-logs");
    assert_committed_at_end(&after, "third run");
    assert_eq!(
        after.values().map(|(e, _)| *e as u64).sum::<u64>(),
        EVENTS + MORE
    );
}

/// Milliseconds of an RFC 3339 time.
fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_millis()
}

/// The rows of an output directory whose lines parse (a SIGKILL may cut the last one), per
/// file.
fn rows_written(dir: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut rows = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let parsed = text.lines().filter_map(|l| serde_json::from_str(l).ok());
        rows.insert(name, parsed.collect());
    }
    rows
}

/// Without checkpoints, a running job commits the positions whose results its sinks have
/// written: after a SIGKILL, every window that any record before the committed offsets falls
/// in is in the output exactly as an uninterrupted run writes it, the windows still open at
/// the end of the input keep the group short of the end, and a `start = "stored"` run reads
/// exactly the records after the committed offsets.
#[test]
fn without_checkpoints_the_group_commits_what_the_sinks_have_written() {
    const EVENTS: u64 = 150_000;
    let dir = tmpdir("groups-acked");
    let (_port, b) = serial_broker("kafka-groups-acked");
    b.topic("acked-logs", 2);
    // One file per partition, so that an offset is a line: 150,000 events at 20 a second
    // each, 125 minutes of event time against the job's 15-minute horizon (5-minute windows
    // with a 10-minute delay). A worker reads at most 65,536 records an activation and samples
    // positions between activations: the backlog is read in several, so samples fall well
    // inside the committable part whatever the machine's speed.
    let mut inputs = Vec::new();
    for p in 0..2u32 {
        let file = dir.join(format!("p{p}.jsonl"));
        let seed = (p + 1).to_string();
        gen(
            "logs",
            &EVENTS.to_string(),
            &["--event-rate", "20", "--seed", &seed],
            &file,
        );
        assert_eq!(b.produce_to("acked-logs", &file, p), EVENTS);
        inputs.push(Input::read(&file, Kind::Logs));
    }
    let spec = variant_spec("acked", "2s", &dir);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replacen("[source]\n", "[source]\nstart = \"stored\"\n", 1)
        .replacen("topic = \"logs\"", "topic = \"acked-logs\"", 1);
    std::fs::write(&spec, text).unwrap();

    // The uninterrupted run, as another group.
    let whole = dir.join("whole.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &whole,
        text.replacen("name = \"acked\"", "name = \"acked-whole\"", 1),
    )
    .unwrap();
    let (read, err) = run(&b, &whole, &dir.join("whole"));
    assert_eq!(read, 2 * EVENTS, "{err}");
    let want = rows_written(&dir.join("whole"));

    let out = dir.join("out");
    let mut cmd = bin();
    cmd.args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
        .args(["--output-dir", out.to_str().unwrap()]);
    let mut job = Proc::spawn(cmd, &dir, "job", Stdio::null());
    // Commits come while the job runs and stop short of the end: the last windows stay open.
    let started = Instant::now();
    let mut last = BTreeMap::new();
    loop {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "{}",
            job.stderr_text()
        );
        let now = offsets(&b, "logflow-acked", "acked-logs");
        let committed: Vec<i64> = now.values().map(|(_, c)| *c).collect();
        if committed.iter().all(|c| *c > 0) && now == last {
            break; // caught up: committed, and nothing more for a while
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "committed offsets {now:?}:\n{}",
            job.stderr_text()
        );
        last = now;
        std::thread::sleep(Duration::from_secs(3));
    }
    let _ = job.child.kill();
    let _ = job.child.wait();
    let committed = offsets(&b, "logflow-acked", "acked-logs");
    for (p, (end, c)) in &committed {
        assert!(
            *c > 0 && *c < *end,
            "partition {p}: committed {c} of {end}: the windows of the last 15 minutes are open"
        );
    }

    // The latest event time among the records before the committed offsets (record `o` of a
    // partition is line `o + 1` of its file; dead letters have no time, by the oracle's own
    // reading): every window ending by then holds only records whose results were
    // acknowledged.
    let upto = committed
        .iter()
        .flat_map(|(p, (_, c))| {
            let events = read_events(&inputs[*p as usize]);
            events.into_iter().filter(move |e| e.line as i64 <= *c)
        })
        .map(|e| e.ts)
        .max()
        .unwrap();
    let got = rows_written(&out);
    let mut covered = 0;
    for (file, rows) in &want {
        for row in rows {
            let Some(end) = row["window_end"].as_str() else {
                continue; // dead letters and late events: at least once, not per window
            };
            if ms(end) <= upto {
                covered += 1;
                // `<job>.alerts` of the other job name.
                let mine = file.replacen("acked-whole.", "acked.", 1);
                let have = got.get(&mine).is_some_and(|g| g.contains(row));
                assert!(
                    have,
                    "{file}: {row} is missing after the commit covering it"
                );
            }
        }
    }
    assert!(covered > 1000, "{covered} rows covered by the commit");
    eprintln!("committed {committed:?}: {covered} rows covered");

    // Restarted from the group: exactly the records after the committed offsets.
    let (read, err) = run(&b, &spec, &dir.join("after"));
    let rest: i64 = committed.values().map(|(end, c)| end - c).sum();
    assert_eq!(read as i64, rest, "{err}");
    assert_committed_at_end(
        &offsets(&b, "logflow-acked", "acked-logs"),
        "after the restart",
    );
}

/// A copy of the log-analysis spec as job `job` reading `topic`, printing its results.
fn console_spec(job: &str, topic: &str, dir: &Path) -> std::path::PathBuf {
    let spec = variant_spec(job, "30s", dir);
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "topic = \"logs\"",
        &format!("topic = \"{topic}\""),
        1,
    ) + "\n[sink]\nkind = \"console\"\n";
    std::fs::write(&spec, text).unwrap();
    spec
}

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code, v)
}

#[test]
fn ready_after_assignment_and_lag_is_end_minus_position() {
    const EVENTS: u64 = 200_000;
    let dir = tmpdir("kafka-ops-ready");
    let (_port, b) = serial_broker("kafka-ops-ready");
    b.topic("ready-logs", 1);
    let logs = dir.join("logs.jsonl");
    // No bad or late lines: the job's stdout fills with window results, not dead letters
    // written before any window's partials reached its merge.
    let clean = ["--bad-fraction", "0", "--late-fraction", "0"];
    gen("logs", &EVENTS.to_string(), &clean, &logs);
    assert_eq!(b.produce("ready-logs", &logs), EVENTS);
    let addr = format!("127.0.0.1:{}", port("LOGFLOW_IT_METRICS_PORT", 19798));
    let spec = console_spec("ready", "ready-logs", &dir);

    // Process 0 of 2, its peer not started: live, not ready, naming what it waits for.
    let hosts = hostfile(&dir, &local_addresses(2));
    let proc_cmd = |p: &str, extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
            .args(["-n", "2", "-p", p, "-h", hosts.to_str().unwrap()])
            .args([
                "--stop-at-end",
                "--output-dir",
                dir.join("out").to_str().unwrap(),
            ])
            .args(extra);
        cmd
    };
    let mut p0 = Proc::spawn(
        proc_cmd("0", &["--metrics-addr", &addr]),
        &dir,
        "p0",
        Stdio::null(),
    );
    let started = Instant::now();
    let (code, body) = loop {
        if let Some((code, _)) = http_get(&addr, "/health") {
            assert_eq!(code, 200);
            break get(&addr, "/ready");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            p0.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let missing: Vec<&str> = body["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(missing, ["peers", "sinks", "consumers"], "{body}");
    // Its peer comes: connected, sinks open, partitions assigned.
    let mut p1 = Proc::spawn(proc_cmd("1", &[]), &dir, "p1", Stdio::null());
    let started = Instant::now();
    loop {
        let (code, body) = get(&addr, "/ready");
        if code == 200 {
            assert_eq!(body["ready"], true, "{body}");
            assert_eq!(body["missing"], serde_json::json!([]), "{body}");
            break;
        }
        assert_eq!(code, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            p0.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        p0.says("reads ready-logs partitions [0]"),
        "{}",
        p0.stderr_text()
    );
    for p in [&mut p0, &mut p1] {
        let status = p.wait(Duration::from_secs(120));
        assert!(status.is_some_and(|s| s.success()), "{}", p.stderr_text());
    }

    // Lag: a job whose results nobody reads (stdout a full pipe) stops reading mid-topic; its
    // lag is then exactly the end offset minus the records it read (from offset 0).
    // A Proc: killed when the test fails, so it holds the metrics port no longer.
    let stderr = dir.join("lag.err");
    let child = bin()
        .args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
        .args(["--metrics-addr", &addr])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut job = Proc { child, stderr };
    let started = Instant::now();
    let mut last: Option<(f64, f64)> = None;
    let (read, lag) = loop {
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "the job ended: {}",
            job.stderr_text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never stable: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let Some((200, text)) = http_get(&addr, "/metrics") else {
            continue;
        };
        if !text.contains("logflow_partition_lag_records{") {
            continue;
        }
        let now = (
            metric_sum(&text, "logflow_records_read_total"),
            metric_sum(&text, "logflow_partition_lag_records"),
        );
        // Blocked (the same reading twice, a refresh of the end offset apart).
        if last == Some(now) && now.0 > 0.0 {
            // Its windows hold state meanwhile, and say how much.
            let keys = metric_sum(&text, "logflow_state_keys");
            let bytes = metric_sum(&text, "logflow_state_bytes");
            assert!(
                keys > 0.0 && bytes > keys,
                "state keys {keys}, bytes {bytes}\n{text}"
            );
            assert!(
                text.contains("logflow_state_keys{analysis=\"response_time\"}"),
                "{text}"
            );
            // The lag is labelled with the Kafka topic the partition belongs to.
            assert!(
                text.contains(
                    "logflow_partition_lag_records{topic=\"ready-logs\",partition=\"0\"}"
                ),
                "{text}"
            );
            break now;
        }
        last = Some(now);
    };
    drop(job);
    let end = offsets(&b, "logflow-ready", "ready-logs")[&0].0;
    assert_eq!(end as u64, EVENTS);
    assert!(read < EVENTS as f64, "the job read everything: {read}");
    assert_eq!(lag, end as f64 - read, "lag {lag}, end {end}, read {read}");
}
