//! What a schema names: field types and the paths values come from.

use std::fmt;

use crate::record::Field;

/// The type a schema field converts its value to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text (the default for new names).
    String,
    /// A 64-bit integer; a JSON string of one is accepted.
    Int,
    /// A float; a JSON string of one is accepted.
    Float,
    /// `true` or `false`.
    Bool,
}

impl FieldType {
    /// The type's name in specs.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
        }
    }

    /// The type named `s`, if any.
    pub fn from_name(s: &str) -> Option<FieldType> {
        Some(match s {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            _ => return None,
        })
    }

    /// A built-in field's type (`None` for the event time and extra fields).
    pub fn of_builtin(f: Field) -> Option<FieldType> {
        match f {
            Field::Timestamp | Field::Extra(_) => None,
            Field::ResponseTime | Field::Value => Some(FieldType::Float),
            Field::StatusCode => Some(FieldType::Int),
            _ => Some(FieldType::String),
        }
    }
}

/// Kafka record metadata a path can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaPath {
    /// The record's key.
    Key,
    /// The record's timestamp, epoch ms.
    Timestamp,
    /// The partition number.
    Partition,
    /// The record's offset.
    Offset,
    /// The value of the last header of this name.
    Header(String),
}

/// Where a field's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// Keys of nested JSON objects, outermost first.
    Json(Vec<String>),
    /// A named group of the schema's regex.
    Group(String),
    /// Kafka record metadata.
    Meta(MetaPath),
}

impl Path {
    /// Parses a path as written in a spec: `@...` metadata, else a group name (`regex`) or a
    /// dotted JSON path.
    pub fn parse(s: &str, regex: bool) -> Result<Path, String> {
        if let Some(m) = s.strip_prefix('@') {
            return Ok(Path::Meta(match m {
                "key" => MetaPath::Key,
                "timestamp" => MetaPath::Timestamp,
                "partition" => MetaPath::Partition,
                "offset" => MetaPath::Offset,
                _ => match m.strip_prefix("header.") {
                    Some(h) if !h.is_empty() => MetaPath::Header(h.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown metadata path `{s}` (@key, @timestamp, @partition, \
                             @offset, @header.NAME)"
                        ))
                    }
                },
            }));
        }
        if regex {
            let mut c = s.chars();
            let ok = c
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if ok {
                Ok(Path::Group(s.to_string()))
            } else {
                Err(format!("`{s}` is not a regex group name"))
            };
        }
        if s.contains(['[', ']']) {
            return Err(format!(
                "bad path `{s}`: array elements cannot be read (a path is keys joined by `.`)"
            ));
        }
        let segs: Vec<String> = s.split('.').map(str::to_string).collect();
        if segs.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "bad path `{s}`: an empty key (a path is keys joined by `.`, such as \
                 `request.host`)"
            ));
        }
        Ok(Path::Json(segs))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Json(s) => f.write_str(&s.join(".")),
            Path::Group(g) => write!(f, "(?P<{g}>)"),
            Path::Meta(MetaPath::Key) => f.write_str("@key"),
            Path::Meta(MetaPath::Timestamp) => f.write_str("@timestamp"),
            Path::Meta(MetaPath::Partition) => f.write_str("@partition"),
            Path::Meta(MetaPath::Offset) => f.write_str("@offset"),
            Path::Meta(MetaPath::Header(h)) => write!(f, "@header.{h}"),
        }
    }
}
