//! The real Apache combined log (`tests/data/apache_logs`, 10,000 lines, May 2015) through
//! `--format apache`. Expected values were counted independently with grep/awk on the file
//! (commands next to each value), not with logflow's code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{accounting, read_jsonl, run_ok, tmpdir};
use serde_json::{json, Value};
use std::path::Path;

fn find<'a>(rows: &'a [Value], start: &str, key: &str, val: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["window_start"] == start && r[key] == val)
        .unwrap_or_else(|| panic!("no row {key}={val} at {start}"))
}

#[test]
fn real_apache_log_gives_hand_checked_results() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apache_logs");
    assert!(data.is_file(), "{} not found", data.display());
    let out_dir = tmpdir("apache");
    let data = data.to_str().unwrap().to_string();
    let out_arg = out_dir.to_str().unwrap().to_string();
    for threads in ["1", "2"] {
        let out = run_ok(&[
            "run",
            "dataflows/log-analysis.toml",
            "--input",
            &data,
            "--format",
            "apache",
            "--output-dir",
            &out_arg,
            "-w",
            threads,
        ]);
        let acc = accounting(&out.stderr);
        // wc -l apache_logs = 10000; every line is a well-formed combined-format line, and the
        // file's worst disorder is 59 s (below the 5 min delay), so nothing is late.
        assert_eq!(acc["read"], 10_000);
        assert_eq!(acc["parsed"], 10_000);
        assert_eq!(acc["dead_letter"], 0);
        assert_eq!(acc["late"], 0);

        // Every request is in exactly one system_health window.
        let health = read_jsonl(&out_dir.join("system_health.jsonl"));
        let total: u64 = health
            .iter()
            .map(|r| r["total_requests"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 10_000);
        // grep -c '17/May/2015:10:05:' apache_logs = 74
        let first = &health[0];
        assert_eq!(first["window_start"], "2015-05-17T10:05:00Z");
        assert_eq!(first["window_end"], "2015-05-17T10:06:00Z");
        assert_eq!(first["total_requests"], 74);
        // grep '17/May/2015:10:05:' apache_logs | awk '$9>=400' | wc -l = 1
        assert_eq!(first["error_count"], 1);
        // No trailing response time in this log: averages are null, not 0.
        assert_eq!(first["avg_response_time"], Value::Null);
        // Every authuser is `-`: no users.
        assert_eq!(first["active_users"], 0);

        // grep '17/May/2015:10:05:' apache_logs | awk '{print $7}' | awk -F'[/?#]' '{print $2}'
        //   | sort | uniq -c  -> presentations 23, blog 18, images 10
        let pop = read_jsonl(&out_dir.join("service_popularity.jsonl"));
        for (svc, n) in [("presentations", 23), ("blog", 18), ("images", 10)] {
            assert_eq!(
                find(&pop, "2015-05-17T10:05:00Z", "service", svc)["request_count"],
                n,
                "{svc}"
            );
        }

        // Every request's service, counted here from the raw lines (the target is the 7th
        // whitespace token; no target in this file is an absolute URL, and five carry a `://`
        // in their query or path), equals the job's per-service totals over all windows.
        let mut want: std::collections::BTreeMap<String, u64> = Default::default();
        for line in std::fs::read_to_string(&data).unwrap().lines() {
            let target = line.split_whitespace().nth(6).unwrap();
            assert!(target.starts_with('/'), "{target}");
            let path = target.split(['?', '#']).next().unwrap();
            let svc = path.split('/').find(|s| !s.is_empty()).unwrap_or("root");
            *want.entry(svc.to_string()).or_default() += 1;
        }
        let mut got: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &pop {
            let svc = r["service"].as_str().unwrap().to_string();
            *got.entry(svc).or_default() += r["request_count"].as_u64().unwrap();
        }
        assert_eq!(got, want);
        // awk '{print $7}' apache_logs | awk -F'[/?#]' '$2=="blog"' | wc -l = 1959 (with the
        // `?p://...` target the old scheme stripping counted under `about`).
        assert_eq!(want["blog"], 1959);

        // grep -E '^83\.149\.9\.216 .*17/May/2015:10:0[5-9]:' apache_logs | wc -l = 23, paths
        // under /presentations/ and /favicon.ico.
        let ips = read_jsonl(&out_dir.join("ip_patterns.jsonl"));
        let ip = find(&ips, "2015-05-17T10:05:00Z", "ip_address", "83.149.9.216");
        assert_eq!(ip["window_end"], "2015-05-17T10:10:00Z");
        assert_eq!(ip["request_count"], 23);
        assert_eq!(ip["unique_users"], 0);
        assert_eq!(ip["services_used"], json!(["favicon.ico", "presentations"]));

        // awk '$9>=400' apache_logs | wc -l = 220 errors in all.
        let errs = read_jsonl(&out_dir.join("error_rate.jsonl"));
        let errors: u64 = errs
            .iter()
            .map(|r| r["error_count"].as_u64().unwrap())
            .sum();
        assert_eq!(errors, 220);
        for r in &errs {
            let (e, t) = (
                r["error_count"].as_f64().unwrap(),
                r["total_requests"].as_f64().unwrap(),
            );
            assert!((r["error_rate"].as_f64().unwrap() - e * 100.0 / t).abs() < 1e-9);
        }
    }
}

