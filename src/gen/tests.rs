//! Generator tests. Lines are checked with an independent reading (serde_json + chrono), not
//! with logflow's parsers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::incidents::{self, CYCLE_MS};
use super::*;

const MINUTE: i64 = 60_000;

fn lines(cfg: GenConfig) -> Vec<(LineKind, Vec<u8>)> {
    let mut g = Generator::new(cfg);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while g.next_line(&mut buf) {
        let kind = g.last_kind().expect("a line was generated");
        out.push((kind, std::mem::take(&mut buf)));
    }
    out
}

fn str_or_null(o: &serde_json::Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{k}: wrong type {v}")),
    }
}

fn num_or_null(o: &serde_json::Map<String, Value>, k: &str) -> Result<Option<f64>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(format!("{k}: wrong type {v}")),
    }
}

/// A good log line as docs/design.md section 2 reads it.
#[derive(Debug)]
struct Log {
    ts: i64,
    service: Option<String>,
    ip: Option<String>,
    user: Option<String>,
    rt: Option<f64>,
    status: Option<i64>,
}

fn read_log(line: &[u8]) -> Result<Log, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("not an object")?;
    let ts = match o.get("timestamp") {
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("timestamp {s}: {e}"))?
            .timestamp_millis(),
        Some(Value::Number(n)) => n.as_i64().ok_or("timestamp not an integer")?,
        other => return Err(format!("timestamp {other:?}")),
    };
    for k in ["level", "message", "request_id", "error_code"] {
        str_or_null(o, k)?;
    }
    let status = match o.get("status_code") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("status_code not an integer")?),
        Some(v) => return Err(format!("status_code: wrong type {v}")),
    };
    Ok(Log {
        ts,
        service: str_or_null(o, "service")?,
        ip: str_or_null(o, "ip_address")?,
        user: str_or_null(o, "user_id")?,
        rt: num_or_null(o, "response_time")?,
        status,
    })
}

#[derive(Debug)]
struct UserEvent {
    ts: i64,
    user: Option<String>,
}

fn read_user_event(line: &[u8]) -> Result<UserEvent, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("not an object")?;
    let ts = match o.get("timestamp") {
        Some(Value::Number(n)) => n.as_i64().ok_or("timestamp not an integer")?,
        other => return Err(format!("timestamp {other:?}")),
    };
    for k in ["action", "session_id", "ip_address"] {
        str_or_null(o, k)?;
    }
    num_or_null(o, "value")?;
    Ok(UserEvent {
        ts,
        user: str_or_null(o, "user_id")?,
    })
}

