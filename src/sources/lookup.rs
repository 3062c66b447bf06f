//! Reference tables (the stream–static join): a CSV or JSON file keyed by one column, joined
//! to every event at ingest so that its columns become event fields ([`Field::Extra`]) that
//! any analysis can group by, filter on or aggregate (e.g. `service` → `team`, then
//! `error_rate` by `team`).
//!
//! Each table is read again when its file changes (size, modification time or inode: a file
//! replaced by a rename counts), checked once per ingest activation before any record of that
//! activation is joined, so every record read after the new file is in place sees the new
//! mapping. A file that cannot be read or parsed on reload keeps the previous mapping (and is
//! reported once); at start it is an error.
//!
//! [`Field::Extra`]: crate::record::Field::Extra

use std::collections::HashMap;

use crate::record::{Event, Value, ValueRef};
use crate::spec::plan::{LookupPlan, TableFormat};
use crate::Error;

/// The loaded rows of a table: key → the values of `fields`, in order.
type Rows = HashMap<String, Vec<Value>>;

/// The text a key is matched by: strings as they are, numbers as written in JSON.
fn key_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Str(s) => Some(s.to_string()),
        ValueRef::Int(i) => Some(i.to_string()),
        ValueRef::Float(f) => Some(f.to_string()),
        ValueRef::Bool(b) => Some(b.to_string()),
    }
}

fn value_key(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits one CSV line into fields (RFC 4180 quoting, on one line).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// A CSV field as a value: integer, decimal, null (empty) or text.
fn csv_value(s: &str) -> Value {
    let t = s.trim();
    if t.is_empty() {
        Value::Null
    } else if let Ok(i) = t.parse::<i64>() {
        Value::Int(i)
    } else if let (Ok(f), true) = (
        t.parse::<f64>(),
        t.bytes().all(|b| b"+-.eE0123456789".contains(&b)),
    ) {
        Value::Float(f)
    } else {
        Value::Str(s.into())
    }
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::String(s) => Value::Str(s.as_str().into()),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n.as_f64().map_or(Value::Null, Value::Float),
        },
        _ => Value::Null,
    }
}

/// Parses a table's text into rows keyed by `key`, keeping `fields` (each must be a column).
pub fn parse_table(
    text: &str,
    format: TableFormat,
    key: &str,
    fields: &[String],
) -> Result<Rows, String> {
    let mut rows = Rows::new();
    match format {
        TableFormat::Csv => {
            let mut lines = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty());
            let Some((_, header)) = lines.next() else {
                return Err("empty file: a CSV table needs a header line".into());
            };
            let header: Vec<String> = csv_fields(header)
                .map_err(|e| format!("line 1: {e}"))?
                .into_iter()
                .map(|h| h.trim().to_string())
                .collect();
            // The error counts the header's columns but never quotes them: the file may be
            // anything the process can read (/proc/self/environ), and errors reach the
            // submitter of a cluster job.
            let col = |name: &str| {
                header.iter().position(|h| h == name).ok_or_else(|| {
                    format!(
                        "no column `{name}` (the header line has {} columns)",
                        header.len()
                    )
                })
            };
            let key_col = col(key)?;
            let cols: Vec<usize> = fields.iter().map(|f| col(f)).collect::<Result<_, _>>()?;
            for (i, line) in lines {
                let f = csv_fields(line).map_err(|e| format!("line {}: {e}", i + 1))?;
                let get = |c: usize| f.get(c).map_or(Value::Null, |s| csv_value(s));
                let k = f.get(key_col).map(|k| k.trim().to_string());
                if let Some(k) = k.filter(|k| !k.is_empty()) {
                    rows.insert(k, cols.iter().map(|&c| get(c)).collect());
                }
            }
        }
        TableFormat::Json => {
            let objects: Vec<serde_json::Value> = match serde_json::from_str(text) {
                Ok(serde_json::Value::Array(a)) => a,
                _ => text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| {
                        serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))
                    })
                    .collect::<Result<_, _>>()?,
            };
            for (i, o) in objects.iter().enumerate() {
                let Some(o) = o.as_object() else {
                    return Err(format!("row {}: not an object", i + 1));
                };
                let Some(k) = o.get(key).map(json_value).as_ref().and_then(value_key) else {
                    continue;
                };
                let vals = fields
                    .iter()
                    .map(|f| o.get(f).map_or(Value::Null, json_value))
                    .collect();
                rows.insert(k, vals);
            }
        }
    }
    Ok(rows)
}

/// The largest lookup table file: every worker holds the table in memory, and the file is read
/// whole (a device or an endless pipe named as a table must not exhaust memory).
pub const MAX_TABLE_BYTES: u64 = 256 << 20;

/// The text of a table file: a regular file of at most [`MAX_TABLE_BYTES`].
fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    let bytes = crate::sandbox::read_bounded(path, MAX_TABLE_BYTES, "a lookup table")?;
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".into())
}

