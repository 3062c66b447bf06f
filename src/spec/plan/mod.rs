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
use crate::operators::lookup::LookupPlan;
use crate::operators::window::Windows;
use crate::parse::Format;
use crate::record::Field;
use crate::sources::directory::DirectoryConfig;
use crate::sources::socket::SocketConfig;
use crate::Error;

mod derived;
mod explain;
mod io;
mod lookup;
mod windowed;

use derived::compile_derived;
pub use io::CheckpointPlan;
use io::{compile_checkpoint, compile_sink, compile_source};
use lookup::compile_lookups;
use windowed::compile_windowed;

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
    /// Names of the extra fields ([`Field::Extra`] slot `i` is `extras[i]`): `explode` names
    /// and lookup table columns.
    pub extras: Vec<String>,
    /// Reference tables joined to every event at ingest.
    pub lookups: Vec<LookupPlan>,
    /// Checkpoints for recovery (`None`: a restarted job starts from its source's start).
    pub checkpoint: Option<CheckpointPlan>,
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
        /// Events per wall-clock second, event times starting now; `None`: as fast as possible.
        rate: Option<f64>,
    },
    Socket(SocketConfig),
    Directory(DirectoryConfig),
    Kafka {
        topic: String,
        brokers: Option<String>,
        start: String,
        properties: crate::kafka::SpecProperties,
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
        properties: crate::kafka::SpecProperties,
        /// Results in transactions committed with the output progress (`<job>.commits`).
        exactly_once: bool,
    },
}

impl SinkPlan {
    /// A Kafka sink with `delivery = "exactly_once"`.
    pub fn exactly_once(&self) -> bool {
        matches!(
            self,
            SinkPlan::Kafka {
                exactly_once: true,
                ..
            }
        )
    }
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
    /// One row per element of a list expression, the element in an extra field slot.
    pub explode: Option<Explode>,
    /// Complete output mode: the whole table at every multiple of this trigger (ms).
    pub complete: Option<i64>,
}

#[cfg(test)]
impl AggNode {
    /// `count()` grouped by service over `windows`, for operator tests (which then set the
    /// fields they exercise with struct update syntax).
    pub(crate) fn count_by_service(windows: Windows, hold_ms: i64) -> AggNode {
        AggNode {
            windows,
            hold_ms,
            filter: None,
            keys: vec![crate::record::Field::Service],
            accs: vec![AccSpec {
                func: AggFunc::Count,
                arg: None,
            }],
            analyses: vec![],
            update: false,
            input: NodeInput::Events,
            explode: None,
            complete: None,
        }
    }
}

