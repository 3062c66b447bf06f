//! User-defined schemas (a spec's `[schema]`): how a JSON object (by dotted paths into nested
//! objects), a text line (by the named groups of a regex) or a Kafka record's metadata
//! (`@key`, `@timestamp`, `@partition`, `@offset`, `@header.NAME`) becomes an [`Event`].
//!
//! The spec layer resolves names to [`Field`]s (built-in fields keep theirs, a new name gets an
//! extra slot) and hands a [`Schema`] to the ingest. A JSON record is read in one pass over the
//! paths the schema names: every other key is skipped without building a value, and a value on
//! a path is kept as its raw text, converted to the field's type only at the end. Numbers are
//! converted from that text, so epoch-second fractions are exact to the millisecond.

mod scan;
mod serde_read;
mod time;
mod tree;
mod types;
mod value;

use regex::Regex;
use smallvec::{smallvec, SmallVec};

pub use time::{epoch_ms, TimeFormat, Zone};
use tree::Tree;
pub use types::{FieldType, MetaPath, Path};
use value::{convert, converts, meta_value, set, Direct, Raw, Store};

use super::{Format, ParseError};
use crate::record::{Event, Field, FieldSet, Value};

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
    /// Built-in fields some analysis reads: the others are checked, not built.
    used: FieldSet,
    /// Per leaf: how its value is stored (built for an extra field or a built-in some analysis
    /// reads, else only checked).
    stores: Vec<Store>,
    /// The highest extra slot a field sets (every event gets the slots up to it).
    max_extra: Option<u8>,
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
            used: FieldSet::ALL,
            stores: Vec::new(),
            max_extra: None,
        };
        s.index()?;
        Ok(s)
    }

    /// Adds the built-in fields in `used` that no field declares, read from their own keys
    /// (format `json`; a regex line has only its groups).
    pub fn add_implicit(&mut self, used: FieldSet) -> Result<(), String> {
        self.used = used;
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
        self.tree.seal();
        let used = self.used;
        let fields = self.fields.iter().map(|f| match f.target {
            Field::Extra(_) => Store::Value(f.target, f.ty),
            t if !used.contains(t) => Store::Check(f.ty),
            t if f.ty == FieldType::String && FieldType::of_builtin(t) == Some(f.ty) => {
                Store::Str(t)
            }
            t => Store::Value(t, f.ty),
        });
        self.stores = std::iter::once(Store::Time).chain(fields).collect();
        self.max_extra = (self.fields.iter())
            .filter_map(|f| match f.target {
                Field::Extra(slot) => Some(slot),
                _ => None,
            })
            .max();
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
        // The usual JSON record: each value converted as the scanner meets it, straight into
        // `ev`, and, where its strings are ASCII, without a UTF-8 pass of its own (a record the
        // ASCII scan takes is ASCII but for the keys of the schema's paths, which are UTF-8).
        // Anything else (a mismatch, an odd record,
        // metadata paths) is read again from a clean slate through raw slots, which word the
        // dead letter's reason.
        let direct = self.regex.is_none() && self.metas.is_empty();
        if direct {
            if self.direct_ascii(line, ev).is_some() {
                return Ok(());
            }
            *ev = Event::default();
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::new("not UTF-8"))?;
        if direct && !line.is_ascii() {
            if self.direct(text, ev).is_some() {
                return Ok(());
            }
            *ev = Event::default();
        }
        self.parse_raw(text, meta, ev, true)
    }

    /// The direct path on a record known to be UTF-8.
    fn direct(&self, text: &str, ev: &mut Event) -> Option<()> {
        self.direct_with(ev, |tree, out| scan::read(text, tree, out))
    }

    /// The direct path on a record not checked to be UTF-8 (`None` where a string holds a byte
    /// >= 0x80).
    fn direct_ascii(&self, line: &[u8], ev: &mut Event) -> Option<()> {
        self.direct_with(ev, |tree, out| scan::read_ascii(line, tree, out))
    }

    #[inline(always)]
    fn direct_with(
        &self,
        ev: &mut Event,
        read: impl FnOnce(&Tree, &mut Direct<'_, '_>) -> Option<()>,
    ) -> Option<()> {
        if let Some(slot) = self.max_extra {
            // A field without a value is null, as `parse_raw` sets it.
            ev.set_extra(slot, Value::Null);
        }
        let mut out = Direct {
            schema: self,
            ev,
            ts: None,
        };
        read(&self.tree, &mut out)?;
        out.ev.timestamp = out.ts?;
        Some(())
    }

    /// Through raw slots, converted at the end (with the reason of the first mismatch).
    /// `scan`: JSON is read by the scanner where it takes the record, else by serde only.
    fn parse_raw(
        &self,
        text: &str,
        meta: Option<&RecordMeta>,
        ev: &mut Event,
        scan: bool,
    ) -> Result<(), ParseError> {
        let mut raws: SmallVec<[Raw<'_>; 16]> = smallvec![Raw::Missing; self.fields.len() + 1];
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
                // The scanner takes well-formed records; anything it does not take, errors
                // included, gets serde, the reference, from a clean slate.
                if !scan || scan::read(text, &self.tree, raws.as_mut_slice()).is_none() {
                    raws.iter_mut().for_each(|r| *r = Raw::Missing);
                    serde_read::read(text, &self.tree, &mut raws)?;
                }
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
        for ((f, raw), store) in self
            .fields
            .iter()
            .zip(&raws[1..])
            .zip(self.stores.iter().skip(1))
        {
            let v = match store {
                Store::Check(_) => converts(raw, f.ty).then_some(Value::Null),
                _ => convert(raw, f.ty),
            };
            let v = v.ok_or_else(|| {
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

#[cfg(test)]
mod tests;
