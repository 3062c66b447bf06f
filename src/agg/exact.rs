//! Exact, mergeable floating-point sums.
//!
//! [`ExactSum`] keeps the *exact* sum of every value it absorbed as a Shewchuk expansion: a
//! short list of non-overlapping doubles of increasing magnitude whose (unrounded) sum is the
//! exact total (the `msum` algorithm behind Python's `math.fsum`). Absorbing or merging in any
//! order yields the same exact total, and [`ExactSum::value`] rounds it once, to nearest with
//! ties to even, so the result is a function of the multiset of values alone: bit-identical
//! whatever the order of events and of merges between workers.
//!
//! The usual values (`2^-108 <= |x| < 2^40`: response times, their squares and the rounding
//! errors of those squares) are summed exactly in a 256-bit fixed-point integer: an add is a
//! shift and two 128-bit adds with carry, a merge one four-limb add, and nothing allocates.
//! Values outside that range go to an expansion kept aside; the two are combined, exactly,
//! only when the total is read, compared or serialized (as the expansion of the whole).
//!
//! Special values follow IEEE sum semantics, independently of order: any NaN, or both +∞ and
//! −∞, give NaN; otherwise any ±∞ gives that infinity; a finite exact total beyond the double
//! range rounds to ±∞. A zero total is +0.0 (as the previous `0.0 + x + …` accumulation gave).
//!
//! Finite values of magnitude at least 2^955 (≈ 2.4e287) go to a second, scaled expansion so
//! the main one can never overflow in an intermediate step (n < 2^64 values below 2^955 sum to
//! below 2^1019). The combined total is still rounded once unless it exceeds 2^1020, where it
//! may be rounded twice (still deterministic).

use serde::{Deserialize, Serialize};
use smallvec::{Array, SmallVec};

/// 2^e for a normal exponent.
const fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Values at least this large go to the scaled expansion.
const BIG: f64 = pow2(955);
/// Scale of the big expansion: big values are stored times 2^-600 (exact: they stay normal).
const DOWN: f64 = pow2(-600);
const UP: f64 = pow2(600);

/// The exact sum of a multiset of doubles.
#[derive(Clone, Debug, Default)]
pub struct ExactSum {
    /// The exact sum of the values in the fixed range (`2^-108 <= |x| < 2^40`), times
    /// 2^[`FRAC`], as a 256-bit two's complement integer (least significant limb first).
    fixed: [u64; 4],
    /// Everything else: rare, so boxed to keep the common state small.
    rare: Option<Box<Rare>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Rare {
    /// Expansion of the finite values with |x| >= 2^955, each times 2^-600.
    big: SmallVec<[f64; 2]>,
    pos_inf: bool,
    neg_inf: bool,
    nan: bool,
    /// Expansion of the other finite values outside the fixed range (never serialized as
    /// such: [`ExactSum`]'s wire form holds them in its expansion).
    #[serde(skip)]
    small: Vec<f64>,
}

impl Rare {
    /// Holds something the expansion of the plain values cannot (see [`ExactSum::is_plain`]).
    fn special(&self) -> bool {
        self.nan || self.pos_inf || self.neg_inf || !self.big.is_empty()
    }
}

/// The fixed range's unit is 2^-FRAC: a double `m · 2^e` (`m` its 53-bit significand) lands at
/// bit `e + FRAC`. Values from 2^-108 (bit 0) to below 2^40 (bits up to 147 + 52 = 199) go
/// there; 2^55 of the largest still sum to below 2^95, the 256-bit integer's sign bit.
const FRAC: i64 = 160;
const FIXED_MAX_POS: i64 = 147;

/// The wire form: the expansion of every plain value, and the special values (as the
/// expansion-only state before it serialized).
/// Written from a borrowed `Rare` (its `small` is never serialized), read into a boxed one.
#[derive(Serialize, Deserialize)]
struct Wire<R> {
    parts: Vec<f64>,
    rare: Option<R>,
}

impl Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            parts: self.parts().to_vec(),
            rare: self.rare.as_deref().filter(|r| r.special()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExactSum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::<Box<Rare>>::deserialize(d)?;
        let mut sum = ExactSum {
            fixed: [0; 4],
            rare: w.rare,
        };
        // Each component is a double: added exactly, wherever it lands.
        for c in w.parts {
            sum.add(c);
        }
        Ok(sum)
    }
}

