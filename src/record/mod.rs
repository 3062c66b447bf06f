//! The record model: one [`Event`] type that every input format parses into.
//!
//! Specs refer to fields by name; [`Field`] resolves a name once, at plan time, so the hot path
//! reads a struct field instead of looking up a map.

pub mod origin;
pub mod value;

pub use origin::{DeadLetter, LateEvent, Origin};
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
    /// Log level (`INFO`, `ERROR`, ...).
    pub level: Option<Str>,
    /// The service that logged it.
    pub service: Option<Str>,
    /// Free text.
    pub message: Option<Str>,
    /// The client's IP address.
    pub ip_address: Option<Str>,
    /// The user.
    pub user_id: Option<Str>,
    /// The request, for tracing.
    pub request_id: Option<Str>,
    /// Seconds.
    pub response_time: Option<f64>,
    /// HTTP status code.
    pub status_code: Option<i64>,
    /// An application error code.
    pub error_code: Option<Str>,
    /// User events: what the user did (`view`, `click`, ...).
    pub action: Option<Str>,
    /// User events: the action's value (an amount, a duration).
    pub value: Option<f64>,
    /// User events: the session.
    pub session_id: Option<Str>,
    /// Format `text`: the whole input line.
    #[serde(default)]
    pub line: Option<Str>,
    /// Fields that no input format has: set by `explode` and `[[lookup]]` tables, in the slots
    /// the plan gives their names (see [`Field::Extra`]). Empty when a job has none.
    #[serde(default)]
    pub extra: Vec<Value>,
    /// Input order, set by the source (file line, or partition and offset): ties in event
    /// time are broken by it, so order-sensitive aggregates are deterministic.
    #[serde(default)]
    pub pos: u64,
}

/// A named field of [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Field {
    /// [`Event::timestamp`].
    Timestamp,
    /// [`Event::level`].
    Level,
    /// [`Event::service`].
    Service,
    /// [`Event::message`].
    Message,
    /// [`Event::ip_address`].
    IpAddress,
    /// [`Event::user_id`].
    UserId,
    /// [`Event::request_id`].
    RequestId,
    /// [`Event::response_time`].
    ResponseTime,
    /// [`Event::status_code`].
    StatusCode,
    /// [`Event::error_code`].
    ErrorCode,
    /// [`Event::action`].
    Action,
    /// [`Event::value`].
    Value,
    /// [`Event::session_id`].
    SessionId,
    /// Format `text`: the line.
    Line,
    /// A field produced by the job itself (an `explode` name, a lookup table column): slot
    /// `i` of [`Event::extra`]. Names are resolved by the plan.
    Extra(u8),
}

impl Field {
    /// Every field an input format sets, in the order of docs/design.md section 2.
    pub const ALL: [Field; 14] = [
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
        Field::Line,
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
            Field::Line => "line",
            Field::Extra(_) => "extra",
        }
    }

    /// The field's name in a job whose extra fields are named `extras` (the plan's slots).
    pub fn name_in(self, extras: &[String]) -> &str {
        match self {
            Field::Extra(i) => extras.get(i as usize).map_or("extra", |n| n.as_str()),
            f => f.name(),
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
            "line" => Field::Line,
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
    /// Window start, ms since the epoch (complete mode: the trigger instant).
    pub start: i64,
    /// Window end (exclusive).
    pub end: i64,
    /// The output columns, keys first.
    pub values: Vec<Value>,
    /// Update mode: the row for this key and window no longer exists (e.g. it stopped passing
    /// `having`); `values` is the row it retracts. Sinks write a tombstone (its key).
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

/// A set of input [`Field`]s (a bit per field; extra fields are never parsed, so never held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    /// Every field.
    pub const ALL: FieldSet = FieldSet((1 << Field::ALL.len()) - 1);

    #[inline]
    fn bit(f: Field) -> u32 {
        let i = match f {
            Field::Timestamp => 0,
            Field::Level => 1,
            Field::Service => 2,
            Field::Message => 3,
            Field::IpAddress => 4,
            Field::UserId => 5,
            Field::RequestId => 6,
            Field::ResponseTime => 7,
            Field::StatusCode => 8,
            Field::ErrorCode => 9,
            Field::Action => 10,
            Field::Value => 11,
            Field::SessionId => 12,
            Field::Line => 13,
            Field::Extra(_) => return 0,
        };
        1 << i
    }

    /// Adds `f`.
    pub fn insert(&mut self, f: Field) {
        self.0 |= Self::bit(f);
    }

    /// Whether `f` is in the set.
    pub fn contains(self, f: Field) -> bool {
        self.0 & Self::bit(f) != 0
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
            Field::Line => s(&self.line),
            Field::Extra(i) => match self.extra.get(i as usize) {
                Some(Value::Str(v)) => ValueRef::Str(v),
                Some(Value::Int(v)) => ValueRef::Int(*v),
                Some(Value::Float(v)) => ValueRef::Float(*v),
                Some(Value::Bool(v)) => ValueRef::Bool(*v),
                _ => ValueRef::Null,
            },
        }
    }

    /// The slot of a built-in string field (`None` for the other fields).
    #[inline(always)]
    pub fn str_mut(&mut self, f: Field) -> Option<&mut Option<Str>> {
        Some(match f {
            Field::Level => &mut self.level,
            Field::Service => &mut self.service,
            Field::Message => &mut self.message,
            Field::IpAddress => &mut self.ip_address,
            Field::UserId => &mut self.user_id,
            Field::RequestId => &mut self.request_id,
            Field::ErrorCode => &mut self.error_code,
            Field::Action => &mut self.action,
            Field::SessionId => &mut self.session_id,
            Field::Line => &mut self.line,
            _ => return None,
        })
    }

    /// Sets an extra field (see [`Field::Extra`]), growing the slots as needed.
    pub fn set_extra(&mut self, slot: u8, v: Value) {
        let i = slot as usize;
        if self.extra.len() <= i {
            self.extra.resize(i + 1, Value::Null);
        }
        self.extra[i] = v;
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

    #[test]
    fn extra_fields_live_in_slots() {
        let mut e = Event::default();
        assert_eq!(e.get(Field::Extra(1)), ValueRef::Null);
        e.set_extra(1, Value::Str("team-a".into()));
        assert_eq!(e.get(Field::Extra(1)), ValueRef::Str("team-a"));
        assert_eq!(e.get(Field::Extra(0)), ValueRef::Null);
        let mut set = FieldSet::default();
        set.insert(Field::Extra(3));
        set.insert(Field::Line);
        assert!(set.contains(Field::Line) && !set.contains(Field::Extra(3)));
        assert!(!set.contains(Field::Service) && FieldSet::ALL.contains(Field::Line));
    }
}
