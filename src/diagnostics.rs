//! Diagnostics: the lines logflow prints about itself on stderr (results go to stdout, Kafka
//! or files, never here).
//!
//! Code logs with `tracing` macros; [`install`] routes every event through one writer that
//! stamps it with a time, a level and a target (`--log-format text`, the default) or writes it as
//! one JSON object (`--log-format json`, for log shippers), filtered RUST_LOG-style
//! (`--log-level`, else `RUST_LOG`, else `warn,logflow=info`). The same writer knows about the
//! progress line a terminal run redraws in place: it erases that line before writing and draws
//! it again after, so every stderr line is whole.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Carriage return + "erase line" (ECMA-48 EL).
const ERASE: &str = "\r\x1b[2K";
/// The filter when neither `--log-level` nor `RUST_LOG` gives one: logflow's own progress
/// notes, only warnings from the libraries.
pub const DEFAULT_FILTER: &str = "warn,logflow=info";

/// The progress line drawn on stderr now, if any. Held while anything is written to stderr,
/// so a line and a redraw never interleave.
static PROGRESS: Mutex<Option<String>> = Mutex::new(None);
/// How [`install`] was called: processes this one starts log the same way.
static INSTALLED: OnceLock<(String, LogFormat)> = OnceLock::new();

/// How diagnostics are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-07T08:00:00.123Z  INFO logflow::runtime: message key=value`.
    #[default]
    Text,
    /// One JSON object a line: `time`, `level`, `target`, `message` and the event's fields.
    Json,
}

fn progress() -> MutexGuard<'static, Option<String>> {
    PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Draws (or redraws) the progress line in place; it stays until [`clear_progress`].
pub fn draw_progress(line: &str) {
    let mut p = progress();
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{ERASE}{line}");
    let _ = err.flush();
    *p = Some(line.to_string());
}

/// Erases the progress line, if one is drawn.
pub fn clear_progress() {
    let mut p = progress();
    if p.take().is_some() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{ERASE}");
        let _ = err.flush();
    }
}

/// Lines kept back while a full-screen view owns the terminal (`None`: not holding).
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);
/// Most lines kept back; later ones are counted, not kept.
const MAX_HELD: usize = 1000;

fn held() -> MutexGuard<'static, Option<Vec<String>>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps stderr lines back (a full-screen view is drawn on the terminal) until [`release`].
pub fn hold() {
    held().get_or_insert_with(Vec::new);
}

/// Writes the lines kept back since [`hold`] and stops holding.
pub fn release() {
    let lines = held().take();
    for l in lines.unwrap_or_default() {
        write_lines(&l);
    }
}

/// Writes whole lines to stderr (a final newline is added when missing), above the progress
/// line if one is drawn; kept back while [`hold`] is in force.
pub fn write_lines(text: &str) {
    if let Some(lines) = held().as_mut() {
        if lines.len() < MAX_HELD {
            lines.push(text.to_string());
        } else if lines.len() == MAX_HELD {
            lines
                .push("logflow: more diagnostics were printed while the view was on screen".into());
        }
        return;
    }
    let p = progress();
    let mut err = std::io::stderr().lock();
    if p.is_some() {
        let _ = err.write_all(ERASE.as_bytes());
    }
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
    if let Some(line) = p.as_deref() {
        let _ = err.write_all(line.as_bytes());
    }
    let _ = err.flush();
}

/// Installs the process's diagnostics: `filter` is a RUST_LOG-style directive list (`None`:
/// `RUST_LOG`, else [`DEFAULT_FILTER`]). An invalid filter is an error; a second call is a no-op.
pub fn install(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    let directives = match filter {
        Some(f) => f.to_string(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FILTER.to_string()),
    };
    let env = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("--log-level {directives:?}: {e}"))?;
    if INSTALLED.set((directives, format)).is_err() {
        return Ok(());
    }
    let _ = tracing_subscriber::registry()
        .with(Lines { format }.with_filter(env))
        .try_init();
    Ok(())
}

/// Command-line arguments that make a process started by this one log as this one does.
pub fn child_args() -> Vec<String> {
    match INSTALLED.get() {
        Some((filter, format)) => vec![
            "--log-level".into(),
            filter.clone(),
            "--log-format".into(),
            match format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .into(),
        ],
        None => Vec::new(),
    }
}

/// Writes one line from a child process, prefixed with `[process i]` in the message. A child
/// logs in JSON (see [`child_args`] and the launcher); a line that is not one of its JSON
/// events (a panic, a library printing directly) is passed on as a warning. Returns the
/// line's message.
pub fn forward_child_line(process: usize, line: &str) -> String {
    let format = INSTALLED.get().map_or(LogFormat::Text, |(_, f)| *f);
    let parsed = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| match v {
            serde_json::Value::Object(m) if m.contains_key("message") => Some(m),
            _ => None,
        });
    let mut record = match parsed {
        Some(m) => m,
        None => {
            let mut m = serde_json::Map::new();
            m.insert("time".into(), now().into());
            m.insert("level".into(), "WARN".into());
            m.insert("target".into(), "logflow::child".into());
            m.insert("message".into(), line.into());
            m
        }
    };
    let message = record
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    let out = match format {
        LogFormat::Json => {
            record.insert("process".into(), process.into());
            serde_json::Value::Object(record).to_string()
        }
        LogFormat::Text => {
            let field = |k: &str| {
                record
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let mut fields = Vec::new();
            for (k, v) in &record {
                if !matches!(k.as_str(), "time" | "level" | "target" | "message") {
                    fields.push((k.clone(), v.clone()));
                }
            }
            text_line(
                &field("time"),
                &field("level"),
                &field("target"),
                &format!("[process {process}] {message}"),
                &fields,
            )
        }
    };
    write_lines(&out);
    message
}

