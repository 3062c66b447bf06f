//! Dense ids for the values an event is grouped and counted by.
//!
//! Every aggregation node of a job hashes and compares the same few fields (a job grouping by
//! `service`, `ip_address` and `user_id` and counting distinct users and services reads three
//! fields through five nodes and seven distinct sets). An [`Interner`] hashes each of those
//! fields once per event and gives its value a small id; the nodes then find their groups and
//! test set membership by integers ([`crate::operators::pre_aggregate::GroupTable`]), and turn
//! ids back into values only when their partials are drained. Ids live until [`Interner::clear`]
//! (the ingest clears it whenever it has drained every table), so memory follows the values
//! seen between two drains, not the whole run.

use hashbrown::HashTable;

use crate::record::value::bytes_eq;
use crate::record::{Event, Field, Value, ValueRef};

/// The id of null, the same in every interner.
pub const NULL: u32 = 0;

/// Values of a list of fields, numbered densely as they are first seen.
pub struct Interner {
    fields: Vec<Field>,
    /// Ids of `values`, hashed by the value's `hash64`.
    index: HashTable<u32>,
    /// (hash64, value) by id; id 0 is null.
    values: Vec<(u64, Value)>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            fields: Vec::new(),
            index: HashTable::new(),
            values: vec![(Value::Null.hash64(), Value::Null)],
        }
    }
}

impl Interner {
    /// The position of `field` in the ids [`Interner::ids`] writes, added if it has none.
    pub fn slot_or_add(&mut self, field: Field) -> usize {
        match self.fields.iter().position(|f| *f == field) {
            Some(i) => i,
            None => {
                self.fields.push(field);
                self.fields.len() - 1
            }
        }
    }

    /// How many ids [`Interner::ids`] writes.
    pub fn width(&self) -> usize {
        self.fields.len()
    }

    /// Writes the id of each field's value in `ev` to `ids` (at least [`Interner::width`]
    /// long).
    #[inline]
    pub fn ids(&mut self, ev: &Event, ids: &mut [u32]) {
        for (i, f) in self.fields.iter().enumerate() {
            let r = ev.get(*f);
            ids[i] = intern(&mut self.index, &mut self.values, r);
        }
    }

    /// The id of `r`, given one if it has none yet.
    #[inline]
    pub fn intern(&mut self, r: ValueRef<'_>) -> u32 {
        intern(&mut self.index, &mut self.values, r)
    }

    /// The value of `id` and its `hash64`.
    #[inline]
    pub fn value(&self, id: u32) -> &(u64, Value) {
        &self.values[id as usize]
    }

    /// Forgets every value but null: ids given from now on start again from 1.
    pub fn clear(&mut self) {
        self.index.clear();
        self.values.truncate(1);
    }
}

/// Values are equal as `Value::eq_ref` says (`1` equals `1.0`), so grouping and distinct counts
/// by id agree with grouping and counting by value; the first value seen represents its class.
#[inline]
fn intern(index: &mut HashTable<u32>, values: &mut Vec<(u64, Value)>, r: ValueRef<'_>) -> u32 {
    if r.is_null() {
        return NULL;
    }
    let h = r.hash64();
    let found = index.find(h, |&i| {
        let (g, v) = &values[i as usize];
        // Strings (the usual key) compared here as `eq_ref` compares them, without its call.
        *g == h
            && match (v, r) {
                (Value::Str(a), ValueRef::Str(b)) => bytes_eq(a.as_bytes(), b.as_bytes()),
                _ => v.eq_ref(r),
            }
    });
    match found {
        Some(&i) => i,
        None => {
            let id = values.len() as u32;
            values.push((h, r.to_owned()));
            index.insert_unique(h, id, |&i| values[i as usize].0);
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_an_id_and_clear_starts_again() {
        let mut i = Interner::default();
        for (f, slot) in [
            (Field::Service, 0),
            (Field::StatusCode, 1),
            (Field::Service, 0),
        ] {
            assert_eq!(i.slot_or_add(f), slot);
        }
        assert_eq!(i.width(), 2);
        let ev = |s: Option<&str>, code: Option<i64>| Event {
            service: s.map(Into::into),
            status_code: code,
            ..Event::default()
        };
        let mut ids = [0u32; 2];
        i.ids(&ev(Some("api"), Some(200)), &mut ids);
        let first = ids;
        i.ids(&ev(Some("web"), None), &mut ids);
        assert_eq!(ids[1], NULL);
        assert_ne!(ids[0], first[0]);
        i.ids(&ev(Some("api"), Some(200)), &mut ids);
        assert_eq!(ids, first);
        assert_eq!(i.value(first[0]).1, Value::Str("api".into()));
        assert_eq!(i.value(first[1]).0, Value::Int(200).hash64());
        // 200 and 200.0 are equal values, so one id.
        assert_eq!(i.intern(ValueRef::Float(200.0)), first[1]);
        i.clear();
        assert_eq!(i.intern(ValueRef::Str("web")), 1);
        assert_eq!(i.value(NULL).1, Value::Null);
    }
}
