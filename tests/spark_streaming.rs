//! The Spark streaming tutorial's examples (`dataflows/examples/spark-*.toml`), each run by the
//! real binary on crafted input, its output checked exactly against a computation written here:
//! the socket source fed over 127.0.0.1 by the test, the directory source with files added while
//! the job runs, the reference table of the join rewritten mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::kafka::finish;
use common::spark::{
    crafted_logs, drop_file, example_copy, log, spawn_in, wait_row, word_counts, write_logs, Log,
    StderrWatch, T0,
};
use common::{accounting, bin, read_jsonl, repo, rfc3339, run_file, starts, tmpdir};
use serde_json::{json, Value};

#[test]
fn word_count_over_a_socket_in_complete_and_update_mode() {
    let dir = tmpdir("spark-word-count");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let spec = example_copy(
        "spark-word-count.toml",
        &dir,
        &[("port = 9999", &format!("port = {port}"))],
    );
    let child = spawn_in(&dir, &spec);
    let (mut conn, _) = server.accept().unwrap();
    // Three batches, each sent more than one trigger (1 s) after the previous.
    let batches: [&[&str]; 3] = [
        &["the cat sat", "on the  mat"],
        &["the dog", "", "a cat and a hat"],
        &["THE end the"],
    ];
    let mut sent: Vec<&str> = Vec::new();
    for b in batches {
        for l in b {
            conn.write_all(format!("{l}\n").as_bytes()).unwrap();
            sent.push(l);
        }
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    drop(conn); // the server closes: the input ends, and the job with it
    let stderr = finish(child, Duration::from_secs(60));
    let acc = accounting(&stderr);
    assert_eq!(acc["read"], 5, "the empty line is not a record");
    assert_eq!(acc["dead_letter"], 0);

    // Complete mode: at each trigger the whole table of the lines read so far. Lines arrive
    // in order, so every table is the count of some prefix of the input, growing.
    let file = dir.join("out/word_counts.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().all(|l| l.starts_with("{\"as_of\":\"")),
        "{text}"
    );
    let rows = read_jsonl(&file);
    let mut tables: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.as_object().unwrap().len(), 3, "{r}");
        tables
            .entry(r["as_of"].as_str().unwrap().to_string())
            .or_default()
            .insert(
                r["word"].as_str().unwrap().to_string(),
                r["count"].as_i64().unwrap(),
            );
    }
    assert!(
        tables.len() >= 2,
        "one table per trigger with new lines: {tables:?}"
    );
    let mut last_prefix = 0;
    for (as_of, table) in &tables {
        assert!(
            !as_of.contains('.'),
            "{as_of}: triggers fall on whole seconds"
        );
        let prefix = (1..=sent.len())
            .find(|&k| word_counts(&sent[..k]) == *table)
            .unwrap_or_else(|| panic!("table at {as_of} is no prefix of the input: {table:?}"));
        assert!(prefix >= last_prefix);
        last_prefix = prefix;
    }
    let all = word_counts(&sent);
    assert_eq!(
        tables.values().last().unwrap(),
        &all,
        "the last table counts every word"
    );

    // Update mode: a row per word whose count changed, the counts rising to the totals.
    let file = dir.join("out/word_updates.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().all(|l| l.starts_with("{\"word\":")), "{text}");
    let rows = read_jsonl(&file);
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.as_object().unwrap().len(), 2, "{r}");
        seen.entry(r["word"].as_str().unwrap().to_string())
            .or_default()
            .push(r["count"].as_i64().unwrap());
    }
    let last: BTreeMap<String, i64> = seen
        .iter()
        .map(|(w, c)| (w.clone(), *c.last().unwrap()))
        .collect();
    assert_eq!(last, all);
    for (w, counts) in &seen {
        assert!(counts.windows(2).all(|p| p[0] < p[1]), "{w}: {counts:?}");
    }
    // `the` is in every batch: it changed at every trigger that had new lines.
    assert_eq!(seen["the"].len(), tables.len());
}

