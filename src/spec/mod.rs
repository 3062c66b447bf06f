//! Job specs: the TOML files under `dataflows/`.
//!
//! [`JobSpec`] is the file as written (typed, unknown fields rejected, values keep their source
//! spans); [`plan::JobPlan`] is what the runtime builds a dataflow from. Every error names the
//! file, line, column and field.

pub mod expr;
pub mod overrides;
pub mod plan;
pub mod properties;
pub mod words;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::parse::Format;
use crate::Error;
pub use words::{Delivery, DetectKind, Input, Mode, Severity, SinkKind, SourceKind, StartAt};

/// A job spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name: prefixes the dead-letter and late outputs (`<name>.dead-letter`, `<name>.late`).
    pub name: Spanned<String>,
    /// Free text shown by `logflow check`.
    #[serde(default)]
    pub description: Option<String>,
    /// Where records come from.
    pub source: SourceSpec,
    /// How a record becomes fields: JSON paths, regex groups, Kafka metadata, the time format
    /// (formats `json` and `regex`; default: the built-in `json` fields).
    #[serde(default)]
    pub schema: Option<SchemaSpec>,
    /// Watermark settings shared by the job's analyses.
    #[serde(default)]
    pub watermark: WatermarkSpec,
    /// Where results go (overridden by `--output-dir`).
    #[serde(default)]
    pub sink: SinkSpec,
    /// Consistent checkpoints from which a restarted job continues (default: none).
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
    /// Reference tables joined to every event (stream-static join).
    #[serde(rename = "lookup", default)]
    pub lookups: Vec<LookupSpec>,
    /// The analyses, in output order.
    #[serde(rename = "analysis", default)]
    pub analyses: Vec<AnalysisSpec>,
}

/// A reference table (CSV or JSON file) joined to every event by one key: its `fields`
/// become event fields that any analysis can group by, filter on or aggregate. The file is
/// read again whenever it changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// The table's name, unique in the spec (named in `check` and in reload messages).
    pub name: Spanned<String>,
    /// CSV with a header line, or JSON (an array of objects, or one object per line);
    /// relative to the spec file's folder.
    pub path: Spanned<String>,
    /// `csv` or `json` (default: from the file name's extension).
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    /// The table's key column.
    pub key: Spanned<String>,
    /// The event field matched against `key` (default: the field named like `key`).
    #[serde(default)]
    pub on: Option<Spanned<String>>,
    /// The columns that become event fields (null when the key is not in the table).
    pub fields: Vec<Spanned<String>>,
}

/// A user-defined schema: which path of a record each field comes from, and its type. Every
/// analysis uses the fields by name, the built-in ones and new names alike. With format
/// `json`, a built-in field the schema does not list is read from its usual key; with format
/// `regex`, the fields are the pattern's named groups. See docs/schemas.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    /// Where the event time comes from (default: key `timestamp`, RFC 3339 or epoch ms).
    #[serde(default)]
    pub timestamp: Option<Spanned<TimestampSpec>>,
    /// Format `regex`: a Rust `regex` pattern that must match the whole line; its named
    /// groups become fields.
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
    /// Format `regex`: a capture equal to this token (such as `-`) is null.
    #[serde(default)]
    pub null: Option<Spanned<String>>,
    /// `field = "path"` or `field = { path = "...", type = "..." }`: a dotted path into nested
    /// JSON objects, a regex group name, or Kafka metadata (`@key`, `@timestamp`,
    /// `@partition`, `@offset`, `@header.NAME`); type `string` (default for new names),
    /// `int`, `float` or `bool` (a JSON string holding a number is read as `int`/`float`).
    /// The path defaults to the field's name.
    #[serde(default)]
    pub fields: BTreeMap<String, Spanned<FieldSpec>>,
}

/// The event time of a user-defined schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSpec {
    /// Path of the time (default `timestamp`): a JSON path, a regex group or `@timestamp`.
    #[serde(default)]
    pub path: Option<String>,
    /// `rfc3339` (default), `epoch_millis`, `epoch_seconds` (a fraction is exact to the
    /// millisecond), `epoch_micros`, `epoch_nanos`, or a chrono strftime pattern such as
    /// `%d/%b/%Y:%H:%M:%S %z`.
    #[serde(default)]
    pub format: Option<String>,
    /// For a strftime pattern without an offset: `UTC` (default) or a fixed offset such as
    /// `+01:00`.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// One field of `[schema.fields]`: a path, or a table with `path` and `type`.
