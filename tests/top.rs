//! `logflow top`: the live view, driven in tmux against a running job, shows each analysis's
//! latest window with the numbers the job wrote (docs/operations.md#live-view).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::port;
use common::tmux::Tmux;
use common::{bin, read_jsonl, repo, run_ok, tmpdir};
use serde_json::Value;

/// Widest column the view draws (longer cells are cut).
const MAX_COLUMN: usize = 40;

/// A cell as the view draws it: integers as they are, other numbers with 3 decimals, lists
/// joined with commas, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => format!("{:.3}", n.as_f64().unwrap()),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

/// One analysis as drawn: its window, row count, ranking column, column names and rows.
#[derive(Debug, Default)]
struct Shown {
    start: String,
    end: String,
    rows_in_window: usize,
    rank_by: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The analyses on a screen, by name.
fn parse_screen(screen: &str, names: &[String]) -> BTreeMap<String, Shown> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Shown)> = None;
    for line in screen.lines() {
        let title = names.iter().find(|n| line.starts_with(&format!("{n}  ")));
        if let Some(name) = title {
            if let Some((n, s)) = current.take() {
                out.insert(n, s);
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            // `NAME  window START .. END  N rows (top K by COL)  FOUND`
            if words.get(1) != Some(&"window") {
                current = None;
                continue;
            }
            let rank_by = words
                .iter()
                .position(|w| *w == "by")
                .and_then(|i| words.get(i + 1))
                .map(|w| w.trim_end_matches(')').to_string());
            let shown = Shown {
                start: words[2].to_string(),
                end: words[4].to_string(),
                rows_in_window: words[5].parse().unwrap(),
                rank_by,
                ..Shown::default()
            };
            current = Some((name.clone(), shown));
            continue;
        }
        let Some((_, s)) = current.as_mut() else {
            continue;
        };
        let cells: Vec<String> = line.split_whitespace().map(String::from).collect();
        if cells.is_empty() {
            continue;
        }
        if s.columns.is_empty() {
            s.columns = cells;
        } else {
            s.rows.push(cells);
        }
    }
    if let Some((n, s)) = current {
        out.insert(n, s);
    }
    out
}

/// Checks one analysis as drawn against its output file; the mismatch if any.
fn check(name: &str, shown: &Shown, rows: &[Value]) -> Result<(), String> {
    let latest = rows
        .iter()
        .filter_map(|r| r["window_start"].as_str())
        .max()
        .ok_or(format!("{name}: no rows in the file"))?;
    if shown.start != latest {
        return Err(format!(
            "{name}: shows {}, the file's latest is {latest}",
            shown.start
        ));
    }
    let window: Vec<&Value> = rows
        .iter()
        .filter(|r| r["window_start"] == latest)
        .collect();
    if window[0]["window_end"] != shown.end.as_str() {
        return Err(format!(
            "{name}: window end {} vs {}",
            shown.end, window[0]["window_end"]
        ));
    }
    if shown.rows_in_window != window.len() {
        return Err(format!(
            "{name}: {} rows said, {} in the file",
            shown.rows_in_window,
            window.len()
        ));
    }
    if shown.rows.is_empty() || shown.rows.len() > window.len() {
        return Err(format!(
            "{name}: {} rows drawn of {}",
            shown.rows.len(),
            window.len()
        ));
    }
    // Every row drawn is a row of that window, column by column.
    let drawn =
        |r: &Value| -> Vec<String> { shown.columns.iter().map(|c| cell(&r[c.as_str()])).collect() };
    let same = |d: &[String], f: &[String]| {
        d.len() == f.len()
            && d.iter().zip(f).all(|(d, f)| {
                d == f || (f.chars().count() > MAX_COLUMN && f.starts_with(d.as_str()))
            })
    };
    for d in &shown.rows {
        if !window.iter().any(|r| same(d, &drawn(r))) {
            return Err(format!(
                "{name}: drawn row {d:?} is not in the file's window {latest}"
            ));
        }
    }
    // The rows drawn are the top ones by the ranking column.
    if let Some(col) = &shown.rank_by {
        let i = shown.columns.iter().position(|c| c == col).unwrap();
        let least_drawn = shown
            .rows
            .iter()
            .map(|r| r[i].parse::<f64>().unwrap())
            .fold(f64::INFINITY, f64::min);
        let mut ranks: Vec<f64> = window
            .iter()
            .filter_map(|r| r[col.as_str()].as_f64())
            .collect();
        ranks.sort_by(|a, b| b.total_cmp(a));
        let nth = ranks[shown.rows.len() - 1];
        if (least_drawn - nth).abs() > 0.001 {
            return Err(format!(
                "{name}: the least row drawn by {col} is {least_drawn}, the top {} end at {nth}",
                shown.rows.len()
            ));
        }
    }
    Ok(())
}

