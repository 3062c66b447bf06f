//! The plan IR: what a compiled job is. Plain data that the operators, sources, sinks and
//! the runtime read; [`super::compile`] makes it from a spec.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::record::Field;
use crate::spec::expr::Expr;
use crate::time::window::Windows;

pub use super::io::{
    DirectoryConfig, Endpoint, FileConfig, GeneratorConfig, KafkaEndpoint, KafkaSinkConfig,
    KafkaSourceConfig, SinkConfig, SocketConfig, SourceConfig, SourcePlan,
};

/// A compiled job.
#[derive(Clone, Debug)]
pub struct JobPlan {
    /// The job's name (`name`).
    pub name: String,
    /// Free text shown by `check`.
    pub description: Option<String>,
    /// Where records come from.
    pub source: SourcePlan,
    /// Where results go.
    pub sink: SinkConfig,
    /// A partition with no data for this long stops holding the watermark.
    pub idle_timeout_ms: i64,
    /// How far ahead of the wall clock an event time may be; later ones are dead letters (one
    /// bad clock must not move a watermark to the end of time and make every later event late).
    pub max_future_ms: i64,
    /// The job's bounded out-of-orderness: a partition's watermark is its largest event time
    /// minus this (analyses may hold their windows longer with their own `delay`).
    pub watermark_delay_ms: i64,
    /// Every window deadline is a multiple of this, so event-time progress can be rounded down
    /// to it without changing any result (fewer distinct timely timestamps).
    pub granularity_ms: i64,
    /// The aggregation nodes, shared by the windowed analyses over them.
    pub nodes: Vec<AggNode>,
    /// The analyses, in spec order.
    pub analyses: Vec<Analysis>,
    /// Names of the extra fields ([`Field::Extra`] slot `i` is `extras[i]`): `explode` names
    /// and lookup table columns.
    pub extras: Vec<String>,
    /// Reference tables joined to every event at ingest.
    pub lookups: Vec<LookupPlan>,
    /// `[schema]`: how records become fields (`None`: the format's built-in fields).
    pub schema: Option<std::sync::Arc<crate::parse::schema::Schema>>,
    /// Checkpoints for recovery (`None`: a restarted job starts from its source's start).
    pub checkpoint: Option<CheckpointPlan>,
}

/// One grouping of events: window, deadline, filter and keys, with all the aggregates the
/// analyses over it need.
#[derive(Clone, Debug)]
pub struct AggNode {
    /// Window size and slide.
    pub windows: Windows,
    /// Delay plus allowed lateness: a window closes when progress reaches `end + hold`.
    pub hold_ms: i64,
    /// `where`: the events included.
    pub filter: Option<Expr>,
    /// `group_by`: the group key fields.
    pub keys: Vec<Field>,
    /// Every aggregate the node's analyses need.
    pub accs: Vec<AccSpec>,
    /// Indices of the analyses computed from this node.
    pub analyses: Vec<usize>,
    /// Update output mode (differential): early results and corrections instead of one
    /// final row per window.
    pub update: bool,
    /// Events or late events.
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
    /// The list expression.
    pub list: Expr,
    /// The extra field slot of each element.
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
    /// The analysis name (its output file).
    pub name: String,
    /// Its output topic.
    pub topic: String,
    /// Free text shown by `check`.
    pub description: Option<String>,
    /// Column names after `window_start`, `window_end`: keys first, then metrics.
    pub columns: Vec<String>,
    /// How many of `columns` are group keys.
    pub key_len: usize,
    /// Windowed or derived.
    pub kind: AnalysisKind,
    /// Rows kept: a condition over `columns`.
    pub having: Option<Expr>,
    /// Watermark delay for windowed analyses (for `check` and the late output).
    pub delay_ms: i64,
    /// `allowed_lateness` for windowed analyses.
    pub lateness_ms: i64,
    /// `mode = "update"`.
    pub update: bool,
    /// `mode = "complete"`: rows start with `as_of` (the trigger instant) instead of a window.
    pub complete: bool,
    /// No `window`: one running result per key (rows have no `window_start`/`window_end`).
    pub windowless: bool,
    /// Session windows: rows start with `session_start`, `session_end`.
    pub session: bool,
    /// Indices into `columns` of the metrics exported as gauges (never keys).
    pub gauges: Vec<usize>,
    /// `max_keys`: group keys kept per window (the first in key order); `None`: all.
    pub max_keys: Option<usize>,
    /// `alert`: its rows are also alerts, written to `<job>.alerts`.
    pub alert: Option<AlertPlan>,
}

/// An analysis's alert: how its rows become `<job>.alerts` records.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPlan {
    /// How urgent.
    pub severity: crate::spec::Severity,
    /// The summary template, in order.
    pub summary: Vec<SummaryPart>,
}