#[derive(Debug, Default)]
pub struct FieldSpec {
    /// Where the value comes from (default: the field's name).
    pub path: Option<String>,
    /// `type`: string, int, float or bool.
    pub ty: Option<String>,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a path, or a table with `path` and `type`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec {
                    path: Some(v.to_string()),
                    ty: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldSpec, A::Error> {
                let mut f = FieldSpec::default();
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "path" => f.path = Some(map.next_value()?),
                        "type" => f.ty = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["path", "type"])),
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where records come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `kafka`, `file`, `directory`, `socket` or `generator`.
    pub kind: Spanned<SourceKind>,
    /// Record format: `json`, `regex` (with a `[schema]` pattern), `apache`, `nginx`,
    /// `user-events`, `text`.
    pub format: Spanned<Format>,
    /// `file`: the path to read (`-` = stdin); `directory`: the folder to watch.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// `kafka`: the topic to read.
    #[serde(default)]
    pub topic: Option<Spanned<String>>,
    /// `kafka`: bootstrap servers; none = the in-process cluster.
    #[serde(default)]
    pub brokers: Option<Spanned<String>>,
    /// `kafka`: `earliest`, `latest` or `stored` (Spark: `startingOffsets`).
    #[serde(default, alias = "starting_offsets")]
    pub start: Option<Spanned<StartAt>>,
    /// `socket`: the host of the line server to connect to (default `127.0.0.1`).
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// `socket`: its port.
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    /// `socket`: when the server closes the connection, connect again (default: the input
    /// ends, and the job with it).
    #[serde(default)]
    pub reconnect: Option<Spanned<bool>>,
    /// `directory`: file names to read (`*` and `?` wildcards; default `*`). Hidden files
    /// (starting with `.`) are never read: write a file elsewhere and move it in.
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
    /// `directory`: at most this many new files are started per read (Spark's
    /// `maxFilesPerTrigger`; default unlimited).
    #[serde(default)]
    pub max_files_per_trigger: Option<Spanned<u64>>,
    /// `directory`: the input ends when no new file has come for this long (default: never).
    #[serde(default)]
    pub end_after_idle: Option<Spanned<String>>,
    /// `generator`: events per second of wall-clock time, with event times starting now
    /// (Spark's rate source; default: as fast as possible, from a fixed start time).
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    /// `kafka`: extra librdkafka client properties (SASL, TLS, ...), passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `generator`: how many events (default 100000).
    #[serde(default)]
    pub events: Option<Spanned<u64>>,
    /// `generator`: seed (default 42).
    #[serde(default)]
    pub seed: Option<Spanned<u64>>,
    /// Longest accepted record in bytes; longer ones go to the dead-letter output.
    #[serde(default)]
    pub max_record_bytes: Option<Spanned<u64>>,
}

/// Watermark settings shared by the job's analyses.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// Bounded out-of-orderness (default `5m`); an analysis may set its own `delay`.
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    /// A source partition with no data for this long stops holding the watermark (default `30s`).
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
    /// An event more than this ahead of the wall clock is a dead letter (`timestamp in the future`), never a watermark move (default `1h`).
    #[serde(default)]
    pub max_future: Option<Spanned<String>>,
}

/// Where results go (overridden by `--output-dir`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// `kafka` (default when the source is Kafka), `console`, or `files`.
    #[serde(default)]
    pub kind: Option<Spanned<SinkKind>>,
    /// `kafka`: bootstrap servers (default: the source's).
    #[serde(default)]
    pub brokers: Option<Spanned<String>>,
    /// `files`: the output directory.
    #[serde(default)]
    pub dir: Option<Spanned<String>>,
    /// `kafka`: extra librdkafka producer properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `kafka`: `at_least_once` (default) or `exactly_once` (results committed in Kafka
    /// transactions with the job's progress; a restarted job does not write them again).
    #[serde(default)]
    pub delivery: Option<Spanned<Delivery>>,
}

/// Checkpoints of the job's state and source positions (see `checkpoint`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// The checkpoint directory, relative to the current directory (shared storage when the
    /// job's processes run on several hosts); may be left to `--checkpoint-dir`, which replaces it.
    #[serde(default)]
    pub dir: Option<Spanned<String>>,
    /// Wall-clock time between checkpoints (default `10s`).
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// Complete checkpoints kept (default 3); older ones are removed (savepoints stay).
    #[serde(default)]
    pub keep: Option<Spanned<u64>>,
    /// Key groups (default 128, at most 32768): the units keyed state is split into, so that a
    /// checkpoint restores on any number of processes and workers (each owns a range of
    /// groups). Fixed for a job once it has checkpoints; more workers than groups leaves some
    /// without keyed state.
    #[serde(default)]
    pub key_groups: Option<Spanned<u64>>,
}

