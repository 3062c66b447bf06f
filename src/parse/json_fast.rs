//! A fast path for JSON records of the usual shape: one flat object whose values are strings
//! without escapes, numbers or `null`.
//!
//! It gives up ([`Miss`]) on anything else (nested values, booleans, a value of the wrong
//! type, a bad timestamp, trailing text, ...), and the caller then parses the record with
//! serde, the reference behaviour, errors included. Where it returns an event, serde returns
//! the same event (a property test checks this on generated and mutated records): numbers are
//! parsed with the same correctly rounded conversions, duplicate keys keep the last value, and
//! fields outside `keep` are checked but not copied.
//!
//! Two passes: the first, on a record not yet checked to be UTF-8, takes ASCII records
//! without escapes (the usual ones) and checks nothing else; a record with a byte >= 0x80 or
//! an escape in a string gets the second, after the caller's UTF-8 check, which also steps
//! over simple escapes in strings that are only checked, never copied.
//!
//! Each key is first looked for where the stream's shape predicts it (`json_fast/shape.rs`:
//! the keys of an earlier record in their order, with the exact bytes around them), then read
//! the usual way; the shape only predicts, what the walk accepts does not depend on it.
//!
//! The file is longer than the crate's ~600-line budget on purpose: the unchecked UTF-8 view of
//! a token (one of its two `unsafe` blocks) is sound only by what the scanner and the token
//! readers guarantee, so they stay in one file to be read and reviewed together. Its tests are
//! in `json_fast/tests.rs`.

use std::cell::RefCell;
use std::thread::LocalKey;

use self::shape::Shape;
use super::timestamp::{parse_rfc3339_bytes, usual_rfc3339};
use crate::record::{Event, Field, FieldSet, Str};

mod shape;

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

/// Why the fast path gave no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Miss {
    /// A string holds a byte >= 0x80 and the record was not known to be UTF-8: the caller
    /// checks the record (invalid UTF-8 is bad input) and tries again with `UTF8 = true`.
    NonAscii,
    /// A string holds an escape and the record was not known to be UTF-8: the caller checks
    /// the record and tries again with `UTF8 = true`, which steps over the simple escapes of
    /// strings only checked (see [`Scan::string`]).
    Escaped,
    /// Anything else: serde reads the record (its event or its error).
    Other,
}

/// A fast path: for a record not known to be UTF-8, and for one that is.
pub(super) struct Fast {
    pub unchecked: fn(&[u8], FieldSet, &mut Event) -> Result<(), Miss>,
    pub checked: fn(&[u8], FieldSet, &mut Event) -> Result<(), Miss>,
}

/// JSON log records (format `json`).
pub(super) const LOG: Fast = Fast {
    unchecked: log_into::<false>,
    checked: log_into::<true>,
};

/// User events (format `user-events`).
pub(super) const USER_EVENT: Fast = Fast {
    unchecked: user_event_into::<false>,
    checked: user_event_into::<true>,
};

/// A JSON log line of the usual shape, or `None`.
#[cfg(test)]
pub(super) fn log(line: &str, keep: FieldSet) -> Option<Event> {
    let mut e = Event::default();
    log_into::<true>(line.as_bytes(), keep, &mut e)
        .ok()
        .map(|()| e)
}

/// A user event of the usual shape, or `None`.
#[cfg(test)]
pub(super) fn user_event(line: &str, keep: FieldSet) -> Option<Event> {
    let mut e = Event::default();
    user_event_into::<true>(line.as_bytes(), keep, &mut e)
        .ok()
        .map(|()| e)
}

/// A JSON log line of the usual shape, into `e` (`Event::default()` on entry; unspecified
/// fields on a miss). `UTF8`: `line` is known to be UTF-8; otherwise a record whose strings
/// are all ASCII needs no check (every other byte the fast path takes is an ASCII delimiter,
/// digit or letter), and one with a byte >= 0x80 in a string is [`Miss::NonAscii`].
pub(super) fn log_into<const UTF8: bool>(
    line: &[u8],
    keep: FieldSet,
    e: &mut Event,
) -> Result<(), Miss> {
    object::<UTF8>(line, keep, log_kind, &LOG_SHAPE, e)
}

