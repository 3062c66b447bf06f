//! A skip can't pass as a pass: `common::skip` leaves a marker, and `scripts/test-summary` (the
//! end of `scripts/test`, strict under CI) lists skips, ignored tests and suites that did not
//! run, and fails the run on them when strict.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;
use std::process::Output;

use common::{repo, skip_into, tmpdir};

/// Every suite `scripts/test` must run, as cargo names them in its "Running" lines.
fn required_suites() -> Vec<String> {
    let mut suites = vec!["unittests src/lib.rs".to_string()];
    let mut files: Vec<String> = std::fs::read_dir(repo().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() && p.join("main.rs").exists() {
                Some(format!("tests/{name}/main.rs"))
            } else if name.ends_with(".rs") {
                Some(format!("tests/{name}"))
            } else {
                None
            }
        })
        .collect();
    files.sort();
    suites.extend(files);
    suites
}

/// Output of a `cargo test` run (stderr and stdout merged, as `scripts/test` records it) in
/// which `suites` ran, each with 3 passing tests, then the doc tests.
fn cargo_output(suites: &[String]) -> String {
    let mut out = String::from("    Finished `release` profile [optimized] target(s) in 0.30s\n");
    for s in suites {
        out += &format!("     Running {s} (target/release/deps/x-0123456789abcdef)\n\n");
        out += "running 3 tests\ntest a ... ok\ntest b ... ok\ntest c ... ok\n\n";
        out += "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
                finished in 0.01s\n\n";
    }
    out += "   Doc-tests logflow\n\nrunning 2 tests\ntest src/lib.rs - a (line 3) ... ok\n";
    out +=
        "test src/lib.rs - b (line 9) ... ok\n\ntest result: ok. 2 passed; 0 failed; 0 ignored; \
            0 measured; 0 filtered out; finished in 0.20s\n\n";
    out
}

fn summary(dir: &Path, log: &str, skips: &Path, strict: bool) -> (Output, String) {
    let path = dir.join("cargo-test.log");
    std::fs::write(&path, log).unwrap();
    let out = std::process::Command::new(repo().join("scripts/test-summary"))
        .arg(&path)
        .arg(skips)
        .env("LOGFLOW_TEST_STRICT", if strict { "1" } else { "0" })
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn skip_leaves_a_marker_naming_the_test_and_the_reason() {
    let dir = tmpdir("skips-marker");
    skip_into(&dir, "no\tsuch file:\n/x/y");
    skip_into(&dir, "second");
    let text = std::fs::read_to_string(dir.join("skips")).unwrap();
    let test = "skip_leaves_a_marker_naming_the_test_and_the_reason";
    assert_eq!(
        text,
        format!("{test}\tno such file: /x/y\n{test}\tsecond\n")
    );
}

#[test]
fn a_full_clean_run_passes_even_when_strict() {
    let dir = tmpdir("skips-clean");
    let suites = required_suites();
    assert!(suites.contains(&"tests/skips.rs".to_string()), "{suites:?}");
    assert!(
        suites.contains(&"tests/oracle/main.rs".to_string()),
        "{suites:?}"
    );
    let (out, text) = summary(&dir, &cargo_output(&suites), &dir.join("none"), true);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every suite ran; no test skipped"), "{text}");
    // One row per suite: name, passed, failed, ignored, filtered.
    let row = |suite: &str| {
        text.lines()
            .find(|l| l.starts_with(suite) && l[suite.len()..].starts_with(' '))
            .map(|l| l[suite.len()..].split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(row("tests/bad_input.rs"), Some(vec!["3", "0", "0", "0"]));
    assert_eq!(row("src/lib.rs"), Some(vec!["3", "0", "0", "0"]));
    assert_eq!(row("doc-tests logflow"), Some(vec!["2", "0", "0", "0"]));
}

#[test]
fn a_skip_is_listed_and_fails_a_strict_run() {
    let dir = tmpdir("skips-skipped");
    let skips = dir.join("skips");
    skip_into(&skips, "cannot make network namespaces: not root");
    let log = cargo_output(&required_suites());
    let (out, text) = summary(&dir, &log, &skips, false);
    assert!(out.status.success(), "{text}");
    let line = "  skips: a_skip_is_listed_and_fails_a_strict_run: \
                cannot make network namespaces: not root";
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(text.contains("NOT CHECKED: 1 test(s) skipped"), "{text}");

    let (out, text) = summary(&dir, &log, &skips, true);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.lines().any(|l| l == line), "{text}");
}

#[test]
fn a_suite_that_did_not_run_fails_a_strict_run() {
    let dir = tmpdir("skips-missing");
    let suites: Vec<String> = required_suites()
        .into_iter()
        .filter(|s| s != "tests/netns.rs")
        .collect();
    let log = cargo_output(&suites);
    let (out, text) = summary(&dir, &log, &dir.join("none"), false);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l == "not in this run: tests/netns.rs"),
        "{text}"
    );
    let (out, text) = summary(&dir, &log, &dir.join("none"), true);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "NOT CHECKED: tests/netns.rs did not run"),
        "{text}"
    );
}

#[test]
fn ignored_filtered_crashed_and_empty_suites_are_reported() {
    let dir = tmpdir("skips-ignored");
    let mut log = cargo_output(&required_suites());
    // The lib's suite with an ignored test and a filter; a crashed binary; an empty one.
    log = log.replacen(
        "test c ... ok\n\ntest result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; \
         0 filtered out;",
        "test c ... ignored, measures speed; run in release\ntest d ... ignored\n\n\
         test result: ok. 2 passed; 0 failed; 2 ignored; 0 measured; 5 filtered out;",
        1,
    );
    log += "     Running tests/crashed.rs (target/release/deps/crashed-0123456789abcdef)\n\n\
            running 1 test\nerror: test failed, to rerun pass `--test crashed`\n";
    log += "     Running tests/empty.rs (target/release/deps/empty-0123456789abcdef)\n\n\
            running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; \
            0 filtered out; finished in 0.00s\n";
    let (out, text) = summary(&dir, &log, &dir.join("none"), false);
    assert!(out.status.success(), "{text}");
    for line in [
        "ignored (not run):",
        "  src/lib.rs: c (measures speed; run in release)",
        "  src/lib.rs: d",
        "NOT CHECKED: tests/crashed.rs gave no result",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("src/lib.rs "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["src/lib.rs", "2", "0", "2", "5"]);
    // An empty suite is not required, so it's only listed; a filter fails only a strict run.
    assert!(!text.contains("filtered out 5"), "{text}");
    let (out, text) = summary(&dir, &log, &dir.join("none"), true);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "NOT CHECKED: src/lib.rs filtered out 5 test(s)"),
        "{text}"
    );
}
