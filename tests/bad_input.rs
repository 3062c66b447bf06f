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
