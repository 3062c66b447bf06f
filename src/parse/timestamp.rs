//! Timestamp parsing without allocation: RFC 3339 strings, and the bracketed time of access
//! logs (`17/May/2015:10:05:03 +0000`). Both return milliseconds since the epoch, UTC.

use std::cell::Cell;

use crate::time::days_from_civil;

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Milliseconds for a validated date and time, minus a zone offset in minutes.
fn to_ms(
    (y, mo, d): (i64, u32, u32),
    (h, mi, s, ms): (u32, u32, u32, u32),
    offset_min: i64,
) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59
    {
        return None;
    }
    let secs =
        days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64 - offset_min * 60;
    let total = secs * 1000 + ms as i64;
    (total >= 0).then_some(total)
}

/// Parses an RFC 3339 timestamp (`2026-11-24T10:05:00Z`, `2026-11-24T10:05:00.123+02:00`;
/// `t`/`z` and a space separator accepted; fractions of any length truncated to ms) into
/// epoch milliseconds. `None` for anything else, for impossible dates, leap seconds and times
/// before 1970.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_rfc3339_bytes(s.as_bytes())
}

/// [`parse_rfc3339`] of the bytes of a string.
#[inline]
pub fn parse_rfc3339_bytes(b: &[u8]) -> Option<i64> {
    usual_rfc3339(b).or_else(|| general_rfc3339(b))
}

/// The usual timestamp of a stream, `yyyy-mm-ddTHH:MM:SS.mmmZ` on the date of the last one
/// parsed on this thread (see `LAST_DATE`), its time read with word arithmetic. `None` for
/// any other (then the general parse decides: this one only answers where it agrees).
#[inline(always)]
pub(super) fn usual_rfc3339(b: &[u8]) -> Option<i64> {
    const HI: u64 = 0x8080_8080_8080_8080;
    let b: &[u8; 24] = b.try_into().ok()?;
    let (last, days) = LAST_DATE.with(Cell::get);
    // The cached date is valid once set (the initial zeros have no `-`).
    if b[..10] != last || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    // A word minus its pattern: digits give bytes 0 to 9, separators 0. A byte below its
    // pattern borrows and wraps (high bit set); adding `room` sets the high bit of a digit
    // above 9 or a separator above its own (bytes below 0x80 do not carry into the next).
    let fields = |w: &[u8], pattern: &[u8; 8], room: [u8; 8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a).wrapping_sub(u64::from_le_bytes(*pattern));
        ((x | x.wrapping_add(u64::from_le_bytes(room))) & HI == 0).then(|| x.to_le_bytes())
    };
    const D: u8 = 0x76;
    const S: u8 = 0x7f;
    let t = fields(&b[11..19], b"00:00:00", [D, D, S, D, D, S, D, D])?;
    let f = fields(&b[16..24], b":00.000Z", [S, D, D, S, D, D, D, S])?;
    let two = |hi: u8, lo: u8| u32::from(hi) * 10 + u32::from(lo);
    let (h, mi, sec) = (two(t[0], t[1]), two(t[3], t[4]), two(t[6], t[7]));
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let ms = two(f[4], f[5]) * 10 + u32::from(f[6]);
    // As `finish_rfc3339`.
    let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64;
    let total = secs * 1000 + ms as i64;
    (total >= 0).then_some(total)
}