/// As [`log_into`], for a user event.
pub(super) fn user_event_into<const UTF8: bool>(
    line: &[u8],
    keep: FieldSet,
    e: &mut Event,
) -> Result<(), Miss> {
    object::<UTF8>(line, keep, user_event_kind, &USER_EVENT_SHAPE, e)
}

enum Tok<'a> {
    /// The bytes between the quotes: UTF-8 (see [`text`]).
    Str(&'a [u8]),
    Num(Num<'a>),
    Null,
}

/// A number token, with what its scan read on the way (also the schema scanner's numbers).
#[derive(Clone, Debug, PartialEq)]
pub(in crate::parse) struct Num<'a> {
    pub text: &'a str,
    pub neg: bool,
    /// The digits, the point left out, as an integer (meaningful up to 19 digits).
    pub m: u64,
    /// How many digits, before and after the point.
    pub digits: usize,
    /// How many digits after the point (0: no point).
    pub frac: usize,
    /// An exponent follows.
    pub exp: bool,
}

impl Num<'_> {
    /// An integer (no point, no exponent) as `str::parse::<i64>` reads it; `None` for any
    /// other number.
    #[inline(always)]
    fn int(&self) -> Option<i64> {
        if self.frac != 0 || self.exp {
            return None;
        }
        if self.digits > 18 {
            // Up to 18 digits cannot overflow; longer ones are left to `parse`.
            return int(self.text);
        }
        let v = self.m as i64;
        Some(if self.neg { -v } else { v })
    }

    /// The number as serde reads it into an `f64` (see [`float`]), the usual short decimal
    /// from the digits already read (as [`short_decimal`]).
    #[inline(always)]
    fn float(&self) -> Option<f64> {
        self.short_decimal().or_else(|| float(self.text))
    }

    /// [`short_decimal`] of the text, from the digits already read: a number with a fraction,
    /// no exponent and at most 15 digits; `None` for any other.
    #[inline(always)]
    pub(in crate::parse) fn short_decimal(&self) -> Option<f64> {
        if self.frac != 0 && !self.exp && self.digits <= 15 {
            // At most 15 digits: `m` and the power of ten (below 1e15) are exact doubles.
            let v = self.m as f64 / *POW10.get(self.frac)?;
            return Some(if self.neg { -v } else { v });
        }
        None
    }
}

struct Scan<'a, const UTF8: bool> {
    b: &'a [u8],
    i: usize,
    /// Set where a string holds a byte >= 0x80 (only when not `UTF8`).
    non_ascii: bool,
    /// Set where a string holds an escape (only when not `UTF8`).
    escaped: bool,
}

