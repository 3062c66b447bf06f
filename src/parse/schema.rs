//! User-defined schemas (a spec's `[schema]`): how a JSON object (by dotted paths into nested
//! objects), a text line (by the named groups of a regex) or a Kafka record's metadata
//! (`@key`, `@timestamp`, `@partition`, `@offset`, `@header.NAME`) becomes an [`Event`].
//!
//! The spec layer resolves names to [`Field`]s (built-in fields keep theirs, a new name gets an
//! extra slot) and hands a [`Schema`] to the ingest. A JSON record is read in one pass over the
//! paths the schema names: every other key is skipped without building a value, and a value on
//! a path is kept as its raw text, converted to the field's type only at the end. Numbers are
//! converted from that text, so epoch-second fractions are exact to the millisecond.

use std::fmt;

use regex::Regex;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::timestamp::parse_rfc3339;
use super::{Format, ParseError};
use crate::record::{Event, Field, FieldSet, Str, Value};

/// The type a schema field converts its value to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text (the default for new names).
    String,
    /// A 64-bit integer; a JSON string of one is accepted.
    Int,
    /// A float; a JSON string of one is accepted.
    Float,
    /// `true` or `false`.
    Bool,
}

impl FieldType {
    /// The type's name in specs.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
        }
    }

    /// The type named `s`, if any.
    pub fn from_name(s: &str) -> Option<FieldType> {
        Some(match s {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            _ => return None,
        })
    }

    /// A built-in field's type (`None` for the event time and extra fields).
    pub fn of_builtin(f: Field) -> Option<FieldType> {
        match f {
            Field::Timestamp | Field::Extra(_) => None,
            Field::ResponseTime | Field::Value => Some(FieldType::Float),
            Field::StatusCode => Some(FieldType::Int),
            _ => Some(FieldType::String),
        }
    }
}

/// Kafka record metadata a path can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaPath {
    /// The record's key.
    Key,
    /// The record's timestamp, epoch ms.
    Timestamp,
    /// The partition number.
    Partition,
    /// The record's offset.
    Offset,
    /// The value of the last header of this name.
    Header(String),
}

/// Where a field's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// Keys of nested JSON objects, outermost first.
    Json(Vec<String>),
    /// A named group of the schema's regex.
    Group(String),
    /// Kafka record metadata.
    Meta(MetaPath),
}

impl Path {
    /// Parses a path as written in a spec: `@...` metadata, else a group name (`regex`) or a
    /// dotted JSON path.
    pub fn parse(s: &str, regex: bool) -> Result<Path, String> {
        if let Some(m) = s.strip_prefix('@') {
            return Ok(Path::Meta(match m {
                "key" => MetaPath::Key,
                "timestamp" => MetaPath::Timestamp,
                "partition" => MetaPath::Partition,
                "offset" => MetaPath::Offset,
                _ => match m.strip_prefix("header.") {
                    Some(h) if !h.is_empty() => MetaPath::Header(h.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown metadata path `{s}` (@key, @timestamp, @partition, \
                             @offset, @header.NAME)"
                        ))
                    }
                },
            }));
        }
        if regex {
            let mut c = s.chars();
            let ok = c
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if ok {
                Ok(Path::Group(s.to_string()))
            } else {
                Err(format!("`{s}` is not a regex group name"))
            };
        }
        if s.contains(['[', ']']) {
            return Err(format!(
                "bad path `{s}`: array elements cannot be read (a path is keys joined by `.`)"
            ));
        }
        let segs: Vec<String> = s.split('.').map(str::to_string).collect();
        if segs.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "bad path `{s}`: an empty key (a path is keys joined by `.`, such as \
                 `request.host`)"
            ));
        }
        Ok(Path::Json(segs))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Json(s) => f.write_str(&s.join(".")),
            Path::Group(g) => write!(f, "(?P<{g}>)"),
            Path::Meta(MetaPath::Key) => f.write_str("@key"),
            Path::Meta(MetaPath::Timestamp) => f.write_str("@timestamp"),
            Path::Meta(MetaPath::Partition) => f.write_str("@partition"),
            Path::Meta(MetaPath::Offset) => f.write_str("@offset"),
            Path::Meta(MetaPath::Header(h)) => write!(f, "@header.{h}"),
        }
    }
}

