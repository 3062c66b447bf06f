//! Where a record came from, and the two side outputs that carry a record with its origin:
//! dead letters (unparseable input) and late events (after their windows closed).

use serde::{Deserialize, Serialize};

use super::value::write_json_str;
use super::Event;

/// Where a record came from, for dead-letter and late outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// A file (or `-` for stdin) and 1-based line number.
    File {
        /// The path as given.
        path: String,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka topic partition and offset.
    Kafka {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
    },
    /// The built-in generator and the event's sequence number.
    Generator {
        /// The event's sequence number.
        seq: u64,
    },
}

impl Origin {
    /// Appends the origin as a JSON object.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Origin::File { path, line } => {
                out.push_str("{\"file\":");
                write_json_str(path, out);
                out.push_str(&format!(",\"line\":{line}}}"));
            }
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => {
                out.push_str("{\"topic\":");
                write_json_str(topic, out);
                out.push_str(&format!(",\"partition\":{partition},\"offset\":{offset}}}"));
            }
            Origin::Generator { seq } => out.push_str(&format!("{{\"generator\":{seq}}}")),
        }
    }
}

/// A record that could not be parsed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it could not be parsed.
    pub reason: String,
    /// Where it was read.
    pub origin: Origin,
    /// The original bytes (cut to the record limit).
    pub raw: Vec<u8>,
    /// The real length when `raw` was cut.
    pub original_len: Option<u64>,
}

/// An event that arrived after its windows had closed, for one or more analyses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LateEvent {
    /// The event.
    pub event: Event,
    /// Where it was read.
    pub origin: Origin,
    /// The record as read.
    pub raw: Vec<u8>,
    /// (analysis index, that analysis's watermark when the event arrived)
    pub missed: Vec<(u32, i64)>,
}
