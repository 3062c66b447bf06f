//! Oracle tests: the real `logflow` binary against an independent batch computation.
//!
//! The input comes from the generator library (the only logflow code used here); the
//! expected results are computed below with serde_json, chrono and std only, straight from
//! DESIGN.md sections 2, 3 and 5: read every line, keep the good ones, put each event in its
//! epoch-aligned windows, group, aggregate, then run the detectors over the aggregated rows.
//! With disorder below the watermark delay nothing is late, so a streaming run over a file
//! must give exactly this batch answer, whatever the number of workers.
//!
//! Semantics decided here (see DESIGN.md; where the contract leaves a choice, the test
//! accepts every reasonable answer and says so):
//! - A line is good when it is a UTF-8 JSON object whose `timestamp` is an RFC 3339 string
//!   (logs) or an integer of epoch milliseconds, and whose known fields have the right type
//!   (strings or null; `response_time`/`value` numbers or null; `status_code` an integer or
//!   null). Missing fields are null.
//! - Windows are [start, end), start a multiple of the slide; an event is in every window
//!   that contains it. Groups with no events have no row. A null key is its own group.
//! - Counts count every event of the group; avg/min/max/stddev (sample) ignore nulls and are
//!   null when nothing is left (stddev below 2 values); distinct counts and lists ignore nulls.
//!   A sum over no non-null value (`total_value`) may be null (SQL) or 0.
//! - `error_rate = error_count / total * 100` (status >= 400); `availability`, `performance`
//!   likewise; `health_score` from `error_rate` (at an exact threshold either side is accepted).
//! - Detectors read the rows of their source analysis, per key in window order (SQL window
//!   functions): the anomaly baseline is the up-to-10 previous rows (a null average takes a
//!   slot, mean and sample stddev ignore nulls); a spike compares with the previous row. A row
//!   whose filter value is within 1e-9 of its threshold may be present or not.
//! - `actions_sequence` lists non-null actions by (timestamp, input line).
//!
//! Numbers: integers exactly (counts must be JSON integers); floats to 1e-9, relative or
//! absolute near zero. Field order: `window_start`, `window_end`, keys, metrics as in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use logflow::gen::{GenConfig, Generator, Kind, LineKind};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

const MINUTE: i64 = 60_000;
/// How long one engine run may take before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// Input

struct Input {
    path: PathBuf,
    kind: Kind,
    /// Every line as written, without its newline.
    lines: Vec<Vec<u8>>,
    /// What the generator says each line is.
    kinds: Vec<LineKind>,
}

impl Input {
    fn generate(name: &str, cfg: GenConfig) -> Input {
        let dir = tmp_dir().join("inputs");
        std::fs::create_dir_all(&dir).expect("create input dir");
        let path = dir.join(format!("{name}.jsonl"));
        let kind = cfg.kind;
        let mut gen = Generator::new(cfg);
        let (mut lines, mut kinds, mut file) = (Vec::new(), Vec::new(), Vec::new());
        let mut buf = Vec::new();
        while gen.next_line(&mut buf) {
            file.extend_from_slice(&buf);
            file.push(b'\n');
            lines.push(std::mem::take(&mut buf));
            kinds.push(gen.last_kind().expect("a line was generated"));
        }
        std::fs::write(&path, &file).expect("write input");
        Input {
            path,
            kind,
            lines,
            kinds,
        }
    }

    fn count(&self, kind: LineKind) -> usize {
        self.kinds.iter().filter(|k| **k == kind).count()
    }

    /// 1-based numbers of the lines the generator wrote as `kind`.
    fn line_numbers(&self, kind: LineKind) -> BTreeSet<usize> {
        (0..self.kinds.len())
            .filter(|&i| self.kinds[i] == kind)
            .map(|i| i + 1)
            .collect()
    }
}

fn tmp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oracle")
}

// ---------------------------------------------------------------------------------------
// The oracle's own reading of input lines (DESIGN.md section 2)

#[derive(Clone, Debug, Default)]
struct Ev {
    /// 1-based input line.
    line: usize,
    ts: i64,
    service: Option<String>,
    ip: Option<String>,
    user: Option<String>,
    rt: Option<f64>,
    status: Option<i64>,
    action: Option<String>,
    value: Option<f64>,
}

fn string_field(o: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{k} has the wrong type: {v}")),
    }
}

fn number_field(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(format!("{k} has the wrong type: {v}")),
    }
}

fn object(line: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(line).map_err(|e| e.to_string())? {
        Value::Object(o) => Ok(o),
        _ => Err("not a JSON object".into()),
    }
}

fn epoch_ms(v: Option<&Value>) -> Result<i64, String> {
    match v {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("timestamp {n}")),
        other => Err(format!("timestamp {other:?}")),
    }
}

