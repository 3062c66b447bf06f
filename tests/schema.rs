//! User-defined schemas (`[schema]`, issue 22): the same generated events written in three
//! other shapes (nested JSON with epoch-second fractions, nginx-json with `$time_local` and
//! numbers as strings, logfmt-like text lines read by a regex with `-` as null) give every
//! analysis of `dataflows/log-analysis.toml` the rows the built-in `json` format gives, with a
//! hand-written schema and with the one `logflow schema infer` prints; bad records are dead
//! letters naming field and path; bad schemas exit 2 naming file, line and field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};

use common::{accounting, bin, read_jsonl, repo, run_ok, tmpdir};
use serde_json::{json, Value};

const ANALYSES: [&str; 11] = [
    "response_time",
    "error_rate",
    "ip_patterns",
    "ddos",
    "sla",
    "user_activity",
    "service_popularity",
    "system_health",
    "response_time_anomalies",
    "error_rate_spikes",
    "suspicious_ips",
];

const NESTED_SCHEMA: &str = r#"
[schema]
timestamp = { path = "ts", format = "epoch_seconds" }

[schema.fields]
level = "log.level"
message = "log.message"
service = "request.service"
request_id = "request.request_id"
response_time = { path = "request.duration", type = "float" }
status_code = { path = "request.status", type = "int" }
ip_address = "client.ip"
user_id = "client.user_id"
"#;

const NGINX_SCHEMA: &str = r#"
[schema]
timestamp = { path = "time_local", format = "%d/%b/%Y:%H:%M:%S %z" }

[schema.fields]
ip_address = "remote_addr"
user_id = "remote_user"
status_code = { path = "status", type = "int" }
response_time = { path = "request_time", type = "float" }
"#;

const TEXT_SCHEMA: &str = r#"
[schema]
pattern = '(?P<time>\S+) level=(?P<level>\S+) service=(?P<service>\S+) ip=(?P<ip_address>\S+) user=(?P<user_id>\S+) status=(?P<status_code>\S+) duration=(?P<response_time>\S+) request_id=(?P<request_id>\S+) msg="(?P<message>[^"]*)"'
null = "-"
timestamp = { path = "time", format = "rfc3339" }
"#;

/// Generated events as JSON objects, with their event time in ms (the generator's bad lines
/// are left out: every shape gets the same good events).
fn events(dir: &Path) -> Vec<(i64, Value)> {
    let path = dir.join("gen.jsonl");
    run_ok(&[
        "gen",
        "--events",
        "20000",
        "--output",
        path.to_str().unwrap(),
    ]);
    // The generator's bad lines include non-UTF-8 bytes.
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(ts) = v["timestamp"].as_str() else {
            continue;
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
            continue;
        };
        // The generator's wrong-type lines are left out too.
        let str_or_null = |k: &str| v[k].is_string() || v[k].is_null();
        let typed = [
            "level",
            "service",
            "message",
            "ip_address",
            "user_id",
            "request_id",
        ]
        .iter()
        .all(|k| str_or_null(k))
            && str_or_null("error_code")
            && (v["response_time"].is_number() || v["response_time"].is_null())
            && (v["status_code"].is_i64() || v["status_code"].is_null());
        if typed && v.as_object().is_some_and(|o| o.len() == 10) {
            out.push((t.timestamp_millis(), v));
        }
    }
    assert!(out.len() > 18_000, "{} good events", out.len());
    out
}

