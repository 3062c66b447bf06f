//! Aggregate functions as mergeable accumulators.
//!
//! Every accumulator can absorb events ([`AccSpec::update`]), merge with a partial from another
//! worker ([`Acc::merge`]) and produce its SQL result ([`Acc::finish`]): that is what lets each
//! worker pre-aggregate its batch and exchange small partials instead of events.
//!
//! `sum`, `avg` and `stddev` are order-independent: their float state is an exact sum
//! ([`ExactSum`]) rounded once at the end, so a result depends only on the multiset of values,
//! never on how events were spread over workers and processes or in which order partials
//! merged. Bit-identical output for every layout relies on that.

use serde::{Deserialize, Serialize};

use crate::agg::exact::ExactSum;
use crate::agg::hll::{self, Hll};
use crate::agg::sketch::{exact_quantile, Sketch};
use crate::agg::top_k::TopK;
use crate::agg::value_set::ValueSet;
use crate::record::value::float_key;
use crate::record::{Event, Value, ValueRef};
use crate::spec::expr::{compare_number, Expr};
use crate::spec::plan::{AccSpec, AggFunc, Quantiles};

impl AccSpec {
    /// An empty accumulator for this aggregate.
    pub fn new_state(&self) -> Acc {
        match &self.func {
            AggFunc::Count | AggFunc::CountNonNull | AggFunc::CountIf => Acc::Count(0),
            AggFunc::Sum => Acc::Sum {
                int: 0,
                float: ExactSum::default(),
                is_float: false,
                n: 0,
            },
            AggFunc::Avg => Acc::Avg {
                sum: ExactSum::default(),
                n: 0,
            },
            AggFunc::Min => Acc::Min(Value::Null),
            AggFunc::Max => Acc::Max(Value::Null),
            AggFunc::Stddev => Acc::Moments {
                n: 0,
                sum: ExactSum::default(),
                sumsq: ExactSum::default(),
                approx: false,
            },
            AggFunc::CountDistinct => Acc::Distinct(ValueSet::default()),
            AggFunc::CollectSet => Acc::Set(ValueSet::default()),
            AggFunc::CollectList => Acc::List(Vec::new()),
            AggFunc::Percentile(qs) => Acc::Sketch(Box::default(), qs.clone()),
            AggFunc::PercentileExact(qs) => Acc::Sorted(Vec::new(), qs.clone()),
            AggFunc::ApproxCountDistinct => Acc::Hll(Hll::default()),
            AggFunc::TopK(k) => Acc::TopK(TopK::default(), *k),
        }
    }

    /// Folds one event into `acc` (which must come from [`AccSpec::new_state`]).
    #[inline]
    pub fn update(&self, acc: &mut Acc, event: &Event) {
        match (&self.func, acc) {
            (AggFunc::Count, Acc::Count(n)) => *n += 1,
            (AggFunc::CountIf, Acc::Count(n)) => {
                let hit = match &self.arg {
                    // `field OP number`, the usual condition, decided here as `Expr::test`
                    // decides it (without its general dispatch); NaN goes to `test`.
                    Some(c @ Expr::Binary(op, a, b)) => match (a.as_ref(), b.as_ref()) {
                        (Expr::Field(f), Expr::Lit(lit)) => {
                            compare_number(event.get(*f), *op, lit).unwrap_or_else(|| c.test(event))
                        }
                        _ => c.test(event),
                    },
                    Some(c) => c.test(event),
                    None => false,
                };
                if hit {
                    *n += 1
                }
            }
            (_, Acc::Hll(h)) => match &self.arg {
                // Hashed by reference: nothing is copied.
                Some(Expr::Field(f)) => {
                    let r = event.get(*f);
                    if !r.is_null() {
                        h.add_hash(hll::hash(r));
                    }
                }
                Some(e) => {
                    let v = e.eval(event);
                    if !v.is_null() {
                        h.add_hash(hll::hash_value(&v));
                    }
                }
                None => {}
            },
            (_, Acc::Distinct(set) | Acc::Set(set)) => {
                // Tested by reference: the field is copied only when it is new to the set.
                match &self.arg {
                    Some(Expr::Field(f)) => {
                        let r = event.get(*f);
                        if !r.is_null() {
                            set.insert_ref(r);
                        }
                    }
                    Some(e) => {
                        let v = e.eval(event);
                        if !v.is_null() {
                            set.insert(v);
                        }
                    }
                    None => {}
                }
            }
            (_, acc) => {
                let v = match &self.arg {
                    Some(Expr::Field(f)) => match event.get(*f) {
                        ValueRef::Null => return,
                        ValueRef::Float(x) if acc.absorb_f64(x) => return,
                        r => r.to_owned(),
                    },
                    Some(e) => e.eval(event),
                    None => return,
                };
                if v.is_null() {
                    return;
                }
                acc.absorb(v, event);
            }
        }
    }
}

