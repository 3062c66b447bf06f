//! The quantile sketch behind `percentile`, `percentiles` and `median`: DDSketch's
//! logarithmic buckets (Masson, Rim, Lee, VLDB 2019), written out here because the part
//! logflow needs is small and must merge to the same bits in any order.
//!
//! A positive value `x` falls into bucket `i = ⌈log_γ x⌉` with `γ = (1 + α) / (1 − α)`, so
//! `γ^(i−1) < x ≤ γ^i`; the bucket answers `2γ^i / (γ + 1)`, which is within a relative
//! error [`ALPHA`] of every value in it. Negative values go to a mirrored store, zeros to a
//! counter. Bucket counts are integers, so a merge is an exact sum and the sketch of a
//! multiset is the same whatever the order of its values and partial merges.
//!
//! Memory is bounded: a store keeps at most [`MAX_BUCKETS`] buckets, the highest ones; the
//! counts of lower buckets are folded into the lowest kept one (values that small answer
//! with that bucket's value). The fold depends only on the highest index ever seen, so it is
//! order-independent too. With α = 1%, 2048 buckets span a factor of 6·10^17 (from 1 ns to
//! 19 years, say), so typical data never folds.

use serde::{Deserialize, Serialize};

/// The relative error of every quantile the sketch answers (unless buckets were folded).
pub const ALPHA: f64 = 0.01;
/// `(1 + α) / (1 − α)`: the ratio between bucket bounds.
const GAMMA: f64 = (1.0 + ALPHA) / (1.0 - ALPHA);
/// Buckets kept per sign.
pub const MAX_BUCKETS: usize = 2048;

/// A mergeable quantile sketch of finite numbers (NaN and infinities are not absorbed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    pos: Store,
    /// Negative values, by the bucket of their magnitude.
    neg: Store,
    zeros: u64,
}

/// Counts of consecutive bucket indices from `offset`.
///
/// Serialized as its non-empty buckets: a worker's partial of one batch fills a few of the
/// hundreds of buckets a window's sketch spans, and partials cross workers and go into
/// checkpoints. Read back through [`Store::add`], so a damaged list cannot make a store
/// larger than its bound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Buckets", from = "Buckets")]
struct Store {
    offset: i32,
    counts: Vec<u64>,
}

/// (bucket index, count) of the non-empty buckets of a [`Store`].
#[derive(Serialize, Deserialize)]
struct Buckets(Vec<(i32, u64)>);

impl From<Store> for Buckets {
    fn from(s: Store) -> Buckets {
        Buckets(s.buckets().collect())
    }
}

impl From<Buckets> for Store {
    fn from(b: Buckets) -> Store {
        let mut s = Store::default();
        for (i, n) in b.0 {
            if n > 0 {
                s.add(i.clamp(-MAX_INDEX, MAX_INDEX), n);
            }
        }
        s
    }
}

/// Beyond the index of any positive finite double (|ln x| < 745, ln γ ≈ 0.02).
const MAX_INDEX: i32 = 40_000;

fn ln_gamma() -> f64 {
    GAMMA.ln()
}

/// The bucket of a positive finite `x`: `γ^(i−1) < x ≤ γ^i` (to the rounding of `ln`).
fn index(x: f64) -> i32 {
    // |ln x| ≤ 745 for every positive finite double, so |i| < 40,000.
    (x.ln() / ln_gamma()).ceil() as i32
}

/// What bucket `i` answers: within α of every value in `(γ^(i−1), γ^i]`.
fn bucket_value(i: i32) -> f64 {
    // The factor inside the exponent: the top bucket of f64::MAX stays finite.
    (f64::from(i) * ln_gamma() + (2.0 / (GAMMA + 1.0)).ln())
        .exp()
        .min(f64::MAX)
}

