//! Aggregates folded per node: how each aggregate of a node takes an event is decided once,
//! when the node's table is made, instead of per event as [`AccSpec::update`] decides it.

use crate::agg::aggregate::Acc;
use crate::agg::intern::{Num, Rows};
use crate::record::{Event, Field, Value};
use crate::spec::expr::{compare_number, is_comparison, BinOp, Expr};
use crate::spec::plan::{AccSpec, AggFunc};

/// How an aggregate folds an event, decided once per node instead of per event (what
/// [`AccSpec::update`] finds out by matching its function and argument), reading numbers from
/// the event's [`Num`]s, each field read once for every aggregate of every node.
#[derive(Clone, Debug)]
pub enum Fold {
    /// `count()`.
    Count,
    /// `count_if(field OP number)`, the field at `slot` of the numbers.
    CountIf {
        /// The field's slot among the numbers read.
        slot: usize,
        /// The comparison.
        op: BinOp,
        /// The number compared with.
        lit: Value,
    },
    /// `sum`, `avg`, `min`, `max`, `stddev` or a percentile of the field at `slot`.
    Num {
        /// The field's slot among the numbers read.
        slot: usize,
    },
    /// Anything else: [`AccSpec::update`] with the event.
    Event,
}

impl AccSpec {
    /// How this aggregate folds events; `slot` gives the [`Num`] slot of a field it reads as a
    /// number.
    pub fn fold(&self, mut slot: impl FnMut(Field) -> usize) -> Fold {
        use AggFunc::*;
        match (&self.func, &self.arg) {
            (Count, None) => Fold::Count,
            (CountIf, Some(Expr::Binary(op, a, b))) if is_comparison(*op) => {
                match (a.as_ref(), b.as_ref()) {
                    (Expr::Field(f), Expr::Lit(lit @ (Value::Int(_) | Value::Float(_)))) => {
                        Fold::CountIf {
                            slot: slot(*f),
                            op: *op,
                            lit: lit.clone(),
                        }
                    }
                    _ => Fold::Event,
                }
            }
            (
                Sum | Avg | Min | Max | Stddev | Percentile(_) | PercentileExact(_),
                Some(Expr::Field(f)),
            ) => Fold::Num { slot: slot(*f) },
            _ => Fold::Event,
        }
    }
}

impl Fold {
    /// Folds a batch's rows into their groups, as `spec.update` would fold each row's event:
    /// `hits` are (row, group) pairs, in the order the rows' events came, row `r` has event
    /// `events[r]` and numbers `rows.nums(r)`, and group `g`'s accumulator of this aggregate is
    /// `accs[g * stride + at]`. Deciding how to fold once per batch, not once per event, leaves
    /// each loop a few instructions per row.
    #[allow(clippy::too_many_arguments)]
    pub fn fold_rows(
        &self,
        spec: &AccSpec,
        hits: &[(u32, u32)],
        rows: &Rows,
        events: &[&Event],
        accs: &mut [Acc],
        stride: usize,
        at: usize,
    ) {
        let slot_of = |g: u32| g as usize * stride + at;
        match self {
            Fold::Count => {
                for &(_, g) in hits {
                    if let Some(Acc::Count(n)) = accs.get_mut(slot_of(g)) {
                        *n += 1
                    }
                }
            }
            Fold::CountIf { slot, op, lit } => {
                for &(r, g) in hits {
                    let Some(acc) = accs.get_mut(slot_of(g)) else {
                        continue;
                    };
                    // A string or NaN goes to `update` (and so to `Expr::test`).
                    match rows
                        .num(r as usize, *slot)
                        .as_ref()
                        .and_then(|v| compare_number(v, *op, lit))
                    {
                        Some(true) => {
                            if let Acc::Count(n) = acc {
                                *n += 1
                            }
                        }
                        Some(false) => {}
                        None => update(spec, acc, events, r),
                    }
                }
            }
            Fold::Num { slot } => {
                for &(r, g) in hits {
                    let Some(acc) = accs.get_mut(slot_of(g)) else {
                        continue;
                    };
                    match rows.num(r as usize, *slot) {
                        Num::Null => {}
                        Num::Float(x) => {
                            if !acc.absorb_f64(x) {
                                if let Some(ev) = events.get(r as usize) {
                                    acc.absorb(Value::Float(x), ev)
                                }
                            }
                        }
                        Num::Int(i) => {
                            if let Some(ev) = events.get(r as usize) {
                                acc.absorb(Value::Int(i), ev)
                            }
                        }
                        Num::Str => update(spec, acc, events, r),
                    }
                }
            }
            Fold::Event => {
                for &(r, g) in hits {
                    if let Some(acc) = accs.get_mut(slot_of(g)) {
                        update(spec, acc, events, r)
                    }
                }
            }
        }
    }
}