/// What identifies a version of a file.
type Stamp = (u64, Option<std::time::SystemTime>, u64);

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Ok((m.len(), m.modified().ok(), ino))
}

/// One loaded table, reloaded when its file changes.
pub struct Table {
    plan: LookupPlan,
    rows: Rows,
    stamp: Option<Stamp>,
    /// The last reload failure reported (not repeated while the file stays the same).
    reported: Option<Stamp>,
}

impl Table {
    /// Loads the table; an unreadable or malformed file is an error naming it.
    pub fn load(plan: &LookupPlan) -> Result<Table, Error> {
        let mut t = Table {
            plan: plan.clone(),
            rows: Rows::new(),
            stamp: None,
            reported: None,
        };
        t.read().map_err(|m| {
            Error::Input(format!(
                "lookup `{}`: {}: {m}",
                plan.name,
                plan.path.display()
            ))
        })?;
        Ok(t)
    }

    fn read(&mut self) -> Result<(), String> {
        let p = &self.plan;
        let before = stamp(&p.path).map_err(|e| e.to_string())?;
        let text = read_bounded(&p.path)?;
        let names: Vec<String> = p.fields.iter().map(|(f, _)| f.clone()).collect();
        self.rows = parse_table(&text, p.format, &p.key, &names)?;
        self.stamp = Some(before);
        Ok(())
    }

    /// Reads the file again if it changed since it was loaded; true when the mapping changed.
    pub fn refresh(&mut self) -> bool {
        let Ok(now) = stamp(&self.plan.path) else {
            return false; // being replaced: keep the current mapping
        };
        if Some(now) == self.stamp || Some(now) == self.reported {
            return false;
        }
        match self.read() {
            Ok(()) => true,
            Err(m) => {
                tracing::warn!(
                    "logflow: lookup `{}`: {}: {m} (keeping the previous table)",
                    self.plan.name,
                    self.plan.path.display()
                );
                self.reported = Some(now);
                false
            }
        }
    }

    /// Sets the table's fields on `ev` (null when its key is not in the table).
    #[inline]
    pub fn join(&self, ev: &mut Event) {
        let row = key_text(ev.get(self.plan.on)).and_then(|k| self.rows.get(&k));
        for (i, (_, slot)) in self.plan.fields.iter().enumerate() {
            let v = row.and_then(|r| r.get(i)).cloned().unwrap_or(Value::Null);
            ev.set_extra(*slot, v);
        }
    }
}

/// Every table of a job, as one worker joins them.
#[derive(Default)]
pub struct Tables(Vec<Table>);

