//! Strictly typed JSON field values, deserialized straight from borrowed input: a wrong type
//! is an error naming what was expected, never a silent coercion.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::timestamp::parse_rfc3339;
use crate::record::{Field, Str};

/// A string field (`null` = absent).
pub struct OptStr(pub Option<Str>);
/// An object key naming a [`Field`] (`None`: a key logflow does not read), matched in place:
/// keys are never copied (serde's `Cow<str>` would allocate a `String` for every key).
pub struct FieldKey(pub Option<Field>);

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldKey, E> {
                Ok(FieldKey(Field::from_name(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string field no analysis reads: checked like [`OptStr`], never copied.
pub struct SkipStr;
/// An integer field; a float with a fraction or a string is an error.
pub struct OptInt(pub Option<i64>);
/// A number field (ints widen).
pub struct OptFloat(pub Option<f64>);
/// A timestamp: an RFC 3339 string or non-negative integer epoch milliseconds.
pub struct Ts(pub Option<i64>);

macro_rules! visitor {
    ($ty:ident, $expecting:expr, { $($body:tt)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$ty, E> {
                        Ok($ty(None))
                    }
                    $($body)*
                }
                d.deserialize_any(V)
            }
        }
    };
}

visitor!(OptStr, "a string or null", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<OptStr, E> {
        Ok(OptStr(Some(Str::from(v))))
    }
});

impl<'de> Deserialize<'de> for SkipStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SkipStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<SkipStr, E> {
                Ok(SkipStr)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SkipStr, E> {
                Ok(SkipStr)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a string field of `map` into `Some` when `keep`, else only checks its type.
pub fn opt_str<'de, A: de::MapAccess<'de>>(
    map: &mut A,
    key: &str,
    keep: bool,
) -> Result<Option<Str>, A::Error> {
    let named = |e: A::Error| de::Error::custom(format_args!("{key}: {e}"));
    if keep {
        map.next_value::<OptStr>().map(|s| s.0).map_err(named)
    } else {
        map.next_value::<SkipStr>().map(|_| None).map_err(named)
    }
}

visitor!(OptInt, "an integer or null", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptInt, E> {
        i64::try_from(v)
            .map(|v| OptInt(Some(v)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptInt, E> {
        Ok(OptInt(Some(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptInt, E> {
        // `200.0` is an integer written as a float; `200.5` is not.
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(OptInt(Some(v as i64)))
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
});

visitor!(OptFloat, "a number or null", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptFloat, E> {
        Ok(OptFloat(Some(v as f64)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptFloat, E> {
        Ok(OptFloat(Some(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptFloat, E> {
        Ok(OptFloat(Some(v)))
    }
});

visitor!(Ts, "an RFC 3339 timestamp or epoch milliseconds", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ts, E> {
        parse_rfc3339(v).map(|t| Ts(Some(t))).ok_or_else(|| {
            E::custom(format_args!(
                "not an RFC 3339 timestamp with time and zone: {v:?}"
            ))
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
        i64::try_from(v)
            .map(|v| Ts(Some(v)))
            .map_err(|_| E::custom("epoch milliseconds out of range"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
        if v < 0 {
            Err(E::custom("negative epoch milliseconds"))
        } else {
            Ok(Ts(Some(v)))
        }
    }
});

/// Turns a serde_json error into a short reason (`serde_json` adds the column).
pub fn reason(e: serde_json::Error) -> super::ParseError {
    let msg = e.to_string();
    // A field wrapper (`service: ...`) hides the category of inner errors: check the text too.
    let msg = match e.classify() {
        _ if msg.contains("EOF while parsing") => format!("truncated JSON: {msg}"),
        serde_json::error::Category::Eof => format!("truncated JSON: {msg}"),
        serde_json::error::Category::Syntax => format!("invalid JSON: {msg}"),
        _ => msg,
    };
    super::ParseError::new(msg)
}