fn fnv1a(lines: &[(LineKind, Vec<u8>)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, l) in lines {
        for &b in l.iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for kind in [Kind::Logs, Kind::UserEvents] {
        let cfg = GenConfig {
            kind,
            events: 20_000,
            late_fraction: 0.01,
            ..GenConfig::default()
        };
        let a = lines(cfg.clone());
        assert_eq!(a, lines(cfg.clone()));
        assert_ne!(a, lines(GenConfig { seed: 43, ..cfg }));
    }
}

#[test]
fn output_is_pinned() {
    // Byte-identical output across versions: a change here changes every generated file and
    // every benchmark input. Update the digests only on purpose.
    let logs = lines(GenConfig {
        events: 5_000,
        ..GenConfig::default()
    });
    let events = lines(GenConfig {
        kind: Kind::UserEvents,
        events: 5_000,
        ..GenConfig::default()
    });
    assert_eq!(
        (fnv1a(&logs), fnv1a(&events)),
        (6_886_180_062_846_680_377, 15_270_812_320_049_906_437),
        "generator output changed"
    );
}

#[test]
fn good_lines_are_good_bad_lines_are_bad() {
    for (kind, read) in [
        (
            Kind::Logs,
            (|l: &[u8]| read_log(l).map(|_| ())) as fn(&[u8]) -> Result<(), String>,
        ),
        (Kind::UserEvents, |l: &[u8]| read_user_event(l).map(|_| ())),
    ] {
        let all = lines(GenConfig {
            kind,
            late_fraction: 0.01,
            ..GenConfig::default()
        });
        let mut bad = 0;
        let mut non_utf8 = 0;
        for (i, (k, line)) in all.iter().enumerate() {
            assert!(!line.is_empty() && !line.contains(&b'\n') && !line.ends_with(b"\r"));
            let res = read(line);
            match k {
                LineKind::Bad => {
                    bad += 1;
                    non_utf8 += usize::from(std::str::from_utf8(line).is_err());
                    assert!(
                        res.is_err(),
                        "{kind:?} line {i} should be bad: {}",
                        String::from_utf8_lossy(line)
                    );
                }
                _ => assert!(
                    res.is_ok(),
                    "{kind:?} line {i}: {res:?}: {}",
                    String::from_utf8_lossy(line)
                ),
            }
        }
        let frac = bad as f64 / all.len() as f64;
        assert!(
            (0.008..0.012).contains(&frac),
            "{kind:?} bad fraction {frac}"
        );
        assert!(non_utf8 > 0, "{kind:?}: no non-UTF-8 bad line");
    }
}

#[test]
fn no_bad_lines_when_asked() {
    let all = lines(GenConfig {
        bad_fraction: 0.0,
        events: 20_000,
        ..GenConfig::default()
    });
    assert!(all.iter().all(|(k, _)| *k == LineKind::Good));
}

#[test]
fn disorder_is_bounded_and_late_lines_are_late() {
    for kind in [Kind::Logs, Kind::UserEvents] {
        for disorder_ms in [0, 1_500, 90_000] {
            let cfg = GenConfig {
                kind,
                events: 300_000,
                disorder_ms,
                late_fraction: 0.01,
                ..GenConfig::default()
            };
            let all = lines(cfg.clone());
            let mut max_seen = i64::MIN;
            let mut max_behind = 0;
            let mut late = 0;
            for (k, line) in &all {
                let ts = match kind {
                    Kind::Logs => read_log(line).map(|l| l.ts),
                    Kind::UserEvents => read_user_event(line).map(|e| e.ts),
                };
                match (k, ts) {
                    (LineKind::Bad, _) => {}
                    (LineKind::Good, Ok(ts)) => {
                        if max_seen != i64::MIN {
                            assert!(max_seen - ts < disorder_ms.max(1), "{kind:?} {disorder_ms}");
                            max_behind = max_behind.max(max_seen - ts);
                        }
                        max_seen = max_seen.max(ts);
                    }
                    (LineKind::Late, Ok(ts)) => {
                        late += 1;
                        assert!(
                            max_seen - ts > 15 * MINUTE,
                            "late line only {} behind",
                            max_seen - ts
                        );
                        assert!(ts >= cfg.start_ms, "late line before the start");
                    }
                    (_, Err(e)) => panic!("{e}"),
                }
            }
            if disorder_ms > 1000 {
                assert!(
                    max_behind > disorder_ms * 9 / 10,
                    "disorder unused: {max_behind}"
                );
            }
            // 300k lines at 100/s = 50 minutes; late lines from minute 20 on.
            assert!(late > 1_000, "{late} late lines");
        }
    }
}

/// Per-window aggregates for the incident checks.
#[derive(Default)]
struct Cell {
    count: u64,
    users: BTreeSet<String>,
    services: BTreeSet<String>,
    errors: u64,
    rt_sum: f64,
    rt_n: u64,
}

fn window(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size) * size
}