/// A piece of an alert's summary template.
#[derive(Clone, Debug, PartialEq)]
pub enum SummaryPart {
    /// Literal text.
    Text(String),
    /// The row's value of this column (index into [`Analysis::columns`]).
    Column(usize),
}

/// How an analysis is computed.
#[derive(Clone, Debug)]
pub enum AnalysisKind {
    /// Aggregates over events. `outputs[j]` reads the scratch row
    /// `[keys.., outputs[..j].., node accumulators..]`.
    Windowed {
        /// The [`AggNode`] it is computed from.
        node: usize,
        /// The output expressions, one per metric column.
        outputs: Vec<Expr>,
    },
    /// `<job>.overflow`: the keys a `max_keys` analysis did not keep, one row per window, analysis
    /// and key (`analysis`, `key`, `reason`); added after the spec's analyses when one sets
    /// `max_keys`.
    Overflow,
    /// Rows of another analysis, through a detector.
    Derived {
        /// The analysis whose rows it reads.
        from: usize,
        /// What it does with them.
        detector: Detector,
    },
}

/// Detectors over another analysis's rows, per key, in window order.
#[derive(Clone, Debug, PartialEq)]
pub enum Detector {
    /// Rows pass unchanged (a plain `having` filter).
    Pass,
    /// `value, baseline_mean, baseline_stddev, z_score` against the previous `history` rows of
    /// the key (forgotten after `history` windows without one).
    ZScore {
        /// The watched column.
        column: usize,
        /// Previous rows in the baseline.
        history: usize,
    },
    /// `value, prev_value, value_change` against the key's previous row, if it is at most
    /// `history` windows back.
    Lag {
        /// The watched column.
        column: usize,
        /// Windows looked back.
        history: usize,
    },
    /// Rows whose key also has a row in `with` for an overlapping window.
    Intersect {
        /// The other analysis.
        with: usize,
    },
}

impl JobPlan {
    /// The input field called `name`: the schema's, or else a built-in one.
    pub fn input_field(&self, name: &str) -> Option<Field> {
        match &self.schema {
            Some(s) => s.field(name),
            None => Field::from_name(name).or_else(|| {
                self.access_fields()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| f)
            }),
        }
    }

    /// Formats `apache` and `nginx`: the request's parts ([`crate::parse::access_log::FIELDS`])
    /// and their extra fields.
    pub fn access_fields(&self) -> Vec<(&'static str, Field)> {
        crate::parse::access_log::FIELDS
            .iter()
            .filter_map(|n| {
                let slot = self.extras.iter().position(|x| x == n)?;
                Some((*n, Field::Extra(slot as u8)))
            })
            .filter(|_| self.schema.is_none())
            .collect()
    }

    /// The slots of the request's parts some analysis reads (`None`: none is read).
    pub fn access_slots(&self) -> Option<[Option<u8>; 6]> {
        let mut slots = [None; 6];
        for (i, (_, f)) in self.access_fields().into_iter().enumerate() {
            if self.reads(f) {
                if let Field::Extra(s) = f {
                    slots[i] = Some(s);
                }
            }
        }
        slots.iter().any(Option::is_some).then_some(slots)
    }

    /// Some analysis or lookup reads event field `f`.
    fn reads(&self, f: Field) -> bool {
        self.lookups.iter().any(|l| l.on == f)
            || self.nodes.iter().any(|n| {
                n.keys.contains(&f)
                    || n.explode.as_ref().is_some_and(|x| x.list.reads(f))
                    || n.filter.as_ref().is_some_and(|e| e.reads(f))
                    || n.accs
                        .iter()
                        .any(|a| a.arg.as_ref().is_some_and(|e| e.reads(f)))
            })
    }

    /// The event field called `name`: an input field, or a lookup table's column.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.input_field(name).or_else(|| {
            let slot = self.extras.iter().position(|x| x == name)?;
            let from_lookup = self
                .lookups
                .iter()
                .any(|l| l.fields.iter().any(|(_, s)| *s as usize == slot));
            from_lookup.then_some(Field::Extra(slot as u8))
        })
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

    /// The late output's topic.
    pub fn late_topic(&self) -> String {
        format!("{}.late", self.name)
    }

    /// The overflow output's topic (keys beyond an analysis's `max_keys`).
    pub fn overflow_topic(&self) -> String {
        format!("{}.overflow", self.name)
    }

    /// The index of the `<job>.overflow` pseudo-analysis, if some analysis sets `max_keys`.
    pub fn overflow_analysis(&self) -> Option<usize> {
        self.analyses
            .iter()
            .position(|a| matches!(a.kind, AnalysisKind::Overflow))
    }

    /// The alerts output's topic: every row of every `alert` analysis, in one schema.
    pub fn alerts_topic(&self) -> String {
        format!("{}.alerts", self.name)
    }

    /// Some analysis is an alert (the job has an alerts output).
    pub fn has_alerts(&self) -> bool {
        self.analyses.iter().any(|a| a.alert.is_some())
    }

    /// Every topic a Kafka sink of this job writes to.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.analyses.iter().map(|a| a.topic.clone()).collect();
        t.push(self.dead_letter_topic());
        t.push(self.late_topic());
        if self.has_alerts() {
            t.push(self.alerts_topic());
        }
        if self.sink.exactly_once() {
            t.push(self.commits_topic());
        }
        t
    }
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
            AnalysisKind::Overflow => 0,
        }
    }
}

