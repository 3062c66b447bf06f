//! The heavy-hitter table behind `top_k(x, k)`: the `k` most frequent values of a group with
//! their counts, most frequent first, ties by ascending value (so the order is total and the
//! same on every layout).
//!
//! Exact while a group has at most [`CAPACITY`] distinct values: the table counts every value,
//! partial tables merge by adding counts, and the result depends only on the multiset of
//! values. A group with more distinct values is pruned whenever its table reaches twice the
//! capacity, to the [`CAPACITY`] most frequent (the frequent-items pruning of Misra-Gries and
//! lossy counting): memory stays bounded, a value with a clear lead stays, but counts become
//! lower bounds and, since pruning happens per partial, results may then depend on how events
//! were spread over workers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Value;

/// Distinct values counted exactly per group.
pub const CAPACITY: usize = 4096;

/// Counts per distinct value of a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    counts: BTreeMap<Value, u64>,
}

impl TopK {
    /// Counts one value.
    #[inline]
    pub fn add(&mut self, v: Value) {
        *self.counts.entry(v).or_insert(0) += 1;
        self.prune();
    }

    /// Adds another table's counts.
    pub fn merge(&mut self, other: TopK) {
        if self.counts.len() < other.counts.len() {
            let mine = std::mem::replace(self, other);
            return self.merge(mine);
        }
        for (v, n) in other.counts {
            *self.counts.entry(v).or_insert(0) += n;
        }
        self.prune();
    }

    fn prune(&mut self) {
        if self.counts.len() < 2 * CAPACITY {
            return;
        }
        let mut all: Vec<(Value, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(CAPACITY);
        self.counts = all.into_iter().collect();
    }

    /// The `k` most frequent values as `[value, count]` pairs, most frequent first, ties by
    /// ascending value; an empty list when no value was seen.
    pub fn finish(self, k: u32) -> Value {
        let mut all: Vec<(Value, u64)> = self.counts.into_iter().collect();
        // Stable, and the map iterates in ascending value order: ties stay ascending.
        all.sort_by_key(|a| std::cmp::Reverse(a.1));
        all.truncate(k as usize);
        Value::List(
            all.into_iter()
                .map(|(v, n)| Value::List(vec![v, Value::Int(n.min(i64::MAX as u64) as i64)]))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::test_util::Rng;

    fn pair(v: &str, n: i64) -> Value {
        Value::List(vec![Value::Str(v.into()), Value::Int(n)])
    }

    /// Clear heavy hitters among many singletons, split over partials merged in any order:
    /// the exact top k, ties ascending.
    #[test]
    fn exact_top_k_in_any_merge_order() {
        let mut rng = Rng(21);
        let mut values: Vec<String> = Vec::new();
        for (v, n) in [("a", 500), ("b", 300), ("c", 300), ("d", 7)] {
            values.extend(std::iter::repeat_n(v.to_string(), n));
        }
        values.extend((0..3000).map(|i| format!("x{i}")));
        rng.shuffle(&mut values);
        let want = Value::List(vec![
            pair("a", 500),
            pair("b", 300),
            pair("c", 300),
            pair("d", 7),
        ]);
        for parts in [1, 2, 7] {
            let mut partials: Vec<TopK> = (0..parts).map(|_| TopK::default()).collect();
            for v in &values {
                partials[rng.below(parts)].add(Value::Str(v.as_str().into()));
            }
            rng.shuffle(&mut partials);
            let mut merged = TopK::default();
            for p in partials {
                merged.merge(p);
            }
            assert_eq!(merged.finish(4), want, "{parts} partials");
        }
        assert_eq!(TopK::default().finish(3), Value::List(vec![]));
    }

    /// Past the capacity the table stays bounded and the heavy hitters keep their place.
    #[test]
    fn many_distinct_values_stay_bounded() {
        let mut t = TopK::default();
        for i in 0..100_000u64 {
            t.add(Value::Int((i % 50_000) as i64 + 10));
            if i % 10 == 0 {
                t.add(Value::Int(1));
            }
            assert!(t.counts.len() < 2 * CAPACITY);
        }
        match t.finish(1) {
            Value::List(top) => assert_eq!(
                top,
                vec![Value::List(vec![Value::Int(1), Value::Int(10_000)])]
            ),
            other => panic!("{other:?}"),
        }
    }
}