/// `spec.update` with the event of row `r` (which the numbers alone could not fold): kept out
/// of the loops above, whose rows rarely need their event.
#[inline(never)]
fn update(spec: &AccSpec, acc: &mut Acc, events: &[&Event], r: u32) {
    if let Some(ev) = events.get(r as usize) {
        spec.update(acc, ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::test_util::{same_bits, Rng, NUMERIC};

    /// `Fold::fold_rows` (the aggregate's update decided per node, numbers read once per event)
    /// leaves every accumulator as `AccSpec::update` does: typed fields, a string field, and
    /// an extra field holding every kind of value (NaN, -0.0, strings that look like numbers).
    #[test]
    fn folds_agree_with_update() {
        use crate::agg::intern::Interner;
        use crate::record::Field;
        use crate::spec::expr::parse;
        let bind = |src: &str| {
            parse(src)
                .unwrap()
                .bind_fields(&|n| match n {
                    "x" => Some(Field::Extra(0)),
                    n => Field::from_name(n),
                })
                .unwrap()
        };
        let mut specs = vec![AccSpec {
            func: AggFunc::Count,
            arg: None,
        }];
        for field in ["status_code", "response_time", "service", "x"] {
            for op in ["=", "!=", "<", "<=", ">", ">="] {
                for lit in ["400", "1.0", "-0.0", "'x'"] {
                    specs.push(AccSpec {
                        func: AggFunc::CountIf,
                        arg: Some(bind(&format!("{field} {op} {lit}"))),
                    });
                }
            }
            let others = [AggFunc::CountDistinct, AggFunc::CollectList];
            for func in NUMERIC.into_iter().chain(others) {
                specs.push(AccSpec {
                    func,
                    arg: Some(bind(field)),
                });
            }
        }
        let extras = [
            Value::Null,
            Value::Int(400),
            Value::Int(-3),
            Value::Float(1.0),
            Value::Float(f64::NAN),
            Value::Float(-0.0),
            Value::Float(1e300),
            Value::Str("x".into()),
            Value::Str("400".into()),
        ];
        let mut rng = Rng(11);
        let events: Vec<Event> = (0..400)
            .map(|i| {
                let mut ev = Event {
                    timestamp: rng.below(1000) as i64,
                    pos: i,
                    status_code: [None, Some(200), Some(400), Some(503)][rng.below(4)],
                    response_time: [None, Some(0.25), Some(1.0), Some(f64::NAN), Some(-0.0)]
                        [rng.below(5)],
                    service: [None, Some("x"), Some("api")][rng.below(3)].map(Into::into),
                    ..Event::default()
                };
                ev.set_extra(0, extras[rng.below(extras.len())].clone());
                ev
            })
            .collect();
        let mut interner = Interner::default();
        let folds: Vec<Fold> = specs
            .iter()
            .map(|s| s.fold(|f| interner.num_slot_or_add(f)))
            .collect();
        assert!(folds.iter().any(|f| matches!(f, Fold::CountIf { .. })));
        assert!(folds.iter().any(|f| matches!(f, Fold::Num { .. })));
        let mut rows = Rows::default();
        let mut updated: Vec<Acc> = specs.iter().map(AccSpec::new_state).collect();
        for ev in &events {
            interner.read(ev, &mut rows);
            for (s, acc) in specs.iter().zip(&mut updated) {
                s.update(acc, ev);
            }
        }
        // Two groups' accumulators side by side, as a table keeps them; every row goes to the
        // second, the first must stay empty.
        let hits: Vec<(u32, u32)> = (0..events.len() as u32).map(|r| (r, 1)).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let n = specs.len();
        let mut accs: Vec<Acc> = (0..2)
            .flat_map(|_| specs.iter().map(AccSpec::new_state))
            .collect();
        for (i, s) in specs.iter().enumerate() {
            folds[i].fold_rows(s, &hits, &rows, &refs, &mut accs, n, i);
        }
        let folded = accs.split_off(n);
        let empty: Vec<Acc> = specs.iter().map(AccSpec::new_state).collect();
        assert_eq!(accs, empty);
        for ((s, a), b) in specs.iter().zip(folded).zip(updated) {
            assert_eq!(a, b, "{s:?}");
            assert!(same_bits(&a.finish(), &b.finish()), "{s:?}");
        }
    }
}
