//! Operations: what the binary prints about itself (docs/operations.md#diagnostics).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{accounting, bin, run_ok, tmpdir};
use serde_json::Value;

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// `2026-12-07T08:00:00.123Z`: an RFC 3339 UTC time with milliseconds.
fn is_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && t.ends_with('Z')
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && t[..4].bytes().all(|c| c.is_ascii_digit())
}

/// A whole text diagnostic line: `TIME LEVEL logflow...: message`.
fn is_text_line(line: &str) -> bool {
    let Some((time, rest)) = line.split_once(' ') else {
        return false;
    };
    let Some((level, rest)) = rest.trim_start().split_once(' ') else {
        return false;
    };
    let Some((target, message)) = rest.split_once(": ") else {
        return false;
    };
    is_time(time)
        && LEVELS.contains(&level)
        && target.starts_with("logflow")
        && !message.is_empty()
        && !line.contains('\r')
        && !line.contains('\x1b')
}

fn logs(dir: &Path, events: &str) -> std::path::PathBuf {
    let input = dir.join("logs.jsonl");
    run_ok(&[
        "gen",
        "--events",
        events,
        "--output",
        input.to_str().unwrap(),
    ]);
    input
}

/// Every stderr line of `err` is one JSON object with time, level, target and message;
/// returns the messages.
fn json_messages(err: &str) -> Vec<Value> {
    assert!(!err.is_empty());
    err.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(is_time(v["time"].as_str().unwrap_or_default()), "{l}");
            assert!(
                LEVELS.contains(&v["level"].as_str().unwrap_or_default()),
                "{l}"
            );
            assert!(
                v["target"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("logflow"),
                "{l}"
            );
            assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{l}");
            v
        })
        .collect()
}

#[test]
fn json_diagnostics_are_one_object_a_line() {
    let dir = tmpdir("ops-json");
    let input = logs(&dir, "5000");
    // The same job logging text: its accounting message is what JSON must carry.
    let text = common::run_file(
        "dataflows/log-analysis.toml",
        &input,
        &dir.join("text"),
        "2",
    );
    let text = String::from_utf8_lossy(&text.stderr);
    let want = common::messages(&text).last().unwrap().to_string();
    assert!(want.starts_with("accounting: read=5000 "), "{text}");
    let out = bin()
        .args([
            "run",
            "dataflows/log-analysis.toml",
            "--log-format",
            "json",
            "-w",
            "2",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let events = json_messages(&err);
    let last = events.last().unwrap()["message"].as_str().unwrap();
    assert_eq!(last, want);
    let ends = events
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .unwrap()
                .ends_with("reached the end of its input")
        })
        .count();
    assert_eq!(ends, 2, "{err}");

    // A launch prints its processes' lines in its own format, with their process number.
    let out = bin()
        .args([
            "launch",
            "dataflows/log-analysis.toml",
            "-n",
            "2",
            "--log-format",
            "json",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output-dir")
        .arg(dir.join("launched"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let events = json_messages(&err);
    for p in [0, 1] {
        assert!(
            events.iter().any(|v| v["process"] == p
                && v["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("logflow: process {p} runs workers"))),
            "{err}"
        );
    }
    assert_eq!(events.last().unwrap()["message"], want.as_str());
}

#[test]
fn text_diagnostics_have_time_level_and_target() {
    let dir = tmpdir("ops-text");
    let input = logs(&dir, "3000");
    let out = common::run_file("dataflows/log-analysis.toml", &input, &dir.join("out"), "2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().all(is_text_line), "{err}");
    assert_eq!(accounting(&out.stderr)["read"], 3000);
    // A filter that lets only warnings through leaves nothing of a clean run.
    let quiet = bin()
        .args(["run", "dataflows/log-analysis.toml", "--log-level", "warn"])
        .arg("--input")
        .arg(&input)
        .arg("--output-dir")
        .arg(dir.join("quiet"))
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
    // A bad filter is bad usage.
    let bad = bin()
        .args([
            "check",
            "dataflows/log-analysis.toml",
            "--log-level",
            "logflow=loud",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_terminal_run_prints_whole_lines_around_its_progress_line() {
    if Command::new("tmux").arg("-V").output().is_err() {
        common::skip("tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = tmpdir("ops-tmux");
    let gen = format!(
        "{} gen --events 40000 --rate 10000",
        env!("CARGO_BIN_EXE_logflow")
    );
    let run = format!(
        "{} run dataflows/log-analysis.toml --input - --output-dir {} -w 2",
        env!("CARGO_BIN_EXE_logflow"),
        dir.join("out").display()
    );
    let tmux = Tmux::new("logflow-ops");
    tmux.start(
        400,
        50,
        &format!("{gen} 2>/dev/null | {run}; echo EXIT=$?; sleep 300"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut progress_seen = false;
    let screen = loop {
        let screen = tmux.capture();
        let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
        if let Some(exit) = lines.iter().find(|l| l.starts_with("EXIT=")) {
            assert_eq!(*exit, "EXIT=0", "{screen}");
            break screen;
        }
        // While it runs: whole lines, and at most the last one the progress line.
        for (i, l) in lines.iter().enumerate() {
            let progress = l.contains(" read ") && l.contains("/s)") && l.contains("dead-letter");
            progress_seen |= progress && i + 1 == lines.len();
            assert!(
                is_text_line(l) || (progress && i + 1 == lines.len()),
                "line {i} is not whole: {l:?}\n{screen}"
            );
        }
        assert!(Instant::now() < deadline, "no end:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(progress_seen, "the progress line never showed:\n{screen}");
    let lines: Vec<&str> = screen
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("EXIT="))
        .collect();
    for l in &lines {
        assert!(is_text_line(l), "not a whole line: {l:?}\n{screen}");
    }
    assert!(
        common::message(lines.last().unwrap()).starts_with("accounting: read=40000 "),
        "{screen}"
    );
}