fn read_log(line: &[u8]) -> Result<Ev, String> {
    let o = object(line)?;
    let ts = match o.get("timestamp") {
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("timestamp {s}: {e}"))?
            .timestamp_millis(),
        other => epoch_ms(other)?,
    };
    for k in ["level", "message", "request_id", "error_code"] {
        string_field(&o, k)?;
    }
    let status = match o.get("status_code") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("status_code is not an integer")?),
        Some(v) => return Err(format!("status_code has the wrong type: {v}")),
    };
    Ok(Ev {
        ts,
        service: string_field(&o, "service")?,
        ip: string_field(&o, "ip_address")?,
        user: string_field(&o, "user_id")?,
        rt: number_field(&o, "response_time")?,
        status,
        ..Ev::default()
    })
}

fn read_user_event(line: &[u8]) -> Result<Ev, String> {
    let o = object(line)?;
    let ts = epoch_ms(o.get("timestamp"))?;
    string_field(&o, "session_id")?;
    Ok(Ev {
        ts,
        user: string_field(&o, "user_id")?,
        action: string_field(&o, "action")?,
        value: number_field(&o, "value")?,
        ip: string_field(&o, "ip_address")?,
        ..Ev::default()
    })
}

/// The good events of `input` (late ones included), checked against the generator's own
/// account of which lines are bad.
fn read_events(input: &Input) -> Vec<Ev> {
    let read = match input.kind {
        Kind::Logs => read_log,
        Kind::UserEvents => read_user_event,
    };
    let mut events = Vec::new();
    for (i, (line, kind)) in input.lines.iter().zip(&input.kinds).enumerate() {
        match (read(line), kind) {
            (Ok(mut ev), LineKind::Good | LineKind::Late) => {
                ev.line = i + 1;
                events.push(ev);
            }
            (Err(_), LineKind::Bad) => {}
            (res, kind) => panic!(
                "the oracle and the generator disagree on line {}: generator says {kind:?}, \
                 oracle reads {res:?}: {}",
                i + 1,
                String::from_utf8_lossy(line)
            ),
        }
    }
    events
}

// ---------------------------------------------------------------------------------------
// Expected rows

/// What an output field must be.
#[derive(Clone, Debug)]
enum Expect {
    /// A JSON integer.
    Int(i64),
    /// A JSON number, to 1e-9.
    Num(f64),
    /// One of these numbers (a value computed at an exact threshold).
    AnyOf(Vec<f64>),
    Null,
    /// A sum over no value: SQL says null, 0 is accepted too.
    NullOrZero,
    /// Exactly this JSON (strings, lists).
    Exact(Value),
}

impl Expect {
    fn opt(v: Option<f64>) -> Expect {
        v.map_or(Expect::Null, Expect::Num)
    }

    fn matches(&self, got: &Value) -> bool {
        match (self, got) {
            (Expect::Int(e), Value::Number(n)) => n.as_i64() == Some(*e),
            (Expect::Num(e), Value::Number(n)) => n.as_f64().is_some_and(|g| close(*e, g)),
            (Expect::AnyOf(es), Value::Number(n)) => {
                n.as_f64().is_some_and(|g| es.iter().any(|e| close(*e, g)))
            }
            (Expect::Null | Expect::NullOrZero, Value::Null) => true,
            (Expect::NullOrZero, Value::Number(n)) => n.as_f64() == Some(0.0),
            (Expect::Exact(e), g) => e == g,
            _ => false,
        }
    }

