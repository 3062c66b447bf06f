//! Values of fields, group keys and results.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::Str;

/// A borrowed value read from an [`super::Event`]: no copy on the hot path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// Null or missing.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string, borrowed from the record.
    Str(&'a str),
    /// A boolean (a schema's `bool` fields).
    Bool(bool),
}

impl ValueRef<'_> {
    /// Copies into an owned [`Value`].
    pub fn to_owned(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Str(s) => Value::Str(Str::from(s)),
            ValueRef::Bool(b) => Value::Bool(b),
        }
    }

    /// The numeric value, if any (ints widen to floats).
    #[inline]
    pub fn as_f64(self) -> Option<f64> {
        match self {
            ValueRef::Int(i) => Some(i as f64),
            ValueRef::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Null or missing.
    pub fn is_null(self) -> bool {
        matches!(self, ValueRef::Null)
    }

    /// A hash equal to [`Value::hash64`] of the owned value (and of every value equal to it).
    ///
    /// Group keys and set members are hashed several times per event, so this is a short
    /// folded-multiply hash (foldhash's construction for short inputs, without its `Hasher`
    /// state) rather than a `Hasher`. Only compared within one process, never stored.
    #[inline]
    pub fn hash64(self) -> u64 {
        match self {
            ValueRef::Null => fold(SEED[0], SEED[1]),
            ValueRef::Int(i) => fold(float_key(i as f64).to_bits() ^ SEED[2], SEED[1]),
            ValueRef::Float(f) => fold(float_key(f).to_bits() ^ SEED[2], SEED[1]),
            ValueRef::Str(s) => str_hash(s.as_bytes()),
            ValueRef::Bool(b) => fold(SEED[3] ^ u64::from(b), SEED[1]),
        }
    }
}

const SEED: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// The 64-bit halves of the 128-bit product, xored: mixes every bit of both inputs.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Two words mixed into a hash whose every bit depends on both (the seeded `fold` the hashes
/// above are built from), for tables keyed by integers such as dense ids.
#[inline(always)]
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    fold(a ^ SEED[0], b ^ SEED[1])
}

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn half(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// Hash of a string's bytes: the first and last 8 (or 4) bytes of a short string, overlapping,
/// with its length; 16 bytes per step beyond 16.
#[inline]
fn str_hash(b: &[u8]) -> u64 {
    let n = b.len();
    let (lo, hi) = if n <= 16 {
        if n >= 8 {
            (word(b, 0), word(b, n - 8))
        } else if n >= 4 {
            (half(b, 0), half(b, n - 4))
        } else if n > 0 {
            (
                u64::from(b[0]) << 16 | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]),
                0,
            )
        } else {
            (0, 0)
        }
    } else {
        let mut acc = SEED[3];
        let mut i = 0;
        while i + 16 < n {
            acc = fold(word(b, i) ^ acc, word(b, i + 8) ^ SEED[1]);
            i += 16;
        }
        (word(b, n - 16) ^ acc, word(b, n - 8))
    };
    // The length is mixed in after the bytes: xored into them, it could cancel a difference
    // in the first byte of two strings of different lengths.
    let len = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    fold(fold(lo ^ SEED[0], hi ^ SEED[1]) ^ SEED[3] ^ len, SEED[2])
}

/// Byte equality of two strings without a `memcmp` call for the usual short ones (values,
/// and the keys of JSON records a schema looks up).
#[inline(always)]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        // The first, middle and last bytes are all the bytes.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        0 => true,
        _ => a == b,
    }
}

/// Fixed seed: set hashes are only compared within one process, but fixed keeps runs equal.
const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7661_6c75_6573);

/// An owned value. Total order and hashing are defined for every variant (floats by their
/// IEEE total order, with -0.0 folded into 0.0) so values can be group keys and set members.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// Null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Str),
    /// A list (`collect_set`, `collect_list`, `split`).
    List(Vec<Value>),
}

impl Value {
    /// Null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The numeric value, if any (ints widen to floats).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Borrows as a [`ValueRef`] where one exists (not for lists).
    pub fn as_ref(&self) -> Option<ValueRef<'_>> {
        match self {
            Value::Null => Some(ValueRef::Null),
            Value::Int(i) => Some(ValueRef::Int(*i)),
            Value::Float(f) => Some(ValueRef::Float(*f)),
            Value::Str(s) => Some(ValueRef::Str(s)),
            Value::Bool(b) => Some(ValueRef::Bool(*b)),
            Value::List(_) => None,
        }
    }

    /// Equality with a borrowed value, as `==` on the owned one.
    #[inline]
    pub fn eq_ref(&self, r: ValueRef<'_>) -> bool {
        match (self, r) {
            (Value::Str(a), ValueRef::Str(b)) => bytes_eq(a.as_bytes(), b.as_bytes()),
            (Value::Null, ValueRef::Null) => true,
            (Value::Bool(a), ValueRef::Bool(b)) => *a == b,
            (Value::Int(a), ValueRef::Int(b)) => *a == b,
            (Value::Int(_) | Value::Float(_), ValueRef::Int(_) | ValueRef::Float(_)) => {
                *self == r.to_owned()
            }
            _ => false,
        }
    }

    /// A hash consistent with `==`: equal values (`1` and `1.0`) hash equal.
    pub fn hash64(&self) -> u64 {
        match self.as_ref() {
            Some(r) => r.hash64(),
            None => HASHER.hash_one(self),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::List(_) => 4,
        }
    }

    /// Appends the value as JSON. Non-finite floats have no JSON form and are written as null.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => write_f64(*f, out),
            Value::Str(s) => write_json_str(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
        }
    }

    /// The value as a `serde_json::Value` (used off the hot path, e.g. by `tail` and tests).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.as_str().into(),
            Value::List(items) => items.iter().map(Value::to_json).collect(),
        }
    }
}

