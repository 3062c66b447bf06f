use super::*;
use crate::record::ValueRef;

fn field(name: &str, path: &str, ty: FieldType, target: Field, regex: bool) -> SchemaField {
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

fn parse(s: &Schema, line: &str) -> Result<Event, String> {
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