/// `apache` also exposes the request's method, path, protocol, bytes, referer and user agent:
/// totals per method over the whole file equal counts made from the raw lines.
#[test]
fn request_parts_are_fields() {
    let dir = tmpdir("apache-parts");
    let spec = dir.join("parts.toml");
    std::fs::write(
        &spec,
        "name = \"parts\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"apache\"\n\
         [[analysis]]\nname = \"methods\"\nwindow = { size = \"1d\" }\ngroup_by = [\"method\"]\n\
         select = [\"count() as n\", \"sum(bytes) as bytes\", \"count_if(protocol = 'HTTP/1.0') as http10\",\n\
         \"count_if(referer is null) as no_referer\", \"count_if(user_agent is not null) as agents\",\n\
         \"count_if(path = '/favicon.ico') as favicons\"]\n",
    )
    .unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apache_logs");
    let out = dir.join("out");
    run_ok(&[
        "run",
        spec.to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    // Per method from the raw lines: (requests, bytes, referer `-`, requests for /favicon.ico,
    // HTTP/1.0 requests).
    let mut want: std::collections::BTreeMap<String, (u64, u64, u64, u64, u64)> =
        Default::default();
    for line in std::fs::read_to_string(&data).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let quoted: Vec<&str> = line.split('"').collect();
        let w = want
            .entry(f[5].trim_start_matches('"').to_string())
            .or_default();
        w.0 += 1;
        w.1 += f[9].parse::<u64>().unwrap_or(0);
        w.2 += u64::from(quoted[3] == "-");
        w.3 += u64::from(f[6] == "/favicon.ico");
        w.4 += u64::from(f[7] == "HTTP/1.0\"");
    }
    let mut got: std::collections::BTreeMap<String, (u64, u64, u64, u64, u64)> = Default::default();
    let mut agents = 0;
    for r in read_jsonl(&out.join("methods.jsonl")) {
        let m = r["method"].as_str().unwrap().to_string();
        let v = got.entry(m).or_default();
        v.0 += r["n"].as_u64().unwrap();
        v.1 += r["bytes"].as_u64().unwrap_or(0);
        v.2 += r["no_referer"].as_u64().unwrap();
        v.3 += r["favicons"].as_u64().unwrap();
        v.4 += r["http10"].as_u64().unwrap();
        agents += r["agents"].as_u64().unwrap();
    }
    assert_eq!(got, want);
    assert!(want["GET"].4 > 0, "no HTTP/1.0 request counted");
    // awk -F'"' 'NF==7 && $6!="-"' apache_logs | wc -l = 9809: a user agent `-` is null, and
    // so is the one cut off at the end of its line (no closing quote).
    assert_eq!(agents, 9_809);
}
