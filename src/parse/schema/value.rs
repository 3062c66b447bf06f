//! Values on a path, kept as raw text until converted to their field's type.

use super::scan::Leaves;
use super::types::{FieldType, MetaPath};
use super::{RecordMeta, Schema};
use crate::parse::json_fast::{short_decimal, Num};
use crate::parse::ParseError;
use crate::record::{Event, Field, Str, Value};

pub(super) fn meta_value<'a>(
    m: &MetaPath,
    meta: Option<&'a RecordMeta>,
) -> Result<Raw<'a>, ParseError> {
    let Some(meta) = meta else {
        return Ok(Raw::Null);
    };
    let bytes = |b: Option<&'a [u8]>| match b {
        None => Ok(Raw::Null),
        Some(b) => std::str::from_utf8(b)
            .map(Raw::Text)
            .map_err(|_| ParseError::new("record metadata is not UTF-8")),
    };
    match m {
        MetaPath::Key => bytes(meta.key.as_deref()),
        MetaPath::Timestamp => Ok(meta.timestamp.map_or(Raw::Null, Raw::Int)),
        MetaPath::Partition => Ok(Raw::Int(i64::from(meta.partition))),
        MetaPath::Offset => Ok(Raw::Int(meta.offset)),
        MetaPath::Header(h) => {
            // The last header of that name wins, as for duplicate JSON keys.
            let v = meta.headers.iter().rev().find(|(k, _)| k == h);
            bytes(v.and_then(|(_, v)| v.as_deref()))
        }
    }
}

/// A value on a path, not converted yet.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Raw<'a> {
    Missing,
    Null,
    /// The JSON text of a value, as written.
    Json(&'a str),
    /// A JSON string without escapes: its text between the quotes.
    Plain(&'a str),
    /// A JSON number as the scanner read it: its text and its digits.
    Num(Num<'a>),
    /// A regex capture or string metadata.
    Text(&'a str),
    Int(i64),
}

impl Raw<'_> {
    /// The value as text, and whether it was a JSON string; `None` for null, missing, and JSON
    /// objects, arrays and booleans.
    pub(super) fn text(&self) -> Option<(std::borrow::Cow<'_, str>, bool)> {
        use std::borrow::Cow;
        match self {
            Raw::Missing | Raw::Null => None,
            Raw::Text(t) | Raw::Plain(t) => Some((Cow::Borrowed(*t), true)),
            Raw::Int(i) => Some((Cow::Owned(i.to_string()), false)),
            Raw::Num(n) => Some((Cow::Borrowed(n.text), false)),
            Raw::Json(t) => {
                let t = *t;
                match t.as_bytes().first()? {
                    b'"' if !t.contains('\\') => Some((Cow::Borrowed(&t[1..t.len() - 1]), true)),
                    b'"' => serde_json::from_str::<String>(t)
                        .ok()
                        .map(|s| (Cow::Owned(s), true)),
                    b'-' | b'0'..=b'9' => Some((Cow::Borrowed(t), false)),
                    _ => None,
                }
            }
        }
    }

    /// For error messages: the value, cut short.
    pub(super) fn shown(&self) -> String {
        let s = match self {
            Raw::Missing => return "nothing (no such key)".into(),
            Raw::Null => return "null".into(),
            Raw::Json(t) => t.to_string(),
            Raw::Num(n) => n.text.to_string(),
            Raw::Plain(t) => format!("\"{t}\""),
            Raw::Text(t) => format!("{t:?}"),
            Raw::Int(i) => i.to_string(),
        };
        match s.char_indices().nth(40) {
            Some((i, _)) => format!("{}...", &s[..i]),
            None => s,
        }
    }
}

/// A value converted to its field's type (`Value::Null` when absent).
pub(super) fn convert(raw: &Raw<'_>, ty: FieldType) -> Option<Value> {
    match (raw, ty) {
        (Raw::Missing | Raw::Null, _) => return Some(Value::Null),
        // The usual values, without the general route through `text` below.
        (Raw::Plain(t), FieldType::String) => return Some(Value::Str(Str::from(*t))),
        (Raw::Num(n), FieldType::Float) => return num_float(n).map(Value::Float),
        (Raw::Num(n), FieldType::Int) => return num_int(n).map(Value::Int),
        (Raw::Json(t), FieldType::Float)
            if t.as_bytes().first().is_some_and(u8::is_ascii_digit) =>
        {
            return float_of(t).map(Value::Float)
        }
        (Raw::Json(t), FieldType::Int) if t.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
            return int_of(t).map(Value::Int)
        }
        _ => {}
    }
    if let Raw::Json(t) = raw {
        match (*t, ty) {
            ("null", _) => return Some(Value::Null),
            ("true", FieldType::Bool) => return Some(Value::Bool(true)),
            ("false", FieldType::Bool) => return Some(Value::Bool(false)),
            _ => {}
        }
    }
    let (t, string) = raw.text()?;
    Some(match ty {
        // A number is not a string: a JSON number for a string field is a mismatch.
        FieldType::String if string => Value::Str(Str::from(t.as_ref())),
        FieldType::String => return None,
        FieldType::Int => Value::Int(int_of(&t)?),
        FieldType::Float => Value::Float(float_of(&t)?),
        FieldType::Bool => match t.as_ref() {
            "true" if string => Value::Bool(true),
            "false" if string => Value::Bool(false),
            _ => return None,
        },
    })
}

/// Whether `raw` converts to `ty`, without building the value where that costs (a string).
#[inline]
pub(super) fn converts(raw: &Raw<'_>, ty: FieldType) -> bool {
    match (raw, ty) {
        (Raw::Plain(_), FieldType::String) => true,
        (Raw::Json(t), FieldType::String) if t.starts_with('"') && !t.contains('\\') => true,
        _ => convert(raw, ty).is_some(),
    }
}

fn is_number(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    t.bytes()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == b'.')
        && t.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
}

