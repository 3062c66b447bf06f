//! Evaluating bound expressions against a row: SQL null semantics, three-valued logic,
//! float division that is null on 0, and the built-in functions.

use super::{BinOp, Expr, Func, UnOp};
use crate::record::{Event, Field, Value, ValueRef};

/// Where a bound expression reads its inputs.
pub trait Lookup {
    /// The event field `f`.
    fn field(&self, f: Field) -> Value;
    /// Column `i` of the row being computed.
    fn column(&self, i: usize) -> Value;
    /// The event itself, when the row is one (enables allocation-free comparisons).
    fn event(&self) -> Option<&Event> {
        None
    }
}

impl Lookup for Event {
    #[inline]
    fn field(&self, f: Field) -> Value {
        match f {
            // Extra fields may hold values a `ValueRef` has no form for (lists).
            Field::Extra(i) => self.extra.get(i as usize).cloned().unwrap_or(Value::Null),
            f => self.get(f).to_owned(),
        }
    }
    fn column(&self, _: usize) -> Value {
        Value::Null
    }
    fn event(&self) -> Option<&Event> {
        Some(self)
    }
}

impl Lookup for [Value] {
    fn field(&self, _: Field) -> Value {
        Value::Null
    }
    #[inline]
    fn column(&self, i: usize) -> Value {
        self.get(i).cloned().unwrap_or(Value::Null)
    }
}

impl Expr {
    /// Evaluates against a row.
    pub fn eval<R: Lookup + ?Sized>(&self, row: &R) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Field(f) => row.field(*f),
            Expr::Column(i) => row.column(*i),
            Expr::Unary(op, e) => unary(*op, e.eval(row)),
            Expr::Binary(BinOp::And, a, b) => {
                let a = truth(&a.eval(row));
                if a == Some(false) {
                    return Value::Bool(false);
                }
                match (a, truth(&b.eval(row))) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Binary(BinOp::Or, a, b) => {
                let a = truth(&a.eval(row));
                if a == Some(true) {
                    return Value::Bool(true);
                }
                match (a, truth(&b.eval(row))) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Binary(op, a, b) => binary(*op, a.eval(row), b.eval(row)),
            Expr::IsNull(e, negated) => Value::Bool(e.eval(row).is_null() != *negated),
            Expr::Case(arms, default) => {
                for (cond, then) in arms {
                    if truth(&cond.eval(row)) == Some(true) {
                        return then.eval(row);
                    }
                }
                default.as_ref().map_or(Value::Null, |d| d.eval(row))
            }
            Expr::Call(f, args) => call(*f, args, row),
        }
    }

    /// The expression reads event field `f` (extra fields included).
    pub fn reads(&self, f: Field) -> bool {
        match self {
            Expr::Field(g) => *g == f,
            Expr::Lit(_) | Expr::Column(_) => false,
            Expr::Call(_, args) => args.iter().any(|a| a.reads(f)),
            Expr::Unary(_, e) | Expr::IsNull(e, _) => e.reads(f),
            Expr::Binary(_, a, b) => a.reads(f) || b.reads(f),
            Expr::Case(arms, d) => {
                arms.iter().any(|(c, t)| c.reads(f) || t.reads(f))
                    || d.as_ref().is_some_and(|d| d.reads(f))
            }
        }
    }