/// How the event time is written.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeFormat {
    /// The built-in `json` format's rule: an RFC 3339 string or integer epoch milliseconds.
    Default,
    /// An RFC 3339 string.
    Rfc3339,
    /// Integer epoch milliseconds.
    EpochMillis,
    /// Epoch seconds, a decimal fraction exact to the millisecond.
    EpochSeconds,
    /// Integer epoch microseconds.
    EpochMicros,
    /// Integer epoch nanoseconds.
    EpochNanos,
    /// A chrono strftime pattern; `offset_s` applies when the pattern has no zone.
    Pattern {
        /// The chrono strftime pattern.
        pattern: String,
        /// The pattern has an offset (`%z`).
        zoned: bool,
        /// Seconds east of UTC of a pattern without an offset.
        offset_s: i32,
    },
}

impl TimeFormat {
    /// Parses `format` (and `timezone`, for patterns without an offset).
    pub fn parse(format: &str, timezone: Option<&str>) -> Result<TimeFormat, String> {
        let named = match format {
            "rfc3339" => Some(TimeFormat::Rfc3339),
            "epoch_millis" => Some(TimeFormat::EpochMillis),
            "epoch_seconds" => Some(TimeFormat::EpochSeconds),
            "epoch_micros" => Some(TimeFormat::EpochMicros),
            "epoch_nanos" => Some(TimeFormat::EpochNanos),
            _ => None,
        };
        if let Some(f) = named {
            return match timezone {
                Some(_) => Err(format!(
                    "`timezone` applies to strftime patterns without an offset, not to `{format}`"
                )),
                None => Ok(f),
            };
        }
        if !format.contains('%') {
            return Err(format!(
                "unknown timestamp format `{format}` (rfc3339, epoch_millis, epoch_seconds, \
                 epoch_micros, epoch_nanos, or a strftime pattern such as \
                 \"%d/%b/%Y:%H:%M:%S %z\")"
            ));
        }
        use chrono::format::{Item, StrftimeItems};
        if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
            return Err(format!("bad strftime pattern `{format}`"));
        }
        let zoned = ["%z", "%:z", "%::z", "%#z"]
            .iter()
            .any(|z| format.contains(z));
        let offset_s = match timezone {
            None => 0,
            Some(_) if zoned => {
                return Err(format!(
                    "`timezone` is for patterns without an offset; `{format}` has one"
                ))
            }
            Some(tz) => fixed_offset(tz)?,
        };
        Ok(TimeFormat::Pattern {
            pattern: format.to_string(),
            zoned,
            offset_s,
        })
    }

    /// The format as `check` shows it.
    pub fn name(&self) -> String {
        match self {
            TimeFormat::Default => "rfc3339 or epoch_millis".into(),
            TimeFormat::Rfc3339 => "rfc3339".into(),
            TimeFormat::EpochMillis => "epoch_millis".into(),
            TimeFormat::EpochSeconds => "epoch_seconds".into(),
            TimeFormat::EpochMicros => "epoch_micros".into(),
            TimeFormat::EpochNanos => "epoch_nanos".into(),
            TimeFormat::Pattern {
                pattern, offset_s, ..
            } if *offset_s != 0 => {
                format!("\"{pattern}\" at UTC{}", offset_text(*offset_s))
            }
            TimeFormat::Pattern { pattern, .. } => format!("\"{pattern}\""),
        }
    }

    /// The format as written in a spec's `timestamp = { format = ... }`.
    pub fn spec_text(&self) -> String {
        match self {
            TimeFormat::Default | TimeFormat::Rfc3339 => "rfc3339".into(),
            TimeFormat::Pattern { pattern, .. } => pattern.clone(),
            f => f.name(),
        }
    }

    /// Epoch milliseconds of a time written as text.
    pub fn convert_text(&self, s: &str) -> Option<i64> {
        self.convert(&Raw::Text(s))
    }

    /// Epoch milliseconds of a value (`None`: not a time in this format).
    fn convert(&self, raw: &Raw<'_>) -> Option<i64> {
        let ms = match (self, raw) {
            (TimeFormat::Default, Raw::Json(_)) => match raw.text()? {
                (t, true) => parse_rfc3339(&t)?,
                (t, false) => t.parse::<i64>().ok()?,
            },
            (TimeFormat::Default | TimeFormat::Rfc3339, _) => parse_rfc3339(&raw.text()?.0)?,
            (TimeFormat::EpochMillis, _) => epoch_ms(&raw.text()?.0, 0)?,
            (TimeFormat::EpochSeconds, _) => epoch_ms(&raw.text()?.0, 3)?,
            (TimeFormat::EpochMicros, _) => epoch_ms(&raw.text()?.0, -3)?,
            (TimeFormat::EpochNanos, _) => epoch_ms(&raw.text()?.0, -6)?,
            (
                TimeFormat::Pattern {
                    pattern,
                    zoned,
                    offset_s,
                },
                _,
            ) => pattern_ms(&raw.text()?.0, pattern, *zoned, *offset_s)?,
        };
        (ms >= 0).then_some(ms)
    }
}