/// The time now, as diagnostics print it (UTC, milliseconds).
fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The layer that writes each event as one line.
struct Lines {
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = Fields::default();
        event.record(&mut v);
        let meta = event.metadata();
        let line = render(
            self.format,
            &now(),
            meta.level(),
            meta.target(),
            &v.message,
            &v.fields,
        );
        write_lines(&line);
    }
}

/// An event's message and other fields.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_string(), text.into()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push((field.name().to_string(), value.into()));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name().to_string(), value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name().to_string(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name().to_string(), value.into()));
    }
}

/// One diagnostic line (without its newline).
fn render(
    format: LogFormat,
    time: &str,
    level: &Level,
    target: &str,
    message: &str,
    fields: &[(String, serde_json::Value)],
) -> String {
    match format {
        LogFormat::Text => text_line(time, level.as_str(), target, message, fields),
        LogFormat::Json => {
            let mut m = serde_json::Map::new();
            m.insert("time".into(), time.into());
            m.insert("level".into(), level.as_str().into());
            m.insert("target".into(), target.into());
            m.insert("message".into(), message.into());
            for (k, v) in fields {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
            serde_json::Value::Object(m).to_string()
        }
    }
}

/// `TIME LEVEL target: message key=value ...`; the message keeps its own text, so a line
/// documented in docs/operations.md is found in it verbatim. Control characters in a message
/// (hostile input quoted in an error) are escaped so the line stays one line.
fn text_line(
    time: &str,
    level: &str,
    target: &str,
    message: &str,
    fields: &[(String, serde_json::Value)],
) -> String {
    let mut s = format!("{time} {level:>5} {target}: ");
    for c in message.chars() {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    for (k, v) in fields {
        match v {
            serde_json::Value::String(t) => {
                let _ = write!(s, " {k}={t:?}");
            }
            other => {
                let _ = write!(s, " {k}={other}");
            }
        }
    }
    s
}

/// The message of a text diagnostic line: what follows `TIME LEVEL target: `; `None` for a
/// line of another form.
pub fn text_message(line: &str) -> Option<&str> {
    let (_time, rest) = line.split_once(' ')?;
    let (_level, rest) = rest.trim_start().split_once(' ')?;
    let (_target, message) = rest.split_once(": ")?;
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_wait_for_release_and_are_bounded() {
        hold();
        write_lines("kept back");
        for _ in 0..MAX_HELD + 5 {
            write_lines("more");
        }
        {
            let h = held();
            let lines = h.as_ref().expect("holding");
            assert!(lines.iter().any(|l| l == "kept back"));
            assert_eq!(
                lines.len(),
                MAX_HELD + 1,
                "bounded, with one line saying so"
            );
        }
        release();
        assert!(held().is_none());
    }

    #[test]
    fn text_lines_have_time_level_target_and_the_message_verbatim() {
        let fields = vec![("worker".to_string(), serde_json::Value::from(3u64))];
        let line = render(
            LogFormat::Text,
            "2026-12-07T08:00:00.123Z",
            &Level::INFO,
            "logflow::runtime",
            "logflow: worker 0 reached the end of its input",
            &fields,
        );
        assert_eq!(
            line,
            "2026-12-07T08:00:00.123Z  INFO logflow::runtime: logflow: worker 0 reached the end of its input worker=3"
        );
        assert_eq!(
            text_message(&line),
            Some("logflow: worker 0 reached the end of its input worker=3")
        );
    }

    #[test]
    fn a_message_with_a_newline_stays_one_line() {
        let line = render(
            LogFormat::Text,
            "t",
            &Level::WARN,
            "x",
            "bad\ninput\r\x1b[2K",
            &[],
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\x1b') && !line.contains('\r'), "{line}");
    }

    #[test]
    fn json_lines_parse_with_time_level_message_and_fields() {
        let fields = vec![("partition".to_string(), serde_json::Value::from(2u64))];
        let line = render(
            LogFormat::Json,
            "2026-12-07T08:00:00.123Z",
            &Level::ERROR,
            "logflow::sinks::kafka",
            "a \"quoted\"\nmessage",
            &fields,
        );
        assert_eq!(line.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["time"], "2026-12-07T08:00:00.123Z");
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["target"], "logflow::sinks::kafka");
        assert_eq!(v["message"], "a \"quoted\"\nmessage");
        assert_eq!(v["partition"], 2);
    }

    #[test]
    fn text_message_rejects_other_lines() {
        assert_eq!(text_message("accounting: read=1"), None);
    }
}