#[test]
fn running_count_per_key_is_updated_at_each_trigger() {
    let dir = tmpdir("spark-running-count");
    let logs = crafted_logs(400);
    let input = dir.join("logs.jsonl");
    write_logs(&input, &logs);
    let out = dir.join("out");
    run_file(
        "dataflows/examples/spark-running-count.toml",
        &input,
        &out,
        "2",
    );

    // An event is counted at the trigger (1 min) of the event-time progress read before it:
    // the largest earlier event time, rounded down to the minute (0 for the first event).
    let mut expected: Vec<Value> = Vec::new();
    let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut progress: Option<i64> = None;
    let mut epochs: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, (ts, ..)) in logs.iter().enumerate() {
        let t = progress.map_or(0, |m| m - m.rem_euclid(60_000));
        epochs.entry(t).or_default().push(i);
        progress = Some(progress.map_or(*ts, |m| m.max(*ts)));
    }
    for idx in epochs.values() {
        let mut changed = std::collections::BTreeSet::new();
        for &i in idx {
            let (_, s, status, _) = logs[i];
            let e = totals.entry(s).or_default();
            e.0 += 1;
            e.1 += (status >= 500) as i64;
            changed.insert(s);
        }
        for s in changed {
            let (n, errors) = totals[s];
            expected.push(json!({"service": s, "requests": n, "server_errors": errors}));
        }
    }
    assert!(epochs.len() >= 4, "several triggers");
    let got = read_jsonl(&out.join("running_counts.jsonl"));
    assert_eq!(got, expected);
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[test]
fn sliding_window_count_matches_a_batch_computation() {
    let dir = tmpdir("spark-sliding-count");
    let logs = crafted_logs(500);
    let input = dir.join("logs.jsonl");
    write_logs(&input, &logs);
    for workers in ["1", "2"] {
        let out = dir.join(format!("out-{workers}"));
        let res = run_file(
            "dataflows/examples/spark-sliding-count.toml",
            &input,
            &out,
            workers,
        );
        assert_eq!(
            accounting(&res.stderr)["on_time"],
            500,
            "disorder stays below the delay"
        );
        let mut g: BTreeMap<(i64, &str), i64> = BTreeMap::new();
        for (ts, s, ..) in &logs {
            for st in starts(*ts, 30_000, 10_000) {
                *g.entry((st, s)).or_default() += 1;
            }
        }
        let want: Vec<Value> = g
            .into_iter()
            .map(|((st, s), n)| {
                json!({"window_start": rfc3339(st), "window_end": rfc3339(st + 30_000),
                       "service": s, "requests": n})
            })
            .collect();
        let got = read_jsonl(&out.join("sliding_counts.jsonl"));
        assert_eq!(sorted(got), sorted(want), "-w {workers}");
    }
}

/// error_rate_by_team and blocklisted_requests rows for events with their team mapping.
fn join_expected(events: &[(Log, &str)]) -> (Vec<Value>, Vec<Value>) {
    let blocklist = BTreeMap::from([("10.0.0.66", "scanner"), ("10.0.0.99", "botnet")]);
    let mut by_team: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
    let mut blocked: BTreeMap<(i64, &str, &str), (i64, std::collections::BTreeSet<&str>)> =
        BTreeMap::new();
    for ((ts, service, status, ip), team) in events {
        let start = ts - ts.rem_euclid(60_000);
        let e = by_team.entry((start, team)).or_default();
        e.0 += 1;
        e.1 += (*status >= 400) as i64;
        if let Some(label) = blocklist.get(ip) {
            let b = blocked.entry((start, label, ip)).or_default();
            b.0 += 1;
            b.1.insert(service);
        }
    }
    let window = |s: i64| (rfc3339(s), rfc3339(s + 60_000));
    let teams = by_team
        .into_iter()
        .map(|((s, team), (n, e))| {
            let (ws, we) = window(s);
            json!({"window_start": ws, "window_end": we, "team": team, "total_requests": n,
                   "error_count": e, "error_rate": e as f64 * 100.0 / n as f64})
        })
        .collect();
    let blocked = blocked
        .into_iter()
        .map(|((s, label, ip), (n, services))| {
            let (ws, we) = window(s);
            json!({"window_start": ws, "window_end": we, "label": label, "ip_address": ip,
                   "requests": n, "services": services.into_iter().collect::<Vec<_>>()})
        })
        .collect();
    (teams, blocked)
}

