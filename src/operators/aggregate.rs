//! Aggregate functions as mergeable accumulators.
//!
//! Every accumulator can absorb events ([`Acc::update`]), merge with a partial from another
//! worker ([`Acc::merge`]) and produce its SQL result ([`Acc::finish`]): that is what lets each
//! worker pre-aggregate its batch and exchange small partials instead of events.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::record::{Event, Value};
use crate::spec::expr::Expr;

/// The aggregate functions of specs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AggFunc {
    /// `count()`: every event of the group.
    Count,
    /// `count(x)`: events where `x` is not null.
    CountNonNull,
    /// `count_if(cond)`: events where `cond` is true.
    CountIf,
    Sum,
    Avg,
    Min,
    Max,
    /// Sample standard deviation (null below two values).
    Stddev,
    CountDistinct,
    /// Sorted distinct values.
    CollectSet,
    /// Values in event-time order (ties: input order).
    CollectList,
}

impl AggFunc {
    pub fn from_name(name: &str) -> Option<AggFunc> {
        Some(match name {
            "count" => AggFunc::Count,
            "count_if" => AggFunc::CountIf,
            "sum" => AggFunc::Sum,
            "avg" | "mean" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "stddev" | "stddev_samp" => AggFunc::Stddev,
            "count_distinct" | "approx_count_distinct" => AggFunc::CountDistinct,
            "collect_set" => AggFunc::CollectSet,
            "collect_list" => AggFunc::CollectList,
            _ => return None,
        })
    }
}

/// One aggregate of an analysis: a function and its argument (an event expression).
#[derive(Clone, Debug, PartialEq)]
pub struct AccSpec {
    pub func: AggFunc,
    pub arg: Option<Expr>,
}

impl AccSpec {
    pub fn new_state(&self) -> Acc {
        match self.func {
            AggFunc::Count | AggFunc::CountNonNull | AggFunc::CountIf => Acc::Count(0),
            AggFunc::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
                n: 0,
            },
            AggFunc::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggFunc::Min => Acc::Min(Value::Null),
            AggFunc::Max => Acc::Max(Value::Null),
            AggFunc::Stddev => Acc::Moments {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            AggFunc::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggFunc::CollectSet => Acc::Set(BTreeSet::new()),
            AggFunc::CollectList => Acc::List(Vec::new()),
        }
    }

    /// Folds one event into `acc` (which must come from [`AccSpec::new_state`]).
    #[inline]
    pub fn update(&self, acc: &mut Acc, event: &Event) {
        match (self.func, acc) {
            (AggFunc::Count, Acc::Count(n)) => *n += 1,
            (AggFunc::CountIf, Acc::Count(n)) => {
                if self.arg.as_ref().is_some_and(|c| c.test(event)) {
                    *n += 1
                }
            }
            (_, acc) => {
                let v = match &self.arg {
                    Some(Expr::Field(f)) => event.get(*f).to_owned(),
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
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        n: u64,
    },
    Avg {
        sum: f64,
        n: u64,
    },
    Min(Value),
    Max(Value),
    /// Count, mean and sum of squared deviations (Welford; merged with Chan's formula).
    Moments {
        n: u64,
        mean: f64,
        m2: f64,
    },
    Distinct(BTreeSet<Value>),
    Set(BTreeSet<Value>),
    /// (event time, input position, value)
    List(Vec<(i64, u64, Value)>),
}

impl Acc {
    /// Absorbs one non-null value.
    fn absorb(&mut self, v: Value, event: &Event) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                is_float,
                n,
            } => {
                match v {
                    Value::Int(i) if !*is_float => match int.checked_add(i) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + i as f64;
                        }
                    },
                    v => {
                        let Some(x) = v.as_f64() else { return };
                        if !*is_float {
                            *is_float = true;
                            *float = *int as f64;
                        }
                        *float += x;
                    }
                }
                *n += 1;
            }
            Acc::Avg { sum, n } => {
                if let Some(x) = v.as_f64() {
                    *sum += x;
                    *n += 1;
                }
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
            Acc::Moments { n, mean, m2 } => {
                if let Some(x) = v.as_f64() {
                    *n += 1;
                    let d = x - *mean;
                    *mean += d / *n as f64;
                    *m2 += d * (x - *mean);
                }
            }
            Acc::Distinct(s) | Acc::Set(s) => {
                if !s.contains(&v) {
                    s.insert(v);
                }
            }
            Acc::List(l) => l.push((event.timestamp, event.pos, v)),
        }
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
                if !*is_float && !isf2 {
                    match int.checked_add(i2) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + i2 as f64;
                        }
                    }
                } else {
                    let a = if *is_float { *float } else { *int as f64 };
                    let b = if isf2 { f2 } else { i2 as f64 };
                    *is_float = true;
                    *float = a + b;
                }
                *n += n2;
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
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
                Acc::Moments { n, mean, m2 },
                Acc::Moments {
                    n: nb,
                    mean: mb,
                    m2: m2b,
                },
            ) => {
                if nb == 0 {
                    return;
                }
                if *n == 0 {
                    (*n, *mean, *m2) = (nb, mb, m2b);
                    return;
                }
                let total = *n + nb;
                let d = mb - *mean;
                *mean += d * nb as f64 / total as f64;
                *m2 += m2b + d * d * (*n as f64) * (nb as f64) / total as f64;
                *n = total;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) | (Acc::Set(a), Acc::Set(b)) => {
                if a.len() < b.len() {
                    let small = std::mem::replace(a, b);
                    a.extend(small);
                } else {
                    a.extend(b);
                }
            }
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
                float,
                is_float,
                ..
            } => {
                if is_float {
                    Value::Float(float)
                } else {
                    Value::Int(int)
                }
            }
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(sum / n as f64),
            Acc::Min(v) | Acc::Max(v) => v,
            Acc::Moments { n, m2, .. } if n >= 2 => {
                Value::Float((m2.max(0.0) / (n - 1) as f64).sqrt())
            }
            Acc::Moments { .. } => Value::Null,
            Acc::Distinct(s) => Value::Int(s.len() as i64),
            Acc::Set(s) => Value::List(s.into_iter().collect()),
            Acc::List(mut l) => {
                l.sort_by_key(|a| (a.0, a.1));
                Value::List(l.into_iter().map(|(_, _, v)| v).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