impl<'a, const UTF8: bool> Scan<'a, UTF8> {
    #[inline(always)]
    fn ws(&mut self) {
        // Usually no whitespace or a single space: one comparison decides.
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    /// `c` between optional whitespace (`: ` and `, ` are the usual forms, checked first).
    #[inline(always)]
    fn sep(&mut self, c: u8) -> Option<()> {
        match self.b.get(self.i..self.i + 2) {
            Some(&[x, b' ']) if x == c => {
                self.i += 2;
                if self.b.get(self.i).is_some_and(|&n| n > b' ') {
                    return Some(());
                }
                self.ws();
                Some(())
            }
            _ => {
                self.ws();
                self.eat(c)?;
                self.ws();
                Some(())
            }
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string without escapes or control characters (and, unless `UTF8`, of ASCII only:
    /// a byte >= 0x80 sets `non_ascii`, an escape `escaped`). With `UTF8 && escapes`, for a
    /// value that is only checked, never copied, the simple escapes (`\"`, `\\`, `\/`, `\b`,
    /// `\f`, `\n`, `\r`, `\t`: serde takes them in any string) are stepped over, and the token
    /// is the text between the quotes. (Records with escapes are rare, an escaped quote in a
    /// message: the usual pass, without `UTF8`, leaves them to a second one.)
    #[inline(always)]
    fn string(&mut self, escapes: bool) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let end = string_stop::<UTF8>(self.b, start)?;
        match self.b.get(end) {
            Some(b'"') => {
                self.i = end + 1;
                self.b.get(start..end)
            }
            Some(b'\\') if UTF8 && escapes => self.escaped_rest(start, end),
            Some(&c) => {
                self.non_ascii = !UTF8 && c >= 0x80;
                self.escaped = !UTF8 && c == b'\\';
                None
            }
            None => None,
        }
    }

    /// The rest of a string from `start` with `escapes` (see [`Scan::string`]), from the
    /// backslash at `at`.
    #[cold]
    fn escaped_rest(&mut self, start: usize, at: usize) -> Option<&'a [u8]> {
        let mut at = at;
        loop {
            if !matches!(
                self.b.get(at + 1),
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
            ) {
                return None;
            }
            let end = string_stop::<UTF8>(self.b, at + 2)?;
            match self.b.get(end) {
                Some(b'"') => {
                    self.i = end + 1;
                    return self.b.get(start..end);
                }
                Some(b'\\') => at = end,
                _ => return None,
            }
        }
    }

    /// An object key: a known field name is matched in place (a few comparisons of known
    /// length, no scan for its closing quote, no lookup); any other key is scanned and looked
    /// up. `None`: not a plain string.
    #[inline(always)]
    fn key(&mut self) -> Option<Option<Field>> {
        if self.b.get(self.i) == Some(&b'"') {
            if let Some((f, len)) = known_key(self.b.get(self.i + 1..)?) {
                self.i += len + 2;
                return Some(Some(f));
            }
        }
        self.string(false).map(|k| Field::from_name(text(k)))
    }

    /// A string holding a timestamp of the usual form (see [`usual_rfc3339`]), as
    /// [`parse_rfc3339_bytes`] reads it, without the string's scan: that form's 24 bytes are
    /// each checked (digits and separators), so a string of them is plain.
    #[inline(always)]
    fn usual_time(&mut self) -> Option<i64> {
        let v = self.b.get(self.i..self.i + 26)?;
        if v[0] != b'"' || v[25] != b'"' {
            return None;
        }
        let t = usual_rfc3339(&v[1..25])?;
        self.i += 26;
        Some(t)
    }

    #[inline(always)]
    fn number(&mut self) -> Option<Num<'a>> {
        let (n, end) = number(self.b, self.i)?;
        self.i = end;
        Some(n)
    }

    #[inline(always)]
    /// A value; `escapes` as for [`Scan::string`].
    fn value(&mut self, escapes: bool) -> Option<Tok<'a>> {
        match self.b.get(self.i)? {
            b'"' => self.string(escapes).map(Tok::Str),
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

/// A number in strict JSON grammar at `start` in `b`:
/// `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`, its digits read into an integer on
/// the way (the usual number needs no second pass), and where it ends.
#[inline(always)]
pub(in crate::parse) fn number(b: &[u8], start: usize) -> Option<(Num<'_>, usize)> {
    // Digits from `i` on, added to `m` (wrapping: `m` is used up to 19 digits only).
    let digits = |i: &mut usize, m: &mut u64| {
        let s = *i;
        while let Some(&c) = b.get(*i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            *m = m.wrapping_mul(10).wrapping_add(u64::from(d));
            *i += 1;
        }
        *i - s
    };
    let neg = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(neg);
    let mut m = 0u64;
    let int_digits = match b.get(i) {
        Some(b'0') => {
            i += 1;
            1
        }
        Some(b'1'..=b'9') => digits(&mut i, &mut m),
        _ => return None,
    };
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = digits(&mut i, &mut m);
        if frac == 0 {
            return None;
        }
    }
    let exp = matches!(b.get(i), Some(b'e' | b'E'));
    if exp {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i, &mut 0) == 0 {
            return None;
        }
    }
    let n = Num {
        // ASCII digits, signs, point and exponent only.
        text: b.get(start..i).map(text)?,
        neg,
        m,
        digits: int_digits + frac,
        frac,
        exp,
    };
    Some((n, i))
}

/// `rest` (the text after a key's opening quote) starts with `name` and its closing quote.
#[inline(always)]
fn is_key<const N: usize>(rest: &[u8], name: &[u8; N]) -> bool {
    // Array against array: a comparison of known length, inlined (no `memcmp` call).
    rest.get(N) == Some(&b'"') && <&[u8; N]>::try_from(&rest[..N]).is_ok_and(|r| r == name)
}

/// The field whose name, then a quote, starts `rest`, and the name's length.
#[inline(always)]
fn known_key(rest: &[u8]) -> Option<(Field, usize)> {
    macro_rules! try_keys {
        ($($name:literal => $f:expr),+) => {
            {
                $(if is_key(rest, $name) {
                    return Some(($f, $name.len()));
                })+
            }
        };
    }
    match rest.first()? {
        b't' => try_keys!(b"timestamp" => Field::Timestamp),
        b'l' => try_keys!(b"level" => Field::Level, b"line" => Field::Line),
        b's' => try_keys!(
            b"service" => Field::Service,
            b"status_code" => Field::StatusCode,
            b"session_id" => Field::SessionId
        ),
        b'm' => try_keys!(b"message" => Field::Message),
        b'i' => try_keys!(b"ip_address" => Field::IpAddress),
        b'u' => try_keys!(b"user_id" => Field::UserId),
        b'r' => {
            try_keys!(b"request_id" => Field::RequestId, b"response_time" => Field::ResponseTime)
        }
        b'e' => try_keys!(b"error_code" => Field::ErrorCode),
        b'a' => try_keys!(b"action" => Field::Action),
        b'v' => try_keys!(b"value" => Field::Value),
        _ => {}
    }
    None
}

/// The first byte of `b` at or after `from` that a plain string cannot hold: `"`, `\\`, a
/// control character, or (unless `UTF8`) a byte >= 0x80. The same vector compares (or word
/// arithmetic) that find the closing quote give the checks for control characters (JSON
/// forbids them in strings) and, for a record not known to be UTF-8, for ASCII: no pass over
/// the record of its own. Strings in records are short (a few to a few dozen bytes), where a
/// call into `memchr` costs more than the scan.
#[inline(always)]
pub(super) fn string_stop<const UTF8: bool>(b: &[u8], from: usize) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // Sixteen bytes per step where SSE2 is there (always on x86_64), then words.
        let mut i = from;
        while let Some(block) = b.get(i..).and_then(<[u8]>::first_chunk::<16>) {
            let m = stops16::<UTF8>(block);
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        return string_stop_words::<UTF8>(b.get(i..)?, i);
    }
    #[allow(unreachable_code)]
    string_stop_words::<UTF8>(b.get(from..)?, from)
}

