//! Format `json`: one JSON log object per line (docs/design.md section 2).
//!
//! Deserialized in one pass straight into an [`Event`], borrowing from the input: no
//! intermediate `serde_json::Value`, no map. Unknown fields are skipped; for duplicate keys the
//! last one wins (as in most JSON parsers).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::fields::{opt_str, reason, FieldKey, OptFloat, OptInt, Ts};
use super::json_fast::{Fast, Miss};
use super::ParseError;
use crate::record::{Event, Field, FieldSet};

/// Deserializes a log object, copying only the string fields in `keep`.
struct LogVisitor {
    keep: FieldSet,
}

impl<'de> DeserializeSeed<'de> for LogVisitor {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_map(self)
    }
}

/// Reads the value of `key`, naming the field in any error.
pub(super) fn field<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    key: &str,
) -> Result<T, A::Error> {
    map.next_value::<T>()
        .map_err(|e| de::Error::custom(format_args!("{key}: {e}")))
}

impl<'de> Visitor<'de> for LogVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut e = Event::default();
        let mut ts = None;
        let k = |f: Field| self.keep.contains(f);
        while let Some(FieldKey(key)) = map.next_key::<FieldKey>()? {
            match key {
                Some(Field::Timestamp) => ts = field::<Ts, _>(&mut map, "timestamp")?.0,
                Some(Field::Level) => e.level = opt_str(&mut map, "level", k(Field::Level))?,
                Some(Field::Service) => {
                    e.service = opt_str(&mut map, "service", k(Field::Service))?
                }
                Some(Field::Message) => {
                    e.message = opt_str(&mut map, "message", k(Field::Message))?
                }
                Some(Field::IpAddress) => {
                    e.ip_address = opt_str(&mut map, "ip_address", k(Field::IpAddress))?
                }
                Some(Field::UserId) => e.user_id = opt_str(&mut map, "user_id", k(Field::UserId))?,
                Some(Field::RequestId) => {
                    e.request_id = opt_str(&mut map, "request_id", k(Field::RequestId))?
                }
                Some(Field::ResponseTime) => {
                    e.response_time = field::<OptFloat, _>(&mut map, "response_time")?.0
                }
                Some(Field::StatusCode) => {
                    e.status_code = field::<OptInt, _>(&mut map, "status_code")?.0
                }
                Some(Field::ErrorCode) => {
                    e.error_code = opt_str(&mut map, "error_code", k(Field::ErrorCode))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        e.timestamp = ts.ok_or_else(|| de::Error::custom("missing timestamp"))?;
        Ok(e)
    }
}

pub(super) fn parse(line: &[u8], keep: FieldSet) -> Result<Event, ParseError> {
    parse_fast_or_serde(line, keep, &super::json_fast::LOG, parse_serde)
}

/// A JSON record through `fast` when it takes it, otherwise through `serde`, the reference
/// (errors included).
pub(super) fn parse_into(line: &[u8], keep: FieldSet, ev: &mut Event) -> Result<(), ParseError> {
    parse_fast_or_serde_into(line, keep, ev, &super::json_fast::LOG, parse_serde)
}

pub(super) fn parse_fast_or_serde(
    line: &[u8],
    keep: FieldSet,
    fast: &Fast,
    serde: fn(&str, FieldSet) -> Result<Event, ParseError>,
) -> Result<Event, ParseError> {
    let mut ev = Event::default();
    parse_fast_or_serde_into(line, keep, &mut ev, fast, serde).map(|()| ev)
}

/// As [`parse_fast_or_serde`], into `ev` (`Event::default()` on entry).
///
/// The usual record is ASCII, and the fast path then needs no UTF-8 check of its own (see
/// [`super::json_fast::log_into`]); any other record is checked before the second fast pass
/// or serde, so invalid UTF-8 gives the same error as before, wherever it is.
#[inline]
pub(super) fn parse_fast_or_serde_into(
    line: &[u8],
    keep: FieldSet,
    ev: &mut Event,
    fast: &Fast,
    serde: fn(&str, FieldSet) -> Result<Event, ParseError>,
) -> Result<(), ParseError> {
    let miss = match (fast.unchecked)(line, keep, ev) {
        Ok(()) => return Ok(()),
        Err(miss) => miss,
    };
    let text = utf8(line)?;
    // The fast path may have set some fields before it gave up: each parse starts afresh.
    // Also for escapes, which only the pass for UTF-8 records steps over (they are rare).
    if miss != Miss::Other {
        *ev = Event::default();
        if (fast.checked)(line, keep, ev).is_ok() {
            return Ok(());
        }
    }
    *ev = serde(text, keep)?;
    Ok(())
}

/// The reference parser (every record the fast path does not take).
pub(super) fn parse_serde(line: &str, keep: FieldSet) -> Result<Event, ParseError> {
    parse_object(line, LogVisitor { keep })
}

/// The line as text. serde_json does not validate the bytes of strings it skips (unknown
/// fields): the whole line is checked, so a record with invalid UTF-8 anywhere is bad input.
fn utf8(line: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(line)
        .map_err(|e| ParseError::new(format!("not valid UTF-8 at byte {}", e.valid_up_to())))
}

/// Parses one JSON object with `seed`, rejecting trailing characters.
pub(super) fn parse_object<'a, S: DeserializeSeed<'a, Value = Event>>(
    line: &'a str,
    seed: S,
) -> Result<Event, ParseError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let event = seed.deserialize(&mut de).map_err(reason)?;
    de.end().map_err(reason)?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Event {
        parse(s.as_bytes(), FieldSet::ALL).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &[u8]) -> String {
        match parse(s, FieldSet::ALL) {
            Ok(e) => panic!("{}: parsed as {e:?}", String::from_utf8_lossy(s)),
            Err(e) => e.0.into_owned(),
        }
    }

    #[test]
    fn parse_into_equals_parse_also_where_the_fast_path_gives_up_midway() {
        for line in [
            r#"{"timestamp":"2026-11-24T10:05:00Z","service":"api","user_id":"u\"1"}"#,
            r#"{"service":"api","status_code":200,"timestamp":1,"level":{"x":1}}"#,
            r#"{"service":"api","status_code":"200","timestamp":1}"#,
            r#"{"service":"api","timestamp":"2026-11-24T10:05:00Z","response_time":0.5}"#,
            "{\"service\":\"api\",\"timestamp\":1}\r",
        ] {
            let mut ev = Event::default();
            let into = super::super::Format::Json
                .parse_into(line.as_bytes(), FieldSet::ALL, &mut ev)
                .map(|()| ev);
            assert_eq!(
                into,
                super::super::Format::Json.parse_fields(line.as_bytes(), FieldSet::ALL),
                "{line}"
            );
        }
    }

    #[test]
    fn parses_every_field() {
        let e = ok(
            r#"{"timestamp":"2026-11-24T10:05:00.250Z","level":"ERROR","service":"api","message":"boom \"x\"","ip_address":"10.0.0.1","user_id":"u1","request_id":"r-9","response_time":1.5,"status_code":503,"error_code":"E42","extra":{"nested":[1,2]}}"#,
        );
        assert_eq!(e.timestamp, 1_795_514_700_250);
        assert_eq!(e.level.as_deref(), Some("ERROR"));
        assert_eq!(e.service.as_deref(), Some("api"));
        assert_eq!(e.message.as_deref(), Some("boom \"x\""));
        assert_eq!(e.ip_address.as_deref(), Some("10.0.0.1"));
        assert_eq!(e.user_id.as_deref(), Some("u1"));
        assert_eq!(e.request_id.as_deref(), Some("r-9"));
        assert_eq!(e.response_time, Some(1.5));
        assert_eq!(e.status_code, Some(503));
        assert_eq!(e.error_code.as_deref(), Some("E42"));
    }

    #[test]
    fn nulls_missing_fields_and_integral_numbers() {
        let e = ok(
            r#"{"timestamp":1795514700000,"service":null,"response_time":2,"status_code":200.0}"#,
        );
        assert_eq!(e.timestamp, 1_795_514_700_000);
        assert_eq!(e.service, None);
        assert_eq!(e.response_time, Some(2.0));
        assert_eq!(e.status_code, Some(200));
        assert_eq!(e.level, None);
        let e = ok(r#"{"service":"a","timestamp":"2026-11-24T10:05:00Z","service":"b"}"#);
        assert_eq!(e.service.as_deref(), Some("b"), "last duplicate wins");
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        assert!(bad(b"garbage").contains("invalid JSON"));
        assert!(bad(br#"{"timestamp":"2026-11-24T10:05:00Z","service":"#).contains("truncated"));
        assert!(bad(br#"{"service":"api"}"#).contains("missing timestamp"));
        assert!(bad(br#"{"timestamp":null}"#).contains("missing timestamp"));
        assert!(bad(br#"{"timestamp":"2026-11-24"}"#).contains("timestamp"));
        assert!(bad(br#"{"timestamp":"2026-02-30T10:00:00Z"}"#).contains("timestamp"));
        assert!(bad(br#"{"timestamp":"24/Nov/2026:10:00:00 +0000"}"#).contains("timestamp"));
        assert!(bad(br#"{"timestamp":1.7e12}"#).contains("timestamp"));
        assert!(bad(br#"{"timestamp":-5}"#).contains("timestamp"));
        assert!(bad(br#"{"timestamp":1,"status_code":"500"}"#).contains("status_code"));
        assert!(bad(br#"{"timestamp":1,"status_code":500.5}"#).contains("status_code"));
        assert!(bad(br#"{"timestamp":1,"response_time":"fast"}"#).contains("response_time"));
        assert!(bad(br#"{"timestamp":1,"service":5}"#).contains("service"));
        assert!(bad(br#"{"timestamp":1,"user_id":123}"#).contains("user_id"));
        assert!(bad(b"[1,2]").contains("JSON object"));
        assert!(bad(b"{\"timestamp\":1,\"service\":\"\xff\"}").contains("UTF-8"));
        assert!(bad(b"{\"timestamp\":1,\"unknown\":\"\xff\"}").contains("UTF-8"));
        assert!(bad(br#"{"timestamp":1} trailing"#).contains("trailing"));
    }

    /// Nesting is never followed by recursion: serde_json skips an unknown field's value with
    /// a loop, and a known field holding nested values is a type error. Either way no stack
    /// overflow, whatever the depth.
    #[test]
    fn deep_nesting_is_skipped_or_rejected_without_recursion() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let nested = format!("{}1{}", open.repeat(200_000), close.repeat(200_000));
            let skipped = format!(r#"{{"timestamp":1,"extra":{nested}}}"#);
            for format in [super::super::Format::Json, super::super::Format::UserEvents] {
                let ev = format.parse_fields(skipped.as_bytes(), FieldSet::ALL);
                assert_eq!(ev.map(|e| e.timestamp).ok(), Some(1), "{open}");
            }
            let typed = format!(r#"{{"timestamp":1,"service":{nested}}}"#);
            let err = parse(typed.as_bytes(), FieldSet::ALL).err().map(|e| e.0);
            assert!(
                err.is_some_and(|e| e.starts_with("service: invalid type")),
                "{open}"
            );
        }
    }
}
