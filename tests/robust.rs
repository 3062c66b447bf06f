//! Bounded state under hostile keys: `max_keys` keeps the first keys of each window exactly,
//! writes every other one to `<job>.overflow` (never dropping one silently), and keeps memory
//! flat however many distinct keys arrive.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{bin, read_jsonl, rfc3339, run_file, run_ok, tmpdir};
use serde_json::json;

/// 2026-11-24T10:00:00Z.
const T0: i64 = 1_795_514_400_000;

/// The job: requests and time per IP and minute, with `max_keys` if given, windows held for
/// `delay` past their end, and the change of each IP's requests (a detector on the kept rows).
fn spec(dir: &Path, max_keys: Option<u64>, delay: &str) -> String {
    let max = max_keys.map_or(String::new(), |m| format!("max_keys = {m}"));
    let text = format!(
        r#"
name = "flood"
[source]
kind = "file"
path = "unused.jsonl"
format = "json"
[watermark]
delay = "{delay}"

[[analysis]]
name = "per_ip"
window = {{ size = "1m" }}
group_by = ["ip_address"]
select = ["count() as requests", "sum(response_time) as total_time"]
{max}

[[analysis]]
name = "per_ip_change"
from = "per_ip"
detect = {{ kind = "lag", field = "requests" }}
"#
    );
    let path = dir.join(format!("flood-{}-{delay}.toml", max_keys.unwrap_or(0)));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `n` events over `minutes` minutes, in time order, from `distinct` pseudo-random IPs (a fixed
/// seed): (event time, ip, response time) per line, also written to `path`.
fn flood(path: &Path, n: u64, distinct: u64, minutes: i64) -> Vec<(i64, String, f64)> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut events = Vec::with_capacity(n as usize);
    for i in 0..n {
        // xorshift64*: an independent generator, not logflow's.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) % distinct;
        let ip = format!("10.{}.{}.{}", r >> 16, (r >> 8) & 255, r & 255);
        let ts = T0 + (i as i64) * minutes * 60_000 / n as i64;
        let rt = (i % 7) as f64 * 0.25;
        let line = json!({"timestamp": rfc3339(ts), "service": "api", "ip_address": ip, "response_time": rt});
        writeln!(out, "{line}").unwrap();
        events.push((ts, ip, rt));
    }
    out.flush().unwrap();
    events
}

/// What the job must write, computed here: per minute, every IP's (requests, total time).
fn per_window(events: &[(i64, String, f64)]) -> BTreeMap<i64, BTreeMap<String, (i64, f64)>> {
    let mut w: BTreeMap<i64, BTreeMap<String, (i64, f64)>> = BTreeMap::new();
    for (ts, ip, rt) in events {
        let e = w
            .entry(ts - ts.rem_euclid(60_000))
            .or_default()
            .entry(ip.clone())
            .or_default();
        e.0 += 1;
        e.1 += rt;
    }
    w
}

#[test]
fn a_random_key_flood_keeps_the_first_keys_exactly_and_writes_every_other_to_overflow() {
    let dir = tmpdir("robust-flood");
    let input = dir.join("flood.jsonl");
    let events = flood(&input, 60_000, 20_000, 3);
    let spec = spec(&dir, Some(500), "0s");
    let expected = per_window(&events);

    let mut outputs = Vec::new();
    for workers in ["1", "3"] {
        let out = dir.join(format!("out-{workers}"));
        run_file(&spec, &input, &out, workers);
        let rows = read_jsonl(&out.join("per_ip.jsonl"));
        let overflow = read_jsonl(&out.join("flood.overflow.jsonl"));

        // Kept: exactly the first 500 IPs of each window in key order, exactly aggregated.
        let mut kept: BTreeMap<i64, BTreeMap<String, (i64, f64)>> = BTreeMap::new();
        for r in &rows {
            let start = chrono::DateTime::parse_from_rfc3339(r["window_start"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let ip = r["ip_address"].as_str().unwrap().to_string();
            let v = (
                r["requests"].as_i64().unwrap(),
                r["total_time"].as_f64().unwrap(),
            );
            assert!(kept.entry(start).or_default().insert(ip, v).is_none());
        }
        let mut overflowed: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for o in &overflow {
            assert_eq!(o["analysis"], "per_ip", "{o}");
            assert_eq!(
                o["reason"], "beyond the first 500 keys of the window (max_keys)",
                "{o}"
            );
            let start = chrono::DateTime::parse_from_rfc3339(o["window_start"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let key = o["key"].as_array().unwrap();
            assert_eq!(key.len(), 1, "{o}");
            let fresh = overflowed
                .entry(start)
                .or_default()
                .insert(key[0].as_str().unwrap().to_string());
            assert!(fresh, "each overflowed key once per window: {o}");
        }
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        let mut total_overflow = 0;
        for (start, all) in &expected {
            assert!(all.len() > 5_000, "the flood overflows window {start}");
            let first: Vec<_> = all.iter().take(500).collect();
            let got = &kept[start];
            assert_eq!(got.len(), 500, "window {start}: kept keys");
            for ((ip, (n, t)), (gip, (gn, gt))) in first.iter().zip(got) {
                assert_eq!((*ip, n), (gip, gn), "window {start}");
                assert!((t - gt).abs() < 1e-9, "window {start} {ip}: {t} vs {gt}");
            }
            let rest: BTreeSet<String> = all.keys().skip(500).cloned().collect();
            total_overflow += rest.len();
            assert!(
                overflowed.get(start) == Some(&rest),
                "window {start}: the overflow record set is every key after the first 500"
            );
        }
        assert_eq!(overflow.len(), total_overflow);
        // The detector reads the kept rows only: one row per kept key and window.
        let changes = read_jsonl(&out.join("per_ip_change.jsonl"));
        assert_eq!(changes.len(), rows.len());
        let mut files = common::rows::dir_results(&out);
        files.remove("flood.dead-letter");
        outputs.push(files);
    }
    assert!(
        outputs[0] == outputs[1],
        "the same results on 1 and 3 workers"
    );
}

/// Peak resident memory of a run, read from /proc while it runs (VmHWM only grows, so the last
/// reading before it exits is its peak up to the final flush).
fn peak_rss_kib(spec: &str, input: &Path, out: &Path) -> u64 {
    let mut child = bin()
        .args(["run", spec, "--input", input.to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap(), "-w", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{spec}: {st}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn max_keys_bounds_the_state_a_flood_of_keys_holds() {
    let dir = tmpdir("robust-memory");
    // 800,000 events over ten minutes from nearly all distinct IPs (of 40M possible), every
    // window held to the end (a 15-minute delay): the unlimited job holds every key at once,
    // the capped one 100 keys per window and an 8-byte hash per other key. Both also hold what
    // a file read faster than it is merged leaves in flight (one partial per distinct key of a
    // read batch) and the overflow records waiting for the watermark, as dead letters do.
    let input = dir.join("flood.jsonl");
    flood(&input, 800_000, 40_000_000, 10);
    // What is in flight depends on how the workers interleave (one capped run in the suite
    // peaked 70 MB above the others): each job's least peak of two runs.
    let least = |max_keys: Option<u64>, out: &str| {
        let spec = spec(&dir, max_keys, "15m");
        (0..2)
            .map(|_| {
                let _ = std::fs::remove_dir_all(dir.join(out));
                peak_rss_kib(&spec, &input, &dir.join(out))
            })
            .min()
            .unwrap()
    };
    let all_kib = least(None, "out-all");
    let capped_kib = least(Some(100), "out-capped");
    eprintln!("peak RSS KiB: unlimited {all_kib}, max_keys = 100 {capped_kib}");
    assert!(
        all_kib > capped_kib + 100 * 1024,
        "unlimited {all_kib} KiB vs capped {capped_kib} KiB"
    );
    let overflow = read_jsonl(&dir.join("out-capped").join("flood.overflow.jsonl"));
    let kept = read_jsonl(&dir.join("out-capped").join("per_ip.jsonl"));
    assert_eq!(kept.len(), 10 * 100);
    // Every (window, key) is either kept or overflowed.
    assert!(overflow.len() + kept.len() > 790_000, "{}", overflow.len());
}

#[test]
fn check_warns_on_per_client_keys_without_max_keys() {
    let dir = tmpdir("robust-check");
    let out = run_ok(&["check", &spec(&dir, None, "0s")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: analysis `per_ip` is grouped by `ip_address` without `max_keys`"),
        "{text}"
    );
    let out = run_ok(&["check", &spec(&dir, Some(10), "0s")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("warning:"), "{text}");
    assert!(
        text.contains(
            "at most 10 keys per window (the first in key order; the others -> `flood.overflow`)"
        ),
        "{text}"
    );
    // The shipped job groups per IP and per user without it.
    let out = run_ok(&["check", "dataflows/log-analysis.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("analysis `ip_patterns` is grouped by `ip_address`"),
        "{text}"
    );
}

#[test]
fn max_keys_is_refused_where_it_cannot_hold() {
    let dir = tmpdir("robust-refused");
    for (extra, what) in [
        ("max_keys = 0", "max_keys must be between 1"),
        (
            "max_keys = 5\nmode = \"update\"",
            "`max_keys` applies to windowed analyses in `append` mode",
        ),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"ip_address\"]\nselect = [\"count() as n\"]\n{extra}\n"
            ),
        )
        .unwrap();
        let out = bin()
            .args(["check", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(what) && err.contains("max_keys"),
            "{extra}: {err}"
        );
    }
}

/// On one broker (tests of one binary run at once, and each broker takes the port):
/// [`oversized_dead_letter`] and [`refused_record_under_restart`].
#[test]
fn kafka_sink_guards() {
    let b = common::kafka::Broker::start("robust-kafka");
    oversized_dead_letter(&b);
    refused_record_under_restart(&b);
}

/// A dead letter larger than its topic's own `max.message.bytes` (10,000 here, far below the
/// 990,000-byte default cut) is cut to fit that topic, keeping its length and checksum; the
/// job succeeds.
fn oversized_dead_letter(b: &common::kafka::Broker) {
    use common::kafka::finish;
    let dir = tmpdir("robust-kafka-dead-letter");
    let spec = dir.join("small.toml");
    std::fs::write(
        &spec,
        r#"name = "small"
[source]
kind = "kafka"
topic = "logs"
format = "json"
[sink]
kind = "kafka"
[[analysis]]
name = "per_service"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as requests"]
"#,
    )
    .unwrap();
    b.client(&[
        "create",
        &b.address,
        "logs:1",
        "small.dead-letter:1:max.message.bytes=10000",
        "small.late:1",
        "per_service:1",
    ]);
    // A 50,000-byte line that is not JSON between two good ones, then 40 short bad lines: the
    // producer's batches of dead letters must fit the topic too (the broker refuses a whole
    // batch over its limit).
    let bad = format!("not json {}", "x".repeat(50_000 - 9));
    let input = dir.join("logs.jsonl");
    let good = |s: u32| {
        json!({"timestamp": format!("2026-11-24T10:00:{s:02}Z"), "service": "api"}).to_string()
    };
    let mut text = format!("{}\n{bad}\n{}\n", good(1), good(2));
    for i in 0..40 {
        text.push_str(&format!("garbage {i} {}\n", "y".repeat(400)));
    }
    std::fs::write(&input, text).unwrap();
    assert_eq!(b.produce("logs", &input), 43);
    let err = finish(
        bin()
            .args(["run", spec.to_str().unwrap(), "--brokers", &b.address])
            .args(["--stop-at-end"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&err);
    assert!(
        common::messages(&err).any(|m| m
            == "logflow: dead letters to `small.dead-letter` are cut to 9488 bytes (its max.message.bytes is 10000)"),
        "{err}"
    );
    let dead = b.dump("small.dead-letter", &dir);
    assert_eq!(dead.len(), 41);
    let cut: Vec<_> = dead
        .iter()
        .filter(|(_, d)| d["truncated"] == true)
        .collect();
    assert_eq!(cut.len(), 1, "only the long line is cut");
    let d = &cut[0].1;
    assert_eq!(d["truncated"], true);
    assert_eq!(d["length"], 50_000);
    assert_eq!(
        d["crc32"],
        format!("{:08x}", crc32(bad.as_bytes())),
        "the checksum of the whole line"
    );
    let raw = d["raw"].as_str().unwrap();
    assert!(bad.starts_with(raw) && !raw.is_empty() && raw.len() < 9_488);
    assert!(d.to_string().len() <= 9_488);
    let rows = b.dump("per_service", &dir);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1["requests"], 2);
}

/// A result topic that refuses every record (`max.message.bytes` below any row): the job fails
/// at the same input position on every run, so `launch --restart 5` stops after the first
/// restart, naming the position and the error, instead of using all five.
fn refused_record_under_restart(b: &common::kafka::Broker) {
    let dir = tmpdir("robust-kafka-restart");
    let spec = dir.join("refused.toml");
    std::fs::write(
        &spec,
        r#"name = "refused"
[source]
kind = "kafka"
topic = "refused-logs"
format = "json"
[watermark]
delay = "0s"
[sink]
kind = "kafka"
[[analysis]]
name = "refused_rows"
window = { size = "1m" }
group_by = ["service"]
select = ["count() as requests"]
"#,
    )
    .unwrap();
    b.client(&[
        "create",
        &b.address,
        "refused-logs:1",
        "refused.dead-letter:1",
        "refused.late:1",
        "refused_rows:1:max.message.bytes=40",
    ]);
    let input = dir.join("logs.jsonl");
    let lines: Vec<String> = (0..3)
        .map(|m| {
            json!({"timestamp": format!("2026-11-24T10:0{m}:10Z"), "service": "api"}).to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    assert_eq!(b.produce("refused-logs", &input), 3);
    let started = std::time::Instant::now();
    let out = bin()
        .args([
            "launch",
            spec.to_str().unwrap(),
            "-n",
            "1",
            "--restart",
            "5",
        ])
        .args([
            "--backoff",
            "100ms",
            "--brokers",
            &b.address,
            "--stop-at-end",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(120), "{err}");
    let restarts = common::messages(&err)
        .filter(|m| m.contains("starting the job again in"))
        .count();
    assert_eq!(
        restarts, 1,
        "one restart, then the same failure stops it: {err}"
    );
    let last = common::messages(&err)
        .rfind(|m| m.contains("not starting the job again"))
        .unwrap_or_else(|| panic!("no stop reason: {err}"));
    assert!(
        last.contains("delivery to topic `refused_rows` failed")
            && last.contains("at input position: event-time progress 2026-11-24T10:0")
            && last.contains("the same sink error at the same input position"),
        "{last}"
    );
}

/// CRC-32 (IEEE), bit by bit: an independent check of the record's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
