//! Analyses over events: windows (or none), keys, aggregates shared in one pass per node.

use super::compile::{compile_gauges, compile_having, topic_of, Ctx};
use super::types::{
    bound_names, AccSpec, AggFunc, AggNode, Analysis, AnalysisKind, Explode, JobPlan, NodeInput,
    Quantiles, MAX_K, SESSION_BOUNDS,
};
use crate::record::{Field, Value};
use crate::spec::expr::{Ast, Expr, Func};
use crate::spec::AnalysisSpec;
use crate::time::window::Windows;
use crate::Error;

pub(super) fn compile_windowed(
    plan: &mut JobPlan,
    a: &AnalysisSpec,
    job_delay: i64,
    (update, complete): (bool, Option<i64>),
    input: NodeInput,
    cx: &Ctx<'_>,
) -> Result<Analysis, Error> {
    let windows = match &a.window {
        Some(w) => {
            if input == NodeInput::Late {
                return cx.err(
                    w.span(),
                    "window",
                    "late events are behind the watermark by definition: an analysis with `input = \"late\"` keeps a running result per key and has no `window`",
                );
            }
            let w = w.get_ref();
            match (&w.size, &w.session_gap) {
                (Some(size), None) => {
                    let size = cx.positive_duration(size, "window.size")?;
                    let slide = match &w.slide {
                        Some(s) => cx.positive_duration(s, "window.slide")?,
                        None => size,
                    };
                    if slide > size {
                        let span = w.slide.as_ref().map_or(0..0, |s| s.span());
                        return cx.err(
                            span,
                            "window.slide",
                            "slide must not exceed the window size",
                        );
                    }
                    Windows::sliding(size, slide)
                }
                (None, Some(gap)) => {
                    if let Some(s) = &w.slide {
                        return cx.err(
                            s.span(),
                            "window.slide",
                            "sessions do not slide: a session window has `session_gap` alone",
                        );
                    }
                    Windows::session(cx.positive_duration(gap, "window.session_gap")?)
                }
                (Some(_), Some(gap)) => {
                    return cx.err(
                        gap.span(),
                        "window.session_gap",
                        "a window has either `size` (tumbling or sliding) or `session_gap` (sessions), not both",
                    )
                }
                (None, None) => {
                    return cx.err(
                        a.name.span(),
                        "window",
                        "a window needs `size` (tumbling or sliding) or `session_gap` (sessions)",
                    )
                }
            }
        }
        None => {
            for (d, field) in [
                (&a.delay, "delay"),
                (&a.allowed_lateness, "allowed_lateness"),
            ] {
                if let Some(d) = d {
                    return cx.err(
                        d.span(),
                        field,
                        format!("`{field}` applies to windows; this analysis has no `window`"),
                    );
                }
            }
            Windows::global()
        }
    };
    let delay_ms = match &a.delay {
        Some(d) => cx.duration(d, "delay")?,
        None if windows.is_global() => 0,
        None => job_delay,
    };
    let lateness_ms = match &a.allowed_lateness {
        Some(d) => cx.duration(d, "allowed_lateness")?,
        None => 0,
    };
    if let Some(d) = &a.detect {
        return cx.err(
            d.kind.span(),
            "detect",
            "detectors run over another analysis's rows: use `from` instead of `window`",
        );
    }
    let explode = match &a.explode {
        Some(x) => {
            let (ast, alias) = cx.expr(x, "explode")?;
            let Some(name) = alias else {
                return cx.err(
                    x.span(),
                    "explode",
                    "name the element: `<list expression> as <name>` (e.g. `split(line) as word`)",
                );
            };
            if plan.field(&name).is_some() {
                return cx.err(
                    x.span(),
                    "explode",
                    format!("`{name}` is already a field: choose another name"),
                );
            }
            let list = ast
                .bind_fields(&|n| plan.field(n))
                .or_else(|m| cx.err(x.span(), "explode", m))?;
            let slot = plan
                .extra_slot(&name)
                .or_else(|m| cx.err(x.span(), "explode", m))?;
            Some((Explode { list, slot }, name))
        }
        None => None,
    };
    // Event fields: the input's, the lookup tables', and this analysis's exploded element.
    let mut known: Vec<(String, Field)> = plan
        .lookups
        .iter()
        .flat_map(|l| l.fields.iter().map(|(n, s)| (n.clone(), Field::Extra(*s))))
        .collect();
    if let Some((x, name)) = &explode {
        known.push((name.clone(), Field::Extra(x.slot)));
    }
    let schema = plan.schema.clone();
    let access = plan.access_fields();
    let field_of = |n: &str| {
        match &schema {
            Some(s) => s.field(n),
            None => Field::from_name(n)
                .or_else(|| access.iter().find(|(a, _)| *a == n).map(|(_, f)| *f)),
        }
        .or_else(|| known.iter().find(|(k, _)| k == n).map(|(_, f)| *f))
    };
    let filter = match &a.filter {
        Some(f) => {
            let (ast, _) = cx.expr(f, "where")?;
            Some(
                ast.bind_fields(&field_of)
                    .or_else(|m| cx.err(f.span(), "where", m))?,
            )
        }
        None => None,
    };
    let mut keys = Vec::new();
    let mut columns = Vec::new();
    for k in &a.group_by {
        let Some(f) = field_of(k.get_ref()) else {
            return cx.err(
                k.span(),
                "group_by",
                format!("unknown field `{}`", k.get_ref()),
            );
        };
        if keys.contains(&f) {
            return cx.err(
                k.span(),
                "group_by",
                format!("`{}` is listed twice", k.get_ref()),
            );
        }
        keys.push(f);
        columns.push(k.get_ref().clone());
    }
    if a.select.is_empty() {
        return cx.err(
            a.name.span(),
            "select",
            "a windowed analysis needs at least one `select` item",
        );
    }

    // Aggregates are collected per analysis, then merged into a shared node.
    let mut accs: Vec<AccSpec> = Vec::new();
    let mut outputs_ast = Vec::new();
    for item in &a.select {
        let (ast, alias) = cx.expr(item, "select")?;
        let name = match (alias, &ast) {
            (Some(n), _) => n,
            (None, Ast::Name(n)) => n.clone(),
            (None, _) => {
                return cx.err(
                    item.span(),
                    "select",
                    "name the column: `<expression> as <name>`",
                )
            }
        };
        let [start_col, end_col] = bound_names(windows.session);
        if name == start_col || name == end_col || columns.contains(&name) {
            return cx.err(item.span(), "select", format!("duplicate column `{name}`"));
        }
        let ast = extract_aggregates(&ast, &mut accs, &field_of)
            .or_else(|m| cx.err(item.span(), "select", m))?;
        outputs_ast.push((ast, item, name.clone()));
        columns.push(name);
    }

    let max_keys = match &a.max_keys {
        Some(m) if update || complete.is_some() || windows.is_global() => {
            return cx.err(
                m.span(),
                "max_keys",
                "`max_keys` applies to windowed analyses in `append` mode (one final row per window and key)",
            )
        }
        // Sessions have no shared window in which to rank keys: each key's sessions are its own.
        Some(m) if windows.session => {
            return cx.err(
                m.span(),
                "max_keys",
                "`max_keys` applies to fixed windows, not to `session_gap` (sessions are per key)",
            )
        }
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > u32::MAX as u64 => {
            return cx.err(
                m.span(),
                "max_keys",
                format!("max_keys must be between 1 and {}", u32::MAX),
            )
        }
        Some(m) => Some(*m.get_ref() as usize),
        None => None,
    };

    // Find or create the node these aggregates belong to (analyses keeping different numbers
    // of keys cannot share one merge).
    let hold_ms = delay_ms + lateness_ms;
    let explode = explode.map(|(x, _)| x);
    let analyses = &plan.analyses;
    let node_idx = match plan.nodes.iter().position(|n| {
        n.analyses.iter().all(|&i| analyses[i].max_keys == max_keys)
            && n.windows == windows
            && n.hold_ms == hold_ms
            && n.filter == filter
            && n.keys == keys
            && n.update == update
            && n.input == input
            && n.explode == explode
            && n.complete == complete
    }) {
        Some(i) => i,
        None => {
            plan.nodes.push(AggNode {
                windows,
                hold_ms,
                filter,
                keys: keys.clone(),
                // A session's bounds come from its first and last event: slots 0 and 1.
                accs: match windows.session {
                    true => SESSION_BOUNDS
                        .iter()
                        .map(|func| AccSpec {
                            func: func.clone(),
                            arg: Some(Expr::Field(Field::Timestamp)),
                        })
                        .collect(),
                    false => Vec::new(),
                },
                analyses: Vec::new(),
                update,
                input,
                explode,
                complete,
            });
            plan.nodes.len() - 1
        }
    };
    let node = &mut plan.nodes[node_idx];
    node.analyses.push(plan.analyses.len());
    let slot_of: Vec<usize> = accs
        .into_iter()
        .map(|acc| match node.accs.iter().position(|x| *x == acc) {
            Some(i) => i,
            None => {
                node.accs.push(acc);
                node.accs.len() - 1
            }
        })
        .collect();

    // Bind outputs against the scratch row `[keys, outputs, node accumulators]`: accumulators
    // go last so analyses added later to the same node cannot shift any index.
    let key_len = keys.len();
    let nout = outputs_ast.len();
    let mut outputs = Vec::new();
    for (ast, item, _) in outputs_ast {
        let known = &columns[..key_len + outputs.len()];
        let bound = ast
            .bind(&mut |x| match x {
                Ast::Call(f, args) if f == "__agg" => match args.as_slice() {
                    [Ast::Lit(Value::Int(i))] => Ok(Some(Expr::Column(key_len + nout + slot_of[*i as usize]))),
                    // One quantile of a percentile aggregate's list (1-based).
                    [Ast::Lit(Value::Int(i)), Ast::Lit(Value::Int(at))] => Ok(Some(Expr::Call(
                        Func::ElementAt,
                        vec![
                            Expr::Column(key_len + nout + slot_of[*i as usize]),
                            Expr::Lit(Value::Int(at + 1)),
                        ],
                    ))),
                    _ => Err("internal: bad aggregate slot".into()),
                },
                Ast::Name(n) => match known.iter().position(|c| c == n) {
                    Some(i) => Ok(Some(Expr::Column(i))),
                    None if field_of(n).is_some() => Err(format!(
                        "`{n}` is an event field: use it inside an aggregate (e.g. `avg({n})`) or in `group_by`"
                    )),
                    None => Err(format!("unknown name `{n}`")),
                },
                _ => Ok(None),
            })
            .or_else(|m| cx.err(item.span(), "select", m))?;
        outputs.push(bound);
    }

    let having = compile_having(a, &columns, cx)?;
    let gauges = compile_gauges(a, &columns, key_len, cx)?;
    Ok(Analysis {
        name: a.name.get_ref().clone(),
        topic: topic_of(a),
        description: a.description.clone(),
        gauges,
        alert: None,
        columns,
        key_len,
        kind: AnalysisKind::Windowed {
            node: node_idx,
            outputs,
        },
        having,
        delay_ms,
        lateness_ms,
        update,
        complete: complete.is_some(),
        windowless: windows.is_global(),
        max_keys,
        session: windows.session,
    })
}

