//! From spec to plan: names resolved, expressions bound, aggregates shared.
//!
//! Windowed analyses with the same window, deadline, filter and group keys share one
//! [`AggNode`]: the events are grouped once and every aggregate of those analyses is computed
//! in the same pass (response_time, error_rate, sla and service_popularity all group by
//! (1 min, service)). Each analysis then projects its columns from the node's accumulators.

use std::collections::HashMap;
use std::fmt::Write;

use toml::Spanned;

use super::duration::{format_ms, parse_ms};
use super::expr::{self, Ast, Expr};
use super::{AnalysisSpec, JobSpec, SpecSource};
use crate::operators::aggregate::{AccSpec, AggFunc};
use crate::operators::window::Windows;
use crate::parse::Format;
use crate::record::Field;
use crate::Error;

/// A compiled job.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub name: String,
    pub description: Option<String>,
    pub source: SourcePlan,
    pub sink: SinkPlan,
    pub idle_timeout_ms: i64,
    /// The job's bounded out-of-orderness: a partition's watermark is its largest event time
    /// minus this (analyses may hold their windows longer with their own `delay`).
    pub watermark_delay_ms: i64,
    /// Every window deadline is a multiple of this, so event-time progress can be rounded down
    /// to it without changing any result (fewer distinct timely timestamps).
    pub granularity_ms: i64,
    pub nodes: Vec<AggNode>,
    pub analyses: Vec<Analysis>,
}

#[derive(Clone, Debug)]
pub struct SourcePlan {
    pub kind: SourceKind,
    pub format: Format,
    pub max_record_bytes: usize,
}

#[derive(Clone, Debug)]
pub enum SourceKind {
    File {
        path: String,
    },
    Generator {
        events: u64,
        seed: u64,
    },
    Kafka {
        topic: String,
        brokers: Option<String>,
        start: String,
        properties: Vec<(String, String)>,
    },
}

#[derive(Clone, Debug)]
pub enum SinkPlan {
    Console,
    Files {
        dir: String,
    },
    Kafka {
        brokers: Option<String>,
        properties: Vec<(String, String)>,
    },
}

/// One grouping of events: window, deadline, filter and keys, with all the aggregates the
/// analyses over it need.
#[derive(Clone, Debug)]
pub struct AggNode {
    pub windows: Windows,
    /// Delay plus allowed lateness: a window closes when progress reaches `end + hold`.
    pub hold_ms: i64,
    pub filter: Option<Expr>,
    pub keys: Vec<Field>,
    pub accs: Vec<AccSpec>,
    /// Indices of the analyses computed from this node.
    pub analyses: Vec<usize>,
    /// Update output mode (differential): early results and corrections instead of one
    /// final row per window.
    pub update: bool,
    pub input: NodeInput,
}

/// The events an aggregation node reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeInput {
    /// Every parsed event that is on time for the node.
    #[default]
    Events,
    /// Events that were late for some analysis (the `<job>.late` output).
    Late,
}

impl AggNode {
    /// The event-time progress at which the window starting at `start` closes.
    pub fn deadline(&self, start: i64) -> i64 {
        start + self.windows.size + self.hold_ms
    }
}

/// One analysis: its output columns and how they are computed.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub name: String,
    pub topic: String,
    pub description: Option<String>,
    /// Column names after `window_start`, `window_end`: keys first, then metrics.
    pub columns: Vec<String>,
    pub key_len: usize,
    pub kind: AnalysisKind,
    /// Rows kept: a condition over `columns`.
    pub having: Option<Expr>,
    /// Watermark delay for windowed analyses (for `check` and the late output).
    pub delay_ms: i64,
    pub lateness_ms: i64,
    /// `mode = "update"`.
    pub update: bool,
    /// No `window`: one running result per key (rows have no `window_start`/`window_end`).
    pub windowless: bool,
    /// Indices into `columns` of the metrics exported as gauges (never keys).
    pub gauges: Vec<usize>,
}

#[derive(Clone, Debug)]
pub enum AnalysisKind {
    /// Aggregates over events. `outputs[j]` reads the scratch row
    /// `[keys.., outputs[..j].., node accumulators..]`.
    Windowed { node: usize, outputs: Vec<Expr> },
    /// Rows of another analysis, through a detector.
    Derived { from: usize, detector: Detector },
}

