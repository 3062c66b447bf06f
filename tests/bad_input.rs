//! Bad input never stops a job: every bad record goes to the dead-letter output with its
//! original bytes, the reason and its position, and the accounting identity holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use base64::Engine;
use common::{accounting, read_jsonl, run_file, run_ok, tmpdir};
use serde_json::Value;

fn good(sec: u32, service: &str, status: u32) -> Vec<u8> {
    format!(
        r#"{{"timestamp":"2026-11-24T10:00:{sec:02}Z","level":"INFO","service":"{service}","message":"ok","ip_address":"10.0.0.1","user_id":"u1","request_id":"r{sec}","response_time":0.25,"status_code":{status},"error_code":null}}"#
    )
    .into_bytes()
}

#[test]
fn every_bad_record_is_dead_lettered_with_bytes_reason_and_position() {
    let dir = tmpdir("bad-input");
    let mut huge = br#"{"timestamp":"2026-11-24T10:00:30Z","message":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    huge.extend_from_slice(br#""}"#);
    // (line bytes, the exact dead-letter reason if the line is bad): one line per kind of damage
    // the generator writes (src/gen/logs.rs `Damage`), and a few more.
    const RFC3339: &str = "timestamp: not an RFC 3339 timestamp with time and zone:";
    let lines: Vec<(Vec<u8>, Option<String>)> = vec![
        (good(1, "api", 200), None),
        // Garbage
        (
            b"this is not json at all".to_vec(),
            Some("invalid JSON: expected ident at line 1 column 2".into()),
        ),
        // Truncated
        (
            br#"{"timestamp":"2026-11-24T10:00:02Z","service":"api","#.to_vec(),
            Some("truncated JSON: EOF while parsing a value at line 1 column 52".into()),
        ),
        // StatusString
        (
            br#"{"timestamp":"2026-11-24T10:00:03Z","service":"api","status_code":"500"}"#.to_vec(),
            Some(
                "status_code: invalid type: string \"500\", expected an integer or null \
                 at line 1 column 71"
                    .into(),
            ),
        ),
        // ResponseTimeString
        (
            br#"{"timestamp":"2026-11-24T10:00:04Z","response_time":"fast"}"#.to_vec(),
            Some(
                "response_time: invalid type: string \"fast\", expected a number or null \
                 at line 1 column 58"
                    .into(),
            ),
        ),
        // NoTimestamp, NullTimestamp
        (
            br#"{"service":"api","status_code":200}"#.to_vec(),
            Some("missing timestamp at line 1 column 35".into()),
        ),
        (
            br#"{"timestamp":null,"service":"api"}"#.to_vec(),
            Some("missing timestamp at line 1 column 34".into()),
        ),
        // DateOnly
        (
            br#"{"timestamp":"2026-11-24","service":"api"}"#.to_vec(),
            Some(format!(r#"{RFC3339} "2026-11-24" at line 1 column 25"#)),
        ),
        // ImpossibleDate
        (
            br#"{"timestamp":"2026-02-30T10:00:00Z","service":"api"}"#.to_vec(),
            Some(format!(
                r#"{RFC3339} "2026-02-30T10:00:00Z" at line 1 column 35"#
            )),
        ),
        // AccessLogTime
        (
            br#"{"timestamp":"24/Nov/2026:10:00:05 +0000","service":"api"}"#.to_vec(),
            Some(format!(
                r#"{RFC3339} "24/Nov/2026:10:00:05 +0000" at line 1 column 41"#
            )),
        ),
        // Not UTF-8 in a field the job reads (the first bad byte is 47).
        (
            b"{\"timestamp\":\"2026-11-24T10:00:06Z\",\"service\":\"\xff\xfeapi\"}".to_vec(),
            Some("not valid UTF-8 at byte 47".into()),
        ),
        // NotAnObject (an array)
        (
            b"[1,2,3]".to_vec(),
            Some("invalid type: sequence, expected a JSON object at line 1 column 0".into()),
        ),
        // Over the record size limit (1 MiB by default).
        (
            huge,
            Some("record too long: 10485809 bytes (limit 1048576)".into()),
        ),
        (good(7, "web", 503), None),
        (Vec::new(), None), // a blank line is not a record
        (good(8, "api", 404), None),
        // Binary (a gzip fragment: 0x8b is not UTF-8)
        (
            b"\x1f\x8b\x08\x00\x9c\xa5\xf3\x81\xc0\xde\x90\xe4".to_vec(),
            Some("not valid UTF-8 at byte 1".into()),
        ),
        // NotAnObject (a string)
        (
            br#""heartbeat ok""#.to_vec(),
            Some(
                "invalid type: string \"heartbeat ok\", expected a JSON object \
                 at line 1 column 14"
                    .into(),
            ),
        ),
        // NaiveTime, both forms (no zone)
        (
            br#"{"timestamp":"2026-11-24T10:00:09","service":"api"}"#.to_vec(),
            Some(format!(
                r#"{RFC3339} "2026-11-24T10:00:09" at line 1 column 34"#
            )),
        ),
        (
            br#"{"timestamp":"2026-11-24 10:00:09.500","service":"api"}"#.to_vec(),
            Some(format!(
                r#"{RFC3339} "2026-11-24 10:00:09.500" at line 1 column 38"#
            )),
        ),
        // NonUtf8 (Latin-1 in the message, a field the job does not keep)
        (
            b"{\"timestamp\":\"2026-11-24T10:00:10Z\",\
              \"message\":\"Upload failed for r\xe9sum\xe9_7.pdf\"}"
                .to_vec(),
            Some("not valid UTF-8 at byte 66".into()),
        ),
    ];
    let mut input = Vec::new();
    for (l, _) in &lines {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    let path = dir.join("input.log");
    std::fs::write(&path, &input).unwrap();
    let out_dir = dir.join("out");
    let out = run_file("dataflows/log-analysis.toml", &path, &out_dir, "2");

    let bad: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, reason))| reason.is_some())
        .map(|(i, _)| i + 1)
        .collect();
    let acc = accounting(&out.stderr);
    assert_eq!(acc["read"], 20, "{acc:?}");
    assert_eq!(acc["dead_letter"], bad.len() as u64);
    assert_eq!(acc["parsed"], 3);
    assert_eq!(acc["read"], acc["parsed"] + acc["dead_letter"]);
    assert_eq!(acc["parsed"], acc["on_time"] + acc["late"]);

    let dead = read_jsonl(&out_dir.join("log-analysis.dead-letter.jsonl"));
    assert_eq!(dead.len(), bad.len());
    let mut seen_lines: Vec<usize> = Vec::new();
    for d in &dead {
        let line = d["position"]["line"].as_u64().unwrap() as usize;
        assert_eq!(d["position"]["file"], path.to_str().unwrap());
        let (original, reason) = &lines[line - 1];
        assert_eq!(d["reason"].as_str(), reason.as_deref(), "line {line}");
        if let Some(raw) = d["raw"].as_str() {
            if d["truncated"] == Value::Bool(true) {
                assert_eq!(d["length"].as_u64().unwrap() as usize, original.len());
                assert!(original.starts_with(raw.as_bytes()));
                assert!(raw.len() < original.len());
            } else {
                assert_eq!(raw.as_bytes(), &original[..], "line {line}");
            }
        } else {
            let b64 = d["raw_base64"].as_str().expect("raw or raw_base64");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(&bytes, original, "line {line}");
        }
        seen_lines.push(line);
    }
    seen_lines.sort();
    assert_eq!(seen_lines, bad);

    // The good records still made it through.
    let health = read_jsonl(&out_dir.join("system_health.jsonl"));
    assert_eq!(health.len(), 1);
    assert_eq!(health[0]["total_requests"], 3);
    assert_eq!(health[0]["error_count"], 2);
}