/// The aggregates whose further arguments are parameters (literals): `percentile(x, q)`,
/// `percentiles(x, [q..])`, `median(x)`, `percentile_exact(x, q | [q..])`, `top_k(x, k)`.
/// A single quantile becomes `__agg(i, position)`, an element of the list that the aggregate
/// `i` finishes to: `percentile` and `median` calls over the same argument share one sketch.
fn extract_parametric(
    name: &str,
    func: AggFunc,
    args: &[Ast],
    accs: &mut Vec<AccSpec>,
    field_of: &dyn Fn(&str) -> Option<Field>,
) -> Result<Ast, String> {
    let (x, param) = match (name, args) {
        ("median", [x]) => (x, Value::Float(0.5)),
        ("median", _) => return Err("`median` takes one argument: `median(x)`".into()),
        (_, [x, Ast::Lit(p)]) => (x, p.clone()),
        ("top_k", _) => {
            return Err("`top_k` takes a field and a count: `top_k(x, 10)`".into());
        }
        _ => {
            return Err(format!(
                "`{name}` takes a field and a quantile between 0 and 1 (or a list of them): `{name}(x, 0.99)`"
            ))
        }
    };
    if contains_aggregate(x) {
        return Err(format!("aggregates cannot be nested inside `{name}`"));
    }
    let arg = Some(x.bind_fields(field_of)?);
    let quantile = |v: &Value| match v.as_f64() {
        Some(q) if (0.0..=1.0).contains(&q) => Ok(q),
        _ => Err(format!(
            "`{name}`: a quantile is a number between 0 and 1, not {}",
            v.to_json()
        )),
    };
    let placeholder = |i: usize, at: Option<usize>| {
        let mut args = vec![Ast::Lit(Value::Int(i as i64))];
        args.extend(at.map(|a| Ast::Lit(Value::Int(a as i64))));
        Ast::Call("__agg".into(), args)
    };
    let exact = matches!(func, AggFunc::PercentileExact(_));
    let make = |qs: Quantiles| match exact {
        true => AggFunc::PercentileExact(qs),
        false => AggFunc::Percentile(qs),
    };
    let spec = match (&func, param) {
        (AggFunc::TopK(_), Value::Int(k)) if (1..=i64::from(MAX_K)).contains(&k) => AccSpec {
            func: AggFunc::TopK(k as u32),
            arg,
        },
        (AggFunc::TopK(_), k) => {
            return Err(format!(
                "`top_k`: k is an integer from 1 to {MAX_K}, not {}",
                k.to_json()
            ))
        }
        (_, Value::List(qs)) if name != "percentile" || exact => {
            if qs.is_empty() || qs.len() > MAX_QUANTILES {
                return Err(format!(
                    "`{name}` takes 1 to {MAX_QUANTILES} quantiles in its list"
                ));
            }
            let qs = qs.iter().map(quantile).collect::<Result<Vec<_>, _>>()?;
            AccSpec {
                func: make(Quantiles::new(&qs, false)),
                arg,
            }
        }
        (_, v) if name != "percentiles" => {
            // One quantile: added to the shared aggregate of this argument.
            let q = quantile(&v)?;
            let shared = accs.iter_mut().enumerate().find(|(_, a)| {
                a.arg == arg
                    && match &a.func {
                        AggFunc::Percentile(qs) => !exact && qs.shared,
                        AggFunc::PercentileExact(qs) => exact && qs.shared,
                        _ => false,
                    }
            });
            if let Some((i, a)) = shared {
                if let AggFunc::Percentile(qs) | AggFunc::PercentileExact(qs) = &mut a.func {
                    if qs.iter().count() >= MAX_QUANTILES && !qs.iter().any(|x| x == q) {
                        return Err(format!("at most {MAX_QUANTILES} quantiles of one field"));
                    }
                    let at = qs.position_or_add(q);
                    return Ok(placeholder(i, Some(at)));
                }
            }
            accs.push(AccSpec {
                func: make(Quantiles::new(&[q], true)),
                arg,
            });
            return Ok(placeholder(accs.len() - 1, Some(0)));
        }
        _ => {
            return Err(
                "`percentiles` takes a list of quantiles: `percentiles(x, [0.5, 0.99])`".into(),
            )
        }
    };
    let i = accs.iter().position(|x| *x == spec).unwrap_or_else(|| {
        accs.push(spec);
        accs.len() - 1
    });
    Ok(placeholder(i, None))
}

