//! What a newcomer meets first: the input format chosen from the data, the warning when most
//! records are dead letters, a live demo, command-line values completing a spec, readable
//! summaries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{accounting, bin, messages, repo, run_ok, tmpdir};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn gen(dir: &Path, kind: &str, events: &str) -> PathBuf {
    let path = dir.join(format!("{kind}.jsonl"));
    run_ok(&[
        "gen",
        "--kind",
        kind,
        "--events",
        events,
        "--output",
        path.to_str().unwrap(),
    ]);
    path
}

/// `logflow run SPEC --input INPUT --output-dir DIR/out-NAME [extra]`; panics unless it succeeds.
fn run(spec: &str, input: &Path, dir: &Path, name: &str, extra: &[&str]) -> Output {
    let out = bin()
        .args(["run", spec, "--input"])
        .arg(input)
        .arg("--output-dir")
        .arg(dir.join(format!("out-{name}")))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    out
}

/// The `--format auto` announcement of a run, if any.
fn chosen(out: &Output) -> Option<String> {
    let err = stderr(out);
    let said = messages(&err)
        .find_map(|m| m.strip_prefix("logflow: --format auto: "))
        .map(String::from);
    said
}

/// The first-records warning lines of a run.
fn warnings(out: &Output) -> Vec<String> {
    let err = stderr(out);
    let found = messages(&err)
        .filter(|m| m.contains("of the first") && m.contains("records are dead letters"))
        .map(String::from)
        .collect();
    found
}

#[test]
fn the_input_format_is_sniffed_from_the_first_records_and_announced() {
    let dir = tmpdir("first-hour-sniff");
    let logs = gen(&dir, "logs", "3000");
    let events = gen(&dir, "user-events", "3000");
    let apache = repo().join("tests/data/apache_logs");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "deploy started\nall good\nrollback? no\n").unwrap();

    // (spec, input, the format auto must choose)
    let cases: [(&str, &Path, &str); 5] = [
        ("dataflows/log-analysis.toml", &logs, "json"),
        ("dataflows/user-events.toml", &events, "user-events"),
        // The log spec says json; the data says otherwise.
        ("dataflows/log-analysis.toml", &apache, "apache"),
        ("dataflows/log-analysis.toml", &events, "user-events"),
        ("dataflows/log-analysis.toml", &text, "text"),
    ];
    for (i, (spec, input, want)) in cases.into_iter().enumerate() {
        let out = run(spec, input, &dir, &i.to_string(), &[]);
        let said = chosen(&out).unwrap_or_else(|| panic!("no announcement:\n{}", stderr(&out)));
        assert!(
            said.starts_with(&format!("{} is {want} (", input.display())),
            "case {i}: {said}"
        );
        assert!(warnings(&out).is_empty(), "case {i}: {}", stderr(&out));
    }

    // The real Apache log parses as such: no dead letter beyond its few malformed lines.
    let out = run(
        "dataflows/log-analysis.toml",
        &apache,
        &dir,
        "apache",
        &["--format", "auto"],
    );
    let acc = accounting(&out.stderr);
    assert_eq!(acc["read"], 10_000);
    assert!(acc["dead_letter"] * 100 < acc["read"], "{acc:?}");
    let explicit = run(
        "dataflows/log-analysis.toml",
        &apache,
        &dir,
        "apache-explicit",
        &["--format", "apache"],
    );
    assert_eq!(accounting(&explicit.stderr), acc);
    assert_eq!(
        chosen(&explicit),
        None,
        "an explicit --format is not sniffed"
    );
}

