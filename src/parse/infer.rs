//! `logflow schema infer`: a `[schema]` section that reads a sample of records, as Spark
//! infers a JSON schema. JSON: every scalar path of nested objects with its type, the time
//! path and its format. Text lines (`--format regex`): a pattern of the line's tokens
//! (`key=value` pairs, a bracketed time, quoted strings, words), `-` as null.

use std::fmt::Write;

use serde_json::Value as Json;

use super::schema::{epoch_ms, FieldType, TimeFormat};
use super::timestamp::parse_rfc3339;
use crate::record::Field;

/// Time patterns tried on strings, after RFC 3339.
const PATTERNS: [&str; 5] = [
    "%d/%b/%Y:%H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f %z",
    "%b %d %H:%M:%S %Y",
];

/// Common key names of the built-in fields (last path segment, lower case): a path named so
/// becomes that field, which the analyses of `dataflows/` use.
const ALIASES: [(&str, Field); 17] = [
    ("status", Field::StatusCode),
    ("http_status", Field::StatusCode),
    ("response", Field::StatusCode),
    ("duration", Field::ResponseTime),
    ("request_time", Field::ResponseTime),
    ("latency", Field::ResponseTime),
    ("remote_addr", Field::IpAddress),
    ("remote_ip", Field::IpAddress),
    ("client_ip", Field::IpAddress),
    ("ip", Field::IpAddress),
    ("remote_user", Field::UserId),
    ("user", Field::UserId),
    ("severity", Field::Level),
    ("log_level", Field::Level),
    ("msg", Field::Message),
    ("app", Field::Service),
    ("service_name", Field::Service),
];

/// Names of keys that hold a record's time, most likely first.
const TIME_KEYS: [&str; 9] = [
    "timestamp",
    "ts",
    "time",
    "@timestamp",
    "time_local",
    "datetime",
    "date",
    "event_time",
    "msec",
];

/// What the values seen on one path were.
#[derive(Default, Debug)]
struct Seen {
    values: Vec<String>,
    /// Number of values of each kind.
    nulls: usize,
    bools: usize,
    ints: usize,
    floats: usize,
    num_strings: usize,
    int_strings: usize,
    strings: usize,
    other: usize,
}

impl Seen {
    fn add(&mut self, v: &Json) {
        match v {
            Json::Null => self.nulls += 1,
            Json::Bool(_) => self.bools += 1,
            Json::Number(n) if n.is_i64() || n.is_u64() => {
                self.ints += 1;
                self.values.push(n.to_string());
            }
            Json::Number(n) => {
                self.floats += 1;
                self.values.push(n.to_string());
            }
            Json::String(s) => self.add_text(s),
            _ => self.other += 1,
        }
    }

    fn add_text(&mut self, s: &str) {
        if s.parse::<i64>().is_ok() {
            self.int_strings += 1;
        } else if s.parse::<f64>().is_ok_and(|f| f.is_finite())
            && s.bytes().any(|c| c.is_ascii_digit())
            && !s.contains(['i', 'n', 'N'])
        {
            self.num_strings += 1;
        } else {
            self.strings += 1;
        }
        self.values.push(s.to_string());
    }

    fn seen(&self) -> usize {
        self.bools + self.ints + self.floats + self.num_strings + self.int_strings + self.strings
    }

    /// The type every non-null value reads as (`None`: none seen, or objects and arrays).
    fn ty(&self) -> Option<FieldType> {
        if self.other > 0 {
            return None;
        }
        if self.seen() == 0 {
            // Only nulls: nothing says otherwise.
            return Some(FieldType::String);
        }
        let n = self.seen();
        Some(if self.bools == n {
            FieldType::Bool
        } else if self.ints + self.int_strings == n {
            FieldType::Int
        } else if self.ints + self.floats + self.int_strings + self.num_strings == n {
            FieldType::Float
        } else if self.bools > 0 || self.ints > 0 || self.floats > 0 {
            // Mixed strings and JSON numbers or booleans: no type reads them all.
            return None;
        } else {
            FieldType::String
        })
    }

