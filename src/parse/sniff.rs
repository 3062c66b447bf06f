//! Which format an input is in, from its first records: `--format auto`, and the warning when
//! most of a run's first records are dead letters.

use std::collections::HashMap;

use super::Format;
use crate::record::FieldSet;

/// Records looked at, at most.
pub const RECORDS: usize = 1_000;
/// Bytes read from a file to find them, at most (records are bounded, hostile input is not).
pub const BYTES: usize = 1 << 20;

/// The formats sniffing tells apart, in order of preference on a tie. `nginx` parses the same
/// layouts as `apache`; `text` parses anything and is chosen only when nothing else fits.
const CANDIDATES: [Format; 3] = [Format::Json, Format::UserEvents, Format::Apache];

/// The outcome of sniffing a sample of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    /// The chosen format.
    pub format: Format,
    /// How many records of the sample it parses.
    pub parsed: usize,
    /// The sample's size.
    pub records: usize,
}

impl std::fmt::Display for Sniffed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} of the first {} records parse as {})",
            self.format, self.parsed, self.records, self.format
        )
    }
}

/// Keys one of which a record must have to count as its format when sniffing: both JSON
/// parsers accept objects with the other's fields (a log line has a `user_id`, an event a
/// `timestamp`), so parsing alone cannot tell them apart.
fn markers(format: Format) -> &'static [&'static [u8]] {
    match format {
        Format::Json => &[b"\"level\"", b"\"service\"", b"\"message\""],
        Format::UserEvents => &[b"\"action\"", b"\"session_id\""],
        _ => &[],
    }
}

/// How many of `records` `format` parses (and, for the JSON formats, carry one of its keys).
fn parsed(format: Format, records: &[&[u8]]) -> usize {
    let keys = markers(format);
    records
        .iter()
        .filter(|r| {
            (keys.is_empty() || keys.iter().any(|k| memchr::memmem::find(r, k).is_some()))
                && format.parse_fields(r, FieldSet::ALL).is_ok()
        })
        .count()
}

/// The built-in format that parses most of `records` (`preferred`, the spec's, on a tie); `text`
/// when none parses any of them; `preferred` for an empty sample. A sample that some format
/// parses only in part is a damaged log of that format, not free text: its bad records become
/// dead letters, and [`DeadLetterWatch`] warns when they are most of them.
pub fn sniff(records: &[&[u8]], preferred: Format) -> Sniffed {
    let n = records.len();
    if n == 0 {
        return Sniffed {
            format: preferred,
            parsed: 0,
            records: 0,
        };
    }
    let mut best = Sniffed {
        format: Format::Text,
        parsed: 0,
        records: n,
    };
    let order =
        std::iter::once(preferred).chain(CANDIDATES.into_iter().filter(|f| *f != preferred));
    for f in order.filter(|f| *f != Format::Text) {
        let p = parsed(f, records);
        if p > best.parsed {
            best = Sniffed {
                format: f,
                parsed: p,
                records: n,
            };
        }
    }
    if best.parsed == 0 {
        return Sniffed {
            format: Format::Text,
            parsed: n,
            records: n,
        };
    }
    best
}

/// The first complete records (lines) of `data`, at most [`RECORDS`]; a last line without its
/// newline counts only when `data` is the whole input.
pub fn first_records(data: &[u8], whole: bool) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if !whole || data.ends_with(b"\n") {
        lines.pop();
    }
    lines.retain(|l| !l.iter().all(u8::is_ascii_whitespace));
    lines.truncate(RECORDS);
    lines
}

/// Watches a run's first records for dead letters: when more than half of them are, the input
/// is probably in another format than the one configured.
#[derive(Debug)]
pub struct DeadLetterWatch {
    format: Format,
    seen: usize,
    dead: usize,
    reasons: HashMap<String, usize>,
    samples: Vec<Vec<u8>>,
    done: bool,
}

impl DeadLetterWatch {
    /// A watch over the first records of a job reading `format`.
    pub fn new(format: Format) -> DeadLetterWatch {
        DeadLetterWatch {
            format,
            seen: 0,
            dead: 0,
            reasons: HashMap::new(),
            samples: Vec::new(),
            done: false,
        }
    }

    /// Whether the first records have been judged (nothing more to observe).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Counts a block of `read` records, of which `dead` (reason, raw bytes) were dead letters.
    /// Returns the warning once the first [`RECORDS`] records are in, if it is due.
    pub fn observe<'a>(
        &mut self,
        read: u64,
        dead: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Option<String> {
        if self.done {
            return None;
        }
        self.seen += read as usize;
        for (reason, raw) in dead {
            self.dead += 1;
            if self.reasons.len() < 64 || self.reasons.contains_key(reason) {
                *self.reasons.entry(reason.to_string()).or_default() += 1;
            }
            if self.samples.len() < 200 {
                self.samples.push(raw[..raw.len().min(4096)].to_vec());
            }
        }
        if self.seen >= RECORDS {
            return self.finish();
        }
        None
    }