    fn show(&self) -> String {
        match self {
            Expect::Int(i) => i.to_string(),
            Expect::Num(f) => format!("{f:?}"),
            Expect::AnyOf(fs) => format!("one of {fs:?}"),
            Expect::Null => "null".into(),
            Expect::NullOrZero => "null or 0".into(),
            Expect::Exact(v) => v.to_string(),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    let d = (a - b).abs();
    d <= 1e-9 || d <= 1e-9 * a.abs().max(b.abs())
}

#[derive(Clone, Debug)]
struct Row {
    start: i64,
    end: i64,
    keys: Vec<(&'static str, Option<String>)>,
    metrics: Vec<(&'static str, Expect)>,
    /// The row's filter value sits on its threshold: it may be present or not.
    optional: bool,
}

impl Row {
    fn id(&self) -> String {
        row_id(
            &fmt_ts(self.start),
            &fmt_ts(self.end),
            self.keys
                .iter()
                .map(|(_, v)| v.clone().map_or(Value::Null, Value::String)),
        )
    }

    fn metric(&self, name: &str) -> &Expect {
        &self
            .metrics
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no metric {name}"))
            .1
    }

    fn num(&self, name: &str) -> Option<f64> {
        match self.metric(name) {
            Expect::Num(f) => Some(*f),
            Expect::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    fn show(&self) -> String {
        let mut s = format!(
            "{{window_start: {}, window_end: {}",
            fmt_ts(self.start),
            fmt_ts(self.end)
        );
        for (k, v) in &self.keys {
            let _ = write!(s, ", {k}: {v:?}");
        }
        for (k, v) in &self.metrics {
            let _ = write!(s, ", {k}: {}", v.show());
        }
        s + "}"
    }
}

fn row_id(start: &str, end: &str, keys: impl Iterator<Item = Value>) -> String {
    let keys: Vec<Value> = keys.collect();
    format!("{start} {end} {}", Value::Array(keys))
}

/// RFC 3339 UTC with `Z`, milliseconds only when not zero.
fn fmt_ts(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("timestamp in range");
    if ms % 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// Window starts of the `size`/`slide` windows that contain `ts`.
fn window_starts(ts: i64, size: i64, slide: i64) -> Vec<i64> {
    let mut starts = Vec::new();
    let mut s = ts.div_euclid(slide) * slide;
    while s + size > ts {
        starts.push(s);
        s -= slide;
    }
    starts
}

type Key = Vec<Option<String>>;

/// Groups events by window and key: (start, key) -> events, in input order.
fn group(
    events: &[Ev],
    size: i64,
    slide: i64,
    key: impl Fn(&Ev) -> Key,
) -> BTreeMap<(i64, Key), Vec<&Ev>> {
    let mut groups: BTreeMap<(i64, Key), Vec<&Ev>> = BTreeMap::new();
    for ev in events {
        for s in window_starts(ev.ts, size, slide) {
            groups.entry((s, key(ev))).or_default().push(ev);
        }
    }
    groups
}

fn floats(evs: &[&Ev], f: impl Fn(&Ev) -> Option<f64>) -> Vec<f64> {
    evs.iter().filter_map(|e| f(e)).collect()
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn sample_stddev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

fn max(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::max)
}

fn min(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::min)
}

fn distinct<'a>(evs: &[&'a Ev], f: impl Fn(&'a Ev) -> &'a Option<String>) -> BTreeSet<&'a str> {
    evs.iter().filter_map(|e| f(e).as_deref()).collect()
}

fn count(n: usize) -> Expect {
    Expect::Int(n as i64)
}

fn percent(part: usize, total: usize) -> f64 {
    part as f64 / total as f64 * 100.0
}

fn errors(evs: &[&Ev]) -> usize {
    evs.iter()
        .filter(|e| e.status.is_some_and(|s| s >= 400))
        .count()
}

/// Rows of one analysis: window size/slide, key names and a metric function per group.
fn analysis(
    events: &[Ev],
    size: i64,
    slide: i64,
    key_names: &[&'static str],
    key: impl Fn(&Ev) -> Key,
    metrics: impl Fn(&[&Ev]) -> Vec<(&'static str, Expect)>,
) -> Vec<Row> {
    group(events, size, slide, key)
        .into_iter()
        .map(|((start, key), evs)| Row {
            start,
            end: start + size,
            keys: key_names.iter().copied().zip(key).collect(),
            metrics: metrics(&evs),
            optional: false,
        })
        .collect()
}

/// Keeps the rows that pass `keep(value) > 0`, where `value` is the filter's margin: a margin
/// within 1e-9 of zero makes the row optional.
fn filter_rows(rows: Vec<Row>, margin: impl Fn(&Row) -> Option<f64>) -> Vec<Row> {
    rows.into_iter()
        .filter_map(|mut r| {
            let m = margin(&r)?;
            if m.abs() <= 1e-9 {
                r.optional = true;
                Some(r)
            } else {
                (m > 0.0).then_some(r)
            }
        })
        .collect()
}

/// Rows of `source` per key, in window order.
fn by_key(source: &[Row]) -> BTreeMap<Key, Vec<&Row>> {
    let mut out: BTreeMap<Key, Vec<&Row>> = BTreeMap::new();
    for r in source {
        out.entry(r.keys.iter().map(|(_, v)| v.clone()).collect())
            .or_default()
            .push(r);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.start);
    }
    out
}

fn log_oracle(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let service = |e: &Ev| vec![e.service.clone()];
    let ip = |e: &Ev| vec![e.ip.clone()];
    let rt = |e: &Ev| e.rt;
    let mut out = BTreeMap::new();

    let response_time = analysis(events, MINUTE, MINUTE, &["service"], service, |evs| {
        let rts = floats(evs, rt);
        vec![
            ("request_count", count(evs.len())),
            ("avg_response_time", Expect::opt(mean(&rts))),
            ("max_response_time", Expect::opt(max(&rts))),
            ("min_response_time", Expect::opt(min(&rts))),
            ("stddev_response_time", Expect::opt(sample_stddev(&rts))),
        ]
    });
    let error_rate = analysis(events, MINUTE, MINUTE, &["service"], service, |evs| {
        vec![
            ("total_requests", count(evs.len())),
            ("error_count", count(errors(evs))),
            ("error_rate", Expect::Num(percent(errors(evs), evs.len()))),
        ]
    });
    let ip_patterns = analysis(events, 5 * MINUTE, 5 * MINUTE, &["ip_address"], ip, |evs| {
        let services: Vec<Value> = distinct(evs, |e| &e.service)
            .into_iter()
            .map(|s| Value::String(s.to_string()))
            .collect();
        vec![
            ("request_count", count(evs.len())),
            ("unique_users", count(distinct(evs, |e| &e.user).len())),
            ("services_used", Expect::Exact(Value::Array(services))),
        ]
    });
    let ip_minute = analysis(events, MINUTE, MINUTE, &["ip_address"], ip, |evs| {
        vec![
            ("request_count", count(evs.len())),
            ("unique_users", count(distinct(evs, |e| &e.user).len())),
        ]
    });
    let ddos = filter_rows(ip_minute, |r| {
        let (n, users) = (r.num("request_count")?, r.num("unique_users")?);
        Some(if n > 100.0 && users < 5.0 { 1.0 } else { -1.0 })
    });
    let sla = analysis(events, MINUTE, MINUTE, &["service"], service, |evs| {
        let fast = evs
            .iter()
            .filter(|e| e.rt.is_some_and(|r| r <= 1.0))
            .count();
        let ok = evs.iter().filter(|e| e.status == Some(200)).count();
        vec![
            ("total_requests", count(evs.len())),
            ("fast_requests", count(fast)),
            ("successful_requests", count(ok)),
            ("availability", Expect::Num(percent(ok, evs.len()))),
            ("performance", Expect::Num(percent(fast, evs.len()))),
        ]
    });
    let user_activity = analysis(
        events,
        5 * MINUTE,
        5 * MINUTE,
        &["user_id"],
        |e| vec![e.user.clone()],
        |evs| {
            vec![
                ("activity_count", count(evs.len())),
                ("services_used", count(distinct(evs, |e| &e.service).len())),
                ("avg_response_time", Expect::opt(mean(&floats(evs, rt)))),
            ]
        },
    );
    let service_popularity = analysis(events, MINUTE, MINUTE, &["service"], service, |evs| {
        vec![
            ("request_count", count(evs.len())),
            ("unique_users", count(distinct(evs, |e| &e.user).len())),
        ]
    });
    let system_health = analysis(
        events,
        MINUTE,
        MINUTE,
        &[],
        |_| vec![],
        |evs| {
            let (e, n) = (errors(evs), evs.len());
            let rate = percent(e, n);
            // 100 if error_rate < 1, 80 if < 5, 60 if < 10, else 40; on an exact threshold
            // (100 e == k n) float rounding may fall either side.
            let score = |r: f64| match r {
                r if r < 1.0 => 100.0,
                r if r < 5.0 => 80.0,
                r if r < 10.0 => 60.0,
                _ => 40.0,
            };
            let health = if [1, 5, 10].iter().any(|k| 100 * e == k * n) {
                Expect::AnyOf(vec![score(rate - 1e-9), score(rate + 1e-9)])
            } else {
                Expect::AnyOf(vec![score(rate)])
            };
            vec![
                ("total_requests", count(n)),
                (
                    "active_services",
                    count(distinct(evs, |e| &e.service).len()),
                ),
                ("active_users", count(distinct(evs, |e| &e.user).len())),
                ("avg_response_time", Expect::opt(mean(&floats(evs, rt)))),
                ("error_count", count(e)),
                ("error_rate", Expect::Num(rate)),
                ("health_score", health),
            ]
        },
    );

    // response_time_anomalies: baseline over the up-to-10 previous rows of the service.
    let mut anomalies = Vec::new();
    for rows in by_key(&response_time).values() {
        for (i, r) in rows.iter().enumerate() {
            let previous = &rows[i.saturating_sub(10)..i];
            let avgs: Vec<f64> = previous
                .iter()
                .filter_map(|p| p.num("avg_response_time"))
                .collect();
            let (Some(avg), Some(base_mean), Some(base_sd)) = (
                r.num("avg_response_time"),
                mean(&avgs),
                sample_stddev(&avgs),
            ) else {
                continue;
            };
            if base_sd == 0.0 {
                continue;
            }
            let z = (avg - base_mean) / base_sd;
            anomalies.push(Row {
                metrics: vec![
                    ("avg_response_time", Expect::Num(avg)),
                    ("baseline_mean", Expect::Num(base_mean)),
                    ("baseline_stddev", Expect::Num(base_sd)),
                    ("z_score", Expect::Num(z)),
                ],
                ..(*r).clone()
            });
        }
    }
    let anomalies = filter_rows(anomalies, |r| Some(r.num("z_score")?.abs() - 2.0));

    // error_rate_spikes: change from the previous row of the service.
    let mut spikes = Vec::new();
    for rows in by_key(&error_rate).values() {
        for pair in rows.windows(2) {
            let (Some(prev), Some(rate)) = (pair[0].num("error_rate"), pair[1].num("error_rate"))
            else {
                continue;
            };
            spikes.push(Row {
                metrics: vec![
                    ("error_rate", Expect::Num(rate)),
                    ("prev_error_rate", Expect::Num(prev)),
                    ("error_rate_change", Expect::Num(rate - prev)),
                ],
                ..pair[1].clone()
            });
        }
    }
    let spikes = filter_rows(spikes, |r| Some(r.num("error_rate_change")? - 10.0));

    let suspicious = filter_rows(ip_patterns.clone(), |r| {
        let n = r.num("request_count")?;
        let services = match r.metric("services_used") {
            Expect::Exact(Value::Array(a)) => a.len(),
            _ => return None,
        };
        Some(if n > 1000.0 && services > 5 {
            1.0
        } else {
            -1.0
        })
    });

    out.insert("response_time", response_time);
    out.insert("error_rate", error_rate);
    out.insert("ip_patterns", ip_patterns);
    out.insert("ddos", ddos);
    out.insert("sla", sla);
    out.insert("user_activity", user_activity);
    out.insert("service_popularity", service_popularity);
    out.insert("system_health", system_health);
    out.insert("response_time_anomalies", anomalies);
    out.insert("error_rate_spikes", spikes);
    out.insert("suspicious_ips", suspicious);
    out
}

fn total_value(evs: &[&Ev]) -> Expect {
    let values = floats(evs, |e| e.value);
    if values.is_empty() {
        Expect::NullOrZero
    } else {
        Expect::Num(values.iter().sum())
    }
}

fn user_event_oracle(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let user = |e: &Ev| vec![e.user.clone()];
    let mut out = BTreeMap::new();
    let activity = analysis(events, MINUTE, 30_000, &["user_id"], user, |evs| {
        let mut ordered: Vec<&&Ev> = evs.iter().collect();
        ordered.sort_by_key(|e| (e.ts, e.line));
        let sequence: Vec<Value> = ordered
            .iter()
            .filter_map(|e| e.action.clone().map(Value::String))
            .collect();
        vec![
            ("total_events", count(evs.len())),
            ("unique_actions", count(distinct(evs, |e| &e.action).len())),
            ("total_value", total_value(evs)),
            ("actions_sequence", Expect::Exact(Value::Array(sequence))),
        ]
    });
    let actions = analysis(
        events,
        2 * MINUTE,
        MINUTE,
        &["action"],
        |e| vec![e.action.clone()],
        |evs| {
            let values = floats(evs, |e| e.value);
            vec![
                ("action_count", count(evs.len())),
                ("unique_users", count(distinct(evs, |e| &e.user).len())),
                ("avg_value", Expect::opt(mean(&values))),
                ("max_value", Expect::opt(max(&values))),
                ("min_value", Expect::opt(min(&values))),
            ]
        },
    );
    let per_user_5m = analysis(events, 5 * MINUTE, 2 * MINUTE, &["user_id"], user, |evs| {
        vec![
            ("event_count", count(evs.len())),
            ("total_value", total_value(evs)),
        ]
    });
    let anomalies = filter_rows(per_user_5m, |r| Some(r.num("event_count")? - 50.5));
    out.insert("user_activity_sliding", activity);
    out.insert("action_metrics", actions);
    out.insert("user_anomalies", anomalies);
    out
}

// ---------------------------------------------------------------------------------------
// Running the engine

struct Accounting {
    read: u64,
    parsed: u64,
    dead_letter: u64,
    on_time: u64,
    late: u64,
}

struct RunOutput {
    dir: PathBuf,
    accounting: Accounting,
}

fn run_engine(spec: &str, format: &str, input: &Input, workers: usize, name: &str) -> RunOutput {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tmp_dir().join(format!("{name}-w{workers}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create output dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logflow"));
    cmd.current_dir(root)
        .arg("run")
        .arg(spec)
        .arg("--input")
        .arg(&input.path)
        .args(["--format", format, "--output-dir"])
        .arg(&dir)
        .args(["-w", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.txt")).expect("stderr file"),
        ));
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for logflow") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            panic!("{shown} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "{shown} failed ({status}); stderr ends with:\n{tail}"
    );
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let accounting = parse_accounting(last)
        .unwrap_or_else(|| panic!("the last stderr line is not the accounting line: {last:?}"));
    RunOutput { dir, accounting }
}

fn parse_accounting(line: &str) -> Option<Accounting> {
    let rest = line.trim().strip_prefix("accounting:")?;
    let mut fields = BTreeMap::new();
    for part in rest.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        fields.insert(k, v.parse::<u64>().ok()?);
    }
    Some(Accounting {
        read: *fields.get("read")?,
        parsed: *fields.get("parsed")?,
        dead_letter: *fields.get("dead_letter")?,
        on_time: *fields.get("on_time")?,
        late: *fields.get("late")?,
    })
}

/// The keys of a JSON object, in document order.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Lines of a JSONL output file; a missing file has none.
fn jsonl(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------
// Comparing

/// Compares one analysis; returns a report of the differences (empty when equal).
fn compare(dir: &Path, analysis: &str, expected: &[Row]) -> String {
    const SHOW: usize = 5;
    let path = dir.join(format!("{analysis}.jsonl"));
    let mut report = String::new();
    let mut engine: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let expected_order: Option<Vec<String>> = expected.first().map(|r| {
        ["window_start", "window_end"]
            .into_iter()
            .chain(r.keys.iter().map(|(k, _)| *k))
            .chain(r.metrics.iter().map(|(k, _)| *k))
            .map(str::to_string)
            .collect()
    });
    let key_names: Vec<&str> = expected
        .first()
        .map(|r| r.keys.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    for line in jsonl(&path) {
        let obj = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(o)) => o,
            _ => {
                problems.push(format!("not a JSON object: {line}"));
                continue;
            }
        };
        if let (Some(order), Ok(Keys(keys))) =
            (&expected_order, serde_json::from_str::<Keys>(&line))
        {
            if &keys != order && problems.len() < SHOW {
                problems.push(format!("field order {keys:?}, expected {order:?}: {line}"));
            }
        }
        let text = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let id = row_id(
            &text("window_start"),
            &text("window_end"),
            key_names.iter().map(|k| {
                obj.get(*k)
                    .cloned()
                    .unwrap_or(Value::String("<absent>".into()))
            }),
        );
        if engine.insert(id.clone(), obj).is_some() {
            problems.push(format!("duplicate row {id}"));
        }
    }

    let mut missing = Vec::new();
    let mut differing = Vec::new();
    let mut seen = BTreeSet::new();
    for row in expected {
        let id = row.id();
        seen.insert(id.clone());
        let Some(got) = engine.get(&id) else {
            if !row.optional {
                missing.push(row.show());
            }
            continue;
        };
        let mut diffs = Vec::new();
        for (name, want) in &row.metrics {
            let value = got.get(*name).unwrap_or(&Value::Null);
            if !got.contains_key(*name) || !want.matches(value) {
                diffs.push(format!(
                    "{name}: engine {}, oracle {}",
                    got.get(*name).map_or("<absent>".into(), Value::to_string),
                    want.show()
                ));
            }
        }
        let known = row.metrics.len() + row.keys.len() + 2;
        if got.len() != known {
            diffs.push(format!("{} fields, expected {known}", got.len()));
        }
        if !diffs.is_empty() {
            differing.push(format!("{id}: {}", diffs.join("; ")));
        }
    }
    let extra: Vec<String> = engine
        .iter()
        .filter(|(id, _)| !seen.contains(*id))
        .map(|(_, o)| Value::Object(o.clone()).to_string())
        .collect();

    if problems.is_empty() && missing.is_empty() && differing.is_empty() && extra.is_empty() {
        return report;
    }
    let _ = writeln!(
        report,
        "== {analysis}: oracle {} rows, engine {} rows; {} missing, {} extra, {} differing, {} other problems",
        expected.len(),
        engine.len(),
        missing.len(),
        extra.len(),
        differing.len(),
        problems.len()
    );
    for (title, list) in [
        ("missing (in the oracle, not in the engine)", &missing),
        ("extra (in the engine, not in the oracle)", &extra),
        ("differing", &differing),
        ("problems", &problems),
    ] {
        if !list.is_empty() {
            let _ = writeln!(report, "  {title}:");
            for item in list.iter().take(SHOW) {
                let _ = writeln!(report, "    {item}");
            }
            if list.len() > SHOW {
                let _ = writeln!(report, "    ... and {} more", list.len() - SHOW);
            }
        }
    }
    report
}

/// Every bad line is in the dead-letter output once, with its position and original bytes.
fn check_dead_letters(out: &RunOutput, job: &str, input: &Input) -> String {
    use base64::Engine as _;
    let path = out.dir.join(format!("{job}.dead-letter.jsonl"));
    let mut report = String::new();
    let mut found = BTreeSet::new();
    let input_name = input.path.file_name();
    for line in jsonl(&path) {
        let rec: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = writeln!(report, "dead letter is not JSON ({e}): {line}");
                continue;
            }
        };
        let position = &rec["position"];
        let Some(n) = position["line"].as_u64() else {
            let _ = writeln!(report, "dead letter without position.line: {line}");
            continue;
        };
        let n = n as usize;
        let file_ok = position["file"]
            .as_str()
            .is_some_and(|f| Path::new(f).file_name() == input_name);
        let reason_ok = rec["reason"].as_str().is_some_and(|r| !r.is_empty());
        let raw: Option<Vec<u8>> = match (&rec["raw"], &rec["raw_base64"]) {
            (Value::String(s), _) => Some(s.as_bytes().to_vec()),
            (_, Value::String(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            _ => None,
        };
        let original = n.checked_sub(1).and_then(|i| input.lines.get(i));
        let problems: Vec<&str> = [
            (!file_ok, "position.file does not name the input"),
            (!reason_ok, "no reason"),
            (raw.is_none(), "no raw/raw_base64"),
            (
                raw.is_some() && raw.as_ref() != original,
                "raw differs from the input line",
            ),
            (!found.insert(n), "line reported twice"),
        ]
        .into_iter()
        .filter_map(|(bad, what)| bad.then_some(what))
        .collect();
        if !problems.is_empty() && report.lines().count() < 10 {
            let _ = writeln!(report, "dead letter for line {n}: {problems:?}: {line}");
        }
    }
    let bad = input.line_numbers(LineKind::Bad);
    let not_reported: Vec<_> = bad.difference(&found).take(5).collect();
    let not_bad: Vec<_> = found.difference(&bad).take(5).collect();
    if !not_reported.is_empty() || !not_bad.is_empty() {
        let _ = writeln!(
            report,
            "dead-letter lines differ from the bad lines: {} dead letters, {} bad lines; \
             bad but not reported (first): {not_reported:?}; reported but good (first): {not_bad:?}",
            found.len(),
            bad.len()
        );
    }
    report
}

fn check_accounting(out: &RunOutput, input: &Input) {
    let a = &out.accounting;
    let lines = input.lines.len() as u64;
    let bad = input.count(LineKind::Bad) as u64;
    let late = input.count(LineKind::Late) as u64;
    let shown = format!(
        "read={} parsed={} dead_letter={} on_time={} late={}",
        a.read, a.parsed, a.dead_letter, a.on_time, a.late
    );
    assert_eq!(
        a.read,
        a.parsed + a.dead_letter,
        "read = parsed + dead_letter: {shown}"
    );
    assert_eq!(
        a.parsed,
        a.on_time + a.late,
        "parsed = on_time + late: {shown}"
    );
    assert_eq!(a.read, lines, "every line is read: {shown}");
    assert_eq!(
        a.dead_letter, bad,
        "dead letters = the generator's bad lines: {shown}"
    );
    assert_eq!(a.late, late, "late = the generator's late lines: {shown}");
}

// ---------------------------------------------------------------------------------------
// The tests

struct Case {
    input: Input,
    expected: BTreeMap<&'static str, Vec<Row>>,
    /// Every analysis must have rows (so that the comparison cannot pass vacuously).
    require_rows: bool,
}

const LOG_DETECTORS: [&str; 4] = [
    "ddos",
    "suspicious_ips",
    "response_time_anomalies",
    "error_rate_spikes",
];

fn logs_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        // 120,000 lines at 100/s: 20 minutes, one full incident cycle, 1% bad lines.
        let input = Input::generate(
            "logs",
            GenConfig {
                events: 120_000,
                seed: 7,
                ..GenConfig::default()
            },
        );
        let events = read_events(&input);
        Case {
            expected: log_oracle(&events),
            input,
            require_rows: true,
        }
    })
}

