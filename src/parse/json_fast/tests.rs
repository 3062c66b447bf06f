//! The fast path against serde (the reference) on generated and mutated records, and the
//! scanner's edge cases: escapes, control characters, numbers, key names.

use super::*;
use crate::gen::rng::Rng;
use crate::gen::{GenConfig, Generator, Kind as GenKind};
use crate::parse::Format;

fn lines(kind: GenKind, n: u64) -> Vec<Vec<u8>> {
    Generator::new(GenConfig {
        kind,
        events: n,
        bad_fraction: 0.05,
        late_fraction: 0.05,
        ..GenConfig::default()
    })
    .collect()
}

/// Wherever the fast path gives an event, serde gives the same one. Without the UTF-8
/// check, the fast path takes only ASCII records and gives the same event as with it; the
/// whole parse gives what the check then serde give.
fn agrees(format: Format, line: &[u8], keep: FieldSet) -> bool {
    let unchecked = match format {
        Format::UserEvents => user_event_into::<false>,
        _ => log_into::<false>,
    };
    let mut ev = Event::default();
    let unchecked = unchecked(line, keep, &mut ev).map(|()| ev);
    let non_ascii = line.iter().any(|&c| c >= 0x80);
    match &unchecked {
        Ok(_) => assert!(!non_ascii, "{line:?}"),
        Err(Miss::NonAscii) => assert!(non_ascii, "{line:?}"),
        Err(Miss::Escaped) => assert!(line.contains(&b'\\'), "{line:?}"),
        Err(Miss::Other) => {}
    }
    // `Format` strips a trailing `\r` first.
    let reference = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line))
        .map_err(|e| {
            crate::parse::ParseError::new(format!("not valid UTF-8 at byte {}", e.valid_up_to()))
        })
        .and_then(|text| match format {
            Format::UserEvents => super::super::user_events::parse_serde(text, keep),
            _ => super::super::json::parse_serde(text, keep),
        });
    assert_eq!(format.parse_fields(line, keep), reference, "{line:?}");
    let mut ev = Event::default();
    let into = format.parse_into(line, keep, &mut ev).map(|()| ev);
    assert_eq!(into, reference, "{line:?}");
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let fast = match format {
        Format::UserEvents => user_event(text, keep),
        _ => log(text, keep),
    };
    if let Ok(e) = &unchecked {
        assert_eq!(fast.as_ref(), Some(e), "{text}");
    }
    let Some(fast) = fast else { return false };
    let reference = match format {
        Format::UserEvents => super::super::user_events::parse_serde(text, keep),
        _ => super::super::json::parse_serde(text, keep),
    };
    assert_eq!(reference.as_ref().ok(), Some(&fast), "{text}");
    true
}

fn mutations(line: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    const BYTES: &[u8] = b" \t\r\n\"\\{}[],:-+.0159eEnulltrfa/u\x01\x1f\x7f\x80\xc3\xa9\xff";
    let mut out = Vec::new();
    for _ in 0..8 {
        let mut m = line.to_vec();
        let at = rng.below(m.len() as u64 + 1) as usize;
        match rng.below(3) {
            0 if at < m.len() => m[at] = BYTES[rng.below(BYTES.len() as u64) as usize],
            1 => m.insert(at, BYTES[rng.below(BYTES.len() as u64) as usize]),
            _ => m.truncate(at),
        }
        out.push(m);
    }
    out
}

#[test]
fn agrees_with_serde_on_generated_and_mutated_records() {
    let mut rng = Rng::new(7);
    let mut fast = 0;
    let mut total = 0;
    for (format, lines) in [
        (Format::Json, lines(GenKind::Logs, 3000)),
        (Format::UserEvents, lines(GenKind::UserEvents, 3000)),
    ] {
        for line in &lines {
            for keep in [FieldSet::ALL, FieldSet::default()] {
                total += 1;
                fast += usize::from(agrees(format, line, keep));
                for m in mutations(line, &mut rng) {
                    agrees(format, &m, keep);
                }
            }
        }
    }
    // The generator writes the usual shape: every good line takes the fast path.
    assert!(
        fast * 100 >= total * 85,
        "{fast} of {total} on the fast path"
    );
}