impl Store {
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn top(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    fn add(&mut self, i: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(n);
            return;
        }
        if i > self.top() {
            // Fold what falls below the new lowest bucket first: the store never spans more
            // than MAX_BUCKETS, however far `i` is.
            let floor = i - (MAX_BUCKETS as i32 - 1);
            if floor > self.offset {
                let below = ((floor - self.offset) as usize).min(self.counts.len());
                let low: u64 = self.counts.drain(..below).sum();
                if self.counts.is_empty() {
                    self.counts.push(0);
                }
                self.counts[0] += low;
                self.offset = floor;
            }
            self.counts.resize((i - self.offset + 1) as usize, 0);
        } else if i < self.offset {
            let floor = self.top() - (MAX_BUCKETS as i32 - 1);
            let i = i.max(floor);
            if i < self.offset {
                let grow = (self.offset - i) as usize;
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.offset = i;
            }
            let at = (i - self.offset) as usize;
            self.counts[at] += n;
            return;
        }
        let at = (i - self.offset) as usize;
        self.counts[at] += n;
        self.fold();
    }

    /// Folds the buckets below the lowest of the [`MAX_BUCKETS`] highest into it.
    fn fold(&mut self) {
        let excess = self.counts.len().saturating_sub(MAX_BUCKETS);
        if excess > 0 {
            let low: u64 = self.counts.drain(..excess).sum();
            self.counts[0] += low;
            self.offset += excess as i32;
        }
    }

    fn merge(&mut self, other: &Store) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        let lo = self.offset.min(other.offset);
        let hi = self.top().max(other.top());
        let mut counts = vec![0u64; (hi - lo + 1) as usize];
        for s in [&*self, other] {
            for (j, c) in s.counts.iter().enumerate() {
                counts[(s.offset - lo) as usize + j] += c;
            }
        }
        self.offset = lo;
        self.counts = counts;
        self.fold();
    }

    /// (bucket index, count) from the lowest bucket up.
    fn buckets(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(j, c)| (self.offset + j as i32, *c))
    }
}

impl Sketch {
    /// Absorbs one value; false (and nothing absorbed) for NaN and infinities.
    #[inline]
    pub fn add(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if x > 0.0 {
            self.pos.add(index(x), 1);
        } else if x < 0.0 {
            self.neg.add(index(-x), 1);
        } else {
            self.zeros += 1;
        }
        true
    }

    /// How many values were absorbed.
    pub fn count(&self) -> u64 {
        self.pos.total() + self.neg.total() + self.zeros
    }