/// Accumulator state; serializable so partials can cross workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// `count`, `count_if`: the events counted.
    Count(u64),
    /// Integers are summed exactly in `int` (an `i128` cannot overflow: fewer than 2^64
    /// values of at most 2^63); floats exactly in `float`. The result is an integer when every
    /// value was one and the total fits an `i64`, else the exact total of all rounded once.
    Sum {
        /// The integers' exact total.
        int: i128,
        /// The floats' exact total.
        float: ExactSum,
        /// Some value was a float.
        is_float: bool,
        /// Values summed.
        n: u64,
    },
    /// Exact sum (integers included exactly), rounded once, divided by the count.
    Avg {
        /// The exact total.
        sum: ExactSum,
        /// Values summed.
        n: u64,
    },
    /// The least value seen (null: none yet).
    Min(Value),
    /// The greatest value seen (null: none yet).
    Max(Value),
    /// Count, exact Σx and exact Σx² (each x² an exact two-product); see `sample_stddev`.
    /// `approx`: some value lies outside 2^-300 ≤ |x| ≤ 2^300 (or is not finite), where x²
    /// is not exact as two doubles: its rounded square is summed instead.
    Moments {
        /// Values seen.
        n: u64,
        /// Exact Σx.
        sum: ExactSum,
        /// Exact Σx².
        sumsq: ExactSum,
        /// Σx² is rounded (see above).
        approx: bool,
    },
    /// `count_distinct`: the distinct values.
    Distinct(ValueSet),
    /// `collect_set`: the distinct values.
    Set(ValueSet),
    /// (event time, input position, value)
    List(Vec<(i64, u64, Value)>),
    /// The numbers' quantile sketch, and the quantiles the result lists.
    Sketch(Box<Sketch>, Quantiles),
    /// Every number (finite ones only, as the sketch), and the quantiles the result lists.
    Sorted(Vec<f64>, Quantiles),
    /// The HyperLogLog of the values' hashes.
    Hll(Hll),
    /// Counts per value, and `k`.
    TopK(TopK, u32),
}

