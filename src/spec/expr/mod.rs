//! The small SQL-like expression language of specs: filters (`status_code >= 400`), select
//! items (`count_if(status_code >= 400) * 100.0 / count() as error_rate`) and `having` clauses.
//!
//! Parsing gives an [`Ast`]; binding (in `plan`) resolves names to event fields, group keys,
//! aggregate slots or result columns and gives an [`Expr`] that evaluates without lookups.
//! Semantics follow SQL: comparisons with null are null, `and`/`or` are three-valued, a filter
//! keeps a row only when its condition is true, `/` always divides as floats and is null on 0.

mod eval;
mod parse;

pub use eval::{compare_number, is_comparison, truth, Lookup};
pub use parse::{parse, parse_with_alias, ExprError};

#[cfg(test)]
use crate::record::Event;
use crate::record::{Field, Value};

/// A parsed, unbound expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    /// A literal.
    Lit(Value),
    /// A name: an event field, a column or an alias, resolved when bound.
    Name(String),
    /// `f(args..)`: a scalar function or an aggregate.
    Call(String, Vec<Ast>),
    /// `-x`, `not x`.
    Unary(UnOp, Box<Ast>),
    /// `a op b`.
    Binary(BinOp, Box<Ast>, Box<Ast>),
    /// `x is null` (`false`) or `x is not null` (`true`).
    IsNull(Box<Ast>, bool),
    /// `case when c then v .. [else e] end`.
    Case(Vec<(Ast, Ast)>, Option<Box<Ast>>),
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// `-x`.
    Neg,
    /// `not x`.
    Not,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `and`.
    And,
    /// `or`.
    Or,
}

/// A bound expression: names resolved to where their values live.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A field of the input event.
    Field(Field),
    /// A column of the row being computed (group keys, aggregate results, earlier outputs).
    Column(usize),
    /// A scalar function call.
    Call(Func, Vec<Expr>),
    /// `-x`, `not x`.
    Unary(UnOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `x is null` (`false`) or `x is not null` (`true`).
    IsNull(Box<Expr>, bool),
    /// `case when c then v .. [else e] end`.
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
}

/// Scalar functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `abs(x)`.
    Abs,
    /// `size(x)`: a string's length in characters, a list's in elements.
    Size,
    /// `coalesce(a, b, ..)`: the first non-null argument.
    Coalesce,
    /// `round(x[, digits])`.
    Round,
    /// `sqrt(x)`.
    Sqrt,
    /// `if(cond, then, else)`.
    If,
    /// `lower(s)`.
    Lower,
    /// `upper(s)`.
    Upper,
    /// Epoch milliseconds as an RFC 3339 UTC string (as `window_start` is written).
    Rfc3339,
    /// `split(text[, sep])`: the non-empty pieces of `text` between occurrences of `sep`
    /// (default: any whitespace), as a list (for `explode`).
    Split,
    /// `element_at(list, i)`: the `i`-th element, 1-based, negative from the end; null out of
    /// range.
    ElementAt,
}

impl Func {
    /// The function a spec names (with its aliases).
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
            "element_at" => Func::ElementAt,
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
            Func::ElementAt => (2, 2),
            Func::Coalesce => (1, usize::MAX),
        }
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

    const MAX_DEPTH_FOR_TESTS: usize = parse::MAX_DEPTH;

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
    fn list_literals_and_element_at() {
        assert_eq!(eval("element_at([1, -2.5, 'x'], 2)"), Value::Float(-2.5));
        assert_eq!(
            eval("element_at([1, -2.5, 'x'], -1)"),
            Value::Str("x".into())
        );
        for out_of_range in ["0", "4", "-4"] {
            let src = format!("element_at([1, 2, 3], {out_of_range})");
            assert_eq!(eval(&src), Value::Null, "{src}");
        }
        assert_eq!(eval("element_at(service, 1)"), Value::Null);
        assert_eq!(eval("size([])"), Value::Int(0));
        let e = parse("[1, status_code]").unwrap_err();
        assert!(e.message.contains("literals only"), "{e}");
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

    /// The depth of a tree, counted without recursion (the trees tested here are the ones
    /// recursion must not meet).
    fn depth(ast: &Ast) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(ast, 1)];
        while let Some((a, d)) = stack.pop() {
            deepest = deepest.max(d);
            match a {
                Ast::Lit(_) | Ast::Name(_) => {}
                Ast::Call(_, args) => stack.extend(args.iter().map(|x| (x, d + 1))),
                Ast::Unary(_, x) | Ast::IsNull(x, _) => stack.push((x, d + 1)),
                Ast::Binary(_, l, r) => stack.extend([(&**l, d + 1), (&**r, d + 1)]),
                Ast::Case(arms, default) => {
                    for (c, v) in arms {
                        stack.extend([(c, d + 1), (v, d + 1)]);
                    }
                    stack.extend(default.iter().map(|x| (&**x, d + 1)));
                }
            }
        }
        deepest
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_not_a_stack_overflow() {
        let n = MAX_DEPTH_FOR_TESTS;
        let deep: Vec<String> = vec![
            format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000)),
            format!("{}true", "not ".repeat(20_000)),
            format!("{}1", "-".repeat(20_000)),
            format!("{}x", "- ".repeat(20_000)),
            vec!["1"; 20_000].join(" + "),
            vec!["x"; 20_000].join(" * "),
            vec!["true"; 20_000].join(" and "),
            vec!["true"; 20_000].join(" or "),
            format!("{}1{}", "abs(".repeat(20_000), ")".repeat(20_000)),
            format!(
                "{}1{}",
                "case when true then ".repeat(5_000),
                " end".repeat(5_000)
            ),
            format!("{}1{}", "(1 + ".repeat(20_000), ")".repeat(20_000)),
        ];
        for src in &deep {
            let e = parse(src).unwrap_err();
            assert!(
                e.message == format!("expression nested deeper than {n} levels"),
                "{}...: {e}",
                &src[..40]
            );
        }
        // Just within the limit: parsed, and the tree is no deeper than the limit.
        let ok = [
            format!("{}1{}", "(".repeat(n - 1), ")".repeat(n - 1)),
            vec!["1"; n].join(" + "),
            format!("{}true", "not ".repeat(n - 1)),
        ];
        for src in &ok {
            let ast = parse(src).unwrap();
            assert!(depth(&ast) <= n, "{}", depth(&ast));
        }
        assert_eq!(depth(&parse(&vec!["1"; n].join(" + ")).unwrap()), n);
        assert!(parse(&vec!["1"; n + 1].join(" + ")).is_err());
        assert_eq!(eval(&vec!["1"; n].join(" + ")), Value::Int(n as i64));
    }
}
