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
//!
//! The numbers the nodes sum, average, compare and bound are read once per event too, into a
//! [`Rows`] beside the ids, so a field read by several aggregates is looked up once.

use hashbrown::HashTable;

use crate::record::value::bytes_eq;
use crate::record::{Event, Field, Value, ValueRef};

/// The id of null, the same in every interner.
pub const NULL: u32 = 0;

/// A field's value as the aggregates of numbers read it: a string is only marked (the
/// aggregates that meet one read it from the event, which is rare).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// Null or missing.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string or a bool (read from the event when needed).
    Str,
}

impl Num {
    /// The value, `None` for a string.
    #[inline]
    pub fn as_ref(self) -> Option<ValueRef<'static>> {
        match self {
            Num::Null => Some(ValueRef::Null),
            Num::Int(i) => Some(ValueRef::Int(i)),
            Num::Float(x) => Some(ValueRef::Float(x)),
            Num::Str => None,
        }
    }
}

/// The fields of a batch of events as the aggregation nodes read them (see [`Interner::read`]),
/// a row per event: the nodes fold a whole batch aggregate by aggregate, reading each field's
/// id or number from here by row and slot.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// Row `r`'s id of the field at slot `s` is `ids[r * id_width + s]`.
    ids: Vec<u32>,
    /// Row `r`'s number of the field at slot `s` is `nums[r * num_width + s]`.
    nums: Vec<Num>,
    id_width: usize,
    num_width: usize,
    len: usize,
}

impl Rows {
    /// No rows, ready for the next batch.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.nums.clear();
        self.len = 0;
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids of row `r`, by [`Interner::slot_or_add`] slot (empty if there is no such row).
    #[inline]
    pub fn ids(&self, r: usize) -> &[u32] {
        let w = self.id_width;
        self.ids.get(r * w..(r + 1) * w).unwrap_or_default()
    }

    /// The id at slot `slot` of row `r` ([`NULL`] if there is none).
    #[inline]
    pub fn id(&self, r: usize, slot: usize) -> u32 {
        self.ids
            .get(r * self.id_width + slot)
            .copied()
            .unwrap_or(NULL)
    }

    /// The numbers of row `r`, by [`Interner::num_slot_or_add`] slot.
    #[inline]
    pub fn nums(&self, r: usize) -> &[Num] {
        let w = self.num_width;
        self.nums.get(r * w..(r + 1) * w).unwrap_or_default()
    }

    /// The number at slot `slot` of row `r` ([`Num::Null`] if there is none).
    #[inline]
    pub fn num(&self, r: usize, slot: usize) -> Num {
        self.nums
            .get(r * self.num_width + slot)
            .copied()
            .unwrap_or(Num::Null)
    }
}

/// Values of a list of fields, numbered densely as they are first seen.
pub struct Interner {
    fields: Vec<Field>,
    /// Fields read as numbers ([`Rows::nums`]).
    num_fields: Vec<Field>,
    /// Ids of `values`, hashed by the value's `hash64`.
    index: HashTable<u32>,
    /// (hash64, value) by id; id 0 is null.
    values: Vec<(u64, Value)>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            fields: Vec::new(),
            num_fields: Vec::new(),
            index: HashTable::new(),
            values: vec![(Value::Null.hash64(), Value::Null)],
        }
    }
}

impl Interner {
    /// The position of `field` in [`Rows::ids`], added if it has none.
    pub fn slot_or_add(&mut self, field: Field) -> usize {
        position_or_push(&mut self.fields, field)
    }

    /// The position of `field` in [`Rows::nums`], added if it has none.
    pub fn num_slot_or_add(&mut self, field: Field) -> usize {
        position_or_push(&mut self.num_fields, field)
    }

    /// Appends a row to `rows`: the id of each grouped or counted field's value in `ev`, and
    /// each number field's value. Ids are given in the order rows are read, field by field.
    #[inline]
    pub fn read(&mut self, ev: &Event, rows: &mut Rows) {
        if rows.len == 0 {
            rows.id_width = self.fields.len();
            rows.num_width = self.num_fields.len();
        }
        // Slots are all taken before the first row is read (the tables are made first).
        debug_assert_eq!(
            (rows.id_width, rows.num_width),
            (self.fields.len(), self.num_fields.len())
        );
        for f in &self.fields {
            let id = intern(&mut self.index, &mut self.values, ev.get(*f));
            rows.ids.push(id);
        }
        for f in &self.num_fields {
            rows.nums.push(match ev.get(*f) {
                ValueRef::Null => Num::Null,
                ValueRef::Int(i) => Num::Int(i),
                ValueRef::Float(x) => Num::Float(x),
                // Not a number: read from the event where an aggregate needs it.
                ValueRef::Str(_) | ValueRef::Bool(_) => Num::Str,
            });
        }
        rows.len += 1;
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

fn position_or_push(fields: &mut Vec<Field>, field: Field) -> usize {
    match fields.iter().position(|f| *f == field) {
        Some(i) => i,
        None => {
            fields.push(field);
            fields.len() - 1
        }
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
        let ev = |s: Option<&str>, code: Option<i64>| Event {
            service: s.map(Into::into),
            status_code: code,
            ..Event::default()
        };
        assert_eq!(i.num_slot_or_add(Field::ResponseTime), 0);
        assert_eq!(i.num_slot_or_add(Field::StatusCode), 1);
        let mut rows = Rows::default();
        i.read(&ev(Some("api"), Some(200)), &mut rows);
        assert_eq!(rows.ids(0).len(), 2);
        let first = rows.ids(0).to_vec();
        assert_eq!(rows.nums(0), [Num::Null, Num::Int(200)]);
        i.read(&ev(Some("web"), None), &mut rows);
        assert_eq!(rows.id(1, 1), NULL);
        assert_eq!(rows.num(1, 1), Num::Null);
        assert_ne!(rows.id(1, 0), first[0]);
        i.read(&ev(Some("api"), Some(200)), &mut rows);
        assert_eq!(rows.ids(2), first);
        assert_eq!(rows.len(), 3);
        // Out of range: nothing, never a panic.
        assert_eq!(
            (rows.ids(3), rows.id(3, 0), rows.num(3, 0)),
            (&[][..], NULL, Num::Null)
        );
        rows.clear();
        assert!(rows.is_empty());
        assert_eq!(i.value(first[0]).1, Value::Str("api".into()));
        assert_eq!(i.value(first[1]).0, Value::Int(200).hash64());
        // 200 and 200.0 are equal values, so one id.
        assert_eq!(i.intern(ValueRef::Float(200.0)), first[1]);
        i.clear();
        assert_eq!(i.intern(ValueRef::Str("web")), 1);
        assert_eq!(i.value(NULL).1, Value::Null);
    }
}