#[test]
fn scans_stop_at_the_first_byte_a_plain_string_cannot_hold() {
    // A byte of each kind, and bytes next to them (one bit or one value away).
    let stops = [b'"', b'\\', 0x00, 0x1f, 0x80, 0xc3, 0xff];
    let others = [b'#', b']', b' ', b'!', 0x7f, b'a'];
    for len in 0..56 {
        for at in 0..=len {
            for c in stops.into_iter().chain(others) {
                let mut b: Vec<u8> = (0..len).map(|i| others[i % others.len()]).collect();
                if at < len {
                    b[at] = c;
                    // A second stop later.
                    b.extend_from_slice(b"#]\"");
                }
                for from in 0..=at.min(len) {
                    let want = |utf8: bool| {
                        b[from..]
                            .iter()
                            .position(|&x| {
                                x == b'"' || x == b'\\' || x < 0x20 || (!utf8 && x >= 0x80)
                            })
                            .map(|p| from + p)
                    };
                    let case = format!("{len} {at} {c:#x} {from}");
                    assert_eq!(string_stop::<false>(&b, from), want(false), "{case}");
                    assert_eq!(string_stop::<true>(&b, from), want(true), "{case}");
                    let words = |utf8| match utf8 {
                        false => string_stop_words::<false>(&b[from..], from),
                        true => string_stop_words::<true>(&b[from..], from),
                    };
                    assert_eq!(words(false), want(false), "{case}");
                    assert_eq!(words(true), want(true), "{case}");
                }
            }
        }
    }
}

/// `Format::Json` on `line` as the reference reads it: checked as UTF-8, then serde.
fn reference(line: &[u8]) -> Result<Event, crate::parse::ParseError> {
    std::str::from_utf8(line)
        .map_err(|e| {
            crate::parse::ParseError::new(format!("not valid UTF-8 at byte {}", e.valid_up_to()))
        })
        .and_then(|text| super::super::json::parse_serde(text, FieldSet::ALL))
}

#[test]
fn records_need_no_utf8_check_of_their_own_when_ascii() {
    let base = r#"{"timestamp": "2026-11-24T10:05:00.250Z", "service": "api", "message": "ok", "user_id": "u1"}"#;
    let at = |s: &str| base.find(s).expect("in base") + 1;
    // Where the fast path takes a record, the record is ASCII.
    assert_eq!(
        log_into::<false>(base.as_bytes(), FieldSet::ALL, &mut Event::default()),
        Ok(())
    );
    // Bytes >= 0x80 in strings (kept, not kept, key, timestamp), valid or not as UTF-8.
    for insert in [
        &b"\xc3\xa9"[..],
        b"\xe2\x82\xac",
        b"\xff",
        b"\xc3",
        b"\x80",
        b"\xed\xa0\x80",
    ] {
        for pos in [at("api"), at("ok"), at("u1"), at("user_id"), at("2026")] {
            let mut line = base.as_bytes().to_vec();
            line.splice(pos..pos, insert.iter().copied());
            let mut e = Event::default();
            assert_eq!(
                log_into::<false>(&line, FieldSet::ALL, &mut e),
                Err(Miss::NonAscii),
                "{line:?}"
            );
            let got = Format::Json.parse_fields(&line, FieldSet::ALL);
            assert_eq!(got, reference(&line), "{line:?}");
            let mut ev = Event::default();
            let into = Format::Json
                .parse_into(&line, FieldSet::ALL, &mut ev)
                .map(|()| ev);
            assert_eq!(into, got, "{line:?}");
        }
    }
    // Outside strings a byte >= 0x80 is bad JSON: the UTF-8 check still words the error.
    for line in [
        &b"\xff{}"[..],
        b"{\"timestamp\": 1\xc3\xa9}",
        b"{\"timestamp\": 1}\xc3",
    ] {
        assert_eq!(
            log_into::<false>(line, FieldSet::ALL, &mut Event::default()),
            Err(Miss::Other)
        );
        assert_eq!(Format::Json.parse(line), reference(line), "{line:?}");
    }
}

