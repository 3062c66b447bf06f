//! The reference reader of a JSON record on a schema's paths, through serde: every record the
//! fast scanner ([`super::scan`]) does not take, with serde's errors as dead-letter reasons.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::tree::{Node, Tree};
use super::value::Raw;
use crate::parse::ParseError;

/// Reads `text` (one JSON object) into `raws` on `tree`'s paths.
pub(super) fn read<'a>(text: &'a str, tree: &Tree, raws: &mut [Raw<'a>]) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    Obj { tree, raws }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(crate::parse::fields::reason)
}

/// A JSON object whose keys on `tree`'s paths are kept as raw values.
struct Obj<'t, 'r, 'de> {
    tree: &'t Tree,
    raws: &'r mut [Raw<'de>],
}

impl<'de> DeserializeSeed<'de> for Obj<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Obj<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(node) = map.next_key_seed(Key(self.tree))? {
            match node {
                Some(Node::Leaf(ids)) => {
                    let raw: &'de RawValue = map.next_value()?;
                    for &i in ids {
                        self.raws[i] = Raw::Json(raw.get());
                    }
                }
                Some(Node::Inner(t)) => map.next_value_seed(Nested(Obj {
                    tree: t,
                    raws: &mut *self.raws,
                }))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value that may be an object holding paths: anything else leaves them missing.
struct Nested<'t, 'r, 'de>(Obj<'t, 'r, 'de>);

impl<'de> DeserializeSeed<'de> for Nested<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, looked up in the tree without being copied.
struct Key<'t>(&'t Tree);

impl<'de, 't> DeserializeSeed<'de> for Key<'t> {
    type Value = Option<&'t Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 't> Visitor<'de> for Key<'t> {
    type Value = Option<&'t Node>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.find(v.as_bytes()))
    }
}