fn user_events_case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        let input = Input::generate(
            "user-events",
            GenConfig {
                kind: Kind::UserEvents,
                events: 100_000,
                seed: 11,
                ..GenConfig::default()
            },
        );
        let events = read_events(&input);
        Case {
            expected: user_event_oracle(&events),
            input,
            require_rows: true,
        }
    })
}

/// Runs the job and compares everything; panics with one report of every difference.
fn check(case: &Case, spec: &str, format: &str, job: &str, workers: usize, name: &str) {
    for (analysis, rows) in case.expected.iter().filter(|_| case.require_rows) {
        assert!(
            rows.iter().any(|r| !r.optional),
            "the oracle has no row for {analysis}: the test would pass vacuously"
        );
    }
    let out = run_engine(spec, format, &case.input, workers, name);
    check_accounting(&out, &case.input);
    let mut report = check_dead_letters(&out, job, &case.input);
    for (analysis, rows) in &case.expected {
        report += &compare(&out.dir, analysis, rows);
    }
    let late_lines = jsonl(&out.dir.join(format!("{job}.late.jsonl"))).len() as u64;
    if late_lines != out.accounting.late {
        let _ = writeln!(
            report,
            "{job}.late.jsonl has {late_lines} records, accounting says late={}",
            out.accounting.late
        );
    }
    assert!(
        report.is_empty(),
        "{name} with {workers} worker(s) differs from the oracle (outputs in {}):\n{report}",
        out.dir.display()
    );
}