#[test]
fn stream_static_join_follows_a_reference_file_changed_mid_run() {
    let dir = tmpdir("spark-join");
    let spec = example_copy("spark-join.toml", &dir, &[]);
    for f in ["teams.csv", "ip-blocklist.json"] {
        std::fs::copy(repo().join("dataflows/examples").join(f), dir.join(f)).unwrap();
    }
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let old_team = |s: &str| match s {
        "api-gateway" => "edge",
        "auth-service" => "identity",
        "payment-service" => "payments",
        "order-service" => "commerce",
        _ => unreachable!(),
    };
    // The new table: payments moves to commerce, api-gateway to a new team.
    let new_team = |s: &str| match s {
        "api-gateway" => "gateway",
        "payment-service" => "commerce",
        other => old_team(other),
    };
    let logs = crafted_logs(360); // 10:00 to 10:04, in order within 10 s
                                  // First file: up to the first event at or after 10:01:20. Minute 10:00 closes at progress
                                  // 10:01:10 (delay 10 s) and its rows are written once progress passes that, at the next
                                  // step of progress (10 s).
    let split = logs.iter().position(|l| l.0 >= T0 + 80_000).unwrap() + 1;
    let (first, second) = logs.split_at(split);
    let child = spawn_in(&dir, &spec);
    let lines =
        |ls: &[Log]| -> Vec<String> { ls.iter().map(|(t, s, c, ip)| log(*t, s, *c, ip)).collect() };
    drop_file(&incoming, "part-1.jsonl", &lines(first));
    // Once minute 10:00 is out, the first file has been read with the old table.
    let minute = |m: i64| rfc3339(T0 + m * 60_000);
    let early = wait_row(
        &dir.join("out/error_rate_by_team.jsonl"),
        |r| r["window_start"] == minute(0),
        Duration::from_secs(30),
    );
    assert!(
        early.iter().all(|r| r["window_start"] != minute(1)),
        "{early:?}"
    );
    let tmp = dir.join(".teams.csv.tmp");
    std::fs::write(
        &tmp,
        "service,team\napi-gateway,gateway\nauth-service,identity\npayment-service,commerce\norder-service,commerce\n",
    )
    .unwrap();
    std::fs::rename(&tmp, dir.join("teams.csv")).unwrap();
    drop_file(&incoming, "part-2.jsonl", &lines(second));
    let stderr = finish(child, Duration::from_secs(60));
    assert_eq!(accounting(&stderr)["on_time"], 360);

    let events: Vec<_> = first
        .iter()
        .map(|l| (*l, old_team(l.1)))
        .chain(second.iter().map(|l| (*l, new_team(l.1))))
        .collect();
    let (teams, blocked) = join_expected(&events);
    assert!(
        teams.iter().any(|r| r["team"] == "gateway"),
        "the new mapping is used"
    );
    assert!(
        teams.iter().any(|r| r["team"] == "payments"),
        "the old one before"
    );
    let got = read_jsonl(&dir.join("out/error_rate_by_team.jsonl"));
    assert_eq!(sorted(got), sorted(teams), "error_rate_by_team");
    let got = read_jsonl(&dir.join("out/blocklisted_requests.jsonl"));
    assert_eq!(sorted(got), sorted(blocked), "blocklisted_requests");
}