    /// The time format every value is in, if any.
    fn time_format(&self) -> Option<TimeFormat> {
        if self.values.is_empty() || self.other > 0 || self.bools > 0 {
            return None;
        }
        let numeric = self.strings == 0;
        if numeric {
            // The magnitude of epoch values says their unit (times between 2001 and 2286).
            let digits = |v: &String| {
                v.trim_start_matches('-')
                    .split('.')
                    .next()
                    .map_or(0, str::len)
            };
            let d = digits(&self.values[0]);
            if !self.values.iter().all(|v| digits(v) == d) {
                return None;
            }
            let (f, shift) = match d {
                10 => (TimeFormat::EpochSeconds, 3),
                13 => (TimeFormat::EpochMillis, 0),
                16 => (TimeFormat::EpochMicros, -3),
                19 => (TimeFormat::EpochNanos, -6),
                _ => return None,
            };
            return self
                .values
                .iter()
                .all(|v| epoch_ms(v, shift).is_some_and(|ms| ms > 0))
                .then_some(f);
        }
        if self.values.iter().all(|v| parse_rfc3339(v).is_some()) {
            return Some(TimeFormat::Rfc3339);
        }
        PATTERNS.iter().find_map(|p| {
            let f = TimeFormat::parse(p, None).ok()?;
            self.values
                .iter()
                .all(|v| f.convert_text(v).is_some())
                .then_some(f)
        })
    }
}

/// Infers a `[schema]` for JSON records (one object per line).
pub fn infer_json(lines: &[&str]) -> Result<String, String> {
    let mut paths: Vec<(String, Seen)> = Vec::new();
    let mut records = 0;
    for line in lines {
        let Ok(Json::Object(map)) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        records += 1;
        walk(&mut paths, "", &map);
    }
    if records == 0 {
        return Err("no JSON object among the lines read".into());
    }
    // A key that holds an object in some records and a value in others is read as an object.
    let prefixes: Vec<String> = paths.iter().map(|(p, _)| format!("{p}.")).collect();
    paths.retain(|(p, _)| !paths_under(&prefixes, p));
    let time = pick_time(paths.iter().map(|(p, s)| (p.as_str(), s)));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# inferred from {records} JSON records by `logflow schema infer`"
    );
    let _ = writeln!(out, "[schema]");
    match &time {
        Some((p, f)) => {
            let _ = writeln!(
                out,
                "timestamp = {{ path = {}, format = {} }}",
                q(p),
                q(&f.spec_text())
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# no key holds a time in every record: set `timestamp` by hand"
            );
        }
    }
    let _ = writeln!(out, "\n[schema.fields]");
    let mut taken: Vec<String> = Vec::new();
    for (path, seen) in &paths {
        if time.as_ref().is_some_and(|(p, _)| p == path) {
            continue;
        }
        let last = path.rsplit('.').next().unwrap_or(path);
        let Some(ty) = seen.ty() else {
            let _ = writeln!(
                out,
                "# {} holds objects, arrays or mixed types: not read",
                q(path)
            );
            continue;
        };
        let name = field_name(path, last, &taken);
        taken.push(name.clone());
        let builtin = Field::from_name(&name).and_then(FieldType::of_builtin);
        let typed = match builtin {
            Some(b) if b == ty || (b == FieldType::Float && ty == FieldType::Int) => None,
            // A built-in name whose values do not read as its type keeps its own name.
            Some(_) => {
                let own = field_name(path, &format!("{last}_"), &taken);
                taken.push(own.clone());
                let _ = writeln!(
                    out,
                    "{own} = {{ path = {}, type = \"{}\" }}",
                    q(path),
                    ty.name()
                );
                continue;
            }
            None if ty == FieldType::String => None,
            None => Some(ty),
        };
        match typed {
            None => {
                let _ = writeln!(out, "{name} = {}", q(path));
            }
            Some(t) => {
                let _ = writeln!(
                    out,
                    "{name} = {{ path = {}, type = \"{}\" }}",
                    q(path),
                    t.name()
                );
            }
        }
    }
    Ok(out)
}