impl Tables {
    pub fn load(plans: &[LookupPlan]) -> Result<Tables, Error> {
        plans
            .iter()
            .map(Table::load)
            .collect::<Result<_, _>>()
            .map(Tables)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reloads the tables whose files changed.
    pub fn refresh(&mut self) {
        for t in self.0.iter_mut() {
            t.refresh();
        }
    }

    #[inline]
    pub fn join(&self, ev: &mut Event) {
        for t in &self.0 {
            t.join(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::record::Field;

    fn plan(path: PathBuf, format: TableFormat) -> LookupPlan {
        LookupPlan {
            name: "teams".into(),
            path,
            format,
            key: "service".into(),
            on: Field::Service,
            fields: vec![("team".into(), 0), ("tier".into(), 1)],
        }
    }

    fn service(s: &str) -> Event {
        Event {
            service: Some(s.into()),
            ..Event::default()
        }
    }

    #[test]
    fn csv_quotes_numbers_and_nulls() {
        assert_eq!(
            csv_fields(r#"a,"b, c","say ""hi""",,"#).unwrap(),
            vec!["a", "b, c", "say \"hi\"", "", ""]
        );
        assert!(csv_fields("\"open").is_err());
        let rows = parse_table(
            "service,team,tier\napi,core,1\n\"web, ui\",front,2.5\nold,,\n",
            TableFormat::Csv,
            "service",
            &["team".into(), "tier".into()],
        )
        .unwrap();
        assert_eq!(rows["api"], vec![Value::Str("core".into()), Value::Int(1)]);
        assert_eq!(
            rows["web, ui"],
            vec![Value::Str("front".into()), Value::Float(2.5)]
        );
        assert_eq!(rows["old"], vec![Value::Null, Value::Null]);
        let err =
            parse_table("service,x\n", TableFormat::Csv, "service", &["team".into()]).unwrap_err();
        assert!(err.contains("no column `team`"), "{err}");
    }

    #[test]
    fn errors_never_quote_the_file() {
        let secret = "SASL_PASSWORD=hunter2";
        let texts = [
            format!("{secret}\0HOME=/root\0"),
            format!("a,{secret}\n1,\"open\n"),
            format!("{{\"{secret}\": 1}}\n{secret}\n"),
            format!("[{secret}]"),
            format!("\"{secret}\"\n"),
        ];
        for text in &texts {
            for format in [TableFormat::Csv, TableFormat::Json] {
                let Err(e) = parse_table(text, format, "nope", &["x".into()]) else {
                    panic!("{text:?} parsed as {format:?}");
                };
                assert!(!e.contains("hunter2") && !e.contains("HOME"), "{e}");
            }
        }
    }

    #[test]
    fn json_arrays_and_lines() {
        let fields = ["team".to_string()];
        for text in [
            r#"[{"code": 500, "team": "sre"}, {"code": 404, "team": "web"}]"#,
            "{\"code\": 500, \"team\": \"sre\"}\n{\"code\": 404, \"team\": \"web\"}\n",
        ] {
            let rows = parse_table(text, TableFormat::Json, "code", &fields).unwrap();
            assert_eq!(rows["500"], vec![Value::Str("sre".into())]);
            assert_eq!(rows.len(), 2);
        }
        // An integer event field matches a numeric key.
        let mut ev = Event {
            status_code: Some(500),
            ..Event::default()
        };
        let dir = std::env::temp_dir().join(format!("logflow-lookup-j-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("codes.json");
        std::fs::write(&path, r#"[{"code": 500, "team": "sre"}]"#).unwrap();
        let mut p = plan(path, TableFormat::Json);
        p.key = "code".into();
        p.on = Field::StatusCode;
        p.fields.truncate(1);
        Tables::load(&[p]).unwrap().join(&mut ev);
        assert_eq!(ev.get(Field::Extra(0)), ValueRef::Str("sre"));
    }

    #[test]
    fn joins_and_reloads_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("logflow-lookup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("teams.csv");
        std::fs::write(&path, "service,team,tier\napi,core,1\n").unwrap();
        let mut tables = Tables::load(&[plan(path.clone(), TableFormat::Csv)]).unwrap();
        let mut ev = service("api");
        tables.join(&mut ev);
        assert_eq!(ev.get(Field::Extra(0)), ValueRef::Str("core"));
        assert_eq!(ev.get(Field::Extra(1)), ValueRef::Int(1));
        let mut miss = service("db");
        tables.join(&mut miss);
        assert_eq!(miss.get(Field::Extra(0)), ValueRef::Null);

        // Replaced by a rename (same size, maybe the same mtime): the inode tells.
        let tmp = dir.join(".teams.csv.tmp");
        std::fs::write(&tmp, "service,team,tier\napi,edge,2\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        tables.refresh();
        let mut ev = service("api");
        tables.join(&mut ev);
        assert_eq!(ev.get(Field::Extra(0)), ValueRef::Str("edge"));

        // A broken file keeps the previous mapping.
        std::fs::write(&path, "service,nope\n").unwrap();
        tables.refresh();
        let mut ev = service("api");
        tables.join(&mut ev);
        assert_eq!(ev.get(Field::Extra(0)), ValueRef::Str("edge"));

        let missing = plan(dir.join("none.csv"), TableFormat::Csv);
        let err = Tables::load(&[missing]).err().unwrap().to_string();
        assert!(
            err.starts_with("lookup `teams`: ") && err.contains("none.csv"),
            "{err}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused_as_tables() {
        for (path, reason) in [
            ("/dev/zero", "not a regular file"),
            ("/tmp", "not a regular file"),
        ] {
            let err = Tables::load(&[plan(path.into(), TableFormat::Csv)])
                .err()
                .unwrap()
                .to_string();
            assert!(err.ends_with(reason), "{err}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::checkpoint::codec::proptest_config())]

            #[test]
            fn any_table_text_loads_or_fails_without_a_panic(
                text in "[a-z0-9,\"\n {}\\[\\]:.-]{0,200}",
                json in any::<bool>(),
            ) {
                let format = if json { TableFormat::Json } else { TableFormat::Csv };
                let _ = parse_table(&text, format, "service", &["team".into()]);
            }

            #[test]
            fn csv_and_json_tables_agree_with_what_was_written(
                rows in prop::collection::btree_map("[a-z]{1,8}", ("([a-z]{1,4}( [a-z]{1,4})?)?", any::<i32>()), 0..20),
            ) {
                let mut csv = String::from("service,team,tier\n");
                let mut json = String::new();
                for (k, (team, tier)) in &rows {
                    csv.push_str(&format!("{k},\"{team}\",{tier}\n"));
                    json.push_str(&format!("{{\"service\":\"{k}\",\"team\":\"{team}\",\"tier\":{tier}}}\n"));
                }
                let fields = ["team".to_string(), "tier".to_string()];
                for (text, format) in [(&csv, TableFormat::Csv), (&json, TableFormat::Json)] {
                    let got = parse_table(text, format, "service", &fields).unwrap();
                    prop_assert_eq!(got.len(), rows.len());
                    for (k, (team, tier)) in &rows {
                        // An empty CSV field is null; JSON says what it is.
                        let team = if team.is_empty() && format == TableFormat::Csv {
                            Value::Null
                        } else {
                            Value::Str(team.as_str().into())
                        };
                        prop_assert_eq!(&got[k], &vec![team, Value::Int(i64::from(*tier))]);
                    }
                }
            }
        }
    }
}