#[test]
fn a_wrongly_formatted_input_gets_one_warning_naming_the_reason_and_the_format() {
    let dir = tmpdir("first-hour-warning");
    let apache = repo().join("tests/data/apache_logs");
    // Explicit, and wrong: every record is a dead letter.
    let out = run(
        "dataflows/log-analysis.toml",
        &apache,
        &dir,
        "wrong",
        &["--format", "json", "-w", "2"],
    );
    let acc = accounting(&out.stderr);
    assert_eq!(acc["dead_letter"], acc["read"]);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{}", stderr(&out));
    assert!(w[0].contains("--format apache"), "{}", w[0]);
    // The most common reason, as the dead-letter file gives it.
    let dead = common::read_jsonl(&dir.join("out-wrong/log-analysis.dead-letter.jsonl"));
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for d in &dead {
        *counts
            .entry(d["reason"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (top, _) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(
        w[0].contains(&format!("\"{}\"", top.escape_debug())),
        "{} / {top}",
        w[0]
    );
    let line = stderr(&out)
        .lines()
        .find(|l| l.contains("records are dead letters"))
        .unwrap()
        .to_string();
    assert!(line.contains(" WARN "), "{line}");

    // Mostly good input: no warning.
    let logs = gen(&dir, "logs", "3000");
    let out = run(
        "dataflows/log-analysis.toml",
        &logs,
        &dir,
        "good",
        &["--format", "json"],
    );
    assert!(warnings(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn the_demo_stamps_its_events_with_the_wall_clock() {
    let dir = tmpdir("first-hour-demo");
    let spec = dir.join("live.toml");
    std::fs::write(
        &spec,
        "name = \"live\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
         [[analysis]]\nname = \"per_second\"\nwindow = { size = \"1s\" }\nselect = [\"count() as n\"]\n",
    )
    .unwrap();
    let before = chrono::Utc::now();
    let out = bin()
        .arg("run")
        .arg(&spec)
        .args([
            "--demo-events",
            "10000",
            "--demo-rate",
            "5000",
            "--demo-speed",
            "1",
        ])
        .output()
        .unwrap();
    let after = chrono::Utc::now();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut windows = 0;
    for line in stdout.lines() {
        let Some(json) = line.strip_prefix("per_second ") else {
            continue;
        };
        let row: serde_json::Value = serde_json::from_str(json).unwrap();
        let start = row["window_start"].as_str().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(start).unwrap();
        let slack = chrono::Duration::seconds(5);
        assert!(
            t >= before - slack && t <= after + slack,
            "window {start} is not within seconds of the run ({before} to {after})"
        );
        windows += 1;
    }
    assert!(windows >= 2, "{stdout}");
    assert!(
        stderr(&out).contains("stamped with the wall clock"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn checkpoint_dir_on_the_command_line_completes_a_checkpoint_section_without_dir() {
    let dir = tmpdir("first-hour-checkpoint");
    let spec = dir.join("ck.toml");
    std::fs::write(
        &spec,
        "name = \"ck\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
         [checkpoint]\ninterval = \"1s\"\n\
         [[analysis]]\nname = \"n\"\nwindow = { size = \"1m\" }\nselect = [\"count() as c\"]\n",
    )
    .unwrap();
    let logs = gen(&dir, "logs", "2000");
    // Without it: bad usage, saying what to add.
    let out = bin()
        .arg("run")
        .arg(&spec)
        .arg("--input")
        .arg(&logs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--checkpoint-dir"),
        "{}",
        stderr(&out)
    );
    // `check` accepts the spec and says what the command line must add, or adds.
    let check = run_ok(&["check", spec.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("checkpoint.dir is not in the spec: `run` needs --checkpoint-dir DIR"),
        "{text}"
    );
    let ck = dir.join("ck");
    let check = run_ok(&[
        "check",
        spec.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--brokers",
        "kafka-1:9092",
    ]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains(&format!("checkpoints: every 1s in {}", ck.display())),
        "{text}"
    );
    assert!(
        text.contains("from the command line:")
            && text.contains("--checkpoint-dir")
            && text
                .contains("--brokers kafka-1:9092: the Kafka source and sinks use these brokers"),
        "{text}"
    );
    // The topics a Kafka run writes, on one line a script reads (docs/first-job.md).
    assert!(
        text.lines()
            .any(|l| l == "topics: n ck.dead-letter ck.late"),
        "{text}"
    );
    // With it: the run keeps its checkpoints there.
    let out = run(
        spec.to_str().unwrap(),
        &logs,
        &dir,
        "ck",
        &["--checkpoint-dir", ck.to_str().unwrap()],
    );
    assert!(
        stderr(&out).contains(&format!("no checkpoint in {} yet", ck.display())),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read_dir(&ck).unwrap().next().is_some());
}

#[test]
fn gen_ends_with_a_readable_summary() {
    let dir = tmpdir("first-hour-gen");
    let path = dir.join("l.jsonl");
    let out = run_ok(&[
        "gen",
        "--events",
        "5000",
        "--output",
        path.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    let summary = messages(&err).last().unwrap();
    // Bytes: some bad lines are not UTF-8.
    let lines = std::fs::read(&path)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    assert!(
        summary.starts_with(&format!("logflow gen: wrote {lines} lines (")),
        "{summary}"
    );
    assert!(
        summary.contains("bad input for the dead-letter output"),
        "{summary}"
    );
    assert!(!err.contains("GenStats") && !err.contains('{'), "{err}");
}

#[test]
fn the_default_demo_shows_every_analysis_and_few_dead_letters() {
    // The README's first command, its records on stdout (no terminal here; --output json says
    // so explicitly).
    let out = bin()
        .args(["run", "dataflows/log-analysis.toml", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut by_topic: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in stdout.lines() {
        let (topic, json) = line.split_once(' ').unwrap();
        let _: serde_json::Value = serde_json::from_str(json).unwrap();
        *by_topic.entry(topic).or_default() += 1;
    }
    let spec = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    let analyses: Vec<&str> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"'))
        .filter(|n| *n != "log-analysis")
        .collect();
    assert_eq!(analyses.len(), 11);
    // The detectors too: the replayed half hour holds one of each incident.
    for a in &analyses {
        assert!(
            by_topic.get(a).is_some_and(|&n| n > 0),
            "no {a} rows: {by_topic:?}"
        );
    }
    let lines: usize = by_topic.values().sum();
    let dead = by_topic
        .get("log-analysis.dead-letter")
        .copied()
        .unwrap_or(0);
    assert!(
        dead * 100 < lines * 5,
        "{dead} dead letters of {lines} lines: {by_topic:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("at 120x the wall clock"), "{err}");
    assert_eq!(accounting(&out.stderr)["read"], 200_000);
}

#[test]
fn schema_infer_chooses_json_or_regex_and_says_which() {
    let dir = tmpdir("first-hour-infer");
    let logs = gen(&dir, "logs", "300");
    let apache = repo().join("tests/data/apache_logs");
    for (input, format, said) in [
        // The generator's few bad lines are not objects; the rest are.
        (logs.as_path(), "json", "is json ("),
        (apache.as_path(), "regex", "is an access log (apache"),
    ] {
        let path = input.to_str().unwrap();
        let auto = run_ok(&["schema", "infer", path]);
        let explicit = run_ok(&["schema", "infer", path, "--format", format]);
        assert_eq!(auto.stdout, explicit.stdout, "{path}");
        assert!(!auto.stdout.is_empty());
        let err = stderr(&auto);
        let chosen = messages(&err)
            .find_map(|m| m.strip_prefix("logflow: --format auto: "))
            .unwrap_or_else(|| panic!("no choice said: {err}"));
        assert!(chosen.contains(said), "{chosen}");
        assert!(
            chosen.ends_with(&format!("inferring a `{format}` schema")),
            "{chosen}"
        );
        // An explicit format says nothing of a choice.
        assert!(!stderr(&explicit).contains("--format auto"));
    }
}

/// Stops the broker the page's commands start (its state directory is the test's own).
struct KafkaDown(PathBuf);

impl Drop for KafkaDown {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("scripts/kafka"))
            .args(["down", "--wipe"])
            .env("KAFKA_STATE_DIR", &self.0)
            .status();
    }
}

/// The shell commands of the first `sh` block of a markdown page.
fn sh_block(page: &str) -> String {
    let start = page.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let len = page[start..].find("```").expect("the block's end");
    page[start..start + len].to_string()
}

#[test]
fn the_first_job_page_works_as_written() {
    let page = std::fs::read_to_string(repo().join("docs/first-job.md")).unwrap();
    let commands = sh_block(&page);
    // Exactly the page's commands, but on this checkout's test port instead of 9092, so that
    // several checkouts can test at once (KAFKA_PORT is what `scripts/kafka up` binds).
    let port = common::kafka::port();
    assert!(commands.contains("127.0.0.1:9092"), "{commands}");
    let script = commands.replace("127.0.0.1:9092", &format!("127.0.0.1:{port}"));
    let state = repo().join("target").join("first-hour-kafka");
    let _ = std::process::Command::new(repo().join("scripts/kafka"))
        .args(["down", "--wipe"])
        .env("KAFKA_STATE_DIR", &state)
        .status();
    let _down = KafkaDown(state.clone());
    let out = std::process::Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(repo())
        .env("KAFKA_STATE_DIR", &state)
        .env("KAFKA_PORT", &port)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "the page's commands failed:\n{err}");
    // Nothing trips on the way: `| head` closing the job's stdout included.
    assert!(!err.contains(" ERROR "), "{err}");
    assert!(
        messages(&err)
            .any(|m| m.starts_with("logflow: --format auto: tests/data/apache_logs is apache")),
        "{err}"
    );
    // Step 5 reads back response_time rows the job wrote to Kafka in step 4.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tailed: Vec<serde_json::Value> = stdout
        .lines()
        .rev()
        .take(5)
        // `KEY<tab>VALUE`.
        .map(|l| l.rsplit_once('\t').map_or(l, |(_, v)| v))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stdout}")))
        .collect();
    assert_eq!(tailed.len(), 5, "{stdout}");
    for row in &tailed {
        assert!(
            row["window_start"].is_string() && row["request_count"].is_u64(),
            "{row}"
        );
    }
}