fn log_cells(
    cfg: GenConfig,
    size: i64,
    key: impl Fn(&Log) -> Option<String>,
) -> BTreeMap<(i64, String), Cell> {
    let mut cells: BTreeMap<(i64, String), Cell> = BTreeMap::new();
    for (k, line) in lines(cfg) {
        if k != LineKind::Good {
            continue;
        }
        let log = read_log(&line).expect("good line");
        let Some(key) = key(&log) else { continue };
        let c = cells.entry((window(log.ts, size), key)).or_default();
        c.count += 1;
        c.users.extend(log.user.clone());
        c.services.extend(log.service.clone());
        c.errors += u64::from(log.status.is_some_and(|s| s >= 400));
        if let Some(rt) = log.rt {
            c.rt_sum += rt;
            c.rt_n += 1;
        }
    }
    cells
}

const START: i64 = 1_795_514_400_000;

#[test]
fn log_incidents_fire_their_detectors_and_only_there() {
    let cfg = GenConfig::default();
    // ddos: > 100 requests in one minute from < 5 users, only for the DDoS IP.
    let by_ip = log_cells(cfg.clone(), MINUTE, |l| l.ip.clone());
    let ddos: Vec<_> = by_ip
        .iter()
        .filter(|(_, c)| c.count > 100 && c.users.len() < 5)
        .map(|((w, ip), c)| (*w, ip.clone(), c.count))
        .collect();
    assert_eq!(ddos.len(), 1, "{ddos:?}");
    assert_eq!(
        (ddos[0].0, ddos[0].1.as_str()),
        (START + 2 * MINUTE, incidents::DDOS_IP)
    );
    assert!(ddos[0].2 < 500, "the attack should not dominate");
    let busiest_normal = by_ip
        .iter()
        .filter(|((_, ip), _)| ip != incidents::DDOS_IP && ip != incidents::SCANNER_IP)
        .map(|(_, c)| c.count)
        .max();
    assert!(busiest_normal < Some(90), "{busiest_normal:?}");

    // suspicious_ips: > 1000 requests in a 5-minute window across > 5 services.
    let by_ip5 = log_cells(cfg.clone(), 5 * MINUTE, |l| l.ip.clone());
    let suspicious: Vec<_> = by_ip5
        .iter()
        .filter(|(_, c)| c.count > 1000 && c.services.len() > 5)
        .map(|((w, ip), _)| (*w, ip.clone()))
        .collect();
    assert_eq!(
        suspicious,
        vec![(START + 5 * MINUTE, incidents::SCANNER_IP.to_string())]
    );

    // error_rate_spikes: the error service's rate jumps > 10 points, nowhere else.
    let by_service = log_cells(cfg.clone(), MINUTE, |l| l.service.clone());
    let mut spikes = Vec::new();
    let mut prev: BTreeMap<&str, f64> = BTreeMap::new();
    for ((w, s), c) in &by_service {
        let _ = w;
        let rate = c.errors as f64 / c.count as f64 * 100.0;
        if let Some(p) = prev.insert(s, rate) {
            if rate - p > 10.0 {
                spikes.push((*w, s.clone()));
            }
        }
    }
    // Keys iterate by window first, so `prev` holds the previous window of each service.
    assert_eq!(
        spikes,
        vec![(START + 14 * MINUTE, incidents::ERROR_SERVICE.to_string())]
    );

    // response_time_anomalies: the latency service's minute is far above its history.
    let avg = |w: i64, s: &str| {
        let c = &by_service[&(w, s.to_string())];
        c.rt_sum / c.rt_n as f64
    };
    let s = incidents::LATENCY_SERVICE;
    let hit = avg(START + 12 * MINUTE, s);
    for m in 2..12 {
        assert!(hit > 3.0 * avg(START + m * MINUTE, s), "minute {m}");
    }
}

