//! Property tests of the parsers of outside bytes reachable from the crate's public API: the
//! record formats, the spec loader and the expression parser (the checkpoint decoder's are unit
//! tests in `src/checkpoint/codec.rs`). For any input: no
//! panic, no hang, an error for garbage; for generated valid input: a round trip, or agreement
//! with a simple reference.
//!
//! CI runs 256 cases per property from a fixed seed; `scripts/fuzz` runs many more from a
//! random one (`PROPTEST_CASES`, `PROPTEST_RNG_SEED`). A failure found is kept as a plain test
//! at the end of this file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use logflow::parse::Format;
use logflow::record::{Event, Value};
use logflow::spec::expr;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// The default configuration (which reads `PROPTEST_CASES` and `PROPTEST_RNG_SEED`), with a
/// fixed seed unless one is given: CI sees the same cases on every run.
fn config() -> Config {
    let mut c = Config::default();
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(0x1067_f10e);
    }
    c
}

const FORMATS: [Format; 5] = [
    Format::Json,
    Format::Apache,
    Format::Nginx,
    Format::UserEvents,
    Format::Text,
];

/// Bytes that look like records: pieces of JSON and access-log syntax, and anything else.
fn recordish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"\"timestamp\":".to_vec()),
        Just(b"\"service\":\"api\",".to_vec()),
        Just(b"\"status_code\":".to_vec()),
        Just(b"1795514700000".to_vec()),
        Just(b"\"2026-11-24T10:05:00Z\"".to_vec()),
        Just(b"-9e999".to_vec()),
        Just(b"\\u00".to_vec()),
        Just(b"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|ps| ps.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn record_parsers_never_panic(line in recordish()) {
        for f in FORMATS {
            let _ = f.parse(&line);
        }
    }

    #[test]
    fn json_records_round_trip(
        ts in 0i64..4_000_000_000_000,
        service in proptest::option::of("[a-z\\- ]{0,12}|[\\u{0}-\\u{10ffff}]{0,6}"),
        status in proptest::option::of(100i64..600),
        rt in proptest::option::of(0.0f64..1e6),
    ) {
        let line = serde_json::json!({
            "timestamp": ts, "service": service, "status_code": status, "response_time": rt,
        })
        .to_string();
        let ev = Format::Json.parse(line.as_bytes()).unwrap();
        prop_assert_eq!(ev.timestamp, ts);
        prop_assert_eq!(ev.service.as_deref(), service.as_deref());
        prop_assert_eq!(ev.status_code, status);
        prop_assert_eq!(ev.response_time, rt);
    }

    #[test]
    fn the_spec_loader_never_panics(text in "[a-z_\\[\\]=\"{}, .\n0-9()+*<>-]{0,300}") {
        let _ = logflow::spec::load_text("p.toml", &text);
    }

    #[test]
    fn damaged_shipped_specs_load_or_fail_cleanly(at in 0usize..10_000, byte in any::<u8>()) {
        let mut text = include_str!("../dataflows/log-analysis.toml").as_bytes().to_vec();
        let i = at % text.len();
        text[i] = byte;
        if let Ok(text) = std::str::from_utf8(&text) {
            let _ = logflow::spec::load_text("p.toml", text);
        }
    }

    #[test]
    fn the_expression_parser_never_panics(src in "[a-z_ ()+*/%<>=!,'\"0-9.-]{0,200}") {
        if let Err(e) = expr::parse(&src) {
            prop_assert!(e.offset <= src.len(), "{}", e);
        }
    }

    #[test]
    fn arithmetic_agrees_with_a_reference(e in arith()) {
        let (src, want) = e;
        let got = expr::parse(&src).unwrap().bind_event().unwrap().eval(&Event::default());
        prop_assert_eq!(got, Value::Int(want), "{}", src);
    }

}

/// An integer expression of `+ - *` over small literals, fully parenthesized, and its value.
/// A product has a literal on its right, so no value comes near overflowing.
fn arith() -> impl Strategy<Value = (String, i64)> {
    let leaf = (-50i64..50).prop_map(|n| (format!("({n})"), n));
    leaf.clone().prop_recursive(5, 32, 2, move |inner| {
        (inner.clone(), 0..3usize, inner, leaf.clone()).prop_map(|((a, x), op, (b, y), (c, z))| {
            match op {
                0 => (format!("({a} + {b})"), x + y),
                1 => (format!("({a} - {b})"), x - y),
                _ => (format!("({a} * {c})"), x * z),
            }
        })
    })
}