/// `UTC`, `Z` or `+hh:mm`/`-hh:mm` in seconds east of UTC.
fn fixed_offset(tz: &str) -> Result<i32, String> {
    if tz == "UTC" || tz == "Z" || tz == "Etc/UTC" {
        return Ok(0);
    }
    let b = tz.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => {
            return Err(format!(
                "timezone `{tz}`: logflow bundles no time-zone database; give `UTC` or a fixed \
                 offset such as `+01:00`"
            ))
        }
    };
    let digits = |s: &[u8]| -> Option<i32> {
        (s.len() == 2 && s.iter().all(u8::is_ascii_digit))
            .then(|| i32::from(s[0] - b'0') * 10 + i32::from(s[1] - b'0'))
    };
    let (h, m) = match b.len() {
        6 if b[3] == b':' => (digits(&b[1..3]), digits(&b[4..6])),
        5 => (digits(&b[1..3]), digits(&b[3..5])),
        _ => (None, None),
    };
    match (h, m) {
        (Some(h), Some(m)) if h < 24 && m < 60 => Ok(sign * (h * 3600 + m * 60)),
        _ => Err(format!("bad timezone offset `{tz}` (expected `+hh:mm`)")),
    }
}

fn offset_text(s: i32) -> String {
    let sign = if s < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", s.abs() / 3600, s.abs() % 3600 / 60)
}

/// A decimal number `[-]digits[.digits]` as epoch milliseconds, its unit being 10^`shift` ms
/// (3: seconds, 0: ms, -3: µs, -6: ns), truncated toward minus infinity. Read digit by digit,
/// never through a float: `1795514344.617` s is exactly `1795514344617` ms.
pub fn epoch_ms(s: &str, shift: i32) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || int.len() > 30 || !int.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    // All digits as one integer in units of 10^-(frac digits kept).
    let digits: String = int.chars().chain(frac.chars()).collect();
    let scale = frac.len() as i32;
    // value_ms = digits * 10^(shift - scale)
    let e = shift - scale;
    let digits = digits.trim_start_matches('0');
    if digits.len() > 36 {
        return None;
    }
    let n: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let n = if neg { -n } else { n };
    let ms = if e >= 0 {
        n.checked_mul(10i128.checked_pow(e as u32)?)?
    } else if -e > 36 {
        if n < 0 {
            -1
        } else {
            0
        }
    } else {
        n.div_euclid(10i128.pow((-e) as u32))
    };
    i64::try_from(ms).ok()
}

