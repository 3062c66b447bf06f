//! A fast path for JSON records of the usual shape: one flat object whose values are strings
//! without escapes, numbers or `null`.
//!
//! It returns `None` for anything else (escapes, nested values, booleans, a value of the wrong
//! type, a bad timestamp, trailing text, ...), and the caller then parses the record with
//! serde, the reference behaviour, errors included. Where it returns an event, serde returns
//! the same event (a property test checks this on generated and mutated records): numbers are
//! parsed with the same correctly rounded conversions, duplicate keys keep the last value, and
//! fields outside `keep` are checked but not copied.

use super::timestamp::parse_rfc3339;
use crate::record::{Event, Field, FieldSet, Str};

/// What a format reads from a key.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ts,
    Str,
    Float,
    Int,
    /// A key the format does not read (its value is skipped).
    Skip,
}

/// The fields of JSON log records (format `json`).
fn log_kind(f: Field) -> Kind {
    match f {
        Field::Timestamp => Kind::Ts,
        Field::Level
        | Field::Service
        | Field::Message
        | Field::IpAddress
        | Field::UserId
        | Field::RequestId
        | Field::ErrorCode => Kind::Str,
        Field::ResponseTime => Kind::Float,
        Field::StatusCode => Kind::Int,
        _ => Kind::Skip,
    }
}

/// The fields of user events (format `user-events`).
fn user_event_kind(f: Field) -> Kind {
    match f {
        Field::Timestamp => Kind::Ts,
        Field::UserId | Field::Action | Field::SessionId | Field::IpAddress => Kind::Str,
        Field::Value => Kind::Float,
        _ => Kind::Skip,
    }
}

/// A JSON log line of the usual shape, or `None`.
pub(super) fn log(line: &str, keep: FieldSet) -> Option<Event> {
    object(line, keep, log_kind)
}

/// A user event of the usual shape, or `None`.
pub(super) fn user_event(line: &str, keep: FieldSet) -> Option<Event> {
    object(line, keep, user_event_kind)
}

enum Tok<'a> {
    Str(&'a str),
    Num(&'a str),
    Null,
}

struct Scan<'a> {
    /// The record, already checked to be UTF-8: tokens are sliced from it at ASCII
    /// delimiters, so they need no second validation.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string without escapes or control characters.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        // No control characters anywhere in the record (checked once, see `object`).
        let end = start + memchr::memchr2(b'"', b'\\', &self.b[start..])?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// A number in strict JSON grammar: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i > s
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.i = i;
        self.s.get(start..i)
    }

    fn value(&mut self) -> Option<Tok<'a>> {
        match self.b.get(self.i)? {
            b'"' => self.string().map(Tok::Str),
            b'n' => {
                if self.b[self.i..].starts_with(b"null") {
                    self.i += 4;
                    Some(Tok::Null)
                } else {
                    None
                }
            }
            b'-' | b'0'..=b'9' => self.number().map(Tok::Num),
            _ => None,
        }
    }
}

fn is_integer(n: &str) -> bool {
    !n.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
}

/// A number field as serde reads it into an `f64`: integers through `i64`/`u64` (then `as`),
/// others correctly rounded; out of range is left to serde.
fn float(n: &str) -> Option<f64> {
    if is_integer(n) {
        if n.starts_with('-') {
            // serde_json reads `-0` as the float -0.0.
            n.parse::<i64>()
                .ok()
                .map(|v| if v == 0 { -0.0 } else { v as f64 })
        } else {
            n.parse::<u64>().ok().map(|v| v as f64)
        }
    } else {
        n.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

fn object(line: &str, keep: FieldSet, kind: fn(Field) -> Kind) -> Option<Event> {
    let b = line.as_bytes();
    // JSON forbids control characters inside strings. Records rarely hold any (not even as
    // whitespace), so one branch-free pass over the record, which vectorises, replaces a check
    // per string; a record with any goes to serde.
    if b.iter().fold(false, |any, &c| any | (c < 0x20)) {
        return None;
    }
    let mut s = Scan { s: line, b, i: 0 };
    let mut e = Event::default();
    let mut ts = None;
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.eat(b'}').is_none() {
        loop {
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let value = s.value()?;
            let field = Field::from_name(key);
            match (field.map_or(Kind::Skip, kind), value) {
                (Kind::Skip, _) => {}
                (Kind::Ts, Tok::Null) => ts = None,
                (Kind::Ts, Tok::Str(v)) => ts = Some(parse_rfc3339(v)?),
                (Kind::Ts, Tok::Num(n)) if n.bytes().all(|c| c.is_ascii_digit()) => {
                    ts = Some(n.parse::<i64>().ok()?)
                }
                (Kind::Str, Tok::Null) => set_str(&mut e, field?, None),
                (Kind::Str, Tok::Str(v)) => {
                    let f = field?;
                    set_str(&mut e, f, keep.contains(f).then(|| Str::from(v)))
                }
                (Kind::Float, Tok::Null) => set_float(&mut e, field?, None),
                (Kind::Float, Tok::Num(n)) => set_float(&mut e, field?, Some(float(n)?)),
                (Kind::Int, Tok::Null) => e.status_code = None,
                (Kind::Int, Tok::Num(n)) if is_integer(n) => {
                    e.status_code = Some(n.parse::<i64>().ok()?)
                }
                // A value of the wrong type: serde words the error.
                _ => return None,
            }
            s.ws();
            if s.eat(b',').is_some() {
                s.ws();
                continue;
            }
            s.eat(b'}')?;
            break;
        }
    }
    s.ws();
    if s.i != b.len() {
        return None;
    }
    e.timestamp = ts?;
    Some(e)
}

fn set_str(e: &mut Event, f: Field, v: Option<Str>) {
    match f {
        Field::Level => e.level = v,
        Field::Service => e.service = v,
        Field::Message => e.message = v,
        Field::IpAddress => e.ip_address = v,
        Field::UserId => e.user_id = v,
        Field::RequestId => e.request_id = v,
        Field::ErrorCode => e.error_code = v,
        Field::Action => e.action = v,
        Field::SessionId => e.session_id = v,
        _ => {}
    }
}

fn set_float(e: &mut Event, f: Field, v: Option<f64>) {
    match f {
        Field::ResponseTime => e.response_time = v,
        Field::Value => e.value = v,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
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

    /// Wherever the fast path gives an event, serde gives the same one.
    fn agrees(format: Format, line: &[u8], keep: FieldSet) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return false;
        };
        let fast = match format {
            Format::UserEvents => user_event(text, keep),
            _ => log(text, keep),
        };
        let Some(fast) = fast else { return false };
        let reference = match format {
            Format::UserEvents => super::super::user_events::parse_serde(text, keep),
            _ => super::super::json::parse_serde(text, keep),
        };
        assert_eq!(reference.as_ref().ok(), Some(&fast), "{text}");
        true
    }

    fn mutations(line: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
        const BYTES: &[u8] = b" \t\"\\{}[],:-+.0159eEnulltrfa\x01\xff";
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
}