/// The string whose text starts at `from` (after its opening quote) if it holds only ASCII,
/// no escape and no control character: its text and where its closing quote is.
#[inline(always)]
pub(in crate::parse) fn ascii_string(b: &[u8], from: usize) -> Option<(&str, usize)> {
    let end = string_stop::<false>(b, from)?;
    if b.get(end) != Some(&b'"') {
        return None;
    }
    // No byte before the stop is >= 0x80 (see `text`).
    Some((text(b.get(from..end)?), end))
}

/// A bit per byte of `block` (16 bytes) that stops a plain string (see [`string_stop`]).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
#[allow(unsafe_code)]
fn stops16<const UTF8: bool>(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is enabled (see the `cfg`), and the unaligned load reads the 16 bytes of
    // `block`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let special = if UTF8 {
            // Unsigned `v <= 0x1f`: control characters.
            _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v)
        } else {
            // Signed `v < 0x20`: control characters and bytes >= 0x80.
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))
        };
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), special)) as u32
    }
}

/// [`string_stop`] in `rest`, which starts at `from` in the record, eight bytes per step with
/// word arithmetic.
#[inline(always)]
fn string_stop_words<const UTF8: bool>(rest: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Bytes of `w` that stop the string get their high bit set; bits above the first such byte
    // may be wrong (borrows), the lowest one never is.
    let hits = |w: u64| {
        let q = w ^ (LO * u64::from(b'"'));
        let s = w ^ (LO * u64::from(b'\\'));
        // Below 0x20, with the high bit of bytes >= 0x80 (wanted unless `UTF8`).
        let low = w.wrapping_sub(LO * 0x20);
        let special = if UTF8 { low & !w } else { low | w };
        (q.wrapping_sub(LO) & !q | s.wrapping_sub(LO) & !s | special) & HI
    };
    // Whole words by `chunks_exact`: no bounds check per word.
    let mut words = rest.chunks_exact(8);
    let mut i = from;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let m = hits(u64::from_le_bytes(a));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20 || (!UTF8 && c >= 0x80))
        .map(|p| i + p)
}

