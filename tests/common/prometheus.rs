//! A real Prometheus server for tests (`scripts/prometheus`, state in `target/prometheus-it`):
//! started on a port, asked through its HTTP API, stopped (samples wiped) when dropped; and
//! the metric names a PromQL expression reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::repo;

/// A series' labels, as Prometheus answers them.
pub type Labels = BTreeMap<String, String>;

pub fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

fn prometheus_script(args: &[&str]) -> String {
    let state = repo().join("target/prometheus-it");
    super::service_script("prometheus", "PROMETHEUS_STATE_DIR", &state, args)
}

/// The Prometheus server, stopped (and its samples wiped) when dropped.
pub struct Prometheus {
    port: u16,
}

impl Prometheus {
    pub fn start(port: u16, target: &str) -> Prometheus {
        Prometheus::start_with_rules(port, target, &[])
    }

    /// A server that also evaluates the alerting rules in `rules` (paths from the repo).
    pub fn start_with_rules(port: u16, target: &str, rules: &[&str]) -> Prometheus {
        let _ = prometheus_script(&["down", "--wipe"]);
        let port_s = port.to_string();
        let mut args = vec![
            "up",
            "--target",
            target,
            "--port",
            &port_s,
            "--interval",
            "1s",
        ];
        for r in rules {
            args.extend(["--rules", r]);
        }
        let url = prometheus_script(&args);
        assert_eq!(url, format!("http://127.0.0.1:{port}"));
        Prometheus { port }
    }

    /// GET an API path with query parameters; the `data` of a successful answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let target = format!("{path}?{}", query.join("&"));
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{target}: {head}\n{body}"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], "success", "{target}: {body}");
        v["data"].clone()
    }

    /// An instant query at time `at` (Unix seconds): (labels, value) per series.
    pub fn query(&self, expr: &str, at: f64) -> Vec<(Labels, f64)> {
        let data = self.api(
            "/api/v1/query",
            &[("query", expr), ("time", &at.to_string())],
        );
        assert_eq!(data["resultType"], "vector", "{expr}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, sample_value(&r["value"]))
            })
            .collect()
    }

    /// Raw samples of a range selector `metric[range]`: (labels, [(time, value)]) per series.
    pub fn samples(&self, selector: &str) -> Vec<(Labels, Vec<(f64, f64)>)> {
        let data = self.api("/api/v1/query", &[("query", selector)]);
        assert_eq!(data["resultType"], "matrix", "{selector}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let values = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| (s[0].as_f64().unwrap(), sample_value(s)))
                    .collect();
                (labels, values)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/prometheus"))
            .args(["down", "--wipe"])
            .env("PROMETHEUS_STATE_DIR", repo().join("target/prometheus-it"))
            .status();
    }
}

fn sample_value(pair: &Value) -> f64 {
    let s = pair[1].as_str().unwrap();
    match s {
        "NaN" => f64::NAN,
        s => s.parse().unwrap(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Equal up to float formatting (relative 1e-12: well under a millisecond on epoch seconds).
pub fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

/// Metric names a PromQL expression reads (functions, keywords, labels and durations removed).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop string literals, label matchers, range durations and grouping label lists.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_str = false;
    for c in expr.chars() {
        match c {
            '"' => in_str = !in_str,
            _ if in_str => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => cleaned.push(c),
        }
        if matches!(c, '}' | ']') {
            cleaned.push(' ');
        }
    }
    // Aggregation operators may be followed by `by (..)` instead of a parenthesis.
    let keywords = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let call = j < chars.len() && chars[j] == '(';
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                skip_group = call; // a parenthesis right after lists labels
            } else if !call && !keywords.contains(&word.as_str()) && !skip_group {
                names.insert(word);
            }
            continue;
        }
        if c == ')' {
            skip_group = false;
        }
        i += 1;
    }
    names
}