fn write(dir: &Path, name: &str, lines: impl Iterator<Item = String>) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.map(|l| l + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `dataflows/log-analysis.toml` reading `format` with `schema` added.
fn spec(dir: &Path, name: &str, format: &str, schema: &str) -> PathBuf {
    let base = std::fs::read_to_string(repo().join("dataflows/log-analysis.toml")).unwrap();
    assert!(base.contains("format = \"json\""));
    let text =
        base.replacen("format = \"json\"", &format!("format = \"{format}\""), 1) + "\n" + schema;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a spec on a file; the accounting line and the output directory.
fn run(spec: &Path, input: &Path, out: &Path) -> std::collections::BTreeMap<String, u64> {
    let o = run_ok(&[
        "run",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "-w",
        "2",
    ]);
    accounting(&o.stderr)
}

fn sorted_rows(path: &Path) -> Vec<String> {
    let mut rows: Vec<String> = read_jsonl(path).iter().map(Value::to_string).collect();
    rows.sort();
    rows
}

/// Every analysis of `got` equals `want`'s, row for row; some analyses have rows.
fn assert_same_results(want: &Path, got: &Path, what: &str) {
    let mut total = 0;
    for a in ANALYSES {
        let file = format!("{a}.jsonl");
        let (w, g) = (
            sorted_rows(&want.join(&file)),
            sorted_rows(&got.join(&file)),
        );
        assert_eq!(w.len(), g.len(), "{what}: {a}: row count");
        for (x, y) in w.iter().zip(&g) {
            assert_eq!(x, y, "{what}: {a}");
        }
        total += w.len();
    }
    assert!(total > 100, "{what}: only {total} rows");
}

fn dead_reasons(out: &Path, job: &str) -> Vec<String> {
    read_jsonl(&out.join(format!("{job}.dead-letter.jsonl")))
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect()
}

fn infer(input: &Path, format: &str) -> String {
    let o = run_ok(&[
        "schema",
        "infer",
        input.to_str().unwrap(),
        "--format",
        format,
        "--lines",
        "500",
    ]);
    String::from_utf8(o.stdout).unwrap()
}

fn nested_line(ms: i64, v: &Value) -> String {
    let body = json!({
        "log": {"level": v["level"], "message": v["message"]},
        "request": {
            "service": v["service"], "request_id": v["request_id"],
            "duration": v["response_time"], "status": v["status_code"],
        },
        "client": {"ip": v["ip_address"], "user_id": v["user_id"]},
        "error_code": v["error_code"],
    })
    .to_string();
    // Epoch seconds with the milliseconds as a decimal fraction, written as a JSON number.
    format!(
        "{{\"ts\":{}.{:03},{}",
        ms.div_euclid(1000),
        ms.rem_euclid(1000),
        &body[1..]
    )
}

fn nginx_line(ms: i64, v: &Value) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    // nginx writes numbers as strings.
    let text = |x: &Value| match x {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        n => Value::String(n.to_string()),
    };
    json!({
        "time_local": t.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        "remote_addr": v["ip_address"], "remote_user": v["user_id"],
        "status": text(&v["status_code"]), "request_time": text(&v["response_time"]),
        "service": v["service"], "level": v["level"], "request_id": v["request_id"],
        "message": v["message"],
    })
    .to_string()
}

fn text_line(v: &Value) -> String {
    let f = |x: &Value| match x {
        Value::Null => "-".to_string(),
        Value::String(s) => {
            assert!(!s.contains([' ', '"']) && s != "-", "{s}");
            s.clone()
        }
        n => n.to_string(),
    };
    // `msg="..."` cannot hold a double quote: the message (which no analysis of the job
    // reads) has single ones instead.
    let msg = v["message"].as_str().unwrap().replace('"', "'");
    format!(
        "{} level={} service={} ip={} user={} status={} duration={} request_id={} msg=\"{msg}\"",
        v["timestamp"].as_str().unwrap(),
        f(&v["level"]),
        f(&v["service"]),
        f(&v["ip_address"]),
        f(&v["user_id"]),
        f(&v["status_code"]),
        f(&v["response_time"]),
        f(&v["request_id"]),
    )
}

#[test]
fn three_shapes_give_the_built_in_json_results_with_written_and_inferred_schemas() {
    let dir = tmpdir("schema-shapes");
    let evs = events(&dir);
    // The references: the built-in format on the same events (for nginx-json, whose
    // `$time_local` has whole seconds, with times cut to the second).
    let reference = write(&dir, "ref.jsonl", evs.iter().map(|(_, v)| v.to_string()));
    let reference_s = write(
        &dir,
        "ref-s.jsonl",
        evs.iter().map(|(ms, v)| {
            let mut v = v.clone();
            v["timestamp"] = json!(ms - ms.rem_euclid(1000));
            v.to_string()
        }),
    );
    let base = repo().join("dataflows/log-analysis.toml");
    let ref_out = dir.join("ref-out");
    let ref_acc = run(&base, &reference, &ref_out);
    let ref_s_out = dir.join("ref-s-out");
    let ref_s_acc = run(&base, &reference_s, &ref_s_out);
    assert_eq!(ref_acc["parsed"], evs.len() as u64);

    struct Shape {
        name: &'static str,
        format: &'static str,
        schema: &'static str,
        lines: Vec<String>,
        bad: Vec<(&'static str, &'static str)>,
    }
    let shapes = [
        Shape {
            name: "nested",
            format: "json",
            schema: NESTED_SCHEMA,
            lines: evs.iter().map(|(ms, v)| nested_line(*ms, v)).collect(),
            bad: vec![
                (
                    r#"{"ts":"soon","request":{"service":"api"}}"#,
                    "timestamp (path `ts`)",
                ),
                (
                    r#"{"ts":1795514400.5,"request":{"status":"abc"}}"#,
                    "field `status_code` (path `request.status`): expected int, found \"abc\"",
                ),
                (
                    r#"{"ts":1795514400.5,"client":{"ip":7}}"#,
                    "field `ip_address` (path `client.ip`): expected string, found 7",
                ),
            ],
        },
        Shape {
            name: "nginx",
            format: "json",
            schema: NGINX_SCHEMA,
            lines: evs.iter().map(|(ms, v)| nginx_line(*ms, v)).collect(),
            bad: vec![
                (
                    r#"{"time_local":"24/Nov/2026:10:00:00 +0000","status":"4o4"}"#,
                    "field `status_code` (path `status`): expected int, found \"4o4\"",
                ),
                (
                    r#"{"time_local":"2026-11-24 10:00:00","status":"404"}"#,
                    "timestamp (path `time_local`)",
                ),
            ],
        },
        Shape {
            name: "text",
            format: "regex",
            schema: TEXT_SCHEMA,
            lines: evs.iter().map(|(_, v)| text_line(v)).collect(),
            bad: vec![
                ("garbage", "the line does not match the schema pattern"),
                (
                    r#"2026-11-24T10:00:00Z level=INFO service=a ip=1 user=- status=2xx duration=- request_id=r msg="m""#,
                    "field `status_code` (path `(?P<status_code>)`)",
                ),
            ],
        },
    ];
    for shape in &shapes {
        let (want, want_acc) = if shape.name == "nginx" {
            (&ref_s_out, &ref_s_acc)
        } else {
            (&ref_out, &ref_acc)
        };
        // Good records first, then the bad ones (dead letters, which change no window).
        let input = write(
            &dir,
            &format!("{}.in", shape.name),
            shape
                .lines
                .iter()
                .cloned()
                .chain(shape.bad.iter().map(|(l, _)| l.to_string())),
        );
        // The schema written by hand.
        let spec_path = spec(
            &dir,
            &format!("{}.toml", shape.name),
            shape.format,
            shape.schema,
        );
        let out = dir.join(format!("{}-out", shape.name));
        let acc = run(&spec_path, &input, &out);
        assert_eq!(acc["parsed"], want_acc["parsed"], "{}", shape.name);
        assert_eq!(acc["late"], want_acc["late"], "{}", shape.name);
        assert_eq!(
            acc["dead_letter"],
            want_acc["dead_letter"] + shape.bad.len() as u64,
            "{}",
            shape.name
        );
        assert_same_results(want, &out, shape.name);
        let reasons = dead_reasons(&out, "log-analysis");
        for (line, reason) in &shape.bad {
            assert!(
                reasons.iter().any(|r| r.contains(reason)),
                "{}: no dead letter `{reason}` for {line} among {reasons:?}",
                shape.name
            );
        }

        // The schema `logflow schema infer` prints for the same file.
        let fmt = if shape.format == "regex" {
            "regex"
        } else {
            "json"
        };
        let inferred = infer(&input, fmt);
        let spec_path = spec(
            &dir,
            &format!("{}-inferred.toml", shape.name),
            shape.format,
            &inferred,
        );
        let out = dir.join(format!("{}-inferred-out", shape.name));
        let acc = run(&spec_path, &input, &out);
        assert_eq!(
            acc["parsed"], want_acc["parsed"],
            "{}: inferred:\n{inferred}",
            shape.name
        );
        assert_same_results(want, &out, &format!("{} (inferred)", shape.name));
    }
}

/// `logflow check` on a spec with `schema`; its exit code and stderr.
fn check(dir: &Path, name: &str, format: &str, schema: &str) -> (i32, String, String) {
    let text = format!(
        "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"{format}\"\n{schema}\n\
         [[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\n\
         select = [\"count() as n\"]\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let o = bin()
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_resolved_schema() {
    let dir = tmpdir("schema-check");
    let (code, out, err) = check(
        &dir,
        "ok.toml",
        "json",
        "[schema]\ntimestamp = { path = \"ts\", format = \"epoch_seconds\" }\n[schema.fields]\n\
         service = \"request.host\"\nbytes = { path = \"size\", type = \"int\" }\n",
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "timestamp <- ts (epoch_seconds)",
        "service <- request.host (string)",
        "bytes <- size (int)",
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }
}

#[test]
fn bad_schemas_exit_2_naming_file_line_and_field() {
    let dir = tmpdir("schema-bad");
    // The schema starts on line 6 of the spec `check` writes.
    for (i, (format, schema, line, field, msg)) in [
        (
            "json",
            "[schema]\n[schema.fields]\nbytes = { path = \"size\", type = \"integer\" }\n",
            8,
            "schema.fields.bytes",
            "unknown type `integer`",
        ),
        (
            "json",
            "[schema]\n[schema.fields]\nservice = \"request..host\"\n",
            8,
            "schema.fields.service",
            "bad path",
        ),
        (
            "regex",
            "[schema]\npattern = '(?P<time>\\S+) (?P<svc>\\S+)'\ntimestamp = { path = \"time\" }\n[schema.fields]\nservice = \"service\"\n",
            10,
            "schema.fields.service",
            "no named group `service`",
        ),
        (
            "regex",
            "[schema]\npattern = '(?P<time>\\S+'\n",
            7,
            "schema.pattern",
            "does not compile",
        ),
        (
            "json",
            "[schema]\ntimestamp = { path = \"ts\", format = \"iso8601\" }\n",
            7,
            "schema.timestamp.format",
            "unknown timestamp format `iso8601`",
        ),
        (
            "regex",
            "[schema]\npattern = '(?P<time>\\S+) (?P<svc>\\S+)'\ntimestamp = { path = \"time\" }\n",
            13,
            "group_by",
            "service",
        ),
        (
            "json",
            "[schema]\n[schema.fields]\nservice = { path = \"x\", typ = \"int\" }\n",
            8,
            "typ",
            "unknown field",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bad{i}.toml");
        let (code, _, err) = check(&dir, &name, format, schema);
        assert_eq!(code, 2, "{schema}: {err}");
        let at = format!("{}:{line}:", dir.join(&name).display());
        assert!(err.contains(&at), "{schema}: want `{at}` in: {err}");
        assert!(err.contains(field) && err.contains(msg), "{schema}: {err}");
    }
}

#[test]
fn the_examples_read_their_samples() {
    let dir = tmpdir("schema-examples");
    for (spec, sample) in [
        (
            "dataflows/examples/schema-nested-json.toml",
            "dataflows/examples/schema-nested-json.jsonl",
        ),
        (
            "dataflows/examples/schema-nginx-json.toml",
            "dataflows/examples/schema-nginx-json.jsonl",
        ),
        (
            "dataflows/examples/schema-regex.toml",
            "dataflows/examples/schema-regex.log",
        ),
    ] {
        let out = dir.join(spec.rsplit('/').next().unwrap());
        let o = run_ok(&[
            "run",
            spec,
            "--input",
            sample,
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        let acc = accounting(&o.stderr);
        let lines = std::fs::read_to_string(repo().join(sample))
            .unwrap()
            .lines()
            .count() as u64;
        assert_eq!(acc["read"], lines, "{spec}");
        assert_eq!(acc["parsed"], lines, "{spec}: every sample record reads");
        let rows: usize = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                !p.to_string_lossy().contains(".dead-letter")
                    && !p.to_string_lossy().contains(".late")
            })
            .map(|p| read_jsonl(&p).len())
            .sum();
        assert!(rows > 0, "{spec}: no results");
    }
}

#[test]
fn kafka_metadata_paths_on_a_real_broker() {
    let dir = tmpdir("schema-kafka");
    let b = common::kafka::Broker::start("schema-kafka-it");
    b.topic("meta", 2);
    // Payloads without a time: the record's timestamp is the event time, the key the service,
    // header `x` the tenant.
    let base = 1_795_514_400_000i64;
    let services = ["api", "web", "auth"];
    let tenants = ["t1", "t2", "t3", "t4"];
    let mut records = Vec::new();
    let mut want: std::collections::BTreeMap<(i64, String, String), (u64, i64, u64)> =
        Default::default();
    for i in 0..600i64 {
        let (svc, tenant, part) = (services[(i % 3) as usize], tenants[(i % 4) as usize], i % 2);
        let ts = base + i * 700;
        let status = if i % 5 == 0 { 500 } else { 200 };
        records.push(
            json!({
                "key": svc, "value": format!("{{\"status\":\"{status}\"}}"), "timestamp": ts,
                "headers": {"x": tenant, "other": "ignored"}, "partition": part,
            })
            .to_string(),
        );
        let w = want
            .entry((
                ts - ts.rem_euclid(60_000),
                svc.to_string(),
                tenant.to_string(),
            ))
            .or_default();
        w.0 += 1;
        w.1 += status;
        w.2 += u64::from(part == 1);
    }
    let file = write(&dir, "records.jsonl", records.into_iter());
    assert_eq!(
        b.client(&[
            "produce-records",
            &b.address,
            "meta",
            file.to_str().unwrap()
        ]),
        "600"
    );
    let spec = dir.join("meta.toml");
    std::fs::write(
        &spec,
        r#"name = "meta"
[source]
kind = "kafka"
topic = "meta"
format = "json"

[schema]
timestamp = { path = "@timestamp", format = "epoch_millis" }

[schema.fields]
service = "@key"
tenant = "@header.x"
part = { path = "@partition", type = "int" }
offset = { path = "@offset", type = "int" }
status_code = { path = "status", type = "int" }

[[analysis]]
name = "by_tenant"
window = { size = "1m" }
group_by = ["service", "tenant"]
select = ["count() as n", "sum(status_code) as status_sum", "count_if(part = 1) as in_p1", "min(offset) as first"]
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let o = b.run_to_end(&spec, &["--output-dir", out.to_str().unwrap(), "-w", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let acc = accounting(&o.stderr);
    assert_eq!((acc["read"], acc["parsed"]), (600, 600));
    let rows = read_jsonl(&out.join("by_tenant.jsonl"));
    let mut got: std::collections::BTreeMap<(i64, String, String), (u64, i64, u64)> =
        Default::default();
    for r in &rows {
        let start = chrono::DateTime::parse_from_rfc3339(r["window_start"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        let key = (
            start,
            r["service"].as_str().unwrap().to_string(),
            r["tenant"].as_str().unwrap().to_string(),
        );
        let v = (
            r["n"].as_u64().unwrap(),
            r["status_sum"].as_i64().unwrap(),
            r["in_p1"].as_u64().unwrap(),
        );
        assert!(r["first"].as_i64().unwrap() >= 0);
        assert!(got.insert(key, v).is_none());
    }
    assert_eq!(got, want);
}

/// A `bool` field groups like any other key (true, false and null are three groups), and a
/// pattern without an offset reads local times of an IANA zone across a daylight-saving
/// change: the window each event falls in is checked against hand-computed UTC times.
#[test]
fn bool_keys_and_named_time_zones() {
    let dir = tmpdir("schema-bool-tz");
    // Berlin local times; 2026-03-29 02:00 CET the clocks went forward to 03:00 CEST.
    let lines = [
        (r#""2026-03-29 01:10:00""#, "true"),
        (r#""2026-03-29 01:20:00""#, "false"),
        (r#""2026-03-29 03:05:00""#, "true"),
        (r#""2026-03-29 03:40:00""#, "null"),
        (r#""2026-03-29 03:50:00""#, "true"),
    ];
    let input = write(
        &dir,
        "flags.jsonl",
        lines
            .iter()
            .map(|(t, ok)| format!(r#"{{"t":{t},"ok":{ok},"svc":"api"}}"#)),
    );
    let spec_path = dir.join("flags.toml");
    std::fs::write(
        &spec_path,
        format!(
            r#"name = "flags"
[source]
kind = "file"
path = "{}"
format = "json"

[schema]
timestamp = {{ path = "t", format = "%Y-%m-%d %H:%M:%S", timezone = "Europe/Berlin" }}

[schema.fields]
ok = {{ path = "ok", type = "bool" }}
service = "svc"

[[analysis]]
name = "by_flag"
window = {{ size = "1h" }}
group_by = ["ok"]
select = ["count() as n"]
"#,
            input.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    run_ok(&[
        "run",
        spec_path.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    let mut got: Vec<(String, String, u64)> = read_jsonl(&out.join("by_flag.jsonl"))
        .iter()
        .map(|r| {
            (
                r["window_start"].as_str().unwrap().to_string(),
                r["ok"].to_string(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    // 01:10 and 01:20 CET are 00:10Z and 00:20Z; 03:05, 03:40, 03:50 CEST are 01:05Z...01:50Z.
    let want: Vec<(String, String, u64)> = [
        ("2026-03-29T00:00:00Z", "false", 1),
        ("2026-03-29T00:00:00Z", "true", 1),
        ("2026-03-29T01:00:00Z", "null", 1),
        ("2026-03-29T01:00:00Z", "true", 2),
    ]
    .iter()
    .map(|(w, k, n)| (w.to_string(), k.to_string(), *n))
    .collect();
    assert_eq!(got, want);
}

/// `--format regex` fails before reading: a regex needs the spec's [schema] pattern, so the
/// flag does not offer it (a spec says `format = "regex"` with its pattern).
#[test]
fn format_regex_on_the_command_line_is_a_usage_error() {
    let dir = tmpdir("schema-regex-usage");
    let input = write(&dir, "x.log", std::iter::once("a line".to_string()));
    let o = bin()
        .args([
            "run",
            repo().join("dataflows/log-analysis.toml").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            "regex",
            "--output-dir",
            dir.join("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'regex'") && err.contains("possible values"),
        "{err}"
    );
    assert!(!dir.join("out").exists(), "nothing was written");
}