/// Equal exact totals and special values, whatever the representation.
impl PartialEq for ExactSum {
    fn eq(&self, other: &Self) -> bool {
        let specials = |r: &Option<Box<Rare>>| {
            r.as_ref()
                .map_or((false, false, false), |r| (r.pos_inf, r.neg_inf, r.nan))
        };
        fn big(r: &Option<Box<Rare>>) -> &[f64] {
            r.as_ref().map_or(&[], |r| &r.big[..])
        }
        specials(&self.rare) == specials(&other.rare)
            && cancels(&self.parts(), &other.parts())
            && cancels(big(&self.rare), big(&other.rare))
    }
}

/// Whether two expansions have the same exact sum: their difference, grown with zero
/// elimination, leaves no component.
fn cancels(a: &[f64], b: &[f64]) -> bool {
    let mut d: SmallVec<[f64; 8]> = SmallVec::new();
    a.iter().for_each(|&c| grow(&mut d, c));
    b.iter().for_each(|&c| grow(&mut d, -c));
    d.is_empty()
}

/// `a += b` on 256-bit two's complement integers.
#[inline(always)]
fn add256(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut carry = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, c1) = x.overflowing_add(y);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *x = s;
        carry = c1 | c2;
    }
}

/// `a -= b` on 256-bit two's complement integers.
#[inline(always)]
fn sub256(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, b1) = x.overflowing_sub(y);
        let (s, b2) = s.overflowing_sub(u64::from(borrow));
        *x = s;
        borrow = b1 | b2;
    }
}

/// [`grow`] on a vector.
fn grow_vec(parts: &mut Vec<f64>, x: f64) {
    let (i, x) = grow_pass(parts, x);
    parts.truncate(i);
    if x != 0.0 {
        parts.push(x);
    }
}

/// Adds `x` to the expansion exactly: Shewchuk's grow-expansion with zero elimination (as
/// `msum` in CPython's `math.fsum`). Knuth's branch-free two-sum instead of the sort-then-fast-
/// two-sum of `msum` gives the same (unique) `hi` and `lo` without unpredictable branches; only
/// the `hi` chain is sequential. Cannot overflow while every |partial sum| < 2^1022.
#[inline(always)]
fn grow<A: Array<Item = f64>>(parts: &mut SmallVec<A>, x: f64) {
    let (i, x) = grow_pass(parts.as_mut_slice(), x);
    parts.truncate(i);
    if x != 0.0 {
        parts.push(x);
    }
}

/// The one pass of [`grow`] over the components `p`: each becomes its two-sum's low part, the
/// zeros squeezed out in place. Returns how many components remain and the carry (the new
/// largest component, unless zero), which every form of the expansion stores its own way.
#[inline(always)]
fn grow_pass(p: &mut [f64], mut x: f64) -> (usize, f64) {
    let mut i = 0;
    for j in 0..p.len() {
        let y = p[j];
        let hi = x + y;
        let yv = hi - x;
        let lo = (x - (hi - yv)) + (y - yv);
        // i <= j: p[j] was read already. Zeros are overwritten by the next write.
        p[i] = lo;
        i += usize::from(lo != 0.0);
        x = hi;
    }
    (i, x)
}

