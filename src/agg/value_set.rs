//! The set behind `count_distinct` and `collect_set`.
//!
//! Most sets in a window are tiny (the users of one IP, the services one user touched), a few
//! are large (the active users of the whole system). A [`ValueSet`] keeps up to
//! [`SMALL`] values inline and scans them, and switches to a hash table beyond that. Members
//! are tested by [`ValueRef`], so an event's field is copied only when it is new to the set;
//! order only matters when the set is finished (`collect_set` sorts once).

use std::fmt;

use hashbrown::HashTable;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::record::{Value, ValueRef};

/// Inline capacity; a set that grows past it moves to a hash table.
pub const SMALL: usize = 8;

/// A set of [`Value`]s with the equality of `Value` (`1 == 1.0`).
///
/// Members are stored with their hash (`Value::hash64`, equal for equal values) in both forms:
/// a scan of the small form compares hashes and looks at a member's value only on a hash
/// match, and merging partial sets (every window, at every worker) never rehashes a member.
#[derive(Clone, Debug)]
pub enum ValueSet {
    /// Up to a few members, scanned.
    Small(SmallVec<[(u64, Value); 2]>),
    /// More members, hashed.
    Large(HashTable<(u64, Value)>),
}

/// Pushes onto a small set: leaving the inline storage, it takes room for every member it
/// can hold before it becomes a table at once, instead of growing by doubling (2, 4, 8, 16).
#[inline]
fn push_small(s: &mut SmallVec<[(u64, Value); 2]>, m: (u64, Value)) {
    if s.len() == s.inline_size() {
        s.reserve_exact(SMALL + 1 - s.len());
    }
    s.push(m);
}

impl Default for ValueSet {
    fn default() -> Self {
        ValueSet::Small(SmallVec::new())
    }
}

impl PartialEq for ValueSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|v| other.contains(v))
    }
}

impl ValueSet {
    /// How many distinct values.
    pub fn len(&self) -> usize {
        match self {
            ValueSet::Small(v) => v.len(),
            ValueSet::Large(t) => t.len(),
        }
    }

    /// No value yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Value> {
        self.entries().map(|(_, v)| v)
    }

    /// The values with their hashes (`Value::hash64`), in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, Value)> {
        let (small, large) = match self {
            ValueSet::Small(v) => (Some(v.iter()), None),
            ValueSet::Large(t) => (None, Some(t.iter())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }

    /// Whether `v` is a member.
    pub fn contains(&self, v: &Value) -> bool {
        let h = v.hash64();
        match self {
            ValueSet::Small(s) => s.iter().any(|(g, x)| *g == h && x == v),
            ValueSet::Large(t) => t.find(h, |(_, x)| x == v).is_some(),
        }
    }

    /// Adds a borrowed value, copying it only when it is new.
    #[inline]
    pub fn insert_ref(&mut self, r: ValueRef<'_>) {
        let h = r.hash64();
        match self {
            ValueSet::Small(s) => {
                if !s.iter().any(|(g, v)| *g == h && v.eq_ref(r)) {
                    push_small(s, (h, r.to_owned()));
                    self.grow_if_full();
                }
            }
            ValueSet::Large(t) => {
                if t.find(h, |(_, v)| v.eq_ref(r)).is_none() {
                    t.insert_unique(h, (h, r.to_owned()), |(h, _)| *h);
                }
            }
        }
    }

    /// An empty set with room for `n` members, in the form `n` members take.
    pub fn with_capacity(n: usize) -> Self {
        if n <= SMALL {
            ValueSet::Small(SmallVec::with_capacity(n))
        } else {
            ValueSet::Large(HashTable::with_capacity(n))
        }
    }

    /// Adds `v` (whose `hash64` is `h`), known to be unequal to every member, to a set made
    /// by [`ValueSet::with_capacity`] for at least its members: no scan, no growth.
    #[inline]
    pub fn push_unique(&mut self, h: u64, v: Value) {
        match self {
            ValueSet::Small(s) => {
                s.push((h, v));
                self.grow_if_full();
            }
            ValueSet::Large(t) => {
                t.insert_unique(h, (h, v), |(h, _)| *h);
            }
        }
    }

    /// Adds an owned value.
    pub fn insert(&mut self, v: Value) {
        self.insert_hashed(v.hash64(), v)
    }

    /// Adds `v`, whose `hash64` is `h`.
    fn insert_hashed(&mut self, h: u64, v: Value) {
        match self {
            ValueSet::Small(s) => {
                if !s.iter().any(|(g, x)| *g == h && *x == v) {
                    push_small(s, (h, v));
                    self.grow_if_full();
                }
            }
            ValueSet::Large(t) => {
                if t.find(h, |(_, x)| *x == v).is_none() {
                    t.insert_unique(h, (h, v), |(h, _)| *h);
                }
            }
        }
    }

    fn grow_if_full(&mut self) {
        if let ValueSet::Small(s) = self {
            if s.len() > SMALL {
                let mut t = HashTable::with_capacity(s.len() * 2);
                for (h, v) in s.drain(..) {
                    t.insert_unique(h, (h, v), |(h, _)| *h);
                }
                *self = ValueSet::Large(t);
            }
        }
    }

    /// Adds every value of `other` (the larger set absorbs the smaller one).
    pub fn merge(&mut self, mut other: ValueSet) {
        if other.len() > self.len() {
            std::mem::swap(self, &mut other);
        }
        // Consumed in place: collecting the other's members into a `Vec` first cost an
        // allocation per merge (the receiving operator merges one partial set per key).
        match other {
            ValueSet::Small(s) => s.into_iter().for_each(|(h, v)| self.insert_hashed(h, v)),
            ValueSet::Large(t) => t.into_iter().for_each(|(h, v)| self.insert_hashed(h, v)),
        }
    }

    fn into_entries(self) -> Vec<(u64, Value)> {
        match self {
            ValueSet::Small(s) => s.into_vec(),
            ValueSet::Large(t) => t.into_iter().collect(),
        }
    }

    /// The values, in no particular order.
    pub fn into_values(self) -> Vec<Value> {
        self.into_entries().into_iter().map(|(_, v)| v).collect()
    }

    /// The members in `Value` order.
    pub fn into_sorted(self) -> Vec<Value> {
        let mut v = self.into_values();
        v.sort_unstable();
        v
    }
}

