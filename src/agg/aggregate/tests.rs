//! The accumulators: SQL null semantics, merged partials agreeing with one pass, and the fast
//! paths agreeing with the general ones.

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
            run(&spec(f.clone(), Some(Field::ResponseTime)), &evs),
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
        let s = spec(f.clone(), rt);
        for cut in [0, 1, 20, 50] {
            assert_eq!(run(&s, &evs), run_split(&s, &evs, cut), "{f:?} cut {cut}");
        }
    }
    for f in [AggFunc::Avg, AggFunc::Stddev, AggFunc::Sum] {
        let s = spec(f.clone(), rt);
        let (Value::Float(a), Value::Float(b)) = (run(&s, &evs), run_split(&s, &evs, 17)) else {
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
    // The skips below (forms that do not parse or bind, values of another field's type) must
    // not hide the whole test: the pairs checked are counted.
    let (mut bound, mut checked) = (0, 0);
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
                bound += 1;
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
                    checked += 1;
                }
            }
        }
    }
    // All 7 x 5 x 3 forms parse and bind; each meets None and the values of its field's type
    // (3 ints, 5 floats, 2 strings): 13 pairs.
    assert_eq!((bound, checked), (105, 455));
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
        let s = spec(f.clone(), Some(Field::ResponseTime));
        for i in 0..xs.len() {
            // Ints first, then floats (an int-holding Min/Max falls back to `absorb`).
            let mut fast = s.new_state();
            let mut slow = s.new_state();
            let mut ev = Event {
                status_code: Some(i as i64 - 3),
                ..Event::default()
            };
            let int_spec = spec(f.clone(), Some(Field::StatusCode));
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

/// The new state kinds (sketch, exact values, HyperLogLog, top-k) give the same result for any
/// split into partials, merged in any order, each possibly through a checkpoint's bincode.
#[test]
fn sketches_are_layout_independent_and_survive_serialization() {
    use crate::agg::test_util::Rng;
    use crate::spec::plan::Quantiles;
    let mut rng = Rng(17);
    let evs: Vec<Event> = (0..3000)
        .map(|i| Event {
            timestamp: i,
            pos: i as u64,
            response_time: (rng.below(10) > 0).then(|| (rng.below(100_000) as f64 + 1.0) / 997.0),
            ip_address: Some(format!("10.0.0.{}", rng.below(40).min(rng.below(40))).into()),
            user_id: Some(format!("u{}", rng.below(1500)).into()),
            ..Event::default()
        })
        .collect();
    let qs = Quantiles::new(&[0.5, 0.95, 0.99], false);
    let specs = [
        spec(AggFunc::Percentile(qs.clone()), Some(Field::ResponseTime)),
        spec(AggFunc::PercentileExact(qs), Some(Field::ResponseTime)),
        spec(AggFunc::ApproxCountDistinct, Some(Field::UserId)),
        spec(AggFunc::TopK(5), Some(Field::IpAddress)),
    ];
    for s in &specs {
        let want = run(s, &evs);
        assert!(!want.is_null(), "{s:?}");
        for parts in [2, 3, 8] {
            let mut accs: Vec<Acc> = (0..parts).map(|_| s.new_state()).collect();
            for e in &evs {
                s.update(&mut accs[rng.below(parts)], e);
            }
            rng.shuffle(&mut accs);
            let mut merged = s.new_state();
            for a in accs {
                let a: Acc = bincode::deserialize(&bincode::serialize(&a).unwrap()).unwrap();
                merged.merge(a);
            }
            let got = merged.finish();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{s:?} in {parts}");
        }
    }
    // Every quantile within α of the exact one.
    let (approx, exact) = (run(&specs[0], &evs), run(&specs[1], &evs));
    let (Value::List(a), Value::List(e)) = (approx, exact) else {
        panic!("lists")
    };
    for (a, e) in a.iter().zip(&e) {
        let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
        assert!(
            (a - e).abs() <= crate::agg::sketch::ALPHA * 1.000001 * e,
            "{a} vs {e}"
        );
    }
    // No value at all: null, as `avg`.
    let none = events(&[None, None]);
    assert_eq!(run(&specs[0], &none), Value::Null);
    assert_eq!(run(&specs[1], &none), Value::Null);
    assert_eq!(run(&specs[2], &none), Value::Int(0));
}