/// A time written with a strftime pattern, as epoch ms.
fn pattern_ms(s: &str, pattern: &str, zoned: bool, offset_s: i32) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if zoned {
        return DateTime::parse_from_str(s, pattern)
            .ok()
            .map(|t| t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(s, pattern).ok().or_else(|| {
        NaiveDate::parse_from_str(s, pattern)
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Some(naive.and_utc().timestamp_millis() - i64::from(offset_s) * 1000)
}

/// One field of a schema.
#[derive(Clone, Debug)]
pub struct SchemaField {
    /// The field's name in analyses.
    pub name: String,
    /// Where the value comes from.
    pub path: Path,
    /// What it converts to.
    pub ty: FieldType,
    /// Where the event holds it.
    pub target: Field,
    /// Listed in `[schema.fields]` (or a regex group), not a built-in read from its own key.
    pub declared: bool,
}

/// Kafka record metadata, for schemas with `@` paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// The record's key, if any.
    pub key: Option<Vec<u8>>,
    /// The record's timestamp, epoch ms (create or log-append time, whichever the topic keeps).
    pub timestamp: Option<i64>,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its headers, in order (a header may have no value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A compiled schema: what the ingest parses records with.
#[derive(Debug)]
pub struct Schema {
    /// `Json` or `Regex`.
    pub format: Format,
    /// Where the event time comes from.
    pub timestamp_path: Path,
    /// How the event time is written.
    pub time_format: TimeFormat,
    /// The fields, declared and implicit, in parse order.
    pub fields: Vec<SchemaField>,
    /// The pattern as written (`format = "regex"`).
    pub pattern: Option<String>,
    /// A capture equal to this is null (`format = "regex"`).
    pub null: Option<String>,
    regex: Option<Regex>,
    /// Capture group index -> leaves reading it (`format = "regex"`).
    groups: Vec<Vec<usize>>,
    /// JSON paths -> leaves (leaf 0 is the timestamp, leaf `i + 1` is `fields[i]`).
    tree: Tree,
    metas: Vec<(MetaPath, usize)>,
}

#[derive(Debug, Default)]
struct Tree {
    keys: Vec<(String, Node)>,
}

#[derive(Debug)]
enum Node {
    Leaf(Vec<usize>),
    Inner(Tree),
}

impl Tree {
    fn find(&self, key: &str) -> Option<&Node> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    fn insert(&mut self, path: &[String], leaf: usize) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(());
        };
        let at = match self.keys.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                let node = if rest.is_empty() {
                    Node::Leaf(Vec::new())
                } else {
                    Node::Inner(Tree::default())
                };
                self.keys.push((first.clone(), node));
                self.keys.len() - 1
            }
        };
        match (&mut self.keys[at].1, rest.is_empty()) {
            (Node::Leaf(ids), true) => {
                ids.push(leaf);
                Ok(())
            }
            (Node::Inner(t), false) => t.insert(rest, leaf),
            _ => Err(format!(
                "`{first}` is read both as a value and as an object holding other paths"
            )),
        }
    }
}

impl Schema {
    /// Compiles a schema. `fields` are the declared fields (regex: every named group not
    /// declared is added as a string field, or its built-in type, by [`Schema::group_fields`]
    /// before this). A regex `pattern` must match the whole line.
    pub fn new(
        format: Format,
        timestamp_path: Path,
        time_format: TimeFormat,
        fields: Vec<SchemaField>,
        pattern: Option<&str>,
        null: Option<String>,
    ) -> Result<Schema, String> {
        let regex = match pattern {
            Some(p) => Some(compile_regex(p)?),
            None => None,
        };
        let mut s = Schema {
            format,
            timestamp_path,
            time_format,
            fields,
            pattern: pattern.map(str::to_string),
            null,
            regex,
            groups: Vec::new(),
            tree: Tree::default(),
            metas: Vec::new(),
        };
        s.index()?;
        Ok(s)
    }

    /// Adds the built-in fields in `used` that no field declares, read from their own keys
    /// (format `json`; a regex line has only its groups).
    pub fn add_implicit(&mut self, used: FieldSet) -> Result<(), String> {
        if self.format != Format::Json {
            return Ok(());
        }
        for f in Field::ALL {
            let Some(ty) = FieldType::of_builtin(f) else {
                continue;
            };
            if f == Field::Line || !used.contains(f) || self.fields.iter().any(|x| x.target == f) {
                continue;
            }
            self.fields.push(SchemaField {
                name: f.name().to_string(),
                path: Path::Json(vec![f.name().to_string()]),
                ty,
                target: f,
                declared: false,
            });
        }
        self.index()
    }

