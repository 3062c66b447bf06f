//! Allocation-free formatting into a reused byte buffer: integers and fixed-point decimals
//! (the generator writes millions of lines per second; timestamps are in [`crate::time`]).

use crate::time::write_padded;

/// Appends `n` in decimal.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `n` in decimal, signed.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

/// Appends `units / 10^decimals` as a fixed-point decimal, e.g. `(1234, 3)` -> `1.234`.
#[inline]
pub fn write_fixed(out: &mut Vec<u8>, units: u64, decimals: u32) {
    let scale = 10u64.pow(decimals);
    write_u64(out, units / scale);
    out.push(b'.');
    write_padded(out, units % scale, decimals as usize);
}

/// [`write_fixed`], in quotes when `quoted` (a number sent as a string: a wrong field type).
#[inline]
pub fn write_fixed_or_string(out: &mut Vec<u8>, units: u64, decimals: u32, quoted: bool) {
    if quoted {
        out.push(b'"');
    }
    write_fixed(out, units, decimals);
    if quoted {
        out.push(b'"');
    }
}

/// Appends `n` as lowercase hex, exactly `digits` digits (low digits of `n`).
#[inline]
pub fn write_hex(out: &mut Vec<u8>, n: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(HEX[((n >> (4 * k)) & 0xf) as usize]);
    }
}

/// Short English month names, for access-log style times.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| write_u64(o, 0)), "0");
        assert_eq!(s(|o| write_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| write_i64(o, -42)), "-42");
        assert_eq!(s(|o| write_i64(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(s(|o| write_padded(o, 7, 4)), "0007");
        assert_eq!(s(|o| write_padded(o, 12345, 4)), "12345");
        assert_eq!(s(|o| write_fixed(o, 45, 3)), "0.045");
        assert_eq!(s(|o| write_fixed(o, 12345, 2)), "123.45");
        assert_eq!(s(|o| write_hex(o, 0xabc, 6)), "000abc");
    }
}