/// [`parse_rfc3339_bytes`] of any form.
fn general_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Records of a stream mostly share their date: the last valid one and its day number are
    // kept per thread, so the usual timestamp skips the date's parse and checks.
    let mut date = [0u8; 10];
    date.copy_from_slice(&b[..10]);
    let (y, mo, d) = match LAST_DATE.with(Cell::get) {
        (last, days) if last == date => {
            let (h, mi, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
            return finish_rfc3339(b, days, (h, mi, sec));
        }
        _ => (digits(b, 0, 4)? as i64, digits(b, 5, 2)?, digits(b, 8, 2)?),
    };
    let (h, mi, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    LAST_DATE.with(|c| c.set((date, days)));
    finish_rfc3339(b, days, (h, mi, sec))
}

thread_local! {
    /// The date part (`yyyy-mm-dd`, valid) of the last RFC 3339 timestamp parsed on this
    /// thread and its day number.
    static LAST_DATE: Cell<([u8; 10], i64)> = const { Cell::new(([0; 10], 0)) };
}

/// The rest of an RFC 3339 timestamp whose (valid) date is day `days` since the epoch.
#[inline]
fn finish_rfc3339(b: &[u8], days: i64, (h, mi, sec): (u32, u32, u32)) -> Option<i64> {
    // The usual form, `.mmmZ`, first.
    if let &[b'.', m0, m1, m2, b'Z'] = &b[19..] {
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        let ms = digits(&[m0, m1, m2], 0, 3)?;
        let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64;
        let total = secs * 1000 + ms as i64;
        return (total >= 0).then_some(total);
    }
    let mut i = 19;
    let mut ms = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        &sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (digits(b, i + 1, 2)? as i64, digits(b, i + 4, 2)? as i64);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // As `to_ms`, the date already checked.
    let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64 - offset * 60;
    let total = secs * 1000 + ms as i64;
    (total >= 0).then_some(total)
}

/// Parses an access-log time `dd/Mon/yyyy:HH:MM:SS +hhmm` (without brackets) into epoch ms.
pub fn parse_access_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let d = digits(b, 0, 2)?;
    let mo = match &b[3..6] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let y = digits(b, 7, 4)? as i64;
    let (h, mi, sec) = (digits(b, 12, 2)?, digits(b, 15, 2)?, digits(b, 18, 2)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (digits(b, 22, 2)? as i64, digits(b, 24, 2)? as i64);
    if oh > 23 || om > 59 {
        return None;
    }
    to_ms((y, mo, d), (h, mi, sec, 0), sign * (oh * 60 + om))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-24T10:05:00Z"),
            Some(1_795_514_700_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T10:05:00.123Z"),
            Some(1_795_514_700_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T10:05:00.1Z"),
            Some(1_795_514_700_100)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T10:05:00.123456789Z"),
            Some(1_795_514_700_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T12:05:00+02:00"),
            Some(1_795_514_700_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24t10:05:00z"),
            Some(1_795_514_700_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24 10:05:00Z"),
            Some(1_795_514_700_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn rfc3339_rejects() {
        for bad in [
            "2026-11-24",
            "2026-11-24T10:05:00",
            "2026-11-24T10:05Z",
            "2026-02-30T10:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T10:60:00Z",
            "2026-11-24T10:05:60Z",
            "2026-11-24T10:05:00.Z",
            "2026-11-24T10:05:00Zjunk",
            "2026-11-24T10:05:00+0200",
            "1969-12-31T23:59:59Z",
            "24/Nov/2026:10:05:00 +0000",
            "",
            "yesterday at noon, roughly",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_agrees_with_chrono() {
        // A deterministic walk over 60 years with odd steps and offsets.
        let mut t: i64 = 3_600_000;
        let mut k = 0u64;
        while t < 1_900_000_000_000 {
            let offset_min = [0i32, 60, -300, 330, 765, -720][(k % 6) as usize];
            let tz = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let dt = DateTime::from_timestamp_millis(t)
                .unwrap()
                .with_timezone(&tz);
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, k % 2 == 0);
            assert_eq!(parse_rfc3339(&text), Some(t), "{text}");
            t += 7_919_111_113 + (k as i64 % 997);
            k += 1;
        }
    }

    #[test]
    fn the_usual_form_agrees_with_the_general_parse() {
        let mut rng = crate::gen::rng::Rng::new(17);
        let day = "2026-11-24";
        let bytes = b"0123456789:.TtZz -+/\x00\x7f\xff";
        for k in 0..200_000u64 {
            // Now and then a date other than the cached one, or the cache emptied.
            let date = match k % 1000 {
                0 => "2024-02-29",
                1 => "1970-01-01",
                _ => day,
            };
            if k % 1000 == 2 {
                LAST_DATE.with(|c| c.set(([0; 10], 0)));
            } else {
                assert!(general_rfc3339(format!("{date}T00:00:00Z").as_bytes()).is_some());
            }
            let mut t = format!(
                "{date}T{:02}:{:02}:{:02}.{:03}Z",
                rng.below(26),
                rng.below(62),
                rng.below(62),
                rng.below(1000)
            )
            .into_bytes();
            for _ in 0..rng.below(3) {
                let at = rng.below(t.len() as u64) as usize;
                t[at] = bytes[rng.below(bytes.len() as u64) as usize];
            }
            if let Some(v) = usual_rfc3339(&t) {
                assert_eq!(
                    Some(v),
                    general_rfc3339(&t),
                    "{:?}",
                    String::from_utf8_lossy(&t)
                );
            }
            assert_eq!(
                parse_rfc3339_bytes(&t),
                general_rfc3339(&t),
                "{:?}",
                String::from_utf8_lossy(&t)
            );
        }
        // Zeros never match the empty cache.
        LAST_DATE.with(|c| c.set(([0; 10], 0)));
        let mut t = [0u8; 24];
        t[10..].copy_from_slice(b"T10:00:00.000Z");
        assert_eq!(parse_rfc3339_bytes(&t), None);
        assert_eq!(
            parse_rfc3339("2026-11-24T10:05:00.250Z"),
            Some(1_795_514_700_250)
        );
        assert_eq!(
            usual_rfc3339(b"2026-11-24T10:05:00.250Z"),
            Some(1_795_514_700_250)
        );
    }

    #[test]
    fn access_log_time() {
        assert_eq!(
            parse_access_time("17/May/2015:10:05:03 +0000"),
            Some(1_431_857_103_000)
        );
        assert_eq!(
            parse_access_time("17/May/2015:12:05:03 +0200"),
            Some(1_431_857_103_000)
        );
        assert_eq!(
            parse_access_time("17/May/2015:05:05:03 -0500"),
            Some(1_431_857_103_000)
        );
        for bad in [
            "17/Foo/2015:10:05:03 +0000",
            "31/Apr/2015:10:05:03 +0000",
            "17/May/2015:10:05:03",
            "17/May/2015 10:05:03 +0000",
        ] {
            assert_eq!(parse_access_time(bad), None, "{bad}");
        }
    }
}