/// A token as text.
///
/// A number token from [`number`] is ASCII (digits, signs, point, exponent). A string
/// token comes from [`Scan::string`]: either the record is UTF-8 (`UTF8`, checked by the
/// caller) and the token lies between two quotes, ASCII bytes, hence on character boundaries;
/// or the scan stopped at every byte >= 0x80 of the token and gave none back, so the token is
/// ASCII. Or from [`ascii_string`]: the bytes before the first stop of
/// `string_stop::<false>`, which stops at every byte >= 0x80, so ASCII. Either way it is UTF-8.
#[inline(always)]
#[allow(unsafe_code)]
fn text(v: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(v).is_ok());
    // SAFETY: `v` is UTF-8, see above.
    unsafe { std::str::from_utf8_unchecked(v) }
}

fn is_integer(n: &str) -> bool {
    !n.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
}

/// An integer in JSON grammar as `str::parse::<i64>` reads it; `None` where that fails.
#[inline]
fn int(n: &str) -> Option<i64> {
    let (neg, digits) = match n.as_bytes().split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, n.as_bytes()),
    };
    if digits.is_empty() || digits.len() > 18 {
        // Up to 18 digits cannot overflow; longer ones are left to `parse`.
        return n.parse().ok();
    }
    let mut v = 0i64;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

/// A number field as serde reads it into an `f64`: integers through `i64`/`u64` (then `as`),
/// others correctly rounded; out of range is left to serde.
fn float(n: &str) -> Option<f64> {
    if let Some(v) = short_decimal(n.as_bytes()) {
        return Some(v);
    }
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

/// Exact powers of ten as doubles.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A decimal of at most 15 digits with a fraction and no exponent (`0.160`, the usual
/// response time), correctly rounded: its digits as an integer and the power of ten are both
/// exact doubles, so one division rounds once (Clinger's fast path, the first thing
/// `str::parse` tries too, without its general set-up). `None` for anything else.
#[inline]
pub(super) fn short_decimal(n: &[u8]) -> Option<f64> {
    let (neg, digits) = match n.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, n),
    };
    let mut m = 0u64;
    let mut count = 0;
    let mut point = None;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                count += 1;
                if count > 15 {
                    return None;
                }
                m = m * 10 + u64::from(c - b'0');
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    // Digits on both sides of the point.
    let p = point.filter(|&p| p > 0 && p + 1 < digits.len())?;
    let v = m as f64 / *POW10.get(digits.len() - 1 - p)?;
    Some(if neg { -v } else { v })
}

thread_local! {
    /// The shapes of the records last parsed on this thread, a format each.
    static LOG_SHAPE: RefCell<Shape> = const { RefCell::new(Shape::EMPTY) };
    static USER_EVENT_SHAPE: RefCell<Shape> = const { RefCell::new(Shape::EMPTY) };
}

#[inline(always)]
fn object<const UTF8: bool>(
    b: &[u8],
    keep: FieldSet,
    kind: fn(Field) -> Kind,
    shape: &'static LocalKey<RefCell<Shape>>,
    e: &mut Event,
) -> Result<(), Miss> {
    shape.with(|shape| {
        let mut shape = shape.borrow_mut();
        let mut s = Scan::<UTF8> {
            b,
            i: 0,
            non_ascii: false,
            escaped: false,
        };
        match fields(&mut s, keep, kind, shape.entries(keep), e) {
            Some(relearn) => {
                // The second pass (rare records) leaves the shape as it is.
                if !UTF8 && relearn {
                    shape.learn(b, keep, kind);
                }
                Ok(())
            }
            None if s.non_ascii => Err(Miss::NonAscii),
            None if s.escaped => Err(Miss::Escaped),
            None => Err(Miss::Other),
        }
    })
}

/// The object of `s`, to its end. Control characters are found by the string scan (outside
/// strings the grammar takes none but JSON's whitespace, as serde). Each key is looked for
/// first where `entries` (the stream's shape) predicts it, then read. `Some(true)`: the shape
/// missed more keys than half its own, and is better learned again from this record (the
/// first record learns one; a stream whose records change shape learns the new one).
#[inline(always)]
fn fields<const UTF8: bool>(
    s: &mut Scan<'_, UTF8>,
    keep: FieldSet,
    kind: fn(Field) -> Kind,
    entries: &[shape::Entry],
    e: &mut Event,
) -> Option<bool> {
    let b = s.b;
    let mut ts = None;
    let mut misses = 0;
    // The entry predicted next; 0 only at the record's start.
    let mut next = 0;
    loop {
        let act = match shape::gap(entries, b, s.i, next) {
            Some((entry, k, value_at)) => {
                s.i = value_at;
                next = k + 1;
                entry.act
            }
            // The usual end, without the call.
            None if next != 0 && b.get(s.i..) == Some(b"}") => {
                s.i += 1;
                break;
            }
            None => match key(s, keep, kind, entries, &mut next)? {
                Some(act) => {
                    misses += 1;
                    act
                }
                None => break,
            },
        };
        if act == Act::Ts {
            if let Some(t) = s.usual_time() {
                ts = Some(t);
                continue;
            }
        }
        // A string only checked (of a key not read, or of a field not kept) may hold
        // escapes: only with `UTF8`, the second pass.
        let value = s.value(UTF8 && matches!(act, Act::Skip | Act::Check))?;
        store(act, value, e, &mut ts)?;
    }
    s.ws();
    if s.i != b.len() {
        return None;
    }
    e.timestamp = ts?;
    Some(misses * 2 > entries.len())
}