/// Floats with an integral value still print with a fraction (`3.0`), so a consumer never sees a
/// float field change type between windows.
pub fn write_f64(f: f64, out: &mut String) {
    if f.is_finite() {
        let mut buf = ryu_like(f);
        if !buf.contains(['.', 'e', 'E']) {
            buf.push_str(".0");
        }
        out.push_str(&buf);
    } else {
        out.push_str("null");
    }
}

fn ryu_like(f: f64) -> String {
    // serde_json prints the shortest representation that round-trips.
    serde_json::Number::from_f64(f).map_or_else(|| "null".to_string(), |n| n.to_string())
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(s: &str, out: &mut String) {
    // serde_json's escaping is correct for every control character; strings are short here.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("null"),
    }
}

/// Floats as `Value` orders and hashes them: -0.0 is 0.0.
#[inline]
pub fn float_key(f: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else {
        f
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Int(a), Value::Float(b)) => float_key(*a as f64).total_cmp(&float_key(*b)),
            (Value::Float(a), Value::Int(b)) => float_key(*a).total_cmp(&float_key(*b as f64)),
            (Value::Float(a), Value::Float(b)) => float_key(*a).total_cmp(&float_key(*b)),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => state.write_u8(0),
            Value::Bool(b) => {
                state.write_u8(1);
                b.hash(state)
            }
            // Ints and floats that compare equal must hash equal.
            Value::Int(i) => {
                state.write_u8(2);
                float_key(*i as f64).to_bits().hash(state)
            }
            Value::Float(f) => {
                state.write_u8(2);
                float_key(*f).to_bits().hash(state)
            }
            Value::Str(s) => {
                state.write_u8(3);
                s.as_str().hash(state)
            }
            Value::List(items) => {
                state.write_u8(4);
                items.hash(state)
            }
        }
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &Value) -> String {
        let mut s = String::new();
        v.write_json(&mut s);
        s
    }

    #[test]
    fn json_forms() {
        assert_eq!(json(&Value::Null), "null");
        assert_eq!(json(&Value::Int(-3)), "-3");
        assert_eq!(json(&Value::Float(2.0)), "2.0");
        assert_eq!(json(&Value::Float(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(json(&Value::Float(f64::NAN)), "null");
        assert_eq!(json(&Value::Str("a\"b\n".into())), r#""a\"b\n""#);
        assert_eq!(
            json(&Value::List(vec![Value::Str("x".into()), Value::Null])),
            r#"["x",null]"#
        );
    }

    #[test]
    fn hashes_follow_equality_and_spread_strings() {
        assert_eq!(ValueRef::Int(1).hash64(), ValueRef::Float(1.0).hash64());
        assert_eq!(ValueRef::Float(-0.0).hash64(), ValueRef::Int(0).hash64());
        assert_ne!(ValueRef::Null.hash64(), ValueRef::Int(0).hash64());
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for len in 0..40 {
            for c in 0..40u8 {
                // Strings of every length differing in one byte, anywhere.
                let mut b = vec![b'a'; len];
                if len > 0 {
                    b[usize::from(c) % len] = b'0' + c;
                }
                let s = String::from_utf8(b).unwrap_or_default();
                let v = Value::Str(s.as_str().into());
                assert_eq!(v.hash64(), ValueRef::Str(&s).hash64());
                assert!(v.eq_ref(ValueRef::Str(&s)));
                let mut other = s.clone().into_bytes();
                if let Some(last) = other.last_mut() {
                    *last ^= 1;
                    let other = String::from_utf8(other).unwrap_or_default();
                    assert!(!v.eq_ref(ValueRef::Str(&other)), "{s} vs {other}");
                }
                n += usize::from(seen.insert(s.clone()));
                seen.insert(format!("{:x}", ValueRef::Str(&s).hash64()));
            }
        }
        // Every distinct string got a distinct hash.
        assert_eq!(seen.len(), 2 * n);
    }

    #[test]
    fn order_and_equality() {
        assert!(Value::Null < Value::Int(0));
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Float(-0.0), Value::Float(0.0));
        assert!(Value::Int(2) < Value::Float(2.5));
        assert!(Value::Str("a".into()) < Value::Str("b".into()));
        let h = |v: &Value| {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(&Value::Int(1)), h(&Value::Float(1.0)));
    }

    #[test]
    fn bytes_eq_agrees_with_slice_equality_at_every_length() {
        // Each length has its own comparison: a difference at any byte must show.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(bytes_eq(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!bytes_eq(&a, &b), "{n} {at}");
            }
            assert!(!bytes_eq(&a, &a[..n.saturating_sub(1)]) || n == 0, "{n}");
        }
    }
}
