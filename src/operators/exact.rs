//! Exact, mergeable floating-point sums.
//!
//! [`ExactSum`] keeps the *exact* sum of every value it absorbed as a Shewchuk expansion: a
//! short list of non-overlapping doubles of increasing magnitude whose (unrounded) sum is the
//! exact total (the `msum` algorithm behind Python's `math.fsum`). Absorbing or merging in any
//! order yields the same exact total, and [`ExactSum::value`] rounds it once, to nearest with
//! ties to even, so the result is a function of the multiset of values alone: bit-identical
//! whatever the order of events and of merges between workers.
//!
//! The expansion lives inline (four doubles) and only spills to the heap for sums spanning
//! more than about 4 × 53 bits, so the common case never allocates.
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Non-overlapping, increasing magnitude, no zeros; their exact sum is the total of all
    /// finite values below [`BIG`].
    parts: Parts,
    /// Infinities, NaN and huge values: rare, so boxed to keep the common state small.
    rare: Option<Box<Rare>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Rare {
    /// Expansion of the finite values with |x| >= 2^955, each times 2^-600.
    big: SmallVec<[f64; 2]>,
    pos_inf: bool,
    neg_inf: bool,
    nan: bool,
}

/// Components held inline: the sums of the usual values (response times in ms, their exact
/// squares) need two to five; five keep `Acc` within 128 bytes.
const INLINE: usize = 5;

/// The main expansion: up to [`INLINE`] components in place, more on the heap. Each value of
/// the hot path goes through [`Parts::grow`], which on the inline form is a short loop over a
/// fixed array (a `SmallVec` checked its spilled state on every access, push and truncate).
/// Serialized as a sequence of doubles, exactly as the `SmallVec` it replaced.
#[derive(Clone, Debug)]
enum Parts {
    Inline { len: u8, buf: [f64; INLINE] },
    Heap(Vec<f64>),
}

impl Default for Parts {
    fn default() -> Self {
        Parts::Inline {
            len: 0,
            buf: [0.0; INLINE],
        }
    }
}

impl PartialEq for Parts {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Parts {
    #[inline]
    fn as_slice(&self) -> &[f64] {
        match self {
            Parts::Inline { len, buf } => &buf[..usize::from(*len).min(INLINE)],
            Parts::Heap(v) => v,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn from_vec(v: Vec<f64>) -> Self {
        if v.len() <= INLINE {
            let mut buf = [0.0; INLINE];
            buf[..v.len()].copy_from_slice(&v);
            Parts::Inline {
                len: v.len() as u8,
                buf,
            }
        } else {
            Parts::Heap(v)
        }
    }

    /// Adds `x` exactly: [`grow_pass`], then the carry kept inline while there is room.
    #[inline(always)]
    fn grow(&mut self, x: f64) {
        let Parts::Inline { len, buf } = self else {
            if let Parts::Heap(v) = self {
                grow_vec(v, x);
            }
            return;
        };
        let n = usize::from(*len).min(INLINE);
        let (mut i, x) = grow_pass(&mut buf[..n], x);
        if x != 0.0 {
            if i == INLINE {
                let mut v = buf.to_vec();
                v.push(x);
                *self = Parts::Heap(v);
                return;
            }
            buf[i] = x;
            i += 1;
        }
        *len = i as u8;
    }
}

impl Serialize for Parts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<f64>::deserialize(d).map(Parts::from_vec)
    }
}

/// [`grow`] on a vector (an expansion past [`INLINE`] components).
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
        if x.abs() < BIG {
            self.parts.grow(x)
        } else {
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
        } else {
            grow(&mut r.big, x * DOWN)
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
        if self.parts.is_empty() {
            self.parts = other.parts;
        } else {
            for &c in other.parts.as_slice() {
                self.parts.grow(c);
            }
        }
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
                }
            }
        }
    }

    /// Whether only finite values below 2^955 were absorbed (the expansion is the whole sum).
    pub fn is_plain(&self) -> bool {
        self.rare.is_none()
    }

    /// The components of the exact sum of the plain values (see [`ExactSum::is_plain`]).
    pub fn parts(&self) -> &[f64] {
        self.parts.as_slice()
    }

    /// The exact total, rounded once to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        let Some(r) = &self.rare else {
            return round(self.parts.as_slice());
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
            return round(self.parts.as_slice());
        }
        let big = round(&r.big);
        if big.abs() < pow2(420) {
            // Every component scaled back stays below 2^1021: one exact expansion, one rounding.
            let mut all = self.parts.clone();
            for &c in &r.big {
                all.grow(c * UP);
            }
            round(all.as_slice())
        } else {
            big * UP + round(self.parts.as_slice())
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

    /// The inline expansion serializes as the `SmallVec` it replaced did (partials cross
    /// workers and go into checkpoints), and spills past the inline components exactly.
    #[test]
    fn parts_serialize_as_a_sequence_and_spill_exactly() {
        #[derive(Serialize)]
        struct Old {
            parts: SmallVec<[f64; 4]>,
            rare: Option<Box<Rare>>,
        }
        let mut s = ExactSum::default();
        let mut all = Vec::new();
        let xs = [
            1.0, 1e-30, 1e30, 1e-60, 1e60, 0.1, 1e90, -1e-90, 1e120, 1e-120, 0.3,
        ];
        for (k, x) in xs.iter().enumerate() {
            s.add(*x);
            all.push(*x);
            let old = Old {
                parts: SmallVec::from_slice(s.parts()),
                rare: None,
            };
            let bytes = bincode::serialize(&s).unwrap_or_default();
            assert_eq!(bytes, bincode::serialize(&old).unwrap_or_default(), "{k}");
            let back: ExactSum = bincode::deserialize(&bytes).unwrap_or_default();
            assert_eq!(back, s);
            assert_eq!(back.value(), s.value());
        }
        assert!(s.parts().len() > INLINE, "spilled: {:?}", s.parts());
        // The exact total: the same whatever the order of the values.
        let mut r = ExactSum::default();
        all.iter().rev().for_each(|&x| r.add(x));
        assert_eq!(r.value(), s.value());
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