    /// The regex's named groups (`None` for a JSON schema or a bad pattern).
    pub fn group_names(pattern: &str) -> Result<Vec<String>, String> {
        Ok(compile_regex(pattern)?
            .capture_names()
            .flatten()
            .map(str::to_string)
            .collect())
    }

    fn index(&mut self) -> Result<(), String> {
        self.tree = Tree::default();
        self.metas.clear();
        let paths =
            std::iter::once(&self.timestamp_path).chain(self.fields.iter().map(|f| &f.path));
        let mut groups: Vec<Vec<usize>> = Vec::new();
        if let Some(r) = &self.regex {
            groups = vec![Vec::new(); r.captures_len()];
        }
        for (leaf, path) in paths.enumerate() {
            match path {
                Path::Json(p) => self.tree.insert(p, leaf)?,
                Path::Meta(m) => self.metas.push((m.clone(), leaf)),
                Path::Group(g) => {
                    let Some(r) = &self.regex else {
                        return Err(format!("`{g}`: a group needs `format = \"regex\"`"));
                    };
                    let i = r
                        .capture_names()
                        .position(|n| n == Some(g.as_str()))
                        .ok_or_else(|| format!("the pattern has no named group `{g}`"))?;
                    groups[i].push(leaf);
                }
            }
        }
        self.groups = groups;
        Ok(())
    }

    /// The event field a name resolves to, `None` when the schema does not define it.
    pub fn field(&self, name: &str) -> Option<Field> {
        if name == "timestamp" {
            return Some(Field::Timestamp);
        }
        if let Some(f) = self.fields.iter().find(|f| f.name == name) {
            return Some(f.target);
        }
        // A JSON record's built-in fields are read from their own keys unless declared.
        match (self.format, Field::from_name(name)) {
            (Format::Json, Some(f)) if f != Field::Line => Some(f),
            _ => None,
        }
    }

    /// Some path reads Kafka record metadata.
    pub fn uses_meta(&self) -> bool {
        !self.metas.is_empty()
    }

    /// The resolved schema, one line per field, for `logflow check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        match (&self.pattern, &self.null) {
            (Some(p), n) => {
                let _ = write!(s, "schema: format regex, pattern '{p}'");
                if let Some(n) = n {
                    let _ = write!(s, ", `{n}` is null");
                }
                s.push('\n');
            }
            (None, _) => s.push_str("schema: format json\n"),
        }
        let _ = writeln!(
            s,
            "  timestamp <- {} ({})",
            self.timestamp_path,
            self.time_format.name()
        );
        for f in &self.fields {
            let _ = writeln!(s, "  {} <- {} ({})", f.name, f.path, f.ty.name());
        }
        if self.format == Format::Json {
            s.push_str("  other built-in fields <- their own keys\n");
        }
        s
    }

    /// Parses one record into `ev` (`Event::default()` on entry); `meta` is the Kafka record's
    /// metadata when the source has it.
    pub fn parse_into(
        &self,
        line: &[u8],
        meta: Option<&RecordMeta>,
        ev: &mut Event,
    ) -> Result<(), ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| ParseError::new("not UTF-8"))?;
        let mut raws: Vec<Raw<'_>> = vec![Raw::Missing; self.fields.len() + 1];
        match &self.regex {
            Some(r) => {
                let caps = r
                    .captures(text)
                    .ok_or_else(|| ParseError::new("the line does not match the schema pattern"))?;
                for (i, leaves) in self.groups.iter().enumerate() {
                    if leaves.is_empty() {
                        continue;
                    }
                    let v = match caps.get(i) {
                        Some(m) if self.null.as_deref() != Some(m.as_str()) => {
                            Raw::Text(m.as_str())
                        }
                        _ => Raw::Null,
                    };
                    for &l in leaves {
                        raws[l] = v.clone();
                    }
                }
            }
            None => {
                let mut de = serde_json::Deserializer::from_str(text);
                Obj {
                    tree: &self.tree,
                    raws: &mut raws,
                }
                .deserialize(&mut de)
                .and_then(|()| de.end())
                .map_err(super::fields::reason)?;
            }
        }
        for (m, leaf) in &self.metas {
            raws[*leaf] = meta_value(m, meta)?;
        }
        let ts = &raws[0];
        if matches!(ts, Raw::Missing | Raw::Null) {
            return Err(ParseError::new(format!(
                "missing timestamp (path `{}`)",
                self.timestamp_path
            )));
        }
        ev.timestamp = self.time_format.convert(ts).ok_or_else(|| {
            ParseError::new(format!(
                "timestamp (path `{}`): {} is not a time in format {}",
                self.timestamp_path,
                ts.shown(),
                self.time_format.name()
            ))
        })?;
        for (f, raw) in self.fields.iter().zip(&raws[1..]) {
            let v = convert(raw, f.ty).ok_or_else(|| {
                ParseError::new(format!(
                    "field `{}` (path `{}`): expected {}, found {}",
                    f.name,
                    f.path,
                    f.ty.name(),
                    raw.shown()
                ))
            })?;
            set(ev, f.target, v);
        }
        Ok(())
    }
}

