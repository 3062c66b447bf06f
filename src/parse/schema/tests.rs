use super::*;
use crate::record::{Value, ValueRef};

pub(super) fn field(
    name: &str,
    path: &str,
    ty: FieldType,
    target: Field,
    regex: bool,
) -> SchemaField {
    SchemaField {
        name: name.into(),
        path: Path::parse(path, regex).unwrap(),
        ty,
        target,
        declared: true,
    }
}

/// The issue's nested shape: `ts` in epoch seconds, the service two levels down.
fn nested() -> Schema {
    Schema::new(
        Format::Json,
        Path::parse("ts", false).unwrap(),
        TimeFormat::EpochSeconds,
        vec![
            field(
                "service",
                "request.host",
                FieldType::String,
                Field::Service,
                false,
            ),
            field(
                "status_code",
                "status",
                FieldType::Int,
                Field::StatusCode,
                false,
            ),
            field(
                "response_time",
                "duration",
                FieldType::Float,
                Field::ResponseTime,
                false,
            ),
            field("bytes", "size", FieldType::Int, Field::Extra(0), false),
            field("ok", "ok", FieldType::Bool, Field::Extra(1), false),
        ],
        None,
        None,
    )
    .unwrap()
}

pub(super) fn parse(s: &Schema, line: &str) -> Result<Event, String> {
    let mut ev = Event::default();
    s.parse_into(line.as_bytes(), None, &mut ev)
        .map(|()| ev)
        .map_err(|e| e.0.into_owned())
}

#[test]
fn epoch_fractions_are_exact_to_the_millisecond() {
    assert_eq!(epoch_ms("1795514344.617", 3), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("1795514344.6179", 3), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("1795514344", 3), Some(1_795_514_344_000));
    assert_eq!(epoch_ms("0.001", 3), Some(1));
    assert_eq!(epoch_ms("1795514344617", 0), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("1795514344617.9", 0), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("1795514344617999", -3), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("1795514344617999999", -6), Some(1_795_514_344_617));
    assert_eq!(epoch_ms("-0.5", 3), Some(-500));
    for bad in ["", ".5", "1.", "1e9", "12a", "1.2.3", "--1", "+1"] {
        assert_eq!(epoch_ms(bad, 3), None, "{bad}");
    }
    // Through f64, whole seconds plus the fraction's milliseconds give ...122 for this one:
    // the double nearest 1795514344.123 is 1795514344.12299990...
    let f: f64 = "1795514344.123".parse().unwrap();
    assert_eq!(
        f.trunc() as i64 * 1000 + (f.fract() * 1000.0) as i64,
        1_795_514_344_122
    );
    assert_eq!(epoch_ms("1795514344.123", 3), Some(1_795_514_344_123));
    assert_eq!(epoch_ms("1795514344.001", 3), Some(1_795_514_344_001));
    let e = parse(
        &nested(),
        r#"{"ts":1795514344.617,"request":{"host":"api"}}"#,
    )
    .unwrap();
    assert_eq!(e.timestamp, 1_795_514_344_617);
}

