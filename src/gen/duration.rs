//! Human durations for the generator's flags: `500ms`, `90s`, `5m`, `2h`, `1d`, and sums such
//! as `1m30s`. A unit is required (a bare `90` is ambiguous).

use std::time::Duration;

/// Parses a duration such as `500ms`, `90s`, `5m`, `2h`, `1d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. 500ms, 90s, 5m, 2h".into());
    }
    let bytes = s.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(format!(
                "invalid duration `{text}`: expected a number at `{}`",
                &s[digits_start..]
            ));
        }
        let number: u64 = s[digits_start..i]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u64 = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit (ms, s, m, h or d)"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (ms, s, m, h or d)"
                ))
            }
        };
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration `{text}`: too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("90s"), Ok(90_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms(" 10s "), Ok(10_000));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "90",
            "5x",
            "m",
            "1.5s",
            "-5s",
            "5 m",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let msg = parse_duration("5x").expect_err("unknown unit");
        assert!(msg.contains("unknown unit `x`"), "{msg}");
    }
}
