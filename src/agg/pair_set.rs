//! The (group, id) pairs of one distinct count between two drains of its table.
//!
//! A node's distinct count records, per event, the pair of the event's group and the
//! [`Interner`](crate::agg::intern::Interner) id of its value, and most pairs repeat (a user
//! returning in the same window). Testing each against a hash set of the pairs seen cost more
//! than anything else the tables did per event, so a [`PairSet`] does not keep one: it appends
//! each pair to a list unless a small direct-mapped cache of recent pairs has it (the usual
//! repeat: few groups and values are live at a time), and removes the repeats left only when it
//! is drained, group by group, by stamping each id with the group that took it last (ids are
//! dense, so the stamps are an array indexed by id).
//!
//! The list holds at most one pair per event folded since the last drain, as the hash set did
//! at worst; the ingest drains every `batch` events.

/// A free cache slot: no pair is 0, since id 0 is null and null is never recorded.
const FREE: u64 = 0;
/// log2 of the cache's slots: 4096, 32 KB, enough for the pairs of a few windows' groups.
const RECENT_BITS: u32 = 12;
/// No group took the id yet (drain stamps).
const NONE: u32 = u32::MAX;

/// A multiset of (group, id) pairs, id never 0 (null), read back as each group's distinct ids.
#[derive(Clone, Debug, Default)]
pub struct PairSet {
    /// `group << 32 | id` of every pair recorded but not found in `recent`: repeats possible.
    pushed: Vec<u64>,
    /// Direct-mapped cache of recorded pairs, by the top bits of a multiplicative hash (empty
    /// until the first pair).
    recent: Vec<u64>,
    /// Drain's scratch: per id, the last group that took it.
    stamps: Vec<u32>,
}

impl PairSet {
    /// Records (`group`, `id`); `id` 0 (null) is ignored.
    #[inline]
    pub fn insert(&mut self, group: u32, id: u32) {
        if id == 0 {
            return;
        }
        let pair = u64::from(group) << 32 | u64::from(id);
        let at = (pair.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - RECENT_BITS)) as usize;
        match self.recent.get_mut(at) {
            Some(p) if *p == pair => {}
            Some(p) => {
                *p = pair;
                self.pushed.push(pair);
            }
            None => self.first(pair, at),
        }
    }

    /// The first pair since the cache was freed: makes it.
    #[cold]
    fn first(&mut self, pair: u64, at: usize) {
        self.recent = vec![FREE; 1 << RECENT_BITS];
        if let Some(p) = self.recent.get_mut(at) {
            *p = pair;
        }
        self.pushed.push(pair);
    }

    /// No pair since the last drain.
    pub fn is_empty(&self) -> bool {
        self.pushed.is_empty()
    }

    /// Empties the set into each group's distinct ids: afterwards group `g` (of `groups`; pairs
    /// of others are dropped) has `ids[ends[g]..ends[g + 1]]`, in the order first recorded.
    pub fn drain_into(&mut self, groups: usize, ends: &mut Vec<usize>, ids: &mut Vec<u32>) {
        // A counting sort by group: where each group's ids start, then each id put there.
        ends.clear();
        ends.resize(groups + 1, 0);
        let mut max_id = 0;
        for &pair in &self.pushed {
            let g = (pair >> 32) as usize;
            if g < groups {
                ends[g + 1] += 1;
            }
            max_id = max_id.max(pair as u32);
        }
        for g in 1..ends.len() {
            ends[g] += ends[g - 1];
        }
        ids.clear();
        ids.resize(ends[groups], 0);
        // `ends[g]` is where group g's next id goes, then where its ids end.
        for &pair in &self.pushed {
            let g = (pair >> 32) as usize;
            if g < groups {
                if let Some(slot) = ids.get_mut(ends[g]) {
                    *slot = pair as u32;
                }
                ends[g] += 1;
            }
        }
        // Repeats out, in place: an id stamped with its group was taken already. `ends[g]`
        // becomes where group g's kept ids start.
        self.stamps.clear();
        self.stamps.resize(max_id as usize + 1, NONE);
        let (mut from, mut kept) = (0, 0);
        for (g, end) in ends.iter_mut().take(groups).enumerate() {
            let to = std::mem::replace(end, kept);
            for i in from..to {
                let id = ids[i];
                if let Some(s) = self.stamps.get_mut(id as usize) {
                    if *s != g as u32 {
                        *s = g as u32;
                        ids[kept] = id;
                        kept += 1;
                    }
                }
            }
            from = to;
        }
        ends[groups] = kept;
        ids.truncate(kept);
        self.pushed.clear();
        if !self.recent.is_empty() {
            self.recent.fill(FREE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Against a `BTreeSet`: repeats next to each other and far apart, many groups per id and
    /// many ids per group, nulls, pairs of groups beyond those drained; the set is reused.
    #[test]
    fn drains_each_groups_distinct_ids_in_first_order() {
        let mut rng = crate::agg::test_util::Rng(5);
        let mut set = PairSet::default();
        let (mut ends, mut ids) = (Vec::new(), Vec::new());
        for (groups, n_ids) in [(3, 50), (400, 7), (2_000, 3_000), (1, 1)] {
            let mut want = vec![Vec::new(); groups];
            let mut seen = BTreeSet::new();
            for _ in 0..20_000 {
                let (g, id) = (rng.below(groups + 1), rng.below(n_ids + 1) as u32);
                set.insert(g as u32, id);
                if id != 0 && g < groups && seen.insert((g, id)) {
                    want[g].push(id);
                }
            }
            assert!(!set.is_empty());
            set.drain_into(groups, &mut ends, &mut ids);
            assert!(set.is_empty());
            assert_eq!(ends.len(), groups + 1);
            let got: Vec<Vec<u32>> = (0..groups)
                .map(|g| ids[ends[g]..ends[g + 1]].to_vec())
                .collect();
            assert_eq!(got, want);
        }
        // Drained empty: every group empty.
        set.drain_into(2, &mut ends, &mut ids);
        assert_eq!((ends.as_slice(), ids.len()), (&[0, 0, 0][..], 0));
    }
}
