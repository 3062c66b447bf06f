//! How a schema's event time is written: named formats, strftime patterns, time zones.

use super::value::Raw;
use crate::parse::json_fast::Num;
use crate::parse::timestamp::parse_rfc3339;

/// How the event time is written.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeFormat {
    /// The built-in `json` format's rule: an RFC 3339 string or integer epoch milliseconds.
    Default,
    /// An RFC 3339 string.
    Rfc3339,
    /// Integer epoch milliseconds.
    EpochMillis,
    /// Epoch seconds, a decimal fraction exact to the millisecond.
    EpochSeconds,
    /// Integer epoch microseconds.
    EpochMicros,
    /// Integer epoch nanoseconds.
    EpochNanos,
    /// A chrono strftime pattern; `zone` applies when the pattern has no offset.
    Pattern {
        /// The chrono strftime pattern.
        pattern: String,
        /// The pattern has an offset (`%z`).
        zoned: bool,
        /// The zone of a pattern without an offset.
        zone: Zone,
    },
}

impl TimeFormat {
    /// Parses `format` (and `timezone`, for patterns without an offset).
    pub fn parse(format: &str, timezone: Option<&str>) -> Result<TimeFormat, String> {
        let named = match format {
            "rfc3339" => Some(TimeFormat::Rfc3339),
            "epoch_millis" => Some(TimeFormat::EpochMillis),
            "epoch_seconds" => Some(TimeFormat::EpochSeconds),
            "epoch_micros" => Some(TimeFormat::EpochMicros),
            "epoch_nanos" => Some(TimeFormat::EpochNanos),
            _ => None,
        };
        if let Some(f) = named {
            return match timezone {
                Some(_) => Err(format!(
                    "`timezone` applies to strftime patterns without an offset, not to `{format}`"
                )),
                None => Ok(f),
            };
        }
        if !format.contains('%') {
            return Err(format!(
                "unknown timestamp format `{format}` (rfc3339, epoch_millis, epoch_seconds, \
                 epoch_micros, epoch_nanos, or a strftime pattern such as \
                 \"%d/%b/%Y:%H:%M:%S %z\")"
            ));
        }
        use chrono::format::{Item, StrftimeItems};
        if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
            return Err(format!("bad strftime pattern `{format}`"));
        }
        let zoned = ["%z", "%:z", "%::z", "%#z"]
            .iter()
            .any(|z| format.contains(z));
        let zone = match timezone {
            None => Zone::Fixed(0),
            Some(_) if zoned => {
                return Err(format!(
                    "`timezone` is for patterns without an offset; `{format}` has one"
                ))
            }
            Some(tz) => Zone::parse(tz)?,
        };
        Ok(TimeFormat::Pattern {
            pattern: format.to_string(),
            zoned,
            zone,
        })
    }

    /// The format as `check` shows it.
    pub fn name(&self) -> String {
        match self {
            TimeFormat::Default => "rfc3339 or epoch_millis".into(),
            TimeFormat::Rfc3339 => "rfc3339".into(),
            TimeFormat::EpochMillis => "epoch_millis".into(),
            TimeFormat::EpochSeconds => "epoch_seconds".into(),
            TimeFormat::EpochMicros => "epoch_micros".into(),
            TimeFormat::EpochNanos => "epoch_nanos".into(),
            TimeFormat::Pattern {
                pattern,
                zone: Zone::Fixed(s),
                ..
            } if *s != 0 => {
                format!("\"{pattern}\" at UTC{}", offset_text(*s))
            }
            TimeFormat::Pattern {
                pattern,
                zone: Zone::Named(tz),
                ..
            } => format!("\"{pattern}\" in {}", tz.name()),
            TimeFormat::Pattern { pattern, .. } => format!("\"{pattern}\""),
        }
    }

    /// The format as written in a spec's `timestamp = { format = ... }`.
    pub fn spec_text(&self) -> String {
        match self {
            TimeFormat::Default | TimeFormat::Rfc3339 => "rfc3339".into(),
            TimeFormat::Pattern { pattern, .. } => pattern.clone(),
            f => f.name(),
        }
    }

    /// Epoch milliseconds of a time written as text.
    pub fn convert_text(&self, s: &str) -> Option<i64> {
        self.convert(&Raw::Text(s))
    }

    /// Epoch milliseconds of a value (`None`: not a time in this format).
    pub(super) fn convert(&self, raw: &Raw<'_>) -> Option<i64> {
        let shift = match self {
            TimeFormat::EpochMillis => Some(0),
            TimeFormat::EpochSeconds => Some(3),
            TimeFormat::EpochMicros => Some(-3),
            TimeFormat::EpochNanos => Some(-6),
            _ => None,
        };
        if let (Some(shift), Raw::Num(n)) = (shift, raw) {
            return num_epoch_ms(n, shift).filter(|ms| *ms >= 0);
        }
        // A number, or a string without escapes: its text as it stands (what `text` gives).
        if let (Some(shift), Raw::Plain(t) | Raw::Json(t)) = (shift, raw) {
            if matches!(raw, Raw::Plain(_))
                || matches!(t.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
            {
                return epoch_ms(t, shift).filter(|ms| *ms >= 0);
            }
        }
        let ms = match (self, raw) {
            (TimeFormat::Default, Raw::Json(_) | Raw::Plain(_) | Raw::Num(_)) => {
                match raw.text()? {
                    (t, true) => parse_rfc3339(&t)?,
                    (t, false) => t.parse::<i64>().ok()?,
                }
            }
            (TimeFormat::Default | TimeFormat::Rfc3339, _) => parse_rfc3339(&raw.text()?.0)?,
            (TimeFormat::EpochMillis, _) => epoch_ms(&raw.text()?.0, 0)?,
            (TimeFormat::EpochSeconds, _) => epoch_ms(&raw.text()?.0, 3)?,
            (TimeFormat::EpochMicros, _) => epoch_ms(&raw.text()?.0, -3)?,
            (TimeFormat::EpochNanos, _) => epoch_ms(&raw.text()?.0, -6)?,
            (
                TimeFormat::Pattern {
                    pattern,
                    zoned,
                    zone,
                },
                _,
            ) => pattern_ms(&raw.text()?.0, pattern, *zoned, zone)?,
        };
        (ms >= 0).then_some(ms)
    }
}