/// The exact sum of a `grow`-built expansion, correctly rounded (to nearest, ties to even):
/// CPython's `math.fsum` final step.
fn round(p: &[f64]) -> f64 {
    let mut n = p.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = p[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = p[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    // The rest of the expansion breaks a tie `hi + lo` is exactly halfway through.
    if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if x - hi == y {
            hi = x;
        }
    }
    hi
}

impl ExactSum {
    /// Adds one value exactly.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        // Bit position of the significand's lowest bit in the fixed range (normal `x` only:
        // position >= 0 needs a biased exponent >= 915).
        let pos = ((bits >> 52) & 0x7ff) as i64 - (1075 - FRAC);
        if (0..=FIXED_MAX_POS).contains(&pos) {
            let m = (bits & ((1 << 52) - 1)) | (1 << 52);
            // The addend `m << pos` as two 128-bit halves: at most 53 bits wide, it straddles
            // at most the 64-bit boundary between them, so two 128-bit adds with one carry do
            // what four limbs and a dynamically indexed addend did.
            let v = u128::from(m) << (pos & 63);
            let (a_lo, a_hi) = match pos >> 6 {
                0 => (v, 0),
                1 => (v << 64, v >> 64),
                _ => (0, v),
            };
            let [f0, f1, f2, f3] = self.fixed;
            let lo = u128::from(f0) | u128::from(f1) << 64;
            let hi = u128::from(f2) | u128::from(f3) << 64;
            let (lo, hi) = if bits >> 63 == 0 {
                let (lo, c) = lo.overflowing_add(a_lo);
                (lo, hi.wrapping_add(a_hi).wrapping_add(u128::from(c)))
            } else {
                let (lo, b) = lo.overflowing_sub(a_lo);
                (lo, hi.wrapping_sub(a_hi).wrapping_sub(u128::from(b)))
            };
            self.fixed = [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64];
        } else if x != 0.0 {
            self.add_rare(x)
        }
    }

    #[cold]
    fn add_rare(&mut self, x: f64) {
        let r = self.rare.get_or_insert_with(Default::default);
        if x.is_nan() {
            r.nan = true
        } else if x == f64::INFINITY {
            r.pos_inf = true
        } else if x == f64::NEG_INFINITY {
            r.neg_inf = true
        } else if x.abs() >= BIG {
            grow(&mut r.big, x * DOWN)
        } else {
            grow_vec(&mut r.small, x)
        }
    }

    /// Adds an integer exactly (an `i64` beyond 2^53 is not a double: split it in two).
    #[inline]
    pub fn add_i64(&mut self, i: i64) {
        if i.unsigned_abs() <= 1 << 53 {
            self.add(i as f64)
        } else {
            self.add((i >> 32) as f64 * pow2(32));
            self.add((i & 0xFFFF_FFFF) as f64);
        }
    }

    /// Adds an integer exactly, as four exact 32-bit pieces.
    pub fn add_i128(&mut self, i: i128) {
        self.add((i >> 96) as f64 * pow2(96));
        self.add(((i >> 64) & 0xFFFF_FFFF) as f64 * pow2(64));
        self.add(((i >> 32) & 0xFFFF_FFFF) as f64 * pow2(32));
        self.add((i & 0xFFFF_FFFF) as f64);
    }

    /// Adds another exact sum (exactly).
    pub fn merge(&mut self, other: ExactSum) {
        add256(&mut self.fixed, &other.fixed);
        if let Some(o) = other.rare {
            match &mut self.rare {
                None => self.rare = Some(o),
                Some(r) => {
                    r.pos_inf |= o.pos_inf;
                    r.neg_inf |= o.neg_inf;
                    r.nan |= o.nan;
                    for c in o.big {
                        grow(&mut r.big, c);
                    }
                    for c in o.small {
                        grow_vec(&mut r.small, c);
                    }
                }
            }
        }
    }

    /// Takes away an exact sum absorbed earlier (a sliding window's slice leaving it), exactly:
    /// the result is the sum of what is left, to the bit. False, with `self` unchanged, when
    /// `other` holds a NaN or an infinity: flags cannot be taken away (the caller starts over).
    pub fn subtract(&mut self, other: &ExactSum) -> bool {
        let rare = other.rare.as_deref();
        if rare.is_some_and(|o| o.nan || o.pos_inf || o.neg_inf) {
            return false;
        }
        sub256(&mut self.fixed, &other.fixed);
        if let Some(o) = rare.filter(|o| !o.big.is_empty() || !o.small.is_empty()) {
            let r = self.rare.get_or_insert_with(Default::default);
            for &c in &o.big {
                grow(&mut r.big, -c);
            }
            for &c in &o.small {
                grow_vec(&mut r.small, -c);
            }
        }
        true
    }

    /// Whether only finite values below 2^955 were absorbed (the expansion is the whole sum).
    pub fn is_plain(&self) -> bool {
        self.rare.as_ref().is_none_or(|r| !r.special())
    }

    /// The exact sum of the plain values (see [`ExactSum::is_plain`]) as an expansion:
    /// non-overlapping doubles of increasing magnitude.
    pub fn parts(&self) -> SmallVec<[f64; 8]> {
        let mut e = SmallVec::new();
        let negative = self.fixed[3] >> 63 == 1;
        let mut mag = self.fixed;
        if negative {
            // |fixed| = -fixed (the total is far from -2^255, so this cannot overflow).
            mag = [0; 4];
            sub256(&mut mag, &self.fixed);
        }
        let sign = if negative { -1.0 } else { 1.0 };
        // 32-bit pieces are exact doubles; growing them makes the expansion canonical-length.
        for (j, piece) in mag
            .iter()
            .flat_map(|l| [*l as u32, (*l >> 32) as u32])
            .enumerate()
        {
            if piece != 0 {
                grow(
                    &mut e,
                    sign * f64::from(piece) * pow2(32 * j as i32 - FRAC as i32),
                );
            }
        }
        if let Some(r) = &self.rare {
            for &c in &r.small {
                grow(&mut e, c);
            }
        }
        e
    }

    /// The exact total, rounded once to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        let Some(r) = &self.rare else {
            return round(&self.parts());
        };
        if r.nan || (r.pos_inf && r.neg_inf) {
            return f64::NAN;
        }
        if r.pos_inf {
            return f64::INFINITY;
        }
        if r.neg_inf {
            return f64::NEG_INFINITY;
        }
        if r.big.is_empty() {
            return round(&self.parts());
        }
        let big = round(&r.big);
        if big.abs() < pow2(420) {
            // Every component scaled back stays below 2^1021: one exact expansion, one rounding.
            let mut all = self.parts();
            for &c in &r.big {
                grow(&mut all, c * UP);
            }
            round(&all)
        } else {
            big * UP + round(&self.parts())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(xs: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        xs.iter().for_each(|&x| s.add(x));
        s.value()
    }

    #[test]
    fn fsum_examples() {
        // CPython's math.fsum test cases.
        assert_eq!(sum(&[1e-16, 1.0, 1e16]), 10000000000000002.0);
        assert_eq!(sum(&[1.0, 1e100, 1.0, -1e100]), 2.0);
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_eq!(sum(&[1.0, -1e-16]), 0.9999999999999999);
        assert_eq!(
            sum(&[2.0_f64.powi(53), 1.0, 2.0_f64.powi(-60)]),
            9007199254740994.0
        );
        assert_eq!(
            sum(&[2.0_f64.powi(53), 1.0, -(2.0_f64.powi(-60))]),
            9007199254740992.0
        );
        assert_eq!(sum(&[]), 0.0);
        assert!(sum(&[-0.0, -0.0]).is_sign_positive());
        assert!(sum(&[1.0, -1.0]).is_sign_positive());
    }

    #[test]
    fn specials_follow_ieee() {
        let inf = f64::INFINITY;
        assert_eq!(sum(&[1.0, inf, 2.0]), inf);
        assert_eq!(sum(&[-inf, 1e308, 1e308]), -inf);
        assert!(sum(&[inf, 1.0, -inf]).is_nan());
        assert!(sum(&[1.0, f64::NAN]).is_nan());
        // No intermediate overflow, whatever the order; a total beyond the range is ±∞.
        for xs in [[1e308, 1e308, -1e308], [1e308, -1e308, 1e308]] {
            assert_eq!(sum(&xs), 1e308);
        }
        assert_eq!(sum(&[1e308, 1e308]), inf);
        assert_eq!(sum(&[-1e308, -1e308, 5.0]), -inf);
        assert_eq!(sum(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
        // Huge values cancelling leave the small ones exact.
        for xs in [[1e300, 1.5, -1e300], [1.5, -1e300, 1e300]] {
            assert_eq!(sum(&xs), 1.5);
        }
        assert_eq!(sum(&[1e300, 1e-300, 0.25, -1e300]), 0.25);
        // Subnormals are exact too.
        let tiny = f64::from_bits(1);
        assert_eq!(sum(&[tiny, tiny, 1.0, -1.0]), 2.0 * tiny);
    }

    /// The wire form is (the expansion of the plain values, the special ones), as the
    /// expansion-only state serialized (partials cross workers and go into checkpoints), and
    /// round-trips exactly, with values inside and outside the fixed range.
    #[test]
    fn serializes_as_an_expansion_and_round_trips_exactly() {
        #[derive(Serialize)]
        struct Old {
            parts: SmallVec<[f64; 4]>,
            rare: Option<Box<Rare>>,
        }
        let mut s = ExactSum::default();
        let mut all = Vec::new();
        let xs = [
            1.0, 1e-30, 1e30, 1e-60, 1e60, 0.1, 1e90, -1e-90, 1e120, 1e-120, 0.3, -7.25,
        ];
        for (k, x) in xs.iter().enumerate() {
            s.add(*x);
            all.push(*x);
            let old = Old {
                parts: SmallVec::from_slice(&s.parts()),
                rare: None,
            };
            let bytes = bincode::serialize(&s).unwrap_or_default();
            assert_eq!(bytes, bincode::serialize(&old).unwrap_or_default(), "{k}");
            let back: ExactSum = bincode::deserialize(&bytes).unwrap_or_default();
            assert_eq!(back, s);
            assert_eq!(back.value(), s.value());
        }
        // The exact total: the same whatever the order of the values.
        let mut r = ExactSum::default();
        all.iter().rev().for_each(|&x| r.add(x));
        assert_eq!(r.value(), s.value());
        assert_eq!(r, s);
        r.add(1e-300);
        assert_ne!(r, s);
    }

    /// Random values across the fixed range's edges (and far outside it), signs mixed, added
    /// and merged in random trees: the total equals the plain expansion's (Shewchuk's
    /// algorithm alone) exactly, and reads the same.
    #[test]
    fn fixed_range_agrees_with_the_plain_expansion() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for k in 0..200 {
            let n = 1 + (next() % 300) as usize;
            let xs: Vec<f64> = (0..n)
                .map(|_| {
                    let m = (next() >> 11) as f64 / (1u64 << 53) as f64 + 0.5;
                    let e = match next() % 4 {
                        0 => (next() % 40) as i32 - 20,
                        1 => -120 + (next() % 30) as i32, // across 2^-108
                        2 => 30 + (next() % 20) as i32,   // across 2^40
                        _ => (next() % 400) as i32 - 200,
                    };
                    let x = m * 2f64.powi(e);
                    if next() % 2 == 0 {
                        -x
                    } else {
                        x
                    }
                })
                .collect();
            let mut plain = Vec::new();
            xs.iter().for_each(|&x| grow_vec(&mut plain, x));
            let mut sums: Vec<ExactSum> = xs
                .chunks(1 + (next() % 7) as usize)
                .map(|c| {
                    let mut s = ExactSum::default();
                    c.iter().for_each(|&x| s.add(x));
                    s
                })
                .collect();
            while sums.len() > 1 {
                let i = (next() % sums.len() as u64) as usize;
                let a = sums.swap_remove(i);
                let j = (next() % sums.len() as u64) as usize;
                sums[j].merge(a);
            }
            let total = sums.pop().unwrap_or_default();
            assert!(cancels(&total.parts(), &plain), "round {k}");
            assert_eq!(
                total.value().to_bits(),
                round(&plain).to_bits(),
                "round {k}"
            );
        }
    }

    #[test]
    fn integers_are_exact() {
        let mut s = ExactSum::default();
        s.add_i64(i64::MAX);
        s.add_i64(i64::MIN);
        s.add_i64((1 << 60) + 1);
        assert_eq!(s.value(), (1_i64 << 60) as f64);
        let mut s = ExactSum::default();
        s.add_i128(i128::from(i64::MAX) * 3);
        s.add_i128(-i128::from(i64::MAX) * 3 + 7);
        assert_eq!(s.value(), 7.0);
    }
}
