//! The compiler driver: a spec's job-level settings, then each clause (`Ctx` carries the
//! spec text for `file:line:col: field: message` errors).

use std::collections::HashMap;

use toml::Spanned;

use super::alert::compile_alert;
use super::derived::compile_derived;
use super::io::{compile_checkpoint, compile_sink, compile_source};
use super::lookup::compile_lookups;
use super::schema::compile_schema;
use super::types::{AggFunc, Analysis, AnalysisKind, JobPlan, NodeInput};
use super::windowed::compile_windowed;
use crate::spec::expr::{self, Ast, Expr};
use crate::spec::{AnalysisSpec, Input, JobSpec, Mode, SpecSource};
use crate::time::duration::parse_ms;
use crate::Error;

pub(super) struct Ctx<'a> {
    pub(super) src: &'a SpecSource<'a>,
}

impl Ctx<'_> {
    pub(super) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        msg: impl Into<String>,
    ) -> Result<T, Error> {
        Err(self.src.error(span, field, msg))
    }

    pub(super) fn duration(&self, v: &Spanned<String>, field: &str) -> Result<i64, Error> {
        parse_ms(v.get_ref()).or_else(|m| self.err(v.span(), field, m))
    }

    pub(super) fn positive_duration(&self, v: &Spanned<String>, field: &str) -> Result<i64, Error> {
        match self.duration(v, field)? {
            0 => self.err(v.span(), field, "must be greater than zero"),
            ms => Ok(ms),
        }
    }

    pub(super) fn expr(
        &self,
        v: &Spanned<String>,
        field: &str,
    ) -> Result<(Ast, Option<String>), Error> {
        expr::parse_with_alias(v.get_ref()).or_else(|e| self.err(v.span(), field, e.to_string()))
    }
}

impl JobPlan {
    /// Validates a spec and compiles it.
    pub fn compile(spec: &JobSpec, src: &SpecSource<'_>) -> Result<JobPlan, Error> {
        let cx = Ctx { src };
        let name = spec.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return cx.err(
                spec.name.span(),
                "name",
                "job name must be non-empty and use only letters, digits, `-`, `_`, `.`",
            );
        }
        let source = compile_source(spec, &cx)?;
        let sink = compile_sink(spec, &cx)?;
        let checkpoint = compile_checkpoint(spec, &source, &cx)?;
        let delay_ms = match &spec.watermark.delay {
            Some(d) => cx.duration(d, "watermark.delay")?,
            // Processing time has no disorder.
            None if source.format.processing_time() => 0,
            None => 300_000,
        };
        let idle_timeout_ms = match &spec.watermark.idle_timeout {
            Some(d) => cx.positive_duration(d, "watermark.idle_timeout")?,
            None => 30_000,
        };
        let max_future_ms = match &spec.watermark.max_future {
            Some(d) => cx.positive_duration(d, "watermark.max_future")?,
            None => 3_600_000,
        };
        if spec.analyses.is_empty() {
            return cx.err(
                spec.name.span(),
                "analysis",
                "a job needs at least one [[analysis]]",
            );
        }

