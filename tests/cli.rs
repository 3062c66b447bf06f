//! Command-line behaviour: exit codes and one-line causes (docs/design.md section 6), spec errors
//! that name the file, line and field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{bin, repo, tmpdir};

#[test]
fn check_accepts_the_shipped_specs() {
    for spec in ["dataflows/log-analysis.toml", "dataflows/user-events.toml"] {
        let out = bin().args(["check", spec]).output().unwrap();
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(": ok"), "{text}");
    }
}

/// `logflow check SPEC | head`: stdout's reader has gone before `check` writes (the reader of
/// the pipe is `true`, which exits at once; `check` starts half a second later). That is
/// success for a Unix filter, not a panic.
#[test]
fn check_into_a_closed_pipe_succeeds() {
    let script = format!(
        "{{ sleep 0.5; '{}' check dataflows/log-analysis.toml; echo \"status=$?\" >&2; }} | true",
        env!("CARGO_BIN_EXE_logflow")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim(), "status=0", "{err}");
}

#[test]
fn bad_spec_exits_2_naming_file_line_and_field() {
    let dir = tmpdir("cli-bad-spec");
    let cases = [
        ("unknown-field.toml", "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\nbogus = 1\n", ":6:", "bogus"),
        (
            "bad-window.toml",
            "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n[[analysis]]\nname = \"a\"\nwindow = { size = \"ten minutes\" }\nselect = [\"count() as n\"]\n",
            ":8:",
            "window.size",
        ),
        (
            "bad-expr.toml",
            "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\n  \"count() as n\",\n  \"avg(latency) as l\",\n]\n",
            ":11:",
            "select",
        ),
    ];
    for (file, text, line, field) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        for cmd in ["check", "run"] {
            let out = bin().arg(cmd).arg(&path).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd} {file}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim().lines().count(), 1, "one-line cause: {err}");
            assert!(
                err.contains(file) && err.contains(line) && err.contains(field),
                "{file}: {err}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let out = bin().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args([
            "run",
            "dataflows/log-analysis.toml",
            "--input",
            "/nonexistent/input.log",
            "--output-dir",
        ])
        .arg(tmpdir("cli-missing-input"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/input.log"));
}

#[test]
fn help_mentions_the_cluster_options() {
    let out = bin().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // Whole option lines: `-h` must be the hostfile (not a substring of `--help`), `-n` the
    // process count (not any long flag with an n).
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for option in [
        "-w, --threads <THREADS>",
        "-n, --processes <PROCESSES>",
        "-p, --process <PROCESS>",
        "-h, --hostfile <HOSTFILE>",
        "--input <INPUT>",
        "--output-dir <DIR>",
    ] {
        assert!(lines.contains(&option), "{option} missing from:\n{text}");
    }
}