#[test]
fn nested_paths_types_and_numeric_strings() {
    let s = nested();
    let e = parse(
        &s,
        r#"{"x":{"request":{"host":"no"}},"ts":"1795514344.5","request":{"remote_ip":"1.2.3.4","host":"api","deep":[1,{"a":2}]},"duration":"0.25","status":"404","size":12.0,"ok":true}"#,
    )
    .unwrap();
    assert_eq!(e.timestamp, 1_795_514_344_500);
    assert_eq!(e.service.as_deref(), Some("api"));
    assert_eq!(e.status_code, Some(404));
    assert_eq!(e.response_time, Some(0.25));
    assert_eq!(e.get(Field::Extra(0)), ValueRef::Int(12));
    assert_eq!(e.extra.get(1), Some(&Value::Bool(true)));
    // A path through a value that is not an object, and a missing path: null, not an error.
    let e = parse(&s, r#"{"ts":1,"request":"flat","status":null}"#).unwrap();
    assert_eq!((e.service, e.status_code), (None, None));
    // Escaped keys and strings are read like any other.
    let e = parse(&s, r#"{"ts":1,"req\u0075est":{"host":"a\"b"}}"#).unwrap();
    assert_eq!(e.service.as_deref(), Some("a\"b"));
}

#[test]
fn mismatches_are_dead_letters_naming_field_and_path() {
    let s = nested();
    for (line, want) in [
        (
            r#"{"ts":1,"status":"abc"}"#,
            "field `status_code` (path `status`): expected int, found \"abc\"",
        ),
        (
            r#"{"ts":1,"status":200.5}"#,
            "field `status_code` (path `status`)",
        ),
        (
            r#"{"ts":1,"request":{"host":5}}"#,
            "field `service` (path `request.host`): expected string, found 5",
        ),
        (
            r#"{"ts":1,"duration":"fast"}"#,
            "field `response_time` (path `duration`)",
        ),
        (
            r#"{"ts":1,"duration":"NaN"}"#,
            "field `response_time` (path `duration`)",
        ),
        (r#"{"ts":1,"ok":"yes"}"#, "field `ok` (path `ok`)"),
        (r#"{"ts":1,"size":{"a":1}}"#, "field `bytes` (path `size`)"),
        (
            r#"{"request":{"host":"api"}}"#,
            "missing timestamp (path `ts`)",
        ),
        (
            r#"{"ts":"yesterday"}"#,
            "timestamp (path `ts`): \"yesterday\" is not a time in format epoch_seconds",
        ),
        (r#"{"ts":1"#, "truncated JSON"),
        (r#"[1,2]"#, "invalid"),
        (r#"{"ts":1} x"#, "trailing"),
    ] {
        let err = parse(&s, line).unwrap_err();
        assert!(err.contains(want), "{line}: {err}");
    }
    let mut ev = Event::default();
    assert!(s
        .parse_into(b"{\"ts\":1,\"x\":\"\xff\"}", None, &mut ev)
        .is_err());
}

#[test]
fn time_formats() {
    let t = |f: &str, tz: Option<&str>, v: &str| {
        let f = TimeFormat::parse(f, tz).unwrap();
        f.convert(&Raw::Text(v))
    };
    assert_eq!(
        t("rfc3339", None, "2026-11-24T10:00:00.5Z"),
        Some(1_795_514_400_500)
    );
    assert_eq!(
        t("%d/%b/%Y:%H:%M:%S %z", None, "24/Nov/2026:11:00:00 +0100"),
        Some(1_795_514_400_000)
    );
    assert_eq!(
        t("%Y-%m-%d %H:%M:%S", None, "2026-11-24 10:00:00"),
        Some(1_795_514_400_000)
    );
    assert_eq!(
        t("%Y-%m-%d %H:%M:%S", Some("+01:00"), "2026-11-24 11:00:00"),
        Some(1_795_514_400_000)
    );
    assert_eq!(
        t("%Y-%m-%d %H:%M:%S%.f", None, "2026-11-24 10:00:00.250"),
        Some(1_795_514_400_250)
    );
    assert_eq!(
        t("epoch_micros", None, "1795514400250999"),
        Some(1_795_514_400_250)
    );
    assert_eq!(
        t("epoch_nanos", None, "1795514400250999999"),
        Some(1_795_514_400_250)
    );
    assert_eq!(t("%Y-%m-%d %H:%M:%S", None, "24/Nov/2026"), None);
    for (f, tz) in [
        ("iso", None),
        ("%Q", None),
        ("epoch_seconds", Some("UTC")),
        ("%H:%M %z", Some("+01:00")),
        ("%H:%M", Some("Mars/Olympus")),
        ("%H:%M", Some("+25:00")),
    ] {
        assert!(TimeFormat::parse(f, tz).is_err(), "{f} {tz:?}");
    }
}

#[test]
fn regex_lines_groups_and_null_token() {
    let s = Schema::new(
        Format::Regex,
        Path::parse("time", true).unwrap(),
        TimeFormat::Rfc3339,
        vec![
            field("service", "svc", FieldType::String, Field::Service, true),
            field(
                "status_code",
                "status",
                FieldType::Int,
                Field::StatusCode,
                true,
            ),
            field("user_id", "user", FieldType::String, Field::UserId, true),
        ],
        Some(r"(?P<time>\S+) (?P<svc>\S+) (?P<status>\d+|-) (?P<user>\S+)"),
        Some("-".into()),
    )
    .unwrap();
    let e = parse(&s, "2026-11-24T10:00:00Z api 503 alice").unwrap();
    assert_eq!(e.timestamp, 1_795_514_400_000);
    assert_eq!(
        (e.service.as_deref(), e.status_code, e.user_id.as_deref()),
        (Some("api"), Some(503), Some("alice"))
    );
    let e = parse(&s, "2026-11-24T10:00:00Z api - -").unwrap();
    assert_eq!((e.status_code, e.user_id), (None, None));
    // The whole line must match.
    let err = parse(&s, "2026-11-24T10:00:00Z api 503 alice trailing").unwrap_err();
    assert_eq!(err, "the line does not match the schema pattern");
    let err = parse(&s, "later api 200 bob").unwrap_err();
    assert!(err.contains("timestamp (path `(?P<time>)`)"), "{err}");
    assert!(Schema::new(
        Format::Regex,
        Path::parse("time", true).unwrap(),
        TimeFormat::Rfc3339,
        vec![],
        Some(r"(?P<tim>\S+)"),
        None
    )
    .unwrap_err()
    .contains("no named group `time`"));
    assert!(Schema::group_names("(?P<a>[")
        .unwrap_err()
        .contains("does not compile"));
}

#[test]
fn kafka_metadata_paths() {
    let s = Schema::new(
        Format::Json,
        Path::parse("@timestamp", false).unwrap(),
        TimeFormat::EpochMillis,
        vec![
            field(
                "tenant",
                "@header.x",
                FieldType::String,
                Field::Extra(0),
                false,
            ),
            field("service", "@key", FieldType::String, Field::Service, false),
            field("part", "@partition", FieldType::Int, Field::Extra(1), false),
            field("off", "@offset", FieldType::Int, Field::Extra(2), false),
        ],
        None,
        None,
    )
    .unwrap();
    assert!(s.uses_meta());
    let meta = RecordMeta {
        key: Some(b"api".to_vec()),
        timestamp: Some(1_795_514_400_123),
        partition: 3,
        offset: 77,
        headers: vec![("x".into(), Some(b"t1".to_vec())), ("y".into(), None)],
    };
    let mut ev = Event::default();
    s.parse_into(b"{}", Some(&meta), &mut ev).unwrap();
    assert_eq!(ev.timestamp, 1_795_514_400_123);
    assert_eq!(ev.get(Field::Extra(0)), ValueRef::Str("t1"));
    assert_eq!(ev.service.as_deref(), Some("api"));
    assert_eq!(ev.get(Field::Extra(1)), ValueRef::Int(3));
    assert_eq!(ev.get(Field::Extra(2)), ValueRef::Int(77));
    // Without metadata (a file), the time is missing: a dead letter.
    let mut ev = Event::default();
    assert!(s.parse_into(b"{}", None, &mut ev).is_err());
}

#[test]
fn path_syntax() {
    assert_eq!(
        Path::parse("a.b.c", false).unwrap(),
        Path::Json(vec!["a".into(), "b".into(), "c".into()])
    );
    for bad in ["a..b", ".a", "a.", "", "a[0]", "@nope", "@header."] {
        assert!(Path::parse(bad, false).is_err(), "{bad}");
    }
    assert!(Path::parse("1x", true).is_err());
    assert!(Schema::new(
        Format::Json,
        Path::parse("ts", false).unwrap(),
        TimeFormat::EpochSeconds,
        vec![
            field("a", "r", FieldType::String, Field::Extra(0), false),
            field("b", "r.x", FieldType::String, Field::Extra(1), false),
        ],
        None,
        None
    )
    .unwrap_err()
    .contains("both as a value and as an object"));
}

/// The generator's log lines in the nested shape of `nested_fast()` (as `scripts/bench schema`
/// writes them), with some extra keys of every JSON kind around the paths.
pub(super) fn nested_lines(n: u64) -> Vec<String> {
    use crate::gen::{GenConfig, Generator, Kind as GenKind};
    let lines = Generator::new(GenConfig {
        kind: GenKind::Logs,
        events: n,
        bad_fraction: 0.05,
        ..GenConfig::default()
    });
    lines
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_slice(&l).ok()?;
            let o = v.as_object()?;
            let g = |k: &str| o.get(k).cloned().unwrap_or(serde_json::Value::Null);
            Some(
                serde_json::json!({
                    "ts": g("timestamp"),
                    "log": {"level": g("level"), "message": g("message"), "tags": ["a", 1, null, {"b": [true, false]}]},
                    "request": {"service": g("service"), "status": g("status_code"), "duration": g("response_time"), "h": {"x-y": "z\"\\\u{e9}"}},
                    "client": {"ip": g("ip_address"), "user_id": g("user_id")},
                    "n": -0.5e-3,
                })
                .to_string(),
            )
        })
        .collect()
}

pub(super) fn nested_fast() -> Schema {
    let f = |name: &str, path: &str, ty, target| field(name, path, ty, target, false);
    Schema::new(
        Format::Json,
        Path::parse("ts", false).unwrap(),
        TimeFormat::Default,
        vec![
            f("level", "log.level", FieldType::String, Field::Level),
            f("message", "log.message", FieldType::String, Field::Message),
            f("tags", "log.tags", FieldType::String, Field::Extra(0)),
            f(
                "service",
                "request.service",
                FieldType::String,
                Field::Service,
            ),
            f(
                "status_code",
                "request.status",
                FieldType::Int,
                Field::StatusCode,
            ),
            f(
                "response_time",
                "request.duration",
                FieldType::Float,
                Field::ResponseTime,
            ),
            f(
                "ip_address",
                "client.ip",
                FieldType::String,
                Field::IpAddress,
            ),
            f("user", "client.user_id", FieldType::String, Field::UserId),
            f(
                "again",
                "client.user_id",
                FieldType::String,
                Field::Extra(1),
            ),
        ],
        None,
        None,
    )
    .unwrap()
}

/// `line` with a byte of `bytes` put in place of one of its bytes or between two, or cut short.
pub(super) fn mutate(rng: &mut crate::gen::rng::Rng, line: &str, bytes: &[u8]) -> Vec<u8> {
    let mut m = line.as_bytes().to_vec();
    let at = rng.below(m.len() as u64 + 1) as usize;
    match rng.below(3) {
        0 if at < m.len() => m[at] = bytes[rng.below(bytes.len() as u64) as usize],
        1 => m.insert(at, bytes[rng.below(bytes.len() as u64) as usize]),
        _ => m.truncate(at),
    }
    m
}

/// Scanner and serde read the same raw values wherever the scanner takes a record.
fn scan_agrees(s: &Schema, line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let n = s.fields.len() + 1;
    let mut fast = vec![Raw::Missing; n];
    let mut slow = vec![Raw::Missing; n];
    let reference = serde_read::read(text, &s.tree, &mut slow);
    match scan::read(text, &s.tree, fast.as_mut_slice()) {
        Some(()) => {
            assert!(reference.is_ok(), "scanner took what serde refuses: {text}");
            // A plain string is its JSON text without the quotes.
            let json = |r: &Raw<'_>| match r {
                Raw::Plain(t) => format!("\"{t}\""),
                Raw::Json(t) => t.to_string(),
                Raw::Num(n) => n.text.to_string(),
                r => format!("{r:?}"),
            };
            let fast: Vec<String> = fast.iter().map(json).collect();
            let slow: Vec<String> = slow.iter().map(json).collect();
            assert_eq!(fast, slow, "{text}");
            true
        }
        None => false,
    }
}

#[test]
fn the_scanner_agrees_with_serde_on_generated_and_mutated_records() {
    use crate::gen::rng::Rng;
    const BYTES: &[u8] = b" \t\r\n\"\\{}[],:-+.0159eEnulltrfa/u\x01\x1f\x7f\xc3\xa9";
    let s = nested_fast();
    let mut rng = Rng::new(11);
    let lines = nested_lines(2000);
    let mut taken = 0;
    for line in &lines {
        taken += usize::from(scan_agrees(&s, line.as_bytes()));
        for _ in 0..16 {
            scan_agrees(&s, &mutate(&mut rng, line, BYTES));
        }
    }
    // Every well-formed record takes the fast path.
    assert_eq!(taken, lines.len());
}

#[test]
fn the_scanner_leaves_odd_records_to_serde() {
    let s = nested_fast();
    for (line, taken) in [
        (r#"{"ts":1,"client":{"ip":"a"}}"#, true),
        (r#" {"ts" : 1 , "client" : { "ip" : "a" } } "#, true),
        // Duplicate keys: the last wins, also across two objects on the same path.
        (
            r#"{"client":{"ip":"a"},"client":{"user_id":"u"},"ts":2,"ts":3}"#,
            true,
        ),
        // A value on a path may be anything: its JSON text is kept.
        (
            r#"{"ts":{"a":[1,2]},"log":{"tags":[{"x":"\u00e9"}]}}"#,
            true,
        ),
        // An escaped key is unescaped by serde before it is compared.
        (r#"{"t\u0073":1}"#, false),
        // A non-object where the path goes deeper: serde parses it with deserialize_any.
        (r#"{"ts":1,"client":"flat"}"#, false),
        (r#"{"ts":1,"client":1e999}"#, false),
        (r#"{"ts":1,"x":01}"#, false),
        (r#"{"ts":1,"x":"\x"}"#, false),
        (r#"{"ts":1,"x":[1,]}"#, false),
        (r#"{"ts":1} x"#, false),
        (r#"[1]"#, false),
    ] {
        assert_eq!(scan_agrees(&s, line.as_bytes()), taken, "{line}");
    }
    // Nesting beyond the scanner's depth goes to serde, which steps over it without recursion.
    let deep = format!(
        "{{\"ts\":1,\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(!scan_agrees(&s, deep.as_bytes()));
    assert!(parse(&s, &deep).is_ok());
}

#[test]
fn epoch_digits_in_u64_agree_with_the_wide_path() {
    use crate::gen::rng::Rng;
    let mut rng = Rng::new(5);
    for _ in 0..20_000 {
        let int: String = (0..rng.range(1, 12))
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let frac: String = (0..rng.below(10))
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let neg = rng.chance(0.3);
        let text = format!(
            "{}{int}{}{frac}",
            if neg { "-" } else { "" },
            if frac.is_empty() { "" } else { "." }
        );
        for shift in [3, 0, -3, -6] {
            // The reference: exact rational arithmetic in i128, floor division.
            let n: i128 = format!("{int}{frac}").parse().unwrap();
            let n = if neg { -n } else { n };
            let e = shift - frac.len() as i32;
            let want = if e >= 0 {
                n * 10i128.pow(e as u32)
            } else {
                n.div_euclid(10i128.pow((-e) as u32))
            };
            assert_eq!(
                epoch_ms(&text, shift),
                i64::try_from(want).ok(),
                "{text} {shift}"
            );
        }
    }
}

/// A number as the scanner reads it (its digits in an integer) converts exactly as its text:
/// to int, float, and every time format, also where the digits do not fit or are not exact.
#[test]
fn numbers_read_by_the_scan_convert_as_their_text() {
    use crate::gen::rng::Rng;
    use crate::parse::json_fast::number;
    let mut rng = Rng::new(9);
    let digits = |rng: &mut Rng, n: u64| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect()
    };
    let formats = [
        TimeFormat::Default,
        TimeFormat::Rfc3339,
        TimeFormat::EpochMillis,
        TimeFormat::EpochSeconds,
        TimeFormat::EpochMicros,
        TimeFormat::EpochNanos,
    ];
    let mut texts = vec!["0".to_string(), "-0".into(), "0.0".into(), "-0.5".into()];
    for _ in 0..30_000 {
        let int = match rng.below(4) {
            0 => "0".to_string(),
            _ => {
                let lead = char::from(b'1' + rng.below(9) as u8);
                let n = rng.below(24);
                format!("{lead}{}", digits(&mut rng, n))
            }
        };
        let mut t = format!("{}{int}", if rng.chance(0.2) { "-" } else { "" });
        if rng.chance(0.6) {
            let n = rng.range(1, 20);
            t = format!("{t}.{}", digits(&mut rng, n));
        }
        if rng.chance(0.1) {
            let sign = ["", "+", "-"][rng.below(3) as usize];
            t = format!("{t}e{sign}{}", rng.below(30));
        }
        texts.push(t);
    }
    for t in &texts {
        let (n, end) = number(t.as_bytes(), 0).unwrap_or_else(|| panic!("{t}"));
        assert_eq!((n.text, end), (t.as_str(), t.len()));
        let (num, json) = (Raw::Num(n), Raw::Json(t));
        for ty in [
            FieldType::Int,
            FieldType::Float,
            FieldType::String,
            FieldType::Bool,
        ] {
            let (a, b) = (value::convert(&num, ty), value::convert(&json, ty));
            // Bit for bit: -0.0 and 0.0 are different results.
            let bits = |v: Option<Value>| match v {
                Some(Value::Float(f)) => Err(f.to_bits()),
                v => Ok(v),
            };
            assert_eq!(bits(a), bits(b), "{t} {ty:?}");
            assert_eq!(value::converts(&num, ty), value::converts(&json, ty), "{t}");
        }
        for f in &formats {
            assert_eq!(f.convert(&num), f.convert(&json), "{t} {f:?}");
        }
        assert_eq!(num.shown(), json.shown());
    }
}

#[test]
fn named_time_zones_follow_daylight_saving() {
    let f = TimeFormat::parse("%Y-%m-%d %H:%M:%S", Some("Europe/Berlin")).unwrap();
    let ms = |s: &str| f.convert_text(s);
    let utc = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(ms("2026-01-15 10:00:00"), Some(utc("2026-01-15T09:00:00Z")));
    assert_eq!(ms("2026-07-15 10:00:00"), Some(utc("2026-07-15T08:00:00Z")));
    // Clocks set back at 03:00 CEST: 02:30 occurs twice; the first (still +02:00) is read.
    assert_eq!(ms("2026-10-25 02:30:00"), Some(utc("2026-10-25T00:30:00Z")));
    // Clocks set forward at 02:00 CET: 02:30 never occurs; read with +01:00, as java.time.
    assert_eq!(ms("2026-03-29 02:30:00"), Some(utc("2026-03-29T01:30:00Z")));
    assert_eq!(f.name(), "\"%Y-%m-%d %H:%M:%S\" in Europe/Berlin");
    let ny = TimeFormat::parse("%d/%m/%Y %H:%M", Some("America/New_York")).unwrap();
    assert_eq!(
        ny.convert_text("01/07/2026 12:00"),
        Some(utc("2026-07-01T16:00:00Z"))
    );
    let fixed = TimeFormat::parse("%Y-%m-%d %H:%M:%S", Some("+05:30")).unwrap();
    assert_eq!(
        fixed.convert_text("2026-01-15 10:00:00"),
        Some(utc("2026-01-15T04:30:00Z"))
    );
    for bad in ["Europe/Nowhere", "CEST+1", "+25:00", "+1:00"] {
        let e = TimeFormat::parse("%Y-%m-%d %H:%M:%S", Some(bad)).unwrap_err();
        assert!(e.contains(bad), "{e}");
    }
}