fn paths_under(prefixes: &[String], p: &str) -> bool {
    let dotted = format!("{p}.");
    prefixes
        .iter()
        .any(|x| x.starts_with(&dotted) && *x != dotted)
}

fn walk(paths: &mut Vec<(String, Seen)>, prefix: &str, map: &serde_json::Map<String, Json>) {
    for (k, v) in map {
        // Keys a dotted path cannot name are left out.
        if k.is_empty()
            || k.contains(['.', '[', ']'])
            || (prefix.is_empty() && k.starts_with('@') && k != "@timestamp")
        {
            continue;
        }
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Json::Object(inner) = v {
            walk(paths, &path, inner);
            continue;
        }
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, s)) => s.add(v),
            None => {
                let mut s = Seen::default();
                s.add(v);
                paths.push((path, s));
            }
        }
    }
}

/// The time path: a usual time key first, else the first path whose every value is a time.
fn pick_time<'a>(
    paths: impl Iterator<Item = (&'a str, &'a Seen)> + Clone,
) -> Option<(String, TimeFormat)> {
    let complete = |s: &Seen| s.nulls == 0;
    for key in TIME_KEYS {
        for (p, s) in paths.clone() {
            let last = p.rsplit('.').next().unwrap_or(p);
            if last.eq_ignore_ascii_case(key) && complete(s) {
                if let Some(f) = s.time_format() {
                    return Some((p.to_string(), f));
                }
            }
        }
    }
    paths
        .filter(|(_, s)| complete(s) && s.strings > 0)
        .find_map(|(p, s)| s.time_format().map(|f| (p.to_string(), f)))
}

/// A field name for a path: its built-in alias, else its last segment, else the whole path
/// with `_` for `.` (when the last segment is taken or not a name).
fn field_name(path: &str, last: &str, taken: &[String]) -> String {
    let lower = last.to_ascii_lowercase();
    if let Some((_, f)) = ALIASES.iter().find(|(a, _)| *a == lower) {
        if !taken.iter().any(|t| t == f.name()) {
            return f.name().to_string();
        }
    }
    let clean = |s: &str| -> String {
        let mut n: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) {
            n.insert(0, '_');
        }
        n
    };
    let mut name = clean(last);
    if name == "timestamp" || name == "line" || taken.contains(&name) {
        name = clean(path);
    }
    let base = name.clone();
    let mut i = 2;
    while taken.contains(&name) || name == "timestamp" {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML literal string (regex patterns: no escapes to double).
fn lit(s: &str) -> String {
    if s.contains('\'') || s.contains('\n') {
        q(s)
    } else {
        format!("'{s}'")
    }
}

/// One token of a text line.
#[derive(Debug, PartialEq)]
enum Tok<'a> {
    /// `key=value` (value possibly quoted).
    Pair {
        key: &'a str,
        value: &'a str,
        quoted: bool,
    },
    Bracketed(&'a str),
    Quoted(&'a str),
    Word(&'a str),
}

fn tokens(line: &str) -> Option<Vec<Tok<'_>>> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        if rest.is_empty() {
            return Some(out);
        }
        let (tok, after) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            (Tok::Bracketed(&r[..end]), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"')?;
            (Tok::Quoted(&r[..end]), &r[end + 1..])
        } else {
            let word_end = rest.find(' ').unwrap_or(rest.len());
            let word = &rest[..word_end];
            match word.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
                {
                    if let Some(r) = rest[k.len() + 1..].strip_prefix('"') {
                        let end = r.find('"')?;
                        (
                            Tok::Pair {
                                key: k,
                                value: &r[..end],
                                quoted: true,
                            },
                            &r[end + 1..],
                        )
                    } else {
                        let _ = v;
                        (
                            Tok::Pair {
                                key: k,
                                value: &word[k.len() + 1..],
                                quoted: false,
                            },
                            &rest[word_end..],
                        )
                    }
                }
                _ => (Tok::Word(word), &rest[word_end..]),
            }
        };
        out.push(tok);
        // Tokens are separated by single spaces.
        rest = match after.strip_prefix(' ') {
            Some(r) => r,
            None if after.is_empty() => after,
            None => return None,
        };
    }
}