#[test]
fn escapes_in_strings_only_checked_take_the_second_pass() {
    let message_kept = {
        let mut k = FieldSet::default();
        k.insert(Field::Message);
        k
    };
    for esc in [
        r#"\""#,
        r#"\\"#,
        r#"\/"#,
        r#"\b"#,
        r#"\f"#,
        r#"\n"#,
        r#"\r"#,
        r#"\t"#,
        r#"\u00e9"#,
        r#"\x"#,
        r#"\"#,
        r#"\\\""#,
        r#"a\"b\"c"#,
    ] {
        for (key, keep) in [
            ("message", FieldSet::default()),
            ("message", message_kept),
            ("unknown", FieldSet::ALL),
            ("service", FieldSet::ALL),
        ] {
            let line =
                format!(r#"{{"timestamp": 1795514700250, "{key}": "x{esc}y", "user_id": "u1"}}"#);
            let b = line.as_bytes();
            let mut e = Event::default();
            let first = log_into::<false>(b, keep, &mut e);
            assert_eq!(first, Err(Miss::Escaped), "{line}");
            let mut e = Event::default();
            let second = log_into::<true>(b, keep, &mut e).map(|()| e);
            let simple = !esc.contains('u') && !esc.contains('x') && esc != r#"\"#;
            // Only strings never copied take escapes; the others go to serde.
            let only_checked = key == "unknown" || (key == "message" && keep != message_kept);
            assert_eq!(second.is_ok(), simple && only_checked, "{line}");
            let reference = super::super::json::parse_serde(&line, keep);
            if let Ok(e) = &second {
                assert_eq!(Ok(e), reference.as_ref(), "{line}");
                assert_eq!(e.message, None);
            }
            assert_eq!(Format::Json.parse_fields(b, keep), reference, "{line}");
        }
    }
}

#[test]
fn control_characters_are_refused_in_strings_and_whitespace_only_outside() {
    let base = r#"{"timestamp": 1795514700250, "service": "api", "message": "ok"}"#;
    for c in (0u8..0x20).chain([0x7f]) {
        for pos in 0..=base.len() {
            let mut line = base.as_bytes().to_vec();
            line.insert(pos, c);
            let fast = log(std::str::from_utf8(&line).expect("ASCII"), FieldSet::ALL);
            let reference = reference(&line);
            if let Some(fast) = &fast {
                assert_eq!(Ok(fast), reference.as_ref(), "{line:?}");
                assert!(matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x7f), "{line:?}");
            }
            assert_eq!(Format::Json.parse(&line), reference, "{line:?}");
        }
    }
    // Whitespace outside strings is JSON's: the fast path takes it.
    let line = "{\t\"timestamp\":\r\n1,\"service\" :\t\"a\"}\t";
    assert_eq!(
        log(line, FieldSet::ALL).map(|e| e.timestamp),
        Some(1),
        "{line:?}"
    );
}

