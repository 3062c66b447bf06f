//! The expected rows: windows, groups, aggregates and detectors (docs/design.md sections 3 and 5).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::input::Ev;
use super::lateness::Win;
use super::sessions::Session;
use super::MINUTE;

/// What an output field must be.
#[derive(Clone, Debug)]
pub enum Expect {
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
    /// A JSON number within this relative error of the value (a sketch's answer).
    Within(f64, f64),
}

impl Expect {
    pub fn opt(v: Option<f64>) -> Expect {
        v.map_or(Expect::Null, Expect::Num)
    }

    pub fn matches(&self, got: &Value) -> bool {
        match (self, got) {
            (Expect::Int(e), Value::Number(n)) => n.as_i64() == Some(*e),
            (Expect::Num(e), Value::Number(n)) => n.as_f64().is_some_and(|g| close(*e, g)),
            (Expect::AnyOf(es), Value::Number(n)) => {
                n.as_f64().is_some_and(|g| es.iter().any(|e| close(*e, g)))
            }
            (Expect::Null | Expect::NullOrZero, Value::Null) => true,
            (Expect::NullOrZero, Value::Number(n)) => n.as_f64() == Some(0.0),
            (Expect::Exact(e), g) => e == g,
            (Expect::Within(e, rel), Value::Number(n)) => n
                .as_f64()
                .is_some_and(|g| (g - e).abs() <= rel * e.abs() * (1.0 + 1e-9)),
            _ => false,
        }
    }

    pub fn show(&self) -> String {
        match self {
            Expect::Int(i) => i.to_string(),
            Expect::Num(f) => format!("{f:?}"),
            Expect::AnyOf(fs) => format!("one of {fs:?}"),
            Expect::Null => "null".into(),
            Expect::NullOrZero => "null or 0".into(),
            Expect::Exact(v) => v.to_string(),
            Expect::Within(e, rel) => format!("{e:?} ± {rel}"),
        }
    }
}

pub fn close(a: f64, b: f64) -> bool {
    let d = (a - b).abs();
    d <= 1e-9 || d <= 1e-9 * a.abs().max(b.abs())
}