#[test]
fn logs_match_the_oracle_on_one_worker() {
    let case = logs_case();
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        1,
        "logs",
    );
}

#[test]
fn logs_match_the_oracle_on_two_workers() {
    let case = logs_case();
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs",
    );
}

#[test]
fn user_events_match_the_oracle_on_one_worker() {
    let case = user_events_case();
    check(
        case,
        "dataflows/user-events.toml",
        "user-events",
        "user-events",
        1,
        "user-events",
    );
}

#[test]
fn user_events_match_the_oracle_on_two_workers() {
    let case = user_events_case();
    check(
        case,
        "dataflows/user-events.toml",
        "user-events",
        "user-events",
        2,
        "user-events",
    );
}

/// Late lines (more than 15 minutes behind the newest timestamp) are late for every log
/// analysis: counted and written to the late output, and left out of every window.
#[test]
fn late_log_lines_are_counted_and_left_out() {
    static CASE: OnceLock<Case> = OnceLock::new();
    let case = CASE.get_or_init(|| {
        // 100,000 lines at 40/s: 42 minutes; late lines start after minute 21.
        let input = Input::generate(
            "logs-late",
            GenConfig {
                events: 100_000,
                event_rate: 40.0,
                late_fraction: 0.01,
                seed: 5,
                ..GenConfig::default()
            },
        );
        let on_time: Vec<Ev> = read_events(&input)
            .into_iter()
            .filter(|e| input.kinds[e.line - 1] == LineKind::Good)
            .collect();
        assert!(input.count(LineKind::Late) > 300);
        Case {
            expected: log_oracle(&on_time),
            input,
            // The point here is lateness; rows are compared but not required.
            require_rows: false,
        }
    });
    check(
        case,
        "dataflows/log-analysis.toml",
        "json",
        "log-analysis",
        2,
        "logs-late",
    );
}