#[test]
fn short_decimals_are_correctly_rounded() {
    let mut rng = Rng::new(11);
    let mut cases: Vec<String> = [
        "0.160",
        "-0.0",
        "0.0",
        "-0.5",
        "123456789012.345",
        "0.000000000000001",
        "9.99999999999999",
        "1.7976931348623157",
        "0.1",
        "0.3",
        "2.675",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..20_000 {
        let int = rng.below(1_000_000);
        let frac_digits = 1 + rng.below(9) as usize;
        let frac = rng.below(10u64.pow(frac_digits as u32));
        let sign = if rng.below(4) == 0 { "-" } else { "" };
        cases.push(format!("{sign}{int}.{frac:0frac_digits$}"));
    }
    for n in &cases {
        let want = n.parse::<f64>().ok();
        let got = short_decimal(n.as_bytes());
        if got.is_some() {
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{n}");
        }
        assert_eq!(float(n).map(f64::to_bits), want.map(f64::to_bits), "{n}");
    }
    for n in ["1e5", "1.5e3", "12", "0.1234567890123456", "1..2", "-", "."] {
        assert_eq!(short_decimal(n.as_bytes()), None, "{n}");
    }
}

#[test]
fn numbers_read_in_the_scan_agree_with_reading_their_text() {
    let mut rng = Rng::new(13);
    let mut cases: Vec<String> = [
        "0",
        "-0",
        "7",
        "200",
        "-5",
        "0.160",
        "-0.0",
        "1.5",
        "0.000000000000001",
        "123456789012345",
        "1234567890123456",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890",
        "-9223372036854775808",
        "9223372036854775808",
        "18446744073709551616",
        "1e5",
        "1E+5",
        "1.5e-3",
        "-2.5E10",
        "1e999",
        "0.1234567890123456",
        "12345678901234.5",
        "123456789012345.6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..20_000 {
        let digits = |rng: &mut Rng, n: u64| -> String {
            (0..n)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect()
        };
        let mut n = String::new();
        if rng.below(4) == 0 {
            n.push('-');
        }
        let len = 1 + rng.below(20);
        let int = digits(&mut rng, len);
        n.push_str(if int.starts_with('0') { "0" } else { &int });
        if rng.below(3) > 0 {
            n.push('.');
            let len = 1 + rng.below(17);
            n.push_str(&digits(&mut rng, len));
        }
        if rng.below(6) == 0 {
            n.push('e');
            let len = 1 + rng.below(3);
            n.push_str(&digits(&mut rng, len));
        }
        cases.push(n);
    }
    for n in &cases {
        let line = format!("{n},");
        let mut s = Scan::<false> {
            b: line.as_bytes(),
            i: 0,
            non_ascii: false,
            escaped: false,
        };
        let num = s.number().expect(n);
        assert_eq!((num.text, s.i), (n.as_str(), n.len()));
        let want_int = if is_integer(n) { int(n) } else { None };
        assert_eq!(num.int(), want_int, "{n}");
        assert_eq!(
            num.float().map(f64::to_bits),
            float(n).map(f64::to_bits),
            "{n}"
        );
    }
}

#[test]
fn integers_as_str_parse_reads_them() {
    for n in [
        "0",
        "-0",
        "7",
        "-5",
        "200",
        "123456789012345678",
        "-123456789012345678",
        "1234567890123456789",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-",
        "",
        "12a",
    ] {
        assert_eq!(int(n), n.parse::<i64>().ok(), "{n}");
    }
}

#[test]
fn known_keys_match_whole_names_only() {
    for f in Field::ALL {
        let name = f.name();
        assert_eq!(
            known_key(format!("{name}\": 1").as_bytes()),
            Some((f, name.len()))
        );
        assert_eq!(known_key(name.as_bytes()), None, "{name}: no closing quote");
        assert_eq!(known_key(format!("{name}x\"").as_bytes()), None);
        assert_eq!(known_key(format!("{name}\\\"").as_bytes()), None);
    }
    assert_eq!(known_key(b"timestam\""), None);
    assert_eq!(known_key(b"\""), None);
    // Unknown keys and keys with escapes are read as strings: same event as serde.
    assert!(agrees(
        Format::Json,
        br#"{"timestamp":1,"servicex":"a","leve":"b","status_cod":"x","level":"W"}"#,
        FieldSet::ALL
    ));
    assert_eq!(
        log(r#"{"timestamp":1,"ser\u0076ice":"a"}"#, FieldSet::ALL),
        None
    );
}

#[test]
fn odd_but_valid_records_fall_back_to_serde() {
    assert!(agrees(
        Format::Json,
        br#"{"timestamp":1,"response_time":-0,"value":-7}"#,
        FieldSet::ALL
    ));
    for line in [
        r#"{"timestamp":1,"service":"a\"b"}"#,
        r#"{"timestamp":1,"status_code":200.0}"#,
        r#"{"timestamp":1,"extra":{"nested":true}}"#,
        r#"{"timestamp":1,"response_time":1e999}"#,
        r#"{"timestamp":1,"status_code":18446744073709551616}"#,
    ] {
        assert_eq!(log(line, FieldSet::ALL), None, "{line}");
    }
    let e = log(
        r#" { "timestamp" : "2026-11-24T10:05:00Z" , "service":"x","service":null,"response_time":-0,"status_code":-5 } "#,
        FieldSet::ALL,
    )
    .expect("fast path");
    assert_eq!(e.service, None, "the last duplicate wins");
    assert_eq!(e.response_time.map(f64::to_bits), Some((-0.0f64).to_bits()));
    assert_eq!(e.status_code, Some(-5));
}

/// `line` through the fast path with the shape as it is, then with none: the same answer.
fn same_with_and_without_shape(line: &[u8], keep: FieldSet) -> Result<Event, Miss> {
    let run = || {
        let mut e = Event::default();
        log_into::<false>(line, keep, &mut e).map(|()| e)
    };
    let shaped = run();
    let learned = LOG_SHAPE.with(|s| std::mem::replace(&mut *s.borrow_mut(), Shape::EMPTY));
    let fresh = run();
    LOG_SHAPE.with(|s| *s.borrow_mut() = learned);
    assert_eq!(shaped, fresh, "{:?}", String::from_utf8_lossy(line));
    shaped
}

#[test]
fn shapes_predict_keys_but_never_decide() {
    let base = br#"{"timestamp": "2026-11-24T09:59:37.262Z", "level": "INFO", "service": "api", "message": "GET / 200", "user_id": "u1", "response_time": 0.25, "status_code": 200, "error_code": null}"#;
    let keep = {
        let mut k = FieldSet::default();
        k.insert(Field::Service);
        k.insert(Field::UserId);
        k
    };
    let text = std::str::from_utf8(base).expect("ASCII");
    let variants = [
        text.to_string(),
        // A key left out, two keys left out, the first key left out.
        text.replace(r#""level": "INFO", "#, ""),
        text.replace(r#""level": "INFO", "service": "api", "#, ""),
        text.replace(r#""timestamp": "2026-11-24T09:59:37.262Z", "#, "") + r#"{"timestamp": 1}"#,
        text.replace(
            r#""timestamp": "2026-11-24T09:59:37.262Z", "level""#,
            r#""level""#,
        )
        .replace('}', r#", "timestamp": 1}"#),
        // An unknown key, a key out of order, other whitespace.
        text.replace(r#""service""#, r#""other": [1], "service""#),
        text.replace(r#""service""#, r#""x": "y", "service""#),
        text.replace(r#", "user_id": "u1""#, "")
            .replace(r#""level""#, r#""user_id": "u1", "level""#),
        text.replace(r#", "level": "#, r#","level":"#),
        text.replace(r#", "level": "#, r#" , "level" : "#),
        // A gap where only the first key's can be, values of other types, a repeated key.
        text.replace(r#", "level": "#, r#"{"level": "#),
        text.replace(r#""api""#, "7"),
        text.replace("0.25", r#""0.25""#),
        text.replace("null}", r#"null, "service": null}"#),
        // Cut short, trailing bytes, an escape, a control character, a byte >= 0x80.
        text[..text.len() - 1].to_string(),
        text.to_string() + "x",
        text.replace("GET /", r#"GET \" /"#),
        text.replace("GET /", "GET \u{1} /"),
        text.replace("GET /", "GET \u{e9} /"),
    ];
    for keep in [keep, FieldSet::ALL, FieldSet::default()] {
        for v in &variants {
            // Learns `base`, then reads the variant with its shape (and learns it, as the
            // usual path does when the shape misses most keys).
            same_with_and_without_shape(base, keep).expect("the usual record");
            same_with_and_without_shape(v.as_bytes(), keep).ok();
            // Asserts that whatever the fast path gives, serde gives.
            agrees(Format::Json, v.as_bytes(), keep);
        }
    }
}

#[test]
fn a_gap_longer_than_a_shape_holds_ends_it() {
    let long = r#"{"timestamp": 1, "a_key_name_well_over_thirty_two_bytes": 1, "level": "x"}"#;
    let mut e = Event::default();
    assert_eq!(
        log_into::<false>(long.as_bytes(), FieldSet::ALL, &mut e),
        Ok(())
    );
    let learned = LOG_SHAPE.with(|s| s.borrow().entries(FieldSet::ALL).len());
    assert_eq!(learned, 1, "the keys before the long gap");
    let other = long.replace(r#""x""#, r#""y""#);
    assert!(agrees(Format::Json, other.as_bytes(), FieldSet::ALL));
    assert_eq!(
        same_with_and_without_shape(other.as_bytes(), FieldSet::ALL).map(|e| e.level),
        Ok(Some("y".into()))
    );
}