/// `explode = "<list> as <name>"`: the list, and the extra field slot of `<name>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Explode {
    pub list: Expr,
    pub slot: u8,
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
    /// `mode = "complete"`: rows start with `as_of` (the trigger instant) instead of a window.
    pub complete: bool,
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
            extras: Vec::new(),
            lookups: Vec::new(),
            checkpoint,
        };
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
            let (update, complete) = match &a.mode {
                None => (false, false),
                Some(m) => match m.get_ref().as_str() {
                    "append" => (false, false),
                    "update" => (true, false),
                    "complete" => (false, true),
                    other => {
                        return cx.err(
                            m.span(),
                            "mode",
                            format!("unknown output mode `{other}` (append, update, complete)"),
                        )
                    }
                },
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
                return cx.err(w.size.span(), "window", "`mode = \"complete\"` emits the whole table of running results per key: it takes no `window` (use `update` or `append` for windows)");
            }
            if let (true, Some(f)) = (complete, &a.from) {
                return cx.err(
                    f.span(),
                    "mode",
                    "`mode = \"complete\"` applies to aggregates over events, not to `from`",
                );
            }
            let complete = trigger.filter(|_| complete);
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
                (None, None) if !update && complete.is_none() => return cx.err(a.name.span(), "window", format!("analysis `{aname}` needs `window` (over events) or `from` (over another analysis); without a window, `mode = \"update\"` keeps a running result per key and `mode = \"complete\"` emits the whole table")),
                (_, None) => compile_windowed(&mut plan, a, delay_ms, (update, complete), input, &cx)?,
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

    /// The event field called `name`: an input field, or a lookup table's column.
    pub fn field(&self, name: &str) -> Option<Field> {
        Field::from_name(name).or_else(|| {
            let slot = self.extras.iter().position(|x| x == name)?;
            let from_lookup = self
                .lookups
                .iter()
                .any(|l| l.fields.iter().any(|(_, s)| *s as usize == slot));
            from_lookup.then_some(Field::Extra(slot as u8))
        })
    }

    /// The slot of a new extra field name (an `explode` name may be shared by analyses).
    fn extra_slot(&mut self, name: &str) -> Result<u8, String> {
        if let Some(i) = self.extras.iter().position(|x| x == name) {
            return Ok(i as u8);
        }
        if self.extras.len() >= u8::MAX as usize {
            return Err("too many extra fields".into());
        }
        self.extras.push(name.to_string());
        Ok((self.extras.len() - 1) as u8)
    }

    /// The event fields any analysis reads (the others are dropped at ingest).
    pub fn used_fields(&self) -> crate::record::FieldSet {
        let mut set = crate::record::FieldSet::default();
        for l in &self.lookups {
            set.insert(l.on);
        }
        for n in &self.nodes {
            if let Some(x) = &n.explode {
                x.list.collect_fields(&mut set);
            }
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

    /// Where an exactly-once Kafka sink records, per worker, the progress its committed
    /// transactions reached.
    pub fn commits_topic(&self) -> String {
        format!("{}.commits", self.name)
    }

    /// The dead-letter output's topic.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dead-letter", self.name)
    }

    pub fn late_topic(&self) -> String {
        format!("{}.late", self.name)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn topic_of(a: &AnalysisSpec) -> String {
    a.topic
        .as_ref()
        .map_or_else(|| a.name.get_ref().clone(), |t| t.get_ref().clone())
}

/// Event-time interval between early results of an update-mode analysis, by default.
const DEFAULT_TRIGGER_MS: i64 = 10_000;

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
    fn exactly_once_delivery_needs_a_kafka_sink_and_append_mode() {
        let analysis =
            "[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
        let sink = |kind: &str, delivery: &str| {
            format!("{HEAD}[sink]\nkind = \"{kind}\"\ndir = \"o\"\ndelivery = \"{delivery}\"\n")
        };
        let p = compile(&format!("{}{analysis}", sink("kafka", "exactly_once"))).unwrap();
        assert!(matches!(
            p.sink,
            SinkPlan::Kafka {
                exactly_once: true,
                ..
            }
        ));
        assert!(crate::sinks::kafka::KafkaSink::topics(&p).contains(&"j.commits".to_string()));
        let p = compile(&format!("{}{analysis}", sink("kafka", "at_least_once"))).unwrap();
        assert!(matches!(
            p.sink,
            SinkPlan::Kafka {
                exactly_once: false,
                ..
            }
        ));
        let e = compile(&format!("{}{analysis}", sink("files", "exactly_once")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sink.delivery") && e.contains("kafka sink"),
            "{e}"
        );
        let e = compile(&format!("{}{analysis}", sink("kafka", "twice")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown delivery `twice`"), "{e}");
        let update = format!("{analysis}mode = \"update\"\n");
        let e = compile(&format!("{}{update}", sink("kafka", "exactly_once")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("append mode") && e.contains("`a`"), "{e}");
    }

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
                "`trigger` applies to `mode = \"update\"` or `\"complete\"` only",
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
    fn explode_complete_mode_and_sources() {
        let sock = "name = \"j\"\n[source]\nkind = \"socket\"\nport = 9999\nformat = \"text\"\n";
        let wc = "[[analysis]]\nname = \"wc\"\nmode = \"complete\"\ntrigger = \"2s\"\nexplode = \"split(line) as word\"\nwhere = \"word != 'a'\"\ngroup_by = [\"word\"]\nselect = [\"count() as n\"]\n";
        let plan = compile(&format!("{sock}{wc}")).unwrap();
        let n = &plan.nodes[0];
        assert_eq!((n.complete, n.update), (Some(2_000), false));
        assert_eq!(n.keys, vec![Field::Extra(0)]);
        assert_eq!(plan.extras, vec!["word"]);
        assert!(plan.analyses[0].complete && plan.analyses[0].windowless);
        assert_eq!(plan.granularity_ms, 2_000);
        assert!(plan.used_fields().contains(Field::Line));
        assert!(
            matches!(&plan.source.kind, SourceKind::Socket(c) if c.port == 9999 && c.host == "127.0.0.1" && !c.reconnect)
        );
        // An exploded name is the analysis's own.
        let other = "[[analysis]]\nname = \"o\"\nmode = \"update\"\ngroup_by = [\"word\"]\nselect = [\"count() as n\"]\n";
        let err = compile(&format!("{sock}{wc}{other}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `word`"), "{err}");

        for (text, want) in [
            ("[[analysis]]\nname = \"x\"\nmode = \"complete\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n", "takes no `window`"),
            ("[[analysis]]\nname = \"x\"\nmode = \"update\"\nexplode = \"split(line)\"\nselect = [\"count() as n\"]\n", "name the element"),
            ("[[analysis]]\nname = \"x\"\nmode = \"update\"\nexplode = \"split(line) as service\"\nselect = [\"count() as n\"]\n", "`service` is already a field"),
        ] {
            let err = compile(&format!("{sock}{text}")).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        for (src, want) in [
            ("[source]\nkind = \"socket\"\nformat = \"text\"\n", "needs `port`"),
            ("[source]\nkind = \"socket\"\nport = 1\npath = \"x\"\nformat = \"text\"\n", "`path` does not apply to a socket source"),
            ("[source]\nkind = \"file\"\npath = \"x\"\nrate = 5.0\nformat = \"json\"\n", "`rate` does not apply to a file source"),
            ("[source]\nkind = \"directory\"\nformat = \"json\"\n", "needs `path`"),
            ("[source]\nkind = \"directory\"\npath = \"d\"\nmax_files_per_trigger = 0\nformat = \"json\"\n", "at least 1"),
            ("[source]\nkind = \"generator\"\nformat = \"text\"\n", "the generator writes"),
            ("[source]\nkind = \"generator\"\nrate = -1.0\nformat = \"json\"\n", "positive number"),
            ("[source]\nkind = \"pipe\"\nformat = \"json\"\n", "unknown source kind `pipe`"),
        ] {
            let err = compile(&format!("name = \"j\"\n{src}{wc}")).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let dir = "name = \"j\"\n[source]\nkind = \"directory\"\npath = \"in\"\npattern = \"*.log\"\nmax_files_per_trigger = 3\nend_after_idle = \"2s\"\nformat = \"json\"\n";
        let plan = compile(&format!("{dir}{wc}").replace("split(line)", "split(message)")).unwrap();
        let SourceKind::Directory(c) = &plan.source.kind else {
            panic!()
        };
        assert_eq!((c.pattern.as_str(), c.max_files_per_trigger), ("*.log", 3));
        assert_eq!(c.end_after_idle, Some(std::time::Duration::from_secs(2)));
        assert_eq!(
            plan.watermark_delay_ms, 300_000,
            "event time keeps the default delay"
        );
        let plan = compile(&format!("{sock}{wc}")).unwrap();
        assert_eq!(
            plan.watermark_delay_ms, 0,
            "processing time has no disorder"
        );
    }

    #[test]
    fn lookups_add_fields_for_every_analysis() {
        let text = format!(
            "{HEAD}[[lookup]]\nname = \"teams\"\npath = \"ref/teams.csv\"\nkey = \"service\"\nfields = [\"team\", \"tier\"]\n\
             [[lookup]]\nname = \"ips\"\npath = \"ips.json\"\nkey = \"ip\"\non = \"ip_address\"\nfields = [\"label\"]\n\
             [[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nwhere = \"label is null\"\ngroup_by = [\"team\"]\nselect = [\"count() as n\", \"max(tier) as top\"]\n"
        );
        let src = SpecSource {
            file: "specs/t.toml",
            text: &text,
        };
        let plan = JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap();
        assert_eq!(plan.extras, vec!["team", "tier", "label"]);
        let l = &plan.lookups[0];
        assert_eq!(
            l.path,
            std::path::Path::new("specs/ref/teams.csv"),
            "relative to the spec"
        );
        assert_eq!(
            (l.on, l.format),
            (Field::Service, crate::operators::lookup::TableFormat::Csv)
        );
        assert_eq!(plan.lookups[1].on, Field::IpAddress);
        assert_eq!(plan.nodes[0].keys, vec![Field::Extra(0)]);
        let used = plan.used_fields();
        assert!(used.contains(Field::Service) && used.contains(Field::IpAddress));
        assert!(plan
            .explain()
            .contains("lookup `teams`: specs/ref/teams.csv (csv, reloaded when it changes)"));

        for (l, want) in [
            ("name = \"t\"\npath = \"t.txt\"\nkey = \"service\"\nfields = [\"team\"]\n", "cannot tell the format"),
            ("name = \"t\"\npath = \"t.csv\"\nkey = \"svc\"\nfields = [\"team\"]\n", "unknown event field `svc`"),
            ("name = \"t\"\npath = \"t.csv\"\nkey = \"service\"\nfields = [\"level\"]\n", "`level` is already a field"),
            ("name = \"t\"\npath = \"t.csv\"\nkey = \"service\"\nfields = []\n", "list the table's columns"),
            ("name = \"t\"\npath = \"t.csv\"\nformat = \"xml\"\nkey = \"service\"\nfields = [\"x\"]\n", "unknown table format `xml`"),
        ] {
            let err = compile(&format!("{HEAD}[[lookup]]\n{l}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as n\"]\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
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
