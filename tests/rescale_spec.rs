//! Spec changes between a savepoint and its restore (issue 31), without a broker: the
//! log-analysis job over a generated file stopped at a savepoint mid-input, then restored with
//! one analysis added (before all others, so every later analysis moves) and one removed. The
//! kept analyses' files equal an uninterrupted run of the old spec; the added one holds
//! exactly what the events after the savepoint give; the removed one's file is left as it was.
//! A changed window and a shared aggregation pass that lost an analysis are refused, naming
//! the analyses. And on a cluster: a job on 1 process stopped by `logflow savepoint` mid-input
//! and submitted with `--from-checkpoint` to a cluster of 2 writes the uninterrupted run's
//! files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::{cli, control, jobs, ok, start_cluster, wait_job, Proc};
use common::kafka::{gen, LOG_ANALYSES};
use common::oracle::input::read_log;
use common::recovery::{complete, latest, newest, stop_after_checkpoints};
use common::rows::assert_same_files;
use common::{bin, messages, read_jsonl, repo, run_file, tmpdir};

/// Events of the input: enough that the first run is still reading when it is stopped.
const EVENTS: u64 = 1_000_000;

/// The analysis added: one of its own (no other groups by status code), placed first.
const ADDED: &str = "[[analysis]]\nname = \"status_codes\"\nwindow = { size = \"1m\" }\n\
    group_by = [\"status_code\"]\nselect = [\"count() as requests\"]\n\n";

/// `text` (a spec) without its analysis `name`.
fn without(text: &str, name: &str) -> String {
    let head = format!("[[analysis]]\nname = \"{name}\"\n");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("no analysis {name}"));
    let end = text[start + head.len()..]
        .find("[[analysis]]")
        .map_or(text.len(), |i| start + head.len() + i);
    format!("{}{}", &text[..start], &text[end..])
}

/// The lines of a file, sorted.
fn lines(path: &Path) -> Vec<String> {
    let mut l: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(String::from)
        .collect();
    l.sort();
    l
}

