//! Format `user-events`: `timestamp` (epoch ms, or RFC 3339), `user_id`, `action`, `value`,
//! `session_id`, `ip_address`, one JSON object per line.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::fields::{reason, OptFloat, OptStr, Ts};
use super::json::field;
use super::ParseError;
use crate::record::Event;

struct UserEvent(Event);

impl<'de> Deserialize<'de> for UserEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(V)
    }
}

struct V;

impl<'de> Visitor<'de> for V {
    type Value = UserEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserEvent, A::Error> {
        let mut e = Event::default();
        let mut ts = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "timestamp" => ts = field::<Ts, _>(&mut map, "timestamp")?.0,
                "user_id" => e.user_id = field::<OptStr, _>(&mut map, "user_id")?.0,
                "action" => e.action = field::<OptStr, _>(&mut map, "action")?.0,
                "value" => e.value = field::<OptFloat, _>(&mut map, "value")?.0,
                "session_id" => e.session_id = field::<OptStr, _>(&mut map, "session_id")?.0,
                "ip_address" => e.ip_address = field::<OptStr, _>(&mut map, "ip_address")?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        e.timestamp = ts.ok_or_else(|| de::Error::custom("missing timestamp"))?;
        Ok(UserEvent(e))
    }
}

pub(super) fn parse(line: &[u8]) -> Result<Event, ParseError> {
    // serde_json does not validate the bytes of strings it skips (unknown fields): check the
    // whole line, so a record with invalid UTF-8 anywhere is bad input.
    let line = std::str::from_utf8(line)
        .map_err(|e| ParseError::new(format!("not valid UTF-8 at byte {}", e.valid_up_to())))?;
    serde_json::from_str::<UserEvent>(line)
        .map(|u| u.0)
        .map_err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_events() {
        let e = parse(br#"{"timestamp":1795514700000,"user_id":"user_7","action":"click","value":2.5,"session_id":"s1","ip_address":"10.1.1.1"}"#).unwrap();
        assert_eq!(e.timestamp, 1_795_514_700_000);
        assert_eq!(e.user_id.as_deref(), Some("user_7"));
        assert_eq!(e.action.as_deref(), Some("click"));
        assert_eq!(e.value, Some(2.5));
        assert_eq!(e.session_id.as_deref(), Some("s1"));
        assert_eq!(e.ip_address.as_deref(), Some("10.1.1.1"));
        let e =
            parse(br#"{"timestamp":"2026-11-24T10:05:00Z","user_id":"42","action":null}"#).unwrap();
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
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