/// Infers a `[schema]` with a regex for text lines: the lines must share one token layout.
pub fn infer_regex(lines: &[&str]) -> Result<String, String> {
    let mut layout: Option<Vec<(String, bool, u8)>> = None;
    let mut columns: Vec<Seen> = Vec::new();
    let mut used = 0;
    let mut nulls = false;
    for line in lines {
        let Some(toks) = tokens(line) else { continue };
        let shape: Vec<(String, bool, u8)> = toks
            .iter()
            .map(|t| match t {
                Tok::Pair { key, quoted, .. } => (key.to_string(), *quoted, 0),
                Tok::Bracketed(_) => (String::new(), false, 1),
                Tok::Quoted(_) => (String::new(), true, 2),
                Tok::Word(_) => (String::new(), false, 3),
            })
            .collect();
        match &layout {
            None => {
                layout = Some(shape);
                columns = toks.iter().map(|_| Seen::default()).collect();
            }
            Some(l) if *l != shape => continue,
            Some(_) => {}
        }
        used += 1;
        for (t, c) in toks.iter().zip(columns.iter_mut()) {
            let v = match t {
                Tok::Pair { value, .. } => value,
                Tok::Bracketed(v) | Tok::Quoted(v) | Tok::Word(v) => v,
            };
            if *v == "-" {
                nulls = true;
                c.nulls += 1;
            } else {
                c.add_text(v);
            }
        }
    }
    let Some(layout) = layout else {
        return Err("no line splits into tokens (words, `key=value`, [..], \"..\")".into());
    };
    // The time: a usual key first, else the first column whose values are all times.
    let time_col = layout
        .iter()
        .zip(&columns)
        .position(|((k, _, _), c)| {
            TIME_KEYS.contains(&k.as_str()) && c.nulls == 0 && c.time_format().is_some()
        })
        .or_else(|| {
            columns
                .iter()
                .position(|c| c.nulls == 0 && c.strings > 0 && c.time_format().is_some())
        })
        .or_else(|| {
            columns
                .iter()
                .position(|c| c.nulls == 0 && c.time_format().is_some())
        });
    let mut pattern = String::new();
    let mut fields = String::new();
    let mut taken: Vec<String> = Vec::new();
    for (i, ((key, quoted, kind), col)) in layout.iter().zip(&columns).enumerate() {
        if i > 0 {
            pattern.push(' ');
        }
        let name = if Some(i) == time_col {
            "timestamp".to_string()
        } else if !key.is_empty() {
            field_name(key, key, &taken)
        } else {
            field_name(&format!("f{}", i + 1), &format!("f{}", i + 1), &taken)
        };
        taken.push(name.clone());
        let body = match (kind, quoted) {
            (1, _) => r"[^\]]*",
            (_, true) => r#"[^"]*"#,
            _ => r"\S+",
        };
        let group = format!("(?P<{name}>{body})");
        match (kind, quoted) {
            (0, true) => {
                let _ = write!(pattern, "{}=\"{group}\"", regex::escape(key));
            }
            (0, false) => {
                let _ = write!(pattern, "{}={group}", regex::escape(key));
            }
            (1, _) => {
                let _ = write!(pattern, r"\[{group}\]");
            }
            (2, _) => {
                let _ = write!(pattern, "\"{group}\"");
            }
            _ => pattern.push_str(&group),
        }
        if Some(i) == time_col {
            continue;
        }
        let builtin = Field::from_name(&name).and_then(FieldType::of_builtin);
        if let Some(ty) = col
            .ty()
            .filter(|t| *t != FieldType::String && builtin.is_none_or(|b| b != *t))
        {
            if builtin.is_none() {
                let _ = writeln!(fields, "{name} = {{ type = \"{}\" }}", ty.name());
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# inferred from {used} lines by `logflow schema infer --format regex`"
    );
    let _ = writeln!(out, "[schema]");
    let _ = writeln!(out, "pattern = {}", lit(&pattern));
    if nulls {
        let _ = writeln!(out, "null = \"-\"");
    }
    match time_col.map(|i| columns[i].time_format()) {
        Some(Some(f)) => {
            let _ = writeln!(
                out,
                "timestamp = {{ path = \"timestamp\", format = {} }}",
                q(&f.spec_text())
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "# no column holds a time in every line: set `timestamp` by hand"
            );
        }
    }
    if !fields.is_empty() {
        let _ = writeln!(out, "\n[schema.fields]\n{fields}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_types_and_time() {
        let lines = [
            r#"{"ts":1795514344.617,"request":{"host":"api","status":"404","duration":0.5},"ok":true,"tags":[1]}"#,
            r#"{"ts":1795514345.001,"request":{"host":"web","status":"200","duration":1},"ok":false,"tags":[]}"#,
            "not json",
        ];
        let s = infer_json(&lines).unwrap();
        assert!(
            s.contains(r#"timestamp = { path = "ts", format = "epoch_seconds" }"#),
            "{s}"
        );
        assert!(s.contains(r#"host = "request.host""#), "{s}");
        assert!(s.contains(r#"status_code = "request.status""#), "{s}");
        assert!(s.contains(r#"response_time = "request.duration""#), "{s}");
        assert!(s.contains(r#"ok = { path = "ok", type = "bool" }"#), "{s}");
        assert!(s.contains(r#"# "tags" holds objects"#), "{s}");
        assert!(infer_json(&["x"]).is_err());
    }

    #[test]
    fn time_formats_are_detected() {
        let t = |vals: &[&str]| {
            let mut s = Seen::default();
            vals.iter().for_each(|v| s.add_text(v));
            s.time_format().map(|f| f.spec_text())
        };
        assert_eq!(t(&["2026-11-24T10:00:00Z"]).as_deref(), Some("rfc3339"));
        assert_eq!(
            t(&["24/Nov/2026:10:00:00 +0000"]).as_deref(),
            Some("%d/%b/%Y:%H:%M:%S %z")
        );
        assert_eq!(t(&["1795514344617"]).as_deref(), Some("epoch_millis"));
        assert_eq!(t(&["1795514344617000"]).as_deref(), Some("epoch_micros"));
        assert_eq!(t(&["api"]), None);
        assert_eq!(t(&["200"]), None);
    }

    #[test]
    fn text_lines_become_a_pattern() {
        let lines = [
            r#"2026-11-24T10:00:00.5Z level=INFO status=200 took=0.25 user=- msg="GET /a done""#,
            r#"2026-11-24T10:00:01.5Z level=WARN status=404 took=1 user=bob msg="GET /b""#,
        ];
        let s = infer_regex(&lines).unwrap();
        assert!(s.contains(r#"pattern = '(?P<timestamp>\S+) level=(?P<level>\S+) status=(?P<status_code>\S+) took=(?P<took>\S+) user=(?P<user_id>\S+) msg="(?P<message>[^"]*)"'"#), "{s}");
        assert!(s.contains("null = \"-\""), "{s}");
        assert!(
            s.contains(r#"timestamp = { path = "timestamp", format = "rfc3339" }"#),
            "{s}"
        );
        assert!(s.contains(r#"took = { type = "float" }"#), "{s}");
    }
}
