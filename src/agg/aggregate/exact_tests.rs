//! Order independence and exactness of `sum`, `avg` and `stddev`.

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
            let mut acc = state(func.clone());
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
            let want = whole(func.clone(), vals);
            for round in 0..100 {
                let got = scattered(func.clone(), vals, &mut rng);
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
        assert!(is_nan(whole(func.clone(), &floats([1.0, f64::NAN, 2.0]))));
        assert!(is_nan(whole(func.clone(), &floats([inf, 1.0, -inf]))));
        assert_eq!(whole(func.clone(), &floats([1.0, inf])), Value::Float(inf));
        assert_eq!(
            whole(func.clone(), &floats([-inf, 1e308])),
            Value::Float(-inf)
        );
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

/// A sliding window's running total: slices merged as they enter and subtracted as they leave
/// finishes to the bits of the window computed whole, whatever the values (integers beyond
/// 2^53, huge and tiny magnitudes, heavy cancellation) and even when the window empties.
#[test]
fn subtracting_leaving_slices_is_bit_identical_to_the_window_whole() {
    let mut rng = Rng(7);
    let ev = Event::default();
    let mut refused = 0;
    for (i, vals) in datasets(&mut rng).iter().enumerate() {
        for func in [AggFunc::Count, AggFunc::Sum, AggFunc::Avg, AggFunc::Stddev] {
            let slices: Vec<Acc> = vals
                .chunks(1 + rng.below(9))
                .map(|c| {
                    let mut acc = state(func.clone());
                    c.iter().for_each(|v| acc.absorb(v.clone(), &ev));
                    acc
                })
                .collect();
            let width = 1 + rng.below(6);
            let mut running = state(func.clone());
            for (end, slice) in slices.iter().enumerate() {
                assert!(running.invertible());
                running.merge(slice.clone());
                let from = (end + 1).saturating_sub(width);
                let mut whole = state(func.clone());
                slices[from..=end]
                    .iter()
                    .for_each(|s| whole.merge(s.clone()));
                if end >= width {
                    let flagged = slices[from..=end].iter().any(Acc::flagged);
                    if !running.subtract(&slices[from - 1], flagged) {
                        // Only an infinite square (1e300² in stddev's rounded fallback) cannot
                        // be taken away; the window is then merged afresh.
                        assert!(
                            matches!(func, AggFunc::Stddev) && i == 6,
                            "set {i} {func:?}"
                        );
                        refused += 1;
                        running = whole.clone();
                    }
                }
                let (got, want) = (running.clone().finish(), whole.finish());
                assert!(
                    same_bits(&got, &want),
                    "set {i} {func:?} slices {from}..={end}: {got:?} vs {want:?}"
                );
            }
        }
    }
    assert!(refused > 0, "the refusal was exercised");
    // Flags cannot be taken away: NaN and infinities refuse, and so do other states.
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut a = state(AggFunc::Sum);
        a.absorb(Value::Float(x), &ev);
        let b = a.clone();
        assert!(!a.subtract(&b, false), "{x}");
    }
    let mut a = state(AggFunc::Max);
    a.absorb(Value::Int(1), &ev);
    assert!(!a.invertible());
    assert!(!a.clone().subtract(&a, false));
}
