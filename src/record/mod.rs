//! The record model: one [`Event`] type that every input format parses into.
//!
//! Specs refer to fields by name; [`Field`] resolves a name once, at plan time, so the hot path
//! reads a struct field instead of looking up a map.

pub mod value;

pub use value::{Value, ValueRef};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Short strings (service names, IPs, user ids) are stored inline, without allocation.
pub type Str = CompactString;

/// One parsed input record. Log fields (formats `json`, `apache`, `nginx`) and user-event
/// fields (format `user-events`) share the struct; a field a format does not have is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    pub level: Option<Str>,
    pub service: Option<Str>,
    pub message: Option<Str>,
    pub ip_address: Option<Str>,
    pub user_id: Option<Str>,
    pub request_id: Option<Str>,
    /// Seconds.
    pub response_time: Option<f64>,
    pub status_code: Option<i64>,
    pub error_code: Option<Str>,
    pub action: Option<Str>,
    pub value: Option<f64>,
    pub session_id: Option<Str>,
    /// Input order, set by the source (file line, or partition and offset): ties in event
    /// time are broken by it, so order-sensitive aggregates are deterministic.
    #[serde(default)]
    pub pos: u64,
}

/// A named field of [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Field {
    Timestamp,
    Level,
    Service,
    Message,
    IpAddress,
    UserId,
    RequestId,
    ResponseTime,
    StatusCode,
    ErrorCode,
    Action,
    Value,
    SessionId,
}

impl Field {
    /// Every field, in the order of DESIGN.md section 2.
    pub const ALL: [Field; 13] = [
        Field::Timestamp,
        Field::Level,
        Field::Service,
        Field::Message,
        Field::IpAddress,
        Field::UserId,
        Field::RequestId,
        Field::ResponseTime,
        Field::StatusCode,
        Field::ErrorCode,
        Field::Action,
        Field::Value,
        Field::SessionId,
    ];

    /// The field's name in specs and input records.
    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Level => "level",
            Field::Service => "service",
            Field::Message => "message",
            Field::IpAddress => "ip_address",
            Field::UserId => "user_id",
            Field::RequestId => "request_id",
            Field::ResponseTime => "response_time",
            Field::StatusCode => "status_code",
            Field::ErrorCode => "error_code",
            Field::Action => "action",
            Field::Value => "value",
            Field::SessionId => "session_id",
        }
    }

    /// Resolves a field name; `None` for an unknown name.
    #[inline]
    pub fn from_name(name: &str) -> Option<Field> {
        // A match compiles to a length switch and one comparison: this runs for every key of
        // every input record.
        Some(match name {
            "timestamp" => Field::Timestamp,
            "level" => Field::Level,
            "service" => Field::Service,
            "message" => Field::Message,
            "ip_address" => Field::IpAddress,
            "user_id" => Field::UserId,
            "request_id" => Field::RequestId,
            "response_time" => Field::ResponseTime,
            "status_code" => Field::StatusCode,
            "error_code" => Field::ErrorCode,
            "action" => Field::Action,
            "value" => Field::Value,
            "session_id" => Field::SessionId,
            _ => return None,
        })
    }
}

/// A group key: the values of an analysis's `group_by` fields, in order.
pub type Key = Vec<Value>;

/// One result row of an analysis: the window and the output columns (keys first).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Row {
    /// Index of the analysis in the job plan.
    pub analysis: u32,
    pub start: i64,
    pub end: i64,
    pub values: Vec<Value>,
    /// Update mode: the row for this key and window no longer exists (e.g. it stopped passing
    /// `having`); `values` still holds the key columns. Sinks write a tombstone.
    #[serde(default)]
    pub retract: bool,
}

impl Row {
    /// The group key columns.
    pub fn key(&self, key_len: usize) -> &[Value] {
        &self.values[..key_len.min(self.values.len())]
    }
}

/// Hashes a key the same way on every worker and process (exchange routing depends on it).
pub fn key_hash(key: &[Value]) -> u64 {
    use std::hash::BuildHasher;

    foldhash::fast::FixedState::with_seed(0x6c6f_6766_6c6f_7721).hash_one(key)
}

/// A set of [`Field`]s (a bit per field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const ALL: FieldSet = FieldSet((1 << Field::ALL.len()) - 1);

    pub fn insert(&mut self, f: Field) {
        self.0 |= 1 << f as u16;
    }

    pub fn contains(self, f: Field) -> bool {
        self.0 & (1 << f as u16) != 0
    }
}

impl Event {
    /// Reads one field without copying it.
    #[inline]
    pub fn get(&self, field: Field) -> ValueRef<'_> {
        fn s(v: &Option<Str>) -> ValueRef<'_> {
            v.as_deref().map_or(ValueRef::Null, ValueRef::Str)
        }
        match field {
            Field::Timestamp => ValueRef::Int(self.timestamp),
            Field::Level => s(&self.level),
            Field::Service => s(&self.service),
            Field::Message => s(&self.message),
            Field::IpAddress => s(&self.ip_address),
            Field::UserId => s(&self.user_id),
            Field::RequestId => s(&self.request_id),
            Field::ResponseTime => self.response_time.map_or(ValueRef::Null, ValueRef::Float),
            Field::StatusCode => self.status_code.map_or(ValueRef::Null, ValueRef::Int),
            Field::ErrorCode => s(&self.error_code),
            Field::Action => s(&self.action),
            Field::Value => self.value.map_or(ValueRef::Null, ValueRef::Float),
            Field::SessionId => s(&self.session_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_name("nope"), None);
    }

    #[test]
    fn get_reads_fields() {
        let e = Event {
            timestamp: 5,
            service: Some("api".into()),
            status_code: Some(404),
            ..Event::default()
        };
        assert_eq!(e.get(Field::Service), ValueRef::Str("api"));
        assert_eq!(e.get(Field::StatusCode), ValueRef::Int(404));
        assert_eq!(e.get(Field::UserId), ValueRef::Null);
        assert_eq!(e.get(Field::Timestamp), ValueRef::Int(5));
    }
}