/// Detectors over another analysis's rows, per key, in window order.
#[derive(Clone, Debug, PartialEq)]
pub enum Detector {
    /// Rows pass unchanged (a plain `having` filter).
    Pass,
    /// `value, baseline_mean, baseline_stddev, z_score` against the previous `history` rows.
    ZScore { column: usize, history: usize },
    /// `value, prev_value, value_change` against the previous row.
    Lag { column: usize },
    /// Rows whose key also has a row in `with` for an overlapping window.
    Intersect { with: usize },
}

struct Ctx<'a> {
    src: &'a SpecSource<'a>,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        msg: impl Into<String>,
    ) -> Result<T, Error> {
        Err(self.src.error(span, field, msg))
    }

    fn duration(&self, v: &Spanned<String>, field: &str) -> Result<i64, Error> {
        parse_ms(v.get_ref()).or_else(|m| self.err(v.span(), field, m))
    }

    fn positive_duration(&self, v: &Spanned<String>, field: &str) -> Result<i64, Error> {
        match self.duration(v, field)? {
            0 => self.err(v.span(), field, "must be greater than zero"),
            ms => Ok(ms),
        }
    }

    fn expr(&self, v: &Spanned<String>, field: &str) -> Result<(Ast, Option<String>), Error> {
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
        let delay_ms = match &spec.watermark.delay {
            Some(d) => cx.duration(d, "watermark.delay")?,
            None => 300_000,
        };
        let idle_timeout_ms = match &spec.watermark.idle_timeout {
            Some(d) => cx.positive_duration(d, "watermark.idle_timeout")?,
            None => 30_000,
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
            watermark_delay_ms: delay_ms,
            granularity_ms: 0,
            nodes: Vec::new(),
            analyses: Vec::new(),
        };
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
            let update = match &a.mode {
                None => false,
                Some(m) => match m.get_ref().as_str() {
                    "append" => false,
                    "update" => true,
                    other => {
                        return cx.err(
                            m.span(),
                            "mode",
                            format!("unknown output mode `{other}` (append, update)"),
                        )
                    }
                },
            };
            match (&a.trigger, update) {
                (Some(t), false) => {
                    return cx.err(
                        t.span(),
                        "trigger",
                        "`trigger` applies to `mode = \"update\"` only",
                    )
                }
                (Some(t), true) => triggers.push(cx.positive_duration(t, "trigger")?),
                (None, true) => triggers.push(DEFAULT_TRIGGER_MS),
                (None, false) => {}
            }
            let input = match &a.input {
                None => NodeInput::Events,
                Some(i) => match i.get_ref().as_str() {
                    "events" => NodeInput::Events,
                    "late" => NodeInput::Late,
                    other => {
                        return cx.err(
                            i.span(),
                            "input",
                            format!("unknown input `{other}` (events, late)"),
                        )
                    }
                },
            };
            let analysis = match (&a.window, &a.from) {
                (Some(_), Some(f)) => return cx.err(f.span(), "from", "an analysis has either `window` (over events) or `from` (over another analysis), not both"),
                (None, None) if !update => return cx.err(a.name.span(), "window", format!("analysis `{aname}` needs `window` (over events) or `from` (over another analysis); without a window, `mode = \"update\"` keeps a running result per key")),
                (_, None) => compile_windowed(&mut plan, a, delay_ms, update, input, &cx)?,
                (None, Some(_)) => compile_derived(&plan, &names, a, update, &cx)?,
            };
            names.insert(aname, plan.analyses.len());
            plan.analyses.push(analysis);
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

    /// The event fields any analysis reads (the others are dropped at ingest).
    pub fn used_fields(&self) -> crate::record::FieldSet {
        let mut set = crate::record::FieldSet::default();
        for n in &self.nodes {
            n.keys.iter().for_each(|f| set.insert(*f));
            if let Some(f) = &n.filter {
                f.collect_fields(&mut set);
            }
            for a in &n.accs {
                if let Some(e) = &a.arg {
                    e.collect_fields(&mut set);
                }
            }
        }
        set
    }

    /// The dead-letter output's topic.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dead-letter", self.name)
    }

    pub fn late_topic(&self) -> String {
        format!("{}.late", self.name)
    }

    /// A human explanation of the plan (`logflow check`).
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "job `{}`", self.name);
        if let Some(d) = &self.description {
            let _ = writeln!(s, "  {}", d.trim());
        }
        let src = match &self.source.kind {
            SourceKind::File { path } => format!("file {path}"),
            SourceKind::Generator { events, seed } => {
                format!("generator ({events} events, seed {seed})")
            }
            SourceKind::Kafka {
                topic,
                brokers,
                start,
                ..
            } => format!(
                "kafka topic `{topic}` on {} (start: {start})",
                brokers.as_deref().unwrap_or("the in-process cluster")
            ),
        };
        let _ = writeln!(
            s,
            "source: {src}, format {}, records up to {} bytes",
            self.source.format, self.source.max_record_bytes
        );
        let sink = match &self.sink {
            SinkPlan::Console => "console".to_string(),
            SinkPlan::Files { dir } => format!("JSONL files in {dir}"),
            SinkPlan::Kafka { brokers, .. } => format!(
                "kafka ({})",
                brokers.as_deref().unwrap_or("the source's brokers")
            ),
        };
        let _ = writeln!(
            s,
            "sink: {sink}; dead letters -> {}, late events -> {}",
            self.dead_letter_topic(),
            self.late_topic()
        );
        let _ = writeln!(
            s,
            "idle partitions stop holding the watermark after {}",
            format_ms(self.idle_timeout_ms)
        );
        let _ = writeln!(
            s,
            "event-time progress granularity: {}",
            format_ms(self.granularity_ms)
        );
        let _ = writeln!(
            s,
            "{} analyses, {} shared aggregation passes:",
            self.analyses.len(),
            self.nodes.len()
        );
        for a in &self.analyses {
            let what = match &a.kind {
                AnalysisKind::Windowed { node, .. } if a.windowless => {
                    let n = &self.nodes[*node];
                    let input = match n.input {
                        NodeInput::Events => "events",
                        NodeInput::Late => "late events",
                    };
                    format!("running result per key over all {input} (no window), update mode, pass #{node}")
                }
                AnalysisKind::Windowed { node, .. } => {
                    let n = &self.nodes[*node];
                    let w = if n.windows.size == n.windows.slide {
                        format!("tumbling {}", format_ms(n.windows.size))
                    } else {
                        format!(
                            "sliding {} every {}",
                            format_ms(n.windows.size),
                            format_ms(n.windows.slide)
                        )
                    };
                    let mut w = format!("{w} windows, delay {}", format_ms(a.delay_ms));
                    if a.lateness_ms > 0 {
                        let _ = write!(w, " + allowed lateness {}", format_ms(a.lateness_ms));
                    }
                    if a.update {
                        let _ = write!(w, ", update mode (early results and corrections)");
                    }
                    let _ = write!(w, ", pass #{node}");
                    w
                }
                AnalysisKind::Derived { from, detector } => {
                    let f = &self.analyses[*from].name;
                    match detector {
                        Detector::Pass => format!("rows of `{f}`"),
                        Detector::ZScore { column, history } => format!(
                            "z-score of `{}` in `{f}` against the previous {history} windows of each key",
                            self.analyses[*from].columns[*column]
                        ),
                        Detector::Lag { column } => format!(
                            "change of `{}` in `{f}` against the previous window of each key",
                            self.analyses[*from].columns[*column]
                        ),
                        Detector::Intersect { with } => format!(
                            "rows of `{f}` whose key is also in `{}` for an overlapping window",
                            self.analyses[*with].name
                        ),
                    }
                }
            };
            let _ = writeln!(s, "  - {} -> topic `{}`: {what}", a.name, a.topic);
            let keys = &a.columns[..a.key_len];
            let mut cols: Vec<String> = Vec::new();
            if !a.windowless {
                cols.extend(["window_start".into(), "window_end".into()]);
            }
            if !keys.is_empty() {
                cols.push(format!("key: {}", keys.join(", ")));
            }
            cols.extend(a.columns[a.key_len..].iter().cloned());
            let _ = writeln!(s, "      columns: {}", cols.join(", "));
            if a.having.is_some() {
                let _ = writeln!(s, "      rows filtered by `having`");
            }
            if !a.gauges.is_empty() {
                let names: Vec<&str> = a.gauges.iter().map(|&i| a.columns[i].as_str()).collect();
                let _ = writeln!(s, "      gauges (logflow_result): {}", names.join(", "));
            }
        }
        s
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn compile_source(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SourcePlan, Error> {
    let s = &spec.source;
    let format = *s.format.get_ref();
    let max_record_bytes = match &s.max_record_bytes {
        Some(v) if *v.get_ref() < 64 => {
            return cx.err(v.span(), "source.max_record_bytes", "must be at least 64")
        }
        Some(v) => *v.get_ref() as usize,
        None => 1 << 20,
    };
    let forbid =
        |name: &str, v: bool, span: std::ops::Range<usize>, kind: &str| -> Result<(), Error> {
            if v {
                cx.err(
                    span,
                    &format!("source.{name}"),
                    format!("`{name}` does not apply to a {kind} source"),
                )
            } else {
                Ok(())
            }
        };
    let kind = match s.kind.get_ref().as_str() {
        "file" => {
            let Some(path) = &s.path else {
                return cx.err(s.kind.span(), "source.path", "a file source needs `path`");
            };
            if let Some(t) = &s.topic {
                forbid("topic", true, t.span(), "file")?;
            }
            SourceKind::File {
                path: path.get_ref().clone(),
            }
        }
        "generator" => SourceKind::Generator {
            events: s.events.as_ref().map_or(100_000, |v| *v.get_ref()),
            seed: s.seed.as_ref().map_or(42, |v| *v.get_ref()),
        },
        "kafka" => {
            let Some(topic) = &s.topic else {
                return cx.err(
                    s.kind.span(),
                    "source.topic",
                    "a kafka source needs `topic`",
                );
            };
            if let Some(p) = &s.path {
                forbid("path", true, p.span(), "kafka")?;
            }
            let start = match &s.start {
                None => "earliest".to_string(),
                Some(v) => match v.get_ref().as_str() {
                    "earliest" | "latest" | "stored" => v.get_ref().clone(),
                    other => {
                        return cx.err(
                            v.span(),
                            "source.start",
                            format!("unknown start `{other}` (earliest, latest, stored)"),
                        )
                    }
                },
            };
            SourceKind::Kafka {
                topic: topic.get_ref().clone(),
                brokers: s.brokers.as_ref().map(|b| b.get_ref().clone()),
                start,
                properties: s
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        }
        other => {
            return cx.err(
                s.kind.span(),
                "source.kind",
                format!("unknown source kind `{other}` (kafka, file, generator)"),
            )
        }
    };
    Ok(SourcePlan {
        kind,
        format,
        max_record_bytes,
    })
}

fn compile_sink(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SinkPlan, Error> {
    let s = &spec.sink;
    let default_kind = if spec.source.kind.get_ref() == "kafka" {
        "kafka"
    } else {
        "console"
    };
    let kind = s
        .kind
        .as_ref()
        .map_or(default_kind, |k| k.get_ref().as_str());
    Ok(match kind {
        "console" => SinkPlan::Console,
        "files" => match &s.dir {
            Some(d) => SinkPlan::Files {
                dir: d.get_ref().clone(),
            },
            None => {
                let span = s.kind.as_ref().map_or(0..0, |k| k.span());
                return cx.err(span, "sink.dir", "a files sink needs `dir`");
            }
        },
        "kafka" => SinkPlan::Kafka {
            brokers: s.brokers.as_ref().map(|b| b.get_ref().clone()),
            properties: s
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        other => {
            let span = s.kind.as_ref().map_or(0..0, |k| k.span());
            return cx.err(
                span,
                "sink.kind",
                format!("unknown sink kind `{other}` (kafka, console, files)"),
            );
        }
    })
}

fn topic_of(a: &AnalysisSpec) -> String {
    a.topic
        .as_ref()
        .map_or_else(|| a.name.get_ref().clone(), |t| t.get_ref().clone())
}

/// Event-time interval between early results of an update-mode analysis, by default.
const DEFAULT_TRIGGER_MS: i64 = 10_000;

fn compile_windowed(
    plan: &mut JobPlan,
    a: &AnalysisSpec,
    job_delay: i64,
    update: bool,
    input: NodeInput,
    cx: &Ctx<'_>,
) -> Result<Analysis, Error> {
    let windows = match &a.window {
        Some(w) => {
            if input == NodeInput::Late {
                return cx.err(
                    w.size.span(),
                    "window",
                    "late events are behind the watermark by definition: an analysis with `input = \"late\"` keeps a running result per key and has no `window`",
                );
            }
            let size = cx.positive_duration(&w.size, "window.size")?;
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
            Windows { size, slide }
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
    let filter = match &a.filter {
        Some(f) => {
            let (ast, _) = cx.expr(f, "where")?;
            Some(ast.bind_event().or_else(|m| cx.err(f.span(), "where", m))?)
        }
        None => None,
    };
    let mut keys = Vec::new();
    let mut columns = Vec::new();
    for k in &a.group_by {
        let Some(f) = Field::from_name(k.get_ref()) else {
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
        if name == "window_start" || name == "window_end" || columns.contains(&name) {
            return cx.err(item.span(), "select", format!("duplicate column `{name}`"));
        }
        let ast =
            extract_aggregates(&ast, &mut accs).or_else(|m| cx.err(item.span(), "select", m))?;
        outputs_ast.push((ast, item, name.clone()));
        columns.push(name);
    }

    // Find or create the node these aggregates belong to.
    let hold_ms = delay_ms + lateness_ms;
    let node_idx = match plan.nodes.iter().position(|n| {
        n.windows == windows
            && n.hold_ms == hold_ms
            && n.filter == filter
            && n.keys == keys
            && n.update == update
            && n.input == input
    }) {
        Some(i) => i,
        None => {
            plan.nodes.push(AggNode {
                windows,
                hold_ms,
                filter,
                keys: keys.clone(),
                accs: Vec::new(),
                analyses: Vec::new(),
                update,
                input,
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
                Ast::Call(f, args) if f == "__agg" => match args.first() {
                    Some(Ast::Lit(crate::record::Value::Int(i))) => Ok(Some(Expr::Column(key_len + nout + slot_of[*i as usize]))),
                    _ => Err("internal: bad aggregate slot".into()),
                },
                Ast::Name(n) => match known.iter().position(|c| c == n) {
                    Some(i) => Ok(Some(Expr::Column(i))),
                    None if Field::from_name(n).is_some() => Err(format!(
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
        windowless: windows.is_global(),
    })
}

/// Replaces aggregate calls with `__agg(i)` placeholders, collecting their specs.
fn extract_aggregates(ast: &Ast, accs: &mut Vec<AccSpec>) -> Result<Ast, String> {
    Ok(match ast {
        Ast::Call(name, args) => {
            if let Some(func) = AggFunc::from_name(name) {
                let arg = match (func, args.as_slice()) {
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
                        Some(a.bind_event()?)
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
                    .map(|a| extract_aggregates(a, accs))
                    .collect::<Result<_, _>>()?,
            )
        }
        Ast::Unary(op, e) => Ast::Unary(*op, Box::new(extract_aggregates(e, accs)?)),
        Ast::Binary(op, a, b) => Ast::Binary(
            *op,
            Box::new(extract_aggregates(a, accs)?),
            Box::new(extract_aggregates(b, accs)?),
        ),
        Ast::IsNull(e, n) => Ast::IsNull(Box::new(extract_aggregates(e, accs)?), *n),
        Ast::Case(arms, d) => Ast::Case(
            arms.iter()
                .map(|(c, t)| Ok((extract_aggregates(c, accs)?, extract_aggregates(t, accs)?)))
                .collect::<Result<_, String>>()?,
            match d {
                Some(d) => Some(Box::new(extract_aggregates(d, accs)?)),
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

/// Binds a `having` condition against output column names.
fn compile_having(
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
fn compile_gauges(
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

fn compile_derived(
    plan: &JobPlan,
    names: &HashMap<String, usize>,
    a: &AnalysisSpec,
    update: bool,
    cx: &Ctx<'_>,
) -> Result<Analysis, Error> {
    let Some(from) = &a.from else {
        unreachable!("checked by caller")
    };
    if let (true, Some(m)) = (update, &a.mode) {
        return cx.err(
            m.span(),
            "mode",
            "detectors read each window's final row once: an analysis `from` another one is append-only",
        );
    }
    if let Some(i) = &a.input {
        return cx.err(
            i.span(),
            "input",
            "`input` does not apply to an analysis `from` another one",
        );
    }
    for (set, field, span) in [
        (
            a.filter.is_some(),
            "where",
            a.filter.as_ref().map(|f| f.span()),
        ),
        (
            !a.group_by.is_empty(),
            "group_by",
            a.group_by.first().map(|f| f.span()),
        ),
        (
            !a.select.is_empty(),
            "select",
            a.select.first().map(|f| f.span()),
        ),
        (
            a.delay.is_some(),
            "delay",
            a.delay.as_ref().map(|f| f.span()),
        ),
        (
            a.allowed_lateness.is_some(),
            "allowed_lateness",
            a.allowed_lateness.as_ref().map(|f| f.span()),
        ),
    ] {
        if set {
            return cx.err(
                span.unwrap_or(0..0),
                field,
                format!("`{field}` does not apply to an analysis `from` another one"),
            );
        }
    }
    let Some(&src_idx) = names.get(from.get_ref()) else {
        return cx.err(
            from.span(),
            "from",
            format!(
                "unknown analysis `{}` (it must be defined above)",
                from.get_ref()
            ),
        );
    };
    let src = &plan.analyses[src_idx];
    if src.update {
        return cx.err(
            from.span(),
            "from",
            format!(
                "`{}` is in update mode; detectors read append-mode rows (one final row per window)",
                from.get_ref()
            ),
        );
    }
    let key_cols = src.columns[..src.key_len].to_vec();
    let column_of = |f: &Spanned<String>| -> Result<usize, Error> {
        match src.columns.iter().position(|c| c == f.get_ref()) {
            Some(i) if i >= src.key_len => Ok(i),
            _ => cx.err(
                f.span(),
                "detect.field",
                format!(
                    "`{}` is not a metric of `{}` (metrics: {})",
                    f.get_ref(),
                    src.name,
                    src.columns[src.key_len..].join(", ")
                ),
            ),
        }
    };
    let (detector, columns) = match &a.detect {
        None => (Detector::Pass, src.columns.clone()),
        Some(d) => {
            let need_field = || -> Result<&Spanned<String>, Error> {
                d.field.as_ref().ok_or_else(|| {
                    cx.src.error(
                        d.kind.span(),
                        "detect.field",
                        format!("detector `{}` needs `field`", d.kind.get_ref()),
                    )
                })
            };
            match d.kind.get_ref().as_str() {
                "zscore" => {
                    let f = need_field()?;
                    let column = column_of(f)?;
                    let history = match &d.history {
                        Some(h) if *h.get_ref() < 2 => return cx.err(
                            h.span(),
                            "detect.history",
                            "history must be at least 2 (a standard deviation needs two values)",
                        ),
                        Some(h) => *h.get_ref() as usize,
                        None => 10,
                    };
                    let name = f.get_ref();
                    let mut cols = key_cols.clone();
                    cols.extend([
                        name.clone(),
                        "baseline_mean".into(),
                        "baseline_stddev".into(),
                        "z_score".into(),
                    ]);
                    (Detector::ZScore { column, history }, cols)
                }
                "lag" => {
                    let f = need_field()?;
                    let column = column_of(f)?;
                    let name = f.get_ref();
                    let mut cols = key_cols.clone();
                    cols.extend([
                        name.clone(),
                        format!("prev_{name}"),
                        format!("{name}_change"),
                    ]);
                    (Detector::Lag { column }, cols)
                }
                "intersect" => {
                    let Some(w) = &d.with else {
                        return cx.err(
                            d.kind.span(),
                            "detect.with",
                            "`intersect` needs `with` (another analysis)",
                        );
                    };
                    let Some(&with) = names.get(w.get_ref()) else {
                        return cx.err(
                            w.span(),
                            "detect.with",
                            format!("unknown analysis `{}`", w.get_ref()),
                        );
                    };
                    let other = &plan.analyses[with];
                    if other.columns[..other.key_len] != key_cols[..] {
                        return cx.err(
                            w.span(),
                            "detect.with",
                            format!(
                                "`{}` is keyed by ({}) but `{}` by ({})",
                                other.name,
                                other.columns[..other.key_len].join(", "),
                                src.name,
                                key_cols.join(", ")
                            ),
                        );
                    }
                    (Detector::Intersect { with }, src.columns.clone())
                }
                other => {
                    return cx.err(
                        d.kind.span(),
                        "detect.kind",
                        format!("unknown detector `{other}` (zscore, lag, intersect)"),
                    )
                }
            }
        }
    };
    let having = compile_having(a, &columns, cx)?;
    let gauges = compile_gauges(a, &columns, src.key_len, cx)?;
    Ok(Analysis {
        name: a.name.get_ref().clone(),
        topic: topic_of(a),
        description: a.description.clone(),
        gauges,
        key_len: src.key_len,
        columns,
        kind: AnalysisKind::Derived {
            from: src_idx,
            detector,
        },
        having,
        delay_ms: src.delay_ms,
        lateness_ms: src.lateness_ms,
        update: false,
        windowless: false,
    })
}

impl JobPlan {
    /// How far past a window's end the analysis's rows can arrive (window size plus the
    /// deadline hold of the windows it is computed from).
    pub fn horizon_of(&self, analysis: usize) -> u64 {
        match &self.analyses[analysis].kind {
            AnalysisKind::Windowed { node, .. } => {
                let n = &self.nodes[*node];
                (n.windows.size + n.hold_ms).max(0) as u64
            }
            AnalysisKind::Derived { from, detector } => {
                let own = self.horizon_of(*from);
                match detector {
                    Detector::Intersect { with } => own.max(self.horizon_of(*with)),
                    _ => own,
                }
            }
        }
    }
}

impl JobPlan {
    /// How often an analysis emits windows: its slide (a derived analysis: its source's).
    pub fn slide_of(&self, analysis: usize) -> i64 {
        match &self.analyses[analysis].kind {
            AnalysisKind::Windowed { node, .. } => self.nodes[*node].windows.slide,
            AnalysisKind::Derived { from, .. } => self.slide_of(*from),
        }
    }
}

impl Analysis {
    /// The detector of a derived analysis.
    pub fn kind_detector(&self) -> Option<&Detector> {
        match &self.kind {
            AnalysisKind::Derived { detector, .. } => Some(detector),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_spec;

    fn compile(text: &str) -> Result<JobPlan, Error> {
        let src = SpecSource {
            file: "t.toml",
            text,
        };
        JobPlan::compile(&parse_spec(&src)?, &src)
    }

    const HEAD: &str = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n";

    #[test]
    fn shares_one_pass_between_analyses_with_the_same_grouping() {
        let text = format!(
            "{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as n\", \"avg(response_time) as rt\"]\n\
             [[analysis]]\nname = \"b\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as total\", \"count_if(status_code >= 400) * 100.0 / total as rate\"]\n"
        );
        let plan = compile(&text).unwrap();
        assert_eq!(plan.nodes.len(), 1);
        assert_eq!(plan.nodes[0].accs.len(), 3, "count() is shared");
        assert_eq!(plan.analyses[1].columns, vec!["service", "total", "rate"]);
        assert_eq!(plan.granularity_ms, 60_000);
        let used = plan.used_fields();
        for f in [Field::Service, Field::ResponseTime, Field::StatusCode] {
            assert!(used.contains(f), "{f:?}");
        }
        assert!(!used.contains(Field::Message));
    }

    #[test]
    fn errors_name_line_and_field() {
        let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1q\" }}\nselect = [\"count() as n\"]\n");
        let err = compile(&text).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:8:"), "{err}");
        assert!(
            err.contains("window.size") && err.contains("unknown unit"),
            "{err}"
        );

        let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as n\", \"avg(nope) as x\"]\n");
        let err = compile(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("t.toml:9:") && err.contains("unknown field `nope`"),
            "{err}"
        );

        let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"response_time as x\"]\n");
        let err = compile(&text).unwrap_err().to_string();
        assert!(err.contains("inside an aggregate"), "{err}");

        let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nfrom = \"zz\"\n");
        let err = compile(&text).unwrap_err().to_string();
        assert!(err.contains("unknown analysis `zz`"), "{err}");
    }

    #[test]
    fn output_modes_and_running_state() {
        let upd = "[[analysis]]\nname = \"u\"\nmode = \"update\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
        let app =
            "[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
        let plan = compile(&format!("{HEAD}{upd}{app}")).unwrap();
        assert_eq!(plan.nodes.len(), 2, "update and append never share a pass");
        assert!(plan.nodes[0].update && !plan.nodes[1].update);
        assert_eq!(
            plan.granularity_ms, 10_000,
            "the default trigger refines progress"
        );

        let late = "[[analysis]]\nname = \"l\"\ninput = \"late\"\nmode = \"update\"\ngroup_by = [\"user_id\"]\nselect = [\"count() as n\"]\n";
        let plan = compile(&format!("{HEAD}{app}{late}")).unwrap();
        let l = &plan.analyses[1];
        assert!(l.windowless && l.update);
        assert_eq!(plan.nodes[1].input, NodeInput::Late);
        assert_eq!(plan.granularity_ms, 10_000);

        for (text, want) in [
            (
                "[[analysis]]\nname = \"x\"\nselect = [\"count() as n\"]\n",
                "without a window, `mode = \"update\"`",
            ),
            (
                "[[analysis]]\nname = \"x\"\nmode = \"upsert\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
                "unknown output mode `upsert`",
            ),
            (
                "[[analysis]]\nname = \"x\"\ntrigger = \"5s\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
                "`trigger` applies to `mode = \"update\"` only",
            ),
            (
                "[[analysis]]\nname = \"x\"\ninput = \"late\"\nmode = \"update\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
                "no `window`",
            ),
            (
                "[[analysis]]\nname = \"x\"\nmode = \"update\"\ndelay = \"1m\"\nselect = [\"count() as n\"]\n",
                "`delay` applies to windows",
            ),
        ] {
            let err = compile(&format!("{HEAD}{text}")).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = compile(&format!(
            "{HEAD}{upd}[[analysis]]\nname = \"d\"\nfrom = \"u\"\nhaving = \"n > 1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`u` is in update mode"), "{err}");
    }

    #[test]
    fn gauges_name_metric_columns() {
        let head = format!(
            "{HEAD}[[analysis]]\nname = \"rt\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as n\", \"avg(response_time) as avg_rt\"]\n"
        );
        let plan = compile(&format!("{head}gauges = [\"avg_rt\", \"n\"]\n")).unwrap();
        assert_eq!(plan.analyses[0].gauges, vec![2, 1]);
        assert_eq!(plan.slide_of(0), 60_000);

        let err = compile(&format!("{head}gauges = [\"n\", \"nope\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.toml:11:16: gauges: unknown column `nope`"),
            "{err}"
        );
        let err = compile(&format!("{head}gauges = [\"service\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`service` is a group key"), "{err}");
        let err = compile(&format!("{head}gauges = [\"n\", \"n\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
        let err = compile(&format!("{head}gauges = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:11:"), "{err}");
    }

    #[test]
    fn derived_columns() {
        let text = format!(
            "{HEAD}[[analysis]]\nname = \"rt\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"avg(response_time) as avg_rt\"]\n\
             [[analysis]]\nname = \"z\"\nfrom = \"rt\"\ndetect = {{ kind = \"zscore\", field = \"avg_rt\" }}\nhaving = \"abs(z_score) > 2\"\n"
        );
        let plan = compile(&text).unwrap();
        assert_eq!(
            plan.analyses[1].columns,
            vec![
                "service",
                "avg_rt",
                "baseline_mean",
                "baseline_stddev",
                "z_score"
            ]
        );
        assert_eq!(
            plan.analyses[1].kind_detector(),
            Some(&Detector::ZScore {
                column: 1,
                history: 10
            })
        );
    }
}