#[derive(Clone, Debug)]
pub struct Row {
    /// [`WINDOW`] or [`SESSION`]: what `start` and `end` are called.
    pub bounds: [&'static str; 2],
    pub start: i64,
    pub end: i64,
    pub keys: Vec<(&'static str, Option<String>)>,
    pub metrics: Vec<(&'static str, Expect)>,
    /// The row's filter value sits on its threshold: it may be present or not.
    pub optional: bool,
}

/// The names of a row's bounds: windows'.
pub const WINDOW: [&str; 2] = ["window_start", "window_end"];
/// Sessions' (docs/analytics.md, Sessions).
pub const SESSION: [&str; 2] = ["session_start", "session_end"];

impl Row {
    pub fn id(&self) -> String {
        row_id(
            &fmt_ts(self.start),
            &fmt_ts(self.end),
            self.keys
                .iter()
                .map(|(_, v)| v.clone().map_or(Value::Null, Value::String)),
        )
    }

    pub fn metric(&self, name: &str) -> &Expect {
        &self
            .metrics
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no metric {name}"))
            .1
    }

    pub fn num(&self, name: &str) -> Option<f64> {
        match self.metric(name) {
            Expect::Num(f) => Some(*f),
            Expect::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn show(&self) -> String {
        let mut s = format!(
            "{{{}: {}, {}: {}",
            self.bounds[0],
            fmt_ts(self.start),
            self.bounds[1],
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

pub fn row_id(start: &str, end: &str, keys: impl Iterator<Item = Value>) -> String {
    let keys: Vec<Value> = keys.collect();
    format!("{start} {end} {}", Value::Array(keys))
}

/// RFC 3339 UTC with `Z`, milliseconds only when not zero.
pub fn fmt_ts(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("timestamp in range");
    if ms % 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// Window starts of the `size`/`slide` windows that contain `ts`.
pub fn window_starts(ts: i64, size: i64, slide: i64) -> Vec<i64> {
    let mut starts = Vec::new();
    let mut s = ts.div_euclid(slide) * slide;
    while s + size > ts {
        starts.push(s);
        s -= slide;
    }
    starts
}

pub type Key = Vec<Option<String>>;

/// True when window `start` (of `size`, closing `hold` = delay + allowed lateness after its
/// end) is still open when `ev` arrives: its deadline is after the watermark's progress.
pub fn open(ev: &Ev, start: i64, size: i64, hold: i64) -> bool {
    ev.seen.is_none_or(|seen| start + size + hold > seen)
}

/// Groups events by window and key: (start, key) -> events, in input order. An event joins
/// only the windows still open when it arrives.
pub fn group(
    events: &[Ev],
    size: i64,
    slide: i64,
    hold: i64,
    key: impl Fn(&Ev) -> Key,
) -> BTreeMap<(i64, Key), Vec<&Ev>> {
    let mut groups: BTreeMap<(i64, Key), Vec<&Ev>> = BTreeMap::new();
    for ev in events {
        for s in window_starts(ev.ts, size, slide) {
            if open(ev, s, size, hold) {
                groups.entry((s, key(ev))).or_default().push(ev);
            }
        }
    }
    groups
}

pub fn floats(evs: &[&Ev], f: impl Fn(&Ev) -> Option<f64>) -> Vec<f64> {
    evs.iter().filter_map(|e| f(e)).collect()
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

pub fn sample_stddev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

pub fn max(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::max)
}

pub fn min(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::min)
}

pub fn distinct<'a>(evs: &[&'a Ev], f: impl Fn(&'a Ev) -> &'a Option<String>) -> BTreeSet<&'a str> {
    evs.iter().filter_map(|e| f(e).as_deref()).collect()
}

/// The `q`-quantile as logflow's percentiles define it: the value of rank ⌊q·(n−1)⌋ of the
/// sorted values (no interpolation); `None` without values.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * (n - 1) as f64).floor() as usize).min(n - 1)])
}

/// A percentile from a sketch: within the documented 1% of the exact quantile, or null.
pub fn sketched(xs: &[f64], q: f64) -> Expect {
    quantile(xs, q).map_or(Expect::Null, |e| Expect::Within(e, 0.01))
}

/// The exact top k as `top_k` answers it: most frequent first, ties by ascending value.
pub fn top_k<T: Ord + Clone>(values: impl Iterator<Item = T>, k: usize) -> Vec<(T, usize)> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut all: Vec<(T, usize)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// The actions of `evs` in event-time order (ties by line), as `collect_list(action)` keeps
/// them.
pub fn action_sequence(evs: &[&Ev]) -> Expect {
    let mut ordered: Vec<&&Ev> = evs.iter().collect();
    ordered.sort_by_key(|e| (e.ts, e.line));
    Expect::Exact(Value::Array(
        ordered
            .iter()
            .filter_map(|e| e.action.clone().map(Value::String))
            .collect(),
    ))
}

pub fn count(n: usize) -> Expect {
    Expect::Int(n as i64)
}

pub fn percent(part: usize, total: usize) -> f64 {
    part as f64 / total as f64 * 100.0
}

pub fn errors(evs: &[&Ev]) -> usize {
    evs.iter()
        .filter(|e| e.status.is_some_and(|s| s >= 400))
        .count()
}

/// Rows of one analysis: window size/slide/hold, key names and a metric function per group.
pub fn analysis(
    events: &[Ev],
    (size, slide, hold): (i64, i64, i64),
    key_names: &[&'static str],
    key: impl Fn(&Ev) -> Key,
    metrics: impl Fn(&[&Ev]) -> Vec<(&'static str, Expect)>,
) -> Vec<Row> {
    group(events, size, slide, hold, key)
        .into_iter()
        .map(|((start, key), evs)| Row {
            bounds: WINDOW,
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
pub fn filter_rows(rows: Vec<Row>, margin: impl Fn(&Row) -> Option<f64>) -> Vec<Row> {
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
pub fn by_key(source: &[Row]) -> BTreeMap<Key, Vec<&Row>> {
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

pub fn log_oracle(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    // (size, slide, delay): 1-minute windows 5 minutes, 5-minute ones 10 (DESIGN.md section 5).
    const ONE: (i64, i64, i64) = (MINUTE, MINUTE, 5 * MINUTE);
    const FIVE: (i64, i64, i64) = (5 * MINUTE, 5 * MINUTE, 10 * MINUTE);
    let service = |e: &Ev| vec![e.service.clone()];
    let ip = |e: &Ev| vec![e.ip.clone()];
    let rt = |e: &Ev| e.rt;
    let mut out = BTreeMap::new();

    let response_time = analysis(events, ONE, &["service"], service, |evs| {
        let rts = floats(evs, rt);
        vec![
            ("request_count", count(evs.len())),
            ("avg_response_time", Expect::opt(mean(&rts))),
            ("max_response_time", Expect::opt(max(&rts))),
            ("min_response_time", Expect::opt(min(&rts))),
            ("stddev_response_time", Expect::opt(sample_stddev(&rts))),
            ("p50_response_time", sketched(&rts, 0.5)),
            ("p95_response_time", sketched(&rts, 0.95)),
            ("p99_response_time", sketched(&rts, 0.99)),
        ]
    });
    let error_rate = analysis(events, ONE, &["service"], service, |evs| {
        vec![
            ("total_requests", count(evs.len())),
            ("error_count", count(errors(evs))),
            ("error_rate", Expect::Num(percent(errors(evs), evs.len()))),
        ]
    });
    let ip_patterns = analysis(events, FIVE, &["ip_address"], ip, |evs| {
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
    let ip_minute = analysis(events, ONE, &["ip_address"], ip, |evs| {
        vec![
            ("request_count", count(evs.len())),
            ("unique_users", count(distinct(evs, |e| &e.user).len())),
        ]
    });
    let ddos = filter_rows(ip_minute, |r| {
        let (n, users) = (r.num("request_count")?, r.num("unique_users")?);
        Some(if n > 100.0 && users < 5.0 { 1.0 } else { -1.0 })
    });
    let sla = analysis(events, ONE, &["service"], service, |evs| {
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
        FIVE,
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
    let service_popularity = analysis(events, ONE, &["service"], service, |evs| {
        vec![
            ("request_count", count(evs.len())),
            ("unique_users", count(distinct(evs, |e| &e.user).len())),
        ]
    });
    let system_health = analysis(
        events,
        ONE,
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

pub fn total_value(evs: &[&Ev]) -> Expect {
    let values = floats(evs, |e| e.value);
    if values.is_empty() {
        Expect::NullOrZero
    } else {
        Expect::Num(values.iter().sum())
    }
}

/// `user_sessions` of `dataflows/user-events.toml`: a 10-minute gap, the job's 5-minute delay;
/// the job's granularity is 10 s (the gcd of its windows' slides and deadlines and of
/// `late_alerts`' default trigger).
pub const USER_SESSIONS: Win = Win::session(10 * MINUTE, 5 * MINUTE, 0, 10_000);

/// `user_sessions`' metrics: events per session and the time from its first to its last.
pub fn session_metrics(s: &Session<'_>) -> Vec<(&'static str, Expect)> {
    vec![
        ("events", count(s.evs.len())),
        (
            "active_seconds",
            Expect::Num((s.last - s.first) as f64 / 1000.0),
        ),
    ]
}

pub fn user_event_oracle(events: &[Ev]) -> BTreeMap<&'static str, Vec<Row>> {
    let user = |e: &Ev| vec![e.user.clone()];
    let mut out = BTreeMap::new();
    let activity = analysis(
        events,
        (MINUTE, 30_000, 5 * MINUTE),
        &["user_id"],
        user,
        |evs| {
            vec![
                ("total_events", count(evs.len())),
                ("unique_actions", count(distinct(evs, |e| &e.action).len())),
                ("total_value", total_value(evs)),
                ("actions_sequence", action_sequence(evs)),
            ]
        },
    );
    let actions = analysis(
        events,
        (2 * MINUTE, MINUTE, 5 * MINUTE),
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
    let per_user_5m = analysis(
        events,
        (5 * MINUTE, 2 * MINUTE, 10 * MINUTE),
        &["user_id"],
        user,
        |evs| {
            vec![
                ("event_count", count(evs.len())),
                ("total_value", total_value(evs)),
            ]
        },
    );
    let anomalies = filter_rows(per_user_5m, |r| Some(r.num("event_count")? - 50.5));
    let sessions = super::sessions::walk(events, USER_SESSIONS, user, false);
    out.insert(
        "user_sessions",
        super::sessions::rows(&sessions, USER_SESSIONS.size, &["user_id"], session_metrics),
    );
    out.insert("user_activity_sliding", activity);
    out.insert("action_metrics", actions);
    out.insert("user_anomalies", anomalies);
    out
}