impl JobPlan {
    /// How far past the event-time progress at which a record was read every result it
    /// contributes to is emitted: the largest [`horizon_of`](Self::horizon_of) (a record read
    /// at progress `p` has its time at most `p`, and its last window ends at most one window
    /// size and the hold after it). `None` when a result can come arbitrarily later: a session
    /// grows while its user keeps coming, and complete-mode and windowless analyses hold every
    /// record's contribution for the whole run.
    pub fn commit_horizon(&self) -> Option<u64> {
        let unbounded = self.analyses.iter().any(|a| {
            a.session
                || a.complete
                || a.windowless
                || matches!(&a.kind, AnalysisKind::Windowed { node, .. }
                    if self.nodes[*node].windows.session || self.nodes[*node].complete.is_some())
        });
        if unbounded {
            return None;
        }
        (0..self.analyses.len()).map(|a| self.horizon_of(a)).max()
    }

    /// Whether the job commits its Kafka source positions while it runs, as its sinks
    /// acknowledge what those records produced (see `runtime::ingest::commits`): a Kafka
    /// source without checkpoints (with checkpoints, each completed checkpoint commits), and
    /// results that are done a bounded time after their records are read.
    pub fn commits_acknowledged(&self) -> bool {
        matches!(self.source.kind, SourceConfig::Kafka(_))
            && self.checkpoint.is_none()
            && self.commit_horizon().is_some()
    }
}

impl JobPlan {
    /// How often an analysis emits windows: its slide (a derived analysis: its source's).
    pub fn slide_of(&self, analysis: usize) -> i64 {
        match &self.analyses[analysis].kind {
            AnalysisKind::Windowed { node, .. } => self.nodes[*node].windows.slide,
            AnalysisKind::Derived { from, .. } => self.slide_of(*from),
            AnalysisKind::Overflow => 0,
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

/// Checkpoints: where, how often, how many kept (see `checkpoint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPlan {
    /// The checkpoint directory (empty until `--checkpoint-dir` gives it, when the spec has none).
    pub dir: String,
    /// Wall-clock time aimed at between checkpoints.
    pub interval_ms: i64,
    /// Complete checkpoints kept.
    pub keep: usize,
    /// Key groups the spec sets (`None`: a restored checkpoint's, else the default).
    pub key_groups: Option<u32>,
    /// The checkpoint a graceful stop ends with is a savepoint (`--savepoint`).
    pub savepoint: bool,
    /// The job continues from a checkpoint in `dir` (`--from-checkpoint`): none there is an
    /// error, not a fresh start.
    pub restore: bool,
}

impl CheckpointPlan {
    /// Default `interval`.
    pub const DEFAULT_INTERVAL_MS: i64 = 10_000;
    /// Default `keep`.
    pub const DEFAULT_KEEP: usize = 3;
    /// Default `key_groups`.
    pub const DEFAULT_KEY_GROUPS: u32 = 128;
    /// The most `key_groups`: each worker owns at least one group up to this many workers, and
    /// routing's arithmetic stays far from overflowing.
    pub const MAX_KEY_GROUPS: u32 = 32_768;

    /// Checkpoints in `dir` with the default interval and retention.
    pub fn in_dir(dir: String) -> CheckpointPlan {
        CheckpointPlan {
            dir,
            interval_ms: Self::DEFAULT_INTERVAL_MS,
            keep: Self::DEFAULT_KEEP,
            key_groups: None,
            savepoint: false,
            restore: false,
        }
    }
}

/// The aggregate functions of specs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AggFunc {
    /// `count()`: every event of the group.
    Count,
    /// `count(x)`: events where `x` is not null.
    CountNonNull,
    /// `count_if(cond)`: events where `cond` is true.
    CountIf,
    /// `sum(x)`.
    Sum,
    /// `avg(x)` (`mean`).
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// Sample standard deviation (null below two values).
    Stddev,
    /// `count_distinct(x)` (exact, also for `approx_count_distinct`).
    CountDistinct,
    /// Sorted distinct values.
    CollectSet,
    /// Values in event-time order (ties: input order).
    CollectList,
    /// `percentile(x, q)`, `percentiles(x, [q, ..])`, `median(x)`: quantiles of the numbers from
    /// a sketch (`agg::sketch`), as a list in the order of `Quantiles`.
    Percentile(Quantiles),
    /// `percentile_exact(x, q)`: quantiles of the sorted numbers (every value is kept).
    PercentileExact(Quantiles),
    /// `approx_count_distinct(x)`: HyperLogLog (`agg::hll`).
    ApproxCountDistinct,
    /// `top_k(x, k)`: the `k` most frequent values with their counts (`agg::top_k`).
    TopK(u32),
}

/// The largest `k` of `top_k(x, k)`.
pub const MAX_K: u32 = 1000;

/// The quantiles one percentile aggregate answers, in its result list's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quantiles {
    /// `f64::to_bits` of each quantile (0 ≤ q ≤ 1), so the type is `Eq`.
    bits: Vec<u64>,
    /// Made for `percentile`/`median` calls, which share it and add their quantile to it;
    /// a `percentiles` list is its own.
    pub shared: bool,
}

