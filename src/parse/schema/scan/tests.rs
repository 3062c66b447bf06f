//! The scanner's direct path (each value converted as it is met, straight into the event)
//! against the reference, serde through raw slots: the same event or the same dead letter.

use proptest::prelude::*;

use super::super::tests::{field, mutate, nested_fast, nested_lines, parse};
use super::super::*;

/// The reference: serde reads the record, values converted at the end.
fn reference(s: &Schema, line: &str) -> Result<Event, String> {
    let mut ev = Event::default();
    let text = std::str::from_utf8(line.as_bytes()).map_err(|e| e.to_string())?;
    s.parse_raw(text, None, &mut ev, false)
        .map(|()| ev)
        .map_err(|e| e.0.into_owned())
}

/// Whether the direct path took `line` (and, then, that it gave the reference's event).
fn direct_took(s: &Schema, line: &str) -> bool {
    let mut ev = Event::default();
    let took = s.direct(line, &mut ev).is_some();
    if took {
        assert_eq!(Ok(ev), reference(s, line), "{line}");
    }
    assert_eq!(
        direct_ascii_agrees(s, line.as_bytes()),
        took && line.is_ascii()
    );
    took
}

/// Whether the direct path on unchecked bytes took `line`: only an ASCII record, and then
/// with the reference's event.
fn direct_ascii_agrees(s: &Schema, line: &[u8]) -> bool {
    let mut ev = Event::default();
    let took = s.direct_ascii(line, &mut ev).is_some();
    let text = String::from_utf8_lossy(line);
    if took {
        // ASCII but for keys of the schema's paths.
        assert!(std::str::from_utf8(line).is_ok(), "{text}");
        assert_eq!(Ok(ev), reference(s, &text), "{text}");
    }
    took
}

#[test]
fn bytes_above_ascii_go_the_checked_way_wherever_they_are() {
    let s = Schema::new(
        Format::Json,
        Path::parse("ts", false).unwrap(),
        TimeFormat::EpochMillis,
        vec![
            field("size", "größe", FieldType::Int, Field::Extra(0), false),
            field(
                "city",
                "wo.stadt",
                FieldType::String,
                Field::Extra(1),
                false,
            ),
        ],
        None,
        None,
    )
    .unwrap();
    let taken = |line: &[u8]| direct_ascii_agrees(&s, line);
    // A path's key is matched as its bytes: the ASCII scan takes the record.
    assert!(taken("{\"ts\":1,\"größe\":5}".as_bytes()));
    assert_eq!(
        parse(&s, "{\"ts\":1,\"größe\":5}").unwrap().extra[0],
        Value::Int(5)
    );
    // A byte >= 0x80 anywhere else: a value on a path, a key or value off the paths, nested
    // or not, a number's place. The checked scan or serde reads it, as the reference.
    for line in [
        "{\"ts\":1,\"wo\":{\"stadt\":\"Köln\"}}",
        "{\"ts\":1,\"wö\":{\"stadt\":\"x\"}}",
        "{\"ts\":1,\"x\":[{\"ü\":1}],\"größe\":2}",
        "{\"ts\":1,\"x\":\"\\n\u{e9}\"}",
        "{\"ts\":1,\"größe\":\u{e9}}",
        "{\"ts\":1}\u{a0}",
    ] {
        assert!(!taken(line.as_bytes()), "{line}");
        assert_eq!(parse(&s, line), reference(&s, line), "{line}");
        // The checked direct path, where it takes the record, gives the reference's event.
        direct_took(&s, line);
    }
    // Not UTF-8: a dead letter whatever the position, the path's key included.
    for line in [
        &b"{\"ts\":1,\"x\":\"\xff\"}"[..],
        b"{\"ts\":1,\"gr\xc3\":5}",
        b"{\"ts\":1,\"wo\":{\"stadt\":\"\xc3\"}}",
    ] {
        assert!(!taken(line));
        let mut ev = Event::default();
        let err = s.parse_into(line, None, &mut ev).unwrap_err();
        assert_eq!(err.0, "not UTF-8");
    }
}

