//! `logflow tail TOPIC|FILE`: print the records of an output topic (`key<TAB>value` per line)
//! or JSONL file (one value per line), following it like `tail -f`. Alert records (the
//! `<job>.alerts` schema, docs/alerts.md) are printed as one readable line each instead.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{cli_brokers, KafkaConn};
use crate::{Error, KafkaCause};

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The topic to print, or a file (an existing path, or one with a `/`).
    topic: String,
    /// Kafka bootstrap servers (default: $LOGFLOW_BROKERS, else 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
    /// Start from the oldest record, the start of a file (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop after this long without a new record (e.g. `5s`); default: follow forever.
    #[arg(long)]
    idle_exit: Option<String>,
    /// Print only values (no keys).
    #[arg(long)]
    values_only: bool,
}

pub fn tail(args: TailArgs) -> Result<(), Error> {
    let brokers = cli_brokers(args.brokers.as_deref());
    let idle = match &args.idle_exit {
        Some(d) => Some(Duration::from_millis(
            crate::time::duration::parse_ms(d)
                .map_err(|e| Error::Usage(format!("--idle-exit: {e}")))? as u64,
        )),
        None => None,
    };
    if is_file(&args.topic) {
        return tail_file(&args, idle);
    }
    let conn = KafkaConn::new(&brokers, &[]);
    let partitions = conn.partitions(&args.topic, Duration::from_secs(30))?;
    let consumer: BaseConsumer = conn
        .client_config()
        .set("group.id", "logflow-tail")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| conn.error("consumer", &e))?;
    let mut tpl = TopicPartitionList::new();
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for p in partitions {
        tpl.add_partition_offset(&args.topic, p, start)
            .map_err(|e| Error::kafka(KafkaCause::Client, e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(KafkaCause::Client, e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0u64;
    let mut last = Instant::now();
    while args.max.is_none_or(|m| n < m) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                let value = String::from_utf8_lossy(msg.payload().unwrap_or_default());
                let line = if let Some(alert) = alert_line(&value) {
                    alert
                } else if args.values_only {
                    format!("{value}\n")
                } else {
                    let key = String::from_utf8_lossy(msg.key().unwrap_or_default());
                    format!("{key}\t{value}\n")
                };
                if out.write_all(line.as_bytes()).is_err() {
                    return Ok(()); // reader went away (e.g. `| head`)
                }
                n += 1;
                last = Instant::now();
            }
            Some(Err(e)) => tracing::warn!("logflow: tail {}: {e}", args.topic),
            None => {
                let _ = out.flush();
                if idle.is_some_and(|d| last.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// `target` names a file rather than a topic: it exists, or it has a `/` (topic names never
/// do).
fn is_file(target: &str) -> bool {
    target.contains('/') || Path::new(target).exists()
}

/// The longest line read from a file; longer ones are skipped with a warning (a file that is
/// no JSONL, or a device, must not grow the buffer without bound).
const MAX_LINE_BYTES: usize = 1 << 20;

/// Follows a JSONL file: each new complete line, as an alert line or as it is. A file cut
/// shorter (rotated, rewritten) is read again from its start.
fn tail_file(args: &TailArgs, idle: Option<Duration>) -> Result<(), Error> {
    let path = Path::new(&args.topic);
    let mut f = crate::sandbox::open_read(path).map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Input(format!(
            "tail {}: not a regular file",
            path.display()
        )));
    }
    let mut pos = if args.from_beginning { 0 } else { meta.len() };
    f.seek(SeekFrom::Start(pos))
        .map_err(|e| Error::io(path, e))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut n, mut last) = (0u64, Instant::now());
    let mut pending: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while args.max.is_none_or(|m| n < m) {
        let got = f.read(&mut chunk).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            let _ = out.flush();
            if idle.is_some_and(|d| last.elapsed() >= d) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
            if len < pos {
                pos = 0;
                pending.clear();
                f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
            }
            continue;
        }
        pos += got as u64;
        last = Instant::now();
        let mut rest = &chunk[..got];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if !skipping {
                pending.extend_from_slice(&rest[..nl]);
                let value = String::from_utf8_lossy(&pending);
                let line = alert_line(&value).unwrap_or_else(|| format!("{value}\n"));
                if out.write_all(line.as_bytes()).is_err() {
                    return Ok(());
                }
                n += 1;
                if args.max.is_some_and(|m| n >= m) {
                    break;
                }
            }
            skipping = false;
            pending.clear();
            rest = &rest[nl + 1..];
        }
        if !skipping {
            pending.extend_from_slice(rest);
            if pending.len() > MAX_LINE_BYTES {
                tracing::warn!(
                    "logflow: tail {}: a line longer than {MAX_LINE_BYTES} bytes skipped",
                    path.display()
                );
                pending.clear();
                skipping = true;
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// Most characters of a summary printed: the record comes from outside.
const MAX_SUMMARY_CHARS: usize = 2048;

/// An alert record as one line: `<time> <SEVERITY> <alert> [resolved] <summary>`, where the
/// time is its window's start; `None` for any other record. Control characters in the record
/// are escaped: an alert's text comes from log data, which must not drive the terminal.
fn alert_line(value: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    let o = v.as_object()?;
    let alert = o.get("alert")?.as_str()?;
    let severity = o.get("severity")?.as_str()?;
    let state = o.get("state")?.as_str()?;
    let summary = o.get("summary")?.as_str()?;
    let time = o
        .get("window_start")
        .and_then(|t| t.as_str())
        .unwrap_or("-");
    let mut line = String::new();
    for (i, part) in [time, &severity.to_uppercase(), alert]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            line.push(' ');
        }
        push_printable(part, 200, &mut line);
    }
    if state != "firing" {
        line.push_str(" [");
        push_printable(state, 20, &mut line);
        line.push(']');
    }
    line.push(' ');
    push_printable(summary, MAX_SUMMARY_CHARS, &mut line);
    line.push('\n');
    Some(line)
}

/// Appends at most `max` characters of `s`, control characters escaped.
fn push_printable(s: &str, max: usize, out: &mut String) {
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_records_read_as_one_line_and_others_are_left_alone() {
        let firing = r#"{"window_start":"2026-11-24T10:05:00Z","window_end":"2026-11-24T10:06:00Z","alert":"ddos","severity":"critical","state":"firing","key":{"ip_address":"6.6.6.6"},"summary":"DDoS from 6.6.6.6","values":{}}"#;
        assert_eq!(
            alert_line(firing).unwrap(),
            "2026-11-24T10:05:00Z CRITICAL ddos DDoS from 6.6.6.6\n"
        );
        let resolved = r#"{"window_start":null,"window_end":null,"alert":"late_alerts","severity":"info","state":"resolved","key":{},"summary":"u1: 6 late","values":{}}"#;
        assert_eq!(
            alert_line(resolved).unwrap(),
            "- INFO late_alerts [resolved] u1: 6 late\n"
        );
        // A result row, a dead letter, garbage: not alerts.
        for other in [
            r#"{"window_start":"x","n":1}"#,
            r#"{"reason":"bad"}"#,
            "oops",
            "",
        ] {
            assert_eq!(alert_line(other), None, "{other}");
        }
    }

    #[test]
    fn hostile_text_cannot_drive_the_terminal_or_flood_it() {
        let rec = serde_json::json!({
            "window_start": "t\u{1b}[2J", "alert": "a\nb", "severity": "warning",
            "state": "firing", "summary": format!("x\u{1b}]0;owned\u{7}{}", "y".repeat(10_000)),
        });
        let line = alert_line(&rec.to_string()).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\n'),
            "{line:?}"
        );
        assert!(line.chars().count() < 2_200, "{}", line.len());
        assert!(
            line.starts_with("t\\u{1b}[2J WARNING a\\nb x\\u{1b}]0;owned\\u{7}y"),
            "{line:?}"
        );
    }
}
