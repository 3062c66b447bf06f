//! The small SQL-like expression language of specs: filters (`status_code >= 400`), select
//! items (`count_if(status_code >= 400) * 100.0 / count() as error_rate`) and `having` clauses.
//!
//! Parsing gives an [`Ast`]; binding (in `plan`) resolves names to event fields, group keys,
//! aggregate slots or result columns and gives an [`Expr`] that evaluates without lookups.
//! Semantics follow SQL: comparisons with null are null, `and`/`or` are three-valued, a filter
//! keeps a row only when its condition is true, `/` always divides as floats and is null on 0.

use std::fmt;

use crate::record::{Event, Field, Value, ValueRef};

/// A parsed, unbound expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Lit(Value),
    Name(String),
    Call(String, Vec<Ast>),
    Unary(UnOp, Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    IsNull(Box<Ast>, bool),
    Case(Vec<(Ast, Ast)>, Option<Box<Ast>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A bound expression: names resolved to where their values live.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// A field of the input event.
    Field(Field),
    /// A column of the row being computed (group keys, aggregate results, earlier outputs).
    Column(usize),
    Call(Func, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
}

/// Scalar functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Abs,
    Size,
    Coalesce,
    Round,
    Sqrt,
    If,
    Lower,
    Upper,
    /// Epoch milliseconds as an RFC 3339 UTC string (as `window_start` is written).
    Rfc3339,
    /// `split(text[, sep])`: the non-empty pieces of `text` between occurrences of `sep`
    /// (default: any whitespace), as a list (for `explode`).
    Split,
}

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "abs" => Func::Abs,
            "size" | "len" | "length" => Func::Size,
            "coalesce" => Func::Coalesce,
            "round" => Func::Round,
            "sqrt" => Func::Sqrt,
            "if" => Func::If,
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "rfc3339" => Func::Rfc3339,
            "split" => Func::Split,
            _ => return None,
        })
    }

    /// Allowed argument counts.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Func::Abs | Func::Size | Func::Sqrt | Func::Lower | Func::Upper | Func::Rfc3339 => {
                (1, 1)
            }
            Func::Round | Func::Split => (1, 2),
            Func::If => (3, 3),
            Func::Coalesce => (1, usize::MAX),
        }
    }
}

/// Where a bound expression reads its inputs.
pub trait Lookup {
    fn field(&self, f: Field) -> Value;
    fn column(&self, i: usize) -> Value;
    /// The event itself, when the row is one (enables allocation-free comparisons).
    fn event(&self) -> Option<&Event> {
        None
    }
}

impl Lookup for Event {
    #[inline]
    fn field(&self, f: Field) -> Value {
        self.get(f).to_owned()
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
            Value::Int(ms) => Value::Str(crate::sinks::render::rfc3339(ms).into()),
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

// ---------------------------------------------------------------------------------------------
// Parsing

/// A parse error with the byte offset in the expression text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Sym(&'static str),
    End,
}

struct Lexer<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
}