#[test]
fn directory_source_reads_files_added_during_the_run() {
    let dir = tmpdir("spark-directory");
    let spec = example_copy("spark-directory.toml", &dir, &[]);
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let logs = crafted_logs(300);
    let mut child = spawn_in(&dir, &spec);
    let stderr = StderrWatch::new(&mut child);
    // Five files: one now, the others only once the job has read it (its stderr says so), so
    // they provably arrive while the job runs; a bad line in the third.
    let chunks: Vec<&[Log]> = logs.chunks(60).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut lines: Vec<String> = chunk
            .iter()
            .map(|(t, s, c, ip)| log(*t, s, *c, ip))
            .collect();
        if i == 2 {
            lines.insert(10, "{not json".into());
        }
        drop_file(&incoming, &format!("logs-{i}.jsonl"), &lines);
        std::fs::write(incoming.join(format!("ignored-{i}.txt")), "not matched\n").unwrap();
        if i == 0 {
            stderr.wait_line(
                "logflow: directory source read incoming/logs-0.jsonl (60 lines)",
                Duration::from_secs(30),
            );
        } else {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let stderr = stderr.finish(child, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&stderr);
    let reads: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("logflow: directory source read"))
        .collect();
    let want: Vec<String> = (0..5)
        .map(|i| {
            let n = if i == 2 { 61 } else { 60 };
            format!("logflow: directory source read incoming/logs-{i}.jsonl ({n} lines)")
        })
        .collect();
    assert_eq!(reads, want, "every file once, oldest first, nothing else");
    let acc = accounting(&stderr);
    assert_eq!(
        (acc["read"], acc["dead_letter"], acc["on_time"]),
        (301, 1, 300)
    );
    let dead = read_jsonl(&dir.join("out/spark-directory.dead-letter.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["position"]["line"], 11);
    assert!(
        dead[0]["position"]["file"]
            .as_str()
            .unwrap()
            .ends_with("logs-2.jsonl"),
        "{}",
        dead[0]
    );

    let mut g: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
    for (ts, s, status, _) in &logs {
        let e = g.entry((ts - ts.rem_euclid(60_000), s)).or_default();
        e.0 += 1;
        e.1 += (*status >= 500) as i64;
    }
    let want: Vec<Value> = g
        .into_iter()
        .map(|((st, s), (n, e))| {
            json!({"window_start": rfc3339(st), "window_end": rfc3339(st + 60_000),
                   "service": s, "requests": n, "server_errors": e})
        })
        .collect();
    let got = read_jsonl(&dir.join("out/requests_per_minute.jsonl"));
    assert_eq!(sorted(got), sorted(want));
}

#[test]
fn rate_source_paces_generated_events_and_matches_logflow_gen() {
    let dir = tmpdir("spark-rate");
    // Paced: 1,000 events at 500 per second take two seconds of wall clock.
    let spec = example_copy(
        "spark-rate.toml",
        &dir,
        &[("events = 5000", "events = 1000")],
    );
    let started = Instant::now();
    let child = spawn_in(&dir, &spec);
    let stderr = finish(child, Duration::from_secs(60));
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    let acc = accounting(&stderr);
    // Seed 7 writes 8 bad lines in its first 1,000; nothing is late with a 2-minute delay.
    assert_eq!(
        (acc["read"], acc["dead_letter"], acc["on_time"], acc["late"]),
        (1000, 8, 992, 0),
        "{acc:?}"
    );
    let rows = read_jsonl(&dir.join("out/actions_per_10s.jsonl"));
    assert!(!rows.is_empty());
    let counted: u64 = rows.iter().map(|r| r["events"].as_u64().unwrap()).sum();
    assert_eq!(counted, 992);
    let now = chrono::Utc::now().timestamp_millis();
    for r in &rows {
        let start = chrono::DateTime::parse_from_rfc3339(r["window_start"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!((now - start).abs() < 600_000, "event times start now: {r}");
    }

    // Unpaced: the same events as `logflow gen`, so the same rows as a run over its file.
    let spec = example_copy(
        "spark-rate.toml",
        &dir,
        &[("rate = 500\n", ""), ("events = 5000", "events = 3000")],
    );
    let child = spawn_in(&dir, &spec);
    finish(child, Duration::from_secs(60));
    let generated = read_jsonl(&dir.join("out/actions_per_10s.jsonl"));
    let file = dir.join("events.jsonl");
    common::kafka::gen("user-events", "3000", &["--seed", "7"], &file);
    let out = dir.join("from-file");
    run_file(spec.to_str().unwrap(), &file, &out, "1");
    let want = read_jsonl(&out.join("actions_per_10s.jsonl"));
    assert!(want.len() > 10);
    assert_eq!(sorted(generated), sorted(want));
}

/// level_counts rows (1-min windows per level) of logs.
fn level_counts(logs: &[Log]) -> Vec<Value> {
    let mut g: BTreeMap<(i64, &str), i64> = BTreeMap::new();
    for (ts, _, status, _) in logs {
        let level = if *status >= 500 { "ERROR" } else { "INFO" };
        *g.entry((ts - ts.rem_euclid(60_000), level)).or_default() += 1;
    }
    g.into_iter()
        .map(|((s, level), n)| {
            json!({"window_start": rfc3339(s), "window_end": rfc3339(s + 60_000),
                   "level": level, "count": n})
        })
        .collect()
}

#[test]
fn kafka_from_the_earliest_or_the_latest_offsets() {
    let dir = tmpdir("spark-kafka");
    let b = common::kafka::Broker::start("kafka-spark-it");
    b.topic("spark-logs", 1);
    // Old records, an hour before the new ones.
    let old: Vec<Log> = crafted_logs(200)
        .into_iter()
        .map(|(t, s, c, ip)| (t - 3_600_000, s, c, ip))
        .collect();
    let file = dir.join("old.jsonl");
    write_logs(&file, &old);
    assert_eq!(b.produce("spark-logs", &file), 200);

    // Earliest: everything in the topic, then --stop-at-end closes every window.
    let out = dir.join("earliest");
    let args = ["--brokers", &b.address, "--topic", "spark-logs"];
    let res = common::run_ok(
        &[
            &["run", "dataflows/examples/spark-kafka.toml"][..],
            &args,
            &["--stop-at-end", "--output-dir", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(accounting(&res.stderr)["read"], 200);
    let got = read_jsonl(&out.join("level_counts.jsonl"));
    assert_eq!(sorted(got), sorted(level_counts(&old)));

    // Latest: only what is produced after the job has started.
    let out = dir.join("latest");
    let mut child = bin()
        .args(["run", "dataflows/examples/spark-kafka-latest.toml"])
        .args(args)
        .args(["--output-dir", out.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5)); // assigned at the end of the partition
    let new = crafted_logs(400); // 10:00 to 10:04
    let file = dir.join("new.jsonl");
    write_logs(&file, &new);
    assert_eq!(b.produce("spark-logs", &file), 400);
    // Windows close 5 min (the delay) after their end, so one more event at 10:15 closes
    // every window of the new records (and none of its own).
    let closer: Vec<Log> = vec![(T0 + 900_000, "api-gateway", 200, "10.0.0.1")];
    let file = dir.join("closer.jsonl");
    write_logs(&file, &closer);
    b.produce("spark-logs", &file);
    let want = sorted(level_counts(&new));
    let path = out.join("level_counts.jsonl");
    let started = Instant::now();
    let got = loop {
        let got = sorted(std::fs::read_to_string(&path).map_or(vec![], |_| read_jsonl(&path)));
        if got.len() >= want.len() || started.elapsed() > Duration::from_secs(60) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, want, "only the new records, none of the old");
}
