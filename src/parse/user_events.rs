//! Format `user-events`: `timestamp` (epoch ms, or RFC 3339), `user_id`, `action`, `value`,
//! `session_id`, `ip_address`, one JSON object per line.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::fields::{opt_str, FieldKey, OptFloat, Ts};
use super::json::{field, parse_fast_or_serde, parse_fast_or_serde_into, parse_object};
use super::ParseError;
use crate::record::{Event, Field, FieldSet};

/// Deserializes a user event, copying only the string fields in `keep`.
struct V {
    keep: FieldSet,
}

impl<'de> DeserializeSeed<'de> for V {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for V {
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
                Some(Field::UserId) => e.user_id = opt_str(&mut map, "user_id", k(Field::UserId))?,
                Some(Field::Action) => e.action = opt_str(&mut map, "action", k(Field::Action))?,
                Some(Field::Value) => e.value = field::<OptFloat, _>(&mut map, "value")?.0,
                Some(Field::SessionId) => {
                    e.session_id = opt_str(&mut map, "session_id", k(Field::SessionId))?
                }
                Some(Field::IpAddress) => {
                    e.ip_address = opt_str(&mut map, "ip_address", k(Field::IpAddress))?
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
    parse_fast_or_serde(line, keep, &super::json_fast::USER_EVENT, parse_serde)
}

pub(super) fn parse_into(line: &[u8], keep: FieldSet, ev: &mut Event) -> Result<(), ParseError> {
    parse_fast_or_serde_into(line, keep, ev, &super::json_fast::USER_EVENT, parse_serde)
}

/// The reference parser (every record the fast path does not take).
pub(super) fn parse_serde(line: &str, keep: FieldSet) -> Result<Event, ParseError> {
    parse_object(line, V { keep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(line: &[u8]) -> Result<Event, ParseError> {
        parse(line, FieldSet::ALL)
    }

    #[test]
    fn parses_user_events() {
        let e = parse_all(br#"{"timestamp":1795514700000,"user_id":"user_7","action":"click","value":2.5,"session_id":"s1","ip_address":"10.1.1.1"}"#).unwrap();
        assert_eq!(e.timestamp, 1_795_514_700_000);
        assert_eq!(e.user_id.as_deref(), Some("user_7"));
        assert_eq!(e.action.as_deref(), Some("click"));
        assert_eq!(e.value, Some(2.5));
        assert_eq!(e.session_id.as_deref(), Some("s1"));
        assert_eq!(e.ip_address.as_deref(), Some("10.1.1.1"));
        let e = parse_all(br#"{"timestamp":"2026-11-24T10:05:00Z","user_id":"42","action":null}"#)
            .unwrap();
        assert_eq!((e.user_id.as_deref(), e.action), (Some("42"), None));
    }

    #[test]
    fn rejects_bad_user_events() {
        for bad in [
            &br#"{"user_id":"u"}"#[..],
            br#"{"timestamp":"soon","user_id":"u"}"#,
            br#"{"timestamp":1,"value":"3"}"#,
            br#"{"timestamp":1,"action":7}"#,
            br#"{"timestamp":1,"user_id":41}"#,
            b"{\"timestamp\":1",
        ] {
            assert!(parse_all(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