impl<'a> Lexer<'a> {
    fn run(src: &'a str) -> Result<Vec<(usize, Tok)>, ExprError> {
        let mut lx = Lexer {
            src,
            toks: Vec::new(),
        };
        let b = src.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                    i += 1;
                }
                if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                    i += 1;
                    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                        i += 1;
                    }
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let text: String = src[start..i].chars().filter(|c| *c != '_').collect();
                let v = if text.contains(['.', 'e', 'E']) {
                    text.parse::<f64>().map(Value::Float).ok()
                } else {
                    text.parse::<i64>().map(Value::Int).ok()
                };
                let v = v.ok_or_else(|| ExprError {
                    offset: start,
                    message: format!("bad number `{}`", &src[start..i]),
                })?;
                lx.toks.push((start, Tok::Num(v)));
            } else if c == b'\'' || c == b'"' {
                // 'it''s' doubles the quote, as in SQL.
                let q = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match b.get(i) {
                        None => {
                            return Err(ExprError {
                                offset: start,
                                message: "unterminated string".into(),
                            })
                        }
                        Some(&x) if x == q => {
                            if b.get(i + 1) == Some(&q) {
                                s.push(q as char);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => {
                            let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                lx.toks.push((start, Tok::Str(s)));
            } else if c.is_ascii_alphabetic() || c == b'_' {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                lx.toks.push((start, Tok::Ident(src[start..i].to_string())));
            } else {
                const SYMS: [&str; 16] = [
                    "<=", ">=", "<>", "!=", "==", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")",
                    ",",
                ];
                let sym = SYMS.iter().find(|s| lx.src[i..].starts_with(**s));
                match sym {
                    Some(s) => {
                        lx.toks.push((start, Tok::Sym(s)));
                        i += s.len();
                    }
                    None => {
                        return Err(ExprError {
                            offset: start,
                            message: format!(
                                "unexpected character `{}`",
                                src[i..].chars().next().unwrap_or('?')
                            ),
                        })
                    }
                }
            }
        }
        lx.toks.push((src.len(), Tok::End));
        Ok(lx.toks)
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
}

/// Parses an expression, optionally followed by `as NAME` (returned separately).
pub fn parse_with_alias(src: &str) -> Result<(Ast, Option<String>), ExprError> {
    let mut p = Parser {
        toks: Lexer::run(src)?,
        at: 0,
    };
    let e = p.expr()?;
    let alias = if p.keyword("as") {
        match p.next() {
            (_, Tok::Ident(name)) => Some(name),
            (off, _) => return Err(p.err_at(off, "expected a name after `as`")),
        }
    } else {
        None
    };
    match p.peek() {
        Tok::End => Ok((e, alias)),
        _ => Err(p.err("unexpected text after the expression")),
    }
}

/// Parses an expression with no alias.
pub fn parse(src: &str) -> Result<Ast, ExprError> {
    match parse_with_alias(src)? {
        (e, None) => Ok(e),
        (_, Some(_)) => Err(ExprError {
            offset: 0,
            message: "`as` is only allowed in select items".into(),
        }),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].1
    }
    fn offset(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].0
    }
    fn next(&mut self) -> (usize, Tok) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        self.at += 1;
        t
    }
    fn err(&self, msg: &str) -> ExprError {
        self.err_at(self.offset(), msg)
    }
    fn err_at(&self, offset: usize, msg: &str) -> ExprError {
        ExprError {
            offset,
            message: msg.to_string(),
        }
    }
    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(x) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) -> Result<(), ExprError> {
        if self.sym(s) {
            Ok(())
        } else {
            Err(self.err(&format!("expected `{s}`")))
        }
    }

    fn expr(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.and()?;
        while self.keyword("or") {
            l = Ast::Binary(BinOp::Or, Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.not()?;
        while self.keyword("and") {
            l = Ast::Binary(BinOp::And, Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.keyword("not") {
            return Ok(Ast::Unary(UnOp::Not, Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let l = self.add()?;
        let op = match self.peek() {
            Tok::Sym("=") | Tok::Sym("==") => BinOp::Eq,
            Tok::Sym("!=") | Tok::Sym("<>") => BinOp::Ne,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            Tok::Ident(s) if s.eq_ignore_ascii_case("is") => {
                self.at += 1;
                let negated = self.keyword("not");
                if !self.keyword("null") {
                    return Err(self.err("expected `null` after `is`"));
                }
                return Ok(Ast::IsNull(Box::new(l), negated));
            }
            _ => return Ok(l),
        };
        self.at += 1;
        Ok(Ast::Binary(op, Box::new(l), Box::new(self.add()?)))
    }
    fn add(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.mul()?;
        loop {
            let op = if self.sym("+") {
                BinOp::Add
            } else if self.sym("-") {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            l = Ast::Binary(op, Box::new(l), Box::new(self.mul()?));
        }
    }
    fn mul(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.unary()?;
        loop {
            let op = if self.sym("*") {
                BinOp::Mul
            } else if self.sym("/") {
                BinOp::Div
            } else if self.sym("%") {
                BinOp::Rem
            } else {
                return Ok(l);
            };
            l = Ast::Binary(op, Box::new(l), Box::new(self.unary()?));
        }
    }
    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.sym("-") {
            return Ok(match self.unary()? {
                Ast::Lit(Value::Int(i)) => Ast::Lit(Value::Int(-i)),
                Ast::Lit(Value::Float(f)) => Ast::Lit(Value::Float(-f)),
                e => Ast::Unary(UnOp::Neg, Box::new(e)),
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (off, tok) = self.next();
        match tok {
            Tok::Num(v) => Ok(Ast::Lit(v)),
            Tok::Str(s) => Ok(Ast::Lit(Value::Str(s.into()))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "null" => return Ok(Ast::Lit(Value::Null)),
                    "true" => return Ok(Ast::Lit(Value::Bool(true))),
                    "false" => return Ok(Ast::Lit(Value::Bool(false))),
                    "case" => return self.case(),
                    _ => {}
                }
                if self.sym("(") {
                    let mut args = Vec::new();
                    if !self.sym(")") {
                        loop {
                            if self.sym("*") {
                                // count(*) is count()
                                if !matches!(self.peek(), Tok::Sym(")")) {
                                    return Err(self.err("expected `)` after `*`"));
                                }
                            } else {
                                args.push(self.expr()?);
                            }
                            if self.sym(")") {
                                break;
                            }
                            self.expect(",")?;
                        }
                    }
                    Ok(Ast::Call(lower, args))
                } else {
                    Ok(Ast::Name(name))
                }
            }
            Tok::End => Err(self.err_at(off, "expression ends too early")),
            Tok::Sym(s) => Err(self.err_at(off, &format!("unexpected `{s}`"))),
        }
    }
    fn case(&mut self) -> Result<Ast, ExprError> {
        let mut arms = Vec::new();
        while self.keyword("when") {
            let c = self.expr()?;
            if !self.keyword("then") {
                return Err(self.err("expected `then`"));
            }
            arms.push((c, self.expr()?));
        }
        if arms.is_empty() {
            return Err(self.err("expected `when` after `case`"));
        }
        let default = if self.keyword("else") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        if !self.keyword("end") {
            return Err(self.err("expected `end` to close `case`"));
        }
        Ok(Ast::Case(arms, default))
    }
}

impl Ast {
    /// Binds names with `resolve` (which reports unknown names) and functions by name.
    /// Aggregate calls must have been replaced before (see `plan`); any left are errors.
    pub fn bind(
        &self,
        resolve: &mut dyn FnMut(&Ast) -> Result<Option<Expr>, String>,
    ) -> Result<Expr, String> {
        if let Some(e) = resolve(self)? {
            return Ok(e);
        }
        Ok(match self {
            Ast::Lit(v) => Expr::Lit(v.clone()),
            Ast::Name(n) => return Err(format!("unknown name `{n}`")),
            Ast::Call(name, args) => {
                let f =
                    Func::from_name(name).ok_or_else(|| format!("unknown function `{name}`"))?;
                let (lo, hi) = f.arity();
                if args.len() < lo || args.len() > hi {
                    return Err(format!(
                        "`{name}` takes {lo}..{hi} arguments, got {}",
                        args.len()
                    ));
                }
                Expr::Call(
                    f,
                    args.iter()
                        .map(|a| a.bind(resolve))
                        .collect::<Result<_, _>>()?,
                )
            }
            Ast::Unary(op, e) => Expr::Unary(*op, Box::new(e.bind(resolve)?)),
            Ast::Binary(op, a, b) => {
                Expr::Binary(*op, Box::new(a.bind(resolve)?), Box::new(b.bind(resolve)?))
            }
            Ast::IsNull(e, n) => Expr::IsNull(Box::new(e.bind(resolve)?), *n),
            Ast::Case(arms, d) => Expr::Case(
                arms.iter()
                    .map(|(c, t)| Ok((c.bind(resolve)?, t.bind(resolve)?)))
                    .collect::<Result<_, String>>()?,
                match d {
                    Some(d) => Some(Box::new(d.bind(resolve)?)),
                    None => None,
                },
            ),
        })
    }

    /// Binds against event fields only (filters and aggregate arguments).
    pub fn bind_event(&self) -> Result<Expr, String> {
        self.bind_fields(&Field::from_name)
    }

    /// Binds against event fields named by `field` (the input fields and the job's extra
    /// fields, see [`Field::Extra`]).
    pub fn bind_fields(&self, field: &dyn Fn(&str) -> Option<Field>) -> Result<Expr, String> {
        self.bind(&mut |a| match a {
            Ast::Name(n) => field(n)
                .map(|f| Some(Expr::Field(f)))
                .ok_or_else(|| format!("unknown field `{n}`")),
            _ => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        Event {
            timestamp: 1000,
            service: Some("api".into()),
            status_code: Some(503),
            response_time: Some(0.5),
            ..Event::default()
        }
    }

    fn eval(src: &str) -> Value {
        parse(src).unwrap().bind_event().unwrap().eval(&ev())
    }

    #[test]
    fn arithmetic_and_comparison() {
        assert_eq!(eval("1 + 2 * 3"), Value::Int(7));
        assert_eq!(eval("(1 + 2) * 3"), Value::Int(9));
        assert_eq!(eval("7 / 2"), Value::Float(3.5));
        assert_eq!(eval("1 / 0"), Value::Null);
        assert_eq!(eval("-response_time"), Value::Float(-0.5));
        assert_eq!(eval("status_code >= 500"), Value::Bool(true));
        assert_eq!(
            eval("service = 'api' and status_code < 400"),
            Value::Bool(false)
        );
        assert_eq!(eval("'it''s'"), Value::Str("it's".into()));
    }

    #[test]
    fn rfc3339_formats_epoch_millis() {
        assert_eq!(
            eval("rfc3339(timestamp)"),
            Value::Str("1970-01-01T00:00:01Z".into())
        );
        assert_eq!(
            eval("rfc3339(1764000000500)"),
            Value::Str("2025-11-24T16:00:00.500Z".into())
        );
        assert_eq!(eval("rfc3339(user_id)"), Value::Null);
    }

    #[test]
    fn null_semantics() {
        assert_eq!(eval("user_id = 'x'"), Value::Null);
        assert_eq!(eval("user_id is null"), Value::Bool(true));
        assert_eq!(eval("user_id is not null"), Value::Bool(false));
        assert_eq!(eval("user_id = 'x' or true"), Value::Bool(true));
        assert_eq!(eval("user_id = 'x' and false"), Value::Bool(false));
        assert_eq!(eval("user_id = 'x' and true"), Value::Null);
        assert_eq!(eval("coalesce(user_id, service)"), Value::Str("api".into()));
        assert!(!parse("user_id = 'x'")
            .unwrap()
            .bind_event()
            .unwrap()
            .test(&ev()));
        assert!(parse("status_code > 400")
            .unwrap()
            .bind_event()
            .unwrap()
            .test(&ev()));
    }

    #[test]
    fn case_and_functions() {
        let src = "case when status_code < 400 then 'ok' when status_code < 500 then 'client' else 'server' end";
        assert_eq!(eval(src), Value::Str("server".into()));
        assert_eq!(eval("abs(-3)"), Value::Int(3));
        assert_eq!(eval("round(2.345, 2)"), Value::Float(2.35));
        assert_eq!(eval("if(status_code > 500, 1, 0)"), Value::Int(1));
        assert_eq!(eval("size(service)"), Value::Int(3));
    }

    #[test]
    fn split_gives_the_non_empty_pieces() {
        let words = |xs: &[&str]| Value::List(xs.iter().map(|x| Value::Str((*x).into())).collect());
        assert_eq!(eval("split('a b  a ')"), words(&["a", "b", "a"]));
        assert_eq!(eval("split(' a\tb ')"), words(&["a", "b"]));
        assert_eq!(eval("split('x,,y,', ',')"), words(&["x", "y"]));
        assert_eq!(eval("split('')"), words(&[]));
        assert_eq!(eval("split(user_id)"), Value::Null);
        assert_eq!(eval("split('a', '')"), Value::Null);
        assert_eq!(eval("size(split('a b c'))"), Value::Int(3));
    }

    #[test]
    fn aliases_and_errors() {
        let (_, alias) = parse_with_alias("count() as n").unwrap();
        assert_eq!(alias.as_deref(), Some("n"));
        let e = parse("1 +").unwrap_err();
        assert!(e.message.contains("ends too early"), "{e}");
        let e = parse("a $ b").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(parse("x as y").is_err());
        assert!(parse("case when 1 then 2").is_err());
        let err = parse("nope > 1").unwrap().bind_event().unwrap_err();
        assert!(err.contains("unknown field `nope`"));
        let err = parse("frob(1)").unwrap().bind_event().unwrap_err();
        assert!(err.contains("unknown function"));
    }

    #[test]
    fn count_star_parses_as_no_args() {
        assert_eq!(
            parse("count(*)").unwrap(),
            Ast::Call("count".into(), vec![])
        );
    }
}