#[test]
fn user_event_incident_fires_user_anomalies() {
    let mut cells: BTreeMap<(i64, Option<String>), u64> = BTreeMap::new();
    for (k, line) in lines(GenConfig {
        kind: Kind::UserEvents,
        ..GenConfig::default()
    }) {
        if k != LineKind::Good {
            continue;
        }
        let e = read_user_event(&line).expect("good line");
        // 5-minute windows sliding by 2 minutes.
        let mut s = window(e.ts, 2 * MINUTE);
        while s > e.ts - 5 * MINUTE {
            *cells.entry((s, e.user.clone())).or_default() += 1;
            s -= 2 * MINUTE;
        }
    }
    let anomalies: BTreeSet<_> = cells
        .iter()
        .filter(|(_, n)| **n > 50)
        .map(|((w, u), _)| (*w, u.clone()))
        .collect();
    let scraper = Some(incidents::SCRAPER_USER.to_string());
    let expected: BTreeSet<_> = [0, 2, 4]
        .into_iter()
        .map(|m| (START + m * MINUTE, scraper.clone()))
        .collect();
    assert_eq!(anomalies, expected);
}

#[test]
fn no_incidents_means_no_incident_traffic() {
    for kind in [Kind::Logs, Kind::UserEvents] {
        let all = lines(GenConfig {
            kind,
            incidents: false,
            events: 2 * (CYCLE_MS / 10) as u64,
            ..GenConfig::default()
        });
        for (_, line) in all {
            let text = String::from_utf8_lossy(&line);
            for marker in [
                incidents::DDOS_IP,
                incidents::SCANNER_IP,
                incidents::SCRAPER_USER,
                incidents::DDOS_USERS[0],
            ] {
                assert!(!text.contains(marker), "{text}");
            }
        }
    }
}

#[test]
fn lines_look_like_real_logs() {
    let all = lines(GenConfig::default());
    let good: Vec<_> = all.iter().filter(|(k, _)| *k == LineKind::Good).collect();
    let mean = good.iter().map(|(_, l)| l.len()).sum::<usize>() as f64 / good.len() as f64;
    assert!((250.0..=300.0).contains(&mean), "mean line length {mean}");
    let logs: Vec<Log> = good
        .iter()
        .map(|(_, l)| read_log(l).expect("good"))
        .collect();
    let n = logs.len() as f64;
    let share = |f: &dyn Fn(&Log) -> bool| logs.iter().filter(|l| f(l)).count() as f64 / n;
    let services: BTreeSet<_> = logs.iter().filter_map(|l| l.service.clone()).collect();
    let ips: BTreeSet<_> = logs.iter().filter_map(|l| l.ip.clone()).collect();
    let users: BTreeSet<_> = logs.iter().filter_map(|l| l.user.clone()).collect();
    assert_eq!(services.len(), 8);
    assert!((300..400).contains(&ips.len()), "{}", ips.len());
    assert!((400..=510).contains(&users.len()), "{}", users.len());
    let ok = share(&|l| l.status == Some(200));
    assert!((0.8..0.9).contains(&ok), "{ok}");
    let errors = share(&|l| l.status.is_some_and(|s| s >= 400));
    assert!((0.03..0.07).contains(&errors), "{errors}");
    for (what, f) in [
        ("null service", share(&|l| l.service.is_none())),
        ("null user", share(&|l| l.user.is_none())),
        ("null response_time", share(&|l| l.rt.is_none())),
        ("null status", share(&|l| l.status.is_none())),
        ("null ip", share(&|l| l.ip.is_none())),
    ] {
        assert!((0.001..0.1).contains(&f), "{what}: {f}");
    }
    let text: Vec<String> = good
        .iter()
        .map(|(_, l)| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        text.iter().any(|t| t.contains("\"timestamp\": 17")),
        "epoch-ms timestamps"
    );
    assert!(
        text.iter().any(|t| t.contains(":00\", \"level\"")),
        "offset timestamps"
    );
    // `{"timestamp": "2026-11-24T10:00:01Z", ...`: the closing quote right after the seconds.
    let no_millis = |t: &String| t.starts_with("{\"timestamp\": \"") && t.as_bytes()[35] == b'"';
    assert!(text.iter().any(no_millis), "timestamps without millis");
    assert!(
        text.iter().any(|t| t.contains("\\\"email\\\"")),
        "escaped quotes"
    );
}