    /// Adds the event fields the expression reads to `set`.
    pub fn collect_fields(&self, set: &mut crate::record::FieldSet) {
        match self {
            Expr::Field(f) => set.insert(*f),
            Expr::Lit(_) | Expr::Column(_) => {}
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_fields(set)),
            Expr::Unary(_, e) | Expr::IsNull(e, _) => e.collect_fields(set),
            Expr::Binary(_, a, b) => {
                a.collect_fields(set);
                b.collect_fields(set);
            }
            Expr::Case(arms, d) => {
                for (c, t) in arms {
                    c.collect_fields(set);
                    t.collect_fields(set);
                }
                if let Some(d) = d {
                    d.collect_fields(set);
                }
            }
        }
    }

    /// True when the expression is a condition that holds (null and false both reject).
    #[inline]
    pub fn test<R: Lookup + ?Sized>(&self, row: &R) -> bool {
        // Fast path for the common `field OP literal` comparison: no owned copies.
        if let Expr::Binary(op, a, b) = self {
            if let (Expr::Field(f), Expr::Lit(lit)) = (a.as_ref(), b.as_ref()) {
                if let Some(ev) = row.event() {
                    if let (Some(l), Some(r)) = (Some(ev.get(*f)), lit.as_ref()) {
                        if let Some(res) = compare_refs(*op, l, r) {
                            return res;
                        }
                    }
                }
            }
        }
        truth(&self.eval(row)) == Some(true)
    }
}

/// `Some(result)` when the comparison could be decided on borrowed values.
#[inline]
fn compare_refs(op: BinOp, a: ValueRef<'_>, b: ValueRef<'_>) -> Option<bool> {
    let ord = match (a, b) {
        (ValueRef::Null, _) | (_, ValueRef::Null) => return Some(false),
        (ValueRef::Int(x), ValueRef::Int(y)) => x.cmp(&y),
        (ValueRef::Str(x), ValueRef::Str(y)) => x.cmp(y),
        (x, y) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y)?,
            _ => return Some(false),
        },
    };
    Some(match op {
        BinOp::Eq => ord.is_eq(),
        BinOp::Ne => ord.is_ne(),
        BinOp::Lt => ord.is_lt(),
        BinOp::Le => ord.is_le(),
        BinOp::Gt => ord.is_gt(),
        BinOp::Ge => ord.is_ge(),
        _ => return None,
    })
}

/// `v OP lit` for a numeric literal and a comparison, as `Expr::test` decides `field OP
/// literal` on borrowed values; `None` where this does not apply (another literal or
/// operator, NaN): the caller asks `Expr::test`.
#[inline]
pub fn compare_number(v: ValueRef<'_>, op: BinOp, lit: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let ord = match (v, lit) {
        (_, Value::Int(_) | Value::Float(_)) if !is_comparison(op) => return None,
        (ValueRef::Null | ValueRef::Str(_), Value::Int(_) | Value::Float(_)) => return Some(false),
        (ValueRef::Int(x), Value::Int(y)) => x.cmp(y),
        (x, Value::Int(_) | Value::Float(_)) => x.as_f64()?.partial_cmp(&lit.as_f64()?)?,
        _ => return None,
    };
    Some(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Ne => ord != Ordering::Equal,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

/// `==`, `!=`, `<`, `<=`, `>` or `>=`.
pub fn is_comparison(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
    )
}