impl Quantiles {
    /// The quantiles `qs`, in this order.
    pub fn new(qs: &[f64], shared: bool) -> Quantiles {
        Quantiles {
            bits: qs.iter().map(|q| q.to_bits()).collect(),
            shared,
        }
    }

    /// The quantiles, in the result list's order.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.bits.iter().map(|b| f64::from_bits(*b))
    }

    /// The position of `q`, added at the end if missing.
    pub fn position_or_add(&mut self, q: f64) -> usize {
        let b = q.to_bits();
        match self.bits.iter().position(|x| *x == b) {
            Some(i) => i,
            None => {
                self.bits.push(b);
                self.bits.len() - 1
            }
        }
    }
}

impl AggFunc {
    /// The aggregate a spec names (with its aliases).
    pub fn from_name(name: &str) -> Option<AggFunc> {
        Some(match name {
            "count" => AggFunc::Count,
            "count_if" => AggFunc::CountIf,
            "sum" => AggFunc::Sum,
            "avg" | "mean" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "stddev" | "stddev_samp" => AggFunc::Stddev,
            "count_distinct" => AggFunc::CountDistinct,
            "approx_count_distinct" => AggFunc::ApproxCountDistinct,
            "collect_set" => AggFunc::CollectSet,
            "collect_list" => AggFunc::CollectList,
            // Parameters are read from the call's other arguments when it is compiled.
            "percentile" | "percentiles" | "median" => AggFunc::Percentile(Quantiles::default()),
            "percentile_exact" => AggFunc::PercentileExact(Quantiles::default()),
            "top_k" => AggFunc::TopK(0),
            _ => return None,
        })
    }
}

/// One aggregate of an analysis: a function and its argument (an event expression).
#[derive(Clone, Debug, PartialEq)]
pub struct AccSpec {
    /// The function.
    pub func: AggFunc,
    /// Its argument (none for `count()`).
    pub arg: Option<Expr>,
}

/// The file format of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// A header line with the column names, then one row per line; fields may be quoted
    /// (`"a, b"`, `""` for a quote). Integers and decimals become numbers, empty fields null.
    Csv,
    /// An array of objects, or one object per line.
    Json,
}

impl TableFormat {
    /// The format's name in specs.
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::Json => "json",
        }
    }

    /// The format a spec or file extension names.
    pub fn parse(s: &str) -> Option<TableFormat> {
        match s {
            "csv" => Some(TableFormat::Csv),
            "json" | "jsonl" => Some(TableFormat::Json),
            _ => None,
        }
    }
}

/// A compiled `[[lookup]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupPlan {
    /// The table's name.
    pub name: String,
    /// Resolved against the spec file's folder.
    pub path: PathBuf,
    /// CSV or JSON.
    pub format: TableFormat,
    /// The key column of the file.
    pub key: String,
    /// The event field matched against it.
    pub on: Field,
    /// (column, the extra slot it fills).
    pub fields: Vec<(String, u8)>,
}

/// The accumulators every session node starts with, in slots 0 and 1: the least and greatest
/// event time (`operators::session_aggregate` reads them).
pub const SESSION_BOUNDS: [AggFunc; 2] = [AggFunc::Min, AggFunc::Max];

/// The names of a row's bounds: `window_start`, `window_end`, or for sessions
/// `session_start`, `session_end`.
pub fn bound_names(session: bool) -> [&'static str; 2] {
    match session {
        true => ["session_start", "session_end"],
        false => ["window_start", "window_end"],
    }
}