    /// Judges the records seen so far (at the end of a short input); at most once.
    pub fn finish(&mut self) -> Option<String> {
        if std::mem::replace(&mut self.done, true) || self.dead * 2 <= self.seen {
            return None;
        }
        let (reason, _) = self
            .reasons
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
        let samples: Vec<&[u8]> = self.samples.iter().map(Vec::as_slice).collect();
        let other = CANDIDATES
            .into_iter()
            .filter(|f| *f != self.format)
            .map(|f| (f, parsed(f, &samples)))
            .filter(|(_, p)| *p * 2 > samples.len())
            .max_by_key(|(_, p)| *p);
        let hint = match other {
            Some((f, _)) => format!("they parse as `{f}`: try --format {f}"),
            None => "no other built-in format parses them (--format text reads any line)".into(),
        };
        Some(format!(
            "logflow: {} of the first {} records are dead letters as `{}`, most with \"{}\"; {hint}",
            self.dead,
            self.seen,
            self.format,
            reason.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &[u8] = br#"{"timestamp":"2026-11-24T10:00:00Z","level":"INFO","service":"auth","message":"ok","response_time":0.1,"status_code":200,"ip_address":"10.0.0.1"}"#;
    const APACHE: &[u8] = br#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /index.html HTTP/1.1" 200 203023 "-" "Mozilla/5.0""#;
    const EVENT: &[u8] = br#"{"timestamp": 1795514377262, "user_id": "user_01850", "action": "add_to_cart", "value": 425.75, "session_id": "sess_1b4c37d875", "ip_address": "192.168.18.234"}"#;
    const COMMON: &[u8] =
        br#"10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;

    #[test]
    fn picks_the_format_most_records_parse_as() {
        let s = sniff(&[APACHE, APACHE, b"junk"], Format::Json);
        assert_eq!((s.format, s.parsed, s.records), (Format::Apache, 2, 3));
        assert_eq!(sniff(&[COMMON], Format::Json).format, Format::Apache);
        assert_eq!(sniff(&[JSON, JSON], Format::Apache).format, Format::Json);
        assert_eq!(
            sniff(&[JSON, JSON], Format::UserEvents).format,
            Format::Json
        );
        assert_eq!(
            sniff(&[EVENT, EVENT], Format::Json).format,
            Format::UserEvents
        );
        assert_eq!(
            sniff(&[b"hello", b"world"], Format::Json).format,
            Format::Text
        );
        assert_eq!(sniff(&[], Format::UserEvents).format, Format::UserEvents);
        // Mostly damaged JSON is still JSON (its bad lines are dead letters), never text.
        let s = sniff(
            &[JSON, b"{\"timestamp\":", b"garbage", b"more"],
            Format::Json,
        );
        assert_eq!((s.format, s.parsed), (Format::Json, 1));
    }

    #[test]
    fn first_records_skips_a_partial_last_line_and_blank_lines() {
        assert_eq!(first_records(b"a\n\nb\nc", false), vec![&b"a"[..], b"b"]);
        assert_eq!(
            first_records(b"a\n\nb\nc", true),
            vec![&b"a"[..], b"b", b"c"]
        );
        let many = "x\n".repeat(RECORDS + 5);
        assert_eq!(first_records(many.as_bytes(), true).len(), RECORDS);
    }

    #[test]
    fn warns_once_naming_the_reason_and_the_better_format() {
        let mut w = DeadLetterWatch::new(Format::Json);
        let dead = vec![("not JSON", APACHE); 600];
        assert_eq!(w.observe(600, dead.iter().map(|(r, b)| (*r, *b))), None);
        let warning = w
            .observe(600, dead.iter().map(|(r, b)| (*r, *b)))
            .expect("a warning");
        assert!(
            warning.contains("1200 of the first 1200 records"),
            "{warning}"
        );
        assert!(warning.contains("\"not JSON\""), "{warning}");
        assert!(warning.contains("--format apache"), "{warning}");
        assert_eq!(w.observe(10, std::iter::empty()), None);
        assert_eq!(w.finish(), None);
    }

    #[test]
    fn no_warning_when_most_records_parse() {
        let mut w = DeadLetterWatch::new(Format::Json);
        let dead = vec![("not JSON", APACHE); 400];
        assert_eq!(w.observe(1000, dead.iter().map(|(r, b)| (*r, *b))), None);
        assert!(w.done());
        let mut short = DeadLetterWatch::new(Format::Apache);
        let bad: Vec<(&str, &[u8])> = vec![("no request line", b"garbage"); 3];
        let warning = short
            .observe(3, bad.into_iter())
            .is_none()
            .then(|| short.finish());
        let warning = warning
            .flatten()
            .expect("a short input is judged at its end");
        assert!(warning.contains("no other built-in format"), "{warning}");
    }
}