    /// Adds another sketch's counts (exact: the same sketch in any order).
    pub fn merge(&mut self, other: &Sketch) {
        self.pos.merge(&other.pos);
        self.neg.merge(&other.neg);
        self.zeros += other.zeros;
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`): within [`ALPHA`] (relative) of the value of rank
    /// [`rank`]`(q, n)` among the `n` values absorbed, in ascending order; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let r = rank(q, n);
        let mut seen = 0u64;
        // Ascending: the largest negative magnitudes first, then zeros, then positives.
        for (i, c) in self.neg.buckets().rev() {
            seen += c;
            if seen > r {
                return Some(-bucket_value(i));
            }
        }
        seen += self.zeros;
        if seen > r {
            return Some(0.0);
        }
        for (i, c) in self.pos.buckets() {
            seen += c;
            if seen > r {
                return Some(bucket_value(i));
            }
        }
        // Unreachable: r < n; the largest value answers.
        self.pos
            .buckets()
            .next_back()
            .map(|(i, _)| bucket_value(i))
            .or(Some(0.0))
    }
}

/// The 0-based rank the `q`-quantile of `n` values answers: `⌊q·(n − 1)⌋`, the lower of the
/// two values around the exact position (no interpolation, so the answer is one of the
/// values, as Spark's `percentile_approx` answers).
pub fn rank(q: f64, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    ((q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64).min(n - 1)
}

/// The exact `q`-quantile of `values` (sorted in place by IEEE total order): the value of
/// [`rank`]`(q, n)`; `None` when empty.
pub fn exact_quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    Some(values[rank(q, values.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::test_util::Rng;

    fn within(exact: f64, got: f64) -> bool {
        // α, and a hair for the rounding of `ln` and `exp` at bucket bounds.
        (got - exact).abs() <= ALPHA * (1.0 + 1e-9) * exact.abs()
    }

    const QS: [f64; 9] = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];

    /// Skewed data over nine orders of magnitude, negatives and zeros: every quantile is
    /// within α of the exact value of its rank.
    #[test]
    fn quantiles_are_within_alpha_of_the_exact_rank() {
        let mut rng = Rng(7);
        for n in [1usize, 2, 3, 10, 101, 1000, 20_000] {
            let mut values: Vec<f64> = (0..n)
                .map(|_| {
                    let mag = 10f64.powf(rng.below(9_000) as f64 / 1000.0 - 4.0);
                    match rng.below(10) {
                        0 => 0.0,
                        1 | 2 => -mag,
                        _ => mag,
                    }
                })
                .collect();
            let mut s = Sketch::default();
            for v in &values {
                assert!(s.add(*v));
            }
            assert_eq!(s.count(), n as u64);
            for q in QS {
                let exact = exact_quantile(&mut values, q).unwrap();
                let got = s.quantile(q).unwrap();
                assert!(within(exact, got), "n={n} q={q}: {got} vs exact {exact}");
            }
        }
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    /// Any split into partials, merged in any order, gives the same sketch (so the same bits).
    #[test]
    fn merges_in_any_order_give_the_same_sketch() {
        let mut rng = Rng(3);
        let values: Vec<f64> = (0..5000)
            .map(|_| (rng.below(1_000_000) as f64 + 1.0) / 1000.0 - 100.0)
            .collect();
        let mut whole = Sketch::default();
        values.iter().for_each(|v| {
            whole.add(*v);
        });
        for parts in [2, 3, 7, 50] {
            let mut partials: Vec<Sketch> = (0..parts).map(|_| Sketch::default()).collect();
            for v in &values {
                partials[rng.below(parts)].add(*v);
            }
            rng.shuffle(&mut partials);
            let mut merged = Sketch::default();
            for p in &partials {
                merged.merge(p);
            }
            assert_eq!(merged, whole, "{parts} partials");
        }
    }

    /// A store keeps at most MAX_BUCKETS buckets; the fold into the lowest kept one is the same
    /// for every order of values and merges, and the high quantiles keep their guarantee.
    #[test]
    fn folding_is_bounded_and_order_independent() {
        let mut rng = Rng(5);
        let mut values: Vec<f64> = (0..20_000)
            .map(|_| 10f64.powf(rng.below(60_000) as f64 / 100.0 - 300.0))
            .collect();
        let mut a = Sketch::default();
        values.iter().for_each(|v| {
            a.add(*v);
        });
        assert!(a.pos.counts.len() <= MAX_BUCKETS);
        rng.shuffle(&mut values);
        let (mut b1, mut b2) = (Sketch::default(), Sketch::default());
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 0 { &mut b1 } else { &mut b2 }.add(*v);
        }
        b2.merge(&b1);
        assert_eq!(a, b2);
        let exact = exact_quantile(&mut values, 0.99).unwrap();
        assert!(within(exact, a.quantile(0.99).unwrap()));
    }

    /// Serialized as non-empty buckets and read back to the same store; a damaged list of any
    /// indices stays within the bucket bound.
    #[test]
    fn serialization_is_sparse_and_bounded() {
        let mut s = Sketch::default();
        for x in [0.001, 0.5, 0.5, 2.0, 1e6, -3.0, 0.0] {
            s.add(x);
        }
        let bytes = bincode::serialize(&s).unwrap();
        assert!(bytes.len() < 150, "{} bytes", bytes.len());
        let back: Sketch = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, s);
        let wild = Buckets(vec![(i32::MAX, 1), (i32::MIN, 2), (0, 3), (-5, 0)]);
        let store = Store::from(wild);
        assert!(store.counts.len() <= MAX_BUCKETS);
        assert_eq!(store.total(), 6);
    }

    #[test]
    fn non_finite_values_are_not_absorbed() {
        let mut s = Sketch::default();
        assert!(!s.add(f64::NAN));
        assert!(!s.add(f64::INFINITY));
        assert!(s.add(f64::MIN_POSITIVE / 4.0));
        assert!(s.add(f64::MAX));
        assert_eq!(s.count(), 2);
        assert!(within(f64::MAX, s.quantile(1.0).unwrap()));
    }

    #[test]
    fn ranks() {
        assert_eq!(rank(0.5, 1), 0);
        assert_eq!(rank(0.5, 4), 1);
        assert_eq!(rank(0.99, 100), 98);
        assert_eq!(rank(1.0, 100), 99);
        assert_eq!(rank(2.0, 10), 9);
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert_eq!(exact_quantile(&mut v, 0.5), Some(2.0));
        assert_eq!(exact_quantile(&mut [], 0.5), None);
    }
}