/// A key of `s` read without the shape, with the separator before it (the `{` at the
/// record's start, `next` 0) and the colon after: `Some(None)` at the object's end. Sets
/// `next` to the entry to predict after it. Kept out of line: the walk's usual step, a key
/// where the shape predicts it, then needs fewer registers.
#[inline(never)]
fn key<const UTF8: bool>(
    s: &mut Scan<'_, UTF8>,
    keep: FieldSet,
    kind: fn(Field) -> Kind,
    entries: &[shape::Entry],
    next: &mut usize,
) -> Option<Option<Act>> {
    if *next == 0 {
        s.ws();
        s.eat(b'{')?;
        s.ws();
        if s.eat(b'}').is_some() {
            return Some(None);
        }
    } else if s.sep(b',').is_none() {
        s.eat(b'}')?;
        return Some(None);
    }
    let field = s.key()?;
    s.sep(b':')?;
    *next = shape::after(entries, field, *next);
    Some(Some(act(field, kind, keep)))
}

/// What the walk does with the value of a key, from its field, the format's [`Kind`] of it
/// and the fields kept (decided once per key of a shape).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    /// A key the format does not read: a string, number or `null`, checked.
    Skip,
    Ts,
    /// A string field kept: copied.
    Keep(Field),
    /// A string field not kept: a string or `null`, checked, never copied.
    Check,
    Float(Field),
    Int,
}

fn act(field: Option<Field>, kind: fn(Field) -> Kind, keep: FieldSet) -> Act {
    let Some(f) = field else {
        return Act::Skip;
    };
    match kind(f) {
        Kind::Skip => Act::Skip,
        Kind::Ts => Act::Ts,
        Kind::Str if keep.contains(f) => Act::Keep(f),
        Kind::Str => Act::Check,
        Kind::Float => Act::Float(f),
        Kind::Int => Act::Int,
    }
}

/// `value` into `e` (or the timestamp, `ts`) as `act` says; `None` for a value of the wrong
/// type (serde words the error) or out of range.
#[inline(always)]
fn store(act: Act, value: Tok<'_>, e: &mut Event, ts: &mut Option<i64>) -> Option<()> {
    match (act, value) {
        (Act::Skip, _) => {}
        (Act::Ts, Tok::Null) => *ts = None,
        (Act::Ts, Tok::Str(v)) => *ts = Some(parse_rfc3339_bytes(v)?),
        // Digits only.
        (Act::Ts, Tok::Num(n)) if !n.neg => *ts = Some(n.int()?),
        // A field not kept stays `None` (as `e` came), even when repeated: only its type is
        // checked.
        (Act::Check, Tok::Null | Tok::Str(_)) => {}
        (Act::Keep(f), Tok::Null) => *e.str_mut(f)? = None,
        (Act::Keep(f), Tok::Str(v)) => *e.str_mut(f)? = Some(Str::from(text(v))),
        (Act::Float(f), Tok::Null) => set_float(e, f, None),
        (Act::Float(f), Tok::Num(n)) => set_float(e, f, Some(n.float()?)),
        (Act::Int, Tok::Null) => e.status_code = None,
        (Act::Int, Tok::Num(n)) => e.status_code = Some(n.int()?),
        _ => return None,
    }
    Some(())
}

fn set_float(e: &mut Event, f: Field, v: Option<f64>) {
    match f {
        Field::ResponseTime => e.response_time = v,
        Field::Value => e.value = v,
        _ => {}
    }
}

#[cfg(test)]
mod tests;
