//! Input formats: every line (or Kafka message) becomes an [`Event`] or a [`ParseError`].
//!
//! Parsers borrow the input bytes and allocate only for strings longer than the inline
//! capacity of [`crate::record::Str`]. A parse error carries a short reason; the caller attaches the
//! original bytes and position when it routes the record to the dead-letter output.

mod access_log;
mod fields;
mod json;
mod json_fast;
pub mod text;
pub mod timestamp;
mod user_events;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{Event, FieldSet};

/// Input record formats (docs/design.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON log object per line.
    Json,
    /// Apache common or combined log format, optional trailing response time in microseconds.
    Apache,
    /// Nginx access log (same layouts as `apache`).
    Nginx,
    /// One JSON user event per line.
    UserEvents,
    /// Any text: the line is the field `line`, the time is the wall clock (processing time).
    Text,
}

impl Format {
    /// Parses one record. `line` has no trailing newline (a trailing `\r` is tolerated).
    #[inline]
    pub fn parse(self, line: &[u8]) -> Result<Event, ParseError> {
        self.parse_fields(line, FieldSet::ALL)
    }

    /// Parses one record, copying only the string fields in `keep` (the others are checked
    /// exactly as `parse` checks them, so the same records are bad input, but left `None`):
    /// a job's analyses rarely read `message`, the one long string of a log line.
    #[inline]
    pub fn parse_fields(self, line: &[u8], keep: FieldSet) -> Result<Event, ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Format::Json => json::parse(line, keep),
            Format::Apache | Format::Nginx => {
                access_log::parse(line, keep.contains(crate::record::Field::Message))
            }
            Format::UserEvents => user_events::parse(line, keep),
            Format::Text => text::parse(line),
        }
    }

    /// As [`Format::parse_fields`], into `ev`, which must be `Event::default()`: the usual
    /// JSON record is parsed straight into it, without building an `Event` elsewhere and
    /// moving it (an `Event` is a few hundred bytes; the ingest parses blocks into a vector
    /// in place). On error `ev` holds unspecified fields.
    #[inline]
    pub fn parse_into(self, line: &[u8], keep: FieldSet, ev: &mut Event) -> Result<(), ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Format::Json => json::parse_into(line, keep, ev),
            Format::UserEvents => user_events::parse_into(line, keep, ev),
            _ => {
                *ev = self.parse_fields(line, keep)?;
                Ok(())
            }
        }
    }

    /// The format's name in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Apache => "apache",
            Format::Nginx => "nginx",
            Format::UserEvents => "user-events",
            Format::Text => "text",
        }
    }

    /// Records carry the wall clock, not an event time: event-time progress follows the clock
    /// even when no record arrives.
    pub fn processing_time(self) -> bool {
        self == Format::Text
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record could not be parsed (goes into the dead-letter record as `reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub Cow<'static, str>);

impl ParseError {
    /// A parse error with its reason.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        ParseError(reason.into())
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
