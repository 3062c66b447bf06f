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
    index: IdIndex,
    /// (hash64, value) by id; id 0 is null.
    values: Vec<(u64, Value)>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            fields: Vec::new(),
            num_fields: Vec::new(),
            index: IdIndex::default(),
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
    /// each number field's value. Ids are given in the order fields are read.
    #[inline]
    pub fn read(&mut self, ev: &Event, rows: &mut Rows) {
        self.read_all(std::slice::from_ref(&ev), rows)
    }

    /// [`Interner::read`] of each of `events` in turn, a field at a time: which field is read
    /// is decided once per field and batch, not once per event, so each column is a loop of
    /// the field's own load and hash (`Event::get` matched the field per event, out of line).
    /// Ids are given in the order fields are read, each over the whole batch.
    pub fn read_all(&mut self, events: &[&Event], rows: &mut Rows) {
        if rows.len == 0 {
            rows.id_width = self.fields.len();
            rows.num_width = self.num_fields.len();
        }
        // Slots are all taken before the first row is read (the tables are made first).
        debug_assert_eq!(
            (rows.id_width, rows.num_width),
            (self.fields.len(), self.num_fields.len())
        );
        let (base, n) = (rows.len, events.len());
        let (w, nw) = (rows.id_width, rows.num_width);
        rows.ids.resize((base + n) * w, NULL);
        rows.nums.resize((base + n) * nw, Num::Null);
        rows.len += n;
        let (index, values) = (&mut self.index, &mut self.values);
        for (slot, &field) in self.fields.iter().enumerate() {
            let ids = rows.ids.get_mut(base * w..).unwrap_or_default();
            macro_rules! strings {
                ($($f:ident => $m:ident),*) => {
                    match field {
                        $(Field::$f => intern_column(index, values, events, ids, w, slot, |e| {
                            e.$m.as_deref().map_or(ValueRef::Null, ValueRef::Str)
                        }),)*
                        f => intern_column(index, values, events, ids, w, slot, |e| e.get(f)),
                    }
                };
            }
            strings!(
                Level => level, Service => service, Message => message, IpAddress => ip_address,
                UserId => user_id, RequestId => request_id, ErrorCode => error_code,
                Action => action, SessionId => session_id, Line => line
            );
        }
        for (slot, &field) in self.num_fields.iter().enumerate() {
            let nums = rows.nums.get_mut(base * nw..).unwrap_or_default();
            match field {
                Field::ResponseTime => num_column(events, nums, nw, slot, |e| {
                    e.response_time.map_or(Num::Null, Num::Float)
                }),
                Field::StatusCode => num_column(events, nums, nw, slot, |e| {
                    e.status_code.map_or(Num::Null, Num::Int)
                }),
                f => num_column(events, nums, nw, slot, |e| match e.get(f) {
                    ValueRef::Null => Num::Null,
                    ValueRef::Int(i) => Num::Int(i),
                    ValueRef::Float(x) => Num::Float(x),
                    // Not a number: read from the event where an aggregate needs it.
                    ValueRef::Str(_) | ValueRef::Bool(_) => Num::Str,
                }),
            }
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

/// The ids of one field of `events` into column `slot` of `ids` (rows of `width`).
#[inline(always)]
fn intern_column<'e>(
    index: &mut IdIndex,
    values: &mut Vec<(u64, Value)>,
    events: &[&'e Event],
    ids: &mut [u32],
    width: usize,
    slot: usize,
    get: impl Fn(&'e Event) -> ValueRef<'e>,
) {
    for (row, ev) in ids.chunks_exact_mut(width.max(1)).zip(events) {
        if let Some(id) = row.get_mut(slot) {
            *id = intern(index, values, get(ev));
        }
    }
}

/// The numbers of one field of `events` into column `slot` of `nums` (rows of `width`).
#[inline(always)]
fn num_column(
    events: &[&Event],
    nums: &mut [Num],
    width: usize,
    slot: usize,
    get: impl Fn(&Event) -> Num,
) {
    for (row, ev) in nums.chunks_exact_mut(width.max(1)).zip(events) {
        if let Some(num) = row.get_mut(slot) {
            *num = get(ev);
        }
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

/// The interner's index: ids in an open-addressing table probed linearly from the top bits of
/// their value's `hash64` (a well-mixed hash already), at most half full. Finding an id is a
/// load, a hash compare and the value compare, where a general hash table (its control bytes
/// and tags) cost several times that on the three lookups every event makes.
#[derive(Default)]
struct IdIndex {
    /// Ids, [`NULL`] for a free slot (null is never indexed); empty or a power of two long.
    slots: Vec<u32>,
    /// 64 minus log2 of the slots.
    shift: u32,
    len: usize,
}

impl IdIndex {
    fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(NULL);
        }
        self.len = 0;
    }

    /// Makes room for one more id, doubling (and re-placing every id) when half full.
    #[cold]
    fn grow(&mut self, values: &[(u64, Value)]) {
        let slots = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![NULL; slots]);
        self.shift = 64 - slots.trailing_zeros();
        for id in old.into_iter().filter(|&id| id != NULL) {
            let h = values.get(id as usize).map_or(0, |v| v.0);
            let at = self.vacant(h);
            if let Some(s) = self.slots.get_mut(at) {
                *s = id;
            }
        }
    }

    /// The first free slot of `h`'s probe.
    fn vacant(&self, h: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = (h >> self.shift) as usize;
        while self.slots.get(at).is_some_and(|&id| id != NULL) {
            at = (at + 1) & mask;
        }
        at
    }
}

/// Values are equal as `Value::eq_ref` says (`1` equals `1.0`), so grouping and distinct counts
/// by id agree with grouping and counting by value; the first value seen represents its class.
#[inline(always)]
fn intern(index: &mut IdIndex, values: &mut Vec<(u64, Value)>, r: ValueRef<'_>) -> u32 {
    if r.is_null() {
        return NULL;
    }
    let h = r.hash64();
    if (index.len + 1) * 2 > index.slots.len() {
        index.grow(values);
    }
    let mask = index.slots.len() - 1;
    let mut at = (h >> index.shift) as usize;
    loop {
        let Some(slot) = index.slots.get_mut(at) else {
            // Unreachable: `at` is masked to the table.
            return NULL;
        };
        let id = *slot;
        if id == NULL {
            let id = values.len() as u32;
            values.push((h, r.to_owned()));
            *slot = id;
            index.len += 1;
            return id;
        }
        if let Some((g, v)) = values.get(id as usize) {
            // Strings (the usual key) compared here as `eq_ref` compares them, without its call.
            if *g == h
                && match (v, r) {
                    (Value::Str(a), ValueRef::Str(b)) => bytes_eq(a.as_bytes(), b.as_bytes()),
                    _ => v.eq_ref(r),
                }
            {
                return id;
            }
        }
        at = (at + 1) & mask;
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
    /// A batch read a field at a time holds, row by row, what reading each event alone holds:
    /// the same values share an id, every built-in field and an extra one, nulls included.
    #[test]
    fn read_all_agrees_with_read() {
        let fields = [
            Field::UserId,
            Field::Service,
            Field::StatusCode,
            Field::Extra(1),
            Field::Level,
        ];
        let nums = [Field::ResponseTime, Field::StatusCode, Field::Extra(1)];
        let make = || {
            let mut i = Interner::default();
            for &f in &fields {
                i.slot_or_add(f);
            }
            for &f in &nums {
                i.num_slot_or_add(f);
            }
            i
        };
        let mut rng = crate::agg::test_util::Rng(3);
        let events: Vec<Event> = (0..300)
            .map(|_| {
                let mut ev = Event {
                    user_id: [None, Some("u1"), Some("u2"), Some("api")][rng.below(4)]
                        .map(Into::into),
                    service: [None, Some("api"), Some("web")][rng.below(3)].map(Into::into),
                    status_code: [None, Some(200), Some(500)][rng.below(3)],
                    response_time: [None, Some(0.5), Some(200.0)][rng.below(3)],
                    level: Some("INFO".into()),
                    ..Event::default()
                };
                let extra = [Value::Null, Value::Int(200), Value::Str("web".into())];
                ev.set_extra(1, extra[rng.below(3)].clone());
                ev
            })
            .collect();
        let (mut one, mut all) = (make(), make());
        let (mut rows_one, mut rows_all) = (Rows::default(), Rows::default());
        events.iter().for_each(|ev| one.read(ev, &mut rows_one));
        let refs: Vec<&Event> = events.iter().collect();
        // In two batches, as the ingest reads blocks.
        all.read_all(&refs[..100], &mut rows_all);
        all.read_all(&refs[100..], &mut rows_all);
        assert_eq!(rows_all.len(), events.len());
        for r in 0..events.len() {
            let value = |i: &Interner, id: u32| i.value(id).1.clone();
            let a: Vec<Value> = rows_one.ids(r).iter().map(|&id| value(&one, id)).collect();
            let b: Vec<Value> = rows_all.ids(r).iter().map(|&id| value(&all, id)).collect();
            assert_eq!(a, b, "row {r}");
            assert_eq!(rows_one.nums(r), rows_all.nums(r), "row {r}");
        }
    }
}