/// `nested_fast` where analyses read only some built-in fields: `message` and `ip_address`
/// are checked, not built, and `error_code` is read from its own key.
fn partly_used() -> Schema {
    let mut s = nested_fast();
    let mut used = FieldSet::default();
    for f in [
        Field::Level,
        Field::Service,
        Field::StatusCode,
        Field::ResponseTime,
        Field::UserId,
        Field::ErrorCode,
    ] {
        used.insert(f);
    }
    s.add_implicit(used).unwrap();
    s
}

#[test]
fn the_direct_path_gives_the_reference_event_or_dead_letter() {
    use crate::gen::rng::Rng;
    const BYTES: &[u8] = b" \t\"\\{}[],:-+.0159eEnulltrfa/u\x01\xc3\xa9";
    let mut rng = Rng::new(7);
    for s in [nested_fast(), partly_used()] {
        // `log.tags` is read as a string: its array is a mismatch in every line but these.
        // Each line as generated (its `request.h` holds a byte >= 0x80) and in ASCII.
        let lines: Vec<String> = nested_lines(1500)
            .iter()
            .map(|l| l.replace(r#","tags":["a",1,null,{"b":[true,false]}]"#, ""))
            .flat_map(|l| [l.replace('\u{e9}', "e"), l])
            .collect();
        let mut taken = 0;
        for line in &lines {
            assert_eq!(parse(&s, line), reference(&s, line), "{line}");
            // Every record the reference takes goes the direct way, unless a value on a path
            // holds an escape (unescaped by the raw path).
            let plain =
                !(line.replace(r#""z\"\\é""#, "").replace(r#""z\"\\e""#, "")).contains('\\');
            if reference(&s, line).is_ok() && plain {
                assert!(direct_took(&s, line), "{line}");
                taken += 1;
            }
            for _ in 0..8 {
                let m = mutate(&mut rng, line, BYTES);
                // The ASCII scan sees every mutation, UTF-8 or not.
                direct_ascii_agrees(&s, &m);
                match String::from_utf8(m) {
                    Ok(m) => {
                        assert_eq!(parse(&s, &m), reference(&s, &m), "{m}");
                        direct_took(&s, &m);
                    }
                    Err(e) => {
                        let mut ev = Event::default();
                        let err = s.parse_into(e.as_bytes(), None, &mut ev).unwrap_err();
                        assert_eq!(err.0, "not UTF-8");
                    }
                }
            }
        }
        assert!(taken > lines.len() * 9 / 10, "{taken} of {}", lines.len());
    }
}

#[test]
fn keys_values_and_shapes() {
    let s = partly_used();
    let ok = |line: &str| {
        let e = parse(&s, line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(Ok(e.clone()), reference(&s, line), "{line}");
        e
    };
    // Numbers as strings, for int and float fields.
    let e = ok(r#"{"ts":5,"request":{"status":"404","duration":"0.25"}}"#);
    assert_eq!(
        (e.timestamp, e.status_code, e.response_time),
        (5, Some(404), Some(0.25))
    );
    // A key off the paths, of every kind, is stepped over, nested objects and arrays too.
    let e = ok(
        r#"{"x":{"ts":9,"log":{"level":"no"}},"y":[{"a":[1,{"b":"\""}]},-1.5e3,true,null],"ts":6,"log":{"level":"WARN"}}"#,
    );
    assert_eq!((e.timestamp, e.level.as_deref()), (6, Some("WARN")));
    // Keys that only start like a path's key, or are a prefix of it, are not it.
    let e = ok(r#"{"tsx":1,"t":2,"ts":7,"request":{"statusx":1,"status":3}}"#);
    assert_eq!((e.timestamp, e.status_code), (7, Some(3)));
    // An escaped key is the key it spells.
    assert!(!direct_took(&s, r#"{"t\u0073":8}"#));
    assert_eq!(ok(r#"{"t\u0073":8}"#).timestamp, 8);
    // Duplicates: the last wins, also after an earlier value that does not convert.
    let e = ok(r#"{"ts":"bad","ts":9,"request":{"status":"x"},"request":{"status":4}}"#);
    assert_eq!((e.timestamp, e.status_code), (9, Some(4)));
    let e = ok(r#"{"ts":9,"request":{"status":4,"status":null}}"#);
    assert_eq!(e.status_code, None);
    // A value on a path with an escape is unescaped.
    let e = ok(r#"{"ts":1,"log":{"level":"W\"N"}}"#);
    assert_eq!(e.level.as_deref(), Some("W\"N"));
    // Fields checked but not built: a mismatch is still a dead letter.
    assert_eq!(ok(r#"{"ts":1,"client":{"ip":"1.2.3.4"}}"#).ip_address, None);
    let err = parse(&s, r#"{"ts":1,"client":{"ip":5}}"#).unwrap_err();
    assert!(
        err.contains("field `ip_address` (path `client.ip`)"),
        "{err}"
    );
    // An extra field the record lacks is null, as the raw path leaves it.
    assert_eq!(ok(r#"{"ts":1}"#).extra, vec![Value::Null, Value::Null]);
    // Depth: beyond the scanner's limit on a path, serde reads it (no stack overflow).
    let deep = format!(
        "{{\"ts\":1,\"log\":{{\"tags\":{}{}}}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(!direct_took(&s, &deep));
    assert!(parse(&s, &deep).is_err(), "an array is not a string");
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    assert_eq!(parse(&s, &deep), reference(&s, &deep));
    assert!(parse(&s, &deep).is_err());
}

#[test]
fn keys_a_record_writes_escaped_are_never_matched_in_place() {
    let s = Schema::new(
        Format::Json,
        Path::parse("ts", false).unwrap(),
        TimeFormat::EpochMillis,
        vec![field(
            "q",
            "a\\b",
            FieldType::String,
            Field::Extra(0),
            false,
        )],
        None,
        None,
    )
    .unwrap();
    assert!(s.tree.odd);
    // Bytes `a\b` in a record are `a` and a backspace: not the key `a\b`.
    let e = parse(&s, r#"{"ts":1,"a\b":"v"}"#).unwrap();
    assert_eq!(e.extra, vec![Value::Null]);
    assert_eq!(Ok(e), reference(&s, r#"{"ts":1,"a\b":"v"}"#));
    // The key `a\b` as JSON writes it.
    let e = parse(&s, r#"{"ts":1,"a\\b":"v"}"#).unwrap();
    assert_eq!(e.extra, vec![Value::Str("v".into())]);
    assert_eq!(
        parse(&s, r#"{"ts":1,"a\\b":"v"}"#),
        reference(&s, r#"{"ts":1,"a\\b":"v"}"#)
    );
}

/// A random JSON value, written as text: objects with keys of the schema's paths and
/// others (escaped too, duplicates allowed), strings holding numbers, escapes, every kind.
fn json(depth: u32) -> BoxedStrategy<String> {
    let key = prop_oneof![
        Just("ts"),
        Just("log"),
        Just("level"),
        Just("request"),
        Just("status"),
        Just("duration"),
        Just("client"),
        Just("ip"),
        Just("user_id"),
        Just("tags"),
        Just("t\\u0073"),
        Just("stat"),
        Just("x"),
    ];
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        (0u64..2_000_000_000_000, 0u32..4).prop_map(|(i, f)| match f {
            0 => i.to_string(),
            f => format!("{}.{:0w$}", i / 1000, i % 10u64.pow(f), w = f as usize),
        }),
        any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap_or("0".into())),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        "[a-zA-Z0-9 .:-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        (0i64..1000).prop_map(|i| format!("\"{i}\"")),
        Just(r#""2026-11-24T10:00:00Z""#.to_string()),
        Just(r#""e\u0301\n\"q\"""#.to_string()),
        Just(r#""\ud800""#.to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        2 => prop::collection::vec((key, json(depth - 1)), 0..6).prop_map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        }),
        1 => prop::collection::vec(json(depth - 1), 0..3)
            .prop_map(|v| format!("[{}]", v.join(","))),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn scanner_and_serde_agree_on_random_json(
        body in prop::collection::vec((0usize..10, json(3)), 0..8),
        ws in any::<bool>(),
    ) {
        const KEYS: [&str; 10] =
            ["ts", "log", "request", "client", "error_code", "x", "ts", "log", "tags", "t\\u0073"];
        let sep = if ws { " , " } else { "," };
        let body: Vec<String> = body.iter().map(|(k, v)| format!("\"{}\":{v}", KEYS[*k])).collect();
        let line = format!("{{{}}}", body.join(sep));
        for s in [nested_fast(), partly_used()] {
            prop_assert_eq!(parse(&s, &line), reference(&s, &line), "{}", line);
        }
    }
}
