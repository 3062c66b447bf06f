//! Event time: civil dates, RFC 3339 formatting and spec durations, for every layer above.
//!
//! Times are milliseconds since the Unix epoch, UTC, throughout the crate.

pub mod duration;
pub mod window;

use chrono::{DateTime, SecondsFormat};

/// RFC 3339 UTC with `Z`; milliseconds only when not zero (`2026-11-24T10:05:00Z`).
pub fn rfc3339(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let fmt = if ms.rem_euclid(1000) == 0 {
                SecondsFormat::Secs
            } else {
                SecondsFormat::Millis
            };
            t.to_rfc3339_opts(fmt, true)
        }
        None => ms.to_string(),
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian; Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `YYYY-MM-DD` for a day count since the epoch.
pub fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    write_padded(out, y.max(0) as u64, 4);
    out.push(b'-');
    write_padded(out, u64::from(m), 2);
    out.push(b'-');
    write_padded(out, u64::from(d), 2);
}

/// Appends `HH:MM:SS` for a millisecond-of-day value (the milliseconds are dropped).
pub fn write_time_of_day(out: &mut Vec<u8>, ms_of_day: i64) {
    let secs = ms_of_day / 1000;
    write_padded(out, (secs / 3600) as u64, 2);
    out.push(b':');
    write_padded(out, (secs / 60 % 60) as u64, 2);
    out.push(b':');
    write_padded(out, (secs % 60) as u64, 2);
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Appends an RFC 3339 timestamp for epoch milliseconds `ms`, shown in the zone
/// `offset_minutes` east of UTC (`Z` when 0). Milliseconds are written as `.mmm` unless
/// `omit_zero_millis` and they are zero.
pub fn write_rfc3339(out: &mut Vec<u8>, ms: i64, offset_minutes: i32, omit_zero_millis: bool) {
    let local = ms + i64::from(offset_minutes) * 60_000;
    let days = local.div_euclid(DAY_MS);
    let ms_of_day = local.rem_euclid(DAY_MS);
    write_date(out, days);
    out.push(b'T');
    write_time_of_day(out, ms_of_day);
    let millis = (ms_of_day % 1000) as u64;
    if !(omit_zero_millis && millis == 0) {
        out.push(b'.');
        write_padded(out, millis, 3);
    }
    if offset_minutes == 0 {
        out.push(b'Z');
    } else {
        out.push(if offset_minutes < 0 { b'-' } else { b'+' });
        let a = offset_minutes.unsigned_abs();
        write_padded(out, u64::from(a / 60), 2);
        out.push(b':');
        write_padded(out, u64::from(a % 60), 2);
    }
}

/// Appends `n` zero-padded to at least `width` digits.
#[inline]
pub fn write_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut m = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    for _ in (buf.len() - i)..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn timestamps_agree_with_chrono() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let mut x: i64 = -86_400_000 * 400;
        while x < 4_102_444_800_000 {
            let expect = DateTime::<Utc>::from_timestamp_millis(x)
                .expect("in range")
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(s(|o| write_rfc3339(o, x, 0, false)), expect);
            x += 7_919_999_937; // ~92 days and a prime number of ms
        }
        assert_eq!(
            s(|o| write_rfc3339(o, 1_795_514_400_000, 0, true)),
            "2026-11-24T10:00:00Z"
        );
        let with_offset = s(|o| write_rfc3339(o, 1_795_514_400_123, -330, false));
        assert_eq!(with_offset, "2026-11-24T04:30:00.123-05:30");
        let parsed = DateTime::parse_from_rfc3339(&with_offset).expect("valid");
        assert_eq!(parsed.timestamp_millis(), 1_795_514_400_123);
    }

    #[test]
    fn times_are_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_300_000), "2025-11-24T16:05:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
    }
}