impl Acc {
    /// Absorbs the float `x` as [`Acc::absorb`] absorbs `Value::Float(x)`, without building a
    /// `Value`, where that is simple (numeric aggregates whose state holds no other kind of
    /// value); false when the caller must use `absorb`.
    #[inline(always)]
    pub(crate) fn absorb_f64(&mut self, x: f64) -> bool {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                float, is_float, n, ..
            } => {
                *is_float = true;
                float.add(x);
                *n += 1;
            }
            Acc::Avg { sum, n } => {
                sum.add(x);
                *n += 1;
            }
            // `Value`'s order on two floats (see `Ord for Value`).
            Acc::Min(m) => match m {
                Value::Null => *m = Value::Float(x),
                Value::Float(y) => {
                    if float_key(x).total_cmp(&float_key(*y)).is_lt() {
                        *y = x
                    }
                }
                _ => return false,
            },
            Acc::Max(m) => match m {
                Value::Null => *m = Value::Float(x),
                Value::Float(y) => {
                    if float_key(x).total_cmp(&float_key(*y)).is_gt() {
                        *y = x
                    }
                }
                _ => return false,
            },
            Acc::Moments { .. } => return self.absorb_moments(x),
            Acc::Sketch(s, _) => {
                s.add(x);
            }
            Acc::Sorted(v, _) => {
                if x.is_finite() {
                    v.push(x)
                }
            }
            Acc::Distinct(_) | Acc::Set(_) | Acc::List(_) | Acc::Hll(_) | Acc::TopK(..) => {
                return false
            }
        }
        true
    }

    /// Absorbs one non-null value.
    pub(crate) fn absorb(&mut self, v: Value, event: &Event) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                is_float,
                n,
            } => {
                match v {
                    Value::Int(i) => *int += i128::from(i),
                    Value::Float(x) => {
                        *is_float = true;
                        float.add(x);
                    }
                    _ => return,
                }
                *n += 1;
            }
            Acc::Avg { sum, n } => {
                match v {
                    Value::Int(i) => sum.add_i64(i),
                    Value::Float(x) => sum.add(x),
                    _ => return,
                }
                *n += 1;
            }
            Acc::Min(m) => {
                if m.is_null() || v < *m {
                    *m = v
                }
            }
            Acc::Max(m) => {
                if m.is_null() || v > *m {
                    *m = v
                }
            }
            Acc::Moments { .. } => {
                if let Some(x) = v.as_f64() {
                    self.absorb_moments(x);
                }
            }
            Acc::Distinct(s) | Acc::Set(s) => s.insert(v),
            Acc::List(l) => l.push((event.timestamp, event.pos, v)),
            Acc::Sketch(..) | Acc::Sorted(..) => {
                // Numbers only (strings are not), as `avg` takes them.
                if let Some(x) = v.as_f64() {
                    self.absorb_f64(x);
                }
            }
            Acc::Hll(h) => h.add_hash(hll::hash_value(&v)),
            Acc::TopK(t, _) => t.add(v),
        }
    }

    /// Adds `x` to the moments (true; a no-op on other states).
    #[inline]
    fn absorb_moments(&mut self, x: f64) -> bool {
        if let Acc::Moments {
            n,
            sum,
            sumsq,
            approx,
        } = self
        {
            *n += 1;
            sum.add(x);
            let a = x.abs();
            if (SQ_MIN..=SQ_MAX).contains(&a) || x == 0.0 {
                // Two-product: p + e == x² exactly (no overflow, no underflow here).
                let p = x * x;
                let e = x.mul_add(x, -p);
                sumsq.add(p);
                if e != 0.0 {
                    sumsq.add(e);
                }
            } else {
                *approx = true;
                sumsq.add(x * x);
            }
        }
        true
    }

    /// Merges a partial of the same kind.
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (
                Acc::Sum {
                    int,
                    float,
                    is_float,
                    n,
                },
                Acc::Sum {
                    int: i2,
                    float: f2,
                    is_float: isf2,
                    n: n2,
                },
            ) => {
                *int += i2;
                float.merge(f2);
                *is_float |= isf2;
                *n += n2;
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                sum.merge(s2);
                *n += n2;
            }
            (Acc::Min(a), Acc::Min(b)) => {
                if !b.is_null() && (a.is_null() || b < *a) {
                    *a = b
                }
            }
            (Acc::Max(a), Acc::Max(b)) => {
                if !b.is_null() && (a.is_null() || b > *a) {
                    *a = b
                }
            }
            (
                Acc::Moments {
                    n,
                    sum,
                    sumsq,
                    approx,
                },
                Acc::Moments {
                    n: n2,
                    sum: s2,
                    sumsq: sq2,
                    approx: a2,
                },
            ) => {
                *n += n2;
                sum.merge(s2);
                sumsq.merge(sq2);
                *approx |= a2;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) | (Acc::Set(a), Acc::Set(b)) => a.merge(b),
            (Acc::List(a), Acc::List(b)) => a.extend(b),
            (Acc::Sketch(a, _), Acc::Sketch(b, _)) => a.merge(&b),
            (Acc::Sorted(a, _), Acc::Sorted(b, _)) => a.extend(b),
            (Acc::Hll(a), Acc::Hll(b)) => a.merge(b),
            (Acc::TopK(a, _), Acc::TopK(b, _)) => a.merge(b),
            (a, b) => debug_assert!(false, "merging {a:?} with {b:?}"),
        }
    }

    /// Whether [`Acc::subtract`] can take partials away from this state.
    pub fn invertible(&self) -> bool {
        matches!(
            self,
            Acc::Count(_) | Acc::Sum { .. } | Acc::Avg { .. } | Acc::Moments { .. }
        )
    }

    /// Takes away a partial merged earlier (a sliding window's slice leaving it), exactly: the
    /// state is then the merge of what is left, to the bit. `flagged`: whether some partial
    /// left holds a float (`sum`) or an inexact square (`stddev`), which a flag cannot count.
    /// False, with `self` to be rebuilt, for states that are not [`Acc::invertible`] and for
    /// exact sums holding a NaN or an infinity.
    pub fn subtract(&mut self, other: &Acc, flagged: bool) -> bool {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a -= b,
            (
                Acc::Sum {
                    int,
                    float,
                    is_float,
                    n,
                },
                Acc::Sum {
                    int: i2,
                    float: f2,
                    n: n2,
                    ..
                },
            ) => {
                *int -= i2;
                *n -= n2;
                *is_float = flagged;
                return float.subtract(f2);
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *n -= n2;
                return sum.subtract(s2);
            }
            (
                Acc::Moments {
                    n,
                    sum,
                    sumsq,
                    approx,
                },
                Acc::Moments {
                    n: n2,
                    sum: s2,
                    sumsq: sq2,
                    ..
                },
            ) => {
                *n -= n2;
                *approx = flagged;
                return sum.subtract(s2) && sumsq.subtract(sq2);
            }
            _ => return false,
        }
        true
    }

    /// The flag [`Acc::subtract`] is told of: a float in a `sum`, an inexact square in a
    /// `stddev`.
    pub fn flagged(&self) -> bool {
        match self {
            Acc::Sum { is_float, .. } => *is_float,
            Acc::Moments { approx, .. } => *approx,
            _ => false,
        }
    }

    /// The aggregate's result.
    pub fn finish(self) -> Value {
        match self {
            Acc::Count(n) => Value::Int(n as i64),
            Acc::Sum { n: 0, .. } => Value::Null,
            Acc::Sum {
                int,
                mut float,
                is_float,
                ..
            } => {
                if is_float {
                    float.add_i128(int);
                    Value::Float(float.value())
                } else {
                    match i64::try_from(int) {
                        Ok(i) => Value::Int(i),
                        // Correctly rounded, as the float total would be.
                        Err(_) => Value::Float(int as f64),
                    }
                }
            }
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(sum.value() / n as f64),
            Acc::Min(v) | Acc::Max(v) => v,
            Acc::Moments {
                n,
                sum,
                sumsq,
                approx,
            } if n >= 2 => Value::Float(sample_stddev(n, &sum, &sumsq, approx)),
            Acc::Moments { .. } => Value::Null,
            Acc::Distinct(s) => Value::Int(s.len() as i64),
            Acc::Set(s) => Value::List(s.into_sorted()),
            Acc::List(mut l) => {
                l.sort_by_key(|a| (a.0, a.1));
                Value::List(l.into_iter().map(|(_, _, v)| v).collect())
            }
            Acc::Sketch(s, _) if s.count() == 0 => Value::Null,
            Acc::Sketch(s, qs) => Value::List(
                qs.iter()
                    .map(|q| s.quantile(q).map_or(Value::Null, Value::Float))
                    .collect(),
            ),
            Acc::Sorted(v, _) if v.is_empty() => Value::Null,
            Acc::Sorted(mut v, qs) => Value::List(
                qs.iter()
                    .map(|q| exact_quantile(&mut v, q).map_or(Value::Null, Value::Float))
                    .collect(),
            ),
            Acc::Hll(h) => Value::Int(h.count().min(i64::MAX as u64) as i64),
            Acc::TopK(t, k) => t.finish(k),
        }
    }
}

