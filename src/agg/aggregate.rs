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
use crate::agg::value_set::ValueSet;
use crate::record::value::float_key;
use crate::record::{Event, Value, ValueRef};
use crate::spec::expr::{compare_number, Expr};
use crate::spec::plan::{AccSpec, AggFunc};

impl AccSpec {
    pub fn new_state(&self) -> Acc {
        match self.func {
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
        }
    }

    /// Folds one event into `acc` (which must come from [`AccSpec::new_state`]).
    #[inline]
    pub fn update(&self, acc: &mut Acc, event: &Event) {
        match (self.func, acc) {
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
    Count(u64),
    /// Integers are summed exactly in `int` (an `i128` cannot overflow: fewer than 2^64
    /// values of at most 2^63); floats exactly in `float`. The result is an integer when every
    /// value was one and the total fits an `i64`, else the exact total of all rounded once.
    Sum {
        int: i128,
        float: ExactSum,
        is_float: bool,
        n: u64,
    },
    /// Exact sum (integers included exactly), rounded once, divided by the count.
    Avg {
        sum: ExactSum,
        n: u64,
    },
    Min(Value),
    Max(Value),
    /// Count, exact Σx and exact Σx² (each x² an exact two-product); see `sample_stddev`.
    /// `approx`: some value lies outside 2^-300 ≤ |x| ≤ 2^300 (or is not finite), where x²
    /// is not exact as two doubles: its rounded square is summed instead.
    Moments {
        n: u64,
        sum: ExactSum,
        sumsq: ExactSum,
        approx: bool,
    },
    Distinct(ValueSet),
    Set(ValueSet),
    /// (event time, input position, value)
    List(Vec<(i64, u64, Value)>),
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
            Acc::Distinct(_) | Acc::Set(_) | Acc::List(_) => return false,
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
            (a, b) => debug_assert!(false, "merging {a:?} with {b:?}"),
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
mod tests {
    use super::*;
    use crate::agg::test_util::NUMERIC;
    use crate::record::Field;

    fn spec(func: AggFunc, field: Option<Field>) -> AccSpec {
        AccSpec {
            func,
            arg: field.map(Expr::Field),
        }
    }

    fn events(rts: &[Option<f64>]) -> Vec<Event> {
        rts.iter()
            .enumerate()
            .map(|(i, rt)| Event {
                timestamp: 1000 - i as i64,
                pos: i as u64,
                response_time: *rt,
                service: Some(format!("s{}", i % 3).into()),
                ..Event::default()
            })
            .collect()
    }

    fn run(s: &AccSpec, evs: &[Event]) -> Value {
        let mut acc = s.new_state();
        for e in evs {
            s.update(&mut acc, e);
        }
        acc.finish()
    }

    /// Splitting the input, aggregating each part and merging equals aggregating it whole.
    fn run_split(s: &AccSpec, evs: &[Event], cut: usize) -> Value {
        let (a, b) = evs.split_at(cut);
        let mut x = s.new_state();
        a.iter().for_each(|e| s.update(&mut x, e));
        let mut y = s.new_state();
        b.iter().for_each(|e| s.update(&mut y, e));
        x.merge(y);
        x.finish()
    }

    #[test]
    fn null_semantics() {
        let evs = events(&[None, None]);
        assert_eq!(run(&spec(AggFunc::Count, None), &evs), Value::Int(2));
        assert_eq!(
            run(
                &spec(AggFunc::CountNonNull, Some(Field::ResponseTime)),
                &evs
            ),
            Value::Int(0)
        );
        for f in [
            AggFunc::Avg,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Stddev,
            AggFunc::Sum,
        ] {
            assert_eq!(
                run(&spec(f, Some(Field::ResponseTime)), &evs),
                Value::Null,
                "{f:?}"
            );
        }
        let one = events(&[Some(1.0)]);
        assert_eq!(
            run(&spec(AggFunc::Stddev, Some(Field::ResponseTime)), &one),
            Value::Null
        );
    }

    #[test]
    fn values_and_merge_agree() {
        let rts: Vec<Option<f64>> = (0..50)
            .map(|i| {
                if i % 7 == 0 {
                    None
                } else {
                    Some((i * 37 % 11) as f64 / 4.0)
                }
            })
            .collect();
        let evs = events(&rts);
        let vals: Vec<f64> = rts.iter().flatten().copied().collect();
        let n = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / n;
        let var = vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let rt = Some(Field::ResponseTime);
        let close = |v: Value, want: f64| match v {
            Value::Float(x) => assert!((x - want).abs() < 1e-12, "{x} vs {want}"),
            v => panic!("{v:?}"),
        };
        close(run(&spec(AggFunc::Avg, rt), &evs), mean);
        close(run(&spec(AggFunc::Stddev, rt), &evs), var.sqrt());
        close(run(&spec(AggFunc::Sum, rt), &evs), vals.iter().sum());
        for f in [
            AggFunc::Count,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::CountDistinct,
            AggFunc::CollectSet,
            AggFunc::CollectList,
        ] {
            let s = spec(f, rt);
            for cut in [0, 1, 20, 50] {
                assert_eq!(run(&s, &evs), run_split(&s, &evs, cut), "{f:?} cut {cut}");
            }
        }
        for f in [AggFunc::Avg, AggFunc::Stddev, AggFunc::Sum] {
            let s = spec(f, rt);
            let (Value::Float(a), Value::Float(b)) = (run(&s, &evs), run_split(&s, &evs, 17))
            else {
                panic!()
            };
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// `count_if(field OP number)` counts what `Expr::test` accepts, for every kind of value.
    #[test]
    fn count_if_comparisons_agree_with_expr_test() {
        use crate::spec::expr::parse;
        let vals = [
            None,
            Some(Value::Int(200)),
            Some(Value::Int(400)),
            Some(Value::Int(-1)),
            Some(Value::Float(0.5)),
            Some(Value::Float(1.0)),
            Some(Value::Float(400.0)),
            Some(Value::Float(f64::NAN)),
            Some(Value::Float(-0.0)),
            Some(Value::Str("x".into())),
            Some(Value::Str("400".into())),
        ];
        for op in ["=", "!=", "<", "<=", ">", ">=", "+"] {
            for lit in ["400", "1.0", "0", "-0.0", "'x'"] {
                for field in ["status_code", "response_time", "service"] {
                    let src = if op == "+" {
                        format!("{field} + {lit} > 1")
                    } else {
                        format!("{field} {op} {lit}")
                    };
                    let Ok(ast) = parse(&src) else { continue };
                    let Ok(cond) = ast.bind_fields(&Field::from_name) else {
                        continue;
                    };
                    let s = AccSpec {
                        func: AggFunc::CountIf,
                        arg: Some(cond.clone()),
                    };
                    for v in &vals {
                        let mut ev = Event::default();
                        match (field, v) {
                            (_, None) => {}
                            ("status_code", Some(Value::Int(i))) => ev.status_code = Some(*i),
                            ("response_time", Some(Value::Float(f))) => ev.response_time = Some(*f),
                            ("service", Some(Value::Str(x))) => ev.service = Some(x.clone()),
                            _ => continue,
                        }
                        let mut acc = s.new_state();
                        s.update(&mut acc, &ev);
                        let want = Acc::Count(u64::from(cond.test(&ev)));
                        assert_eq!(acc, want, "{src} on {v:?}");
                    }
                }
            }
        }
    }

    /// The float fast path (`Acc::absorb_f64`) and the general one agree, mixed with ints.
    #[test]
    fn float_fast_path_equals_absorbing_values() {
        let xs = [
            Some(0.5),
            Some(-0.0),
            None,
            Some(0.0),
            Some(-3.25),
            Some(1e300),
            Some(f64::NAN),
            Some(7.0),
        ];
        for f in NUMERIC {
            let s = spec(f, Some(Field::ResponseTime));
            for i in 0..xs.len() {
                // Ints first, then floats (an int-holding Min/Max falls back to `absorb`).
                let mut fast = s.new_state();
                let mut slow = s.new_state();
                let mut ev = Event {
                    status_code: Some(i as i64 - 3),
                    ..Event::default()
                };
                let int_spec = spec(f, Some(Field::StatusCode));
                int_spec.update(&mut fast, &ev);
                slow.absorb(Value::Int(i as i64 - 3), &ev);
                for y in xs.iter().cycle().skip(i).take(xs.len()) {
                    ev.response_time = *y;
                    s.update(&mut fast, &ev);
                    if let Some(y) = y {
                        slow.absorb(Value::Float(*y), &ev);
                    }
                }
                let (a, b) = (fast.finish(), slow.finish());
                assert!(
                    a == b || format!("{a:?}") == format!("{b:?}"),
                    "{f:?}: {a:?} vs {b:?}"
                );
            }
            // Floats only.
            let mut fast = s.new_state();
            let mut slow = s.new_state();
            for y in xs.iter().flatten() {
                let ev = Event {
                    response_time: Some(*y),
                    ..Event::default()
                };
                s.update(&mut fast, &ev);
                slow.absorb(Value::Float(*y), &ev);
            }
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{f:?}");
        }
    }

    #[test]
    fn collect_list_orders_by_event_time_then_position() {
        let mut evs = events(&[Some(1.0), Some(2.0), Some(3.0)]);
        evs[0].timestamp = 10;
        evs[1].timestamp = 5;
        evs[2].timestamp = 10;
        let s = spec(AggFunc::CollectList, Some(Field::ResponseTime));
        assert_eq!(
            run_split(&s, &evs, 2),
            Value::List(vec![
                Value::Float(2.0),
                Value::Float(1.0),
                Value::Float(3.0)
            ])
        );
        let set = spec(AggFunc::CollectSet, Some(Field::Service));
        assert_eq!(
            run(&set, &evs),
            Value::List(vec![
                Value::Str("s0".into()),
                Value::Str("s1".into()),
                Value::Str("s2".into())
            ])
        );
    }

    #[test]
    fn integer_sums_stay_integers() {
        let evs: Vec<Event> = (0..4)
            .map(|i| Event {
                status_code: Some(100 + i),
                ..Event::default()
            })
            .collect();
        assert_eq!(
            run(&spec(AggFunc::Sum, Some(Field::StatusCode)), &evs),
            Value::Int(406)
        );
        assert_eq!(
            run(&spec(AggFunc::Max, Some(Field::StatusCode)), &evs),
            Value::Int(103)
        );
    }
}

/// Order independence and exactness of `sum`, `avg` and `stddev`.
#[cfg(test)]
mod exact_tests {
    use super::*;
    use crate::agg::test_util::{same_bits, Rng};

    fn state(func: AggFunc) -> Acc {
        AccSpec { func, arg: None }.new_state()
    }

    fn whole(func: AggFunc, vals: &[Value]) -> Value {
        let mut acc = state(func);
        let ev = Event::default();
        vals.iter().for_each(|v| acc.absorb(v.clone(), &ev));
        acc.finish()
    }

    /// Shuffles the values, splits them into 1..=8 partials at random cuts, round-trips some
    /// partials through bincode (as between processes) and merges them in a random order.
    fn scattered(func: AggFunc, vals: &[Value], rng: &mut Rng) -> Value {
        let mut vals = vals.to_vec();
        rng.shuffle(&mut vals);
        let parts = 1 + rng.below(8);
        let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(vals.len() + 1)).collect();
        cuts.push(0);
        cuts.push(vals.len());
        cuts.sort_unstable();
        let ev = Event::default();
        let mut accs: Vec<Acc> = cuts
            .windows(2)
            .map(|w| {
                let mut acc = state(func);
                vals[w[0]..w[1]]
                    .iter()
                    .for_each(|v| acc.absorb(v.clone(), &ev));
                if rng.below(2) == 0 {
                    acc = bincode::deserialize(&bincode::serialize(&acc).unwrap()).unwrap();
                }
                acc
            })
            .collect();
        while accs.len() > 1 {
            let b = accs.swap_remove(rng.below(accs.len()));
            let i = rng.below(accs.len());
            accs[i].merge(b);
        }
        accs.pop().unwrap().finish()
    }

    fn floats(xs: impl IntoIterator<Item = f64>) -> Vec<Value> {
        xs.into_iter().map(Value::Float).collect()
    }

    /// Value sets that make naive summation order-dependent.
    fn datasets(rng: &mut Rng) -> Vec<Vec<Value>> {
        let mut sets = Vec::new();
        // Response times with three decimals.
        sets.push(floats(
            (0..500).map(|_| (rng.next() % 5_000_000) as f64 / 1000.0),
        ));
        // Random mantissas over 80 binades, both signs.
        sets.push(floats((0..300).map(|_| {
            let m = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let e = rng.below(80) as i32 - 40;
            if rng.below(2) == 0 {
                m * 2f64.powi(e)
            } else {
                -m * 2f64.powi(e)
            }
        })));
        // Large offset plus noise; heavy cancellation.
        sets.push(floats(
            (0..400).map(|_| 1e9 + (rng.next() % 1_000_000) as f64 * 1e-6),
        ));
        sets.push(floats((0..200).map(|i| match i % 4 {
            0 => 1e16,
            1 => -1e16,
            2 => 1.0 + (rng.next() % 100) as f64 * 1e-3,
            _ => 1e-16,
        })));
        // Integers beyond 2^53 and mixed integer/float input.
        sets.push(
            (0..200)
                .map(|i| {
                    if i % 3 == 0 {
                        Value::Float((rng.next() % 1000) as f64 / 7.0)
                    } else {
                        Value::Int((rng.next() >> 2) as i64 - (1 << 61))
                    }
                })
                .collect(),
        );
        // Integers whose running sum overflows i64 in some orders only.
        let mut ints: Vec<Value> = vec![Value::Int(i64::MAX); 3];
        ints.extend(vec![Value::Int(-i64::MAX); 3]);
        ints.extend((0..20).map(|i| Value::Int(i - 7)));
        sets.push(ints);
        // Huge and tiny magnitudes, cancelling.
        sets.push(floats((0..60).map(|i| match i % 6 {
            0 => 1e300,
            1 => -1e300,
            2 => 3e-310,
            3 => 1e-200,
            4 => (rng.next() % 1000) as f64 / 3.0,
            _ => -2.5e290,
        })));
        sets
    }

    #[test]
    fn bit_identical_for_any_order_and_merge_tree() {
        let mut rng = Rng(42);
        for (i, vals) in datasets(&mut rng).iter().enumerate() {
            for func in [AggFunc::Sum, AggFunc::Avg, AggFunc::Stddev] {
                let want = whole(func, vals);
                for round in 0..100 {
                    let got = scattered(func, vals, &mut rng);
                    assert!(
                        same_bits(&got, &want),
                        "set {i} {func:?} round {round}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn sum_is_correctly_rounded() {
        // Multiples of 2^-20 below 2^42: the exact total is an i128 count of 2^-20 units, and
        // `as f64` rounds it to nearest, ties to even, like `finish` must.
        let mut rng = Rng(7);
        let unit = 2f64.powi(-20);
        for len in [1, 2, 3, 10, 1000] {
            for _ in 0..50 {
                let ms: Vec<i64> = (0..len)
                    .map(|_| match rng.below(3) {
                        0 => (rng.next() >> 1) as i64 - (1 << 62),
                        1 => (rng.next() % 1000) as i64 - 500,
                        _ => ((rng.next() >> 11) as i64) << 8,
                    })
                    .collect();
                let vals = floats(ms.iter().map(|&m| m as f64 * unit));
                // The values themselves are rounded; sum what they are.
                let exact: i128 = vals
                    .iter()
                    .map(|v| match v {
                        Value::Float(x) => (x / unit) as i128,
                        _ => unreachable!(),
                    })
                    .sum();
                let want = exact as f64 * unit;
                assert!(same_bits(&whole(AggFunc::Sum, &vals), &Value::Float(want)));
                let avg = whole(AggFunc::Avg, &vals);
                assert!(same_bits(&avg, &Value::Float(want / len as f64)));
            }
        }
    }

    /// Reference: sample stddev of integers `offset + k` scaled by `scale`, through exact i128
    /// sums; the one rounding of the numerator, one division and the root as in the code.
    fn reference_stddev(ks: &[i64], offset: i64, scale: f64) -> f64 {
        let n = ks.len() as i128;
        let ys: Vec<i128> = ks.iter().map(|&k| i128::from(offset + k)).collect();
        let s1: i128 = ys.iter().sum();
        let s2: i128 = ys.iter().map(|y| y * y).sum();
        let num = n * s2 - s1 * s1;
        (num as f64 * scale * scale / (n * (n - 1)) as f64).sqrt()
    }

    #[test]
    fn stddev_accurate_with_large_offset() {
        let mut rng = Rng(3);
        for n in [2, 3, 10, 1000, 20_000] {
            // 1e9 + noise in steps of 1/8 (exact doubles): ys = 8x are integers near 8e9.
            let ks: Vec<i64> = (0..n).map(|_| (rng.next() % 8000) as i64).collect();
            let vals = floats(ks.iter().map(|&k| (8_000_000_000 + k) as f64 / 8.0));
            let want = reference_stddev(&ks, 8_000_000_000, 0.125);
            let Value::Float(got) = whole(AggFunc::Stddev, &vals) else {
                panic!()
            };
            let rel = ((got - want) / want).abs();
            assert!(rel <= 4.0 * f64::EPSILON, "n {n}: {got} vs {want}");
        }
        // Huge offset, tiny spread: the numerator is exact, so this matches bit for bit.
        let ks = [0, 1, 2, 1, 0, 2, 1];
        let vals = floats(ks.iter().map(|&k| 1e15 + k as f64));
        let want = reference_stddev(&ks, 1_000_000_000_000_000, 1.0);
        assert!(same_bits(
            &whole(AggFunc::Stddev, &vals),
            &Value::Float(want)
        ));
        // Constant values: exactly zero, never negative.
        let vals = floats([1e9 + 0.1; 50]);
        assert!(same_bits(
            &whole(AggFunc::Stddev, &vals),
            &Value::Float(0.0)
        ));
    }

    #[test]
    fn nan_and_infinity_follow_ieee() {
        let inf = f64::INFINITY;
        let is_nan = |v: Value| matches!(v, Value::Float(x) if x.is_nan());
        for func in [AggFunc::Sum, AggFunc::Avg] {
            assert!(is_nan(whole(func, &floats([1.0, f64::NAN, 2.0]))));
            assert!(is_nan(whole(func, &floats([inf, 1.0, -inf]))));
            assert_eq!(whole(func, &floats([1.0, inf])), Value::Float(inf));
            assert_eq!(whole(func, &floats([-inf, 1e308])), Value::Float(-inf));
        }
        // Exact: no intermediate overflow; a total beyond the range is infinite.
        assert_eq!(
            whole(AggFunc::Sum, &floats([1e308, 1e308, -1e308])),
            Value::Float(1e308)
        );
        assert_eq!(
            whole(AggFunc::Sum, &floats([1e308, 1e308])),
            Value::Float(inf)
        );
        // Mixed with integers: still IEEE.
        let mixed = vec![Value::Int(5), Value::Float(inf)];
        assert_eq!(whole(AggFunc::Sum, &mixed), Value::Float(inf));
        // stddev of anything non-finite is NaN (∞ − ∞ in the variance).
        for xs in [[1.0, inf, 2.0], [1.0, f64::NAN, 2.0], [-inf, 1.0, 2.0]] {
            assert!(is_nan(whole(AggFunc::Stddev, &floats(xs))), "{xs:?}");
        }
    }

    #[test]
    fn integer_sums_exact_and_order_independent() {
        let max = Value::Int(i64::MAX);
        assert_eq!(
            whole(AggFunc::Sum, &[max.clone(), Value::Int(1), Value::Int(-1)]),
            max
        );
        assert_eq!(
            whole(AggFunc::Sum, &[Value::Int(1), max.clone(), Value::Int(-1)]),
            max
        );
        // Beyond i64: the exact total, rounded once.
        assert_eq!(
            whole(AggFunc::Sum, &[max.clone(), Value::Int(1)]),
            Value::Float(9223372036854775808.0)
        );
        // Ints beyond 2^53 mixed with floats: no early rounding of the integer part.
        let big = (1i64 << 60) + 1;
        assert_eq!(
            whole(
                AggFunc::Sum,
                &[Value::Int(big), Value::Float(0.5), Value::Int(-(1 << 60))]
            ),
            Value::Float(1.5)
        );
        assert_eq!(
            whole(AggFunc::Avg, &[Value::Int(big), Value::Int(-(1 << 60))]),
            Value::Float(0.5)
        );
        // Non-numeric values are ignored, as before.
        assert_eq!(whole(AggFunc::Sum, &[Value::Str("x".into())]), Value::Null);
    }

    #[test]
    fn state_stays_compact() {
        // The common case keeps its expansion inline.
        assert!(
            std::mem::size_of::<Acc>() <= 128,
            "{}",
            std::mem::size_of::<Acc>()
        );
    }
}

/// Per-event cost of the numeric accumulators:
/// `cargo test --release --lib -- --ignored --nocapture bench_update`.
#[cfg(test)]
mod bench {
    use super::*;
    use crate::record::Field;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn bench_update() {
        // Response-time-like values: three decimals between 0.001 and 5000.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let evs: Vec<Event> = (0..1_000_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                Event {
                    response_time: Some((s % 5_000_000) as f64 / 1000.0),
                    ..Event::default()
                }
            })
            .collect();
        // LOGFLOW_BENCH=Sum (say) runs one function, e.g. under `perf stat` for cycle counts.
        let only = std::env::var("LOGFLOW_BENCH").ok();
        println!("size_of::<Acc>() = {}", std::mem::size_of::<Acc>());
        for func in [AggFunc::Count, AggFunc::Sum, AggFunc::Avg, AggFunc::Stddev] {
            if only.as_ref().is_some_and(|o| *o != format!("{func:?}")) {
                continue;
            }
            let spec = AccSpec {
                func,
                arg: Some(Expr::Field(Field::ResponseTime)),
            };
            let mut best = f64::INFINITY;
            let mut out = Value::Null;
            for _ in 0..7 {
                let t = Instant::now();
                // Groups of 1000 events: a fresh accumulator per group, as windows do.
                for chunk in evs.chunks(1000) {
                    let mut acc = spec.new_state();
                    for e in chunk {
                        spec.update(&mut acc, e);
                    }
                    out = std::hint::black_box(acc).finish();
                }
                best = best.min(t.elapsed().as_secs_f64() * 1e9 / evs.len() as f64);
            }
            println!("{func:?}: {best:.2} ns/event (last group: {out:?})");
        }
    }
}