/// The zone a pattern without an offset is read in.
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    /// Seconds east of UTC, all year.
    Fixed(i32),
    /// An IANA time zone: its offset at that local time (daylight saving included).
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC`, `Z`, `+hh:mm`/`-hh:mm`, or an IANA name such as `Europe/Berlin`.
    pub fn parse(tz: &str) -> Result<Zone, String> {
        if tz == "UTC" || tz == "Z" || tz == "Etc/UTC" {
            return Ok(Zone::Fixed(0));
        }
        if !tz.starts_with(['+', '-']) {
            return tz.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
                format!(
                    "unknown timezone `{tz}` (an IANA name such as `Europe/Berlin`, `UTC`, or a \
                     fixed offset such as `+01:00`)"
                )
            });
        }
        fixed_offset(tz).map(Zone::Fixed)
    }
}

/// `+hh:mm`/`-hh:mm` (or `+hhmm`) in seconds east of UTC.
fn fixed_offset(tz: &str) -> Result<i32, String> {
    let b = tz.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(format!("bad timezone offset `{tz}` (expected `+hh:mm`)")),
    };
    let digits = |s: &[u8]| -> Option<i32> {
        (s.len() == 2 && s.iter().all(u8::is_ascii_digit))
            .then(|| i32::from(s[0] - b'0') * 10 + i32::from(s[1] - b'0'))
    };
    let (h, m) = match b.len() {
        6 if b[3] == b':' => (digits(&b[1..3]), digits(&b[4..6])),
        5 => (digits(&b[1..3]), digits(&b[3..5])),
        _ => (None, None),
    };
    match (h, m) {
        (Some(h), Some(m)) if h < 24 && m < 60 => Ok(sign * (h * 3600 + m * 60)),
        _ => Err(format!("bad timezone offset `{tz}` (expected `+hh:mm`)")),
    }
}

fn offset_text(s: i32) -> String {
    let sign = if s < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", s.abs() / 3600, s.abs() % 3600 / 60)
}

/// A decimal number `[-]digits[.digits]` as epoch milliseconds, its unit being 10^`shift` ms
/// (3: seconds, 0: ms, -3: µs, -6: ns), truncated toward minus infinity. Read digit by digit,
/// never through a float: `1795514344.617` s is exactly `1795514344617` ms.
pub fn epoch_ms(s: &str, shift: i32) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    // One pass: the digits as an integer, where the point is, and whether the shape is
    // `digits[.digits]`.
    let b = s.as_bytes();
    let mut n = 0u64;
    let mut point = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0')),
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    let (int_len, frac_len) = match point {
        Some(p) => (p, b.len() - p - 1),
        None => (b.len(), 0),
    };
    if int_len == 0 || int_len > 30 || (point.is_some() && frac_len == 0) {
        return None;
    }
    let scale = frac_len as i32;
    // value_ms = digits * 10^(shift - scale)
    let e = shift - scale;
    if int_len + frac_len <= 18 {
        // The usual case, in u64 (18 digits cannot wrap): no i128 arithmetic.
        let ms = if e >= 0 {
            i64::try_from(n.checked_mul(10u64.checked_pow(e as u32)?)?).ok()?
        } else {
            let d = 10u64.checked_pow((-e) as u32).unwrap_or(u64::MAX);
            let (q, r) = (n / d, n % d);
            // Toward minus infinity: a negative value with a remainder is one lower.
            return i64::try_from(q).ok().map(|q| match (neg, r > 0) {
                (true, true) => -q - 1,
                (true, false) => -q,
                (false, _) => q,
            });
        };
        return Some(if neg { -ms } else { ms });
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    // All digits as one integer in units of 10^-(frac digits kept), at most 36 significant.
    let mut n: i128 = 0;
    let mut significant = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if n != 0 || c != b'0' {
            significant += 1;
            if significant > 36 {
                return None;
            }
        }
        n = n * 10 + i128::from(c - b'0');
    }
    let n = if neg { -n } else { n };
    let ms = if e >= 0 {
        n.checked_mul(10i128.checked_pow(e as u32)?)?
    } else if -e > 36 {
        if n < 0 {
            -1
        } else {
            0
        }
    } else {
        n.div_euclid(10i128.pow((-e) as u32))
    };
    i64::try_from(ms).ok()
}

/// [`epoch_ms`] of a number's text, from the digits the scan read where they are exact (at
/// most 18, no sign, no exponent: the usual epoch value).
#[inline]
fn num_epoch_ms(n: &Num<'_>, shift: i32) -> Option<i64> {
    if n.neg || n.exp || n.digits > 18 {
        return epoch_ms(n.text, shift);
    }
    // value_ms = digits * 10^(shift - fraction digits), truncated (it is not negative).
    let e = shift - n.frac as i32;
    let ms = if e >= 0 {
        n.m.checked_mul(10u64.checked_pow(e as u32)?)?
    } else {
        n.m / 10u64.checked_pow((-e) as u32).unwrap_or(u64::MAX)
    };
    i64::try_from(ms).ok()
}

/// A time written with a strftime pattern, as epoch ms. In a named zone, a local time that
/// occurs twice (clocks set back) is the first, and one that does not occur (clocks set
/// forward) is read with the offset before the change, as java.time (and so Spark) read them.
fn pattern_ms(s: &str, pattern: &str, zoned: bool, zone: &Zone) -> Option<i64> {
    use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
    if zoned {
        return DateTime::parse_from_str(s, pattern)
            .ok()
            .map(|t| t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(s, pattern).ok().or_else(|| {
        NaiveDate::parse_from_str(s, pattern)
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    let offset_s = match zone {
        Zone::Fixed(s) => *s,
        Zone::Named(tz) => match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Some(t.timestamp_millis())
            }
            LocalResult::None => {
                // In a gap: the offset in force just before it (gaps are hours long).
                let before = naive.checked_sub_signed(chrono::TimeDelta::hours(6))?;
                let t = tz.from_local_datetime(&before).earliest()?;
                chrono::Offset::fix(t.offset()).local_minus_utc()
            }
        },
    };
    Some(naive.and_utc().timestamp_millis() - i64::from(offset_s) * 1000)
}