/// One analysis: either windowed over events (`window` + `select`), or derived from another
/// analysis's results (`from` + optional `detect`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Analysis name, unique in the spec: its output file (`<name>.jsonl`) and, unless `topic`
    /// says otherwise, its output topic; derived analyses name it in `from`.
    pub name: Spanned<String>,
    /// Free text shown by `logflow check`.
    #[serde(default)]
    pub description: Option<String>,
    /// Output topic (default: the analysis name).
    #[serde(default)]
    pub topic: Option<Spanned<String>>,
    /// `append` (default: each window's final result once), `update` (early results as
    /// data arrives, then corrections) or `complete` (no window: the whole result table at
    /// each trigger).
    #[serde(default)]
    pub mode: Option<Spanned<Mode>>,
    /// `update` and `complete` modes: event-time (with format `text`: processing-time)
    /// interval between results (default `10s`).
    #[serde(default)]
    pub trigger: Option<Spanned<String>>,
    /// `<list expression> as <name>`: one row per element of the list, with the element as
    /// field `<name>` (e.g. `split(line) as word`), before `where` and grouping.
    #[serde(default)]
    pub explode: Option<Spanned<String>>,
    /// What the analysis reads: `events` (default) or `late` (the events that were late for
    /// some other analysis, as sent to `<job>.late`).
    #[serde(default)]
    pub input: Option<Spanned<Input>>,

    // Windowed analyses.
    /// An event-time window: tumbling (`size`), sliding (`size` + `slide`) or sessions
    /// (`session_gap`).
    #[serde(default)]
    pub window: Option<Spanned<WindowSpec>>,
    /// Bounded out-of-orderness for this analysis (default: the job's).
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    /// Keep a window open this long past the watermark (default 0).
    #[serde(default)]
    pub allowed_lateness: Option<Spanned<String>>,
    /// Events to include (before grouping).
    #[serde(default, rename = "where")]
    pub filter: Option<Spanned<String>>,
    /// Group keys: event field names; each output row carries them (default: one group).
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    /// Output columns: `expr as name`.
    #[serde(default)]
    pub select: Vec<Spanned<String>>,

    // Derived analyses.
    /// A derived analysis: the windowed analysis whose result rows it reads (with `detect`).
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// A detector over another analysis's rows, per group key, in window order.
    #[serde(default)]
    pub detect: Option<DetectSpec>,

    /// Windowed `append` analyses: at most this many group keys per window (default:
    /// unlimited, exact). The kept keys are the first `max_keys` in key order, for any number of
    /// workers and processes; every other key of the window is written to `<job>.overflow` (and
    /// counted in `logflow_overflow_keys_total`) instead of holding state.
    #[serde(default)]
    pub max_keys: Option<Spanned<u64>>,
    /// Rows to keep (after aggregation or detection).
    #[serde(default)]
    pub having: Option<Spanned<String>>,
    /// Metric columns exported as Prometheus gauges (`logflow_result`): the value of the
    /// latest closed window of each group key, with the keys as labels.
    #[serde(default)]
    pub gauges: Vec<Spanned<String>>,
    /// Marks the analysis as an alert: every row it writes is also written to `<job>.alerts`
    /// in one schema for all alerts (docs/alerts.md), with this severity and summary.
    #[serde(default)]
    pub alert: Option<AlertSpec>,
}

/// An analysis whose rows are alerts: `alert = { severity = "critical", summary = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// `critical`, `warning` or `info`.
    pub severity: Spanned<Severity>,
    /// One line for people: `{column}` is replaced by the row's value of that output column
    /// (`{{` and `}}` are literal braces).
    pub summary: Spanned<String>,
}

/// An event-time window: tumbling (`size`), sliding (`size` + `slide`) or sessions
/// (`session_gap`, instead of `size`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length, a duration such as `1m` or `30s`.
    #[serde(default)]
    pub size: Option<Spanned<String>>,
    /// Sliding windows: a new window starts every `slide` (default: `size`, tumbling).
    #[serde(default)]
    pub slide: Option<Spanned<String>>,
    /// Session windows per group key: events less than this apart (e.g. `30m`) are one
    /// session, from its first event to its last plus the gap (`session_start`,
    /// `session_end`); a session closes when the watermark passes its end plus
    /// `allowed_lateness`, and merges with its neighbours when an event bridges the gap.
    #[serde(default)]
    pub session_gap: Option<Spanned<String>>,
}