#[test]
fn args_parse_with_clap() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gen: GenArgs,
    }
    let cli = Cli::try_parse_from(["gen"]).expect("defaults");
    assert_eq!(cli.gen.config().expect("valid"), GenConfig::default());
    let cli = Cli::try_parse_from([
        "gen",
        "--kind",
        "user-events",
        "--events",
        "10",
        "--disorder",
        "500ms",
        "--start",
        "2026-11-24T12:00:00+02:00",
        "--no-incidents",
        "--rate",
        "1000",
    ])
    .expect("valid flags");
    let cfg = cli.gen.config().expect("valid");
    assert_eq!(cfg.kind, Kind::UserEvents);
    assert_eq!(cfg.disorder_ms, 500);
    assert_eq!(cfg.start_ms, START);
    assert!(!cfg.incidents);
    assert!(Cli::try_parse_from(["gen", "--disorder", "90"]).is_err());
    let before = chrono::Utc::now().timestamp_millis();
    let cli = Cli::try_parse_from(["gen", "--start", "now"]).expect("valid flags");
    let now = cli.gen.config().expect("valid").start_ms;
    let after = chrono::Utc::now().timestamp_millis();
    assert!(
        (before..=after).contains(&now),
        "{before} <= {now} <= {after}"
    );
    for bad in [
        vec!["gen", "--start", "yesterday"],
        vec!["gen", "--bad-fraction", "1.5"],
        vec!["gen", "--event-rate", "0"],
        vec!["gen", "--rate=-1"],
        vec!["gen", "--bad-fraction", "0.6", "--late-fraction", "0.6"],
    ] {
        let cli = Cli::try_parse_from(&bad).expect("parses");
        let err = cli.gen.config().expect_err("invalid");
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn run_writes_newline_terminated_lines() {
    let dir = std::env::temp_dir().join(format!("logflow-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("out.jsonl");
    let args = GenArgs {
        kind: Kind::Logs,
        events: 2_000,
        seed: 9,
        start: "2026-11-24T10:00:00Z".into(),
        event_rate: 100.0,
        disorder: std::time::Duration::from_secs(60),
        bad_fraction: 0.05,
        late_fraction: 0.0,
        no_incidents: false,
        output: path.clone(),
        rate: Some(200_000.0),
    };
    let stats = run(&args).expect("runs");
    let bytes = std::fs::read(&path).expect("written");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(stats.lines, 2_000);
    assert_eq!(stats.good + stats.bad + stats.late, stats.lines);
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2_000);
    assert!(bytes.ends_with(b"\n"));
    let expected: Vec<u8> = lines(args.config().expect("valid"))
        .into_iter()
        .flat_map(|(_, mut l)| {
            l.push(b'\n');
            l
        })
        .collect();
    assert_eq!(bytes, expected);
}

/// `cargo test --release --lib gen::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "measures speed; run in release"]
fn throughput() {
    for kind in [Kind::Logs, Kind::UserEvents] {
        let mut g = Generator::new(GenConfig {
            kind,
            events: 5_000_000,
            ..GenConfig::default()
        });
        let mut buf = Vec::with_capacity(1 << 20);
        let t = std::time::Instant::now();
        let mut bytes = 0;
        while g.next_line(&mut buf) {
            buf.push(b'\n');
            if buf.len() > 1 << 19 {
                bytes += buf.len();
                buf.clear();
            }
        }
        bytes += buf.len();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{kind:?}: {:.2} M lines/s, {:.0} MB/s",
            5.0 / secs,
            bytes as f64 / secs / 1e6
        );
    }
}

#[test]
fn stats_read_as_a_sentence() {
    let s = GenStats {
        lines: 50_000,
        good: 49_482,
        bad: 518,
        late: 0,
        bytes: 14_630_000,
    };
    assert_eq!(
        s.to_string(),
        "50000 lines (49482 valid, 518 bad input for the dead-letter output, 0 late), 14.6 MB"
    );
}