impl Serialize for ValueSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ValueSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueSet, A::Error> {
                let mut set = ValueSet::default();
                while let Some(v) = seq.next_element::<Value>()? {
                    set.insert(v);
                }
                Ok(set)
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn small_and_large_sets_agree_with_a_btree_set() {
        for n in [0usize, 1, 5, SMALL, SMALL + 1, 100] {
            let mut set = ValueSet::default();
            let mut want = std::collections::BTreeSet::new();
            for i in 0..3 * n {
                let v = s(&format!("u{}", (i * 7) % n.max(1)));
                set.insert_ref(v.as_ref().unwrap_or(ValueRef::Null));
                want.insert(v);
            }
            if n == 0 {
                assert!(set.is_empty());
                continue;
            }
            assert_eq!(set.len(), want.len(), "n={n}");
            assert_eq!(set.is_empty(), want.is_empty());
            assert_eq!(matches!(set, ValueSet::Large(_)), n > SMALL);
            assert_eq!(set.into_sorted(), want.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn numbers_compare_as_values_do() {
        let mut set = ValueSet::default();
        set.insert_ref(ValueRef::Int(1));
        set.insert_ref(ValueRef::Float(1.0));
        set.insert_ref(ValueRef::Float(-0.0));
        set.insert_ref(ValueRef::Int(0));
        assert_eq!(set.len(), 2);
        let mut big = ValueSet::default();
        for i in 0..50 {
            big.insert_ref(ValueRef::Int(i));
        }
        for i in 0..50 {
            big.insert_ref(ValueRef::Float(i as f64));
        }
        assert_eq!(big.len(), 50);
    }

    #[test]
    fn merge_and_serde_keep_the_members() {
        let mut a = ValueSet::default();
        let mut b = ValueSet::default();
        for i in 0..30 {
            a.insert(s(&format!("x{i}")));
        }
        for i in 20..25 {
            b.insert(s(&format!("x{i}")));
        }
        b.insert(Value::Null);
        let mut small_into_large = b.clone();
        small_into_large.merge(a.clone());
        a.merge(b);
        assert_eq!(a.len(), 31);
        assert_eq!(a, small_into_large);
        let json = serde_json::to_string(&a).unwrap_or_default();
        let back: ValueSet = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, a);
        assert_eq!(back.into_sorted(), a.into_sorted());
    }
}