/// The job: the log spec reading stdin (kept open, so that it keeps running with its windows
/// after the input), serving metrics at `addr`.
fn start_job(dir: &Path, addr: &str) -> Child {
    let text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    // No partition goes idle during the test: the watermark stays where the input left it.
    let spec = text.replace("idle_timeout = \"30s\"", "idle_timeout = \"1h\"");
    assert_ne!(spec, text, "the spec's idle timeout moved");
    std::fs::write(dir.join("spec.toml"), spec).unwrap();
    let logs = dir.join("logs.jsonl");
    // 30 minutes of event time with the generator's incidents: every detector has rows.
    run_ok(&[
        "gen",
        "--events",
        "180000",
        "--output",
        logs.to_str().unwrap(),
    ]);
    let mut job = bin()
        .arg("run")
        .arg(dir.join("spec.toml"))
        .args([
            "--input",
            "-",
            "--format",
            "json",
            "--quiet",
            "--metrics-addr",
            addr,
        ])
        .arg("--output-dir")
        .arg(dir.join("out"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = job.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&logs).unwrap()).unwrap();
    stdin.flush().unwrap();
    // Held open by a thread until the job is killed.
    std::thread::spawn(move || {
        let _keep = stdin;
        std::thread::sleep(Duration::from_secs(600));
    });
    job
}