/// SQL truth value of a value: only booleans are conditions.
pub fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn unary(op: UnOp, v: Value) -> Value {
    match (op, v) {
        (UnOp::Neg, Value::Int(i)) => i
            .checked_neg()
            .map_or(Value::Float(-(i as f64)), Value::Int),
        (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
        (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
        _ => Value::Null,
    }
}

fn binary(op: BinOp, a: Value, b: Value) -> Value {
    use BinOp::*;
    if a.is_null() || b.is_null() {
        return Value::Null;
    }
    match op {
        Add | Sub | Mul | Rem => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => {
                let r = match op {
                    Add => x.checked_add(*y),
                    Sub => x.checked_sub(*y),
                    Mul => x.checked_mul(*y),
                    _ => x.checked_rem(*y),
                };
                match r {
                    Some(r) => Value::Int(r),
                    None if op == Rem => Value::Null,
                    None => float_op(op, *x as f64, *y as f64),
                }
            }
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => float_op(op, x, y),
                _ => Value::Null,
            },
        },
        Div => match (a.as_f64(), b.as_f64()) {
            (Some(_), Some(0.0)) => Value::Null,
            (Some(x), Some(y)) => Value::Float(x / y),
            _ => Value::Null,
        },
        Eq | Ne | Lt | Le | Gt | Ge => {
            let comparable = matches!(
                (&a, &b),
                (
                    Value::Int(_) | Value::Float(_),
                    Value::Int(_) | Value::Float(_)
                ) | (Value::Str(_), Value::Str(_))
                    | (Value::Bool(_), Value::Bool(_))
                    | (Value::List(_), Value::List(_))
            );
            if !comparable {
                return Value::Null;
            }
            let ord = a.cmp(&b);
            Value::Bool(match op {
                Eq => ord.is_eq(),
                Ne => ord.is_ne(),
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        And | Or => Value::Null, // handled in eval (short-circuit, three-valued)
    }
}

fn float_op(op: BinOp, x: f64, y: f64) -> Value {
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Rem if y == 0.0 => return Value::Null,
        BinOp::Rem => x % y,
        _ => return Value::Null,
    };
    Value::Float(r)
}

fn call<R: Lookup + ?Sized>(f: Func, args: &[Expr], row: &R) -> Value {
    let arg = |i: usize| args.get(i).map_or(Value::Null, |a| a.eval(row));
    match f {
        Func::Abs => match arg(0) {
            Value::Int(i) => i
                .checked_abs()
                .map_or(Value::Float((i as f64).abs()), Value::Int),
            Value::Float(x) => Value::Float(x.abs()),
            _ => Value::Null,
        },
        Func::Size => match arg(0) {
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            _ => Value::Null,
        },
        Func::Coalesce => args
            .iter()
            .map(|a| a.eval(row))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Func::Round => {
            let digits = match arg(1) {
                Value::Int(d) => d.clamp(-15, 15) as i32,
                Value::Null if args.len() < 2 => 0,
                _ => return Value::Null,
            };
            match arg(0) {
                Value::Int(i) => Value::Int(i),
                Value::Float(x) => {
                    let m = 10f64.powi(digits);
                    Value::Float((x * m).round() / m)
                }
                _ => Value::Null,
            }
        }
        Func::Sqrt => match arg(0).as_f64() {
            Some(x) if x >= 0.0 => Value::Float(x.sqrt()),
            _ => Value::Null,
        },
        Func::If => {
            if truth(&arg(0)) == Some(true) {
                arg(1)
            } else {
                arg(2)
            }
        }
        Func::Lower | Func::Upper => match arg(0) {
            Value::Str(s) if f == Func::Lower => Value::Str(s.to_lowercase()),
            Value::Str(s) => Value::Str(s.to_uppercase()),
            _ => Value::Null,
        },
        Func::Rfc3339 => match arg(0) {
            Value::Int(ms) => Value::Str(crate::time::rfc3339(ms).into()),
            _ => Value::Null,
        },
        Func::ElementAt => match (arg(0), arg(1)) {
            // 1-based; negative counts from the end (Spark's `element_at`).
            (Value::List(mut l), Value::Int(i)) => {
                let n = l.len() as i64;
                let at = if i > 0 { i - 1 } else { n + i };
                if (0..n).contains(&at) && i != 0 {
                    l.swap_remove(at as usize)
                } else {
                    Value::Null
                }
            }
            _ => Value::Null,
        },
        Func::Split => {
            let Value::Str(text) = arg(0) else {
                return Value::Null;
            };
            let piece = |p: &str| (!p.is_empty()).then(|| Value::Str(p.into()));
            match arg(1) {
                Value::Str(sep) if !sep.is_empty() => {
                    Value::List(text.split(sep.as_str()).filter_map(piece).collect())
                }
                Value::Null if args.len() < 2 => {
                    Value::List(text.split_whitespace().filter_map(piece).collect())
                }
                _ => Value::Null,
            }
        }
    }
}