/// A detector over another analysis's rows, per group key, in window order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    /// `zscore`, `lag` or `intersect`.
    pub kind: Spanned<DetectKind>,
    /// `zscore`/`lag`: the column to watch.
    #[serde(default)]
    pub field: Option<Spanned<String>>,
    /// `zscore`: how many previous rows form the baseline (default 10); `lag`: the previous row
    /// is looked for this many windows back (default 10). A key with no row for that many
    /// windows has its state dropped (its next row starts afresh).
    #[serde(default)]
    pub history: Option<Spanned<u64>>,
    /// `intersect`: the other analysis whose keys must also be present.
    #[serde(default)]
    pub with: Option<Spanned<String>>,
}

/// Spec file text with its name, for error messages.
pub struct SpecSource<'a> {
    /// The file name, as errors show it.
    pub file: &'a str,
    /// Its text.
    pub text: &'a str,
}

impl SpecSource<'_> {
    /// Builds an [`Error::Spec`] pointing at a byte span of the file.
    pub fn error(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> Error {
        let (line, column) = line_col(self.text, span.start);
        Error::Spec {
            file: self.file.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Parses spec text (no semantic checks; see [`plan::JobPlan::compile`]).
pub fn parse_spec(src: &SpecSource<'_>) -> Result<JobSpec, Error> {
    toml::from_str::<JobSpec>(src.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml reports the key path in the message; keep its text, add our location.
        let message = e.message().trim().to_string();
        let field = match field_from_message(&message) {
            Some(f) if message.starts_with("unknown field") => f,
            _ => key_at(src.text, span.start),
        };
        src.error(span, &field, message)
    })
}

/// The offending field name, when the message quotes one (`unknown field `x``).
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// The key whose value is at `offset`: `key = value` on its line (`outer.key` inside an
/// inline table), prefixed with the table it is in when that is a single table (`[source]`,
/// `[sink]`, ...); or the table header itself.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let Some((first, _)) = line.split_once('=') else {
        return line.trim().trim_matches(['[', ']']).to_string();
    };
    let mut key = first.trim().to_string();
    // Inside an inline table (`detect = { kind = "x" }`): the key just before the value.
    let before = &text[line_start..offset];
    if let Some(eq) = before.rfind('=') {
        let inner = before[..eq].rsplit(['{', ',']).next().unwrap_or("").trim();
        if !inner.is_empty() && inner != key && before[..eq].contains('{') {
            key = format!("{key}.{inner}");
        }
    }
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['));
    match header {
        Some(h) if !h.starts_with("[[") && !key.contains('.') => {
            format!("{}.{key}", h.trim_matches(['[', ']']).trim())
        }
        _ => key,
    }
}

/// Reads and compiles a spec file.
pub fn load(path: &Path) -> Result<plan::JobPlan, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    load_text(&path.display().to_string(), &text)
}

/// Compiles spec text read from `file` (named in errors; relative paths in the spec are
/// relative to its folder).
pub fn load_text(file: &str, text: &str) -> Result<plan::JobPlan, Error> {
    let src = SpecSource { file, text };
    let spec = parse_spec(&src)?;
    plan::JobPlan::compile(&spec, &src)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JobSpec, Error> {
        parse_spec(&SpecSource {
            file: "t.toml",
            text,
        })
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\nformat = \"json\"\ncolour = 3\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:5:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_format_value_is_reported() {
        let text = "name = \"j\"\n[source]\nkind = \"file\"\nformat = \"xml\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:4:"), "{err}");
        assert!(err.contains("format"), "{err}");
    }

    #[test]
    fn bad_words_name_their_table_and_key() {
        let text = "name = \"j\"\n[source]\nkind = \"pipe\"\nformat = \"json\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with("t.toml:3:8: source.kind: unknown source kind `pipe`"),
            "{err}"
        );
        let text = "name = \"j\"\n[source]\nkind = \"file\"\nformat = \"json\"\n\
                    [[analysis]]\nname = \"a\"\nfrom = \"b\"\ndetect = { kind = \"wave\" }\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "t.toml:8:19: detect.kind: unknown detector `wave` (zscore, lag, intersect)"
            ),
            "{err}"
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