#[test]
fn reading_from_stdin_works_and_an_empty_input_gives_no_rows() {
    let dir = tmpdir("stdin-input");
    let out_dir = dir.join("out");
    let mut child = common::bin()
        .args([
            "run",
            "dataflows/log-analysis.toml",
            "--input",
            "-",
            "--output-dir",
            out_dir.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&good(1, "api", 200)).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(accounting(&out.stderr)["parsed"], 1);
    assert_eq!(read_jsonl(&out_dir.join("response_time.jsonl")).len(), 1);

    let empty = dir.join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    let out_dir2 = dir.join("out2");
    let out = run_ok(&[
        "run",
        "dataflows/log-analysis.toml",
        "--input",
        empty.to_str().unwrap(),
        "--output-dir",
        out_dir2.to_str().unwrap(),
    ]);
    assert_eq!(accounting(&out.stderr)["read"], 0);
    assert!(read_jsonl(&out_dir2.join("response_time.jsonl")).is_empty());
}

/// A spec whose one analysis filters with `expr` (a log-analysis job over a file).
fn spec_with_where(dir: &std::path::Path, name: &str, expr: &str) -> std::path::PathBuf {
    let spec = dir.join(name);
    let text = format!(
        "name = \"deep\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\nformat = \"json\"\n\n\
         [[analysis]]\nname = \"x\"\nwindow = {{ size = \"1m\" }}\nwhere = \"{expr}\"\n\
         select = [\"count() as c\"]\n"
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

#[test]
fn deeply_nested_expressions_are_a_spec_error_not_a_crash() {
    let dir = tmpdir("deep-expr");
    // A 6 KB spec of nested parentheses, and the flat and prefix forms that nest as deep.
    let cases = [
        format!("{}1{} = 1", "(".repeat(3000), ")".repeat(3000)),
        vec!["1"; 20_000].join("+"),
        format!("{}true", "not ".repeat(20_000)),
    ];
    for (i, expr) in cases.iter().enumerate() {
        let spec = spec_with_where(&dir, &format!("deep{i}.toml"), expr);
        for cmd in ["check", "run"] {
            let out = common::bin()
                .args([cmd, spec.to_str().unwrap()])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} case {i}: {err}");
            let want = format!(
                "{}:10:9: where: expression nested deeper than 128 levels",
                spec.display()
            );
            assert!(err.contains(&want), "{cmd} case {i}: {err}");
        }
    }
    // At the limit it is an expression like any other.
    let ok = spec_with_where(&dir, "ok.toml", &vec!["1"; 128].join("+"));
    run_ok(&["check", ok.to_str().unwrap()]);
}

#[test]
fn inputs_and_tables_that_are_not_files_are_refused_with_a_clear_error() {
    let dir = tmpdir("not-a-file");
    let out = common::bin()
        .args(["run", "dataflows/log-analysis.toml", "--input"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: is a directory", dir.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A lookup table of /dev/zero: refused before any read (it used to exhaust memory).
    let spec = dir.join("zero-lookup.toml");
    std::fs::write(
        &spec,
        "name = \"z\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\nformat = \"json\"\n\n\
         [[lookup]]\nname = \"zero\"\npath = \"/dev/zero\"\nformat = \"csv\"\nkey = \"service\"\n\
         on = \"service\"\nfields = [\"team\"]\n\n[[analysis]]\nname = \"x\"\nwindow = { size = \"1m\" }\n\
         select = [\"count() as c\"]\n",
    )
    .unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, good(1, "api", 200)).unwrap();
    let started = std::time::Instant::now();
    let out = common::bin()
        .args(["run", spec.to_str().unwrap(), "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("lookup `zero`: /dev/zero: not a regular file"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// The control endpoint of this file's cluster: `LOGFLOW_IT_CONTROL_PORT` plus an offset no
/// other test file uses.
fn control() -> String {
    let port: u16 = std::env::var("LOGFLOW_IT_CONTROL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19479);
    format!("127.0.0.1:{}", port + 12)
}

#[test]
fn a_job_reading_an_endless_stream_without_records_can_be_cancelled() {
    use common::cluster::Proc;
    use std::time::{Duration, Instant};
    let dir = tmpdir("endless-stream");
    // A regular file of 1 TiB of zeros (sparse, so it costs no disk): no newline, no record,
    // read as fast as /dev/zero. The worker must still see the cancel and the SIGTERM.
    let zeros = dir.join("zeros.log");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let spec = "dataflows/log-analysis.toml";
    let addr = control();
    let mut c = common::bin();
    c.args(["cluster", "start", "-n", "1", "-w", "1", "--control", &addr])
        .arg("--allow-dir")
        .arg(&dir);
    let mut cluster = Proc::spawn(c, &dir, "cluster", std::process::Stdio::null());
    cluster.wait_for("control endpoint at", Duration::from_secs(60));
    let cli = |args: &[&str]| {
        common::bin()
            .args(args)
            .args(["--cluster", &addr])
            .output()
            .unwrap()
    };
    let out = cli(&[
        "submit",
        spec,
        "--input",
        zeros.to_str().unwrap(),
        "--output-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The worker is reading: the over-long first line is counted.
    let started = Instant::now();
    loop {
        let jobs = cli(&["jobs", "--json"]);
        if String::from_utf8_lossy(&jobs.stdout).contains(r#""records_in":1"#) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no reads");
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let out = cli(&["cancel", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = cli(&["jobs", "--json"]);
    let listed = String::from_utf8_lossy(&jobs.stdout);
    assert!(listed.contains(r#""state":"cancelled""#), "{listed}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // And the cluster stops on SIGTERM.
    let asked = Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &cluster.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = cluster.wait(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}:\n{}",
        cluster.stderr_text()
    );
    assert!(asked.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_event_from_the_far_future_is_a_dead_letter_and_moves_no_watermark() {
    use common::rows::{assert_same_results, dir_results};
    let dir = tmpdir("future-event");
    let generated = dir.join("logs.jsonl");
    common::kafka::gen("logs", "20000", &[], &generated);
    let bytes = std::fs::read(&generated).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // Line 1001 of both inputs: an empty line (no record) or the record stamped 9e18 ms, so
    // every other record keeps its line number.
    let future = r#"{"timestamp":9000000000000000000,"service":"api","status_code":500,"response_time":1.0}"#;
    let with = |middle: &str| {
        let mut all: Vec<&[u8]> = lines[..1000].to_vec();
        all.push(middle.as_bytes());
        all.extend_from_slice(&lines[1000..]);
        let mut text = all.join(&b'\n');
        text.push(b'\n');
        text
    };
    // One path for both runs, as dead letters name it.
    let input = dir.join("input.jsonl");
    let (want_dir, got_dir) = (dir.join("want"), dir.join("got"));
    std::fs::write(&input, with("")).unwrap();
    let want_run = run_file("dataflows/log-analysis.toml", &input, &want_dir, "2");
    std::fs::write(&input, with(future)).unwrap();
    let got_run = run_file("dataflows/log-analysis.toml", &input, &got_dir, "2");
    let (want_acc, got_acc) = (accounting(&want_run.stderr), accounting(&got_run.stderr));
    assert_eq!(got_acc["read"], want_acc["read"] + 1);
    assert_eq!(got_acc["dead_letter"], want_acc["dead_letter"] + 1);
    for k in ["parsed", "on_time", "late"] {
        assert_eq!(got_acc[k], want_acc[k], "{k}");
    }
    assert!(want_acc["on_time"] > 19_000, "{want_acc:?}");

    // The one dead letter more names the reason and the line.
    let dead_file = "log-analysis.dead-letter";
    let mut got = dir_results(&got_dir);
    let mut want = dir_results(&want_dir);
    let got_dead = got.remove(dead_file).unwrap();
    let want_dead = want.remove(dead_file).unwrap();
    let extra: Vec<Value> = got_dead
        .iter()
        .filter(|r| !want_dead.contains(r))
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(got_dead.len(), want_dead.len() + 1);
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert_eq!(extra[0]["position"]["line"], 1001);
    assert_eq!(extra[0]["raw"], future);
    assert!(
        extra[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("timestamp in the future: 9000000000000000000 is more than 1h ahead"),
        "{}",
        extra[0]
    );
    // Every other output is the same as without the record.
    assert_same_results(&got, &want, "with a record from the future");
}
