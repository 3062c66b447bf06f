//! Parsing expression text (filters, select items with `as` aliases, `having`) into an
//! [`Ast`], with errors that give the character where parsing stopped.

use std::fmt;

use super::{Ast, BinOp, UnOp};
use crate::record::Value;

/// A parse error with the byte offset in the expression text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What is wrong there.
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
                const SYMS: [&str; 18] = [
                    "<=", ">=", "<>", "!=", "==", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")",
                    ",", "[", "]",
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

/// How deep an expression may nest (parentheses, `not`, signs, calls, operator chains).
/// Parsing, binding and evaluation recurse over the tree, so an unbounded depth lets a few
/// kilobytes of spec overflow the stack of the process that loads it (a cluster's control
/// thread, too); no real filter comes near this.
pub const MAX_DEPTH: usize = 128;

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    /// Nesting of the parse functions now running.
    nest: usize,
    /// The depth of the tree the last parse function returned.
    depth: usize,
}

/// Parses an expression, optionally followed by `as NAME` (returned separately).
pub fn parse_with_alias(src: &str) -> Result<(Ast, Option<String>), ExprError> {
    let mut p = Parser {
        toks: Lexer::run(src)?,
        at: 0,
        nest: 0,
        depth: 0,
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

    /// Enters one more level of nesting, or fails past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), ExprError> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(())
    }
    fn too_deep(&self) -> ExprError {
        self.err(&format!("expression nested deeper than {MAX_DEPTH} levels"))
    }
    /// Records that the tree just built is one level above children of depth `below`.
    fn built(&mut self, below: usize) -> Result<(), ExprError> {
        self.depth = below + 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(())
    }
    /// A left-associative chain `l op r op r ...` (a flat `1+1+...` is as deep as it is long).
    fn chain(
        &mut self,
        next: fn(&mut Self) -> Result<Ast, ExprError>,
        op: fn(&mut Self) -> Option<BinOp>,
    ) -> Result<Ast, ExprError> {
        let mut l = next(self)?;
        let mut depth = self.depth;
        while let Some(op) = op(self) {
            let r = next(self)?;
            self.built(depth.max(self.depth))?;
            depth = self.depth;
            l = Ast::Binary(op, Box::new(l), Box::new(r));
        }
        self.depth = depth;
        Ok(l)
    }

    fn expr(&mut self) -> Result<Ast, ExprError> {
        self.enter()?;
        let e = self.chain(Self::and, |p| p.keyword("or").then_some(BinOp::Or));
        self.nest -= 1;
        e
    }
    fn and(&mut self) -> Result<Ast, ExprError> {
        self.chain(Self::not, |p| p.keyword("and").then_some(BinOp::And))
    }
    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.keyword("not") {
            self.enter()?;
            let e = self.not()?;
            self.nest -= 1;
            self.built(self.depth)?;
            return Ok(Ast::Unary(UnOp::Not, Box::new(e)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let l = self.add()?;
        let left = self.depth;
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
                self.built(left)?;
                return Ok(Ast::IsNull(Box::new(l), negated));
            }
            _ => return Ok(l),
        };
        self.at += 1;
        let r = self.add()?;
        self.built(left.max(self.depth))?;
        Ok(Ast::Binary(op, Box::new(l), Box::new(r)))
    }
    fn add(&mut self) -> Result<Ast, ExprError> {
        self.chain(Self::mul, |p| {
            if p.sym("+") {
                Some(BinOp::Add)
            } else if p.sym("-") {
                Some(BinOp::Sub)
            } else {
                None
            }
        })
    }
    fn mul(&mut self) -> Result<Ast, ExprError> {
        self.chain(Self::unary, |p| {
            if p.sym("*") {
                Some(BinOp::Mul)
            } else if p.sym("/") {
                Some(BinOp::Div)
            } else if p.sym("%") {
                Some(BinOp::Rem)
            } else {
                None
            }
        })
    }
    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.sym("-") {
            self.enter()?;
            let e = self.unary()?;
            self.nest -= 1;
            return Ok(match e {
                Ast::Lit(Value::Int(i)) => Ast::Lit(Value::Int(-i)),
                Ast::Lit(Value::Float(f)) => Ast::Lit(Value::Float(-f)),
                e => {
                    self.built(self.depth)?;
                    Ast::Unary(UnOp::Neg, Box::new(e))
                }
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (off, tok) = self.next();
        self.depth = 1;
        match tok {
            Tok::Num(v) => Ok(Ast::Lit(v)),
            Tok::Str(s) => Ok(Ast::Lit(Value::Str(s.into()))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            // A list of literals, such as the quantiles of `percentiles(x, [0.5, 0.99])`.
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.sym("]") {
                    loop {
                        let at = self.offset();
                        match self.expr()? {
                            Ast::Lit(v) => items.push(v),
                            _ => return Err(self.err_at(at, "a list holds literals only")),
                        }
                        if self.sym("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Ast::Lit(Value::List(items)))
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
                    let mut below = 0;
                    if !self.sym(")") {
                        loop {
                            if self.sym("*") {
                                // count(*) is count()
                                if !matches!(self.peek(), Tok::Sym(")")) {
                                    return Err(self.err("expected `)` after `*`"));
                                }
                            } else {
                                args.push(self.expr()?);
                                below = below.max(self.depth);
                            }
                            if self.sym(")") {
                                break;
                            }
                            self.expect(",")?;
                        }
                    }
                    self.built(below)?;
                    Ok(Ast::Call(lower, args))
                } else {
                    self.depth = 1;
                    Ok(Ast::Name(name))
                }
            }
            Tok::End => Err(self.err_at(off, "expression ends too early")),
            Tok::Sym(s) => Err(self.err_at(off, &format!("unexpected `{s}`"))),
        }
    }
    fn case(&mut self) -> Result<Ast, ExprError> {
        let mut arms = Vec::new();
        let mut below = 0;
        while self.keyword("when") {
            let c = self.expr()?;
            below = below.max(self.depth);
            if !self.keyword("then") {
                return Err(self.err("expected `then`"));
            }
            arms.push((c, self.expr()?));
            below = below.max(self.depth);
        }
        if arms.is_empty() {
            return Err(self.err("expected `when` after `case`"));
        }
        let default = if self.keyword("else") {
            let e = self.expr()?;
            below = below.max(self.depth);
            Some(Box::new(e))
        } else {
            None
        };
        if !self.keyword("end") {
            return Err(self.err("expected `end` to close `case`"));
        }
        self.built(below)?;
        Ok(Ast::Case(arms, default))
    }
}