fn int_of(t: &str) -> Option<i64> {
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    // `200.0` is an integer written as a float; `200.5` is not.
    let f = float_of(t)?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// [`int_of`] of the number's text, from the digits the scan read where that is exact.
#[inline]
fn num_int(n: &Num<'_>) -> Option<i64> {
    if n.frac == 0 && !n.exp && n.digits <= 18 {
        // Up to 18 digits cannot overflow (`m` is exact).
        let v = n.m as i64;
        return Some(if n.neg { -v } else { v });
    }
    int_of(n.text)
}

/// [`float_of`] of the number's text, from the digits the scan read where that is exact.
#[inline]
fn num_float(n: &Num<'_>) -> Option<f64> {
    n.short_decimal().or_else(|| float_of(n.text))
}

fn float_of(t: &str) -> Option<f64> {
    // The usual `0.077` without the general parse (the same correctly rounded value).
    if let Some(f) = short_decimal(t.as_bytes()) {
        return Some(f);
    }
    if !is_number(t) {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Stores a converted value in its field (built-in fields have their schema type).
pub(super) fn set(ev: &mut Event, f: Field, v: Value) {
    let s = |v: Value| match v {
        Value::Str(s) => Some(s),
        _ => None,
    };
    match f {
        Field::Timestamp => {}
        Field::Level => ev.level = s(v),
        Field::Service => ev.service = s(v),
        Field::Message => ev.message = s(v),
        Field::IpAddress => ev.ip_address = s(v),
        Field::UserId => ev.user_id = s(v),
        Field::RequestId => ev.request_id = s(v),
        Field::ErrorCode => ev.error_code = s(v),
        Field::Action => ev.action = s(v),
        Field::SessionId => ev.session_id = s(v),
        Field::Line => ev.line = s(v),
        Field::ResponseTime => ev.response_time = v.as_f64(),
        Field::Value => ev.value = v.as_f64(),
        Field::StatusCode => {
            ev.status_code = match v {
                Value::Int(i) => Some(i),
                _ => None,
            }
        }
        Field::Extra(slot) => ev.set_extra(slot, v),
    }
}

/// A string field's value. Out of line: inlined into the scanner's loop, the copy of its bytes
/// was compiled to a byte-at-a-time loop (callgrind: +18M instructions on 50,000 records).
#[inline(never)]
fn new_str(t: &str) -> Str {
    Str::from(t)
}

/// How a leaf's value is stored, decided once per schema.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Store {
    /// The event time (leaf 0).
    Time,
    /// A built-in string field.
    Str(Field),
    /// Converted to the type, into the field.
    Value(Field, FieldType),
    /// Checked, not built: a built-in field no analysis reads.
    Check(FieldType),
}

/// Values converted as the scanner meets them and stored straight into the event: no raw
/// slots, no second pass. `None` for anything not converted (a mismatch, a bad time): the
/// caller then reads the record again through raw slots, which word the reason. A duplicate
/// key's later value replaces the earlier one, as there.
pub(super) struct Direct<'s, 'e> {
    pub schema: &'s Schema,
    pub ev: &'e mut Event,
    /// The event time, once read.
    pub ts: Option<i64>,
}

impl<'a> Leaves<'a> for Direct<'_, '_> {
    #[inline]
    fn put(&mut self, ids: &[usize], v: Raw<'a>) -> Option<()> {
        for &id in ids {
            match *self.schema.stores.get(id)? {
                Store::Time => self.ts = Some(self.schema.time_format.convert(&v)?),
                Store::Str(f) => match v {
                    Raw::Plain(t) => *self.ev.str_mut(f)? = Some(new_str(t)),
                    _ => set(self.ev, f, convert(&v, FieldType::String)?),
                },
                Store::Value(f, ty) => set(self.ev, f, convert(&v, ty)?),
                Store::Check(ty) => {
                    if !converts(&v, ty) {
                        return None;
                    }
                }
            }
        }
        Some(())
    }
}