/// Values whose square is exactly two doubles, with room to spare: the numerator of
/// [`sample_stddev`] stays below 2^730 and its components above 2^-710.
const SQ_MIN: f64 = 1.0 / (1u128 << 100) as f64 / (1u128 << 100) as f64 / (1u128 << 100) as f64;
const SQ_MAX: f64 = 1.0 / SQ_MIN;

/// Sample standard deviation from the count and exact sums of values and squares:
/// `sqrt((n·Σx² − (Σx)²) / (n·(n−1)))`, the numerator computed as an exact expansion and
/// rounded once (so it is never negative), then one division and the square root. Depends only
/// on the multiset of values; accurate whatever the offset of the values (1e9 + noise).
///
/// Non-finite values give NaN. Values outside 2^-300..2^300 (`approx`) fall back to the
/// textbook formula on the correctly rounded sums: still deterministic, not as accurate.
fn sample_stddev(n: u64, sum: &ExactSum, sumsq: &ExactSum, approx: bool) -> f64 {
    let nf = n as f64;
    let denom = nf * (n - 1) as f64;
    if approx || !sum.is_plain() || !sumsq.is_plain() {
        let (s1, s2) = (sum.value(), sumsq.value());
        let var = (s2 - s1 * (s1 / nf)) / (nf - 1.0);
        return if var < 0.0 { 0.0 } else { var.sqrt() };
    }
    let mut num = ExactSum::default();
    // n·Σx², with n as two exact halves.
    for m in [((n >> 32) << 32) as f64, (n & 0xFFFF_FFFF) as f64] {
        if m != 0.0 {
            for &c in &sumsq.parts() {
                let p = c * m;
                num.add(p);
                num.add(c.mul_add(m, -p));
            }
        }
    }
    // − (Σx)², every cross product exactly.
    let parts = sum.parts();
    for &a in &parts {
        for &b in &parts {
            let p = a * b;
            num.add(-p);
            num.add(-a.mul_add(b, -p));
        }
    }
    (num.value() / denom).sqrt()
}

#[cfg(test)]
mod tests;

/// Order independence and exactness of `sum`, `avg` and `stddev`.
#[cfg(test)]
mod exact_tests;