        let mut plan = JobPlan {
            name,
            description: spec.description.clone(),
            source,
            sink,
            idle_timeout_ms,
            max_future_ms,
            watermark_delay_ms: delay_ms,
            granularity_ms: 0,
            nodes: Vec::new(),
            analyses: Vec::new(),
            extras: Vec::new(),
            lookups: Vec::new(),
            schema: None,
            checkpoint,
        };
        plan.schema = compile_schema(&mut plan, spec, &cx)?.map(std::sync::Arc::new);
        compile_lookups(&mut plan, spec, &cx)?;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut triggers: Vec<i64> = Vec::new();
        for a in &spec.analyses {
            let aname = a.name.get_ref().clone();
            if !aname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || aname.is_empty()
            {
                return cx.err(
                    a.name.span(),
                    "name",
                    "analysis name must be non-empty and use only letters, digits, `-`, `_`, `.`",
                );
            }
            if names.contains_key(&aname) {
                return cx.err(
                    a.name.span(),
                    "name",
                    format!("duplicate analysis `{aname}`"),
                );
            }
            let (update, complete) = match a.mode.as_ref().map(|m| *m.get_ref()) {
                None | Some(Mode::Append) => (false, false),
                Some(Mode::Update) => (true, false),
                Some(Mode::Complete) => (false, true),
            };
            let trigger = match (&a.trigger, update || complete) {
                (Some(t), false) => {
                    return cx.err(
                        t.span(),
                        "trigger",
                        "`trigger` applies to `mode = \"update\"` or `\"complete\"` only",
                    )
                }
                (Some(t), true) => Some(cx.positive_duration(t, "trigger")?),
                (None, true) => Some(DEFAULT_TRIGGER_MS),
                (None, false) => None,
            };
            triggers.extend(trigger);
            if let (true, Some(w)) = (complete, &a.window) {
                return cx.err(w.span(), "window", "`mode = \"complete\"` emits the whole table of running results per key: it takes no `window` (use `update` or `append` for windows)");
            }
            if let (true, Some(f)) = (complete, &a.from) {
                return cx.err(
                    f.span(),
                    "mode",
                    "`mode = \"complete\"` applies to aggregates over events, not to `from`",
                );
            }
            let complete = trigger.filter(|_| complete);
            let input = match a.input.as_ref().map(|i| *i.get_ref()) {
                None | Some(Input::Events) => NodeInput::Events,
                Some(Input::Late) => NodeInput::Late,
            };
            let mut analysis = match (&a.window, &a.from) {
                (Some(_), Some(f)) => return cx.err(f.span(), "from", "an analysis has either `window` (over events) or `from` (over another analysis), not both"),
                (None, None) if !update && complete.is_none() => return cx.err(a.name.span(), "window", format!("analysis `{aname}` needs `window` (over events) or `from` (over another analysis); without a window, `mode = \"update\"` keeps a running result per key and `mode = \"complete\"` emits the whole table")),
                (_, None) => compile_windowed(&mut plan, a, delay_ms, (update, complete), input, &cx)?,
                (None, Some(_)) => compile_derived(&plan, &names, a, update, &cx)?,
            };
            analysis.alert = compile_alert(a, &analysis, &cx)?;
            names.insert(aname, plan.analyses.len());
            plan.analyses.push(analysis);
        }
        if plan.analyses.iter().any(|a| a.max_keys.is_some()) {
            plan.analyses.push(Analysis {
                name: plan.overflow_topic(),
                topic: plan.overflow_topic(),
                description: Some("keys beyond an analysis's `max_keys`".into()),
                columns: ["analysis", "key", "reason"].map(String::from).to_vec(),
                key_len: 0,
                kind: AnalysisKind::Overflow,
                having: None,
                delay_ms: 0,
                lateness_ms: 0,
                update: false,
                complete: false,
                windowless: false,
                gauges: Vec::new(),
                max_keys: None,
                alert: None,
                session: false,
            });
        }
        // Built-in fields a JSON schema does not list are read from their own keys, and only
        // those some analysis uses.
        let used = plan.used_fields();
        if let Some(s) = plan.schema.as_mut().and_then(std::sync::Arc::get_mut) {
            let span = spec.source.format.span();
            s.add_implicit(used)
                .or_else(|m| cx.err(span, "schema.fields", m))?;
        }
        // Update-mode analyses also emit at every multiple of their trigger.
        plan.granularity_ms = plan
            .nodes
            .iter()
            .filter(|n| !n.windows.is_global())
            .map(|n| gcd(n.windows.slide, n.windows.size + n.hold_ms))
            .chain(triggers)
            .fold(0, gcd)
            .max(1);
        Ok(plan)
    }

    /// The slot of a new extra field name (an `explode` name may be shared by analyses).
    pub(super) fn extra_slot(&mut self, name: &str) -> Result<u8, String> {
        if let Some(i) = self.extras.iter().position(|x| x == name) {
            return Ok(i as u8);
        }
        if self.extras.len() >= u8::MAX as usize {
            return Err("too many extra fields".into());
        }
        self.extras.push(name.to_string());
        Ok((self.extras.len() - 1) as u8)
    }
}

pub(super) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

pub(super) fn topic_of(a: &AnalysisSpec) -> String {
    a.topic
        .as_ref()
        .map_or_else(|| a.name.get_ref().clone(), |t| t.get_ref().clone())
}

/// Event-time interval between early results of an update-mode analysis, by default.
pub(super) const DEFAULT_TRIGGER_MS: i64 = 10_000;

/// Binds a `having` condition against output column names.
pub(super) fn compile_having(
    a: &AnalysisSpec,
    columns: &[String],
    cx: &Ctx<'_>,
) -> Result<Option<Expr>, Error> {
    let Some(h) = &a.having else { return Ok(None) };
    let (ast, alias) = cx.expr(h, "having")?;
    if alias.is_some() {
        return cx.err(h.span(), "having", "`as` is not allowed in `having`");
    }
    let bound = ast
        .bind(&mut |x| match x {
            Ast::Name(n) => columns
                .iter()
                .position(|c| c == n)
                .map(|i| Some(Expr::Column(i)))
                .ok_or_else(|| format!("unknown column `{n}` (columns: {})", columns.join(", "))),
            Ast::Call(f, _) if AggFunc::from_name(f).is_some() => Err(format!(
                "`having` filters result rows: use a column name instead of `{f}(...)`"
            )),
            _ => Ok(None),
        })
        .or_else(|m| cx.err(h.span(), "having", m))?;
    Ok(Some(bound))
}

/// Resolves `gauges` to metric column indices: keys are labels of every gauge, not values.
pub(super) fn compile_gauges(
    a: &AnalysisSpec,
    columns: &[String],
    key_len: usize,
    cx: &Ctx<'_>,
) -> Result<Vec<usize>, Error> {
    let mut out = Vec::new();
    for g in &a.gauges {
        let name = g.get_ref();
        match columns.iter().position(|c| c == name) {
            Some(i) if i < key_len => {
                return cx.err(
                    g.span(),
                    "gauges",
                    format!("`{name}` is a group key: keys are the labels of every gauge"),
                )
            }
            Some(i) if out.contains(&i) => {
                return cx.err(g.span(), "gauges", format!("`{name}` is listed twice"))
            }
            Some(i) => out.push(i),
            None => {
                return cx.err(
                    g.span(),
                    "gauges",
                    format!(
                        "unknown column `{name}` (metrics: {})",
                        columns[key_len..].join(", ")
                    ),
                )
            }
        }
    }
    Ok(out)
}