#[test]
fn top_shows_each_analysis_latest_window_as_the_job_wrote_it() {
    if !Tmux::available() {
        common::skip("tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = tmpdir("top");
    let addr = format!("127.0.0.1:{}", port("LOGFLOW_IT_METRICS_PORT", 19797));
    let mut job = start_job(&dir, &addr);
    let tmux = Tmux::new("logflow-top");
    tmux.start(
        300,
        200,
        &format!(
            "{} top {addr}; echo EXIT=$?; sleep 300",
            env!("CARGO_BIN_EXE_logflow")
        ),
    );

    let out = dir.join("out");
    let names: Vec<String> = {
        let text = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .map(|n| n.trim_end_matches('"').to_string())
            .filter(|n| n != "log-analysis")
            .collect()
    };
    assert_eq!(names.len(), 11, "{names:?}");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last;
    loop {
        let screen = tmux.capture();
        let shown = parse_screen(&screen, &names);
        let mismatch = names.iter().find_map(|n| {
            let Some(s) = shown.get(n) else {
                return Some(format!("{n}: no window drawn"));
            };
            let path = out.join(format!("{n}.jsonl"));
            let rows = if path.exists() {
                read_jsonl(&path)
            } else {
                Vec::new()
            };
            check(n, s, &rows).err()
        });
        match mismatch {
            None => {
                assert!(screen.contains("running"), "{screen}");
                assert!(
                    screen.contains("FOUND"),
                    "detector rows are flagged:\n{screen}"
                );
                break;
            }
            Some(m) => last = format!("{m}\n{screen}"),
        }
        assert!(
            Instant::now() < deadline,
            "the view never matched the job's output: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The job goes away: the view says so and keeps its last numbers; `q` quits cleanly.
    job.kill().unwrap();
    job.wait().unwrap();
    let screen = tmux.wait_until("disconnected", Duration::from_secs(30), |s| {
        s.contains("disconnected")
    });
    assert!(screen.contains("retrying"), "{screen}");
    assert!(
        screen.contains("response_time  window"),
        "the last data stays:\n{screen}"
    );
    // The terminal is restored: the view is gone from the normal screen.
    let screen = tmux.quit();
    assert!(!screen.contains("response_time  window"), "{screen}");
}

#[test]
fn top_refuses_a_bad_address_and_a_non_terminal() {
    let out = bin().args(["top", "not an address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("top not an address: not a HOST:PORT address"),
        "{err}"
    );
    let out = bin().args(["top", "127.0.0.1:9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("top draws on a terminal"), "{err}");
}

/// `logflow top --cluster`: every job of a cluster with its state, rates and totals, from the
/// cluster's job table; a job fed while the view runs shows events per second.
#[test]
fn top_cluster_shows_every_job_with_its_rates() {
    use common::cluster::{socket_spec, Proc};
    if !Tmux::available() {
        common::skip("tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = tmpdir("top-cluster");
    let control = format!("127.0.0.1:{}", port("LOGFLOW_IT_CONTROL_PORT", 19479) + 4);
    let mut c = bin();
    c.args([
        "cluster",
        "start",
        "-n",
        "1",
        "-w",
        "1",
        "--control",
        &control,
    ]);
    let mut cluster = Proc::spawn(c, &dir, "cluster", Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    let cli = |args: &[&str]| {
        let out = bin()
            .args(args)
            .args(["--cluster", &control])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let logs = dir.join("logs.jsonl");
    run_ok(&[
        "gen",
        "--events",
        "20000",
        "--output",
        logs.to_str().unwrap(),
    ]);
    // Bytes: the generator writes some lines that are not UTF-8 (dead letters).
    let lines: Vec<Vec<u8>> = std::fs::read(&logs)
        .unwrap()
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    // Job 1 reads the file to its end.
    let file_out = dir.join("file-out");
    let args = ["submit", "dataflows/log-analysis.toml", "--input"];
    let input = [
        logs.to_str().unwrap(),
        "--output-dir",
        file_out.to_str().unwrap(),
    ];
    assert_eq!(cli(&[&args[..], &input[..]].concat()), "1");
    // Job 2 reads a socket fed 200 lines every 100 ms while the view runs.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = socket_spec(&dir, server.local_addr().unwrap().port());
    let live_out = dir.join("live-out");
    let args = ["submit", spec.to_str().unwrap(), "--output-dir"];
    assert_eq!(
        cli(&[&args[..], &[live_out.to_str().unwrap()]].concat()),
        "2"
    );
    let (mut conn, _) = server.accept().unwrap();
    let feeder = std::thread::spawn(move || {
        for chunk in lines.chunks(200) {
            conn.write_all(&chunk.concat()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        conn
    });

    let tmux = Tmux::new("logflow-top-cluster");
    tmux.start(
        200,
        40,
        &format!(
            "{} top --cluster {control}; echo EXIT=$?; sleep 300",
            env!("CARGO_BIN_EXE_logflow")
        ),
    );
    // A job's row: ID NAME STATE EVENTS/S RESULTS/S LATE/S DEAD/S WATERMARK LAG IN OUT.
    let row = |screen: &str, id: &str| -> Option<Vec<String>> {
        screen
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|w| w.len() == 11 && w[0] == id)
    };
    let screen = tmux.wait_until("both jobs", Duration::from_secs(60), |screen| {
        let live = row(screen, "2").filter(|w| {
            w[1] == "log-analysis"
                && w[2] == "running"
                && w[3].parse::<f64>().is_ok_and(|r| r > 0.0)
        });
        let done = row(screen, "1").filter(|w| w[2] == "finished" && w[9] == "20000");
        live.is_some() && done.is_some() && screen.contains("2 jobs, 1 live")
    });
    assert!(
        screen.contains(&format!("logflow top  cluster at {control}")),
        "{screen}"
    );
    let _conn = feeder.join().unwrap();

    // The cluster goes away: the view says so and keeps its last rows; `q` quits cleanly.
    cli(&["cluster", "stop", "--now"]);
    assert!(cluster
        .wait(Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    let screen = tmux.wait_until("disconnected", Duration::from_secs(30), |s| {
        s.contains("disconnected")
    });
    assert!(
        row(&screen, "1").is_some(),
        "the last data stays:\n{screen}"
    );
    tmux.quit();
}