/// Rows of an analysis file: (window_start in ms, key) -> requests.
fn counts(path: &Path) -> BTreeMap<(i64, String), i64> {
    read_jsonl(path)
        .into_iter()
        .map(|r| {
            let start = chrono::DateTime::parse_from_rfc3339(r["window_start"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let key = (start, r["status_code"].to_string());
            (key, r["requests"].as_i64().unwrap())
        })
        .collect()
}

/// A record's input line (`position.line` of a dead letter or late event).
fn line_of(r: &Value) -> u64 {
    r["position"]["line"].as_u64().unwrap()
}

#[test]
fn analyses_added_and_removed_at_a_savepoint_keep_every_other_result_exact() {
    let dir = tmpdir("rescale-spec");
    let logs = dir.join("events.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let ckpt = dir.join("ckpt");
    let old = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    let section = format!(
        "\n[checkpoint]\ndir = \"{}\"\ninterval = \"200ms\"\n",
        ckpt.display()
    );
    let first_analysis = old.find("[[analysis]]").unwrap();
    let new = format!(
        "{}{ADDED}{}",
        &old[..first_analysis],
        without(&old[first_analysis..], "ddos")
    );
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let new_plain = write("new-plain.toml", &new);
    let (old_spec, new_spec) = (
        write("old.toml", &format!("{old}{section}")),
        write("new.toml", &format!("{new}{section}")),
    );
    // Uninterrupted runs without checkpoints: the old spec's files, and the new one's (for
    // the added analysis, the dead letters and the late events).
    let (want_old, want_new) = (dir.join("want-old"), dir.join("want-new"));
    run_file("dataflows/log-analysis.toml", &logs, &want_old, "1");
    run_file(new_plain.to_str().unwrap(), &logs, &want_new, "2");

    let out = dir.join("out");
    let job = |spec: &Path, workers: &str, extra: &[&str]| {
        let mut c = bin();
        c.args(["run", spec.to_str().unwrap(), "-w", workers])
            .args(["--input", logs.to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()])
            .args(extra);
        c
    };
    // The old spec, stopped at a savepoint mid-input.
    stop_after_checkpoints(
        job(&old_spec, "1", &["--savepoint"]),
        &dir,
        "first",
        &ckpt,
        0,
        2,
        None,
    );
    let (head, at) = latest(&ckpt, &logs);
    assert!(head.contains("savepoint"), "{head}");
    assert!(
        at > 1 && at <= EVENTS,
        "position {at} is not mid-input ({head})"
    );
    let savepoint = newest(&ckpt);
    let ddos_then = std::fs::read(out.join("ddos.jsonl")).unwrap();

    // The new spec from it, on another layout, to the end of the input.
    let second = job(&new_spec, "2", &[]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    for said in [
        "logflow: analysis status_codes is new: starts empty".to_string(),
        format!(
            "logflow: analysis ddos was removed: its state in checkpoint {savepoint} is dropped"
        ),
    ] {
        assert!(messages(&err).any(|m| m == said), "not said: {said}\n{err}");
    }

    // Every kept analysis, and the dead letters: exactly the old spec's uninterrupted files.
    let kept = LOG_ANALYSES
        .iter()
        .filter(|a| **a != "ddos")
        .chain(&["log-analysis.dead-letter"]);
    for name in kept {
        let file = format!("{name}.jsonl");
        let (got, want) = (lines(&out.join(&file)), lines(&want_old.join(&file)));
        assert!(!want.is_empty(), "{name}: no rows to compare");
        assert!(
            got == want,
            "{name}: {} lines, uninterrupted {}",
            got.len(),
            want.len()
        );
    }
    // Alerts: the kept analyses' are the old spec's; ddos's stop at the savepoint.
    let alerts = |d: &Path, ddos: bool| -> Vec<String> {
        let mut a: Vec<String> = read_jsonl(&d.join("log-analysis.alerts.jsonl"))
            .into_iter()
            .filter(|r| (r["alert"] == "ddos") == ddos)
            .map(|r| r.to_string())
            .collect();
        a.sort();
        a
    };
    assert_eq!(alerts(&out, false), alerts(&want_old, false));
    let ddos_alerts = alerts(&out, true);
    assert!(ddos_alerts
        .iter()
        .all(|a| alerts(&want_old, true).contains(a)));
    // The removed analysis wrote nothing more.
    assert_eq!(std::fs::read(out.join("ddos.jsonl")).unwrap(), ddos_then);

    // The added analysis. Windows starting after every event read before the savepoint hold
    // only events read after it, judged late against the same progress as in the
    // uninterrupted run: the same rows. Earlier windows lack the events before the savepoint:
    // over all windows it counted the uninterrupted run's events less those read before the
    // savepoint that counted there (parsed, and not late for it).
    // Generated input has lines that are not UTF-8 (bad input): bytes, split on newlines.
    let bytes = std::fs::read(&logs).unwrap();
    let read_before: Vec<&[u8]> = bytes.split(|b| *b == b'\n').take(at as usize - 1).collect();
    let progress = read_before
        .iter()
        .filter_map(|l| read_log(l).ok())
        .map(|e| e.ts)
        .max()
        .unwrap();
    let (got, want) = (
        counts(&out.join("status_codes.jsonl")),
        counts(&want_new.join("status_codes.jsonl")),
    );
    let after = |c: &BTreeMap<(i64, String), i64>| -> BTreeMap<(i64, String), i64> {
        c.iter()
            .filter(|((w, _), _)| *w > progress)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    assert!(!after(&want).is_empty(), "no window after the savepoint");
    assert_eq!(after(&got), after(&want), "windows after {progress}");
    // Records are the lines neither empty nor a lone carriage return.
    let before = read_before
        .iter()
        .filter(|l| !l.is_empty() && **l != b"\r")
        .count() as i64;
    let dead = read_jsonl(&want_new.join("log-analysis.dead-letter.jsonl"))
        .iter()
        .filter(|r| line_of(r) < at)
        .count() as i64;
    let late = read_jsonl(&want_new.join("log-analysis.late.jsonl"))
        .iter()
        .filter(|r| line_of(r) < at)
        .filter(|r| {
            let missed = r["missed"].as_array().unwrap();
            missed.iter().any(|m| m["analysis"] == "status_codes")
        })
        .count() as i64;
    let total = |c: &BTreeMap<_, i64>| c.values().sum::<i64>();
    assert!(
        before - dead - late > 0,
        "nothing counted before the savepoint"
    );
    assert_eq!(total(&got), total(&want) - (before - dead - late));

    // A window changed since: refused, naming the analysis and what changed; so is a pass
    // shared by analyses that lost one (its saved aggregates are laid out for all of them).
    let refused = |name: &str, text: String, said: &[&str]| {
        let spec = write(name, &format!("{text}{section}"));
        let run = job(&spec, "2", &[]).output().unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}:\n{err}");
        let last = messages(&err)
            .rev()
            .find(|m| m.starts_with("logflow:"))
            .unwrap();
        for s in said {
            assert!(last.contains(s), "{name}: not said: {s}\n{err}");
        }
    };
    refused(
        "window.toml",
        new.replacen(
            "name = \"error_rate\"\nwindow = { size = \"1m\" }",
            "name = \"error_rate\"\nwindow = { size = \"2m\" }",
            1,
        ),
        &[
            "analysis error_rate: window changed",
            "analysis error_rate_spikes: input changed",
        ],
    );
    refused(
        "shared.toml",
        without(&new, "service_popularity"),
        &["analyses response_time, error_rate, sla share one aggregation pass"],
    );
    let finished = lines(&out.join("response_time.jsonl"));
    assert_eq!(finished, lines(&want_old.join("response_time.jsonl")));
}

#[test]
fn a_cluster_job_savepointed_on_one_process_continues_on_two() {
    let dir = tmpdir("rescale-cluster");
    let logs = dir.join("events.jsonl");
    gen("logs", &EVENTS.to_string(), &[], &logs);
    let want = dir.join("want");
    run_file("dataflows/log-analysis.toml", &logs, &want, "1");
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let spec = dir.join("job.toml");
    let text = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    // The directory comes from the command line: `--checkpoint-dir`, then `--from-checkpoint`.
    std::fs::write(
        &spec,
        format!("{text}\n[checkpoint]\ninterval = \"200ms\"\n"),
    )
    .unwrap();
    let addr = control(0);
    let submit = |extra: &[&str]| -> u64 {
        let mut args = vec!["submit", spec.to_str().unwrap()];
        args.extend(["--input", logs.to_str().unwrap()]);
        args.extend(["--output-dir", out.to_str().unwrap()]);
        args.extend(extra);
        ok(cli(&addr, &args), "submit").parse().unwrap()
    };
    let stop_cluster = |cluster: &mut Proc, what: &str| {
        ok(cli(&addr, &["cluster", "stop"]), "cluster stop");
        let status = cluster.wait(Duration::from_secs(60));
        let err = cluster.stderr_text();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{what}:\n{err}");
        err
    };

    // A 1-process cluster: the job is stopped at a savepoint once it has checkpoints.
    let mut one = start_cluster(&addr, &dir, "one", 1);
    let job = submit(&["--checkpoint-dir", ckpt.to_str().unwrap()]);
    let started = Instant::now();
    while complete(&ckpt).len() < 2 {
        let state = jobs(&addr)[&job]["state"].clone();
        assert_eq!(
            state, "running",
            "before 2 checkpoints (make the input larger)"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let path = ok(cli(&addr, &["savepoint", &job.to_string()]), "savepoint");
    let savepoint = newest(&ckpt);
    assert_eq!(
        Path::new(&path),
        ckpt.join(format!("epoch-{savepoint:020}")),
        "the savepoint printed is the newest checkpoint"
    );
    assert_eq!(jobs(&addr)[&job]["state"], "stopped");
    let (head, at) = latest(&ckpt, &logs);
    assert!(
        head.contains("1 process x 1 worker") && head.contains("savepoint"),
        "{head}"
    );
    assert!(
        at > 1 && at <= EVENTS,
        "position {at} is not mid-input ({head})"
    );
    // Without checkpoints there is no savepoint: refused, the job left running.
    let plain_out = dir.join("plain");
    let plain = {
        let mut args = vec!["submit", "dataflows/log-analysis.toml"];
        args.extend(["--input", logs.to_str().unwrap()]);
        args.extend(["--output-dir", plain_out.to_str().unwrap()]);
        ok(cli(&addr, &args), "submit").parse::<u64>().unwrap()
    };
    let refused = cli(&addr, &["savepoint", &plain.to_string()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("keeps no checkpoints, so it has no savepoint"),
        "{err}"
    );
    wait_job(&addr, plain, "finished", |j| j["state"] == "finished");
    stop_cluster(&mut one, "1-process cluster");

    // A 2-process cluster continues from it, to the end of the input.
    let mut two = start_cluster(&addr, &dir, "two", 2);
    let job = submit(&["--from-checkpoint", ckpt.to_str().unwrap()]);
    wait_job(&addr, job, "finished", |j| j["state"] == "finished");
    let err = stop_cluster(&mut two, "2-process cluster");
    assert!(
        messages(&err).any(|m| m.contains(&format!(
            "rescaling checkpoint {savepoint} from 1 worker to 2 workers"
        ))),
        "{err}"
    );
    assert_same_files(&out, &want, 10, "savepointed on 1 process, finished on 2");
    // A directory without a checkpoint is no place to continue from.
    let mut three = start_cluster(&addr, &dir, "three", 1);
    let empty = dir.join("empty");
    let refused = cli(
        &addr,
        &[
            "submit",
            spec.to_str().unwrap(),
            "--input",
            logs.to_str().unwrap(),
            "--from-checkpoint",
            empty.to_str().unwrap(),
        ],
    );
    // Refused where the job opens its checkpoints: at submission, or as the job's failure.
    let why = match refused.status.success() {
        false => String::from_utf8_lossy(&refused.stderr).into_owned(),
        true => {
            let job: u64 = String::from_utf8_lossy(&refused.stdout)
                .trim()
                .parse()
                .unwrap();
            let s = wait_job(&addr, job, "ended", |j| j["state"] != "running");
            assert_eq!(s["state"], "failed", "{s}");
            s["reason"].to_string()
        }
    };
    assert!(
        why.contains("no checkpoint there to continue from"),
        "{why}"
    );
    stop_cluster(&mut three, "third cluster");
}