fn compile_regex(p: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 22)
        .build()
        .map_err(|e| format!("the pattern does not compile: {e}"))
}

fn meta_value<'a>(m: &MetaPath, meta: Option<&'a RecordMeta>) -> Result<Raw<'a>, ParseError> {
    let Some(meta) = meta else {
        return Ok(Raw::Null);
    };
    let bytes = |b: Option<&'a [u8]>| match b {
        None => Ok(Raw::Null),
        Some(b) => std::str::from_utf8(b)
            .map(Raw::Text)
            .map_err(|_| ParseError::new("record metadata is not UTF-8")),
    };
    match m {
        MetaPath::Key => bytes(meta.key.as_deref()),
        MetaPath::Timestamp => Ok(meta.timestamp.map_or(Raw::Null, Raw::Int)),
        MetaPath::Partition => Ok(Raw::Int(i64::from(meta.partition))),
        MetaPath::Offset => Ok(Raw::Int(meta.offset)),
        MetaPath::Header(h) => {
            // The last header of that name wins, as for duplicate JSON keys.
            let v = meta.headers.iter().rev().find(|(k, _)| k == h);
            bytes(v.and_then(|(_, v)| v.as_deref()))
        }
    }
}

/// A value on a path, not converted yet.
#[derive(Clone, Debug)]
enum Raw<'a> {
    Missing,
    Null,
    /// JSON text of any value.
    Json(&'a RawValue),
    /// A regex capture or string metadata.
    Text(&'a str),
    Int(i64),
}

impl Raw<'_> {
    /// The value as text, and whether it was a JSON string; `None` for null, missing, and JSON
    /// objects, arrays and booleans.
    fn text(&self) -> Option<(std::borrow::Cow<'_, str>, bool)> {
        use std::borrow::Cow;
        match self {
            Raw::Missing | Raw::Null => None,
            Raw::Text(t) => Some((Cow::Borrowed(*t), true)),
            Raw::Int(i) => Some((Cow::Owned(i.to_string()), false)),
            Raw::Json(r) => {
                let t = r.get();
                match t.as_bytes().first()? {
                    b'"' if !t.contains('\\') => Some((Cow::Borrowed(&t[1..t.len() - 1]), true)),
                    b'"' => serde_json::from_str::<String>(t)
                        .ok()
                        .map(|s| (Cow::Owned(s), true)),
                    b'-' | b'0'..=b'9' => Some((Cow::Borrowed(t), false)),
                    _ => None,
                }
            }
        }
    }

    /// For error messages: the value, cut short.
    fn shown(&self) -> String {
        let s = match self {
            Raw::Missing => return "nothing (no such key)".into(),
            Raw::Null => return "null".into(),
            Raw::Json(r) => r.get().to_string(),
            Raw::Text(t) => format!("{t:?}"),
            Raw::Int(i) => i.to_string(),
        };
        match s.char_indices().nth(40) {
            Some((i, _)) => format!("{}...", &s[..i]),
            None => s,
        }
    }
}