#[test]
fn the_detectors_see_the_incidents() {
    // Not about the engine: guards the oracle and generator against a vacuous pass.
    let logs = &logs_case().expected;
    let users = &user_events_case().expected;
    for (analysis, rows) in logs.iter().chain(users) {
        eprintln!("oracle: {analysis}: {} rows", rows.len());
    }
    for detector in [
        "ddos",
        "suspicious_ips",
        "response_time_anomalies",
        "error_rate_spikes",
    ] {
        for r in &logs[detector] {
            eprintln!("  {detector}: {}", r.show());
        }
    }
    for r in &users["user_anomalies"] {
        eprintln!("  user_anomalies: {}", r.show());
    }
    for detector in LOG_DETECTORS {
        assert!(!logs[detector].is_empty(), "no {detector} rows");
    }
    let has = |rows: &[Row], key: &str| {
        rows.iter()
            .any(|r| r.keys.iter().any(|(_, v)| v.as_deref() == Some(key)))
    };
    use logflow::gen::incidents;
    assert!(has(&logs["ddos"], incidents::DDOS_IP));
    assert!(has(&logs["suspicious_ips"], incidents::SCANNER_IP));
    assert!(has(
        &logs["response_time_anomalies"],
        incidents::LATENCY_SERVICE
    ));
    assert!(has(&logs["error_rate_spikes"], incidents::ERROR_SERVICE));
    assert!(has(&users["user_anomalies"], incidents::SCRAPER_USER));
    // Incidents are visible, not dominant.
    assert!(logs["ddos"].len() <= 2, "{:?}", logs["ddos"].len());
    assert!(logs["error_rate_spikes"].len() <= 3);
    assert!(users["user_anomalies"].len() <= 4);
}