/// Quantiles one percentile aggregate answers at most.
const MAX_QUANTILES: usize = 32;

/// Replaces aggregate calls with `__agg(i)` placeholders, collecting their specs.
fn extract_aggregates(
    ast: &Ast,
    accs: &mut Vec<AccSpec>,
    field_of: &dyn Fn(&str) -> Option<Field>,
) -> Result<Ast, String> {
    Ok(match ast {
        Ast::Call(name, args) => {
            if let Some(func) = AggFunc::from_name(name) {
                if matches!(
                    func,
                    AggFunc::Percentile(_) | AggFunc::PercentileExact(_) | AggFunc::TopK(_)
                ) {
                    return extract_parametric(name, func, args, accs, field_of);
                }
                let arg = match (&func, args.as_slice()) {
                    (AggFunc::Count, []) => None,
                    (AggFunc::Count, [a]) => Some(a),
                    (AggFunc::Count, _) => return Err("`count` takes zero or one argument".into()),
                    (_, [a]) => Some(a),
                    _ => return Err(format!("`{name}` takes exactly one argument")),
                };
                let func = if func == AggFunc::Count && arg.is_some() {
                    AggFunc::CountNonNull
                } else {
                    func
                };
                let arg = match arg {
                    Some(a) => {
                        if contains_aggregate(a) {
                            return Err(format!("aggregates cannot be nested inside `{name}`"));
                        }
                        Some(a.bind_fields(field_of)?)
                    }
                    None => None,
                };
                let spec = AccSpec { func, arg };
                let i = accs.iter().position(|x| *x == spec).unwrap_or_else(|| {
                    accs.push(spec);
                    accs.len() - 1
                });
                return Ok(Ast::Call(
                    "__agg".into(),
                    vec![Ast::Lit(crate::record::Value::Int(i as i64))],
                ));
            }
            Ast::Call(
                name.clone(),
                args.iter()
                    .map(|a| extract_aggregates(a, accs, field_of))
                    .collect::<Result<_, _>>()?,
            )
        }
        Ast::Unary(op, e) => Ast::Unary(*op, Box::new(extract_aggregates(e, accs, field_of)?)),
        Ast::Binary(op, a, b) => Ast::Binary(
            *op,
            Box::new(extract_aggregates(a, accs, field_of)?),
            Box::new(extract_aggregates(b, accs, field_of)?),
        ),
        Ast::IsNull(e, n) => Ast::IsNull(Box::new(extract_aggregates(e, accs, field_of)?), *n),
        Ast::Case(arms, d) => Ast::Case(
            arms.iter()
                .map(|(c, t)| {
                    Ok((
                        extract_aggregates(c, accs, field_of)?,
                        extract_aggregates(t, accs, field_of)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            match d {
                Some(d) => Some(Box::new(extract_aggregates(d, accs, field_of)?)),
                None => None,
            },
        ),
        other => other.clone(),
    })
}

fn contains_aggregate(ast: &Ast) -> bool {
    match ast {
        Ast::Call(name, args) => {
            AggFunc::from_name(name).is_some() || args.iter().any(contains_aggregate)
        }
        Ast::Unary(_, e) | Ast::IsNull(e, _) => contains_aggregate(e),
        Ast::Binary(_, a, b) => contains_aggregate(a) || contains_aggregate(b),
        Ast::Case(arms, d) => {
            arms.iter()
                .any(|(c, t)| contains_aggregate(c) || contains_aggregate(t))
                || d.as_deref().is_some_and(contains_aggregate)
        }
        _ => false,
    }
}