/// A value converted to its field's type (`Value::Null` when absent).
fn convert(raw: &Raw<'_>, ty: FieldType) -> Option<Value> {
    if matches!(raw, Raw::Missing | Raw::Null) {
        return Some(Value::Null);
    }
    if let Raw::Json(r) = raw {
        match (r.get(), ty) {
            ("null", _) => return Some(Value::Null),
            ("true", FieldType::Bool) => return Some(Value::Bool(true)),
            ("false", FieldType::Bool) => return Some(Value::Bool(false)),
            _ => {}
        }
    }
    let (t, string) = raw.text()?;
    Some(match ty {
        // A number is not a string: a JSON number for a string field is a mismatch.
        FieldType::String if string => Value::Str(Str::from(t.as_ref())),
        FieldType::String => return None,
        FieldType::Int => Value::Int(int_of(&t)?),
        FieldType::Float => Value::Float(float_of(&t)?),
        FieldType::Bool => match t.as_ref() {
            "true" if string => Value::Bool(true),
            "false" if string => Value::Bool(false),
            _ => return None,
        },
    })
}

fn is_number(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    t.bytes()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == b'.')
        && t.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
}

fn int_of(t: &str) -> Option<i64> {
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    // `200.0` is an integer written as a float; `200.5` is not.
    let f = float_of(t)?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn float_of(t: &str) -> Option<f64> {
    if !is_number(t) {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Stores a converted value in its field (built-in fields have their schema type).
fn set(ev: &mut Event, f: Field, v: Value) {
    let s = |v: Value| match v {
        Value::Str(s) => Some(s),
        _ => None,
    };
    match f {
        Field::Timestamp => {}
        Field::Level => ev.level = s(v),
        Field::Service => ev.service = s(v),
        Field::Message => ev.message = s(v),
        Field::IpAddress => ev.ip_address = s(v),
        Field::UserId => ev.user_id = s(v),
        Field::RequestId => ev.request_id = s(v),
        Field::ErrorCode => ev.error_code = s(v),
        Field::Action => ev.action = s(v),
        Field::SessionId => ev.session_id = s(v),
        Field::Line => ev.line = s(v),
        Field::ResponseTime => ev.response_time = v.as_f64(),
        Field::Value => ev.value = v.as_f64(),
        Field::StatusCode => {
            ev.status_code = match v {
                Value::Int(i) => Some(i),
                _ => None,
            }
        }
        Field::Extra(slot) => ev.set_extra(slot, v),
    }
}

/// A JSON object whose keys on `tree`'s paths are kept as raw values.
struct Obj<'t, 'r, 'de> {
    tree: &'t Tree,
    raws: &'r mut [Raw<'de>],
}

impl<'de> DeserializeSeed<'de> for Obj<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Obj<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(node) = map.next_key_seed(Key(self.tree))? {
            match node {
                Some(Node::Leaf(ids)) => {
                    let raw: &'de RawValue = map.next_value()?;
                    for &i in ids {
                        self.raws[i] = Raw::Json(raw);
                    }
                }
                Some(Node::Inner(t)) => map.next_value_seed(Nested(Obj {
                    tree: t,
                    raws: &mut *self.raws,
                }))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value that may be an object holding paths: anything else leaves them missing.
struct Nested<'t, 'r, 'de>(Obj<'t, 'r, 'de>);

impl<'de> DeserializeSeed<'de> for Nested<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, looked up in the tree without being copied.
struct Key<'t>(&'t Tree);

impl<'de, 't> DeserializeSeed<'de> for Key<'t> {
    type Value = Option<&'t Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 't> Visitor<'de> for Key<'t> {
    type Value = Option<&'t Node>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.find(v))
    }
}

#[cfg(test)]
mod tests;
