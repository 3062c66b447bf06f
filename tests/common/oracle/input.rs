//! The input files and the oracle's own reading of them (docs/design.md section 2).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use logflow::gen::{GenConfig, Generator, Kind, LineKind};
use serde_json::{Map, Value};

pub struct Input {
    pub path: PathBuf,
    pub kind: Kind,
    /// Every line as written, without its newline.
    pub lines: Vec<Vec<u8>>,
    /// What the generator says each line is (known when the oracle wrote the input itself;
    /// a file written by `logflow gen` has no labels, and the oracle's own reading decides).
    pub kinds: Option<Vec<LineKind>>,
}

/// A generated input file goes when the test that made it passes (see `common::tmpdir`).
impl Drop for Input {
    fn drop(&mut self) {
        if self.kinds.is_some() {
            super::remove_unless_failed(&self.path);
        }
    }
}

impl Input {
    /// Generated user events (`seed`), about `rate` a second, up to 2 minutes out of order and
    /// 1% far behind: windows of a 30 s delay see late events and late corrections.
    pub fn disordered_user_events(name: &str, events: u64, rate: f64, seed: u64) -> Input {
        Input::generate(
            name,
            GenConfig {
                kind: Kind::UserEvents,
                events,
                event_rate: rate,
                disorder_ms: 120_000,
                late_fraction: 0.01,
                seed,
                ..GenConfig::default()
            },
        )
    }

    pub fn generate(name: &str, cfg: GenConfig) -> Input {
        let dir = tmp_dir().join("inputs");
        std::fs::create_dir_all(&dir).expect("create input dir");
        let path = dir.join(format!("{name}.jsonl"));
        let kind = cfg.kind;
        let mut gen = Generator::new(cfg);
        let (mut lines, mut kinds, mut file) = (Vec::new(), Vec::new(), Vec::new());
        let mut buf = Vec::new();
        while gen.next_line(&mut buf) {
            file.extend_from_slice(&buf);
            file.push(b'\n');
            lines.push(std::mem::take(&mut buf));
            kinds.push(gen.last_kind().expect("a line was generated"));
        }
        std::fs::write(&path, &file).expect("write input");
        Input {
            path,
            kind,
            lines,
            kinds: Some(kinds),
        }
    }

    /// An input file written by someone else (another test, `logflow gen`): no labels.
    pub fn read(path: &Path, kind: Kind) -> Input {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        Input {
            path: path.to_path_buf(),
            kind,
            lines,
            kinds: None,
        }
    }

    fn labels(&self) -> &[LineKind] {
        self.kinds
            .as_deref()
            .expect("the generator's labels (an input the oracle generated)")
    }

    pub fn count(&self, kind: LineKind) -> usize {
        self.labels().iter().filter(|k| **k == kind).count()
    }

    /// 1-based numbers of the lines the generator wrote as `kind`.
    pub fn line_numbers(&self, kind: LineKind) -> BTreeSet<usize> {
        let labels = self.labels();
        (0..labels.len())
            .filter(|&i| labels[i] == kind)
            .map(|i| i + 1)
            .collect()
    }

    /// 1-based numbers of the lines the oracle's own reading rejects.
    pub fn bad_lines(&self) -> BTreeSet<usize> {
        let read = reader(self.kind);
        (0..self.lines.len())
            .filter(|&i| read(&self.lines[i]).is_err())
            .map(|i| i + 1)
            .collect()
    }
}

pub fn tmp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oracle")
}

// ---------------------------------------------------------------------------------------
// The oracle's own reading of input lines (docs/design.md section 2)

#[derive(Clone, Debug, Default)]
pub struct Ev {
    /// 1-based input line.
    pub line: usize,
    pub ts: i64,
    pub service: Option<String>,
    pub ip: Option<String>,
    pub user: Option<String>,
    pub rt: Option<f64>,
    pub status: Option<i64>,
    pub action: Option<String>,
    pub value: Option<f64>,
    /// The largest event time of the good lines before this one (`None` for the first): the
    /// progress of a one-partition source when this event arrives (see `lateness`).
    pub seen: Option<i64>,
}

pub fn string_field(o: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{k} has the wrong type: {v}")),
    }
}

pub fn number_field(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(format!("{k} has the wrong type: {v}")),
    }
}

pub fn object(line: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(line).map_err(|e| e.to_string())? {
        Value::Object(o) => Ok(o),
        _ => Err("not a JSON object".into()),
    }
}

pub fn epoch_ms(v: Option<&Value>) -> Result<i64, String> {
    match v {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("timestamp {n}")),
        other => Err(format!("timestamp {other:?}")),
    }
}

pub fn read_log(line: &[u8]) -> Result<Ev, String> {
    let o = object(line)?;
    let ts = match o.get("timestamp") {
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("timestamp {s}: {e}"))?
            .timestamp_millis(),
        other => epoch_ms(other)?,
    };
    for k in ["level", "message", "request_id", "error_code"] {
        string_field(&o, k)?;
    }
    let status = match o.get("status_code") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("status_code is not an integer")?),
        Some(v) => return Err(format!("status_code has the wrong type: {v}")),
    };
    Ok(Ev {
        ts,
        service: string_field(&o, "service")?,
        ip: string_field(&o, "ip_address")?,
        user: string_field(&o, "user_id")?,
        rt: number_field(&o, "response_time")?,
        status,
        ..Ev::default()
    })
}

pub fn read_user_event(line: &[u8]) -> Result<Ev, String> {
    let o = object(line)?;
    let ts = epoch_ms(o.get("timestamp"))?;
    string_field(&o, "session_id")?;
    Ok(Ev {
        ts,
        user: string_field(&o, "user_id")?,
        action: string_field(&o, "action")?,
        value: number_field(&o, "value")?,
        ip: string_field(&o, "ip_address")?,
        ..Ev::default()
    })
}

fn reader(kind: Kind) -> fn(&[u8]) -> Result<Ev, String> {
    match kind {
        Kind::Logs => read_log,
        Kind::UserEvents => read_user_event,
    }
}

/// The good events of `input` (late ones included), in input order, checked against the
/// generator's own account of which lines are bad when the input has it.
pub fn read_events(input: &Input) -> Vec<Ev> {
    let read = reader(input.kind);
    let mut events = Vec::new();
    let mut seen: Option<i64> = None;
    for (i, line) in input.lines.iter().enumerate() {
        let label = input.kinds.as_ref().map(|k| k[i]);
        match (read(line), label) {
            (Ok(mut ev), None | Some(LineKind::Good | LineKind::Late)) => {
                ev.line = i + 1;
                ev.seen = seen;
                seen = Some(seen.map_or(ev.ts, |m| m.max(ev.ts)));
                events.push(ev);
            }
            (Err(_), None | Some(LineKind::Bad)) => {}
            (res, Some(kind)) => panic!(
                "the oracle and the generator disagree on line {}: generator says {kind:?}, \
                 oracle reads {res:?}: {}",
                i + 1,
                String::from_utf8_lossy(line)
            ),
        }
    }
    events
}
